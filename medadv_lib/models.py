"""Classifier architectures for 1-channel [0,1] chest X-rays.

Every model built here is a :class:`MedModel`: a :class:`PixelNormalize` layer followed
by a torchvision architecture whose first convolution takes one channel and whose head
has ``num_classes`` outputs.  Because the normalisation is inside the model, attacks,
norms and budgets are always in pixel units and clipping to [0, 1] is always valid.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from .runtime import FP32, Precision, atomic_torch_save, eval_mode, model_device, resolve_precision

# name -> torchvision constructor name
ARCHITECTURES = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
    "vgg16_bn": "vgg16_bn",
    "densenet121": "densenet121",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "efficientnet_b0": "efficientnet_b0",
}
CHECKPOINT_FORMAT = "medadv-checkpoint/1"


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
        with torch.autocast(x.device.type, enabled=False):
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
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(ARCHITECTURES))}")
    ctor = getattr(torchvision.models, ARCHITECTURES[name])
    if weights is None:
        net = ctor(weights=None, num_classes=num_classes)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.5, 0.25
    else:
        net = ctor(weights=weights)
        _replace_head(net, num_classes)
        default_mean, default_std = 0.449, 0.226   # ImageNet RGB statistics averaged to grey
    _adapt_first_conv(net, in_channels)
    _set_bn_momentum(net, BN_MOMENTUM)
    mean = default_mean if mean is None else mean
    std = default_std if std is None else std
    return MedModel(name, net, num_classes, in_channels, [mean] * in_channels, [std] * in_channels)


MODIFICATIONS: dict = {}
"""Registry of model modifications a spec can name: ``name -> fn(model, **params)``, where ``fn``
changes ``model`` in place (insert attention modules, slim pruned layers, ...) deterministically from
``params`` alone, so that :func:`build_from_spec` rebuilds a module whose state dict the
checkpoint's weights fit.  Defenses register theirs with :func:`register_modification`."""


def register_modification(name: str):
    """Decorator: register ``fn(model, **params)`` under ``name`` in :data:`MODIFICATIONS`."""
    def deco(fn):
        MODIFICATIONS[name] = fn
        return fn
    return deco


def apply_modification(model: MedModel, name: str, **params) -> MedModel:
    """Apply the registered modification ``name`` to ``model`` and record it in its spec."""
    if name not in MODIFICATIONS:
        raise ValueError(f"unknown model modification {name!r}; registered: {sorted(MODIFICATIONS) or 'none'}")
    MODIFICATIONS[name](model, **params)
    model.modifications.append({"name": name, "params": params})
    return model


def build_from_spec(spec: dict) -> MedModel:
    """Rebuild a course model from its spec (:meth:`MedModel.spec`): the architecture, then each
    recorded modification in order.  Modules that register modifications (e.g.
    ``medadv_lib.defenses``) are imported first so their names resolve."""
    import importlib
    mods = spec.get("modifications", [])
    if mods:
        importlib.import_module(f"{__package__}.defenses")
    model = build_model(spec["arch"], spec["num_classes"], spec["in_channels"],
                        mean=spec.get("mean", [None])[0], std=spec.get("std", [None])[0])
    for m in mods:
        apply_modification(model, m["name"], **m.get("params", {}))
    return model


def save_checkpoint(model: MedModel, path: str | os.PathLike, **meta) -> Path:
    """Save ``model`` with its architecture and any JSON-like metadata, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # fp32, NCHW
    payload = {"format": CHECKPOINT_FORMAT, "arch": model.arch, "num_classes": model.num_classes,
               "in_channels": model.in_channels, "spec": model.spec(), "state_dict": state, "meta": meta}
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dictionary safely (``weights_only=True``) with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}. Train one first: "
                                f"`medadv train --model resnet18 --out {path.parent}` or notebook 01.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {exc}. Delete it and train again.") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a medadv checkpoint (expected format {CHECKPOINT_FORMAT!r}). "
                         "Save models with medadv_lib.models.save_checkpoint.")
    return ckpt


def load_checkpoint(path: str | os.PathLike, model: MedModel | None = None,
                    device: torch.device | str | None = None,
                    precision: str | Precision | None = None) -> tuple[MedModel, dict]:
    """Load a checkpoint into ``model`` (or a freshly built one); return ``(model, meta)``.

    The model is moved to ``device`` and given the precision policy ``precision`` (``None``:
    ``$MEDADV_PRECISION`` or auto; see :func:`~medadv_lib.runtime.resolve_precision`).

    A checkpoint saved for another architecture or class count raises ``ValueError``
    naming both, instead of PyTorch's long key-mismatch message.
    """
    ckpt = read_checkpoint(path)
    if model is None:
        spec = ckpt.get("spec") or {"arch": ckpt["arch"], "num_classes": ckpt["num_classes"],
                                    "in_channels": ckpt["in_channels"]}
        model = build_from_spec(spec)
    elif (model.arch, model.num_classes, model.in_channels) != (ckpt["arch"], ckpt["num_classes"], ckpt["in_channels"]):
        raise ValueError(
            f"checkpoint {path} holds a {ckpt['arch']} with {ckpt['num_classes']} classes and "
            f"{ckpt['in_channels']} channel(s), but the model is a {model.arch} with {model.num_classes} "
            f"classes and {model.in_channels} channel(s). Build the model with "
            f"build_model({ckpt['arch']!r}) or pick the checkpoint trained for {model.arch}.")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit a {model.arch}: {str(exc).splitlines()[0]}") from exc
    if device is not None:
        model.to(device)
    model.set_precision(precision)
    model.eval()
    return model, ckpt.get("meta", {})


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device=None,
            return_logits: bool = False, perturbation: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted labels ``N`` (or fp32 logits ``N×K`` with ``return_logits``) of ``model`` on ``x``.

    The course's one prediction function: clean images, adversarial images, and images under a
    universal perturbation (``perturbation``: a ``1×1×H×W`` UAP added to every image and clamped
    to [0, 1], see :func:`~medadv_lib.attacks.uap.apply_uap`).  Runs in chunks of ``batch_size`` on
    ``device`` (default: the model's), in eval mode (train/eval flags restored afterwards), under
    the model's precision policy; the result is on the CPU.
    """
    device = torch.device(device) if device is not None else model_device(model)
    v = None if perturbation is None else perturbation.to(device=device, dtype=x.dtype)
    if v is not None and v.dim() == 2:
        v = v[None, None]
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device, non_blocking=True)
            if v is not None:
                xb = (xb + v).clamp(0, 1)
            logits = model(xb).float()
            out.append((logits if return_logits else logits.argmax(1)).cpu())
    if out:
        return torch.cat(out)
    return torch.empty(0, getattr(model, "num_classes", 0)) if return_logits else torch.empty(0, dtype=torch.long)
