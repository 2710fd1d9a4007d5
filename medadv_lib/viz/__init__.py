"""Plots used across the course notebooks (matplotlib only).

Every figure carries its evidence:

* every rate curve a verdict reads has its interval drawn (a band from ``fill_between`` or error bars): the
  ``<col>_lo`` / ``<col>_hi`` columns of the frame when it has them (the library's tables carry Wilson 95 %
  bounds), else the Wilson 95 % interval of the rate on its ``n`` images (:func:`medadv_lib.stats.wilson_interval`;
  :func:`rate_bounds`); a curve whose frame has neither is drawn without one, never with an invented one;
* every perturbation figure shows the perturbation *as it is added* (×1, in pixel units of the [0, 1] image, on the
  fixed colour scale ``±TRUE_SCALE_LIM`` with a labelled colour bar) beside the amplified one;
* every plotting function's docstring says what the figure shows and what its bands or bars are.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import LABELS
from ..data.explore import hide_region, region_mask
from ..stats import wilson_interval

TRUE_SCALE_LIM = 0.5
"""The fixed colour scale of every true-scale perturbation panel: δ from −0.5 (black) to +0.5 (white), grey = no
change — the contrast a change of δ makes on a [0, 1] image, neither stretched nor per-figure."""

TRUE_SCALE_LABEL = "δ at ×1 (pixel units of the [0, 1] image)"


def wilson_bounds(rate, n):
    """Wilson 95 % bounds of rates measured on ``n`` images each (``rate``, ``n``: numbers or equal-length
    sequences; ``k = round(rate · n)`` successes).  Returns ``(lo, hi)`` float arrays; NaN where the rate is NaN
    or ``n`` is not positive."""
    r = np.atleast_1d(np.asarray(rate, dtype=float))
    nn = np.broadcast_to(np.atleast_1d(np.asarray(n, dtype=float)), r.shape)
    lo, hi = np.full(r.shape, np.nan), np.full(r.shape, np.nan)
    for i, (p, m) in enumerate(zip(r, nn)):
        if math.isfinite(p) and math.isfinite(m) and m > 0:
            lo[i], hi[i] = wilson_interval(int(round(p * m)), int(m))
    return lo, hi


def rate_bounds(df, col: str, n=None):
    """The 95 % bounds of the rate column ``col`` of a frame, as two float arrays, or ``None`` when the frame
    carries no evidence for them.

    ``<col>_lo`` / ``<col>_hi`` when the frame has both (the library's tables carry Wilson bounds); else the Wilson
    interval on ``n`` images, ``n`` a column name (default ``"n"``, used when present) or a number."""
    if f"{col}_lo" in df.columns and f"{col}_hi" in df.columns:
        return np.asarray(df[f"{col}_lo"], dtype=float), np.asarray(df[f"{col}_hi"], dtype=float)
    if n is None:
        n = "n"
    if isinstance(n, str):
        if n not in df.columns:
            return None
        n = np.asarray(df[n], dtype=float)
    return wilson_bounds(np.asarray(df[col], dtype=float), n)


def band(ax, x, lo, hi, color=None, alpha: float = 0.18, **kw):
    """Shade the interval ``[lo, hi]`` over ``x`` on ``ax`` (``fill_between``, no legend entry; points with a NaN
    bound are left unshaded).  Returns the ``PolyCollection``."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    return ax.fill_between(np.asarray(x, dtype=float), lo, hi, where=ok, color=color, alpha=alpha, lw=0,
                           label="_nolegend_", interpolate=False, **kw)


def show_true_scale(ax, delta, colorbar: bool = True):
    """Draw a perturbation ``delta`` (``H×W``, pixel units) *as it is added*: grey, fixed scale
    ``±TRUE_SCALE_LIM`` (grey = no change), with a labelled colour bar at the panel's right (``colorbar``).
    Returns the image."""
    d = torch.as_tensor(delta).detach().cpu().float()
    im = ax.imshow(d.numpy(), cmap="gray", vmin=-TRUE_SCALE_LIM, vmax=TRUE_SCALE_LIM)
    if colorbar:
        cax = ax.inset_axes([1.04, 0.0, 0.07, 1.0])
        cb = ax.figure.colorbar(im, cax=cax, ticks=[-TRUE_SCALE_LIM, 0, TRUE_SCALE_LIM])
        cb.set_label(TRUE_SCALE_LABEL, fontsize=6)
        cb.ax.tick_params(labelsize=6)
    return im


