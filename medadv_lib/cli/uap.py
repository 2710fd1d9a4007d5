"""``medadv uap``: build a universal perturbation on the training split, evaluate it on the test split."""
from __future__ import annotations

import time

from .. import LABELS
from ..attacks import parse_norm
from ..attacks.uap import iterative_uap, random_uap, save_uap, sgd_uap, uap_budget
from ..data import image_norm_stats, load_split
from ..metrics import evaluate_uap
from ..runtime import seed_everything
from . import emit
from ._shared import add_checkpoint_args, model_and_split

METHODS = ("iterative", "sgd", "random")


def _target_index(target: str | None) -> int | None:
    if target is None:
        return None
    if target in LABELS:
        return LABELS.index(target)
    lowered = {lab.lower(): i for i, lab in enumerate(LABELS)}
    if target.lower() in lowered:
        return lowered[target.lower()]
    raise ValueError(f"unknown target class {target!r}; use one of {', '.join(LABELS)}")


def _uap(args) -> int:
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; use one of {', '.join(METHODS)}")
    norm, target = parse_norm(args.norm), _target_index(args.target)
    t0 = time.time()
    seed_everything(args.seed)
    model, meta, x_test, y_test, device = model_and_split(args, "test", args.limit)
    cfg = meta["config"]
    stats = image_norm_stats(cfg["image_size"], args.data, cfg.get("crop_top", False))
    eps = uap_budget(args.zeta, norm, stats)
    x_train, y_train = load_split("train", cfg["image_size"], args.data, cfg.get("crop_top", False),
                                  limit=args.train_limit, seed=args.seed)
    progress = not args.json
    if args.method == "random":
        v = random_uap(x_train[:1], eps, norm, seed=args.seed)
    elif args.method == "sgd":
        v = sgd_uap(model, x_train.to(device), y_train.to(device), eps, norm, target=target, epochs=args.epochs,
                    seed=args.seed, progress=progress).v
    else:
        v = iterative_uap(model, x_train.to(device), y_train.to(device), eps, norm, target=target,
                          max_iter=args.max_iter, seed=args.seed, progress=progress).v
    m = evaluate_uap(model, x_test, y_test, v.cpu(), target=target)
    if args.out:
        save_uap(v.cpu(), args.out)
    result = {"method": args.method, "norm": norm, "zeta": args.zeta, "eps": eps,
              "target": LABELS[target] if target is not None else None, "checkpoint": args.checkpoint,
              "model": cfg.get("model"), "precision": str(model.precision), "n_train": len(x_train), "n_test": len(x_test),
              "fooling_rate": m["fooling_rate"], "fooling_rate_balanced": m["fooling_rate_balanced"],
              "fooling_rate_vs_labels": m["fooling_rate_vs_labels"], "clean_accuracy": m["clean_accuracy"],
              "perturbed_accuracy": m["adv_accuracy"],
              "fooling_rate_per_class": dict(zip(LABELS, m["fooling_rate_per_class"])),
              "confusion_clean_to_perturbed": m["confusion_clean_to_adv"], "v_linf": m["v_linf"], "v_l2": m["v_l2"],
              "out": args.out}
    if target is not None:
        result["target_success_rate"] = m["target_success_rate"]
    result["seconds"] = time.time() - t0
    lines = [f"{args.method} UAP, L{'∞' if norm == 'inf' else '2'}, zeta={args.zeta:g} (eps={eps:.4g}) against "
             f"{result['model']}" + (f", target {result['target']}" if target is not None else ""),
             f"test: fooling rate {m['fooling_rate']:.3f} (balanced {m['fooling_rate_balanced']:.3f}; vs labels "
             f"{m['fooling_rate_vs_labels']:.3f}); accuracy {m['clean_accuracy']:.3f} -> {m['adv_accuracy']:.3f}"]
    if target is not None:
        lines.append(f"target success rate {m['target_success_rate']:.3f}")
    if args.out:
        lines.append(f"saved {args.out}")
    lines.append(f"seconds {result['seconds']:.1f}")
    emit(result, args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("uap", help="build a universal adversarial perturbation and evaluate it on the test split")
    add_checkpoint_args(p)
    p.add_argument("--zeta", type=float, required=True, help="budget as a share of the mean image norm (0.02 = 2%%)")
    p.add_argument("--norm", default="inf", help="inf or 2")
    p.add_argument("--method", default="sgd", help="iterative (Moosavi-Dezfooli/Hirano), sgd (Shafahi) or random")
    p.add_argument("--target", default=None, help=f"target class for a targeted UAP: {', '.join(LABELS)}")
    p.add_argument("--epochs", type=int, default=10, help="SGD epochs")
    p.add_argument("--max-iter", type=int, default=15, help="iterative passes")
    p.add_argument("--train-limit", type=int, default=None, help="class-stratified subset of training images")
    p.add_argument("--out", default=None, help="save the perturbation as .npy")
    p.set_defaults(func=_uap)
