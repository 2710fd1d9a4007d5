"""Helpers shared by the CLI commands that evaluate a trained checkpoint."""
from __future__ import annotations

from ..data import load_split
from ..models import load_checkpoint
from ..runtime import get_device


def add_checkpoint_args(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `medadv train` or notebook 01")
    p.add_argument("--data", default=None, help="dataset folder")
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
    p.add_argument("--limit", type=int, default=None, help="class-stratified subset of the split (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")


def model_and_split(args, split: str = "test", limit: int | None = None):
    """Load ``args.checkpoint`` on ``args.device`` and the ``split`` images at the size and crop
    the model was trained with; returns ``(model, meta, x, y, device)``."""
    device = get_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device=device)
    cfg = meta.get("config", {})
    if "image_size" not in cfg:
        raise ValueError(f"{args.checkpoint} records no training image size; retrain it with `medadv train`")
    x, y = load_split(split, cfg["image_size"], args.data, cfg.get("crop_top", False), limit=limit, seed=args.seed)
    return model, meta, x, y, device
