"""``medadv defend``: harden a trained checkpoint and fine-tune it (cached by configuration, like
``medadv train``).  Two families:

* model modifications (notebook 04): ``--attention cbam|se`` and/or ``--prune A [--structured]``;
* training-side defenses (notebook 05): ``--method uap-finetune [--rounds K]`` (Hirano et al.),
  ``--method uat`` (universal adversarial training) or ``--method pgd-at [--eps E]`` (adversarial
  training; FAST: FGSM with a random start)."""
from __future__ import annotations

import time

from ..course import METHODS, adversarial_settings, adversarial_training, defend_checkpoint, uap_finetune_rounds
from ..course.runner import resolve_mode
from ..defenses import KINDS, defense_name, normalize_defense, sparsity
from . import emit
from ._guard import budget
from ._shared import add_runtime_args, runtime_of


def _check(args):
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1; got {args.epochs}")
    if args.method is None:
        if args.rounds is not None or args.eps is not None:
            raise ValueError("--rounds and --eps belong to --method (uap-finetune, uat, pgd-at)")
        return normalize_defense({"attention": args.attention, "prune": args.prune, "structured": args.structured})
    if args.attention or args.prune or args.structured:
        raise ValueError(f"--method {args.method} fine-tunes the network as it is: leave out --attention/--prune "
                         "(run them as a separate `medadv defend`)")
    if args.rounds is not None and args.method != "uap-finetune":
        raise ValueError("--rounds belongs to --method uap-finetune")
    if args.eps is not None and args.method != "pgd-at":
        raise ValueError("--eps belongs to --method pgd-at (UAP methods use the course's ζ = 2 %)")
    if args.method == "uap-finetune" and args.epochs is not None:
        raise ValueError("--epochs does not apply to --method uap-finetune: each round fine-tunes the course's "
                         "round_epochs; set --rounds instead")
    adversarial_settings(True, args.rounds, args.eps)          # validates --rounds and --eps before any work
    return None


def _model_summary(model, info) -> dict:
    test = info["test"]
    return {"test_accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
            "checkpoint": info["checkpoint"], "cached": info["cached"], "train_seconds": info.get("train_seconds"),
            "epochs": info["config"]["epochs"], "params": sum(p.numel() for p in model.parameters())}


def _defend(args) -> int:
    defense = _check(args)
    t0 = time.time()
    device, prec = runtime_of(args)
    fast = resolve_mode(args.mode)
    common = dict(output_dir=args.out, data_dir=args.data, device=device, progress=not args.json, precision=prec)
    if args.method is None:
        model, info = defend_checkpoint(args.checkpoint, defense, fast, args.out, args.data, device, args.epochs,
                                        progress=not args.json, precision=prec)
        result = {"defense": defense_name(defense), **defense, "sparsity": sparsity(model)}
    elif args.method == "uap-finetune":
        rounds = uap_finetune_rounds(args.checkpoint, fast, args.rounds, seed=args.seed, **common)
        model, info = rounds[-1]["model"], rounds[-1]["info"]
        result = {"defense": "uap-finetune", "rounds": [
            {"round": r["round"], "fresh_uap_fooling_rate": r["fresh"].fooling_rate, "uap_eps": r["fresh"].eps,
             "test_accuracy": r["info"]["test"]["accuracy"], "checkpoint": r["info"]["checkpoint"]} for r in rounds]}
    else:
        model, info = adversarial_training(args.checkpoint, args.method, fast, args.eps, args.epochs, seed=args.seed,
                                           **common)
        result = {"defense": args.method, "perturbation": info["config"]["perturbation"]}
    result = {**result, "base_checkpoint": args.checkpoint, "model": info["config"]["model"],
              **_model_summary(model, info), "precision": str(prec), "seconds": time.time() - t0}
    lines = [f"{result['defense']} on {result['model']} ({'loaded from cache' if info['cached'] else 'fine-tuned'}: "
             f"{info['checkpoint']})",
             f"test accuracy {result['test_accuracy']:.3f}  balanced {result['balanced_accuracy']:.3f}  "
             f"parameters {result['params']:,}"]
    for r in result.get("rounds", []):
        lines.append(f"round {r['round']}: test accuracy {r['test_accuracy']:.3f}, fresh UAP fooling rate "
                     f"(on its build images) {r['fresh_uap_fooling_rate']:.3f}")
    emit(result, args.json, lines + [f"seconds {result['seconds']:.1f}"])
    return 0


def register(sub) -> None:
    p = sub.add_parser("defend", help="harden a checkpoint (attention, pruning, UAP fine-tuning, UAT, PGD-AT) "
                                      "and fine-tune it (cached)")
    p.add_argument("--checkpoint", required=True, help="a trained checkpoint (`medadv train` or notebook 01)")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="a training-side defense (notebook 05) instead of a model modification")
    p.add_argument("--attention", default=None, choices=KINDS, help="attention module in every residual block")
    p.add_argument("--prune", type=float, default=0.0, help="share of weights (or channels) to prune, in [0, 1)")
    p.add_argument("--structured", action="store_true", help="prune whole channels (torch-pruning) instead of weights")
    p.add_argument("--rounds", type=int, default=None,
                   help="--method uap-finetune: rounds of 'build a UAP, fine-tune on it' (default 3 FAST / 5 full)")
    p.add_argument("--eps", type=budget, default=None,
                   help="--method pgd-at: L∞ budget in pixel units, e.g. 2/255 or 0.0078 (default 2/255)")
    p.add_argument("--epochs", type=int, default=None,
                   help="fine-tuning epochs (default: the course's, 1 FAST / 10 full; uat and pgd-at: as many as "
                        "all UAP fine-tuning rounds together)")
    p.add_argument("--mode", default="auto", choices=("auto", "fast", "full"),
                   help="the course's fine-tuning settings: fast (CPU) or full; auto = full with CUDA")
    p.add_argument("--out", default="runs", help="checkpoint folder (cache)")
    p.add_argument("--data", default=None, help="dataset folder")
    p.add_argument("--seed", type=int, default=0)
    add_runtime_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_defend)
