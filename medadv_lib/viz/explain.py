"""Where a model looks: Grad-CAM maps from captum, an overlay figure, and the share of each map's mass
in the border frame (markers, text, collimation edges) against the centre (lungs).

Grad-CAM (Selvaraju et al. 2017) weighs the feature maps of one convolutional layer by the mean
gradient of a class score over each map and keeps the positive part: a coarse map (4×4 for the FAST
models at 112 px) of the regions whose features raised that score, upsampled to the image.  The
computation is captum's ``LayerGradCam`` and ``LayerAttribution.interpolate`` — used, not rewritten.

Example::

    >>> from medadv_lib.viz.explain import gradcam, gradcam_by_region, plot_gradcam
    >>> maps = gradcam(model, x_test[:32])                 # N×H×W in [0, 1], the predicted class
    >>> gradcam_by_region(maps, y_test[:32])               # share of the mass in the border frame
    >>> plot_gradcam(x_test[:6], maps[:6], y=y_test[:6])
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch
from torch import nn

from .. import LABELS
from ..data.explore import region_mask
from ..models import predict
from ..runtime import eval_mode, model_device

__all__ = ["default_gradcam_layer", "gradcam", "plot_gradcam", "gradcam_by_region", "gradcam_table", "gradcam_before_after",
           "perturbation_by_region", "mean_abs_by_class", "plot_mean_abs"]


def default_gradcam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads by default: the last convolutional block of the course models.

    ResNets (and the defended ResNets of notebook 04): ``net.layer4``; MobileNetV3, VGG, DenseNet and
    EfficientNet: ``net.features[-1]``; any other network: its last ``Conv2d``.  ``model`` is a
    :class:`~medadv_lib.models.MedModel` (or a bare network with those attributes).
    """
    net = getattr(model, "net", model)
    if hasattr(net, "layer4"):
        return net.layer4
    features = getattr(net, "features", None)
    if isinstance(features, nn.Sequential) and len(features):
        return features[-1]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolutional layer; pass layer= explicitly")
    return convs[-1]


def _targets(model, x, target, batch_size) -> torch.Tensor:
    """``N`` class indices: the model's own prediction (``None``), one class for all, or one per image."""
    if target is None:
        return predict(model, x, batch_size)
    if isinstance(target, str):
        if target not in LABELS:
            raise ValueError(f"unknown target class {target!r}; use one of {', '.join(LABELS)} or an index")
        target = LABELS.index(target)
    t = torch.as_tensor(target, dtype=torch.long).cpu()
    if t.dim() == 0:
        t = t.expand(len(x)).clone()
    if t.shape != (len(x),):
        raise ValueError(f"target must be None, a class (index or name) or {len(x)} class indices; "
                         f"got shape {tuple(t.shape)}")
    k = getattr(model, "num_classes", None)
    if len(t) and (t.min() < 0 or (k is not None and t.max() >= k)):
        raise ValueError(f"target holds a class outside 0..{(k or 0) - 1}")
    return t


