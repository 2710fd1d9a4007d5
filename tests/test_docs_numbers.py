"""Issue 25, item 1, beyond the instructor guide: every number the glossary and the worked solutions state is a
definition, or a measurement labelled with its date (which run) — never a bare number from some past run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from medadv_lib.course.recorded import DEFINITION_NUMBERS, unlabelled_numbers

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "glossary.md", *sorted((ROOT / "docs" / "solutions").glob("*.py")),
        ROOT / "docs" / "solutions" / "README.md"]
# worked examples and defaults, not measurements: a ρ_adv of 0.0081 shown as 0.81 %, the McNemar example's p, the border
# frame's default width and area, budgets and steps of the settings table, ζ 0.5 %, the papers' 69.49 %
EXAMPLES = {"0.0081", "0.81 %", "0.070", "12.5 %", "0.4375", "0.25", "0.001", "0.5%", "69.49%"}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_measured_number_of_the_glossary_and_the_solutions_is_dated(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":           # the prose of a solution is its docstrings; its code holds settings, not results
        text = "\n\n".join(ast.get_docstring(n) or "" for n in ast.walk(ast.parse(text))
                           if isinstance(n, (ast.Module, ast.FunctionDef)))
    hits = unlabelled_numbers(text, definitions=DEFINITION_NUMBERS | EXAMPLES)
    assert not hits, f"{path.relative_to(ROOT)} states measured numbers without their date:\n" + "\n".join(hits)


def test_a_bare_measurement_is_caught_and_a_dated_one_is_not():
    assert unlabelled_numbers("The UAP fools 41.7 % of the images in 12 s.") == [
        "'12 s' in: The UAP fools 41.7 % of the images in 12 s.", "'41.7 %' in: The UAP fools 41.7 % of the images in 12 s."]
    assert unlabelled_numbers("Measured 2026-12-07: the UAP fools 41.7 % of the images in 12 s.") == []
    assert unlabelled_numbers("ζ = 0.02 and `eps = 0.0176`") == []       # a definition and code
