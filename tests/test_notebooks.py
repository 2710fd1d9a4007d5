"""Every course notebook executes under papermill in FAST mode, in order, sharing checkpoints."""
from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import nbformat
import pytest

from medadv_lib.course.runner import NOTEBOOK_DIR, NotebookFailed, course_notebooks, run_notebook
from medadv_lib.course.report import claims_table, load_results
from medadv_lib.course.rules import NOTEBOOK_CLAIMS, notebook_verdicts, verdict_mismatches

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


@pytest.fixture(scope="session")
def executed_notebooks() -> dict:
    """``{notebook stem: executed .ipynb}`` of the FAST pass's notebooks that ran through in this session."""
    return {}


@pytest.mark.notebook
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_fast_mode(nb, runs_dir, tmp_path_factory, executed_notebooks):
    out = tmp_path_factory.mktemp(nb.stem)
    t0 = time.time()
    try:
        executed_notebooks[nb.stem] = run_notebook(nb, out, fast=True, output_dir=runs_dir, html=False)
    except NotebookFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"{nb.name}: {time.time() - t0:.0f} s")


@pytest.mark.notebook
def test_executed_notebooks_print_the_reports_verdicts(runs_dir, executed_notebooks):
    """Issue 25, item 2, one verdict per claim: every claim verdict notebooks 02, 04, 05 and 06 printed in the FAST
    pass above (marked with the claim's key by ``course.rules.verdict_mark``) is the word of the report's claims
    table for the same runs folder, and each prints every claim of ``course.rules.NOTEBOOK_CLAIMS``.  It executes
    nothing: it reads the executed copies' outputs and builds the claims table from the records (cheap), so it
    must stay after the FAST pass in this file."""
    missing = [nb for nb in NOTEBOOK_CLAIMS if nb not in executed_notebooks]
    if missing:
        pytest.skip(f"not executed through in this session's FAST pass (deselected, e.g. with -k, or failed above): "
                    f"{', '.join(missing)}; the verdict comparison needs all of {', '.join(NOTEBOOK_CLAIMS)}")
    claims = claims_table(load_results(runs_dir))
    bad = {nb: m for nb, keys in NOTEBOOK_CLAIMS.items()
           if (m := verdict_mismatches(notebook_verdicts(executed_notebooks[nb]), claims, keys))}
    assert not bad, ("a notebook's verdict differs from the report's (or its marked verdict is missing), per notebook "
                     f"{{claim: {{notebook: words, report: word}}}}: {bad}")


# --------------------------------------------------------------------------------------------
# A second configuration (issue 20): every claim must hold under other arithmetic and another seed.
# --------------------------------------------------------------------------------------------

def second_configuration() -> dict:
    """What the second notebook pass runs: ``{"seed", "model_seed", "precision", "notebooks"}``.

    Trained weights differ between CPUs (bf16 rounding, fp32 kernels), so the claims must hold for other
    weights and other random choices.  The pass retrains notebook 01's models with **SEED = 1** in the *other*
    arithmetic this CPU runs natively, and runs 02–03 on them: on a CPU with AMX (default policy bf16) under
    **fp32**; on a CPU with AVX512-BF16 but no AMX (default policy fp32: its bf16 is slower) under **bf16**, native
    there.  On a CPU without native bf16 the default policy is fp32 already, bf16 would be emulated (about 20×
    slower), the course is about three times slower and retraining would push CI past its limit, so the pass
    runs 03 with **SEED = 1 on the main pass's models** (``MODEL_SEED = 0``): every random choice after training —
    the UAP's build and held-out images and batch order, the noise controls, the attacked images, PGD's random
    starts — drawn anew.  (02 under SEED = 1 costs about twelve minutes there since its UAPs run until they
    converge; the whole course under another seed is ``make tutorial SEED=1``.)
    ``$MEDADV_SECOND_SEED``, ``$MEDADV_SECOND_MODEL_SEED`` (``none``: retrain with the seed),
    ``$MEDADV_SECOND_PRECISION`` and ``$MEDADV_SECOND_NOTEBOOKS`` (e.g. ``01,02,03,04``) override it."""
    from medadv_lib.runtime import cpu_bf16_native, resolve_precision
    auto = resolve_precision("auto", "cpu").name
    native_bf16 = cpu_bf16_native()[0]
    other = "fp32" if auto == "bf16" else "bf16"
    model_seed = os.environ.get("MEDADV_SECOND_MODEL_SEED", "none" if native_bf16 else "0")
    names = os.environ.get("MEDADV_SECOND_NOTEBOOKS", "01,02,03" if native_bf16 else "03")
    return {"seed": int(os.environ.get("MEDADV_SECOND_SEED", "1")),
            "model_seed": None if model_seed == "none" else int(model_seed),
            "precision": os.environ.get("MEDADV_SECOND_PRECISION", other if native_bf16 else "fp32"),
            "notebooks": [nb for nb in NOTEBOOKS if nb.name[:2] in names.split(",")]}


SECOND = second_configuration()


def test_the_second_pass_changes_the_seed_and_retrains_or_reuses_consistently():
    assert SECOND["seed"] != 0 and SECOND["precision"] in ("fp32", "bf16") and SECOND["notebooks"]
    retrains = SECOND["model_seed"] is None
    assert SECOND["notebooks"][0].name.startswith("01") == retrains, "a pass that retrains starts at notebook 01"


@pytest.fixture(scope="session")
def second_runs_dir(tmp_path_factory, runs_dir):
    """The second pass's folder; when it reuses the main pass's models, their checkpoints are linked in
    (the same files, so the same names and fingerprints)."""
    out = tmp_path_factory.mktemp("runs-second")
    if SECOND["model_seed"] is not None:
        for ck in Path(runs_dir).glob("*.pt"):
            try:
                os.link(ck, out / ck.name)
            except OSError:
                import shutil
                shutil.copy2(ck, out / ck.name)
    return out


@pytest.mark.notebook
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("nb", SECOND["notebooks"], ids=lambda p: p.stem)
def test_notebook_claims_hold_under_another_seed_and_arithmetic(nb, second_runs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"{nb.stem}-second")
    t0 = time.time()
    try:
        extra = {"SEED": SECOND["seed"], "PRECISION": SECOND["precision"]}
        if SECOND["model_seed"] is not None and nb.name[:2] in ("02", "03"):
            extra["MODEL_SEED"] = SECOND["model_seed"]
        run_notebook(nb, out, fast=True, output_dir=second_runs_dir, html=False, extra=extra)
    except NotebookFailed as exc:
        pytest.fail(f"second pass {SECOND}: {exc}", pytrace=False)
    print(f"{nb.name} (SEED={SECOND['seed']}, {SECOND['precision']}): {time.time() - t0:.0f} s")
