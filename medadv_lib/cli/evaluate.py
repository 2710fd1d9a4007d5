"""``medadv evaluate``: the course's robustness table for a checkpoint (white-box PGD, DeepFool, its own
UAP, transfer and gradient-free checks, with Wilson intervals and the gradient-masking verdicts)."""
from __future__ import annotations

import time

from ..course import json_safe, course_robustness
from ..metrics.defense import hygiene_checks
from ..models import load_checkpoint
from ..course.runner import resolve_mode
from . import emit
from ._shared import add_runtime_args, runtime_of

COLUMNS = ("attack", "norm", "eps", "n", "clean_accuracy", "robust_accuracy", "robust_accuracy_lo",
           "robust_accuracy_hi", "defense_rate", "defense_rate_lo", "defense_rate_hi", "balanced_robust_accuracy", "set_by")


def _evaluate(args) -> int:
    t0 = time.time()
    device, prec = runtime_of(args)
    model, meta = load_checkpoint(args.checkpoint, device=device, precision=prec)
    info = {**meta, "checkpoint": args.checkpoint}
    source = source_info = None
    if args.transfer_from:
        source, source_meta = load_checkpoint(args.transfer_from, device=device, precision=prec)
        source_info = {**source_meta, "checkpoint": args.transfer_from}
    name = args.name or meta.get("config", {}).get("model", "model")
    table = course_robustness(model, info, name, resolve_mode(args.mode), source, source_info, args.out, args.data,
                              args.seed, progress=not args.json)
    check = hygiene_checks(table).iloc[0]
    rows = [{k: v for k, v in r.items() if v == v} for r in table.to_dict(orient="records")]   # drop NaN cells
    result = {"checkpoint": args.checkpoint, "model": name, "precision": str(prec), "rows": rows,
              "hygiene": {k: None if check[k] is None else bool(check[k])
                          for k in ("steps_restarts", "transfer", "gradient_free", "large_eps")},
              "verdict": check["verdict"], "seconds": time.time() - t0}
    lines = [table[[c for c in COLUMNS if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4f}"),
             f"verdict: {check['verdict']}", f"seconds {result['seconds']:.1f}"]
    emit(json_safe(result), args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="robustness table of a checkpoint (PGD, DeepFool, UAP, transfer, Square)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint (`medadv train`, `medadv defend`, notebooks)")
    p.add_argument("--transfer-from", default=None, help="checkpoint whose PGD examples test transfer (the baseline)")
    p.add_argument("--name", default=None, help="name of the model in the table (default: its architecture)")
    p.add_argument("--mode", default="auto", choices=("auto", "fast", "full"),
                   help="attack settings: fast (CPU: test subset, lighter checks) or full; auto = full with CUDA")
    p.add_argument("--out", default="runs", help="cache folder (UAPs, results)")
    p.add_argument("--data", default=None, help="dataset folder")
    p.add_argument("--seed", type=int, default=0)
    add_runtime_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_evaluate)
