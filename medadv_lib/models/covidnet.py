"""COVIDNet-CXR Small in PyTorch (Wang, Lin & Wong 2020), as a course model: ``build_model("covidnet_small")``.

L. Wang, Z. Q. Lin, A. Wong, *COVID-Net: a tailored deep convolutional neural network design for detection
of COVID-19 cases from chest X-ray images*, Scientific Reports 10: 19549 (2020),
doi:10.1038/s41598-020-76550-z.  Hirano et al. (2020) attacked the released COVIDNet-CXR Small and Large
TensorFlow models; no PyTorch weights exist and none can be downloaded here, so the course trains this
network **from scratch** like its other models.

What the paper specifies
    * The building block is the **PEPX** module: first-stage *projection* (1×1 conv to fewer channels),
      *expansion* (1×1 conv to more channels), a *depth-wise* 3×3 conv, second-stage *projection* (1×1),
      and *extension* (1×1 conv to the module's output channels).
    * A 7×7 convolution first, then four stages of PEPX modules (3, 4, 6 and 3 modules; the figure's
      PEPX1.1–PEPX4.3) with spatial size halved between stages, and heavy use of **long-range
      connections** (modules receive the outputs of earlier modules, not only of the one before).
    * Flatten, fully-connected layers, softmax.
    * Published size of COVIDNet-CXR Small (the repository's model table, ``lindawangg/COVID-Net``,
      ``docs/models.md``): **117.4 M parameters, 2.26 G MACs at 224×224**; COVIDNet-CXR Large 127.4 M,
      3.59 G MACs.  The tests compare :func:`covidnet_small` with the 117.4 M (see
      :data:`PUBLISHED_PARAMS`).

What we had to choose (the paper gives no channel ratios, normalisation or head sizes in its text)
    * Channel widths 64 (stem) and 256 / 512 / 1024 / 2048 for the four stages, as the PyTorch
      re-implementation ``iliasprc/COVIDNet`` reads the figure; at 224 px the last stage is 7×7×2048.
    * Inside a PEPX module with ``c_in`` input channels: projections to ``c_in // 4``, expansion to
      ``c_in // 2``.  These ratios are not in the paper: they are the ones with which the network meets
      *both* published numbers (ratios ``c_in/2`` and ``3·c_in/4``, the later iliasprc code's, give
      134.6 M parameters and 5.3 G MACs).  The README of ``iliasprc/COVIDNet`` reports 115.42 M and
      2.26 G for its COVID-Net Small, which these choices reproduce with three input channels.
    * Long-range connections, dense within a stage: module ``j > 1`` takes the sum of the outputs of
      modules ``1..j-1``; the stage's output is the sum of all its modules' outputs, max-pooled 2× before
      the next stage (whose first module takes it).  No 1×1 convolutions on the long-range paths: adding
      them (a 1×1 projection of each stage's input into every sum) gives 118.2 M parameters but 2.62 G
      MACs, further from the published numbers; they are probably part of what makes the Large model.
    * BatchNorm + ReLU after every convolution (the paper names none; from scratch on ~1,600
      X-rays a network this deep does not train without it).  A stride-2 7×7 stem with 2× max-pool.
    * Head: flatten the 7×7×2048 map → FC 1024 → ReLU → FC 256 → ReLU → FC ``num_classes`` (the head of
      the repository's Keras models).  The flatten sees an adaptive average pool to 7×7 first, so the
      network takes any input size (112 px in FAST mode) with the same parameters; at 224 px the pool is
      the identity.  The last layer is the course's fp32 head (:class:`~.architectures.Float32Linear`).
    * One grey input channel; the course's normalisation (:class:`~.architectures.PixelNormalize`) is
      inside :class:`~.architectures.MedModel` like for every course model.

    Measured: **115,450,659 parameters** with one input channel (115,456,931 with three: −1.7 % of the
    published 117.4 M; 102.8 M of them are the first fully-connected layer) and **2.19 G MACs** at
    224×224 (2.27 G with three channels, +0.2 %).  At width 0.5: 28.9 M parameters, 0.56 G MACs; at
    0.25: 7.2 M, 0.15 G.

Reduced width
    ``covidnet_small_w<width>`` (e.g. ``build_model("covidnet_small_w0.25")``) multiplies every channel
    count and the two hidden fully-connected sizes by ``width`` (parameters scale about as ``width²``).
    The width is part of the architecture name, so checkpoints rebuild from their spec alone.
"""
from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["PEPX", "COVIDNetSmall", "covidnet_small", "parse_covidnet_name", "covidnet_name", "PUBLISHED_PARAMS",
           "PUBLISHED_MACS", "STEM", "STAGES", "HEAD", "GRID"]

