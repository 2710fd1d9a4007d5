"""Checkpoints: fp32 weights, the model spec and JSON-like metadata, written atomically and read with
``torch.load(..., weights_only=True)`` (never a pickled module)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..runtime import Precision, atomic_torch_save
from .architectures import MedModel
from .spec import build_from_spec

CHECKPOINT_FORMAT = "medadv-checkpoint/1"


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
