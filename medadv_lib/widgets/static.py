"""A widget's static copy: under the course runner an executed notebook (and its HTML) cannot replay a widget —
it shows ``VBox(...)`` — so each widget also displays the figure of its default setting in its cell, outside itself, with a
caption saying so.  In a live kernel nothing extra is shown."""
from __future__ import annotations

import os

from ..runtime import HEADLESS_ENV

__all__ = ["show_static_copy"]


def show_static_copy(fig, setting: str) -> bool:
    """Display ``fig`` (the widget's view at its default ``setting``, e.g. ``"ε = 2/255, L∞"``) with a caption in
    the widget's cell when ``$MEDADV_HEADLESS`` is set (the course runner sets it for its kernels).  Returns whether
    it did."""
    if fig is None or not os.environ.get(HEADLESS_ENV):
        return False
    from IPython.display import Markdown, display  # lazy: widget libraries load only when a widget is shown
    display(Markdown(f"*Static copy of this cell's widget at its default setting ({setting}); move its controls in a "
                     "live kernel to see the others.*"))
    display(fig)
    return True
