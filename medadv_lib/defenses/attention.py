"""Attention modules for the residual blocks of the course's ResNets (Chen, Zhao & Chen 2021's
"attention module"): CBAM (Woo et al. 2018) and squeeze-and-excitation (Hu et al. 2018, from
``torchvision.ops.SqueezeExcitation``).

Where they sit: on the residual branch of every ``BasicBlock``/``Bottleneck``, after the branch's
last BatchNorm and before the addition with the shortcut (CBAM's own placement).  Only the ResNets
(``resnet18``, ``resnet50``) get them: MobileNetV3 already carries SE modules inside its blocks, and
VGG/DenseNet have no residual addition to put them in front of (:func:`add_attention` says so).

Gates start as the identity.  Each gate multiplies features by ``2·σ(z)`` (range 0–2) instead of
CBAM's ``σ(z)`` (range 0–1), and the layer producing ``z`` starts at zero, so a block with fresh
attention computes exactly what it computed before: attention can be inserted into a *trained*
network (notebook 01's) and fine-tuned, instead of training every ablation arm from scratch.
After fine-tuning, a gate that learned to suppress a region has ``2σ(z) < 1`` there.

The spatial gates can be read out for plots with :func:`attention_maps`.

The modules themselves and their placement (what a checkpoint's spec replays) live in
:mod:`medadv_lib.models.modifications`, below the defenses, so that loading a defended checkpoint needs
no defense code; they are re-exported here.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from .. import LABELS
from ..data.explore import region_mask
from ..models import MedModel
from ..models.modifications import (CBAM, KINDS, ChannelGate, ScaledSigmoid, SpatialGate,  # noqa: F401  (re-exported)
                                    attach_attention, residual_blocks, se_module)
from ..runtime import eval_mode, model_device


def add_attention(model: MedModel, kind: str = "cbam", reduction: int = 16) -> MedModel:
    """Insert a ``kind`` (``"cbam"`` or ``"se"``) module into every residual block of ``model``, in
    place, on the residual branch before the addition, and record it in the model spec (so a checkpoint
    rebuilds it); every block starts as it was (see the module docstring).  New parameters are created
    on the model's device.  Raises ``ValueError`` for architectures without residual blocks, or when
    the blocks already have attention.  Returns the model."""
    attach_attention(model, kind, reduction)
    model.modifications.append({"name": "attention", "params": {"kind": kind, "reduction": reduction}})
    return model


@torch.no_grad()
def attention_maps(model: MedModel, x: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """The CBAM spatial gate maps of ``model`` on images ``x``, upsampled to the image size.

    Returns ``{block name: N×1×H×W}`` (on the CPU, gate values 0–2, 1 = unchanged) for every block,
    plus ``"mean"``, their average.  Raises ``ValueError`` when the model has no CBAM modules.
    """
    gates = [(n, m.attention.spatial) for n, m in residual_blocks(model)
             if isinstance(getattr(m, "attention", None), CBAM)]
    if not gates:
        raise ValueError(f"{model.arch} has no CBAM modules: only CBAM has spatial gates to show")
    dev, maps = model_device(model), {n: [] for n, _ in gates}
    try:
        for _, g in gates:
            g.record = True
        with eval_mode(model):
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(dev)
                model(xb)
                for n, g in gates:
                    maps[n].append(F.interpolate(g.last_map, size=xb.shape[-2:], mode="bilinear",
                                                 align_corners=False).cpu())
    finally:
        for _, g in gates:
            g.record, g.last_map = False, None
    out = {n: torch.cat(v) for n, v in maps.items()}
    out["mean"] = torch.stack(list(out.values())).mean(0)
    return out


def gate_by_region(maps: torch.Tensor, y: torch.Tensor | None = None, frame: float = 0.125, labels=None):
    """Where the spatial gates look: the mean gate value (1 = unchanged) in notebook 00's *border*
    frame (``frame`` × size on every side, where burnt-in markers and collimation edges sit) and in
    the *center* (the rest, lungs), overall and per class of ``y``.  Returns a DataFrame with rows
    ``all`` (and the class names) and columns ``border, center, border_minus_center``."""
    border = region_mask(maps.shape[-1], "border", frame).bool()
    labels = labels or LABELS
    groups = {"all": torch.ones(len(maps), dtype=torch.bool)}
    if y is not None:
        groups.update({labels[c]: y.cpu() == c for c in range(len(labels))})
    rows = {}
    for g, sel in groups.items():
        if not sel.any():
            continue
        m = maps[sel][:, 0]
        b, c = float(m[:, border].mean()), float(m[:, ~border].mean())
        rows[g] = {"border": b, "center": c, "border_minus_center": b - c}
    return pd.DataFrame(rows).T
