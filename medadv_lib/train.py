"""Training, evaluation and the checkpoint cache (load-or-train).

``fit`` trains a :class:`~medadv_lib.models.MedModel` on in-memory tensors with AdamW (or
SGD), a warm-up + cosine learning-rate schedule, class-balanced loss, batched augmentation,
early stopping on validation macro-F1 (best weights restored), tqdm progress, and the course's
precision policy (bf16/fp16 autocast + ``channels_last`` where the hardware has it, see
:func:`medadv_lib.runtime.resolve_precision`).  ``load_or_train`` caches the result as a file
keyed by the training configuration, so a later notebook reuses an earlier one's model.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from .runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from . import LABELS
from .data import augment_batch, class_weights, find_data_dir, load_split
from .data.fingerprint import dataset_fingerprint
from .defenses import apply_defense, defense_name, finalize_defense
from .metrics.classification import classification_report
from .models import build_model, load_checkpoint, predict, save_checkpoint
from .runtime import Precision, get_device, resolve_precision, seed_everything


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a trained model (and so its cache key)."""
    model: str = "resnet18"
    image_size: int = 128
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"          # "adamw" or "sgd"
    warmup_epochs: float = 0.5
    balance: str = "loss"             # "loss" (weighted CE), "sampler" or "none"
    augment: bool = True
    label_smoothing: float = 0.05
    patience: int | None = None       # early stopping on val macro-F1; None: run all epochs, keep best
    crop_top: bool = False
    train_limit: int | None = None    # class-stratified subset of the training split
    weights: str | None = None        # torchvision weight name (needs internet), None = random init
    init_from: str | None = None      # fine-tune: start from this checkpoint's weights (its bytes enter the key)
    perturbation: dict | None = None  # JSON description of fit's per-batch ``perturb`` hook (enters the key)
    defense: dict | None = None       # model defense applied to init_from before fine-tuning (medadv_lib.defenses)
    seed: int = 0

    def key(self, data_fingerprint: str = "") -> str:
        d = dataclasses.asdict(self)
        if d["init_from"] is None:
            del d["init_from"]               # keys of configurations without fine-tuning stay as before
        else:
            d["init_from"] = hashlib.sha1(Path(self.init_from).read_bytes()).hexdigest()[:10]
        for k in ("perturbation", "defense"):
            if d[k] is None:
                del d[k]
        blob = json.dumps(d, sort_keys=True) + data_fingerprint
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def filename(self, data_fingerprint: str = "") -> str:
        name = self.model
        if self.defense:
            name += f"-{defense_name(self.defense)}"
        if self.perturbation:
            name += f"-{self.perturbation.get('name', self.perturbation.get('kind', 'perturbed'))}"
        return f"{name}-{self.image_size}px-e{self.epochs}-s{self.seed}-{self.key(data_fingerprint)}.pt"


