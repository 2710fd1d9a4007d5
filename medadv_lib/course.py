"""Course-wide settings, so every notebook trains (or reuses) the very same models.

Notebook 01 trains the classifiers; notebooks 02+ call :func:`course_model` with the same
arguments and get the cached checkpoint (or train it themselves when run standalone).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

from .runtime import atomic_write_text
from .train import TrainConfig, load_or_train

# FAST: CPU-friendly (CI, laptops) — small images, few epochs.  FULL: the study for a GPU.
# FAST was 96 px, ResNet-18 6 epochs (test accuracy ~0.80) and MobileNetV3-small 10 epochs (collapsed
# to one class in 7 of 10 epochs, 0.70).  The channels_last layout of the precision policy pays for
# 112 px (on the 2-core fp32 CPU the course is developed on: ~41 s per ResNet-18 epoch, what 96 px cost
# before) and the BatchNorm-momentum fix (models.BN_MOMENTUM) ends MobileNet's collapse.  Measured
# there: ResNet-18 at 64 px × 20 epochs 0.80 test accuracy, at 112 px × 10 epochs 0.82 (size beats
# epochs); MobileNetV3-small at 112 px: 10 epochs 0.78, 8 epochs 0.81 (and 110 s less).
FAST = SimpleNamespace(models=("resnet18", "mobilenet_v3_small"), image_size=112,
                       epochs={"resnet18": 10, "mobilenet_v3_small": 8}, batch_size=32)
FULL = SimpleNamespace(models=("vgg16", "resnet50", "densenet121"), image_size=224,
                       epochs={"vgg16": 30, "resnet50": 30, "densenet121": 30}, batch_size=32, patience=6)
# patience: early stopping once validation macro-F1 has not improved for 6 epochs (the best epoch is
# kept either way) — on a workstation CPU, where a full-mode epoch takes minutes, this is the
# difference between hours and a day; on a GPU it only trims a plateau.
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
                      batch_size=s.batch_size, seed=seed, patience=getattr(s, "patience", None))
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


# --------------------------------------------------------------------------------------------
# Results as data: each notebook records its headline numbers with one call
# --------------------------------------------------------------------------------------------

RECORD_KEYS = ("notebook", "model", "data_fingerprint", "checkpoint_fingerprint", "precision", "seconds")
"""Keys every record holds.  Attack results add their budget beside the numbers (``norm`` "inf"/"2",
``zeta`` or ``eps``, ``target`` — None when non-targeted) and use the library's metric names
(``test_accuracy``, ``balanced_accuracy``, ``fooling_rate``, ``fooling_rate_per_class`` (class → rate),
``fooling_rate_reweighted``, ``target_success_rate``, ``random_fooling_rate``, ``robust_accuracy``,
``defense_rate``, ``median_rho_adv``); defense results add ``defense``."""


def file_fingerprint(path) -> str:
    """Short sha1 of a file's bytes (checkpoints, UAPs): what a record was computed from."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def record(notebook: str, records: list[dict], output_dir="../runs", seconds: float | None = None) -> Path:
    """Write a notebook's headline numbers to ``OUTPUT_DIR/results/<notebook>.json`` (atomically).

    ``records`` is a list of flat dicts, one per (model, budget, ...) result; each must hold the
    :data:`RECORD_KEYS` except ``notebook`` (added here) and ``seconds`` (filled from ``seconds``
    when missing).  Values are made JSON-safe (tensors/NumPy scalars → numbers, NaN → null).
    The file is a JSON list of records; a rerun replaces it.  Returns its path.

    Example::
        >>> course.record("01_train_classifiers", [{"model": "resnet18", "test_accuracy": 0.82, ...}], OUTPUT_DIR)
    """
    out = []
    for r in records:
        r = {"notebook": notebook, **r}
        if r.get("seconds") is None:
            r["seconds"] = seconds
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"record for {notebook!r} lacks {missing}; every record holds {list(RECORD_KEYS)}")
        out.append(_jsonable(r))
    path = Path(output_dir) / "results" / f"{notebook}.json"
    atomic_write_text(json.dumps(out, indent=1), path)
    return path


def model_record(name: str, info: dict, precision) -> dict:
    """The identity part of a record for a course model: name, fingerprints, precision."""
    return {"model": name, "checkpoint": Path(info["checkpoint"]).name,
            "checkpoint_fingerprint": file_fingerprint(info["checkpoint"]),
            "data_fingerprint": info.get("data_fingerprint"), "precision": str(precision)}



def classifier_record(name: str, info: dict, report: dict, precision) -> dict:
    """Notebook 01's record of one trained model: test accuracy, balanced accuracy, per-class
    sensitivity/PPV, the collapse check and the training cost."""
    from .train import collapse_check
    cfg = info.get("config", {})
    return {**model_record(name, info, precision), "image_size": cfg.get("image_size"), "epochs": cfg.get("epochs"),
            "test_accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"],
            "macro_f1": report["macro_f1"],
            "sensitivity": {k: v["sensitivity"] for k, v in report["per_class"].items()},
            "ppv": {k: v["ppv"] for k, v in report["per_class"].items()},
            "collapsed_epochs": collapse_check(info.get("history", []))["collapsed_epochs"],
            "train_seconds": info.get("train_seconds"), "train_precision": info.get("precision")}


def uap_record(name: str, info: dict, precision, metrics: dict, zeta: float, norm: str, target=None,
               **extra) -> dict:
    """A record of one UAP evaluation (a dict from :func:`medadv_lib.metrics.evaluate_uap`, optionally
    with the ``random_*`` keys of the widget's view) in the results schema."""
    from . import LABELS
    keys = ("fooling_rate", "fooling_rate_balanced", "fooling_rate_vs_labels", "fooling_rate_reweighted",
            "fooling_rate_vs_labels_reweighted",
            "target_success_rate", "random_fooling_rate", "random_target_success_rate", "clean_accuracy")
    out = {**model_record(name, info, precision), "norm": norm, "zeta": zeta, "eps": metrics.get("eps"),
           "target": None if target is None else LABELS[int(target)],
           **{k: metrics[k] for k in keys if k in metrics},
           "fooling_rate_per_class": dict(zip(metrics.get("labels", LABELS), metrics["fooling_rate_per_class"])),
           "n": metrics.get("n")}
    out.update(extra)
    return out


def curve_records(name: str, info: dict, precision, curve, attack: str, **settings) -> list[dict]:
    """Records of one robustness curve (a DataFrame from
    :func:`medadv_lib.metrics.robustness_curve`): one per budget, with ``attack`` and its settings."""
    keys = ("clean_accuracy", "robust_accuracy", "defense_rate", "attack_success_rate", "n")
    ident = model_record(name, info, precision)
    return [{**ident, "attack": attack, "norm": str(row["norm"]), "eps": float(row["eps"]), "target": None,
             **{k: row[k] for k in keys}, **settings} for _, row in curve.iterrows()]
