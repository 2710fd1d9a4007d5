"""Plots used across the course notebooks (matplotlib only)."""
from __future__ import annotations

import numpy as np
import torch

from .. import LABELS


def _plt():
    import matplotlib.pyplot as plt
    return plt


def show_images(images, titles=None, ncols: int = 6, size: float = 2.0, cmap: str = "gray", vmin=0.0, vmax=1.0,
                suptitle: str | None = None):
    """A grid of ``N×1×H×W`` (or ``N×H×W``) images in [0, 1] with optional titles."""
    plt = _plt()
    imgs = torch.as_tensor(images).detach().cpu()
    if imgs.dim() == 4:
        imgs = imgs[:, 0]
    n = len(imgs)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(imgs[i].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def sample_grid(x, y, per_class: int = 6, labels=LABELS, seed: int = 0, extra_titles=None):
    """``per_class`` random images of each class, one row per class."""
    rng = np.random.default_rng(seed)
    idx, titles = [], []
    y = np.asarray(y)
    for c, lab in enumerate(labels):
        pool = np.flatnonzero(y == c)
        pick = rng.choice(pool, min(per_class, len(pool)), replace=False)
        idx += list(pick)
        titles += [lab if extra_titles is None else f"{lab}\n{extra_titles[i]}" for i in pick]
    return show_images(torch.as_tensor(x)[idx], titles, ncols=per_class)


def plot_confusion(cm, labels=LABELS, ax=None, title: str = "", normalize: bool = False,
                   xlabel: str = "predicted", ylabel: str = "true"):
    """Confusion matrix heat map with counts (or row shares with ``normalize``)."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            txt = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center",
                    color="white" if shown[i, j] > shown.max() / 2 else "black", fontsize=9)
    ax.set_title(title)
    return ax


def plot_history(history, title: str = "", ax=None, collapse_threshold: float = 0.9):
    """Training loss (left axis) and, per epoch on the validation split, macro-F1, balanced accuracy
    and the share of images predicted as the most-predicted class (right axis), with the collapse
    line at ``collapse_threshold``; one legend for both axes."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    ep = [h["epoch"] for h in history]
    lines = ax.plot(ep, [h["train_loss"] for h in history], "o-", color="C0", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    if "val_macro_f1" in history[0]:
        ax2 = ax.twinx()
        for key, style, color, label in (("val_macro_f1", "s--", "C1", "val macro-F1"),
                                         ("val_balanced_accuracy", "^--", "C2", "val balanced acc."),
                                         ("val_top_class_share", "x:", "C3", "val share of top class")):
            if key in history[0]:
                lines += ax2.plot(ep, [h[key] for h in history], style, color=color, label=label)
        if "val_top_class_share" in history[0]:
            lines.append(ax2.axhline(collapse_threshold, color="C3", lw=0.8, alpha=0.6,
                                     label=f"collapse line ({collapse_threshold:.0%})"))
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("validation")
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower left")
    ax.set_title(title)
    return ax


def classes_in_turn(y, n: int) -> list:
    """Indices of ``n`` images (at most ``len(y)``) taking the classes in turn: the first image of each
    class present (in class order), then the second of each, ... — so a figure of a few images
    shows every diagnosis."""
    y = torch.as_tensor(y).detach().cpu().view(-1)
    pools = [torch.nonzero(y == c).flatten().tolist() for c in sorted(set(y.tolist()))]
    order = [p[r] for r in range(max(map(len, pools), default=0)) for p in pools if r < len(p)]
    return order[:max(0, int(n))]


def triplets(x, v, x_adv, row_titles=None, amplify: float | None = None):
    """Rows of clean image / perturbation (amplified to full contrast) / perturbed image.

    ``v`` is one perturbation ``1×1×H×W`` (universal) or one per image; ``row_titles`` an
    optional list of ``(clean, perturbed)`` caption pairs, e.g. the predictions.
    """
    plt = _plt()
    x, v, x_adv = (torch.as_tensor(t).detach().cpu() for t in (x, v, x_adv))
    n = len(x)
    fig, axes = plt.subplots(n, 3, figsize=(6.3, 2.3 * n), squeeze=False)
    for i in range(n):
        p = v[i if v.shape[0] > 1 else 0, 0]
        scale = amplify or 0.5 / max(float(p.abs().max()), 1e-12)
        caps = ("clean", f"perturbation x{scale:.0f}", "perturbed")
        if row_titles is not None:
            caps = (f"clean: {row_titles[i][0]}", caps[1], f"perturbed: {row_titles[i][1]}")
        for ax, img, cap in zip(axes[i], (x[i, 0], 0.5 + scale * p, x_adv[i, 0]), caps):
            ax.imshow(img.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            ax.set_title(cap, fontsize=8)
    fig.tight_layout()
    return fig
