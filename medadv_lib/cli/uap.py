"""``medadv uap``: build a universal perturbation on the training split, evaluate it on the test split."""
from __future__ import annotations

import time

from .. import LABELS
from ..attacks import parse_norm, parse_target
from ..attacks.uap import random_uap, save_uap, uap_budget
from ..attacks.uap.cache import check_zeta
from ..course import course_uap
from ..data import image_norm_stats
from ..metrics import evaluate_uap
from ..course.runner import resolve_mode
from ..runtime import seed_everything
from . import emit
from ._shared import add_checkpoint_args, model_and_split

METHODS = ("iterative", "sgd", "random")


def _uap(args) -> int:
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; use one of {', '.join(METHODS)}")
    norm, target = parse_norm(args.norm), parse_target(args.target)
    check_zeta(args.zeta)
    t0 = time.time()
    seed_everything(args.seed)
    model, meta, x_test, y_test, device = model_and_split(args, "test", args.limit)
    cfg = meta["config"]
    if cfg.get("crop_top"):
        raise ValueError(f"{args.checkpoint} was trained with crop_top; the course's UAPs use uncropped images")
    fast = resolve_mode(args.mode)
    progress = not args.json
    path = None
    if args.method == "random":
        eps = uap_budget(args.zeta, norm, image_norm_stats(cfg["image_size"], args.data))
        v = random_uap((cfg["image_size"],) * 2, eps, norm, seed=args.seed)
        n_train = 0
        build = {}
    else:
        res = course_uap(model, args.zeta, norm, target, fast=fast, method=args.method, output_dir=args.runs,
                         data_dir=args.data, seed=args.seed, image_size=cfg["image_size"], train=args.train_limit,
                         epochs=args.epochs, batch_size=args.batch_size, progress=progress)
        v, eps, n_train = res.v, res.eps, res.params.get("n")
        path = res.params.get("loaded_from") or res.params.get("saved_to")
        build = {"converged": bool(res.converged), "stop_reason": res.stop_reason, "steps": res.params.get("steps"),
                 "holdout": res.params.get("holdout"), "build_seconds": res.seconds}
    m = evaluate_uap(model, x_test, y_test, v.cpu(), target=target)
    if args.out:
        save_uap(v.cpu(), args.out)
    result = {"method": args.method, "norm": norm, "zeta": args.zeta, "eps": eps,
              "target": LABELS[target] if target is not None else None, "checkpoint": args.checkpoint,
              "model": cfg.get("model"), "precision": str(model.precision), "mode": "fast" if fast else "full",
              "n_train": n_train, "n_test": len(x_test), "uap_file": path, "cached": bool(path and "loaded_from" in
                                                                                            res.params),
              "fooling_rate": m["fooling_rate"], "fooling_rate_balanced": m["fooling_rate_balanced"],
              "fooling_rate_vs_labels": m["fooling_rate_vs_labels"],
              "fooling_rate_reweighted": m["fooling_rate_reweighted"],
              "fooling_rate_reweighted_lo": m["fooling_rate_reweighted_lo"],
              "fooling_rate_reweighted_hi": m["fooling_rate_reweighted_hi"], "clean_accuracy": m["clean_accuracy"],
              "robust_accuracy": m["robust_accuracy"],
              "fooling_rate_per_class": dict(zip(LABELS, m["fooling_rate_per_class"])),
              "confusion_clean_to_perturbed": m["confusion_clean_to_adv"], "v_norm_inf": m["v_norm_inf"], "v_norm_2": m["v_norm_2"],
              "out": args.out, **build}
    if target is not None:
        result["target_success_rate"] = m["target_success_rate"]
    result["seconds"] = time.time() - t0
    lines = [f"{args.method} UAP, L{'∞' if norm == 'inf' else '2'}, zeta={args.zeta:g} (eps={eps:.4g}) against "
             f"{result['model']}" + (f", target {result['target']}" if target is not None else "")
             + (f" ({'loaded from' if result['cached'] else 'saved to'} {path})" if path else ""),
             *([f"built on {n_train} training images"
                + (f" (+{build['holdout']} held out)" if build.get("holdout") else "")
                + (f", {build['steps']} steps" if build.get("steps") is not None else "")
                + f" in {build['build_seconds']:.1f} s; converged: {str(build['converged']).lower()} ({build['stop_reason']})"]
               if build else []),
             f"test: fooling rate {m['fooling_rate']:.3f} (balanced {m['fooling_rate_balanced']:.3f}; vs labels "
             f"{m['fooling_rate_vs_labels']:.3f}; re-weighted to the paper's mix {m['fooling_rate_reweighted']:.3f} "
             f"[{m['fooling_rate_reweighted_lo']:.3f}, {m['fooling_rate_reweighted_hi']:.3f}]); per class "
             + ", ".join(f"{lab} {r:.3f}" for lab, r in zip(LABELS, m["fooling_rate_per_class"]) if r is not None)
             + f"; accuracy {m['clean_accuracy']:.3f} -> {m['robust_accuracy']:.3f}"]
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
    p.add_argument("--mode", default="auto", choices=["auto", "fast", "full"],
                   help="the course's UAP settings (build images, epochs, batch) of this mode: fast (CPU) or full; "
                        "auto = fast without CUDA, as `make tutorial`. Same arguments, same UAP file as the notebooks")
    p.add_argument("--runs", default="runs", help="the course's output folder; UAPs are cached in RUNS/uaps "
                                                  "(notebooks use ../runs from notebooks/)")
    p.add_argument("--epochs", type=int, default=None, help="override: SGD epochs / iterative passes")
    p.add_argument("--batch-size", type=int, default=None, help="override: SGD mini-batch")
    p.add_argument("--train-limit", type=int, default=None, help="override: class-stratified number of build images")
    p.add_argument("--out", default=None, help="save the perturbation as .npy")
    p.set_defaults(func=_uap)
