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
    :func:`~medadv_lib.attacks.uap.cache.precompute_uaps` (``method="sgd"``, epochs, batch size);
    :func:`course_uap` applies them.

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


def course_uap(model, zeta: float, norm: str = "inf", target=None, fast: bool = True, method: str = "sgd",
               output_dir="../runs", data_dir=None, seed: int = 0, image_size: int | None = None,
               train: int | None = None, epochs: int | None = None, batch_size: int | None = None,
               progress: bool = False):
    """The course's UAP for ``model``: built once on the course's build images with the course's
    settings, then loaded from ``OUTPUT_DIR/uaps`` (cached by the model weights, the build images,
    the method and its settings; see :mod:`medadv_lib.attacks.uap.cache`).

    Notebooks 02 and 03, the widgets and ``medadv uap`` all get "the ζ = 2% UAP" from here, so the
    same arguments give the same file.  ``method`` is ``"sgd"`` (Shafahi et al., the course's) or
    ``"iterative"`` (Hirano et al.'s algorithm; ``epochs`` then means passes).  ``train``, ``epochs``,
    ``batch_size`` override :func:`uap_settings`; ``image_size`` defaults to the mode's size.  The
    budget is ``eps = zeta × mean image norm`` over the whole training split at that size.
    Returns a :class:`~medadv_lib.attacks.uap.UAPResult` (``params["loaded_from"]`` when cached).

    Example::
        >>> res = course.course_uap(model, 0.02, "inf", fast=True, output_dir=OUTPUT_DIR)
        >>> res.v.shape, res.eps
    """
    from .attacks.uap.cache import build_uap
    from .data import image_norm_stats, load_split
    u = uap_settings(fast, train, epochs, batch_size)
    size = image_size or settings(fast).image_size
    x, _ = load_split("train", size, data_dir, limit=u.train, seed=seed)
    stats = image_norm_stats(size, data_dir)
    kwargs = {"epochs": u.epochs, "batch_size": u.batch_size} if method == "sgd" else {"max_iter": u.epochs}
    return build_uap(model, x, zeta, norm, target, stats=stats, method=method, cache_dir=Path(output_dir) / "uaps",
                     seed=seed, progress=progress, **kwargs)


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


# --------------------------------------------------------------------------------------------
# Defenses (notebook 04): one pipeline, like course_model and course_uap
# --------------------------------------------------------------------------------------------

# Fine-tuning a defended model from the course's trained one (notebook 01's checkpoint): a few epochs
# at a small learning rate.  The "baseline-ft" arm gets the very same fine-tuning without a defense,
# so that the ablation compares defenses, not extra training.  FAST fine-tunes one epoch on a
# class-stratified 800 of the 1,628 training images and attacks 64 test images, so that the seven arms
# of notebook 04 fit a CPU notebook; FULL fine-tunes 10 epochs on everything and attacks the whole test split.
DEFENSE_FAST = SimpleNamespace(epochs=1, lr=5e-4, warmup_epochs=0.2, train_limit=800, eval_images=64)
DEFENSE_FULL = SimpleNamespace(epochs=10, lr=3e-4, warmup_epochs=0.5, train_limit=None, eval_images=None)


def robustness_settings(fast: bool):
    """The attacks of the course's robustness evaluation (:class:`~medadv_lib.metrics.defense.RobustnessSettings`).

    FULL runs what the defense issue asks for (PGD-L∞ at 1, 2, 4/255 with 10 steps, and 50 steps × 5
    restarts at every ε; Square with 1,000 queries).  FAST, to fit a CPU notebook, runs the stronger
    PGD (20 steps × 2 restarts) and Square (100 queries; torchattacks' Square costs one forward pass per
    query and image, the largest share of the evaluation) at ε = 2/255 only, on 64 test images: a weaker
    check, said so wherever its verdicts are shown."""
    from .metrics.defense import RobustnessSettings
    if fast:
        return RobustnessSettings(strong_steps=20, strong_restarts=2, strong_eps=(2 / 255,), square_queries=100)
    return RobustnessSettings()


