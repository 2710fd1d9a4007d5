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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import SqueezeExcitation

from ..models import MedModel, register_modification
from ..runtime import eval_mode, model_device

KINDS = ("cbam", "se")


class ScaledSigmoid(nn.Module):
    """``2·σ(z)``: a gate that is exactly 1 (the identity) at ``z = 0``."""

    def forward(self, z):
        return 2 * torch.sigmoid(z)


class ChannelGate(nn.Module):
    """CBAM's channel attention: a shared MLP on the average- and max-pooled features."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.gate = ScaledSigmoid()
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x):
        z = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * self.gate(z)


class SpatialGate(nn.Module):
    """CBAM's spatial attention: a 7×7 convolution over the channel-mean and channel-max maps.

    With ``record = True`` the last gate map (``N×1×h×w``, values in 0–2) is kept in ``last_map``.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.gate = ScaledSigmoid()
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.record, self.last_map = False, None

    def forward(self, x):
        s = self.gate(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        if self.record:
            self.last_map = s.detach().float()
        return x * s


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(kernel_size)

    def forward(self, x):
        return self.spatial(self.channel(x))


def se_module(channels: int, reduction: int = 16) -> SqueezeExcitation:
    """torchvision's squeeze-and-excitation with the identity-at-start gate ``2σ``."""
    se = SqueezeExcitation(channels, max(channels // reduction, 4), scale_activation=ScaledSigmoid)
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    return se


class _GatedBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` with ``self.attention`` on the residual branch before the addition."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class _GatedBottleneck(Bottleneck):
    """torchvision's ``Bottleneck`` with ``self.attention`` on the residual branch before the addition."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


_GATED = {BasicBlock: (_GatedBasicBlock, "bn2"), Bottleneck: (_GatedBottleneck, "bn3")}


def residual_blocks(model: MedModel) -> list[tuple[str, nn.Module]]:
    """The ``(name, block)`` pairs of the model's residual blocks (empty for non-ResNets)."""
    return [(n, m) for n, m in model.net.named_modules() if type(m) in _GATED or type(m) in
            {g for g, _ in _GATED.values()}]


def add_attention(model: MedModel, kind: str = "cbam", reduction: int = 16) -> MedModel:
    """Insert a ``kind`` (``"cbam"`` or ``"se"``) module into every residual block of ``model``, in
    place, on the residual branch before the addition, and record it in the model spec (so a checkpoint
    rebuilds it); every block starts as it was (see the module docstring).  New parameters are created
    on the model's device.  Raises ``ValueError`` for architectures without residual blocks, or when
    the blocks already have attention.  Returns the model."""
    _attach_attention(model, kind, reduction)
    model.modifications.append({"name": "attention", "params": {"kind": kind, "reduction": reduction}})
    return model


@register_modification("attention")
def _attach_attention(model: MedModel, kind: str = "cbam", reduction: int = 16) -> MedModel:
    """The structural part of :func:`add_attention` (what a checkpoint's spec replays)."""
    if kind not in KINDS:
        raise ValueError(f"unknown attention {kind!r}; use one of {', '.join(KINDS)}")
    blocks = [(n, b) for n, b in model.net.named_modules() if type(b) in _GATED]
    if not blocks:
        already = any(hasattr(b, "attention") for _, b in residual_blocks(model))
        raise ValueError(f"{model.arch} " + ("already has attention modules" if already else
                         "has no ResNet residual blocks to put attention into; use resnet18 or resnet50 "
                         "(MobileNetV3 already has squeeze-and-excitation inside its blocks)"))
    dev = model_device(model)
    for _, block in blocks:
        cls, last_bn = _GATED[type(block)]
        channels = getattr(block, last_bn).num_features
        block.attention = (CBAM(channels, reduction) if kind == "cbam" else se_module(channels, reduction)).to(dev)
        block.__class__ = cls
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
    import pandas as pd

    from .. import LABELS
    from ..data.explore import region_mask
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
