"""Plots for universal adversarial perturbations (notebook 02): fooling rate vs ζ, UAP build curves,
the perturbations themselves.

Matplotlib only.  Rate curves carry 95 % bands (Wilson on the evaluation images; see each function), the
transfer matrix its Wilson intervals, and perturbation figures show the perturbation at ×1 (true scale) beside
the amplified one.  Inputs are what the library returns: the table of
:func:`medadv_lib.metrics.universal.evaluate_grid` (one row per grid point and kind, ``"UAP"`` or
``"random"``) and :class:`medadv_lib.attacks.UAPResult` objects (whose ``history`` holds one row per
pass or epoch).

Example::

    >>> table = evaluate_grid(model, x_test, y_test, uaps)
    >>> plot_fooling_vs_zeta(table)                                  # one panel per norm
    >>> plot_uap_history({"iterative": res_it, "SGD": res_sgd})      # fooling rate vs seconds
    >>> show_perturbations({"non-targeted": res.v, "→ COVID-19": res_t.v})
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import LABELS
from ..attacks import apply_uap
from ..attacks.uap.cache import zeta_pct
from ..metrics.transfer import RANDOM_ROW
from ..metrics.universal import HEADLINE_ZETA, HIRANO_NONTARGETED, HIRANO_TARGETED, reweighted_interval
from . import band, classes_in_turn, rate_bounds, show_true_scale, triplets, wilson_bounds

__all__ = ["plot_fooling_vs_zeta", "plot_uap_history", "show_perturbations"]

_NAMES = {"fooling_rate": "fooling rate (vs clean predictions)",
          "fooling_rate_balanced": "balanced fooling rate (mean over classes)",
          "fooling_rate_vs_labels": "fooling rate vs true labels",
          "fooling_rate_reweighted": "re-weighted to the paper's test mix (100/100/31)",
          "fooling_rate_vs_labels_reweighted": "vs labels, re-weighted to 100/100/31",
          "target_success_rate": "target success rate"}


def _plt():
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    return plt


def _grid_bounds(d, metric: str):
    """95 % bounds of one line of :func:`plot_fooling_vs_zeta` (see its docstring), or None without evidence."""
    if f"{metric}_lo" in d.columns or metric != "fooling_rate_balanced":
        return rate_bounds(d, metric, "n")
    labels = [c[len("fooling_rate["):-1] for c in d.columns if c.startswith("fooling_rate[")]
    if not labels or any(f"n[{lab}]" not in d.columns for lab in labels):
        return None
    lo, hi = [], []
    for _, r in d.iterrows():
        counts = [(int(round(float(r[f"fooling_rate[{lab}]"]) * int(r[f"n[{lab}]"]))), int(r[f"n[{lab}]"]))
                  if int(r[f"n[{lab}]"]) > 0 and math.isfinite(float(r[f"fooling_rate[{lab}]"])) else None
                  for lab in labels]
        kept = [(lab, c) for lab, c in zip(labels, counts) if c is not None]
        iv = (reweighted_interval([c for _, c in kept], [lab for lab, _ in kept], mix={lab: 1 for lab, _ in kept})
              if kept else None)
        lo.append(iv[0] if iv else math.nan)
        hi.append(iv[1] if iv else math.nan)
    return np.asarray(lo), np.asarray(hi)


def plot_fooling_vs_zeta(table, metrics=("fooling_rate", "fooling_rate_balanced"), target: str = "none",
                         axes=None, title: str = "", ceiling=None, paper: bool = False):
    """Fooling rate against ζ (in %), UAP (solid) and random control (dashed), one panel per norm (same y
    axis), each line with its 95 % band, with optional reference lines; one legend under the panels (or one per
    panel on given ``axes``).

    Bands (shaded, the line's colour, one per line): the table's ``<metric>_lo`` / ``<metric>_hi`` where present;
    else, for a share of all evaluation images (``fooling_rate``, ``fooling_rate_vs_labels``,
    ``target_success_rate``), its Wilson 95 % interval on the table's ``n`` images; for
    ``fooling_rate_balanced`` (a mean of per-class rates, not one share) the equal-weight interval of
    :func:`~medadv_lib.metrics.universal.reweighted_interval` from the per-class rates and counts
    (``fooling_rate[<class>]``, ``n[<class>]``).  A table without those columns gets no band.

    Arguments:
        table: a DataFrame with columns ``zeta``, ``norm``, ``target``, ``kind`` and the ``metrics``
            (as returned by :func:`medadv_lib.metrics.universal.evaluate_grid`).
        metrics: the columns to draw, one colour each. (Default: plain and balanced fooling rate)
        target: which rows: ``"none"`` (non-targeted, default) or a class name (then draw
            ``metrics=("target_success_rate",)``).
        axes: a sequence of axes, one per norm in the table (default: a new figure).
        title: figure title.
        ceiling: the plain-rate ceiling, drawn as a dotted line in the plain rate's colour: a number, or
            ``{class: ceiling}`` (:func:`~medadv_lib.metrics.universal.plain_rate_ceilings`), of which the
            largest is drawn and named ("every image → class").  Only for the non-targeted rows.
            (Default: None, no line)
        paper (bool): draw the paper's reference (Hirano et al. 2020 at ζ = 2%: > 85% non-targeted fooling,
            or > 90% target success for a targeted ``target``) as a grey dash-dotted line with a star at
            ζ = 2%. (Default: False)
    Returns:
        the matplotlib ``Figure``.
    Raises:
        ValueError: no row for ``target``, a missing column, or too few ``axes``.
    """
    plt = _plt()
    rows = table[table["target"] == target]
    if rows.empty:
        raise ValueError(f"no rows with target {target!r}; targets in the table: {sorted(set(table['target']))}")
    for m in metrics:
        if m not in rows.columns:
            raise ValueError(f"the table has no column {m!r}; columns: {list(rows.columns)}")
    norms = [n for n in ("inf", "2") if (rows["norm"] == n).any()]
    own = axes is None
    n_entries = 2 * len(metrics) + (ceiling is not None and target == "none") + bool(paper)
    legend_rows = -(-n_entries // 2)
    if own:
        fig, axes = plt.subplots(1, len(norms), figsize=(4.6 * len(norms), 3.3 + 0.17 * legend_rows), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(axes)
        if len(axes) < len(norms):
            raise ValueError(f"{len(norms)} norms in the table but {len(axes)} axes given")
        fig = axes[0].figure
    for ax, norm in zip(axes, norms):
        sub = rows[rows["norm"] == norm]
        for i, m in enumerate(metrics):
            for kind, style in (("UAP", "o-"), ("random", "s--")):
                d = sub[sub["kind"] == kind].sort_values("zeta")
                if not d.empty:
                    ax.plot(100 * d["zeta"], d[m], style, color=f"C{i}", alpha=1.0 if kind == "UAP" else 0.7,
                            label=f"{kind}: {_NAMES.get(m, m)}")
                    bounds = _grid_bounds(d, m)
                    if bounds is not None:
                        band(ax, 100 * d["zeta"], *bounds, color=f"C{i}", alpha=0.18 if kind == "UAP" else 0.10)
        if ceiling is not None and target == "none":
            lab, c = (max(ceiling.items(), key=lambda kv: kv[1]) if isinstance(ceiling, dict) else (None, ceiling))
            ax.axhline(float(c), color="C0", ls=":", lw=1.2, label=f"ceiling of the plain rate: {float(c):.2f}"
                       + (f" (every image → {lab})" if lab is not None else ""))
        if paper:
            ref = HIRANO_NONTARGETED if target == "none" else HIRANO_TARGETED
            what = "fooling" if target == "none" else "target success"
            ax.axhline(ref, color="grey", ls="-.", lw=1)
            ax.plot([100 * HEADLINE_ZETA], [ref], "*", color="grey", ms=10,
                    label=f"Hirano et al.: > {ref:.0%} {what} at ζ = {HEADLINE_ZETA:.0%}")
        ax.set_xlabel("ζ = ‖v‖ / mean image norm (%)")
        ax.set_ylabel("rate on the evaluation images\n(bands: 95 % intervals)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"{'L∞' if norm == 'inf' else 'L2'} UAPs" + ("" if target == "none" else f" → {target}"))
    if own:        # one legend under the panels (they share every entry), clear of the lines and reference lines
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    else:
        for ax in axes[:len(norms)]:
            ax.legend(fontsize=6.5, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.17 * legend_rows + 0.08) / fig.get_figheight() if own else 0, 1, 1))
    return fig


def plot_uap_history(results: dict, metric: str = "fooling_rate", x: str = "seconds", ax=None, title: str = ""):
    """How a UAP's rate grows while it is built, one line per :class:`UAPResult`: on its build images, or on
    the held-out images of a builder that stops on a plateau (the course's SGD UAP; its history says ``on``).
    Each line has its Wilson 95 % band on the images it was measured on (``params["holdout"]`` held-out images,
    else ``params["n"]`` build images; a result that records neither gets no band); the starting point (v = 0
    fools nothing, by construction) has none.

    Arguments:
        results: ``{label: UAPResult}`` (e.g. ``{"iterative (FGSM step)": r1, "SGD": r2}``).
        metric: ``"fooling_rate"`` (default) or ``"target_success_rate"`` (targeted UAPs).
        x: ``"seconds"`` (cumulative wall-clock time, default), ``"pass"`` (pass / epoch / measurement
            number) or ``"step"`` (gradient steps; SGD UAPs).
        ax: the axes to draw on (default: a new figure). title: the axes title.
    Returns:
        the matplotlib ``Axes``.
    Raises:
        ValueError: empty ``results``, an unknown ``x``, or a history without ``metric``.
    """
    if not results:
        raise ValueError("results is empty: pass {label: UAPResult}")
    if x not in ("seconds", "pass", "step"):
        raise ValueError(f"x must be 'seconds', 'pass' or 'step'; got {x!r}")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.2))
    for label, res in results.items():
        hist = res.history
        if not hist or hist[0].get(metric) is None:
            raise ValueError(f"{label!r} has no {metric!r} in its history")
        if hist[0].get(x) is None:
            raise ValueError(f"{label!r} has no {x!r} in its history (x='step' needs an SGD UAP)")
        xs = [0.0] + [float(h[x]) for h in hist]
        (line,) = ax.plot(xs, [0.0] + [h[metric] for h in hist], "o-", ms=3, label=label)
        params = getattr(res, "params", None) or {}
        n = params.get("holdout") if hist[0].get("on") == "holdout" else params.get("n")
        if n:
            lo, hi = wilson_bounds([h[metric] for h in hist], n)
            band(ax, xs, np.r_[math.nan, lo], np.r_[math.nan, hi], color=line.get_color())
    ax.set_xlabel({"seconds": "seconds (cumulative)", "pass": "pass / epoch", "step": "gradient steps"}[x])
    if x in ("pass", "step"):
        from matplotlib.ticker import MaxNLocator  # lazy: matplotlib loads with the first figure
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    held = all(r.history[0].get("on") == "holdout" for r in results.values())
    mixed = not held and any(r.history[0].get("on") == "holdout" for r in results.values())
    ax.set_ylabel(_NAMES.get(metric, metric) + ("\non held-out training images" if held else
                                                "\non build (or held-out) images" if mixed else "\non the build images")
                  + " (bands: Wilson 95 %)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return ax


def show_perturbations(vs: dict, amplify: float | None = None, size: float = 2.2, suptitle: str | None = None,
                       true_scale: bool = True):
    """The perturbations themselves, one column each: top row amplified, grey 0.5 = no change, all at the same
    contrast; bottom row the same perturbations at ×1 (true scale: ``v`` in pixel units of the [0, 1] image on
    the fixed colour scale ±:data:`~medadv_lib.viz.TRUE_SCALE_LIM`, grey = no change, with a labelled colour
    bar) — what a viewer would really see of them.

    Arguments:
        vs: ``{title: v}`` with each ``v`` a ``1×1×H×W`` (or ``H×W``) tensor or a ``UAPResult``.
        amplify: contrast factor of the top row; default ``0.5 / max |v|`` over all of them, so the strongest
            pixel reaches black or white and the panels can be compared.
        size: inches per panel. suptitle: figure title.
        true_scale (bool): the row at ×1.  The course's figures keep it; ``False`` drops it. (Default: True)
    Returns:
        the matplotlib ``Figure`` (two rows, or one without ``true_scale``).
    """
    if not vs:
        raise ValueError("vs is empty: pass {title: v}")
    plt = _plt()
    vv = [torch.as_tensor(getattr(v, "v", v)).detach().cpu().float().reshape(*torch.as_tensor(
        getattr(v, "v", v)).shape[-2:]) for v in vs.values()]
    scale = amplify or 0.5 / max(max(float(v.abs().max()) for v in vv), 1e-12)
    rows, ncols = (2 if true_scale else 1), len(vv)
    fig, axes = plt.subplots(rows, ncols, figsize=(size * ncols + (0.6 if true_scale else 0),
                                                    (size + 0.3) * rows + (0.4 if suptitle else 0)), squeeze=False)
    for j, (t, v) in enumerate(zip(vs, vv)):
        ax = axes[0, j]
        ax.imshow((0.5 + scale * v).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{t}\n(×{scale:.0f})", fontsize=8)
        ax.axis("off")
        if true_scale:
            ax = axes[1, j]
            show_true_scale(ax, v, colorbar=j == ncols - 1)
            ax.set_title(f"{t}\n(×1, true scale)", fontsize=8)
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def uap_grid_figure(x, y, v, metrics: dict, pred_clean, pred_adv, n_show: int = 3, labels=LABELS,
                    amplify: float | None = None, true_scale: bool = True):
    """Clean / amplified perturbation / perturbed rows for ``n_show`` images the model classifies correctly
    when clean (all images when it gets none right), so a ✗ always means "the UAP broke a correct diagnosis"
    (one per class in turn, with at least one image whose prediction the UAP changed whenever there is one:
    :func:`~medadv_lib.viz.classes_in_turn` with ``prefer``), titled with the clean and perturbed
    predictions (✗ = changed) and the grid point's metrics (a dict from
    :func:`~medadv_lib.metrics.universal.grid_point_metrics`; the fooling / target success rate with its Wilson
    95 % interval on the ``n`` evaluation images).  ``true_scale`` (default True; ``False`` drops it) shows the
    perturbation at ×1 on its fixed, labelled scale and a 4× crop of clean vs perturbed beside the amplified one
    (:func:`~medadv_lib.viz.triplets`).  Returns the figure."""
    pc, pa = (torch.as_tensor(p).detach().cpu().view(-1) for p in (pred_clean, pred_adv))
    yc = torch.as_tensor(y).detach().cpu().view(-1)
    pool = torch.nonzero(pc == yc).flatten()
    pool = pool if len(pool) else torch.arange(len(yc))
    idx = pool[classes_in_turn(yc[pool], int(n_show), prefer=(pa != pc)[pool])].tolist()
    xs, v = x[idx].detach().cpu(), v.detach().cpu()
    titles = [(f"{labels[int(pred_clean[i])]} (true {labels[int(y[i])]})",
               labels[int(pred_adv[i])] + (" ✗" if int(pred_adv[i]) != int(pred_clean[i]) else "")) for i in idx]
    fig = triplets(xs, v, apply_uap(xs, v), row_titles=titles, amplify=amplify, true_scale=true_scale)
    m, target = metrics, metrics.get("target")
    head = (f"{'L∞' if m['norm'] == 'inf' else 'L2'} UAP, ζ = {zeta_pct(m['zeta'])} "
            f"(‖v‖{'∞' if m['norm'] == 'inf' else '₂'} ≤ {m['eps']:.3g}), "
            f"target {m['target_name']}\n")
    rnd = "random_fooling_rate" in m
    if target is None:
        head += (f"fooling rate {m['fooling_rate']:.1%}{_ci(m['fooling_rate'], m.get('n'))} "
                 f"(balanced {m['fooling_rate_balanced']:.1%})"
                 + (f" · random {m['random_fooling_rate']:.1%}" if rnd else ""))
    else:
        head += (f"target success rate {m['target_success_rate']:.1%}{_ci(m['target_success_rate'], m.get('n'))}"
                 + (f" · random {m['random_target_success_rate']:.1%}" if rnd else ""))
    fig.suptitle(head + f" (n = {m['n']})", fontsize=9)
    fig.tight_layout()
    return fig


def _ci(rate, n) -> str:
    """`` [lo, hi]`` of a rate's Wilson 95 % interval on ``n`` images, or ``""`` when ``n`` is unknown."""
    if not n or rate is None:
        return ""
    lo, hi = wilson_bounds(rate, n)
    return f" [{lo[0]:.1%}, {hi[0]:.1%}]" if math.isfinite(lo[0]) else ""


def uap_contrast(uaps: dict) -> dict:
    """One fixed contrast factor per norm kind of a UAP grid ``{(zeta, norm, target): UAPResult}``:
    ``{norm: 0.5 / max ‖v‖∞ over that norm's UAPs}``, so the perturbation column of
    :func:`uap_grid_figure` shows a UAP *growing* as a slider moves over ζ."""
    norms = dict.fromkeys(k[1] for k in uaps)
    return {n: 0.5 / max(max(float(r.v.abs().max()) for k, r in uaps.items() if k[1] == n), 1e-12) for n in norms}


def uap_summary_html(m: dict) -> str:
    """One HTML line of a grid point's metrics (a dict from
    :func:`~medadv_lib.metrics.universal.grid_point_metrics`): ζ, norm and budget, the fooling rates
    and the random control, and for a targeted UAP its target success rate (the UAP slider's line)."""
    line = (f"<b>ζ = {zeta_pct(m['zeta'])}</b> ({'L∞' if m['norm'] == 'inf' else 'L2'}, ‖v‖ ≤ {m['eps']:.3g})"
            " · "
            f"fooling rate {m['fooling_rate']:.2f} · balanced {m['fooling_rate_balanced']:.2f} · "
            f"vs labels {m['fooling_rate_vs_labels']:.2f} · random control {m['random_fooling_rate']:.2f}")
    if m.get("target") is not None:
        line += (f" · <b>target success rate ({m['target_name']}) {m['target_success_rate']:.2f}</b> "
                 f"(random {m['random_target_success_rate']:.2f})")
    return line


