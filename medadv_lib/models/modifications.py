"""The model modifications a checkpoint's spec can name, registered with :func:`.spec.register_modification`
so that :func:`~medadv_lib.models.build_from_spec` rebuilds the defended module (and
:func:`~medadv_lib.models.load_checkpoint` loads it with ``weights_only=True``) whatever was imported before.

Only the *structure* lives here: the attention modules and where they sit (``attention``), and the layer
shapes of pruned networks (``prune_unstructured``, ``slim``).  The defenses that choose and train them
(:mod:`medadv_lib.defenses`: :func:`~medadv_lib.defenses.add_attention`, the pruning methods) build on it.

Attention modules (Chen, Zhao & Chen 2021's "attention module"): CBAM (Woo et al. 2018) and
squeeze-and-excitation (Hu et al. 2018, from ``torchvision.ops.SqueezeExcitation``), on the residual branch of
every ``BasicBlock``/``Bottleneck``, after the branch's last BatchNorm and before the addition with the
shortcut.  Each gate multiplies features by ``2·σ(z)`` and the layer producing ``z`` starts at zero, so a block
with fresh attention computes exactly what it computed before (see :mod:`medadv_lib.defenses.attention`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import SqueezeExcitation

from ..runtime import model_device
from .architectures import MedModel
from .spec import register_modification

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


@register_modification("attention")
def attach_attention(model: MedModel, kind: str = "cbam", reduction: int = 16) -> MedModel:
    """The structural part of :func:`medadv_lib.defenses.add_attention` (what a checkpoint's spec replays):
    a fresh ``kind`` module on the residual branch of every residual block, in place, without recording it."""
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


# ------------------------------------------------------------------------------------------------ pruning

@register_modification("prune_unstructured")
def rebuild_unstructured(model: MedModel, amount: float) -> MedModel:
    """Rebuilding an unstructured-pruned model changes nothing: its zeros are in the weights."""
    return model


def layer_shapes(net: nn.Module) -> dict[str, list[int]]:
    """``{name: shape}`` of every convolution (in, out, groups), batch norm (features) and linear layer (in,
    out) of ``net``: what the ``slim`` modification records of a channel-pruned network."""
    shapes = {}
    for n, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[n] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            shapes[n] = [m.num_features]
        elif isinstance(m, nn.Linear):
            shapes[n] = [m.in_features, m.out_features]
    return shapes


@register_modification("slim")
def slim(model: MedModel, ratio: float, layers: dict) -> MedModel:
    """Give every layer named in ``layers`` its pruned shape (fresh weights; the checkpoint fills them)."""
    dev = model_device(model)
    for name, shape in layers.items():
        old = model.net.get_submodule(name)
        if isinstance(old, nn.Conv2d):
            new = nn.Conv2d(shape[0], shape[1], old.kernel_size, old.stride, old.padding, old.dilation, shape[2],
                            old.bias is not None, old.padding_mode)
        elif isinstance(old, nn.modules.batchnorm._BatchNorm):
            new = type(old)(shape[0], old.eps, old.momentum, old.affine, old.track_running_stats)
        elif isinstance(old, nn.Linear):
            new = type(old)(shape[0], shape[1], old.bias is not None)
        else:
            raise ValueError(f"slim: cannot reshape {name} ({type(old).__name__})")
        parent, _, child = name.rpartition(".")
        setattr(model.net.get_submodule(parent) if parent else model.net, child, new.to(dev))
    return model
