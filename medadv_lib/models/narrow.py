"""ResNet-18 with a fraction of its channels: the FAST mode's victim.

``resnet18_w0.5`` is torchvision's ResNet-18 — the same ``BasicBlock`` s, strides, depth and head — with
32/64/128/256 channels per stage instead of 64/128/256/512.  On the course's 2-core CPU a training step
costs about a quarter of the full-width one (fp32, channels_last, 112 px, batch 32: 0.33 s vs 1.28 s;
a forward pass 0.09 s vs 0.31 s), which is what lets the notebooks run their attacks to convergence on
a laptop.  Everything that works on a torchvision ResNet (attention on the residual branch, pruning,
Grad-CAM on ``layer4``) works on it unchanged, because its modules *are* torchvision's.
"""
from __future__ import annotations

import re

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

__all__ = ["NarrowResNet", "narrow_resnet18", "parse_narrow_resnet_name", "narrow_resnet_name"]

_NAME = re.compile(r"^resnet18_w(\d*\.\d+)$")


class NarrowResNet(ResNet):
    """torchvision's :class:`~torchvision.models.ResNet` (``BasicBlock``, [2, 2, 2, 2]) with every stage's
    channels multiplied by ``width`` (64·width in the stem)."""

    def __init__(self, width: float, num_classes: int = 3):
        self._width, self._stem_done = float(width), False
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        stem = self._channels(64)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.fc = nn.Linear(self._channels(512), num_classes)
        for m in (self.conv1, self.bn1):          # torchvision's initialisation, for the replaced modules
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _channels(self, c: int) -> int:
        return max(1, int(round(c * self._width)))

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if not self._stem_done:                   # ResNet.__init__ set inplanes = 64 for the full-width stem
            self.inplanes, self._stem_done = self._channels(64), True
        return super()._make_layer(block, self._channels(planes), blocks, stride, dilate)


def parse_narrow_resnet_name(name: str) -> float | None:
    """The width of a narrow ResNet-18 name (``resnet18_w0.5`` → 0.5); ``None`` when ``name`` is not one.
    Raises ``ValueError`` for a width outside (0, 1) (the full width is ``resnet18``)."""
    m = _NAME.match(str(name))
    if not m:
        return None
    width = float(m.group(1))
    if not 0 < width < 1:
        raise ValueError(f"{name!r}: the width of resnet18_w<width> must be in (0, 1) (full width: resnet18); "
                         f"got {width:g}")
    return width


def narrow_resnet_name(width: float) -> str:
    """The architecture name of ResNet-18 at ``width`` (``build_model`` takes it)."""
    width = float(width)
    return "resnet18" if width == 1.0 else f"resnet18_w{width:g}"


def narrow_resnet18(width: float, num_classes: int = 3) -> NarrowResNet:
    """A randomly initialised :class:`NarrowResNet` (3 input channels; ``build_model`` adapts the stem)."""
    return NarrowResNet(width, num_classes)
