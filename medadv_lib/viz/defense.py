"""Plots for the defenses of notebooks 04 and 05: defense rates with intervals, attention maps, the sparsity
curve; UAP fine-tuning round by round and the cross-threat matrix.

Each function takes the tidy tables of :mod:`medadv_lib.metrics.defense` (or tensors), draws on a
new figure (or the ``ax`` given) and returns it.
"""
from __future__ import annotations

import numpy as np

from .. import LABELS

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
    """Left: the L∞ defense rate against ε (in grey levels) per model, Wilson 95 % error bars: the worst case over
    the suite (solid, where it ran) and PGD-10 alone (dashed, faint); right: the defense rate of each model against the other attacks, grouped by attack.
    ``paper``: reference lines, e.g. ``{"Chen et al. PGD": 0.7718}`` (a name containing "PGD" goes on the
    left panel, any other on the right).  Returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    models = list(dict.fromkeys(table.model))
    for i, m in enumerate(models):
        t = table[(table.model == m) & (table.attack == "pgd")].sort_values("eps")
        a1.plot(t.eps * 255, t.defense_rate, ls="--", marker=".", color=f"C{i}", alpha=0.4)
        w = table[(table.model == m) & (table.attack == "worst")].sort_values("eps")
        a1.errorbar(w.eps * 255, w.defense_rate, yerr=_err(w.defense_rate, w.defense_rate_lo, w.defense_rate_hi),
                    marker="o", capsize=3, label=m, color=f"C{i}")
    a1.set(xlabel="L∞ budget ε (grey levels, ×1/255)", ylabel="defense rate (clean-correct images)",
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
    """X-rays with the CBAM spatial gate (``N×1×H×W``, 1 = unchanged) overlaid: red where the gate
    amplifies features, blue where it suppresses them.  Returns the figure."""
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
    """Clean accuracy and the defense rate (worst case over the suite where the sweep has it, else PGD-10; with
    intervals) against the unstructured sparsity.
    ``sweep``: a DataFrame with ``sparsity, clean_accuracy, defense_rate, defense_rate_lo, defense_rate_hi, eps``."""
    plt = _plt()
    what = "PGD-10"
    if "attack" in sweep and (sweep.attack == "worst").any():
        sweep, what = sweep[sweep.attack == "worst"], "worst-case"
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    s = sweep.sort_values("sparsity")
    ax.plot(s.sparsity, s.clean_accuracy, "o-", label="clean accuracy")
    # one curve per budget in grey levels: rows reused from the ablation carry the same ε as a float that
    # can differ in its last bits from the sweep's own (2/255 computed twice), which split one curve in two
    for e, t in s.groupby((s["eps"] * 255).round(3)):
        ax.errorbar(t.sparsity, t.defense_rate, yerr=_err(t.defense_rate, t.defense_rate_lo, t.defense_rate_hi),
                    marker="s", capsize=3, label=f"{what} defense rate, ε = {e:g}/255")
    ax.set(xlabel="share of weights pruned", ylabel="rate", ylim=(-0.02, 1.02), title="pruning: accuracy vs robustness")
    ax.legend(fontsize=8)
    return ax.figure


def plot_rounds(rounds, others: dict | None = None):
    """UAP fine-tuning round by round (a :func:`medadv_lib.course.rounds_table`): left, the fooling
    rate of the UAP each round was trained against ("old"), of a fresh white-box UAP built against
    the round's model, and of random noise of the same norm, with Wilson 95 % error bars; right,
    clean accuracy and balanced accuracy.  ``others``: ``{name: (fresh fooling rate, clean accuracy)}``
    of other defenses, drawn as horizontal reference lines on both panels.  Returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    r = rounds.sort_values("round")
    for col, label, style in (("fresh_uap_fooling_rate", "fresh UAP (white-box, rebuilt each round)", "o-"),
                              ("old_uap_fooling_rate", "old UAP (the one the round trained on)", "s--"),
                              ("random_fooling_rate", "random noise, same norm", "^:")):
        t = r.dropna(subset=[col])
        a1.errorbar(t["round"], t[col], yerr=_err(t[col], t[f"{col}_lo"], t[f"{col}_hi"]), fmt=style, capsize=3,
                    label=label)
    a2.plot(r["round"], r.clean_accuracy, "o-", label="clean accuracy")
    a2.plot(r["round"], r.balanced_accuracy, "s--", label="balanced accuracy")
    for i, (name, (fr, acc)) in enumerate((others or {}).items()):
        c = f"C{i + 3}"
        a1.axhline(fr, color=c, lw=1, ls="-.", label=f"{name}: fresh UAP")
        a2.axhline(acc, color=c, lw=1, ls="-.", label=f"{name}")
    a1.set(xlabel="fine-tuning round (0 = undefended)", ylabel="fooling rate (test split)", ylim=(-0.02, 1.02),
           title="ζ = 2 % UAPs against the fine-tuned model")
    a2.set(xlabel="fine-tuning round (0 = undefended)", ylabel="accuracy (test split)", ylim=(0.4, 1.0),
           title="clean accuracy")
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
    each cell annotated.  Returns the figure."""
    import seaborn as sns  # lazy: seaborn takes seconds to import
    plt = _plt()
    cols = {"uap_fooling_rate": ("UAP ζ=2%\n1 − fooling", True), "uap_to_covid_success": ("UAP→COVID\n1 − success*", True)}
    worst = {c[5:-13] for c in matrix.columns if c.startswith("worst") and c.endswith("_defense_rate")}
    for c in matrix.columns:          # the worst case over the suite where it ran, PGD-10 at the other budgets
        if c.startswith("pgd") and c.endswith("_defense_rate") and c[3:-13] not in worst:
            cols[c] = (f"PGD-10 {c[3:-13]}/255\ndefense rate", False)
        elif c.startswith("worst") and c.endswith("_defense_rate"):
            cols[c] = (f"worst case {c[5:-13]}/255\ndefense rate", False)
    data = np.column_stack([1 - matrix[c] if flip else matrix[c] for c, (_, flip) in cols.items()])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 * len(cols) + 2.5, 0.55 * len(matrix) + 1.6))
    sns.heatmap(data, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax,
                xticklabels=[lab for lab, _ in cols.values()], yticklabels=list(matrix.index),
                cbar_kws={"label": "higher = more robust"})
    ax.set(title="which defense for which threat (white-box, each model attacked itself)")
    ax.figure.text(0.01, 0.01, "* among images not already predicted COVID-19", fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
    ax.figure.tight_layout()
    return ax.figure