def defend_checkpoint(checkpoint, defense: dict | None, fast: bool, output_dir="../runs", data_dir=None,
                      device=None, epochs: int | None = None, progress: bool = True, precision=None):
    """Apply ``defense`` (see :mod:`medadv_lib.defenses`; ``None`` = fine-tune only) to the trained
    model in ``checkpoint`` and fine-tune it with :data:`DEFENSE_FAST`/:data:`DEFENSE_FULL` (``epochs``
    overrides) on the training configuration the checkpoint records (size, crop, seed), through
    :func:`~medadv_lib.train.load_or_train`: cached under its own key.  Returns ``(model, info)``.
    ``medadv defend`` and :func:`course_defense` both come here."""
    from .defenses import normalize_defense
    from .models import read_checkpoint
    base = read_checkpoint(checkpoint).get("meta", {}).get("config")
    if not isinstance(base, dict):
        raise ValueError(f"{checkpoint} records no training configuration; train it with `medadv train` or notebook 01")
    d = DEFENSE_FAST if fast else DEFENSE_FULL
    cfg = TrainConfig(**{k: v for k, v in base.items() if k in TrainConfig.__dataclass_fields__})
    cfg = dataclasses.replace(cfg, epochs=epochs or d.epochs, lr=d.lr, warmup_epochs=d.warmup_epochs, patience=None,
                              train_limit=min((v for v in (d.train_limit, cfg.train_limit) if v), default=None),
                              init_from=str(checkpoint), defense=normalize_defense(defense), perturbation=None,
                              weights=None)
    return load_or_train(cfg, out_dir=output_dir, data_dir=data_dir, device=device, progress=progress,
                         precision=precision)


def course_defense(base: str, defense: dict | None, fast: bool, output_dir="../runs", data_dir=None, device=None,
                   seed: int = 0, epochs: int | None = None, progress: bool = True, precision=None):
    """The course's defended version of model ``base`` (``defense``: see :mod:`medadv_lib.defenses`;
    ``None`` = the fine-tuned baseline): notebook 01's model is loaded (or trained), then
    :func:`defend_checkpoint`.  Returns ``(model, info)``.

    Example::
        >>> model, info = course.course_defense("resnet18", {"attention": "cbam"}, fast=True, output_dir=OUTPUT_DIR)
    """
    _, base_info = course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
    return defend_checkpoint(base_info["checkpoint"], defense, fast, output_dir, data_dir, device, epochs, progress,
                             precision)


_TRANSFER_MEMO: dict = {}


def transfer_examples(source, source_info: dict, x, y, eps: float = 2 / 255, steps: int = 10, seed: int = 0) -> dict:
    """PGD-L∞ examples crafted on ``source`` (usually the undefended baseline) for the transfer check
    of :func:`~medadv_lib.metrics.defense.robustness_table`; memoised per source checkpoint."""
    from .attacks import pgd
    key = (file_fingerprint(source_info["checkpoint"]), len(x), float(x.sum()), eps, steps, seed)
    if key not in _TRANSFER_MEMO:
        dev = next(source.parameters()).device
        res = pgd(source, x.to(dev), y.to(dev), eps=eps, steps=steps, seed=seed)
        _TRANSFER_MEMO[key] = {"source": source_info.get("config", {}).get("model", "source"), "eps": eps,
                               "x_adv": res.x_adv.cpu(), "source_checkpoint": Path(source_info["checkpoint"]).name}
    return _TRANSFER_MEMO[key]


def eval_images(fast: bool, image_size: int | None = None, data_dir=None, seed: int = 0):
    """The test images a robustness evaluation attacks: FAST a class-stratified subset of
    ``DEFENSE_FAST.eval_images``, FULL the whole test split."""
    from .data import load_split
    d = DEFENSE_FAST if fast else DEFENSE_FULL
    return load_split("test", image_size or settings(fast).image_size, data_dir, limit=d.eval_images, seed=seed)


