"""Every claim a notebook checks is audited in docs/claims.md, and none asserts a sample size or a timing.

A claim must hold on any CPU, precision and seed (issue 20): the audit table says, per ``check``/``warn``,
the fact it protects, why it can fail and why it cannot fail for the wrong reason."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from medadv_lib.course.runner import course_notebooks

AUDIT = Path(__file__).resolve().parents[1] / "docs" / "claims.md"
CLAIM_CALLS = ("check", "warn")
# names a strict claim's condition must not read: sample sizes fitted to a run, and timings
FORBIDDEN = {"n_clean_correct", "latency_ms", "train_seconds", "seconds", "speed", "time", "perf_counter"}


def _text(node: ast.AST) -> str:
    """A claim's first argument as written: a string, or an f-string with ``{…}`` for each value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{…}" for v in node.values)
    return ast.unparse(node)


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.add(n.value)
    return out


def notebook_claims(cells, prefix: str) -> list[dict]:
    """``[{nb, kind, claim, reads}]`` for every ``check(...)``/``warn(...)`` call in the code ``cells``."""
    found = []
    for c in cells:
        if c.cell_type != "code":
            continue
        src = "\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CLAIM_CALLS and node.args:
                cond = node.args[1] if len(node.args) > 1 else None
                found.append({"nb": prefix, "kind": node.func.id, "claim": " ".join(_text(node.args[0]).split()),
                              "reads": _names(cond) if cond is not None else set()})
    return found


def audit_rows(text: str) -> list[dict]:
    """The rows of the audit table: ``[{nb, kind, claim, fact, fails, not_wrong}]``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 6 and re.fullmatch(r"\d\d", cells[0]):
            nb, kind, claim, fact, fails, ok = (c.replace("\\|", "|") for c in cells)
            rows.append({"nb": nb, "kind": kind, "claim": " ".join(claim.split()), "fact": fact, "fails": fails,
                         "not_wrong": ok})
    return rows


def audit_problems(claims: list[dict], rows: list[dict]) -> list[str]:
    """What is wrong between the notebooks' claims and the audit: unlisted, stale, empty or forbidden."""
    listed = {(r["nb"], r["kind"], r["claim"]) for r in rows}
    used = {(c["nb"], c["kind"], c["claim"]) for c in claims}
    problems = [f"{nb}: {kind}({claim!r}) is not in docs/claims.md" for nb, kind, claim in sorted(used - listed)]
    problems += [f"docs/claims.md lists {kind}({claim!r}) for {nb}, which no notebook has" for nb, kind, claim in sorted(listed - used)]
    problems += [f"docs/claims.md: {r['claim']!r} lacks its reasons" for r in rows if not all(r[k] for k in ("fact", "fails", "not_wrong"))]
    problems += [f"{c['nb']}: check({c['claim']!r}) reads {sorted(c['reads'] & FORBIDDEN)}: a sample size or a timing "
                 "is printed, never a strict claim (use warn for timings)"
                 for c in claims if c["kind"] == "check" and c["reads"] & FORBIDDEN]
    return problems


def _course_claims():
    return [c for nb in course_notebooks() for c in notebook_claims(nbformat.read(nb, as_version=4).cells, nb.name[:2])]


def test_every_notebook_claim_is_audited_and_none_pins_a_sample_size_or_a_timing():
    claims, rows = _course_claims(), audit_rows(AUDIT.read_text())
    assert len(claims) >= 20 and len(rows) == len(claims)
    assert audit_problems(claims, rows) == []


def _cells(code: str):
    return [nbformat.v4.new_code_cell(code)]


@pytest.mark.parametrize("code, expect", [
    ("check('a new claim nobody audited', x > 1)", "is not in docs/claims.md"),
    ("check('every arm rests on 40 images', t.n_clean_correct.min() >= 40)", "a sample size or a timing"),
    ("check('pruning is faster', speed['channels0.3'] > 1.2)", "a sample size or a timing"),
])
def test_the_audit_fails_on_an_unlisted_or_a_machine_bound_claim(code, expect):
    claims = notebook_claims(_cells(code), "04")
    rows = audit_rows("| 04 | check | every arm rests on 40 images | f | c | w |\n"
                      "| 04 | check | pruning is faster | f | c | w |")
    assert any(expect in p for p in audit_problems(claims, rows))


def test_the_audit_flags_a_stale_row_and_a_row_without_reasons_but_accepts_a_warned_timing():
    rows = audit_rows("| 00 | check | gone | f | c | w |\n| 00 | warn | removing channels is faster |  | c | w |")
    problems = audit_problems(notebook_claims(_cells("warn('removing channels is faster', speed > 1.2)"), "00"), rows)
    assert any("which no notebook has" in p for p in problems)
    assert any("lacks its reasons" in p for p in problems)
    assert not any("a sample size or a timing" in p for p in problems)


def test_f_string_claims_are_read_with_placeholders():
    (c,) = notebook_claims(_cells('check(f"at ζ = {ZETA:.0%} the budget", ok)'), "02")
    assert c["claim"] == "at ζ = {…} the budget"
