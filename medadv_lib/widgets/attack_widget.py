"""An ε slider for PGD: watch robust accuracy fall and the perturbation grow as the budget rises.

Two pieces, following the rule of :mod:`medadv_lib.widgets` (the widget's callback is a plain
function the notebook also calls once, so papermill runs the same code the slider runs):

* :func:`pgd_view` – run PGD (or take it from a cache) at one budget and return a summary dict
  and a figure (clean / perturbation / adversarial for a few images);
* :func:`pgd_widget` – an ipywidgets ε slider plus an L∞/L2 toggle whose callback is
  :func:`pgd_view`; results are cached per (ε, norm), so moving back to a value is instant.

Budget unit.  The slider speaks *grey levels* (``eps_255``, 1 = one step of an 8-bit image):

* L∞: ``eps = eps_255 / 255`` – no pixel changes by more than ``eps_255`` grey levels;
* L2: ``eps = eps_255 / 255 · √(C·H·W)`` – the L2 norm of a perturbation whose
  root-mean-square pixel change is ``eps_255`` grey levels.  The L∞ ball of the same
  ``eps_255`` lies inside this L2 ball, so at equal slider value L2-PGD is at least as strong.

Example::

    >>> summary, fig = pgd_view(model, x[:16], y[:16], eps_255=2)
    >>> summary["robust_accuracy"], summary["defense_rate"]
    >>> pgd_widget(model, x[:16], y[:16])          # in Jupyter: displays the slider
"""
from __future__ import annotations

import math

import torch

from .. import LABELS
from ..attacks import parse_norm
from ..metrics.robustness import attack_summary, pgd_at_budget

__all__ = ["EPS_GRID_255", "eps_from_255", "pgd_view", "pgd_widget"]

EPS_GRID_255 = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Default slider values in grey levels (×1/255)."""


def _check_eps_255(eps_255) -> float:
    try:
        e = float(eps_255)
    except (TypeError, ValueError):
        raise ValueError(f"eps_255 must be a number of grey levels in [0, 255]; got {eps_255!r}") from None
    if not math.isfinite(e) or not 0.0 <= e <= 255.0:
        raise ValueError(f"eps_255 must be a number of grey levels in [0, 255] (e.g. 2 for 2/255); got {eps_255!r}")
    return e


def eps_from_255(eps_255: float, norm="inf", image_shape=(1, 96, 96)) -> float:
    """Budget in pixel units from grey levels: L∞ ``eps_255/255``; L2 ``eps_255/255·√(C·H·W)``.

    Arguments:
        eps_255 (float): budget in grey levels, 0 ≤ eps_255 ≤ 255.
        norm (str): ``"inf"`` or ``"2"``.
        image_shape: ``(C, H, W)`` of one image (only used for L2).
    Raises:
        ValueError: a negative, non-finite or > 255 ``eps_255``, or an unknown norm.
    """
    e, norm = _check_eps_255(eps_255), parse_norm(norm)
    return e / 255.0 if norm == "inf" else e / 255.0 * math.sqrt(math.prod(image_shape))


def _show_order(y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` images taking the classes in turn (first image of each class, then the
    second...), so a figure of a few images shows every diagnosis."""
    per_class = [torch.nonzero(y == c).flatten().tolist() for c in sorted(set(y.tolist()))]
    order = []
    for rank in range(max(map(len, per_class), default=0)):
        order += [idx[rank] for idx in per_class if rank < len(idx)]
    return torch.tensor(order[:k], dtype=torch.long)


