"""A ζ slider for universal perturbations: one noise image, the whole test set, the fooling rate.

Two pieces, following the rule of :mod:`medadv_lib.widgets` (the widget's callback is a plain
function the notebook also calls once, so papermill runs the same code the slider runs):

* :func:`uap_view` – one grid point: every metric of :func:`medadv_lib.metrics.evaluate_uap`
  (plus the random control of the same norm; :func:`~medadv_lib.metrics.universal.grid_point_metrics`)
  and a figure of clean / amplified perturbation / perturbed images (:func:`~medadv_lib.viz.uap.uap_grid_figure`);
* :func:`uap_widget` – an ipywidgets ζ slider, L∞/L2 toggle and target dropdown whose callback is
  :func:`uap_view`.  Nothing is attacked while the slider moves: it only evaluates precomputed UAPs,
  so it stays responsive on a CPU.

The grid itself comes from :func:`medadv_lib.attacks.uap.cache.precompute_uaps` (``{(zeta, norm, target):
UAPResult}``, keys normalised by :func:`~medadv_lib.attacks.uap.cache.uap_key`: ``norm`` ``"inf"`` or ``"2"``,
``target`` ``None`` or a class index); :func:`~medadv_lib.metrics.universal.evaluate_grid` evaluates every
grid point at once (a table).

Example::

    >>> uaps = precompute_uaps(model, x_train, zetas=(0.01, 0.02), norms=("inf",), targets=(None, 2),
    ...                        stats=image_norm_stats(96), epochs=5)
    >>> metrics, fig = uap_view(model, x_test, y_test, uaps, zeta=0.02, norm="inf")
    >>> metrics["fooling_rate"], metrics["fooling_rate_balanced"], metrics["random_fooling_rate"]
    >>> uap_widget(model, x_test, y_test, uaps)        # in Jupyter: displays the controls
"""
from __future__ import annotations

import torch

from .. import LABELS
from ..attacks.uap.cache import grid_axes, target_name, uap_key, zeta_pct
from ..metrics.universal import cached_predict, grid_point_metrics
from ..viz.uap import uap_contrast, uap_grid_figure, uap_summary_html
from .static import show_static_copy

__all__ = ["uap_view", "uap_widget"]

def uap_view(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, uaps: dict, zeta, norm="inf",
             target=None, n_show: int = 3, random_control: bool = True, random_kind: str = "uniform",
             seed: int = 0, cache: dict | None = None, labels=LABELS, amplify: float | None = None,
             show: bool = True, true_scale: bool = True, random_draws: int = 1):
    """Evaluate the precomputed UAP of one grid point on ``(x, y)``; return ``(metrics, figure)``.

    Arguments:
        model (nn.Module): the classifier (the one the UAPs were built on, or another one: transfer).
        x (Tensor): ``N×C×H×W`` evaluation images in [0, 1] (the test split), ``y`` their labels.
        uaps (dict): ``{(zeta, norm, target): UAPResult}`` from
            :func:`~medadv_lib.attacks.uap.cache.precompute_uaps`.
        zeta (float): the norm ratio, e.g. 0.02; ``norm``: ``"inf"`` or ``"2"``;
        target: ``None`` (non-targeted), a class name or index.
        n_show (int): images in the figure, one per class in turn, at least one of them fooled when the
            UAP fools any. (Default: 3)
        random_control (bool): also evaluate random noise of exactly the same norm
            (:func:`~medadv_lib.attacks.random_uap`). (Default: True)
        random_kind (str): its distribution, ``"uniform"`` (default), ``"sign"``, ``"gaussian"`` or ``"shuffle"``
            (the UAP's own pixels in a random order: its L2 *and* L∞ norms).
        seed (int): seed of the random control.
        random_draws (int): draws of the control (seeds ``seed`` …), their mean and spread in ``metrics``
            (:func:`~medadv_lib.metrics.universal.grid_point_metrics`). (Default: 1)
        cache (dict): predictions are memoised here (clean ones, and one entry per distinct
            perturbation); pass the same dict to every call, as the widget does. (Default: None)
        labels: class names. amplify: fixed contrast of the perturbation column (default: per figure).
        show (bool): build the figure; ``False`` returns ``(metrics, None)``.
        true_scale (bool): the perturbation at ×1 (true scale, fixed labelled colour scale) and a 4× crop of
            clean vs perturbed beside the amplified one in every row (:func:`~medadv_lib.viz.triplets`); ``False``
            drops them. (Default: True)
    Returns:
        ``(metrics, fig)``: ``metrics`` from :func:`~medadv_lib.metrics.universal.grid_point_metrics` (every
        key of :func:`~medadv_lib.metrics.evaluate_uap`, the grid point, the random control), ``fig`` from
        :func:`~medadv_lib.viz.uap.uap_grid_figure`.
    Raises:
        ValueError: ζ not a number in (0, 1), an unknown norm or target, a grid point that was not
        precomputed (the message lists the grid), or ``x``/``y`` of different lengths.
    """
    key = uap_key(zeta, norm, target, labels)
    if len(x) != len(y):
        raise ValueError(f"shape mismatch: x has {len(x)} images but y has {len(y)} labels")
    cache = {} if cache is None else cache          # a local one still shares the clean predictions
    metrics = grid_point_metrics(model, x, y, uaps, key, random_control, random_kind, seed, cache, labels,
                                 draws=random_draws)
    if not show:
        return metrics, None
    v = uaps[key].v
    fig = uap_grid_figure(x, y, v, metrics, cached_predict(model, x, None, cache), cached_predict(model, x, v, cache),
                          n_show, labels, amplify, true_scale)
    return metrics, fig


