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

The record also keeps what the run's executed notebooks show (:func:`summarize_executed`, key ``executed``:
papermill's time per notebook and per section, and every output line that states a number), so that
``docs/instructor.md`` can quote them: a number written as ``[47.7 %](recorded_run.json "uap/fooling_rate")`` (a path
into the record) or ``[3 rounds](../medadv_lib/course/config.py "adversarial_settings(True).rounds")`` (a course
setting) is checked by :func:`check_tagged_numbers` (``tests/test_instructor.py``).

    python -m medadv_lib.course.recorded --from docs/recorded_run.json --executed build/notebooks --out docs/recorded_run.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import re
import sys
from pathlib import Path

from . import config as _config
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


_SECTION = re.compile(r"^##\s+(?:(\d+)\.\s*)?(.+?)\s*$")     # "## 4. Title"; ### subsections stay in their section
_CHECK_MARKS = ("✓", "✗", "⚠")


def summarize_executed(folder) -> dict | None:
    """What a run's executed notebooks show (papermill's copies: ``make tutorial``'s ``build/notebooks``).

    Returns ``{"date", "device", "notebooks": {"00": {"seconds", "sections": {key: s}, "titles": {key: title},
    "lines": [...]}}}``: each notebook's run time (papermill's), the seconds of each section (its code cells'
    durations summed under each ``## N.`` heading; key ``N``, or the heading's title when it has no number, or
    ``setup`` before the first one), and every output line that states a number — the ✓/✗/⚠ check lines and
    the lines of the rendered Markdown (tables left out).  Notebooks without papermill's metadata (sources that
    were never executed) are skipped; None when none is left."""
    out = {"date": None, "device": None, "notebooks": {}}
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        pm = nb.get("metadata", {}).get("papermill") or {}
        if pm.get("duration") is None:
            continue
        out["date"] = out["date"] or (pm.get("start_time") or "")[:10] or None
        key, sections, titles, lines = "setup", {}, {"setup": "imports and setup"}, []
        for cell in nb.get("cells", []):
            src = "".join(cell.get("source", ""))
            if cell.get("cell_type") == "markdown":
                for line in src.splitlines():
                    m = _SECTION.match(line)
                    if m:
                        key = m.group(1) or m.group(2)
                        titles[key] = m.group(2)
                continue
            if cell.get("cell_type") != "code":
                continue
            sections[key] = sections.get(key, 0.0) + (cell.get("metadata", {}).get("papermill", {}).get("duration") or 0)
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    for line in "".join(o.get("text", "")).splitlines():
                        if line.startswith("device:") and out["device"] is None:
                            out["device"] = line.split(":", 1)[1].strip()
                        if line.startswith(_CHECK_MARKS):
                            lines.append(line.strip())
                md = o.get("data", {}).get("text/markdown")
                if md:
                    lines += [ln.strip() for ln in "".join(md).splitlines()
                              if re.search(r"\d", ln) and not ln.lstrip().startswith("|")]
        out["notebooks"][path.name[:2]] = {"seconds": round(pm["duration"]),
                                           "sections": {k: round(v) for k, v in sections.items()},
                                           "titles": {k: titles[k] for k in sections}, "lines": lines}
    return out if out["notebooks"] else None


# --------------------------------------------------------------------------------------------
# Numbers a document quotes from the record or the settings, as tagged links (docs/instructor.md)
# --------------------------------------------------------------------------------------------

_TAGGED = re.compile(r"\[([^\]]*?\d[^\]]*)\]\((recorded_run\.json|\.\./medadv_lib/course/config\.py) \"([^\"]+)\"\)")
_NUMBER = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)(?:\s*/\s*(\d+))?")


def tagged_numbers(text: str) -> list[tuple[str, str, str]]:
    """Every tagged number of ``text``: ``(shown, target, key)`` for each ``[shown](recorded_run.json "path/in/record")``
    or ``[shown](../medadv_lib/course/config.py "expression")``."""
    return _TAGGED.findall(text)


def _shown(text: str) -> tuple[float, float, str]:
    """The first number of ``text`` as (value, tolerance, digits): ``47.7 %`` → (0.477, 0.0005, "47.7"); ``2/255`` exact."""
    m = _NUMBER.search(text)
    if m is None:
        raise ValueError(f"no number in {text!r}")
    raw = m.group(1).replace(",", "")
    value = float(raw) / (int(m.group(2)) if m.group(2) else 1)
    tol = 1e-9 if m.group(2) else 0.5 * 10 ** -(len(raw.split(".")[1]) if "." in raw else 0) + 1e-9
    if "%" in text[m.end():m.end() + 3]:
        value, tol = value / 100, tol / 100
    return value, tol, raw


def _lookup(record: dict, path: str):
    node = record
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path!r}: the record has no {part!r}")
        node = node[part]
    return node


