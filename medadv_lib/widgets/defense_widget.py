"""A pruning-sparsity slider for instructors (notebook 04): clean accuracy against PGD defense rate
over the precomputed sweep of :func:`medadv_lib.course.sparsity_sweep`.

As in the other widgets, the callback :func:`sparsity_view` is a plain function the notebook calls
once (so papermill runs what the slider runs); :func:`sparsity_widget` wraps it in a slider.  No
model runs when the slider moves: every point was computed (and cached) beforehand.
"""
from __future__ import annotations

from ..viz.defense import plot_sparsity_curve
from .static import show_static_copy

__all__ = ["sparsity_view", "sparsity_widget"]


def sparsity_view(sweep, sparsity: float, eps: float | None = None):
    """The sweep's curve with the chosen ``sparsity`` marked, and its numbers.  Returns
    ``(row dict, figure)``; ``eps`` picks one budget of the sweep (default: its first)."""
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it

    eps = float(sweep.eps.iloc[0]) if eps is None else eps
    s = sweep[(sweep.eps - eps).abs() < 1e-9]
    if "attack" in s and (s.attack == "worst").any():      # the worst case over the suite, where the sweep has it
        s = s[s.attack == "worst"]
    row = s.iloc[(s.sparsity - sparsity).abs().argmin()]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    plot_sparsity_curve(s, ax=ax)
    ax.axvline(row.sparsity, color="k", lw=1, ls=":")
    ax.set_title(f"{row.sparsity:.0%} pruned: clean {row.clean_accuracy:.2f}, "
                 f"defense rate {row.defense_rate:.2f} [{row.defense_rate_lo:.2f}, {row.defense_rate_hi:.2f}]")
    return row.to_dict(), fig


def sparsity_widget(sweep, eps: float | None = None):
    """An ipywidgets slider over the sweep's sparsities whose callback is :func:`sparsity_view`."""
    import ipywidgets as w  # lazy: widget libraries load only when a widget is shown
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    from IPython.display import display  # lazy: widget libraries load only when a widget is shown

    values = sorted(sweep.sparsity.unique())
    slider = w.SelectionSlider(options=[(f"{v:.0%}", v) for v in values], value=values[0], description="pruned")
    out = w.Output()

    def show(change=None):
        with out:
            out.clear_output(wait=True)
            _, fig = sparsity_view(sweep, slider.value, eps)
            display(fig)
            plt.close(fig)
        shown["fig"] = fig

    shown = {}
    slider.observe(show, names="value")
    show()
    show_static_copy(shown.get("fig"), f"{slider.value:.0%} of the weights pruned")
    return w.VBox([slider, out])
