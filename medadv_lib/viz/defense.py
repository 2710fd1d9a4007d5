"""Plots for the defenses of notebook 04: defense rates with intervals, attention maps, the sparsity curve.

Each function takes the tidy tables of :mod:`medadv_lib.metrics.defense` (or tensors), draws on a
new figure (or the ``ax`` given) and returns it.
"""
from __future__ import annotations

import numpy as np

from .. import LABELS

__all__ = ["plot_defense_rates", "plot_attention_maps", "plot_sparsity_curve"]


def _plt():
    import matplotlib.pyplot as plt
    return plt


def _err(rate, lo, hi):
    return np.vstack([np.asarray(rate) - np.asarray(lo), np.asarray(hi) - np.asarray(rate)])


def plot_defense_rates(table, attacks=("deepfool", "uap", "transfer", "square"), paper: dict | None = None):
    """Left: PGD-L∞ (standard run) defense rate against ε (in grey levels) per model, Wilson 95 %
    error bars; right: the defense rate of each model against the other attacks, grouped by attack.
    ``paper``: reference lines, e.g. ``{"Chen et al. PGD": 0.7718}`` (a name containing "PGD" goes on the
    left panel, any other on the right).  Returns the figure."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    models = list(dict.fromkeys(table.model))
    for m in models:
        t = table[(table.model == m) & (table.attack == "pgd")].sort_values("eps")
        a1.errorbar(t.eps * 255, t.defense_rate, yerr=_err(t.defense_rate, t.defense_rate_lo, t.defense_rate_hi),
                    marker="o", capsize=3, label=m)
    a1.set(xlabel="PGD-L∞ budget ε (grey levels, ×1/255)", ylabel="defense rate (clean-correct images)",
           title="PGD (10 steps)", ylim=(-0.02, 1.02))
    a1.legend(fontsize=8)
    width = 0.8 / max(len(models), 1)
    present = [a for a in attacks if (table.attack == a).any()]
    for i, m in enumerate(models):
        t = table[table.model == m].set_index("attack")
        rates = [t.loc[a, "defense_rate"] for a in present]
        err = _err(rates, [t.loc[a, "defense_rate_lo"] for a in present], [t.loc[a, "defense_rate_hi"] for a in present])
        a2.bar(np.arange(len(present)) + i * width, rates, width, yerr=err, capsize=2, label=m)
    a2.set_xticks(np.arange(len(present)) + width * (len(models) - 1) / 2, present)
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
    """Clean accuracy and PGD defense rate (with intervals) against the unstructured sparsity.
    ``sweep``: a DataFrame with ``sparsity, clean_accuracy, defense_rate, defense_rate_lo, defense_rate_hi, eps``."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    s = sweep.sort_values("sparsity")
    ax.plot(s.sparsity, s.clean_accuracy, "o-", label="clean accuracy")
    for e, t in s.groupby("eps"):
        ax.errorbar(t.sparsity, t.defense_rate, yerr=_err(t.defense_rate, t.defense_rate_lo, t.defense_rate_hi),
                    marker="s", capsize=3, label=f"PGD defense rate, ε = {e * 255:.0f}/255")
    ax.set(xlabel="share of weights pruned", ylabel="rate", ylim=(-0.02, 1.02), title="pruning: accuracy vs robustness")
    ax.legend(fontsize=8)
    return ax.figure
