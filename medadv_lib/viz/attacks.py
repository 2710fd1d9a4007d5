"""Plots for per-image attacks: robustness curves, ρ_adv histograms, clean/perturbation/adversarial strips.

Matplotlib only; every function draws on an ``ax`` you pass (or a new figure) and returns it, so a
notebook cell stays one call long.  Rate curves carry their Wilson 95 % bands; perturbation figures show the
perturbation at ×1 (true scale) beside the amplified one.  Budgets follow the library's conventions: pixels in [0, 1],
L∞ budgets shown in grey levels (ε·255), L2 budgets in pixel units.

Example::

    >>> from medadv_lib.metrics import robustness_curve
    >>> curves = {"PGD": robustness_curve(model, x, y, "pgd", [1/255, 2/255]),
    ...           "FGSM": robustness_curve(model, x, y, "fgsm", [1/255, 2/255])}
    >>> plot_robustness_curves(curves)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import LABELS
from ..stats import median_interval  # noqa: F401  (re-exported: the figure shades it)
from . import band, classes_in_turn, rate_bounds, show_true_scale, wilson_bounds

__all__ = ["plot_robustness_curves", "median_interval", "plot_rho_hist", "adversarial_strip", "pgd_strip", "pgd_summary_html",
           "pgd_summary_text"]


def _plt():
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    return plt


# the images each rate of robustness_curve is a share of
_DENOMINATOR = {"robust_accuracy": "n", "clean_accuracy": "n", "defense_rate": "n_clean_correct",
                "attack_success_rate": "n_clean_correct"}


def plot_robustness_curves(curves: dict, metric: str = "robust_accuracy", scale: float | None = None,
                           ax=None, title: str = "", xlabel: str | None = None, clean: bool = True, **plot_kw):
    """One line per entry of ``curves``: ``metric`` against the budget ε, each with its Wilson 95 % band.

    The band (a shaded ``fill_between`` in the line's colour, one per curve) is the frame's
    ``<metric>_lo`` / ``<metric>_hi`` where present, else the Wilson 95 % interval on the images the rate is a
    share of: ``n`` for robust (and clean) accuracy, ``n_clean_correct`` for the defense and attack success rates
    (:func:`medadv_lib.viz.rate_bounds`).  A frame with neither bounds nor counts gets no band.

    Arguments:
        curves: ``{label: DataFrame}`` as returned by
            :func:`medadv_lib.metrics.robustness_curve` (columns ``eps``, ``norm``, ``metric``,
            ``clean_accuracy``, ``n``, ``n_clean_correct``).
        metric: the column on the y axis: ``"robust_accuracy"`` (default), ``"defense_rate"``
            or ``"attack_success_rate"``.
        scale: multiply ε by this for the x axis. (Default: None → 255 for L∞ curves, so the axis
            reads in grey levels, 1 for L2)
        ax: the axes to draw on. (Default: a new 4.8×3.2 in figure)
        title, xlabel: labels (a default x label names the norm and the unit).
        clean: with ``metric="robust_accuracy"``, start each line at ε = 0 with the clean
            accuracy (no attack needed there; its band is the clean accuracy's on ``n``). (Default: True)
        plot_kw: passed to ``ax.plot`` (e.g. ``linestyle="--"``).
    Returns:
        the matplotlib ``Axes`` (``ax.lines``: one line per curve; ``ax.collections``: one band per curve).
    Raises:
        ValueError: empty ``curves`` or a ``metric`` that is not a column.
    """
    if not curves:
        raise ValueError("curves is empty: pass {label: robustness_curve(...)}")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.2))
    norm = None
    for label, df in curves.items():
        if metric not in df.columns:
            raise ValueError(f"{label!r} has no column {metric!r}; columns: {list(df.columns)}")
        norm = str(df["norm"].iloc[0]) if "norm" in df.columns and len(df) else "inf"
        s = scale if scale is not None else (255.0 if norm == "inf" else 1.0)
        eps, val = list(df["eps"] * s), list(df[metric])
        bounds = rate_bounds(df, metric, _DENOMINATOR.get(metric, "n")) if len(df) else None
        if clean and metric == "robust_accuracy" and len(df) and eps[0] > 0:
            eps, val = [0.0] + eps, [float(df["clean_accuracy"].iloc[0])] + val
            if bounds is not None:
                c_lo, c_hi = (rate_bounds(df.iloc[:1], "clean_accuracy", "n")
                              if "n" in df.columns or "clean_accuracy_lo" in df.columns else ([math.nan], [math.nan]))
                bounds = (np.r_[c_lo[:1], bounds[0]], np.r_[c_hi[:1], bounds[1]])
        (line,) = ax.plot(eps, val, marker="o", ms=4, label=label, **plot_kw)
        if bounds is not None:
            band(ax, eps, *bounds, color=line.get_color())
    if xlabel is None:
        s = scale if scale is not None else (255.0 if norm == "inf" else 1.0)
        xlabel = ("L∞ budget ε (grey levels, ×1/255)" if norm == "inf" and s == 255
                  else f"{'L∞' if norm == 'inf' else 'L2'} budget ε" + ("" if s == 1 else f" (×{s:g})"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric.replace("_", " ") + "\n(bands: Wilson 95 %)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_rho_hist(rho, y, mask=None, labels=LABELS, bins: int = 20, ax=None, title: str = "", percent: bool = True):
    """Histogram of ρ_adv = ‖r‖₂/‖x‖₂ per true class (log-spaced bins), the median of each class marked (dashed)
    with its distribution-free 95 % interval shaded (order statistics: :func:`median_interval`; none for a class
    of 5 images or fewer).

    Arguments:
        rho: ``N`` values of ρ_adv (:func:`medadv_lib.metrics.rho_adv`).
        y: ``N`` true labels (indices into ``labels``).
        mask: optional ``N`` bool: keep only these images (e.g. clean-correct and fooled).
        labels: class names. (Default: :data:`medadv_lib.LABELS`)
        bins: number of log-spaced bins over the kept values. (Default: 20)
        ax: the axes to draw on. (Default: a new figure)
        title: axes title.
        percent: show ρ_adv in percent. (Default: True)
    Returns:
        the matplotlib ``Axes``; the legend gives each class's n, median and its 95 % interval.
    Raises:
        ValueError: ``rho`` and ``y`` (or ``mask``) differ in length.
    """
    plt = _plt()
    rho = torch.as_tensor(rho).detach().cpu().double().numpy().ravel()
    y = torch.as_tensor(y).detach().cpu().numpy().ravel()
    keep = np.ones_like(rho, dtype=bool) if mask is None else torch.as_tensor(mask).cpu().numpy().astype(bool).ravel()
    if not (len(rho) == len(y) == len(keep)):
        raise ValueError(f"rho, y and mask must have the same length; got {len(rho)}, {len(y)}, {len(keep)}")
    f = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    vals = rho[keep & (rho > 0)] * f
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.2))
    edges = (np.geomspace(vals.min(), vals.max(), bins + 1) if vals.size and vals.max() > vals.min()
             else bins)
    for c, name in enumerate(labels):
        v = rho[keep & (y == c) & (rho > 0)] * f
        if not v.size:
            continue
        med = float(np.median(v))
        lo, hi = median_interval(v)
        ci = f" [{lo:.2g}, {hi:.2g}]" if math.isfinite(lo) else ""
        ax.hist(v, bins=edges, histtype="step", lw=1.6, color=f"C{c}",
                label=f"{name} (n={v.size}, median {med:.2g}{unit}{ci})")
        ax.axvline(med, color=f"C{c}", ls="--", lw=1)
        if math.isfinite(lo):
            ax.axvspan(lo, hi, color=f"C{c}", alpha=0.12, lw=0, label="_nolegend_")
    if vals.size:
        ax.set_xscale("log")
    ax.set_xlabel("ρ_adv = ‖r‖₂ / ‖x‖₂" + (" (%)" if percent else "") + "; shaded: 95 % interval of each median")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def adversarial_strip(x, x_adv, y, pred_clean, pred_adv, labels=LABELS, amplify: float | None = None,
                      size: float = 1.9, suptitle: str | None = None, true_scale: bool = True):
    """Columns of images; rows: clean (true / predicted label), perturbation ``x_adv − x`` amplified,
    adversarial, and the perturbation at ×1 (true scale: pixel units on the fixed colour scale
    ±:data:`~medadv_lib.viz.TRUE_SCALE_LIM`, grey = no change, with a labelled colour bar).

    Unlike :func:`medadv_lib.viz.triplets` (which stretches every perturbation to full contrast)
    the perturbation row can use one fixed ``amplify`` factor, so a slider over ε shows the
    perturbation *growing*.

    Arguments:
        x, x_adv: ``n×1×H×W`` clean and adversarial images in [0, 1].
        y, pred_clean, pred_adv: ``n`` true labels, clean and adversarial predictions.
        labels: class names. (Default: :data:`medadv_lib.LABELS`)
        amplify: the perturbation is shown as ``0.5 + amplify·(x_adv − x)``. (Default: None →
            ``0.5 / max|x_adv − x|`` over the strip, or 1 when nothing changed)
        size: inches per image.
        suptitle: figure title.
        true_scale (bool): the fourth row, the perturbation *as it really is* (δ in pixel units on the fixed
            scale ±0.5, no amplification): next to the amplified row it shows how little of it a viewer can see.
            The course's figures keep it; ``False`` drops it. (Default: True)
    Returns:
        the matplotlib ``Figure`` (4 rows, or 3 without ``true_scale``, × n columns; red titles mark changed
        predictions).
    """
    plt = _plt()
    x, x_adv = (torch.as_tensor(t).detach().cpu().float() for t in (x, x_adv))
    y, pred_clean, pred_adv = (torch.as_tensor(t).cpu().view(-1) for t in (y, pred_clean, pred_adv))
    n = len(x)
    delta = x_adv - x
    if amplify is None:
        m = float(delta.abs().max()) if delta.numel() else 0.0
        amplify = 0.5 / m if m > 0 else 1.0
    rows = 4 if true_scale else 3
    fig, axes = plt.subplots(rows, max(n, 1), figsize=(size * max(n, 1), size * rows + (0.4 if suptitle else 0.1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        imgs = (x[i, 0], (0.5 + amplify * delta[i, 0]).clamp(0, 1), x_adv[i, 0], delta[i, 0])
        caps = (f"true {labels[int(y[i])]}\npred {labels[int(pred_clean[i])]}",
                f"perturbation ×{amplify:.0f}",
                f"adv. pred {labels[int(pred_adv[i])]}",
                "perturbation ×1\n(true scale)")
        for r in range(rows):
            ax = axes[r, i]
            if r == 3:
                show_true_scale(ax, imgs[r], colorbar=i == n - 1)
            else:
                ax.imshow(imgs[r].numpy(), cmap="gray", vmin=0, vmax=1)
            changed = r == 2 and int(pred_adv[i]) != int(pred_clean[i])
            ax.set_title(caps[r], fontsize=7, color="crimson" if changed else "black")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def pgd_strip(x, y, res, pred_clean, summary: dict, n_show: int = 4, labels=LABELS, amplify: float | None = None,
              true_scale: bool = True, model_name: str | None = None):
    """:func:`adversarial_strip` of ``n_show`` images of a PGD run (the classes in turn, at least one of them
    fooled when PGD changed any prediction: :func:`~medadv_lib.viz.classes_in_turn` with ``prefer``), titled with
    the budget and the batch's robust accuracy and defense rate with their Wilson 95 % intervals; the perturbation
    is shown amplified and at ×1 (true scale, ``true_scale``).

    Arguments:
        x, y: the attacked images and their labels; ``res`` the :class:`~medadv_lib.attacks.AttackResult`;
        pred_clean: clean predictions; ``summary`` the dict of
            :func:`medadv_lib.metrics.robustness.pgd_at_grey_levels`.
        n_show, labels, amplify, true_scale: as :func:`adversarial_strip` (``n_show`` clipped to the batch).
        model_name: named in the title when given.
    Returns:
        the matplotlib ``Figure``.
    """
    y_cpu, s = torch.as_tensor(y).detach().cpu(), summary
    changed = torch.as_tensor(res.pred).cpu().view(-1) != torch.as_tensor(pred_clean).cpu().view(-1)
    sel = classes_in_turn(y_cpu, max(0, min(int(n_show), len(y_cpu))), prefer=changed)
    title = ((f"{model_name}, " if model_name else "") + f"PGD {'L∞' if s['norm'] == 'inf' else 'L2'} ε = {s['eps_255']:g}/255"
             + ("" if s["norm"] == "inf" else f" RMS (‖δ‖₂ ≤ {s['eps']:.3g})")
             + f": robust accuracy {s['robust_accuracy']:.1%}{_ci(s['robust_accuracy'], s['n'])}, defense rate "
             + f"{s['defense_rate']:.1%}{_ci(s['defense_rate'], s.get('n_clean_correct'))} (n = {s['n']})")
    return adversarial_strip(torch.as_tensor(x).cpu()[sel], res.x_adv[sel], y_cpu[sel], pred_clean[sel],
                             res.pred[sel], labels=labels, amplify=amplify, suptitle=title, true_scale=true_scale)


def _ci(rate, n) -> str:
    """`` [lo, hi]`` of a rate's Wilson 95 % interval on ``n`` images, or ``""`` when ``n`` is unknown."""
    if not n:
        return ""
    lo, hi = wilson_bounds(rate, n)
    return f" [{lo[0]:.1%}, {hi[0]:.1%}]" if math.isfinite(lo[0]) else ""


def pgd_summary_html(s: dict, model_name: str | None = None) -> str:
    """One HTML line of a PGD budget's numbers (the dict of
    :func:`medadv_lib.metrics.robustness.pgd_at_grey_levels`; the PGD slider's line), naming the model
    when ``model_name`` is given."""
    return ((f"<b>{model_name}</b> · " if model_name else "") + f"<b>ε = {s['eps_255']:g}/255</b> ({'L∞' if s['norm'] == 'inf' else 'L2'}, "
            f"‖δ‖ ≤ {s['eps']:.3g}) · clean accuracy {s['clean_accuracy']:.2f} · "
            f"<b>robust accuracy {s['robust_accuracy']:.2f}</b> · defense rate {s['defense_rate']:.2f} · "
            f"predicted under attack: {s['adv_pred_counts']}")


def pgd_summary_text(s: dict, model_name: str | None = None) -> str:
    """The same numbers as :func:`pgd_summary_html`, as one Markdown sentence for a notebook
    (:func:`medadv_lib.claims.render`): the model, the budget, the image counts and the rates as
    percentages with their sample sizes, and where the attacked images went."""
    where = ", ".join(f"{lab} {k}" for lab, k in s["adv_pred_counts"].items())
    budget = (f"L∞ ε = {s['eps_255']:g}/255" if s["norm"] == "inf"
              else f"L2 ε = {s['eps_255']:g}/255 RMS (‖δ‖₂ ≤ {s['eps']:.3g})")
    return ((f"**{model_name}**, " if model_name else "") + f"PGD-{s['steps']} at {budget} on {s['n']} images: "
            f"clean accuracy {s['clean_accuracy']:.1%}, **robust accuracy {s['robust_accuracy']:.1%}**, defense rate "
            f"{s['defense_rate']:.1%} (of {s['n_clean_correct']} clean-correct images); predicted under attack: {where}.")
