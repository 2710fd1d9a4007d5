"""The README's numbers, rendered from one recorded run instead of typed by hand.

    python -m medadv_lib.course.recorded --runs build/runs --out build/recorded_run.json
    python -m medadv_lib.course.recorded --from docs/recorded_run.json --readme README.md

``make tutorial`` writes ``build/recorded_run.json`` (:func:`summarize_run`: the FAST models' test
accuracies with their Wilson intervals, the notebook-02 UAP's rates with theirs, each notebook's run time,
and the CPU, precision policy, seed and date of the run).  ``make readme-numbers`` copies it to
``docs/recorded_run.json`` and rewrites the README's block between the ``recorded-run`` markers from it
(:func:`render_block`); ``tests/test_docs.py`` fails when that block and the committed record disagree, so
every number the README quotes is one run's, labelled with the machine and the date it came from.
Timings are facts about that machine only: they are labelled so and never compared.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
from pathlib import Path

from ..data import load_metadata
from ..metrics.defense import wilson_interval
from ..runtime import atomic_write_text, cpu_bf16_native

START, END = "<!-- recorded-run:start -->", "<!-- recorded-run:end -->"
NOTEBOOK_NAMES = ("00_data_tour", "01_train_classifiers", "02_universal_perturbations", "03_pgd_and_deepfool",
                  "04_pruning_and_attention", "05_uap_finetuning_and_adversarial_training", "06_transfer_and_report")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate(k_rate: float | None, n: int | None) -> dict | None:
    if k_rate is None or not n:
        return None
    lo, hi = wilson_interval(round(k_rate * n), n)
    return {"rate": k_rate, "lo": lo, "hi": hi, "n": n}


def summarize_run(runs_dir, data_dir=None) -> dict:
    """The headline numbers of a course run from its ``runs/results/*.json`` (see :func:`course.record`).

    Returns ``{"date", "cpu", "precision", "seconds": {notebook: s}, "models": {name: {"test_accuracy":
    {rate, lo, hi, n}, "balanced_accuracy"}}, "uap": {"fooling_rate", "fooling_rate_reweighted",
    "random_fooling_rate", "per_class"}}``; a notebook without results is left out."""
    results = Path(runs_dir) / "results"
    recs = {nb: json.loads((results / f"{nb}.json").read_text()) for nb in NOTEBOOK_NAMES
            if (results / f"{nb}.json").exists()}
    n_test = int((load_metadata(data_dir)["split"] == "test").sum())
    out = {"date": _dt.date.today().isoformat(), "cpu": f"{cpu_name()}, {cpu_bf16_native()[1]}", "precision": None,
           "seconds": {nb: round(r[0]["seconds"]) for nb, r in recs.items() if r and r[0].get("seconds") is not None},
           "models": {}, "uap": None}
    for r in recs.get("01_train_classifiers", []):
        out["precision"] = out["precision"] or r.get("precision")
        out["models"][r["model"]] = {"test_accuracy": _rate(r.get("test_accuracy"), n_test),
                                     "balanced_accuracy": r.get("balanced_accuracy"),
                                     "epochs": r.get("epochs"), "image_size": r.get("image_size")}
    uap = next((r for r in recs.get("02_universal_perturbations", []) if r.get("target") is None
                and r.get("uap_from") is None and r.get("norm") == "inf"), None)
    if uap is not None:
        n = uap.get("n") or n_test
        out["uap"] = {"model": uap["model"], "zeta": uap.get("zeta"),
                      "fooling_rate": _rate(uap.get("fooling_rate"), n),
                      "random_fooling_rate": _rate(uap.get("random_fooling_rate"), n),
                      "fooling_rate_reweighted": uap.get("fooling_rate_reweighted"),
                      "per_class": uap.get("fooling_rate_per_class")}
    return out


def _pct(r: dict | None) -> str:
    return "—" if not r else f"{r['rate']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}]"


def render_block(s: dict) -> str:
    """The README's recorded-run block (Markdown) for a :func:`summarize_run` summary."""
    lines = [START, f"One recorded FAST run: {s['date']}, CPU **{s['cpu']}**, precision policy `{s['precision']}` "
             f"(`docs/recorded_run.json`; `make readme-numbers` after `make tutorial` records a new one). Another CPU, "
             "precision or seed gives other numbers; intervals are 95 % Wilson intervals over the test images.", ""]
    if s["models"]:
        lines += ["| model (FAST) | test accuracy | balanced accuracy |", "|---|---|---|"]
        lines += [f"| {name} ({m.get('image_size')} px, {m.get('epochs')} epochs) | {_pct(m['test_accuracy'])} | "
                  f"{m['balanced_accuracy']:.1%} |" for name, m in s["models"].items()]
        lines.append("")
    u = s.get("uap")
    if u:
        per = ", ".join(f"{k} {v:.1%}" for k, v in (u.get("per_class") or {}).items() if v is not None)
        rew = u.get("fooling_rate_reweighted")
        lines += [f"Notebook 02's UAP on {u['model']} at ζ = {u['zeta']:.0%} L∞ changes {_pct(u['fooling_rate'])} of the test "
                  f"predictions ({per}; re-weighted to Hirano et al.'s 100/100/31 test mix "
                  f"{'—' if rew is None else f'{rew:.1%}'}); its random control {_pct(u['random_fooling_rate'])}.", ""]
    if s["seconds"]:
        total = sum(s["seconds"].values())
        lines += ["Notebook run times of that run (that machine only, as the notebooks measured them): "
                  + ", ".join(f"{nb[:2]} {sec} s" for nb, sec in s["seconds"].items())
                  + f"; {total / 60:.0f} min in all"
                  + ("." if len(s["seconds"]) >= len(NOTEBOOK_NAMES) - 1 else
                     " (the notebooks listed; the others' models and results came from an earlier run).")
                  + ("" if s.get("note") is None else f" {s['note']}"), ""]
    lines.append(END)
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with its recorded-run block replaced by ``block`` (ValueError when the markers are missing)."""
    if START not in readme or END not in readme:
        raise ValueError(f"README lacks the markers {START} … {END}")
    head, rest = readme.split(START, 1)
    return head + block + rest.split(END, 1)[1]


def readme_block(readme: str) -> str:
    """The recorded-run block of ``readme``, markers included."""
    return START + readme.split(START, 1)[1].split(END, 1)[0] + END


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medadv_lib.course.recorded", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", help="a course run's runs/ folder to summarise")
    ap.add_argument("--out", help="write the summary here (JSON)")
    ap.add_argument("--from", dest="src", help="a summary JSON to render instead of --runs")
    ap.add_argument("--readme", help="rewrite this README's recorded-run block")
    ap.add_argument("--data", default=None)
    a = ap.parse_args(argv)
    if bool(a.runs) == bool(a.src):
        print("medadv recorded: error: give exactly one of --runs (a run to summarise) or --from (a summary JSON)",
              file=sys.stderr)
        return 2
    src = Path(a.runs or a.src)
    if not src.exists():
        print(f"medadv recorded: error: {src} does not exist; run `make tutorial` first", file=sys.stderr)
        return 2
    s = summarize_run(src, a.data) if a.runs else json.loads(src.read_text())
    if a.out:
        atomic_write_text(json.dumps(s, indent=1, ensure_ascii=False) + "\n", a.out)
    if a.readme:
        p = Path(a.readme)
        p.write_text(replace_block(p.read_text(), render_block(s)))
    if not (a.out or a.readme):
        print(render_block(s))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
