"""Helpers shared by the CLI commands that evaluate a trained checkpoint."""
from __future__ import annotations

import sys

from ..data import load_split
from ..models import load_checkpoint
from ..runtime import PRECISIONS, describe_run, get_device, resolve_precision


def add_runtime_args(p) -> None:
    """``--device`` and ``--precision``: every command that runs a model takes both."""
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="precision policy: auto (bf16 + channels_last on a bf16 GPU or a CPU with AMX, "
                        "else fp32), fp32, bf16, fp16 (CUDA); default $MEDADV_PRECISION or auto")


def runtime_of(args):
    """Resolve ``args.device`` / ``args.precision``; print the one-line run description once
    (stderr under ``--json``, so the JSON stays the last line of stdout). Returns ``(device, precision)``."""
    device = get_device(args.device)
    prec = resolve_precision(args.precision, device)
    print(describe_run(device, prec), file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return device, prec


def add_checkpoint_args(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `medadv train` or notebook 01")
    p.add_argument("--data", default=None, help="dataset folder")
    add_runtime_args(p)
    p.add_argument("--limit", type=int, default=None, help="class-stratified subset of the split (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")


def model_and_split(args, split: str = "test", limit: int | None = None):
    """Load ``args.checkpoint`` on ``args.device`` and the ``split`` images at the size and crop
    the model was trained with, under ``args.precision``; returns ``(model, meta, x, y, device)``."""
    device, prec = runtime_of(args)
    model, meta = load_checkpoint(args.checkpoint, device=device, precision=prec)
    cfg = meta.get("config", {})
    if "image_size" not in cfg:
        raise ValueError(f"{args.checkpoint} records no training image size; retrain it with `medadv train`")
    x, y = load_split(split, cfg["image_size"], args.data, cfg.get("crop_top", False), limit=limit, seed=args.seed)
    return model, meta, x, y, device
