"""docs/instructor.md's numbers are the recorded run's or the course's settings (issue 25, items 1 and 6).

A number the guide quotes from a run is a link into ``docs/recorded_run.json`` whose title is its path there
(``[47.7 %](recorded_run.json "uap/fooling_rate")``; ``executed/notebooks/NN/lines#phrase`` for a number of an
executed notebook's output line); a setting is a link into ``medadv_lib/course/config.py`` whose title is the
expression that gives it.  :func:`medadv_lib.course.recorded.check_tagged_numbers` compares each with its source;
these tests run it on the guide, plant contradictions in a copy of it, check that every 90-minute plan has its
parts, and that no timing or decimal rate of the guide is left unlinked and undated.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medadv_lib.course.recorded import check_tagged_numbers, summarize_executed, tagged_numbers, unlabelled_numbers

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor.md"
NOTEBOOK_NUMBERS = ("00", "01", "02", "03", "04", "05", "06")


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((ROOT / "docs" / "recorded_run.json").read_text(encoding="utf-8"))


def _plans(text: str) -> dict[str, str]:
    return {nn: body for nn, body in re.findall(r"^## (\d\d) ·.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)}


def test_every_number_the_guide_quotes_agrees_with_the_record_and_the_settings(guide, record):
    tags = tagged_numbers(guide)
    assert len(tags) >= 100, f"docs/instructor.md quotes only {len(tags)} tagged numbers"
    assert {t for _, t, _ in tags} == {"recorded_run.json", "../medadv_lib/course/config.py"}
    problems = check_tagged_numbers(guide, record)
    assert not problems, ("docs/instructor.md disagrees with docs/recorded_run.json or the course's settings "
                          "(rerun the notebooks' numbers into the record, or fix the text):\n" + "\n".join(problems))


def test_the_record_holds_the_executed_copies_of_every_notebook(record):
    ex = record.get("executed")
    assert ex and ex["date"] and ex["device"], "docs/recorded_run.json lacks the executed notebooks' summary"
    assert set(ex["notebooks"]) == set(NOTEBOOK_NUMBERS)
    for nn, nb in ex["notebooks"].items():
        assert nb["seconds"] >= sum(nb["sections"].values()) - len(nb["sections"]), nn   # rounding only
        assert nb["lines"], f"notebook {nn} recorded no output line"


@pytest.mark.parametrize("planted, why", [
    (('[47.7 %](recorded_run.json "uap/fooling_rate")', '[57.7 %](recorded_run.json "uap/fooling_rate")'),
     "outside the recorded interval"),
    (('[82.2 %](recorded_run.json "models/resnet18_w0.5/test_accuracy")',
      '[92.2 %](recorded_run.json "models/resnet18_w0.5/test_accuracy")'), "outside the recorded interval"),
    (('[83.2 %](recorded_run.json "uap/fooling_rate_reweighted")',
      '[85.2 %](recorded_run.json "uap/fooling_rate_reweighted")'), "the record / settings say"),
    (('[330 s](recorded_run.json "seconds/01_train_classifiers")',
      '[230 s](recorded_run.json "seconds/01_train_classifiers")'), "the record / settings say"),
    (('[3 rounds](../medadv_lib/course/config.py "adversarial_settings(True).rounds")',
      '[5 rounds](../medadv_lib/course/config.py "adversarial_settings(True).rounds")'), "the record / settings say"),
    (("[10 epochs](../medadv_lib/course/config.py \"FAST.epochs['resnet18_w0.5']\")",
      "[12 epochs](../medadv_lib/course/config.py \"FAST.epochs['resnet18_w0.5']\")"), "the record / settings say"),
    (('[0.694](recorded_run.json "executed/notebooks/00/lines#the border alone predicts")',
      '[0.794](recorded_run.json "executed/notebooks/00/lines#the border alone predicts")'),
     "is not among the numbers"),
    (('[21.0 %](recorded_run.json "executed/notebooks/05/lines#Before any fine-tuning a fresh UAP")',
      '[21.0 %](recorded_run.json "executed/notebooks/05/lines#Before any fine-tuning a stale UAP")'),
     "no recorded line contains"),
    (('[172 s](recorded_run.json "executed/notebooks/04/sections/3")',
      '[172 s](recorded_run.json "executed/notebooks/04/sections/9")'), "the record has no"),
])
def test_a_planted_contradiction_fails(guide, record, planted, why):
    old, new = planted
    assert old in guide, f"the guide no longer quotes {old}: plant another number"
    problems = check_tagged_numbers(guide.replace(old, new, 1), record)
    assert len(problems) == 1 and why in problems[0], problems


def test_a_changed_record_fails_the_unchanged_guide(guide, record):
    changed = json.loads(json.dumps(record))
    changed["uap"]["random_fooling_rate"].update(rate=0.30, lo=0.25, hi=0.35)
    changed["executed"]["notebooks"]["02"]["sections"]["4"] += 30
    problems = check_tagged_numbers(guide, changed)
    assert any("uap/random_fooling_rate" in p for p in problems)
    assert any("executed/notebooks/02/sections/4" in p for p in problems)


@pytest.mark.parametrize("nn", NOTEBOOK_NUMBERS)
def test_each_notebook_has_a_90_minute_plan_with_stops_and_an_exercise(guide, nn):
    body = _plans(guide)[nn]
    assert "**90-minute plan.**" in body, f"notebook {nn} has no 90-minute plan"
    plan = body.split("**90-minute plan.**", 1)[1].split("\n\n**", 1)[0]
    rows = [ln for ln in plan.splitlines() if re.match(r"\| \d+–\d+ \|", ln)]
    spans = [tuple(map(int, re.match(r"\| (\d+)–(\d+) \|", ln).groups())) for ln in rows]
    assert spans and spans[0][0] == 0 and spans[-1][1] == 90, f"notebook {nn}: the plan should run 0–90 min"
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), f"notebook {nn}: gaps or overlaps in {spans}"
    stops = re.findall(r"\*\*Stop \d\*\*", plan)
    assert 2 <= len(stops) <= 3, f"notebook {nn}: {len(stops)} stops for questions (2–3 wanted)"
    for stop in plan.split("**Stop ")[1:]:
        answer = stop.split("|", 1)[0]
        assert tagged_numbers(answer) or "✓" in answer, f"notebook {nn}: a stop without the run's answer: {answer[:80]}"
    assert re.search(r"\*\*exercise \d\*\*", plan), f"notebook {nn}: the plan assigns no exercise"
    assert "live" in plan and "executed copy" in guide


# --------------------------------------------------------------------------------------------
# No measured number of the guide is left unlinked and undated (item 1: rendered or labelled)
# --------------------------------------------------------------------------------------------

def _unlabelled(text: str) -> list[str]:
    return unlabelled_numbers(text)


def test_no_timing_or_rate_of_the_guide_is_unlinked_and_undated(guide):
    hits = _unlabelled(guide)
    assert not hits, ("docs/instructor.md states measured numbers that are neither linked to the record nor dated:\n"
                      + "\n".join(hits))


def test_an_unlabelled_timing_is_caught(guide):
    planted = guide.replace("**90-minute plan.**", "**90-minute plan.** (The training takes 273 s.)", 1)
    assert any("273 s" in h for h in _unlabelled(planted))
    assert not _unlabelled("Measured 2026-12-07 on a 2-core CPU: 273 s.")


# --------------------------------------------------------------------------------------------
# summarize_executed: what the record keeps of executed notebooks
# --------------------------------------------------------------------------------------------

def _cell(kind, source, duration=None, outputs=()):
    c = {"cell_type": kind, "source": source, "metadata": {}}
    if kind == "code":
        c.update(outputs=list(outputs), metadata={"papermill": {"duration": duration}})
    return c


def test_executed_notebooks_are_summarised_by_section(tmp_path):
    nb = {"metadata": {"papermill": {"duration": 41.6, "start_time": "2026-12-07T18:57:45+00:00"}},
          "cells": [_cell("markdown", "# 02 · title"),
                    _cell("code", "import x", 5.2, [{"output_type": "stream", "name": "stdout",
                                                     "text": "device: cpu · precision: fp32\n"}]),
                    _cell("markdown", "intro\n## 2. A first UAP\ntext"),
                    _cell("code", "a", 20.4, [{"output_type": "stream", "name": "stdout",
                                               "text": "✓ the UAP beats noise (47.7% vs 14.9%)\nprogress 3\n"}]),
                    _cell("markdown", "### a subsection"),
                    _cell("code", "b", 10.0, [{"output_type": "display_data", "metadata": {},
                                               "data": {"text/markdown": "| a | 1 |\n- it changes **47.7%**\nno digit"}}]),
                    _cell("markdown", "## What you saw"), _cell("code", "c", 0.1)]}
    (tmp_path / "02_universal_perturbations.ipynb").write_text(json.dumps(nb))
    (tmp_path / "03_pgd_and_deepfool.ipynb").write_text(json.dumps({"metadata": {}, "cells": []}))  # never executed
    s = summarize_executed(tmp_path)
    assert s["date"] == "2026-12-07" and s["device"].startswith("cpu")
    assert set(s["notebooks"]) == {"02"}
    nb02 = s["notebooks"]["02"]
    assert nb02["seconds"] == 42 and nb02["sections"] == {"setup": 5, "2": 30, "What you saw": 0}
    assert nb02["titles"]["2"] == "A first UAP"
    assert nb02["lines"] == ["✓ the UAP beats noise (47.7% vs 14.9%)", "- it changes **47.7%**"]
    assert summarize_executed(tmp_path / "nowhere") is None
    text = '[30 s](recorded_run.json "executed/notebooks/02/sections/2") and [47.7 %](recorded_run.json ' \
           '"executed/notebooks/02/lines#beats noise")'
    assert check_tagged_numbers(text, {"executed": s}) == []
    assert len(check_tagged_numbers(text.replace("[30 s]", "[31 s]"), {"executed": s})) == 1