PUBLISHED_PARAMS = 117.4e6
"""Parameters of COVIDNet-CXR Small as published (lindawangg/COVID-Net, docs/models.md; 3-channel input)."""
PUBLISHED_MACS = 2.26e9
"""Multiply-accumulates of COVIDNet-CXR Small at 224×224 as published."""

STEM = 64                                          # channels of the 7×7 stem convolution
STAGES = ((256, 3), (512, 4), (1024, 6), (2048, 3))  # (channels, PEPX modules) per stage
HEAD = (1024, 256)                                  # hidden fully-connected sizes
GRID = 7                                            # spatial size the head flattens (7×7 at 224 px)

_NAME = re.compile(r"^covidnet_small(?:_w(\d+(?:\.\d+)?))?$")


def parse_covidnet_name(name: str) -> float | None:
    """The width of a COVID-Net architecture name (``covidnet_small`` → 1.0, ``covidnet_small_w0.25`` →
    0.25); ``None`` when ``name`` is not one.  Raises ``ValueError`` for a width outside (0, 1]."""
    m = _NAME.match(str(name))
    if not m:
        return None
    width = float(m.group(1)) if m.group(1) else 1.0
    if not 0 < width <= 1:
        raise ValueError(f"{name!r}: the width of covidnet_small_w<width> must be in (0, 1]; got {width:g}")
    return width


def covidnet_name(width: float = 1.0) -> str:
    """The architecture name of COVIDNet-CXR Small at ``width`` (``build_model`` takes it)."""
    width = float(width)
    return "covidnet_small" if width == 1.0 else f"covidnet_small_w{width:g}"


def _scaled(c: int, width: float) -> int:
    return max(8, int(round(c * width)))


def _conv_bn(cin: int, cout: int, k: int = 1, groups: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class PEPX(nn.Sequential):
    """Projection (1×1, ``c_in // 4``) → expansion (1×1, ``c_in // 2``) → depth-wise 3×3 → projection
    (1×1, ``c_in // 4``) → extension (1×1, ``c_out``); BatchNorm + ReLU after each."""

    def __init__(self, cin: int, cout: int):
        p, e = max(1, cin // 4), max(1, cin // 2)
        super().__init__(_conv_bn(cin, p), _conv_bn(p, e), _conv_bn(e, e, 3, groups=e), _conv_bn(e, p),
                         _conv_bn(p, cout))


class _Stage(nn.Module):
    """``n`` PEPX modules with dense long-range connections: module ``j > 1`` takes the sum of the outputs
    of modules ``1..j-1``; the stage returns the sum of all its modules' outputs."""

    def __init__(self, cin: int, cout: int, n: int):
        super().__init__()
        self.pepx = nn.ModuleList([PEPX(cin if j == 0 else cout, cout) for j in range(n)])

    def forward(self, x):
        total = self.pepx[0](x)
        for module in self.pepx[1:]:
            total = total + module(total)   # the next module sees every output so far
        return total


class COVIDNetSmall(nn.Module):
    """COVIDNet-CXR Small (see the module docstring for what is the paper's and what is ours).

    Arguments:
        num_classes: logits (3).
        in_channels: image channels (1 for the course's grey X-rays).
        width: channel multiplier in (0, 1] (1 = the published architecture).
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        self.width = float(width)
        stem = _scaled(STEM, width)
        self.stem = nn.Sequential(_conv_bn(in_channels, stem, 7, stride=2), nn.MaxPool2d(2))
        stages, cin = [], stem
        for c, n in STAGES:
            stages.append(_Stage(cin, _scaled(c, width), n))
            cin = _scaled(c, width)
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        h1, h2 = (_scaled(h, width) for h in HEAD)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(GRID), nn.Flatten(), nn.Linear(cin * GRID * GRID, h1),
                                  nn.ReLU(inplace=True), nn.Linear(h1, h2), nn.ReLU(inplace=True),
                                  nn.Linear(h2, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (``N × 2048·width × H/32 × W/32``)."""
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.pool(x)
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def covidnet_small(num_classes: int = 3, in_channels: int = 1, width: float = 1.0) -> COVIDNetSmall:
    """The bare network (no normalisation); the course builds it through
    ``build_model("covidnet_small")`` / ``build_model(covidnet_name(width))``, which wraps it in a
    :class:`~.architectures.MedModel`."""
    if not 0 < float(width) <= 1:
        raise ValueError(f"width must be in (0, 1]; got {width}")
    return COVIDNetSmall(num_classes, in_channels, width)