def check_tagged_numbers(text: str, record: dict) -> list[str]:
    """The tagged numbers of ``text`` that disagree with the record or the course's settings (empty: all agree).

    A record path names a number (it must match to the shown digits), a rate with its 95 % interval ``{rate, lo,
    hi}`` (the shown number must lie in the interval), or a list of output lines followed by ``#phrase``: the shown
    number must be one of the numbers of a recorded line that contains the phrase.  A settings expression is
    evaluated in :mod:`medadv_lib.course.config` (e.g. ``FAST.epochs['resnet18_w0.5']``, ``UAP_FAST.train``)."""
    problems = []
    for shown, target, key in tagged_numbers(text):
        where = f"[{shown}]({target} \"{key}\")"
        try:
            value, tol, raw = _shown(shown)
            if target.endswith("config.py"):
                want = eval(key, {"__builtins__": {}}, vars(_config))     # the course's own settings module
            else:
                path, _, phrase = key.partition("#")
                want = _lookup(record, path)
                if phrase:
                    lines = [ln for ln in want if phrase in ln]
                    numbers = {float(n.replace(",", "")) for ln in lines for n, _ in _NUMBER.findall(ln)}
                    if not lines:
                        problems.append(f"{where}: no recorded line contains {phrase!r}")
                    elif float(raw) not in numbers:
                        problems.append(f"{where}: {raw} is not among the numbers of the recorded line(s): {lines}")
                    continue
            if isinstance(want, dict) and {"lo", "hi"} <= set(want):
                if not want["lo"] - 1e-9 <= value <= want["hi"] + 1e-9:
                    problems.append(f"{where}: {shown} lies outside the recorded interval "
                                    f"[{want['lo']:.4f}, {want['hi']:.4f}] (rate {want['rate']:.4f})")
            elif not isinstance(want, (int, float)) or abs(value - float(want)) > tol:
                problems.append(f"{where}: the record / settings say {want!r}")
        except (KeyError, ValueError, TypeError, AttributeError, NameError) as exc:
            problems.append(f"{where}: {type(exc).__name__}: {exc}")
    return problems


def summarize_run(runs_dir, data_dir=None, executed_dir=None) -> dict:
    """The headline numbers of a course run from its ``runs/results/*.json`` (see :func:`course.record`).

    Returns ``{"date", "cpu", "precision", "seconds": {notebook: s}, "models": {name: {"test_accuracy":
    {rate, lo, hi, n}, "balanced_accuracy"}}, "uap": {"fooling_rate", "fooling_rate_reweighted",
    "random_fooling_rate", "per_class"}}``; a notebook without results is left out.  With executed notebooks in
    ``executed_dir`` (default: the ``notebooks`` folder beside ``runs_dir``, where ``make tutorial`` writes them) it
    adds ``executed``: :func:`summarize_executed`."""
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
    executed = summarize_executed(executed_dir or Path(runs_dir).parent / "notebooks")
    if executed is not None:
        out["executed"] = executed
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
    ap.add_argument("--executed", help="a folder of the run's executed notebooks (default: the notebooks folder beside "
                                       "--runs); with --from, adds them to the summary")
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
    s = summarize_run(src, a.data, a.executed) if a.runs else json.loads(src.read_text())
    if a.src and a.executed:
        executed = summarize_executed(a.executed)
        if executed is None:
            print(f"medadv recorded: error: no executed notebook (with papermill's metadata) in {a.executed}",
                  file=sys.stderr)
            return 2
        s["executed"] = executed
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


_TIMING = re.compile(r"(?<![\w/.])\d[\d,]*(?:\.\d+)?\s?(?:s|seconds|min|minutes)\b")
_RATE = re.compile(r"(?<![\w/.])\d+\.\d+\s?%|(?<![\w/.])0\.\d{2,}\b")
_DATE = re.compile(r"20\d\d-\d\d-\d\d")
DEFINITION_NUMBERS = frozenset({"77.18 %", "69.49 %", "43.75 %", "0.33", "0.17", "0.85", "0.01", "0.005", "0.02", "0.03",
                                "0.04", "0.05", "0.06", "0.08", "0.0039"})
"""Numbers that are definitions, not measurements: the papers' rates and goals, the border frame's area share,
chance levels (1/3, 1/6), ζ values and budgets, one grey level (1/255)."""


def unlabelled_numbers(text: str, definitions=DEFINITION_NUMBERS) -> list[str]:
    """The measured-looking numbers of a Markdown or docstring text that are neither tagged
    (:func:`tagged_numbers`: a link into the record or the settings) nor in a dated paragraph (a measurement
    labelled with its date): timings (``273 s``, ``4 min``) and rates (``41.7 %``, ``0.822``), except
    ``definitions``, and except inside code spans.  Returns one line per hit with its paragraph's start."""
    hits = []
    for para in re.split(r"\n\s*\n", text):
        if _DATE.search(para):                                   # a dated measurement
            continue
        plain = re.sub(r"\[[^\]]*\]\([^)]*\)", "⟨n⟩", para)     # tagged numbers are checked by check_tagged_numbers
        plain = re.sub(r"`[^`]*`", "⟨code⟩", plain)              # settings and calls
        for m in list(_TIMING.finditer(plain)) + list(_RATE.finditer(plain)):
            if m.group(0) not in definitions:
                hits.append(f"{m.group(0)!r} in: {plain.strip()[:140]}")
    return hits