def _plt():
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
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
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.15 * lines) * nrows + (0.4 if suptitle else 0)),
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
    """Confusion matrix heat map: rows = ``ylabel`` (true class), columns = ``xlabel`` (prediction); each cell
    annotated with its image count (exact: no interval needed), or with ``normalize`` its share of the row and,
    under it, that share's Wilson 95 % interval on the row's images (:func:`wilson_bounds`).  Returns the axes."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    rows = np.maximum(cm.sum(1, keepdims=True), 1)
    shown = cm / rows if normalize else cm
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4 if normalize else 3.2))
    ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if normalize:
                lo, hi = wilson_bounds(shown[i, j], cm[i].sum())
                txt = f"{shown[i, j]:.2f}\n[{lo[0]:.2f}, {hi[0]:.2f}]"
            else:
                txt = f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center",
                    color="white" if shown[i, j] > shown.max() / 2 else "black", fontsize=7 if normalize else 9)
    ax.set_title(title + (" (row shares, Wilson 95 % intervals)" if normalize and title else
                          "row shares, Wilson 95 % intervals" if normalize else ""))
    return ax


def plot_history(history, title: str = "", ax=None, collapse_threshold: float = 0.9):
    """Training loss (left axis) and, per epoch on the validation split, macro-F1, balanced accuracy
    and the share of images predicted as the most-predicted class (right axis), with the collapse
    line at ``collapse_threshold``; one legend for both axes.

    The top-class share is what the collapse guard reads (:func:`medadv_lib.train.collapse_check`): where the
    history records the validation size (``val_n``) it is drawn with its Wilson 95 % band.  Macro-F1 and balanced
    accuracy are means over classes, not one share of ``val_n`` images: no band (their intervals need the
    per-image predictions, :func:`medadv_lib.stats.balanced_accuracy_interval`).  Returns the axes."""
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
                vals = [h[key] for h in history]
                with_n = key == "val_top_class_share" and all(h.get("val_n") for h in history)
                lines += ax2.plot(ep, vals, style, color=color,
                                  label=label + (" (Wilson 95 % band)" if with_n else ""))
                if with_n:
                    band(ax2, ep, *wilson_bounds(vals, [h["val_n"] for h in history]), color=color)
        if "val_top_class_share" in history[0]:
            lines.append(ax2.axhline(collapse_threshold, color="C3", lw=0.8, alpha=0.6,
                                     label=f"collapse line ({collapse_threshold:.0%})"))
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("validation")
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower left")
    ax.set_title(title)
    return ax


def classes_in_turn(y, n: int, prefer=None) -> list:
    """Indices of ``n`` images (at most ``len(y)``) taking the classes in turn: the first image of each
    class present (in class order), then the second of each, ... — so a figure of a few images
    shows every diagnosis.

    ``prefer`` (optional ``N`` bools, e.g. ``pred_adv != pred_clean``): make sure the pick holds at
    least one preferred image whenever one exists — a before/after figure then shows at least one
    fooled example next to the others.  If none of the ``n`` picks is preferred, the pick of the class
    of the first preferred image (or the last pick, if that class was not picked) is swapped for that
    image; otherwise the pick is unchanged, so the figure is not made to look more fooled than it is.
    """
    y = torch.as_tensor(y).detach().cpu().view(-1)
    pools = [torch.nonzero(y == c).flatten().tolist() for c in sorted(set(y.tolist()))]
    order = [p[r] for r in range(max(map(len, pools), default=0)) for p in pools if r < len(p)]
    picks = order[:max(0, int(n))]
    if prefer is None or not picks:
        return picks
    pref = torch.as_tensor(prefer).detach().cpu().view(-1).bool()
    if len(pref) != len(y):
        raise ValueError(f"prefer must have one entry per image ({len(y)}); got {len(pref)}")
    if any(bool(pref[i]) for i in picks) or not bool(pref.any()):
        return picks
    j = int(torch.nonzero(pref).flatten()[0])
    same = [k for k, i in enumerate(picks) if int(y[i]) == int(y[j])]
    picks[same[0] if same else -1] = j
    return picks


def _crop_window(d: torch.Tensor, k: int) -> tuple[int, int]:
    """Top-left corner of the ``k×k`` window of ``d`` (``H×W``) with the largest mean |d|."""
    a = torch.nn.functional.avg_pool2d(d.abs()[None, None].float(), k, stride=1)[0, 0]
    r, c = divmod(int(a.flatten().argmax()), a.shape[1])
    return r, c


def triplets(x, v, x_adv, row_titles=None, amplify: float | None = None, true_scale: bool = True,
             zoom: int = 4):
    """Rows of clean image / perturbation (amplified to full contrast) / perturbed image, and beside them the
    perturbation *as it is added* (×1) with a zoomed crop of clean vs perturbed.

    Arguments:
        x, x_adv: ``n×1×H×W`` clean and perturbed images in [0, 1].
        v: one perturbation ``1×1×H×W`` (universal) or one per image.
        row_titles: optional list of ``(clean, perturbed)`` caption pairs, e.g. the predictions.
        amplify: contrast of the perturbation column, shown as ``0.5 + amplify·v``. (Default: None →
            ``0.5 / max|v|`` per row: the strongest pixel reaches black or white)
        true_scale (bool): the three columns that show the change *as it really is*: the perturbation
            at ×1 (pixel units, fixed colour scale ±:data:`TRUE_SCALE_LIM`, grey = no change, its colour bar
            labelled on the first row), and a ``zoom``× crop of the clean and of the perturbed image (the
            ``H/zoom`` square where the mean |x_adv − x| is largest, outlined on both full images, drawn with
            nearest-pixel interpolation): side by side, so a student judges how visible the change is, magnified.  The course's
            figures keep them; ``False`` drops them. (Default: True)
        zoom (int): magnification of the crop. (Default: 4)
    Returns:
        the matplotlib ``Figure`` (``n`` rows × 6 columns, or 3 without ``true_scale``).
    """
    from matplotlib.patches import Rectangle  # lazy: matplotlib loads with the first figure
    plt = _plt()
    x, v, x_adv = (torch.as_tensor(t).detach().cpu().float() for t in (x, v, x_adv))
    n, ncol = len(x), (6 if true_scale else 3)
    fig, axes = plt.subplots(n, ncol, figsize=(2.1 * ncol + (0.5 if true_scale else 0), 2.3 * n), squeeze=False)
    for i in range(n):
        p = v[i if v.shape[0] > 1 else 0, 0]
        scale = amplify or 0.5 / max(float(p.abs().max()), 1e-12)
        caps = ["clean", f"perturbation ×{scale:.0f}", "perturbed"]
        if row_titles is not None:
            caps = [f"clean: {row_titles[i][0]}", caps[1], f"perturbed: {row_titles[i][1]}"]
        imgs = [x[i, 0], 0.5 + scale * p, x_adv[i, 0]]
        if true_scale:
            h = x.shape[-1]
            k = max(2, int(round(h / max(int(zoom), 1))))
            r0, c0 = _crop_window(x_adv[i, 0] - x[i, 0], k)
            crop = (slice(r0, r0 + k), slice(c0, c0 + k))
            imgs += [p, x[i, 0][crop], x_adv[i, 0][crop]]
            caps += ["perturbation ×1 (true scale)", f"clean, {zoom}× crop", f"perturbed, {zoom}× crop"]
        for c, (ax, img, cap) in enumerate(zip(axes[i], imgs, caps)):
            if c == 3:
                show_true_scale(ax, img, colorbar=i == 0)
            else:
                ax.imshow(img.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest" if c >= 4 else "antialiased")
            ax.axis("off")
            ax.set_title(cap, fontsize=8)
            if true_scale and c in (0, 2):
                ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), k, k, fill=False, ec="yellow", lw=0.8))
    fig.tight_layout()
    return fig


def show_probe_regions(x, frame: float = 0.125, size: float = 2.2, suptitle: str | None = None):
    """What the border/centre shortcut probe of notebooks 00 and 01 sees, on one real X-ray: the image
    with the border frame tinted (``frame`` × size on every side:
    :func:`~medadv_lib.data.explore.region_mask`), the *border only* (centre hidden, as
    :func:`~medadv_lib.data.explore.hide_region` does: filled with the image's mean) and the *centre only*.

    Arguments:
        x: one image, ``1×H×W``, ``H×W`` or ``1×1×H×W``, in [0, 1] (the first one of a batch is used).
        frame (float): width of the frame as a share of the size. (Default: 0.125, the probe's)
        size: inches per panel. suptitle: figure title.
    Returns:
        the matplotlib ``Figure`` (three panels; the titles give each region's share of the pixels).
    """
    plt = _plt()
    img = torch.as_tensor(x).detach().cpu().float()
    img = img.reshape(-1, *img.shape[-2:])[:1][None]             # 1×1×H×W
    border = region_mask(img.shape[-1], "border", frame)
    tint = torch.zeros(*border.shape, 4)
    tint[border] = torch.tensor([1.0, 0.2, 0.2, 0.45])
    share = float(border.float().mean())
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + (0.5 if suptitle else 0.3)))
    panels = ((img[0, 0], f"border frame (red, {share:.0%} of the pixels)"),
              (hide_region(img, "border", frame)[0, 0], "border only: centre hidden"),
              (hide_region(img, "center", frame)[0, 0], f"centre only ({1 - share:.0%}): border hidden"))
    for k, (ax, (im, cap)) in enumerate(zip(axes, panels)):
        ax.imshow(im.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        if k == 0:
            ax.imshow(tint.numpy())
        ax.set_title(cap, fontsize=8)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig
