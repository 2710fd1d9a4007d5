"""Prose claims checked in code: ✓/✗ lines, and a broken claim fails a notebook under the runner."""
import nbformat
import pytest

from medadv_lib.claims import ClaimFailed, check
from medadv_lib.course.runner import NotebookFailed, run_notebook


def test_a_true_claim_prints_a_tick(capsys, monkeypatch):
    monkeypatch.setenv("MEDADV_STRICT_CLAIMS", "1")
    assert check("the UAP beats its random control", 0.30 > 0.03, "0.300 vs 0.030")
    assert capsys.readouterr().out == "✓ the UAP beats its random control (0.300 vs 0.030)\n"


def test_a_broken_claim_warns_interactively_and_raises_when_strict(capsys, monkeypatch):
    monkeypatch.setenv("MEDADV_STRICT_CLAIMS", "0")
    assert not check("COVID-19 is the easiest target", False, "0.33 < 0.61")
    assert capsys.readouterr().out.startswith("✗ COVID-19 is the easiest target")
    monkeypatch.setenv("MEDADV_STRICT_CLAIMS", "1")
    with pytest.raises(ClaimFailed, match="claim broken: COVID-19 is the easiest target"):
        check("COVID-19 is the easiest target", False, "0.33 < 0.61")


def test_a_notebook_whose_outputs_contradict_its_claim_fails_naming_the_claim(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("FAST = True\nSEED = 0\nDEVICE = 'cpu'\nOUTPUT_DIR = '.'\nDATA_DIR = None",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from medadv_lib.claims import check\nresult = {'fooling_rate': 0.02, "
                                          "'random_fooling_rate': 0.04}   # a fabricated result\n"
                                          "check('the UAP beats its random control', "
                                          "result['fooling_rate'] > result['random_fooling_rate'])")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_fabricated.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookFailed, match="the UAP beats its random control"):
        run_notebook(path, tmp_path / "out", fast=True, output_dir=tmp_path / "runs", html=False)
