"""Every course notebook executes under papermill in FAST mode, in order, sharing checkpoints."""
from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import nbformat
import pytest

from medadv_lib.course.runner import NOTEBOOK_DIR, NotebookFailed, course_notebooks, run_notebook

NOTEBOOKS = course_notebooks()


def test_there_are_course_notebooks():
    names = [nb.name[:2] for nb in NOTEBOOKS]
    assert names[:2] == ["00", "01"], names


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_and_no_outputs(nb):
    cells = nbformat.read(nb, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    for name in ("FAST", "SEED", "DEVICE", "OUTPUT_DIR", "DATA_DIR"):
        assert f"{name} =" in tagged[0].source, f"{nb.name}: parameters cell lacks {name}"
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code"), f"{nb.name} is committed with outputs"


MAX_LOGIC_LINES = 10


def _code_lines(source: str) -> int:
    """Non-blank source lines that are not comments."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _imports_only(source: str) -> bool:
    """Every statement of the cell is an import (magics and shell lines aside)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_logic_cell_is_longer_than_ten_lines(nb):
    """Notebooks are lectures: a logic cell holds at most ten lines of code (blank lines and comments
    aside); longer logic goes into medadv_lib.  The parameters cell and a cell of imports only are exempt."""
    long = []
    for i, c in enumerate(nbformat.read(nb, as_version=4).cells):
        if c.cell_type != "code" or "parameters" in c.get("metadata", {}).get("tags", []) or _imports_only(c.source):
            continue
        n = _code_lines(c.source)
        if n > MAX_LOGIC_LINES:
            long.append(f"cell {i} (id {c.get('id')}): {n} lines")
    assert not long, f"{nb.name}: logic cells over {MAX_LOGIC_LINES} lines: " + "; ".join(long)


def test_the_line_count_skips_blanks_comments_and_imports():
    assert _code_lines("a = 1\n\n   # a comment\nb = 2  # trailing\n") == 2
    assert _imports_only("import time\n\nfrom x import (a,\n    b)\n%matplotlib inline")
    assert not _imports_only("import pandas as pd\npd.set_option('display.max_colwidth', None)")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    """Checkpoint folder shared by the notebooks of one session (set MEDADV_TEST_RUNS to keep it)."""
    keep = os.environ.get("MEDADV_TEST_RUNS")
    return Path(keep) if keep else tmp_path_factory.mktemp("runs")


@pytest.mark.notebook
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_fast_mode(nb, runs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp(nb.stem)
    t0 = time.time()
    try:
        run_notebook(nb, out, fast=True, output_dir=runs_dir, html=False)
    except NotebookFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"{nb.name}: {time.time() - t0:.0f} s")