def course_robustness(model, info: dict, name: str, fast: bool, source=None, source_info: dict | None = None,
                      output_dir="../runs", data_dir=None, seed: int = 0, progress: bool = True):
    """The course's robustness evaluation of one (defended) model, cached in ``OUTPUT_DIR/robustness``.

    White-box against ``model`` itself: :func:`~medadv_lib.metrics.defense.robustness_table` with
    :func:`robustness_settings` on :func:`eval_images`, the model's own ζ = 2 % L∞ UAP
    (:func:`course_uap`), transfer examples from ``source`` (PGD ε = 2/255 on the baseline), plus
    the model's parameters, FLOPs and CPU latency per image.  Returns the tidy table (one row per
    attack and ε; columns of ``robustness_table`` plus ``defense``, ``checkpoint_fingerprint``,
    ``params``, ``flops``, ``latency_ms``).
    """
    import pandas as pd

    from .data import image_norm_stats
    from .defenses import defense_name, model_cost
    from .metrics.defense import robustness_table
    s = robustness_settings(fast)
    size = info["config"]["image_size"]
    fp = file_fingerprint(info["checkpoint"])
    src_fp = file_fingerprint(source_info["checkpoint"]) if source_info else "none"
    key = hashlib.sha1(json.dumps([dataclasses.asdict(s), src_fp, fast, seed, name], sort_keys=True,
                                  default=str).encode()).hexdigest()[:10]
    path = Path(output_dir) / "robustness" / f"{name}-{fp}-{key}.json"
    if path.exists():
        return pd.read_json(path, orient="records")
    x, y = eval_images(fast, size, data_dir, seed)
    uap = course_uap(model, 0.02, "inf", fast=fast, output_dir=output_dir, data_dir=data_dir, seed=seed,
                     image_size=size)
    transfer = transfer_examples(source, source_info, x, y, seed=seed) if source is not None else None
    table = robustness_table(model, x, y, name, s, l2_norm_mean=image_norm_stats(size, data_dir)["l2"], uap=uap,
                             transfer=transfer, progress=progress)
    cost = model_cost(model, size)
    table = table.assign(defense=defense_name(info["config"].get("defense")) if info["config"].get("defense")
                         else "baseline", checkpoint_fingerprint=fp, precision=str(model.precision), **cost)
    atomic_write_text(table.to_json(orient="records", indent=1), path)
    return table


# The ablation of notebook 04 (Chen et al.'s design: baseline, + attention, + pruning, + both).  Names are
# the defenses' own (:func:`medadv_lib.defenses.defense_name`); "baseline" is notebook 01's model as is.
DEFENSE_ARMS = ("baseline", "baseline-ft", "cbam", "se", "prune0.6", "channels0.3", "cbam+prune0.6")
SPARSITY_GRID = (0.3, 0.6, 0.9)     # unstructured sparsities of the sweep (and the instructor widget)


def parse_defense(name: str) -> dict | None:
    """The defense description behind an arm name (inverse of :func:`~medadv_lib.defenses.defense_name`):
    ``"cbam+prune0.6"`` → ``{"attention": "cbam", "prune": 0.6, "structured": False}``; ``"baseline"`` → None."""
    from .defenses import KINDS, normalize_defense
    if name in ("baseline", "baseline-ft"):
        return None if name == "baseline" else normalize_defense(None)
    d = {}
    for part in name.split("+"):
        if part in KINDS:
            d["attention"] = part
        elif part.startswith("prune"):
            d["prune"] = float(part[5:])
        elif part.startswith("channels"):
            d.update(prune=float(part[8:]), structured=True)
        else:
            raise ValueError(f"unknown defense arm {name!r}: parts are cbam, se, prune<amount>, channels<amount>, "
                             "joined by '+', or baseline / baseline-ft")
    return normalize_defense(d)


def defense_study(base: str, arms, fast: bool, output_dir="../runs", data_dir=None, device=None, seed: int = 0,
                  precision=None, progress: bool = True) -> dict:
    """``{arm name: (model, info)}`` for each arm (see :data:`DEFENSE_ARMS`): "baseline" is
    :func:`course_model`, every other arm :func:`course_defense` (cached)."""
    out = {}
    for name in arms:
        d = parse_defense(name)
        out[name] = (course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
                     if d is None else course_defense(base, d, fast, output_dir, data_dir, device, seed,
                                                      progress=progress, precision=precision))
    return out


