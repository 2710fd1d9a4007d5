"""``medadv report``: the reproduction report of a runs folder — every claim of both papers beside our
numbers with a verdict, the cost and the provenance (:mod:`medadv_lib.course.report`) — as one
self-contained HTML page or Markdown file."""
from __future__ import annotations

from pathlib import Path

from ..course.report import FORMATS, NOTEBOOKS, write_report
from . import emit
from ._guard import CLIError, check_writable_dir


def _check(args) -> Path:
    """The options, checked before any work: the runs folder holds results of every course notebook 01–05
    (or ``--partial``), ``--out`` names a writable ``.html``/``.md`` file.  Returns the output path."""
    runs = Path(args.runs).expanduser()
    if not runs.is_dir():
        raise CLIError(f"--runs {args.runs}: folder not found; run the notebooks first (`make tutorial` writes "
                       "build/runs) or pass the folder they wrote (their OUTPUT_DIR, e.g. --runs runs)")
    if not any((runs / "results").glob("*.json")):
        raise CLIError(f"--runs {args.runs} holds no results/*.json: run the notebooks with OUTPUT_DIR = {args.runs} "
                       "(or `make tutorial`, then --runs build/runs)")
    out = Path(args.out).expanduser() if args.out else runs / "report.html"
    if out.is_dir():
        raise CLIError(f"--out {args.out} is a folder: pass a file name, e.g. --out {out / 'report.html'}")
    if out.suffix.lower() not in FORMATS:
        raise CLIError(f"--out {args.out}: unknown report format {out.suffix or '(no suffix)'!r}; name the file "
                       ".html (one self-contained page) or .md (Markdown)")
    check_writable_dir(out.parent, "the folder of --out")
    missing = [nb for nb in NOTEBOOKS if not (runs / "results" / f"{nb}.json").is_file()]
    if missing and not args.partial:
        raise CLIError(f"--runs {args.runs} has no results of {', '.join(missing)}: run "
                       f"`python -m medadv_lib.course.runner {' '.join(nb[:2] for nb in missing)} --out {runs.parent}` "
                       "(or `make tutorial`) first, or pass --partial for a report that says it is incomplete")
    return out


def _report(args) -> int:
    out = _check(args)
    path, report = write_report(args.runs, out, figures=not args.no_figures)
    claims = [{k: c[k] for k in ("id", "paper", "claim", "paper_text", "ours", "ours_text", "reweighted",
                                 "reweighted_text", "verdict", "reason")} for c in report["claims"]]
    result = {"ok": True, "command": "report", "out": str(path), "format": FORMATS[path.suffix.lower()],
              "runs": str(args.runs), "notebooks": report["notebooks"], "claims": claims,
              "verdicts": {c["id"]: c["verdict"] for c in claims}, "cost": report["cost"],
              "provenance": report["provenance"], "figures": sorted(report["figures"])}
    width = max(len(c["id"]) for c in claims)
    lines = [f"{c['id']:<{width}}  {c['verdict']:<14}  {c['reason']}" for c in claims]
    lines.append(f"report: {path}")
    emit(result, args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("report",
                       help="the reproduction report: the papers' claims beside our numbers, cost, provenance")
    p.add_argument("--runs", default="runs", help="the folder the notebooks wrote (their OUTPUT_DIR; `make tutorial`: "
                                                  "build/runs); its results/*.json are read (default: runs)")
    p.add_argument("--out", default=None,
                   help="the report file, .html (self-contained) or .md (default: RUNS/report.html)")
    p.add_argument("--no-figures", action="store_true", help="leave the figures out (smaller file)")
    p.add_argument("--partial", action="store_true",
                   help="write the report even when notebooks 01-05 have not all recorded results (it says so at "
                        "the top, and their claims read 'not run'); without it such a runs folder is refused")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_report)