def uap_widget(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, uaps: dict, n_show: int = 3,
               value=None, cache: dict | None = None, random_kind: str = "uniform", seed: int = 0,
               labels=LABELS):
    """A ζ slider, an L∞/L2 toggle and a target dropdown whose callback is :func:`uap_view`.

    Only the precomputed grid is shown (ζ values and norms present in ``uaps``); a combination
    that was not precomputed (e.g. a targeted UAP at a ζ the grid lacks) shows a message instead
    of attacking, so the widget never blocks.

    Arguments:
        model, x, y, uaps, n_show, random_kind, seed, labels: as :func:`uap_view`.
        value: the initial ζ (default: 0.02 if on the grid, else the middle value).
        cache (dict): shared with earlier :func:`uap_view` calls, so their results are reused.
    Returns:
        an ``ipywidgets.VBox`` (controls, a metrics line, the figure); ``.cache`` is the result cache
        and ``.update()`` redraws (what a control change calls).
    Raises:
        ValueError: an empty grid, or ``value`` not on it.
    """
    import ipywidgets as w  # lazy: widget libraries load only when a widget is shown
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    from IPython.display import display  # lazy: widget libraries load only when a widget is shown

    zetas, norms, value = grid_axes(uaps, value)
    cache = {} if cache is None else cache
    amp = uap_contrast(uaps)

    slider = w.SelectionSlider(options=[(zeta_pct(z), z) for z in zetas], value=value,
                               description="ζ", continuous_update=False)
    toggle = w.ToggleButtons(options=[("L∞" if n == "inf" else "L2", n) for n in norms], value=norms[0],
                             description="norm")
    drop = w.Dropdown(options=[("none (non-targeted)", None)] + [(lab, i) for i, lab in enumerate(labels)],
                      value=None, description="target")
    info = w.HTML()
    out = w.Output()

    def _update(_change=None):
        key = (slider.value, toggle.value, drop.value)
        if key not in uaps:
            info.value = (f"<i>not precomputed: ζ = {zeta_pct(key[0])}, {key[1]}, target "
                          f"{target_name(key[2], labels)}</i> — extend the grid with precompute_uaps(..., uaps=uaps)")
            with out:
                out.clear_output()
            return
        m, fig = uap_view(model, x, y, uaps, *key, n_show=n_show, cache=cache, random_kind=random_kind,
                          seed=seed, labels=labels, amplify=amp[key[1]])
        info.value = uap_summary_html(m)
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        shown["fig"] = fig

    shown = {}

    for c in (slider, toggle, drop):
        c.observe(_update, names="value")
    _update()
    show_static_copy(shown.get("fig"), f"ζ = {zeta_pct(slider.value)}, {'L∞' if toggle.value == 'inf' else 'L2'}, non-targeted")
    box = w.VBox([w.HBox([slider, toggle, drop]), info, out])
    box.cache = cache
    box.update = _update
    return box