def defended_models_table(study: dict):
    """One row per arm of :func:`defense_study`: test accuracy, balanced accuracy, sparsity,
    parameters, fine-tuning seconds, and whether it came from the cache."""
    import pandas as pd

    from .defenses import sparsity
    rows = []
    for name, (m, info) in study.items():
        rows.append({"arm": name, "test_accuracy": info["test"]["accuracy"],
                     "balanced_accuracy": info["test"]["balanced_accuracy"], "sparsity": sparsity(m),
                     "params": sum(p.numel() for p in m.parameters()),
                     "fine_tune_epochs": info["config"]["epochs"] if info["config"].get("init_from") else 0,
                     "train_seconds": info.get("train_seconds"), "cached": info.get("cached")})
    return pd.DataFrame(rows).set_index("arm")


def robustness_study(study: dict, fast: bool, output_dir="../runs", data_dir=None, seed: int = 0,
                     progress: bool = True):
    """:func:`course_robustness` of every arm of :func:`defense_study`, concatenated; the transfer
    examples come from the undefended "baseline" (the first arm when there is none)."""
    import pandas as pd
    src_name = "baseline" if "baseline" in study else next(iter(study))
    src, src_info = study[src_name]
    return pd.concat([course_robustness(m, info, name, fast, src, src_info, output_dir, data_dir, seed, progress)
                      for name, (m, info) in study.items()], ignore_index=True)


def sparsity_sweep(base: str, sparsities, fast: bool, output_dir="../runs", data_dir=None, device=None,
                   seed: int = 0, eps=(2 / 255,), precision=None, progress: bool = True):
    """Unstructured pruning at each sparsity (fine-tuned, cached; sparsity 0 is the equally fine-tuned
    "baseline-ft"), with clean accuracy and the PGD-10
    defense rate (Wilson interval) at each ``eps`` on :func:`eval_images`.  Returns ``(table, models)``:
    a DataFrame with ``sparsity, eps, clean_accuracy, defense_rate, defense_rate_lo/hi, robust_accuracy``
    and ``{sparsity: model}``."""
    import pandas as pd

    from .metrics.defense import RobustnessSettings, robustness_table
    rows, models = [], {}
    s = RobustnessSettings(eps=tuple(eps), strong_eps=(), square_queries=0, deepfool_steps=0, large_eps=None, seed=seed)
    for sp in sparsities:
        m, info = course_defense(base, {"prune": sp}, fast, output_dir, data_dir, device, seed, progress=progress,
                                 precision=precision)
        x, y = eval_images(fast, info["config"]["image_size"], data_dir, seed)
        t = robustness_table(m, x, y, f"prune{sp:g}", s)
        t = t[t.attack == "pgd"].assign(sparsity=float(sp))
        rows.append(t)
        models[sp] = m
    return pd.concat(rows, ignore_index=True), models


def defense_records(table, checks, study: dict, precision) -> list[dict]:
    """Notebook 04's records (results schema): one per arm and attack row of the robustness table,
    with ``defense`` (the arm), the budget, the rates with their intervals and the hygiene verdict."""
    keys = ("attack", "norm", "eps", "zeta", "steps", "restarts", "n", "n_clean_correct", "clean_accuracy",
            "robust_accuracy", "robust_accuracy_lo", "robust_accuracy_hi", "defense_rate", "defense_rate_lo",
            "defense_rate_hi", "median_rho_adv", "fooling_rate", "params", "flops", "latency_ms")
    verdict = dict(zip(checks.model, checks.verdict))
    out = []
    for row in table.to_dict(orient="records"):
        _, info = study[row["model"]]
        out.append({**model_record(info["config"]["model"], info, precision), "defense": row["model"],
                    "target": None, **{k: row[k] for k in keys if k in row}, "verdict": verdict.get(row["model"])})
    return out
