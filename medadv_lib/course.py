"""Course-wide settings, so every notebook trains (or reuses) the very same models.

Notebook 01 trains the classifiers; notebooks 02+ call :func:`course_model` with the same
arguments and get the cached checkpoint (or train it themselves when run standalone).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from .train import TrainConfig, load_or_train

# FAST: CPU-friendly (CI, laptops) — small images, few epochs.  FULL: the study for a GPU.
# FAST was 96 px, ResNet-18 6 epochs (test accuracy 0.80) and MobileNetV3-small 10 epochs (collapsed
# to one class in 7 of 10 epochs).  The channels_last layout of the precision policy pays for 112 px
# (on the 2-core fp32 CPU the course is developed on: ~41 s per ResNet-18 epoch, as 96 px cost before)
# and the BatchNorm-momentum fix (models.BN_MOMENTUM) ends MobileNet's collapse.  Measured there:
# 64 px × 20 epochs gave ResNet-18 0.80 test accuracy, 112 px × 10 epochs 0.82 — size beats epochs.
FAST = SimpleNamespace(models=("resnet18", "mobilenet_v3_small"), image_size=112,
                       epochs={"resnet18": 10, "mobilenet_v3_small": 10}, batch_size=32)
FULL = SimpleNamespace(models=("vgg16", "resnet50", "densenet121"), image_size=224,
                       epochs={"vgg16": 30, "resnet50": 30, "densenet121": 30}, batch_size=32)
FULL_LR = {"vgg16": 3e-4}     # plain VGG (no batch norm) needs a smaller step from scratch

# The course's SGD UAPs (Shafahi et al.), shared by notebooks 02 and 03 (and any later one), so that
# "the ζ = 2% UAP" is the same perturbation everywhere (and loaded from 02's cache in 03).
# train: class-stratified training images the UAP is built on (None: the whole training split).
UAP_FAST = SimpleNamespace(train=128, epochs=3, batch_size=16)
UAP_FULL = SimpleNamespace(train=None, epochs=10, batch_size=32)


def settings(fast: bool) -> SimpleNamespace:
    """The FAST or FULL settings (models, image size, epochs per model)."""
    return FAST if fast else FULL


def uap_settings(fast: bool, train: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None) -> SimpleNamespace:
    """The course's SGD-UAP settings for the mode, with any argument given overriding its default.

    Returns a namespace with ``train`` (number of build images, ``None`` = the whole training split),
    ``epochs``, ``batch_size`` and ``sgd``: the keyword arguments for
    :func:`~medadv_lib.widgets.uap_widget.precompute_uaps` (``method="sgd"``, epochs, batch size).

    Example::
        >>> course.uap_settings(True).sgd
        {'method': 'sgd', 'epochs': 3, 'batch_size': 16}
    """
    d = UAP_FAST if fast else UAP_FULL
    if train is not None and train < 1:
        raise ValueError(f"train must be a positive number of images or None (all); got {train}")
    out = SimpleNamespace(train=d.train if train is None else int(train), epochs=int(epochs or d.epochs),
                          batch_size=int(batch_size or d.batch_size))
    out.sgd = {"method": "sgd", "epochs": out.epochs, "batch_size": out.batch_size}
    return out


def model_config(name: str, fast: bool, image_size: int | None = None, epochs: int | None = None,
                 seed: int = 0, **overrides) -> TrainConfig:
    """The :class:`~medadv_lib.train.TrainConfig` the course uses for ``name``."""
    s = settings(fast)
    cfg = TrainConfig(model=name, image_size=image_size or s.image_size,
                      epochs=epochs or s.epochs.get(name, max(s.epochs.values())),
                      batch_size=s.batch_size, seed=seed)
    if not fast and name in FULL_LR:
        cfg = dataclasses.replace(cfg, lr=FULL_LR[name])
    return dataclasses.replace(cfg, **overrides)


def course_model(name: str, fast: bool, output_dir="../runs", data_dir=None, device=None, seed: int = 0,
                 image_size: int | None = None, epochs: int | None = None, progress: bool = True,
                 precision=None, **overrides):
    """Load the course's cached ``name`` model or train it; returns ``(model, info)`` like
    :func:`~medadv_lib.train.load_or_train`. The model runs under the precision policy
    ``precision`` (``None``: ``$MEDADV_PRECISION`` or auto)."""
    cfg = model_config(name, fast, image_size, epochs, seed, **overrides)
    return load_or_train(cfg, out_dir=output_dir, data_dir=data_dir, device=device, progress=progress,
                         precision=precision)
