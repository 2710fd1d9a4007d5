"""The course's classifiers: :class:`MedModel` (normalisation first, precision policy inside, fp32 head)
built from torchvision architectures with one input channel (:func:`build_model`)."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from ..runtime import FP32, Precision, full_precision, model_device, resolve_precision
from .covidnet import covidnet_small, parse_covidnet_name
from .narrow import narrow_resnet18, parse_narrow_resnet_name

# name -> torchvision constructor name
ARCHITECTURES = {
    "resnet18": "resnet18",
    # ResNet-18 with a fraction of its channels (models/narrow.py; any resnet18_w<width>, width in (0, 1))
    "resnet18_w0.5": "resnet18_w0.5",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
    "vgg16_bn": "vgg16_bn",
    "densenet121": "densenet121",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "efficientnet_b0": "efficientnet_b0",
    # course-made (models/covidnet.py; any covidnet_small_w<width> with width in (0, 1] builds too)
    "covidnet_small": "covidnet_small",
    "covidnet_small_w0.5": "covidnet_small_w0.5",
    "covidnet_small_w0.25": "covidnet_small_w0.25",
}


class PixelNormalize(nn.Module):
    """``(x - mean) / std`` per channel; the first layer of every course model."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Float32Linear(nn.Linear):
    """A ``Linear`` that always computes in fp32, even under autocast: the classifier head.

    Under bf16 autocast the logits would be rounded to 8 bits of mantissa (a logit of 5 moves in
    steps of 0.03); decisions that depend on small logit differences (DeepFool's linearised
    distances, "is it fooled yet" checks) then become coarse.  The head costs nothing in fp32.
    Same parameters and state-dict keys as ``nn.Linear``.
    """

    def forward(self, x):
        with full_precision(x.device.type):
            return nn.functional.linear(x.float(), self.weight, self.bias)


class MedModel(nn.Module):
    """A classifier taking ``N×C×H×W`` pixels in [0, 1] and returning ``N×num_classes`` fp32 logits.

    Every forward (and so every backward) runs under the model's precision policy
    (:class:`~medadv_lib.runtime.Precision`, set with :meth:`set_precision`; fp32 by default):
    autocast to its dtype and inputs converted to its memory format at the boundary, so training,
    attacks, UAPs, evaluation and widgets all run the same way and a model never reports two clean
    accuracies in one run.  Weights stay fp32.
    """

    def __init__(self, arch: str, net: nn.Module, num_classes: int, in_channels: int, mean, std):
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.normalize = PixelNormalize(mean, std)
        self.net = net
        self.precision: Precision = FP32
        self.modifications: list[dict] = []     # applied in order by build_from_spec (see MODIFICATIONS)

    def spec(self) -> dict:
        """The model spec a checkpoint stores: architecture plus modifications (JSON-ready).
        :func:`build_from_spec` rebuilds the exact module from it (no pickled module, ever)."""
        return {"arch": self.arch, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "mean": [float(v) for v in self.normalize.mean.flatten()],
                "std": [float(v) for v in self.normalize.std.flatten()],
                "modifications": [dict(m) for m in self.modifications]}

    def set_precision(self, precision: str | Precision | None = None) -> "MedModel":
        """Apply the precision policy (``"auto"``, ``"fp32"``, ``"bf16"``, a :class:`Precision`, or
        ``None`` for ``$MEDADV_PRECISION``/auto) on the model's device; converts the weights' memory
        format to match. Returns the model."""
        self.precision = resolve_precision(precision, model_device(self))
        self.to(memory_format=torch.channels_last if self.precision.channels_last else torch.contiguous_format)
        return self

    def forward(self, x):
        p = self.precision
        x = self.normalize(x)
        if p.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with p.autocast():
            return self.net(x).float()

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"precision={self.precision}")


def _replace_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    """Give the first Conv2d ``in_channels`` inputs; pretrained RGB filters are summed over colour."""
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        w = conv.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        new.weight.copy_(w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace_module(net, name, new)


BN_MOMENTUM = 0.1
"""BatchNorm running-statistics momentum of every course model (PyTorch's default).

torchvision builds MobileNetV3 and EfficientNet with ``momentum=0.01``, tuned for ImageNet's
~10,000 steps per epoch.  On ~1,600 X-rays (about 50 steps per epoch) the running statistics then
still mostly hold their initial values after several epochs, and the model predicts one class in
eval mode although it trains well: the "collapse" notebook 01 used to show for MobileNetV3-small.
"""


def _set_bn_momentum(net: nn.Module, momentum: float) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def _replace_head(net: nn.Module, num_classes: int) -> None:
    """Give the last ``Linear`` ``num_classes`` outputs and make it a :class:`Float32Linear`."""
    name, lin = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    if lin.out_features != num_classes:
        _replace_module(net, name, nn.Linear(lin.in_features, num_classes))
        lin = net.get_submodule(name)
    lin.__class__ = Float32Linear


def build_model(name: str, num_classes: int = 3, in_channels: int = 1, weights: str | None = None,
                mean: float | None = None, std: float | None = None) -> MedModel:
    """Build a course classifier.

    Args:
        name: one of :data:`ARCHITECTURES` (``resnet18``, ``resnet50``, ``vgg16``,
            ``densenet121``, ``mobilenet_v3_small``, ...).
        num_classes: number of output logits (3: normal, pneumonia, COVID-19).
        in_channels: image channels (1 for grayscale X-rays).
        weights: ``None`` for random initialisation (the default: nothing can be downloaded
            on an offline machine), or a torchvision weight name such as ``"DEFAULT"`` or
            ``"IMAGENET1K_V1"`` when online; RGB first-layer filters are summed to grayscale.
        mean, std: pixel normalisation of the first layer; defaults 0.5/0.25, or the
            grey value of ImageNet's statistics when ``weights`` is given.
    Returns:
        a :class:`MedModel` that takes ``N×in_channels×H×W`` tensors in [0, 1].
    """
    width = parse_covidnet_name(name)
    narrow = parse_narrow_resnet_name(name)
    if name not in ARCHITECTURES and width is None and narrow is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(ARCHITECTURES))}")
    if width is not None:                  # COVIDNet-CXR Small: trained from scratch, no weights to download
        if weights is not None:
            raise ValueError(f"{name} has no pretrained weights (COVID-Net's are TensorFlow files that cannot be "
                             "downloaded here): leave weights out to train it from scratch")
        net = covidnet_small(num_classes, in_channels, width)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.5, 0.25
    elif narrow is not None:               # a narrow ResNet-18: no published weights either
        if weights is not None:
            raise ValueError(f"{name} has no pretrained weights (torchvision publishes the full-width ResNet-18 "
                             "only): leave weights out to train it from scratch, or use resnet18")
        net = narrow_resnet18(narrow, num_classes)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.5, 0.25
    elif weights is None:
        ctor = getattr(torchvision.models, ARCHITECTURES[name])
        net = ctor(weights=None, num_classes=num_classes)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.5, 0.25
    else:
        ctor = getattr(torchvision.models, ARCHITECTURES[name])
        net = ctor(weights=weights)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.449, 0.226   # ImageNet RGB statistics averaged to grey
    _adapt_first_conv(net, in_channels)
    _set_bn_momentum(net, BN_MOMENTUM)
    mean = default_mean if mean is None else mean
    std = default_std if std is None else std
    return MedModel(name, net, num_classes, in_channels, [mean] * in_channels, [std] * in_channels)
