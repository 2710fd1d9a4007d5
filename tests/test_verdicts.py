"""One verdict per claim (issue 25, item 2): notebooks 02, 04, 05 and 06 print each paper claim's verdict with the
rule book's word and the claim's key beside it (``course.rules.verdict_mark``), and that word is the report's
(``course.report.claims_table``) for the same records.  Here on fabricated records, with the notebooks' own
verdict functions; ``tests/test_notebooks.py`` checks the executed notebooks of the FAST pass the same way."""
from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from medadv_lib import course
from medadv_lib.course import report as rep
from medadv_lib.course import rules
from test_adversarial_training import _matrix
from test_report import SCENARIOS, fabricate


def _markdown(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/markdown": text, "text/plain": "<IPython.core.display.Markdown object>"}}


def _notebook(*texts: str) -> dict:
    """An executed notebook whose code cells rendered ``texts`` (as ``claims.render`` does)."""
    cells = [{"cell_type": "code", "source": "render(...)", "metadata": {}, "execution_count": i + 1,
              "outputs": [_markdown(t)]} for i, t in enumerate(texts)]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _executed(runs) -> dict:
    """What notebooks 02, 04, 05 and 06 print about the claims, from the records in ``runs``, with the very calls
    their cells make: 02, 04 ('what you saw') and 06 through ``claim_lines`` on the claims table; 04 section 7
    through ``course.ablation_verdict`` on its robustness table; 05 through ``course.adversarial_verdicts`` on its
    rounds table and the models fine-tuned without UAPs."""
    results = rep.load_results(runs)
    claims = rep.claims_table(results)
    recs04 = results["04_pruning_and_attention"]
    table = pd.DataFrame([{**r, "model": r["defense"]} for r in recs04])
    ablation = course.ablation_verdict(table, eps=1 / 255)
    recs05 = results["05_uap_finetuning_and_adversarial_training"]
    rt = pd.DataFrame([r for r in recs05 if r.get("defense") == "uap-finetune" and r.get("round") is not None])
    controls = {r["control"]: {"uap_fooling_rate": r["fooling_rate"], "uap_fooling_rate_lo": r["fooling_rate_lo"],
                               "uap_fooling_rate_hi": r["fooling_rate_hi"], "clean_accuracy": 0.8}
                for r in recs05 if r.get("control")}
    v = course.adversarial_verdicts(_matrix(rt.fresh_uap_fooling_rate.iloc[0], rt.fresh_uap_fooling_rate.iloc[-1], 0.05),
                                    controls=controls, rounds=rt).set_index("key")
    return {
        "02_universal_perturbations": _notebook("- **Against Hirano et al.**: " + rep.claim_lines(
            claims, source="02_universal_perturbations")),
        "04_pruning_and_attention": _notebook(
            "**Does pruning or attention raise robustness on our data?** " + ablation["text"],
            "- Against Chen et al.: " + rep.claim_lines(claims, source="04_pruning_and_attention", reasons=False)),
        "05_uap_finetuning_and_adversarial_training": _notebook(
            f"**Verdicts.** Hirano et al.'s claim on our data: "
            f"{rules.verdict_mark('hirano-finetune', v.verdict['hirano-finetune'])} ({v.measured['hirano-finetune']})."),
        "06_transfer_and_report": _notebook(
            rep.claim_lines(claims, skip=("reproduced",), bullets=True, paper=True),
            "- Claims of the two papers: " + rep.claim_lines(claims, reasons=False)),
    }


def _mismatches(runs, executed) -> dict:
    claims = rep.claims_table(rep.load_results(runs))
    return {nb: m for nb, node in executed.items()
            if (m := rules.verdict_mismatches(rules.notebook_verdicts(node), claims, rules.NOTEBOOK_CLAIMS[nb]))}


def _add_control(runs, rate: float) -> None:
    path = runs / "results" / "05_uap_finetuning_and_adversarial_training.json"
    recs = json.loads(path.read_text())
    recs.append({k: recs[0][k] for k in ("model", "data_fingerprint", "checkpoint_fingerprint", "precision")}
                | {"control": "plain fine-tuning", "defense": "none", "attack": "uap", "zeta": 0.02,
                   "fooling_rate": rate, "fooling_rate_lo": rate - 0.04, "fooling_rate_hi": rate + 0.04})
    path.write_text(json.dumps(recs))


def test_every_claim_has_a_key_of_the_rule_book_and_a_notebook_that_prints_it(tmp_path):
    fabricate(tmp_path, "near")
    assert tuple(c["id"] for c in rep.claims_table(rep.load_results(tmp_path))) == rules.CLAIM_KEYS
    printed = {k for nb, keys in rules.NOTEBOOK_CLAIMS.items() if nb != "06_transfer_and_report" for k in keys}
    assert printed == set(rules.CLAIM_KEYS) and rules.NOTEBOOK_CLAIMS["06_transfer_and_report"] == rules.CLAIM_KEYS
    assert rep.VERDICTS is rules.VERDICTS


@pytest.mark.parametrize("level", list(SCENARIOS))
def test_the_notebooks_verdicts_are_the_reports(tmp_path, level):
    fabricate(tmp_path, level)
    if level == "above":
        _add_control(tmp_path, 0.42)          # a control fine-tuned without UAPs that the last round beats
    executed = _executed(tmp_path)
    assert _mismatches(tmp_path, executed) == {}
    claims = {c["id"]: c["verdict"] for c in rep.claims_table(rep.load_results(tmp_path))}
    found = rules.notebook_verdicts(executed["06_transfer_and_report"])
    assert {k: set(w) for k, w in found.items()} == {k: {v} for k, v in claims.items()}


def test_a_verdict_the_notebook_decides_by_another_rule_is_named(tmp_path, monkeypatch):
    """A planted mismatch on the notebook's side: notebook 04's ablation verdict by a rule other than the report's."""
    fabricate(tmp_path, "below")                                     # the report: chen-ablation "partly"
    monkeypatch.setattr(course.pipelines, "verdict_ablation", lambda *a, **k: ("reproduced", "planted"))
    got = _mismatches(tmp_path, _executed(tmp_path))
    assert got == {"04_pruning_and_attention": {"chen-ablation": {"notebook": ["reproduced", "partly"],
                                                                  "report": "partly"}}}


def test_a_doctored_output_and_a_missing_marker_are_named(tmp_path):
    """A planted mismatch in an executed notebook's output text: exactly the doctored claim is reported."""
    fabricate(tmp_path, "near")
    executed = _executed(tmp_path)
    out = executed["02_universal_perturbations"]["cells"][0]["outputs"][0]["data"]
    assert "**partly** [`hirano-random`]" in out["text/markdown"]
    out["text/markdown"] = out["text/markdown"].replace("**partly** [`hirano-random`]", "**reproduced** [`hirano-random`]")
    cell = executed["05_uap_finetuning_and_adversarial_training"]["cells"][0]["outputs"][0]["data"]
    cell["text/markdown"] = cell["text/markdown"].replace(" [`hirano-finetune`]", "")      # the word without its key
    assert _mismatches(tmp_path, executed) == {
        "02_universal_perturbations": {"hirano-random": {"notebook": ["reproduced"], "report": "partly"}},
        "05_uap_finetuning_and_adversarial_training": {"hirano-finetune": {"notebook": [], "report": "partly"}}}


def test_notebook_verdicts_reads_an_ipynb_file_once_per_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={"text/markdown": "a: **not shown** [`chen-ablation`]",
                                                      "text/plain": "a: **not shown** [`chen-ablation`]"}),
        nbformat.v4.new_output("stream", name="stdout", text="b: **partly** [`chen-ablation`]\n")]),
        nbformat.v4.new_markdown_cell("**reproduced** [`chen-pgd`] in prose is no output")]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert rules.notebook_verdicts(path) == {"chen-ablation": ["not shown", "partly"]}
    assert rules.verdict_mismatches({"chen-ablation": ["not shown", "partly"]},
                                    [{"id": "chen-ablation", "verdict": "not shown"}]) == {
        "chen-ablation": {"notebook": ["not shown", "partly"], "report": "not shown"}}
    assert rules.verdict_mismatches({"chen-x": "partly"}, []) == {"chen-x": {"notebook": ["partly"], "report": None}}


def test_verdict_mark_takes_only_the_rule_books_words_and_keys():
    assert rules.verdict_mark("chen-ablation", "not shown (masking)") == "**not shown (masking)** [`chen-ablation`]"
    assert rules.marked_verdicts(rules.verdict_mark("chen-ablation", "not shown (masking)")) == {
        "chen-ablation": ["not shown (masking)"]}
    with pytest.raises(ValueError, match="no verdict"):
        rules.verdict_mark("chen-ablation", "shown")               # notebook 04's former word
    with pytest.raises(ValueError, match="no claim"):
        rules.verdict_mark("hirano-few-cases", "partly")           # notebook 05's row the report has no claim for