def data_fingerprint(data_dir=None) -> str:
    """Short hash of the dataset's content (metadata.csv and every image's bytes, memoised per file:
    :mod:`medadv_lib.data.fingerprint`): an edited image or table gives a different cache key."""
    return dataset_fingerprint(data_dir)[:10]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128, device=None) -> dict:
    """Accuracy, macro F1, per-class sensitivity/PPV and the confusion matrix (see
    :func:`medadv_lib.metrics.classification_report`), plus ``loss`` (mean cross-entropy)."""
    logits = predict(model, x, batch_size, device, return_logits=True)
    report = classification_report(y.numpy(), logits.argmax(1).numpy())
    report["loss"] = float(nn.functional.cross_entropy(logits, y))
    return report


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        p = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
        config: TrainConfig = TrainConfig(), device=None, progress: bool = True,
        precision: str | Precision | None = None, perturb=None) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history (loss, val accuracy/macro-F1, lr, seconds; ``val_n``:
    the validation images the rates were measured on).

    ``perturb`` is the per-batch hook that makes this one loop serve clean training, UAP fine-tuning
    and adversarial training (Kolter & Madry's ``epoch_adversarial``): ``perturb(model, x, y) -> x'``
    is called on every (augmented) training batch before the forward pass, and must return images
    in [0, 1] of the same shape (e.g. ``x`` plus a UAP on a share of the batch, or PGD examples).
    ``None`` trains on clean images.  Describe it in ``config.perturbation`` so that the cache key
    of :func:`load_or_train` tells defended models apart.

    The weights of the epoch with the best validation macro-F1 are restored at the end.  A
    :class:`~medadv_lib.models.MedModel` is given the precision policy ``precision`` (``None``:
    ``$MEDADV_PRECISION`` or auto) and keeps it afterwards.

    The history's ``lr`` is the mean learning rate of the epoch's optimiser steps.
    """
    device = get_device(device) if not isinstance(device, torch.device) else device
    gen = seed_everything(config.seed)
    x_tr, y_tr = train
    model.to(device)
    if hasattr(model, "set_precision"):
        model.set_precision(resolve_precision(precision, device))
    fp16 = getattr(getattr(model, "precision", None), "name", "") == "fp16"
    weight = class_weights(y_tr).to(device) if config.balance == "loss" else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=config.lr)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'adamw' or 'sgd'")
    steps_per_epoch = max(1, math.ceil(len(x_tr) / config.batch_size))
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(config.warmup_epochs * steps_per_epoch)))
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)    # fp16 (CUDA) needs loss scaling
    if config.balance == "sampler":
        sample_w = (1.0 / torch.bincount(y_tr).float())[y_tr]
    history, best, best_score, bad_epochs = [], None, -1.0, 0
    bar = tqdm(total=total, desc=f"train {getattr(model, 'arch', '')}", disable=not progress, leave=False)
    for epoch in range(config.epochs):
        t0 = time.time()
        model.train()
        if config.balance == "sampler":
            order = torch.multinomial(sample_w, len(y_tr), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(y_tr), generator=gen)
        run_loss, seen, lr_sum, steps = 0.0, 0, 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            xb, yb = x_tr[idx].to(device, non_blocking=True), y_tr[idx].to(device, non_blocking=True)
            if config.augment:
                xb = augment_batch(xb, generator=gen)
            if perturb is not None:
                xb = perturb(model, xb, yb)
            loss = loss_fn(model(xb), yb)               # the model's precision policy applies
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            lr_sum += opt.param_groups[0]["lr"]       # the learning rate of this step
            steps += 1
            scaler.step(opt)
            scaler.update()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{run_loss / seen:.3f}")
        rec = {"epoch": epoch + 1, "train_loss": run_loss / seen, "lr": lr_sum / steps}
        if val is not None:
            ev = evaluate(model, *val, device=device)
            share = [sum(col) / max(1, ev["n"]) for col in zip(*ev["confusion"])]   # predicted-class shares
            rec.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"], val_macro_f1=ev["macro_f1"],
                       val_balanced_accuracy=ev["balanced_accuracy"], val_top_class_share=max(share),
                       val_n=ev["n"])
            score = ev["macro_f1"]
            if score > best_score:
                best_score, best, bad_epochs = score, copy.deepcopy(model.state_dict()), 0
            else:
                bad_epochs += 1
        rec["seconds"] = time.time() - t0
        history.append(rec)
        if progress:
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if config.patience is not None and bad_epochs > config.patience:
            break
    bar.close()
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return history


def _same_config(stored: dict | None, config: TrainConfig) -> bool:
    """A cached checkpoint's configuration equals ``config``; fields added to :class:`TrainConfig`
    after it was written count as equal when ``config`` leaves them at ``None`` (their default).
    ``init_from`` is a path, and one checkpoint has many spellings (``../runs/x.pt`` from a notebook,
    ``runs/x.pt`` from the CLI, a copied runs folder): its *content* is in the file name's hash
    (:meth:`TrainConfig.key`), so here only its presence is compared."""
    if not isinstance(stored, dict):
        return False
    want = dataclasses.asdict(config)
    same = lambda k, v: (stored.get(k) is None) == (v is None) if k == "init_from" else stored.get(k) == v
    return all(same(k, v) for k, v in want.items() if k in stored or v is not None) and set(stored) <= set(want)


def checkpoint_path(config: TrainConfig, out_dir="runs", data_dir=None, precision: str | Precision | None = None,
                    device=None) -> Path:
    """Where :func:`load_or_train` caches ``config``'s model: the name carries the configuration's hash,
    the dataset fingerprint and, when it is not fp32, the training precision."""
    prec = precision if isinstance(precision, Precision) else resolve_precision(precision, get_device(device))
    suffix = "" if prec.name == "fp32" else f"-{prec.name}"
    return Path(out_dir) / config.filename(data_fingerprint(data_dir) + suffix)


def load_or_train(config: TrainConfig, out_dir="runs", data_dir=None, device=None, progress: bool = True,
                  force: bool = False, precision: str | Precision | None = None,
                  perturb=None) -> tuple[nn.Module, dict]:
    """Return ``(model, info)`` for ``config``: load the cached checkpoint, or train, test and cache it.

    ``info`` holds ``checkpoint`` (path), ``cached`` (bool), ``config``, ``precision`` (the policy
    it was trained under), ``test`` and ``val`` reports (see :func:`evaluate`), ``history`` and
    ``train_seconds``.  The checkpoint name carries a hash of the configuration, the dataset and
    the training precision (bf16 and fp32 training give different weights), so changing any of
    them retrains.  The returned model runs under the policy ``precision`` (``None``:
    ``$MEDADV_PRECISION`` or auto).  ``config.init_from`` fine-tunes from another checkpoint (its
    architecture and weights); ``perturb`` is :func:`fit`'s per-batch hook, which
    ``config.perturbation`` must describe (a hook without a description is refused: it would share
    the clean model's cache entry).
    """
    if perturb is not None and not config.perturbation:
        raise ValueError("load_or_train got a perturb hook but config.perturbation is empty: describe the hook "
                         "(e.g. {'kind': 'uap', 'zeta': 0.02}) so the defended model gets its own cache key")
    device = get_device(device)
    prec = resolve_precision(precision, device)
    fp = data_fingerprint(data_dir)
    path = checkpoint_path(config, out_dir, data_dir, prec)
    if path.exists() and not force:
        try:
            model, meta = load_checkpoint(path, device=device, precision=prec)
        except ValueError as exc:      # unreadable or stale cache entry: train again and replace it
            warnings.warn(f"ignoring cached checkpoint: {exc}; training again", stacklevel=2)
        else:
            if _same_config(meta.get("config"), config):
                return model, {**meta, "checkpoint": str(path), "cached": True}
    t0 = time.time()
    train = load_split("train", config.image_size, data_dir, config.crop_top, limit=config.train_limit,
                       seed=config.seed)
    val = load_split("val", config.image_size, data_dir, config.crop_top)
    test = load_split("test", config.image_size, data_dir, config.crop_top)
    seed_everything(config.seed)
    if config.init_from:
        model, _ = load_checkpoint(config.init_from, device=device, precision=prec)
        if model.arch != config.model:
            raise ValueError(f"init_from {config.init_from} holds a {model.arch}, but the configuration trains a "
                             f"{config.model}; set model={model.arch!r}")
    else:
        model = build_model(config.model, len(LABELS), 1, weights=config.weights)
    if config.defense:
        if not config.init_from:
            raise ValueError("a defense is applied to a trained network: set init_from to its checkpoint")
        apply_defense(model, config.defense, config.image_size)
    history = fit(model, train, val, config, device, progress, precision=prec, perturb=perturb)
    if config.defense:
        finalize_defense(model)
    train_seconds = time.time() - t0
    meta = {"config": dataclasses.asdict(config), "data_fingerprint": fp, "history": history,
            "train_seconds": train_seconds, "device": str(device), "torch": str(torch.__version__),
            "precision": str(prec),
            "val": evaluate(model, *val, device=device), "test": evaluate(model, *test, device=device)}
    save_checkpoint(model, path, **meta)
    # hand back the model as the file rebuilds it (spec, weights, memory format): a first run and every
    # later cached run then measure the very same module (an in-place pruned module, for one, keeps
    # pruning's re-parametrisation leftovers and ran slower than its reloaded twin)
    model, _ = load_checkpoint(path, device=device, precision=prec)
    return model, {**meta, "checkpoint": str(path), "cached": False}


def collapse_check(history: list[dict], warmup: int = 1, threshold: float = 0.9) -> dict:
    """Did training collapse to one class?  After ``warmup`` epochs, count the epochs whose
    validation predictions put more than ``threshold`` of the images in one class.

    Returns ``{"epochs_checked", "collapsed_epochs", "max_top_class_share", "collapsed"}``;
    ``collapsed`` is True when any checked epoch collapsed (needs ``val_top_class_share`` in the
    history, recorded by :func:`fit` when it has a validation split).
    """
    after = [h for h in history if h["epoch"] > warmup and "val_top_class_share" in h]
    bad = [h["epoch"] for h in after if h["val_top_class_share"] > threshold]
    return {"epochs_checked": len(after), "collapsed_epochs": bad,
            "max_top_class_share": max((h["val_top_class_share"] for h in after), default=float("nan")),
            "collapsed": bool(bad)}
