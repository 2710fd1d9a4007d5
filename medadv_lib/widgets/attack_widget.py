"""An ε slider for PGD: watch robust accuracy fall and the perturbation grow as the budget rises.

Two pieces, following the rule of :mod:`medadv_lib.widgets` (the widget's callback is a plain
function the notebook also calls once, so papermill runs the same code the slider runs):

* :func:`pgd_view` – one budget: the numbers of
  :func:`medadv_lib.metrics.robustness.pgd_at_grey_levels` (PGD, memoised in a cache) and the
  figure of :func:`medadv_lib.viz.attacks.pgd_strip` (clean / perturbation / adversarial);
* :func:`pgd_widget` – an ipywidgets ε slider plus an L∞/L2 toggle whose callback is
  :func:`pgd_view`; results are cached per (ε, norm), so moving back to a value is instant.

Budget unit.  The slider speaks *grey levels* (``eps_255``, 1 = one step of an 8-bit image), converted
by :func:`medadv_lib.attacks.eps_from_255`: L∞ ``eps = eps_255 / 255``; L2
``eps = eps_255 / 255 · √(C·H·W)`` (a root-mean-square change of ``eps_255`` grey levels; the L∞
ball of the same ``eps_255`` lies inside it, so at equal slider value L2-PGD is at least as strong).

Example::

    >>> summary, fig = pgd_view(model, x[:16], y[:16], eps_255=2)
    >>> summary["robust_accuracy"], summary["defense_rate"]
    >>> pgd_widget(model, x[:16], y[:16])          # in Jupyter: displays the slider
"""
from __future__ import annotations

import torch

from .. import LABELS
from ..attacks import check_eps_255, eps_from_255, parse_norm
from ..metrics.robustness import pgd_at_grey_levels
from ..viz.attacks import pgd_strip, pgd_summary_html
from .static import show_static_copy

__all__ = ["EPS_GRID_255", "pgd_view", "pgd_widget"]

