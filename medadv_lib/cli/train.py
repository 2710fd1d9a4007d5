"""``medadv train``: train a classifier, or load it from the checkpoint cache."""
from __future__ import annotations

import time

from .. import LABELS
from ..models import ARCHITECTURES
from ..train import TrainConfig, load_or_train
from . import emit
from ._shared import add_runtime_args, runtime_of


def _num(v) -> str:
    """A metric for the text summary: undefined ones (a class absent from the split) show as n/a."""
    return "n/a" if v is None or v != v else f"{v:.3f}"


def _train(args) -> int:
    if args.model not in ARCHITECTURES:
        raise ValueError(f"unknown model {args.model!r}; known models: {', '.join(sorted(ARCHITECTURES))}")
    t0 = time.time()
    device, prec = runtime_of(args)
    cfg = TrainConfig(model=args.model, image_size=args.image_size, epochs=args.epochs, seed=args.seed,
                      batch_size=args.batch_size, lr=args.lr, crop_top=args.crop_top, weights=args.weights)
    _, info = load_or_train(cfg, out_dir=args.out, data_dir=args.data, device=device,
                            progress=not args.json and not args.quiet, force=args.force, precision=prec)
    test = info["test"]
    result = {"model": args.model, "image_size": args.image_size, "epochs": args.epochs, "seed": args.seed,
              "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
              "per_class": {k: {"sensitivity": v["sensitivity"], "ppv": v["ppv"]} for k, v in test["per_class"].items()},
              "confusion": test["confusion"], "val_accuracy": info["val"]["accuracy"],
              "checkpoint": info["checkpoint"], "cached": info["cached"], "train_seconds": info["train_seconds"],
              "device": info["device"], "precision": str(prec), "train_precision": info.get("precision"),
              "seconds": time.time() - t0}
    lines = [f"{args.model} @ {args.image_size}px, {args.epochs} epochs, seed {args.seed} "
             f"({'loaded from cache' if info['cached'] else 'trained'}: {info['checkpoint']})",
             f"test accuracy {_num(test['accuracy'])}   macro F1 {_num(test['macro_f1'])}"]
    lines += [f"  {lab:<10} sensitivity {_num(test['per_class'][lab]['sensitivity'])}  "
              f"ppv {_num(test['per_class'][lab]['ppv'])}" for lab in LABELS]
    lines.append(f"seconds {result['seconds']:.1f}")
    emit(result, args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (or load it from the cache) and report test metrics")
    p.add_argument("--model", required=True, help=f"architecture: {', '.join(sorted(ARCHITECTURES))}")
    p.add_argument("--image-size", type=int, default=128, help="side in pixels, at least 32")
    p.add_argument("--epochs", type=int, default=8, help="at least 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--crop-top", action="store_true", help="drop the top sixth of each image (COVIDx-style)")
    p.add_argument("--weights", default=None, help="torchvision weight name (needs internet); default random init")
    p.add_argument("--out", default="runs", help="checkpoint folder (cache); checked writable before training")
    p.add_argument("--data", default=None, help="dataset folder")
    add_runtime_args(p)
    p.add_argument("--force", action="store_true", help="retrain even if a cached checkpoint exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_train)