def gradcam(model: nn.Module, x: torch.Tensor, target=None, layer: nn.Module | None = None,
            batch_size: int = 32, fp32: bool = True) -> torch.Tensor:
    """Grad-CAM maps of ``model`` on images ``x`` (captum's ``LayerGradCam``), one per image.

    Arguments:
        model (nn.Module): a course classifier (:class:`~medadv_lib.models.MedModel`) taking [0, 1] pixels.
        x (Tensor): ``N×C×H×W`` images in [0, 1] (clean or perturbed).
        target: the class whose score is explained: ``None`` (default) for each image's predicted
            class (predicted under the model's own precision policy, as everywhere in the course), a
            class index or name for all images, or ``N`` class indices.
        layer (nn.Module): the layer whose activations are weighted. (Default:
            :func:`default_gradcam_layer`: ResNet ``net.layer4``, MobileNetV3 ``net.features[-1]``)
        batch_size (int): images per forward/backward pass. (Default: 32)
        fp32 (bool): compute the maps in fp32 (memory format kept) even when the model's policy is
            bf16/fp16 autocast: the weights are fp32 anyway, and a map from bf16 gradients is coarse.
            ``False`` runs under the model's policy. (Default: True)
    Returns:
        ``N×H×W`` fp32 tensor on the CPU: the positive part of the class-weighted activations
        (Grad-CAM's ReLU), bilinearly upsampled to the image size and divided by each map's maximum,
        so every map lies in [0, 1] (an all-zero map stays zero: no region raised that class score).
        The map has the layer's resolution before upsampling — 4×4 cells at 112 px for both FAST
        models, 7×7 at 224 px — so read it region by region; an earlier block (``layer=
        model.net.layer3``: 7×7 at 112 px) is finer but less specific to the class.
    Raises:
        ValueError: ``x`` not ``N×C×H×W``, a bad ``target``, or a network without a convolution.

    The model's train/eval flags and precision policy are restored afterwards; no parameter's
    ``.grad`` is touched (captum uses ``torch.autograd.grad``).
    """
    from captum.attr import LayerAttribution, LayerGradCam  # lazy: captum loads only for Grad-CAM

    if x.dim() != 4:
        raise ValueError(f"x must be N×C×H×W images in [0, 1]; got shape {tuple(x.shape)}")
    layer = default_gradcam_layer(model) if layer is None else layer
    t = _targets(model, x, target, batch_size)
    dev = model_device(model)
    policy = getattr(model, "precision", None)
    out = []
    try:
        if fp32 and policy is not None and policy.name != "fp32":
            model.precision = dataclasses.replace(policy, name="fp32", reason="fp32 for Grad-CAM")
        cam = LayerGradCam(model, layer)
        with eval_mode(model), torch.enable_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(dev).float()
                a = cam.attribute(xb, target=t[i:i + batch_size].to(dev).tolist(), relu_attributions=True)
                a = LayerAttribution.interpolate(a.float(), tuple(xb.shape[-2:]), "bilinear")
                out.append(a[:, 0].detach().float().cpu())
    finally:
        if policy is not None:
            model.precision = policy
    if not out:
        return torch.zeros(0, *x.shape[-2:])
    maps = torch.cat(out).clamp_min(0)          # bilinear upsampling of a ReLU map stays ≥ 0; rounding aside
    peak = maps.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps)).clamp(0, 1)


def gradcam_by_region(maps: torch.Tensor, y: torch.Tensor | None = None, frame: float = 0.125, labels=LABELS):
    """Where the Grad-CAM mass lies: per image, the share of the map's total in the *border* frame of
    notebook 00's probe (``frame`` × size on every side: :func:`medadv_lib.data.explore.region_mask`,
    as :func:`medadv_lib.defenses.gate_by_region` uses for attention gates) and in the *centre* (the
    inner square, mostly lungs and heart — not a lung mask); then the mean over all images and per
    true class of ``y``.

    Arguments:
        maps: ``N×H×W`` (or ``N×1×H×W``) non-negative maps, e.g. from :func:`gradcam`.
        y: ``N`` labels for the per-class rows. (Default: None, the ``all`` row only)
        frame (float): width of the border frame as a share of the image size. (Default: 0.125)
        labels: class names of ``y``'s indices.
    Returns:
        a DataFrame with rows ``all`` (and each class present) and columns ``border`` and ``center``
        (mean shares, summing to 1), ``border_area`` (the share of the pixels in the frame: what a
        uniform map would give; 0.4375 for ``frame=0.125``), ``border_lift`` (``border / border_area``:
        above 1, the frame gets more than its area) and ``n`` (images with a non-zero map; all-zero
        maps have no share and are left out).
    """
    m = torch.as_tensor(maps).detach().float().cpu()
    if m.dim() == 4:
        m = m[:, 0]
    if m.dim() != 3 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"maps must be N×H×W square maps; got shape {tuple(m.shape)}")
    if len(m) and float(m.min()) < 0:
        raise ValueError("maps must be non-negative (Grad-CAM after its ReLU)")
    border = region_mask(m.shape[-1], "border", frame)
    total = m.flatten(1).sum(1)
    share = m[:, border].sum(1) / total.clamp_min(1e-12)
    has_mass = total > 0
    area = float(border.float().mean())
    groups = {"all": torch.ones(len(m), dtype=torch.bool)}
    if y is not None:
        y = torch.as_tensor(y).cpu()
        groups.update({labels[c]: y == c for c in range(len(labels))})
    rows = {}
    for g, sel in groups.items():
        sel = sel & has_mass
        if not sel.any():
            continue
        b = float(share[sel].mean())
        rows[g] = {"border": b, "center": 1 - b, "border_area": area, "border_lift": b / area, "n": int(sel.sum())}
    columns = ["border", "center", "border_area", "border_lift", "n"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)