__all__ += ["uap_grid_figure", "uap_contrast", "uap_summary_html"]


def plot_transfer_matrix(matrix, ax=None, title: str = "", cmap: str = "mako_r", fmt: str = ".2f"):
    """The transferability matrix of :func:`medadv_lib.metrics.transfer.transfer_matrix` as an annotated
    heat map (seaborn): rows = the model each UAP was built on, columns = the model it is applied to;
    the diagonal (white-box) is outlined, and the random-control row is set off below a line.  Each cell is
    annotated with its rate and, under it, its Wilson 95 % interval on the matrix's ``n`` images (``attrs["n"]``;
    the intervals :func:`~medadv_lib.metrics.transfer.transfer_summary` judges "beats the random control" by),
    for a metric that is one share of those images (``fooling_rate``, ``fooling_rate_vs_labels``); the
    balanced and re-weighted rates (means of per-class rates) and a matrix without ``n`` get the rate alone,
    and the title says so.

    Arguments:
        matrix: the DataFrame (its last row the random control, ``attrs["metric"]`` the cell value).
        ax: the axes to draw on (default: a new figure sized to the matrix). title: the axes title.
        cmap: a colour map; the scale is fixed to [0, 1] so that matrices can be compared.
        fmt: the number format of the annotations.
    Returns:
        the matplotlib ``Axes``.
    Raises:
        ValueError: an empty matrix.
    """
    import seaborn as sns  # lazy: seaborn takes seconds to import
    from matplotlib.patches import Rectangle  # lazy: matplotlib loads with the first figure

    if matrix is None or matrix.empty:
        raise ValueError("the matrix is empty: pass the DataFrame of transfer_matrix(models, uaps, x, y)")
    plt = _plt()
    metric = matrix.attrs.get("metric", "fooling_rate")
    n = int(matrix.attrs.get("n") or 0)
    values = matrix.astype(float).to_numpy()
    with_ci = n > 0 and metric in ("fooling_rate", "fooling_rate_vs_labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.3 * matrix.shape[1], 1.0 + (0.8 if with_ci else 0.55) * matrix.shape[0]))
    if with_ci:
        lo, hi = wilson_bounds(values.ravel(), n)
        annot = np.array([f"{v:{fmt}}\n[{a:{fmt}}, {b:{fmt}}]" if math.isfinite(v) else ""
                          for v, a, b in zip(values.ravel(), lo, hi)]).reshape(values.shape)
    else:
        annot = True
    sns.heatmap(matrix.astype(float), annot=annot, fmt="" if with_ci else fmt, vmin=0, vmax=1, cmap=cmap, ax=ax,
                linewidths=0.5, cbar_kws={"label": _NAMES.get(metric, metric)},
                annot_kws={"fontsize": 7.5 if with_ci else 9})
    rows, cols = list(matrix.index), list(matrix.columns)
    for j, c in enumerate(cols):                                  # white-box cells: the model's own UAP
        if c in rows:
            ax.add_patch(Rectangle((j, rows.index(c)), 1, 1, fill=False, edgecolor="C3", lw=2))
    if RANDOM_ROW in rows:
        ax.axhline(rows.index(RANDOM_ROW), color="white", lw=4)
    ax.set_xlabel("UAP applied to (target)")
    ax.set_ylabel("UAP built on (source)")
    ax.tick_params(axis="x", rotation=20)
    ax.tick_params(axis="y", rotation=0)
    note = ("[Wilson 95 % interval]" if with_ci else
            "no interval: not one share of the images" if n > 0 else "no interval: n unknown")
    ax.set_title((title or f"transfer of UAPs ({_NAMES.get(metric, metric)}; n = {matrix.attrs.get('n', '?')})")
                 + f"\ncells: rate {note}", fontsize=9)
    return ax
__all__ += ["plot_transfer_matrix"]