def pgd_view(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_255: float, norm="inf",
             n_show: int = 4, cache: dict | None = None, steps: int = 10, seed: int = 0, labels=LABELS,
             amplify: float | None = None, show: bool = True):
    """PGD at one budget: a summary of the whole batch and a figure of ``n_show`` of its images.

    Arguments:
        model (nn.Module): classifier taking [0, 1] pixels.
        x (Tensor): ``N×C×H×W`` images in [0, 1] (keep N small, e.g. 16–32, for a slider).
        y (Tensor): ``N`` true labels.
        eps_255 (float): budget in grey levels (see the module docstring for L2).
        norm (str): ``"inf"`` (default) or ``"2"``.
        n_show (int): images in the figure (clipped to N), taking the classes in turn. (Default: 4)
        cache (dict): results are stored here under ``(id(model), id(x), eps_255, norm, steps,
            seed)`` and reused; pass the same dict to every call (the widget does).
            (Default: None, no caching)
        steps (int): PGD steps; ``eps_255 = 0`` runs none. (Default: 10)
        seed (int): seed of PGD's random start. (Default: 0)
        labels: class names. (Default: :data:`medadv_lib.LABELS`)
        amplify (float): fixed contrast factor of the perturbation row. (Default: None → per figure)
        show (bool): build the figure; ``False`` returns ``(summary, None)``. (Default: True)
    Returns:
        ``(summary, fig)``: ``summary`` is a dict with ``eps_255``, ``eps`` (pixel units),
        ``norm``, ``steps``, ``n``, ``n_clean_correct``, ``clean_accuracy``, ``robust_accuracy``
        (all N images), ``attack_success_rate`` and ``defense_rate`` (over the clean-correct
        images; defense rate = share of them still correct under attack), ``adv_pred_counts``
        (``{class: images predicted as it under attack}``); ``fig`` a
        :func:`medadv_lib.viz.attacks.adversarial_strip` figure.
    Raises:
        ValueError: a bad ``eps_255`` (negative, > 255, not a number), an unknown norm, or
        mismatched ``x``/``y``.
    Examples::
        >>> s, fig = pgd_view(model, x[:16], y[:16], eps_255=2, norm="inf")
        >>> s["robust_accuracy"]   # equals (pgd(model, x, y, 2/255, seed=0).pred == y).float().mean()
    """
    e255, norm = _check_eps_255(eps_255), parse_norm(norm)
    if len(x) != len(y):
        raise ValueError(f"shape mismatch: x has {len(x)} images but y has {len(y)} labels")
    eps = eps_from_255(e255, norm, tuple(x.shape[1:]))
    res, pred_clean = pgd_at_budget(model, x, y, eps, norm, steps, seed, cache)
    y_cpu = y.detach().cpu()
    summary = {"eps_255": e255, "eps": eps, "norm": norm, "steps": int(steps) if e255 > 0 else 0,
               **attack_summary(res, y_cpu, pred_clean, labels)}
    fig = None
    if show:
        from ..viz.attacks import adversarial_strip
        sel = _show_order(y_cpu, max(0, min(int(n_show), len(y_cpu))))
        title = (f"PGD {'L∞' if norm == 'inf' else 'L2'} ε = {e255:g}/255"
                 + ("" if norm == "inf" else f" RMS (‖δ‖₂ ≤ {eps:.3g})")
                 + f": robust accuracy {summary['robust_accuracy']:.2f}, defense rate {summary['defense_rate']:.2f}"
                 + f" (n = {summary['n']})")
        fig = adversarial_strip(x.cpu()[sel], res.x_adv[sel], y_cpu[sel], pred_clean[sel], res.pred[sel], labels=labels,
                                amplify=amplify, suptitle=title)
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
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    grid = sorted({_check_eps_255(e) for e in eps_grid})
    if not grid:
        raise ValueError("eps_grid is empty: give a few budgets in grey levels, e.g. (0, 1, 2, 4)")
    norms = [parse_norm(n) for n in norms]
    if not norms:
        raise ValueError("norms is empty: use ('inf',), ('2',) or ('inf', '2')")
    if value is None:
        value = 2.0 if 2.0 in grid else grid[len(grid) // 2]
    if _check_eps_255(value) not in grid:
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
        info.value = (f"<b>ε = {s['eps_255']:g}/255</b> ({'L∞' if s['norm'] == 'inf' else 'L2'}, "
                      f"‖δ‖ ≤ {s['eps']:.3g}) · clean accuracy {s['clean_accuracy']:.2f} · "
                      f"<b>robust accuracy {s['robust_accuracy']:.2f}</b> · defense rate {s['defense_rate']:.2f} · "
                      f"predicted under attack: {s['adv_pred_counts']}")
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    slider.observe(_update, names="value")
    toggle.observe(_update, names="value")
    _update()
    box = w.VBox([w.HBox([slider, toggle]), info, out])
    box.cache = cache
    return box
