"""Plots for the defenses of notebooks 04 and 05: defense rates with intervals, attention maps, the sparsity
curve; UAP fine-tuning round by round and the cross-threat matrix.

Each function takes the tidy tables of :mod:`medadv_lib.metrics.defense` (or tensors), draws on a
new figure (or the ``ax`` given) and returns it.  Every rate a verdict reads carries its Wilson 95 % interval
(error bars, bands, or ``[lo, hi]`` in a heat map's cells) from the table's ``_lo`` / ``_hi`` columns, or from its
``n`` images where the table has no bounds.
"""
from __future__ import annotations

import math

import numpy as np

from .. import LABELS
from . import band, rate_bounds

__all__ = ["plot_defense_rates", "plot_attention_maps", "plot_sparsity_curve", "plot_rounds", "plot_cross_threat"]


def _plt():
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    return plt


def _err(rate, lo, hi):
    """Error-bar lengths below and above ``rate`` (matplotlib refuses negative ones, so a bound rounded a hair
    past its rate counts as zero)."""
    err = np.vstack([np.asarray(rate, float) - np.asarray(lo, float), np.asarray(hi, float) - np.asarray(rate, float)])
    return np.clip(err, 0.0, None)


def plot_defense_rates(table, attacks=("deepfool", "worst-l2", "uap", "transfer"), paper: dict | None = None):
    """Left: the L∞ defense rate against ε (in grey levels) per model: the worst case over the suite (solid, with
    Wilson 95 % error bars, where it ran; each model's points nudged sideways by a few hundredths of a grey level so
    that arms with equal rates do not hide each other) and PGD-10 alone (dashed, faint, with its Wilson 95 % band); right: the
    defense rate of each model against the other attacks, grouped by attack, with Wilson 95 % error bars.  The
    intervals are the table's ``defense_rate_lo`` / ``_hi`` (on the clean-correct images).
    ``paper``: reference lines, e.g. ``{"Chen et al. PGD": 0.7718}`` (a name containing "PGD" goes on the
    left panel, any other on the right).  Returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    models = list(dict.fromkeys(table.model))
    dodge = 0.06 * (np.arange(len(models)) - (len(models) - 1) / 2)   # ε nudged apart per model: equal arms stay visible
    for i, m in enumerate(models):
        t = table[(table.model == m) & (table.attack == "pgd")].sort_values("eps")
        a1.plot(t.eps * 255, t.defense_rate, ls="--", marker=".", color=f"C{i}", alpha=0.4)
        if len(t):
            band(a1, t.eps * 255, t.defense_rate_lo, t.defense_rate_hi, color=f"C{i}", alpha=0.10)
        w = table[(table.model == m) & (table.attack == "worst")].sort_values("eps")
        a1.errorbar(w.eps * 255 + dodge[i], w.defense_rate, yerr=_err(w.defense_rate, w.defense_rate_lo, w.defense_rate_hi),
                    marker="o", capsize=3, label=m, color=f"C{i}")
    a1.set(xlabel="L∞ budget ε (grey levels, ×1/255)", ylabel="defense rate (clean-correct images)\n"
                                                              "(bars, bands: Wilson 95 %)",
           title="worst case over the suite (solid); PGD-10 alone (dashed)", ylim=(-0.02, 1.02))
    a1.legend(fontsize=8)
    width = 0.8 / max(len(models), 1)
    present = [a for a in attacks if (table.attack == a).any()]
    for i, m in enumerate(models):         # an attack at several budgets (transfer): its largest budget
        t = table[table.model == m].sort_values("eps").drop_duplicates("attack", keep="last").set_index("attack")
        rates = [t.loc[a, "defense_rate"] for a in present]
        err = _err(rates, [t.loc[a, "defense_rate_lo"] for a in present], [t.loc[a, "defense_rate_hi"] for a in present])
        a2.bar(np.arange(len(present)) + i * width, rates, width, yerr=err, capsize=2, label=m)
    a2.set_xticks(np.arange(len(present)) + width * (len(models) - 1) / 2,
                  [f"{a} ({t.loc[a, 'eps'] * 255:g}/255)" if a == "transfer" else a for a in present])
    a2.set(title="other attacks (white-box unless named)")
    for name, v in (paper or {}).items():             # PGD references on the PGD panel, the rest on the right
        ax = a1 if "pgd" in name.lower() else a2
        ax.axhline(v, ls="--", c="grey", lw=1)
        ax.text(ax.get_xlim()[0], v, f" {name} {v:.1%}", va="bottom", fontsize=8, color="grey")
    fig.tight_layout()
    return fig


def plot_attention_maps(x, maps, y=None, labels=LABELS, ncols: int = 6, title: str = ""):
    """X-rays (top row, titled with the true class) and the same X-rays with the CBAM spatial gate (``N×1×H×W``,
    1 = unchanged) overlaid (bottom row): red where the gate amplifies features, blue where it suppresses them, on
    one colour scale stretched to the largest |gate − 1| (the colour bar says how far).  Images, no rate: no
    interval (where the gates lie is read from :func:`medadv_lib.defenses.gate_by_region`).  Returns the figure."""
    plt = _plt()
    n = min(len(x), ncols)
    fig, axes = plt.subplots(2, n, figsize=(2.1 * n, 4.4), squeeze=False)
    lim = float((maps[:n] - 1).abs().max()) or 1.0
    for i in range(n):
        axes[0, i].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(labels[int(y[i])] if y is not None else "", fontsize=9)
        axes[1, i].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        im = axes[1, i].imshow(maps[i, 0] - 1, cmap="coolwarm", vmin=-lim, vmax=lim, alpha=0.6)
        for a in axes[:, i]:
            a.axis("off")
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label=f"gate − 1 (colours stretched to ±{lim:.3f})")
    if title:
        fig.suptitle(title)
    return fig


def plot_sparsity_curve(sweep, ax=None):
    """Clean accuracy and the defense rate (worst case over the suite where the sweep has it, else PGD-10) against
    the unstructured sparsity: the defense rate with Wilson 95 % error bars (``defense_rate_lo`` / ``_hi``), the clean
    accuracy with its Wilson 95 % band (``clean_accuracy_lo`` / ``_hi``, else on the sweep's ``n`` images; no band
    when the sweep has neither).
    ``sweep``: a DataFrame with ``sparsity, clean_accuracy, defense_rate, defense_rate_lo, defense_rate_hi, eps``
    (and ``n``).  Returns the figure."""
    plt = _plt()
    what = "PGD-10"
    if "attack" in sweep and (sweep.attack == "worst").any():
        sweep, what = sweep[sweep.attack == "worst"], "worst-case"
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    s = sweep.sort_values("sparsity")
    clean = s.drop_duplicates("sparsity")
    bounds = rate_bounds(clean, "clean_accuracy", "n")
    (line,) = ax.plot(clean.sparsity, clean.clean_accuracy, "o-",
                      label="clean accuracy" + (" (Wilson 95 % band)" if bounds is not None else ""))
    if bounds is not None:
        band(ax, clean.sparsity, *bounds, color=line.get_color())
    # one curve per budget in grey levels: rows reused from the ablation carry the same ε as a float that
    # can differ in its last bits from the sweep's own (2/255 computed twice), which split one curve in two
    for e, t in s.groupby((s["eps"] * 255).round(3)):
        ax.errorbar(t.sparsity, t.defense_rate, yerr=_err(t.defense_rate, t.defense_rate_lo, t.defense_rate_hi),
                    marker="s", capsize=3, label=f"{what} defense rate, ε = {e:g}/255")
    ax.set(xlabel="share of weights pruned", ylabel="rate (bars: Wilson 95 %)", ylim=(-0.02, 1.02),
           title="pruning: accuracy vs robustness")
    ax.legend(fontsize=8)
    return ax.figure


def _ref(value):
    """``(rate, lo, hi)`` of a reference given as a number or as a ``(rate, lo, hi)`` triple (NaN bounds if none)."""
    if isinstance(value, (tuple, list)):
        return tuple(float(v) for v in value) if len(value) == 3 else (float(value[0]), math.nan, math.nan)
    return float(value), math.nan, math.nan


def plot_rounds(rounds, others: dict | None = None):
    """UAP fine-tuning round by round (a :func:`medadv_lib.course.rounds_table`): left, the fooling
    rate of the UAP each round was trained against ("old"), of a fresh white-box UAP built against
    the round's model, and of random noise of the same norm, with Wilson 95 % error bars; right,
    clean accuracy with its Wilson 95 % band (``clean_accuracy_lo`` / ``_hi``, else on the table's ``n`` test
    images) and balanced accuracy (with its band where the table has ``balanced_accuracy_lo`` / ``_hi``, e.g. a
    bootstrap interval: a mean of per-class rates is not one share of ``n``).
    ``others``: ``{name: (fresh fooling rate, clean accuracy)}`` of other defenses, drawn as horizontal reference
    lines on both panels; either number may be a ``(rate, lo, hi)`` triple, whose interval is then shaded around
    the line.  Returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    r = rounds.sort_values("round")
    for col, label, style in (("fresh_uap_fooling_rate", "fresh UAP (white-box, rebuilt each round)", "o-"),
                              ("old_uap_fooling_rate", "old UAP (the one the round trained on)", "s--"),
                              ("random_fooling_rate", "random noise, same norm", "^:")):
        t = r.dropna(subset=[col])
        a1.errorbar(t["round"], t[col], yerr=_err(t[col], t[f"{col}_lo"], t[f"{col}_hi"]), fmt=style, capsize=3,
                    label=label)
    for col, style, label in (("clean_accuracy", "o-", "clean accuracy"), ("balanced_accuracy", "s--", "balanced accuracy")):
        # balanced accuracy is a mean of per-class rates: only bounds the table carries, never Wilson on n
        bounds = rate_bounds(r, col, "n") if col == "clean_accuracy" or f"{col}_lo" in r.columns else None
        (line,) = a2.plot(r["round"], r[col], style, label=label + (" (95 % band)" if bounds is not None else ""))
        if bounds is not None:
            band(a2, r["round"], *bounds, color=line.get_color())
    for i, (name, (fr, acc)) in enumerate((others or {}).items()):
        c = f"C{i + 3}"
        for ax, value, lab in ((a1, fr, f"{name}: fresh UAP"), (a2, acc, f"{name}")):
            v, lo, hi = _ref(value)
            ax.axhline(v, color=c, lw=1, ls="-.", label=lab + (" (95 % band)" if math.isfinite(lo) else ""))
            if math.isfinite(lo) and math.isfinite(hi):
                ax.axhspan(lo, hi, color=c, alpha=0.10, lw=0, label="_nolegend_")
    a1.set(xlabel="fine-tuning round (0 = undefended)", ylabel="fooling rate (test split)\n(bars: Wilson 95 %)",
           ylim=(-0.02, 1.02), title="ζ = 2 % UAPs against the fine-tuned model")
    a2.set(xlabel="fine-tuning round (0 = undefended)", ylabel="accuracy (test split)\n(band: Wilson 95 %)",
           ylim=(0.4, 1.0), title="clean accuracy")
    for a in (a1, a2):
        a.set_xticks(list(r["round"]))
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cross_threat(matrix, ax=None):
    """The cross-threat matrix (a :func:`medadv_lib.course.cross_threat_table`) as a heat map in which
    higher always means more robust: 1 − fooling rate of the model's own UAP, 1 − success of its
    targeted UAP → COVID-19 (among images not already predicted COVID-19), and the L∞ defense rates (the worst case
    over the attack suite where it ran, PGD-10 at the other budgets);
    each cell annotated with its value and, under it, its Wilson 95 % interval (the matrix's ``<column>_lo`` /
    ``_hi``, flipped with the value for the 1 − rate columns; a column without bounds shows the value alone).
    Returns the figure."""
    import seaborn as sns  # lazy: seaborn takes seconds to import
    plt = _plt()
    cols = {"uap_fooling_rate": ("UAP ζ=2%\n1 − fooling", True), "uap_to_covid_success": ("UAP→COVID\n1 − success*", True)}
    worst = {c[5:-13] for c in matrix.columns if c.startswith("worst") and c.endswith("_defense_rate")}
    for c in matrix.columns:          # the worst case over the suite where it ran, PGD-10 at the other budgets
        if c.startswith("pgd") and c.endswith("_defense_rate") and c[3:-13] not in worst:
            cols[c] = (f"PGD-10 {c[3:-13]}/255\ndefense rate", False)
        elif c.startswith("worst") and c.endswith("_defense_rate"):
            cols[c] = (f"worst case {c[5:-13]}/255\ndefense rate", False)
    data = np.column_stack([1 - matrix[c] if flip else matrix[c] for c, (_, flip) in cols.items()]).astype(float)
    annot = np.empty(data.shape, dtype=object)
    for j, (c, (_, flip)) in enumerate(cols.items()):
        has = f"{c}_lo" in matrix.columns and f"{c}_hi" in matrix.columns
        lo = np.asarray(matrix[f"{c}_lo"], float) if has else np.full(len(matrix), np.nan)
        hi = np.asarray(matrix[f"{c}_hi"], float) if has else np.full(len(matrix), np.nan)
        if flip:
            lo, hi = 1 - hi, 1 - lo
        for i in range(len(matrix)):
            v = data[i, j]
            annot[i, j] = ("" if not math.isfinite(v) else f"{v:.2f}\n[{lo[i]:.2f}, {hi[i]:.2f}]"
                           if math.isfinite(lo[i]) and math.isfinite(hi[i]) else f"{v:.2f}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 * len(cols) + 2.5, 0.8 * len(matrix) + 1.6))
    sns.heatmap(data, annot=annot, fmt="", vmin=0, vmax=1, cmap="viridis", ax=ax,
                xticklabels=[lab for lab, _ in cols.values()], yticklabels=list(matrix.index),
                cbar_kws={"label": "higher = more robust"}, annot_kws={"fontsize": 7.5})
    ax.set(title="which defense for which threat (white-box, each model attacked itself)\n"
                 "cells: value [Wilson 95 % interval]")
    ax.figure.text(0.01, 0.01, "* among images not already predicted COVID-19", fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
    ax.figure.tight_layout()
    return ax.figure
