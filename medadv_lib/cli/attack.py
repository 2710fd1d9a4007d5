"""``medadv attack``: a per-image attack (FGSM, PGD, DeepFool) on the test split of a checkpoint."""
from __future__ import annotations

import time

from ..attacks import check_eps, deepfool, fgsm, parse_norm, pgd
from ..metrics import median_rho_adv, robustness_curve
from ..runtime import seed_everything
from . import emit
from ._guard import budget
from ._shared import add_checkpoint_args, model_and_split

ATTACKS = {"fgsm": fgsm, "pgd": pgd, "deepfool": deepfool}


def _attack(args) -> int:
    if args.attack not in ATTACKS:
        raise ValueError(f"unknown attack {args.attack!r}; use one of {', '.join(ATTACKS)}")
    norm, eps = parse_norm(args.norm), check_eps(args.eps)
    t0 = time.time()
    seed_everything(args.seed)
    model, meta, x, y, _ = model_and_split(args, "test", args.limit)
    steps = args.steps if args.steps is not None else (50 if args.attack == "deepfool" else 10)
    kw = {"norm": norm}
    if args.attack == "pgd":
        kw.update(steps=steps, seed=args.seed, restarts=args.restarts)
    elif args.attack == "deepfool":
        kw.update(steps=steps)
    curve, (res,) = robustness_curve(model, x, y, ATTACKS[args.attack], [eps], batch_size=args.batch_size,
                                     progress=not args.json, return_results=True, **kw)
    row = curve.iloc[0]
    result = {"attack": args.attack, "norm": norm, "eps": eps, "checkpoint": args.checkpoint,
              "model": meta.get("config", {}).get("model"), "n": int(row["n"]), "precision": str(model.precision),
              "clean_accuracy": float(row["clean_accuracy"]), "robust_accuracy": float(row["robust_accuracy"]),
              "defense_rate": float(row["defense_rate"]), "attack_success_rate": float(row["attack_success_rate"])}
    if args.attack == "pgd":
        result.update(steps=steps, restarts=args.restarts)
    if args.attack == "deepfool":
        rho = median_rho_adv(res.r, x, y, mask=res.success & (res.pred != y) & (res.iterations > 0))
        result.update(steps=steps, median_rho_adv=rho["overall"], median_rho_adv_per_class=
                      {k: v for k, v in rho.items() if k != "overall"})
    result["seconds"] = time.time() - t0
    lines = [f"{args.attack} (L{'∞' if norm == 'inf' else '2'}, eps={eps:g}) on {result['n']} test images of "
             f"{result['model']}", f"clean accuracy {result['clean_accuracy']:.3f}  robust accuracy "
             f"{result['robust_accuracy']:.3f}  defense rate {result['defense_rate']:.3f}  "
             f"attack success {result['attack_success_rate']:.3f}"]
    if "median_rho_adv" in result:
        lines.append(f"median rho_adv {result['median_rho_adv']:.4f}")
    lines.append(f"seconds {result['seconds']:.1f}")
    emit(result, args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("attack", help="evaluate a checkpoint under FGSM, PGD or DeepFool on the test split")
    add_checkpoint_args(p)
    p.add_argument("--attack", required=True, help="fgsm, pgd or deepfool")
    p.add_argument("--norm", default="inf", help="inf or 2")
    p.add_argument("--eps", type=budget, required=True,
                   help="budget in pixel units ([0,1] images), e.g. 0.0078 or 2/255; L∞ budgets are at most 1")
    p.add_argument("--steps", type=int, default=None, help="PGD steps (default 10) / DeepFool iteration cap (default 50)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_attack)