def plot_gradcam(x, maps, y=None, pred=None, labels=LABELS, titles=None, ncols: int = 6, size: float = 2.0,
                 alpha: float = 0.45, frame: float | None = 0.125, cmap: str = "jet", suptitle: str | None = None):
    """X-rays with their Grad-CAM maps overlaid (red = most weight), the border frame of
    :func:`gradcam_by_region` outlined (dashed).

    Arguments:
        x: ``N×1×H×W`` images in [0, 1].
        maps: ``N×H×W`` maps in [0, 1] (:func:`gradcam`), or a dict of several map sets, one row each,
            e.g. ``{"clean": maps_clean, "under the UAP": maps_adv}`` (only the first ``ncols`` images
            are then shown).  With a dict, ``x`` and ``pred`` may be dicts with the same keys (each
            row's own images and predictions: the perturbed images in the second row) or shared.
        y, pred: ``N`` true / predicted labels for the titles (either may be None).
        titles: explicit titles instead (a list of ``N`` strings).
        ncols (int): images per row. (Default: 6)  size: inches per image.  alpha: overlay opacity.
        frame (float): width of the outlined border frame (share of the size; None: no outline).
    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    from matplotlib.patches import Rectangle  # lazy: matplotlib loads with the first figure

    def _t(a):
        a = torch.as_tensor(a).detach().float().cpu()
        return a[:, 0] if a.dim() == 4 else a

    several = isinstance(maps, dict)
    names = list(maps) if several else [""]
    pick = (lambda d, k: d.get(k) if isinstance(d, dict) else d)
    sets = {k: (_t(pick(x, k)), _t(maps[k] if several else maps), pick(pred, k)) for k in names}
    n = min(len(v[0]) for v in sets.values())
    if any(len(m) < n for _, m, _ in sets.values()):
        raise ValueError("every map set needs one map per image")
    n = min(n, ncols) if several else n
    grid = [(k, list(range(s, min(s + ncols, n)))) for k in names for s in range(0, n, ncols)]
    per_row = min(ncols, n) or 1
    fig, axes = plt.subplots(len(grid), per_row, figsize=(size * per_row, size * len(grid) + 0.5), squeeze=False)
    im = None
    for r, (k, idx) in enumerate(grid):
        imgs, m, p = sets[k]
        h = imgs.shape[-1]
        w = max(1, int(round((frame or 0) * h)))
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                continue
            i = idx[c]
            ax.imshow(imgs[i].numpy(), cmap="gray", vmin=0, vmax=1)
            im = ax.imshow(m[i].numpy(), cmap=cmap, vmin=0, vmax=1, alpha=alpha)
            if frame:
                ax.add_patch(Rectangle((w - 0.5, w - 0.5), h - 2 * w, h - 2 * w, fill=False, ec="white", lw=0.8,
                                       ls="--"))
            if titles is not None:
                t = titles[i]
            else:
                t = "\n".join(([f"true {labels[int(y[i])]}"] if y is not None else [])
                              + ([f"pred. {labels[int(p[i])]}"] if p is not None else []))
            ax.set_title(f"{k}\n{t}" if k and c == 0 else t, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="Grad-CAM (each map / its max)")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def gradcam_table(models: dict, x: torch.Tensor, y: torch.Tensor | None = None, frame: float = 0.125):
    """Grad-CAM of several models on the same images, and where each model's maps put their mass.

    Arguments:
        models: ``{name: model}`` (course classifiers taking [0, 1] pixels).
        x: ``N×1×H×W`` images; y: their ``N`` true labels (for the per-class rows; may be None).
        frame (float): width of the border frame (:func:`gradcam_by_region`). (Default: 0.125)
    Returns:
        ``(maps, table)``: ``maps`` is ``{name: N×H×W maps}`` (each image's predicted class, :func:`gradcam`);
        ``table`` stacks :func:`gradcam_by_region` of every model, indexed by ``(model, images)`` where
        ``images`` is ``all`` or a true class.

    Example::

        >>> maps, where = gradcam_table({"resnet18": m1, "mobilenet_v3_small": m2}, x[:24], y[:24])
        >>> where.loc[("resnet18", "all"), "border_lift"]       # > 1: the frame gets more than its area
    """
    maps = {name: gradcam(m, x) for name, m in models.items()}
    table = pd.concat({name: gradcam_by_region(mp, y, frame) for name, mp in maps.items()}, names=["model", "images"])
    return maps, table


def gradcam_before_after(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, pred_clean=None,
                         pred_adv=None, names=("clean", "perturbed"), per_class: int = 2, labels=LABELS,
                         frame: float = 0.125, suptitle: str | None = None):
    """Grad-CAM of one model on images before and after an attack (notebooks 02 and 03): the maps, where
    their mass lies, and a figure of ``per_class`` images of each true class (clean row above, attacked
    row below).  Each map explains the class predicted *on that image*: the clean prediction on ``x``,
    the new one on ``x_adv``.

    Arguments:
        model: the classifier; ``x``, ``x_adv``: ``N×1×H×W`` clean and attacked images (e.g. the images an
            attack fooled); ``y``: their ``N`` true labels.
        pred_clean, pred_adv: their ``N`` predictions, for the titles. (Default: None → predicted here)
        names: the two row names, e.g. ``("clean", "under the UAP")``.
        per_class (int): images of each true class in the figure (fewer where a class has fewer). (Default: 2)
        frame (float): the border frame of :func:`gradcam_by_region`. suptitle: figure title.
    Returns:
        ``(maps, table, fig)``: ``maps`` = ``{name: N×H×W}`` (:func:`gradcam`); ``table`` =
        :func:`gradcam_by_region` of both, indexed by ``(images, class)``; ``fig`` from :func:`plot_gradcam`
        (None when ``x`` is empty).
    """
    if len(x) != len(x_adv) or len(x) != len(y):
        raise ValueError(f"x, x_adv and y must have the same length; got {len(x)}, {len(x_adv)}, {len(y)}")
    y = torch.as_tensor(y).cpu()
    preds = [torch.as_tensor(p).cpu() if p is not None else predict(model, xi) for p, xi in
             ((pred_clean, x), (pred_adv, x_adv))]
    maps = {names[0]: gradcam(model, x), names[1]: gradcam(model, x_adv)}
    table = pd.concat({k: gradcam_by_region(v, y, frame, labels) for k, v in maps.items()}, names=["images", "class"])
    if not len(x):
        return maps, table, None
    pick = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(len(labels))])
    fig = plot_gradcam({names[0]: x[pick], names[1]: x_adv[pick]}, {k: v[pick] for k, v in maps.items()}, y=y[pick],
                       pred={names[0]: preds[0][pick], names[1]: preds[1][pick]}, labels=labels, ncols=len(pick),
                       frame=frame, suptitle=suptitle)
    return maps, table, fig


def _corners(size: int, corner: float) -> dict:
    k = max(1, int(round(corner * size)))
    out = {}
    for name, (r, c) in {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}.items():
        m = torch.zeros(size, size, dtype=torch.bool)
        m[(slice(0, k) if r == 0 else slice(size - k, size)), (slice(0, k) if c == 0 else slice(size - k, size))] = True
        out[name] = m
    return out


def mean_abs_by_class(delta: torch.Tensor, y: torch.Tensor | None = None, labels=LABELS) -> dict:
    """Mean |δ| per pixel over the images, overall (``"all"``) and per true class of ``y``.

    ``delta`` is ``N×1×H×W`` (or ``N×H×W``): the perturbations actually applied, e.g. ``x_adv − x`` (for a
    UAP that is ``v`` after clipping, so it differs a little from image to image).  Returns
    ``{"all": H×W, class name: H×W, ...}`` (classes without images are left out)."""
    d = torch.as_tensor(delta).detach().float().cpu().abs()
    d = d[:, 0] if d.dim() == 4 else d
    out = {"all": d.mean(0)}
    if y is not None:
        y = torch.as_tensor(y).cpu()
        out.update({labels[c]: d[y == c].mean(0) for c in range(len(labels)) if bool((y == c).any())})
    return out


def perturbation_by_region(delta: torch.Tensor, y: torch.Tensor | None = None, corner: float = 0.25,
                           frame: float = 0.125, labels=LABELS):
    """Where a perturbation's size sits: the share of the summed |δ| (over the images of a group) in each
    corner square (side ``corner`` × image size) and in the border frame, next to the share of the pixels
    each region covers — a perturbation spread evenly gives share = area (lift 1).

    Arguments:
        delta: ``N×1×H×W`` (or ``N×H×W``) perturbations, e.g. ``x_adv − x``.
        y: ``N`` true labels for per-class rows. (Default: None, the ``all`` row only)
        corner (float): side of each corner square as a share of the image size (0.25: 1/16 of the pixels).
        frame (float): width of the border frame, as in :func:`gradcam_by_region`. (Default: 0.125)
    Returns:
        a DataFrame with rows ``all`` and each class present, columns ``top-left``, ``top-right``,
        ``bottom-left``, ``bottom-right``, ``border`` (shares of Σ|δ|), ``corner_area`` and ``border_area``
        (shares of the pixels), ``top-left lift`` (``top-left / corner_area``), ``largest corner`` and ``n``.
    """
    maps = mean_abs_by_class(delta, y, labels)
    size = next(iter(maps.values())).shape[-1]
    regions = {**_corners(size, corner), "border": region_mask(size, "border", frame)}
    y_cpu = None if y is None else torch.as_tensor(y).cpu()
    rows = {}
    for g, m in maps.items():
        total = float(m.sum())
        if total <= 0:
            continue
        row = {name: float(m[mask].sum()) / total for name, mask in regions.items()}
        row["corner_area"] = float(regions["top-left"].float().mean())
        row["border_area"] = float(regions["border"].float().mean())
        row["top-left lift"] = row["top-left"] / row["corner_area"]
        row["largest corner"] = max(("top-left", "top-right", "bottom-left", "bottom-right"), key=row.get)
        row["n"] = len(delta) if g == "all" else int((y_cpu == list(labels).index(g)).sum())
        rows[g] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_mean_abs(deltas: dict, y: torch.Tensor | None = None, labels=LABELS, size: float = 2.2, corner: float | None = 0.25,
                  suptitle: str | None = None):
    """Mean |δ| maps, one row per perturbation set (e.g. ``{"DeepFool": r, "UAP": x_uap - x}``) and one
    column per group (all images, then each true class), each row on its own colour scale (its maximum);
    the top-left corner square of :func:`perturbation_by_region` is outlined.  Returns the figure."""
    import matplotlib.pyplot as plt  # lazy: pyplot picks a backend on import; only drawing needs it
    from matplotlib.patches import Rectangle  # lazy: matplotlib loads with the first figure

    rows = {name: mean_abs_by_class(d, y, labels) for name, d in deltas.items()}
    groups = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(groups), figsize=(size * len(groups) + 0.8, size * len(rows) + 0.4),
                             squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        vmax = max(float(m.max()) for m in maps.values()) or 1.0
        for c, g in enumerate(groups):
            ax = axes[r, c]
            ax.axis("off")
            if g not in maps:
                continue
            im = ax.imshow(maps[g].numpy(), cmap="magma", vmin=0, vmax=vmax)
            if corner:
                k = corner * maps[g].shape[-1]
                ax.add_patch(Rectangle((-0.5, -0.5), k, k, fill=False, ec="cyan", lw=0.8, ls="--"))
            ax.set_title(f"{name}: {g}" if c == 0 else g, fontsize=8)
        fig.colorbar(im, ax=axes[r].tolist(), shrink=0.8, label="mean |δ|")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