EPS_GRID_255 = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Default slider values in grey levels (×1/255)."""


def pgd_view(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_255: float, norm="inf",
             n_show: int = 4, cache: dict | None = None, steps: int = 10, seed: int = 0, labels=LABELS,
             amplify: float | None = None, show: bool = True, true_scale: bool = True,
             model_name: str | None = None):
    """PGD at one budget: a summary of the whole batch and a figure of ``n_show`` of its images.

    Arguments:
        model (nn.Module): classifier taking [0, 1] pixels.
        x (Tensor): ``N×C×H×W`` images in [0, 1] (keep N small, e.g. 16–32, for a slider); ``y`` labels.
        eps_255 (float): budget in grey levels (see the module docstring for L2).
        norm (str): ``"inf"`` (default) or ``"2"``.
        n_show (int): images in the figure (clipped to N), taking the classes in turn. (Default: 4)
        cache (dict): results are stored here under ``(id(model), id(x), eps, norm, steps, seed)``
            and reused; pass the same dict to every call (the widget does). (Default: None, no caching)
        steps (int): PGD steps; ``eps_255 = 0`` runs none. seed (int): PGD's random start.
        labels: class names. amplify (float): fixed contrast of the perturbation row (default: per figure).
        show (bool): build the figure; ``False`` returns ``(summary, None)``. (Default: True)
        true_scale (bool): the perturbation at ×1 (true scale, fixed labelled colour scale) under the amplified
            one; ``False`` drops it. (Default: True)
        model_name (str): named in the figure's title. (Default: None)
    Returns:
        ``(summary, fig)``: ``summary`` is the dict of
        :func:`~medadv_lib.metrics.robustness.pgd_at_grey_levels` (``eps_255``, ``eps``, ``norm``,
        ``steps``, ``n``, ``n_clean_correct``, ``clean_accuracy``, ``robust_accuracy``,
        ``attack_success_rate``, ``defense_rate``, ``adv_pred_counts``); ``fig`` from
        :func:`~medadv_lib.viz.attacks.pgd_strip`.
    Raises:
        ValueError: a bad ``eps_255`` (negative, > 255, not a number), an unknown norm, or
        mismatched ``x``/``y``.
    Examples::
        >>> s, fig = pgd_view(model, x[:16], y[:16], eps_255=2, norm="inf")
        >>> s["robust_accuracy"]   # equals (pgd(model, x, y, 2/255, seed=0).pred == y).float().mean()
    """
    summary, res, pred_clean = pgd_at_grey_levels(model, x, y, eps_255, norm, steps, seed, cache, labels)
    fig = (pgd_strip(x, y, res, pred_clean, summary, n_show, labels, amplify, true_scale=true_scale,
                     model_name=model_name) if show else None)
    return summary, fig


def pgd_widget(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid=EPS_GRID_255,
               norms=("inf", "2"), value: float | None = None, n_show: int = 4, cache: dict | None = None,
               steps: int = 10, seed: int = 0, labels=LABELS, precompute: bool = False):
    """An ipywidgets ε slider (+ L∞/L2 toggle) whose callback is :func:`pgd_view`.

    Arguments:
        model, x, y, n_show, steps, seed, labels: as :func:`pgd_view`.
        eps_grid: the slider's budgets in grey levels (sorted, de-duplicated); a small grid keeps
            it responsive: each new (ε, norm) costs one PGD run on ``x``, later visits are cached.
            (Default: :data:`EPS_GRID_255`)
        norms: the toggle's norms. (Default: ``("inf", "2")``)
        value: the initial ε, one of ``eps_grid``. (Default: 2 if present, else the middle value)
        cache (dict): shared with :func:`pgd_view` calls made before (so the first view is free).
            (Default: a new dict)
        precompute (bool): run every (ε, norm) of the grid now instead of on first visit.
    Returns:
        an ``ipywidgets.VBox`` (slider and toggle, a summary line, the figure); its ``cache``
        attribute is the result cache.
    Raises:
        ValueError: an empty grid, a bad ε in it, an unknown norm, or ``value`` not in the grid.
    """
    import ipywidgets as w  # lazy: widget libraries load only when a widget is shown
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    from IPython.display import display  # lazy: widget libraries load only when a widget is shown

    grid = sorted({check_eps_255(e) for e in eps_grid})
    if not grid:
        raise ValueError("eps_grid is empty: give a few budgets in grey levels, e.g. (0, 1, 2, 4)")
    norms = [parse_norm(n) for n in norms]
    if not norms:
        raise ValueError("norms is empty: use ('inf',), ('2',) or ('inf', '2')")
    if value is None:
        value = 2.0 if 2.0 in grid else grid[len(grid) // 2]
    if check_eps_255(value) not in grid:
        raise ValueError(f"value {value!r} is not on the slider grid {grid}")
    cache = {} if cache is None else cache
    amp = {n: 0.5 / max(eps_from_255(max(grid), n, (1, 1, 1)), 1e-12) for n in norms}  # fixed contrast per norm
    if precompute:
        for n in norms:
            for e in grid:
                pgd_view(model, x, y, e, n, cache=cache, steps=steps, seed=seed, show=False)

    slider = w.SelectionSlider(options=[(f"{e:g}/255", e) for e in grid], value=float(value),
                               description="ε", continuous_update=False)
    toggle = w.ToggleButtons(options=[("L∞" if n == "inf" else "L2 (RMS)", n) for n in norms],
                             value=norms[0], description="norm")
    info = w.HTML()
    out = w.Output()

    def _update(_change=None):
        s, fig = pgd_view(model, x, y, slider.value, toggle.value, n_show=n_show, cache=cache, steps=steps,
                          seed=seed, labels=labels, amplify=amp[toggle.value])
        info.value = pgd_summary_html(s)
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        shown["fig"] = fig

    shown = {}
    slider.observe(_update, names="value")
    toggle.observe(_update, names="value")
    _update()
    show_static_copy(shown.get("fig"), f"ε = {slider.value:g}/255, {'L∞' if toggle.value == 'inf' else 'L2'}")
    box = w.VBox([w.HBox([slider, toggle]), info, out])
    box.cache = cache
    return box
