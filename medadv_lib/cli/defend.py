"""``medadv defend``: add attention modules and/or prune a trained checkpoint, then fine-tune it
(cached by configuration, like ``medadv train``)."""
from __future__ import annotations

import time

from ..course import defend_checkpoint
from ..defenses import KINDS, defense_name, normalize_defense, sparsity
from ..course.runner import resolve_mode
from . import emit
from ._shared import add_runtime_args, runtime_of


def _defend(args) -> int:
    defense = normalize_defense({"attention": args.attention, "prune": args.prune, "structured": args.structured})
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1; got {args.epochs}")
    t0 = time.time()
    device, prec = runtime_of(args)
    model, info = defend_checkpoint(args.checkpoint, defense, resolve_mode(args.mode), args.out, args.data, device,
                                    args.epochs, progress=not args.json, precision=prec)
    test = info["test"]
    result = {"defense": defense_name(defense), **defense, "base_checkpoint": args.checkpoint,
              "model": info["config"]["model"], "epochs": info["config"]["epochs"],
              "test_accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
              "sparsity": sparsity(model), "params": sum(p.numel() for p in model.parameters()),
              "checkpoint": info["checkpoint"], "cached": info["cached"], "train_seconds": info["train_seconds"],
              "precision": str(prec), "seconds": time.time() - t0}
    emit(result, args.json, [f"{result['defense']} on {result['model']} ({'loaded from cache' if info['cached'] else 'fine-tuned'}: "
                             f"{info['checkpoint']})",
                             f"test accuracy {test['accuracy']:.3f}  balanced {test['balanced_accuracy']:.3f}  "
                             f"sparsity {result['sparsity']:.3f}  parameters {result['params']:,}",
                             f"seconds {result['seconds']:.1f}"])
    return 0


def register(sub) -> None:
    p = sub.add_parser("defend", help="add attention and/or pruning to a checkpoint and fine-tune it (cached)")
    p.add_argument("--checkpoint", required=True, help="a trained checkpoint (`medadv train` or notebook 01)")
    p.add_argument("--attention", default=None, choices=KINDS, help="attention module in every residual block")
    p.add_argument("--prune", type=float, default=0.0, help="share of weights (or channels) to prune, in [0, 1)")
    p.add_argument("--structured", action="store_true", help="prune whole channels (torch-pruning) instead of weights")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the course's, 2 FAST / 10 full)")
    p.add_argument("--mode", default="auto", choices=("auto", "fast", "full"),
                   help="the course's fine-tuning settings: fast (CPU) or full; auto = full with CUDA")
    p.add_argument("--out", default="runs", help="checkpoint folder (cache)")
    p.add_argument("--data", default=None, help="dataset folder")
    add_runtime_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_defend)
