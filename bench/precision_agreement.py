"""Notebook 04's headline worst case recomputed under fp32 (issue 22, item 7): do the robustness numbers of a
bf16 run hold in full precision?

Reads a runs folder in which notebook 04 ran (``make tutorial`` writes ``build/runs``): the undefended
baseline and notebook 04's best arm (``course.best_arm_of_04``, the rule book's choice), their recorded
worst-case rows (the robustness cache, computed under the run's precision), and attacks the same images
again with the same suite, settings and seeds with every model switched to ``--precision``
(:func:`medadv_lib.course.precision_agreement`).  Prints, per arm and ε (1/255 and 2/255), the recorded and
recomputed worst-case defense rate, the recorded Wilson 95 % interval, the images whose outcome changed and
the exact McNemar p-value, and exits 1 when a recomputed rate leaves the recorded interval or McNemar finds a
difference (0 when every row agrees; 2 when the runs folder has no notebook 04 run).

On a CPU without native bf16 the run's precision is fp32 already and the comparison is fp32 against fp32
(it must then agree exactly); the informative run is on a CPU with AMX/AVX512-BF16 or a GPU.

Example::

    .venv/bin/python bench/precision_agreement.py --runs build/runs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from medadv_lib import course
from medadv_lib.runtime import limit_cpu_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="build/runs", help="runs folder of a course run with notebook 04 (default: build/runs)")
    ap.add_argument("--data", default=None, help="dataset folder (default: the course's)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--seed", type=int, default=0, help="the run's SEED (default 0)")
    ap.add_argument("--full", action="store_true", help="the run was in full mode (default: FAST)")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    if not (runs / "results" / "04_pruning_and_attention.json").is_file():
        print(f"{runs}: no results/04_pruning_and_attention.json; run notebook 04 first (make tutorial)", file=sys.stderr)
        return 2
    limit_cpu_threads()
    best, why = course.best_arm_of_04(runs)
    arms = ["baseline", best]
    fast = not args.full
    study = course.defense_study(course.defense_base(fast), arms, fast, output_dir=runs, data_dir=args.data,
                                 seed=args.seed, progress=False)
    trained = [a for a, (_, info) in study.items() if not info.get("cached")]
    if trained:
        print(f"{runs}: {', '.join(trained)} had no checkpoint there and was trained now: not a recorded run", file=sys.stderr)
        return 2
    print(f"arms: baseline and {best} ({why}); recorded under {study['baseline'][0].precision}")
    t = time.perf_counter()
    table = course.precision_agreement(study, arms, fast, args.precision, output_dir=runs, data_dir=args.data,
                                       seed=args.seed)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.assign(eps=[f"{e * 255:g}/255" for e in table.eps]).round(3).to_string(index=False))
    print(f"{len(table)} rows, {int(table.agree.sum())} agree; {time.perf_counter() - t:.0f} s")
    return 0 if table.agree.all() else 1


if __name__ == "__main__":
    sys.exit(main())
