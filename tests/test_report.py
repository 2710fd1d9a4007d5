"""The reproduction report (course/report.py, ``medadv report``): the verdict functions at, above and below
their thresholds; the claims table from fabricated result files above, near and below the papers'
numbers; "not run" for missing notebooks; the HTML and Markdown files; the CLI's errors and JSON."""
from __future__ import annotations

import json
import subprocess

import pytest

from medadv_lib.cli import main
from medadv_lib.course import report as rep
from medadv_lib.course.results import record

IDS = ["hirano-nontargeted", "hirano-targeted", "hirano-to-covid", "hirano-random", "hirano-finetune", "chen-pgd",
       "chen-deepfool", "chen-ablation"]
ID_KEYS = {"data_fingerprint": "d4t4", "precision": "fp32"}


# ------------------------------------------------------------------------------------------ verdict functions

@pytest.mark.parametrize("value, hi, expected", [
    (0.90, None, "reproduced"), (0.85, None, "reproduced"),        # at the threshold counts as reached
    (0.80, None, "partly"), (0.75, None, "partly"),                 # within 10 points
    (0.70, None, "not reproduced"), (0.50, None, "not reproduced"),
    (0.70, 0.86, "partly"),                                         # its interval reaches the paper's number
    (None, None, "not run")])
def test_verdict_at_least(value, hi, expected):
    assert rep.verdict_at_least(value, 0.85, hi=hi)[0] == expected


def test_verdict_targeted():
    assert rep.verdict_targeted({"normal": 0.95, "COVID-19": 0.91})[0] == "reproduced"
    assert rep.verdict_targeted({"normal": 0.30, "COVID-19": 0.85})[0] == "partly"
    v, reason = rep.verdict_targeted({"normal": 0.489, "pneumonia": 0.916, "COVID-19": 0.994})
    assert v == "partly" and reason.startswith("→ pneumonia and → COVID-19 reach the paper's 90 %; → normal stays below 80 %")
    v, reason = rep.verdict_targeted({"normal": 0.30, "COVID-19": 0.79})
    assert v == "not reproduced" and "79.0 %" in reason
    assert rep.verdict_targeted({})[0] == "not run"


def test_verdict_majority():
    assert rep.verdict_majority({"normal": 0.2, "pneumonia": 0.2, "COVID-19": 0.6})[0] == "reproduced"
    assert rep.verdict_majority({"normal": 0.3, "pneumonia": 0.25, "COVID-19": 0.45})[0] == "partly"
    v, reason = rep.verdict_majority({"normal": 0.5, "pneumonia": 0.2, "COVID-19": 0.3})
    assert v == "not reproduced" and "normal" in reason
    assert rep.verdict_majority({})[0] == "not run"


@pytest.mark.parametrize("uap, rnd, expected", [
    (0.90, 0.03, "reproduced"), (0.30, 0.10, "reproduced"),
    (0.35, 0.25, "partly"),                 # above the control, but the control is not small
    (0.20, 0.10, "partly"),                 # control small, but the UAP only 2× above it
    (0.12, 0.10, "not reproduced"), (None, 0.1, "not run")])
def test_verdict_random_control(uap, rnd, expected):
    assert rep.verdict_random_control(uap, rnd)[0] == expected


def test_verdict_finetune_against_the_controls_fine_tuned_without_uaps():
    ok = ("reproduced", "fresh-UAP fooling rate 30.0 % → 10.0 %")
    below = [{"control": "plain, 3 epochs", "fooling_rate": 0.40, "fooling_rate_lo": 0.35}]
    assert rep.verdict_beyond_controls(ok, 0.13, below)[0] == "reproduced"
    assert rep.verdict_beyond_controls(ok, 0.13, [])[0] == "reproduced"          # no control recorded: as before
    v, reason = rep.verdict_beyond_controls(ok, 0.13, below + [{"control": "baseline-ft", "fooling_rate": 0.12,
                                                                "fooling_rate_lo": 0.09}])
    assert v == "partly" and "baseline-ft 12.0 %" in reason and "not separable" in reason
    assert rep.verdict_beyond_controls(("not reproduced", "x"), 0.13, below)[0] == "not reproduced"


def test_the_report_judges_fine_tuning_against_recorded_controls(tmp_path):
    fabricate(tmp_path, "above")
    path = tmp_path / "results" / "05_uap_finetuning_and_adversarial_training.json"
    recs = json.loads(path.read_text())
    last = max(r["fresh_uap_fooling_rate"] for r in recs if r.get("round") == 2)
    recs.append({**{k: recs[0][k] for k in ("notebook", "model", "data_fingerprint", "checkpoint_fingerprint",
                                             "precision") if k in recs[0]},
                 "control": "plain fine-tuning", "defense": "none", "round": None, "attack": "uap", "norm": "inf",
                 "target": None, "zeta": 0.02, "fooling_rate": last, "fooling_rate_lo": last - 0.04,
                 "fooling_rate_hi": last + 0.04})
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}
    assert c["hirano-finetune"]["verdict"] == "partly" and "plain fine-tuning" in c["hirano-finetune"]["reason"]
    assert all(c[i]["verdict"] == "reproduced" for i in IDS if i != "hirano-finetune")   # not a defense record


def test_verdict_finetune():
    assert rep.verdict_finetune(0.80, 0.50, 0.82, 0.80, r0_lo=0.75, rk_hi=0.55, rounds=3)[0] == "reproduced"
    v, reason = rep.verdict_finetune(0.80, 0.50, 0.82, 0.70, r0_lo=0.75, rk_hi=0.55)
    assert v == "partly" and "clean accuracy" in reason                     # too costly
    v, reason = rep.verdict_finetune(0.80, 0.68, r0_lo=0.70, rk_hi=0.75)
    assert v == "partly" and "overlap" in reason                            # not distinguishable
    assert rep.verdict_finetune(0.80, 0.76)[0] == "partly"                 # 4 points
    assert rep.verdict_finetune(0.80, 0.79)[0] == "not reproduced"
    assert rep.verdict_finetune(0.80, 0.85)[0] == "not reproduced"         # worse
    assert rep.verdict_finetune(None, 0.5)[0] == "not run"


def test_verdict_defense_rate_discounts_a_number_the_undefended_model_reaches_too():
    assert rep.verdict_defense_rate(0.80, 0.7718, baseline=0.50)[0] == "reproduced"
    v, reason = rep.verdict_defense_rate(0.80, 0.7718, baseline=0.79)
    assert v == "partly" and "undefended" in reason
    assert rep.verdict_defense_rate(0.70, 0.7718)[0] == "partly"
    assert rep.verdict_defense_rate(0.70, 0.7718, baseline=0.65)[0] == "partly"
    v, reason = rep.verdict_defense_rate(0.712, 0.7718, baseline=0.796)     # near the paper, below the undefended
    assert v == "not reproduced" and "no gain from the defense" in reason and "lowered" not in reason
    assert rep.verdict_defense_rate(0.40, 0.7718)[0] == "not reproduced"


def test_verdict_ablation():
    ref = (0.50, 0.40, 0.60)
    assert rep.verdict_ablation({"cbam": (0.8, 0.7, 0.9), "prune0.6": (0.75, 0.65, 0.85)}, ref)[0] == "reproduced"
    assert rep.verdict_ablation({"cbam": (0.8, 0.7, 0.9), "prune0.6": (0.6, 0.5, 0.7)}, ref)[0] == "partly"
    assert rep.verdict_ablation({"cbam+prune0.6": (0.8, 0.7, 0.9), "se": (0.5, 0.4, 0.6)}, ref)[0] == "partly"
    v, reason = rep.verdict_ablation({"cbam": (0.7, 0.59, 0.8)}, ref)       # overlapping = not shown
    assert v == "not shown" and "overlaps" in reason
    assert rep.verdict_ablation({"cbam": (0.7, 0.6, 0.8)}, None)[0] == "not run"


# ----------------------------------------------------------------------------------- fabricated result files

def _confusion(to_covid: float, n=(100, 100, 100)) -> list[list[int]]:
    """True class → prediction under the UAP: a share ``to_covid`` of the normal and pneumonia images
    predicted COVID-19, the rest kept in their class; every COVID-19 image stays COVID-19.  Re-weighted to
    100/100/31 the share predicted COVID-19 is ``(200·to_covid + 31) / 231``."""
    return [[round(n[0] * (1 - to_covid)), 0, round(n[0] * to_covid)],
            [0, round(n[1] * (1 - to_covid)), round(n[1] * to_covid)], [0, 0, n[2]]]


SCENARIOS = {
    # level: (non-targeted re-weighted, targeted per class, share of normal/pneumonia → COVID, UAP vs random,
    #         fine-tuning fresh rate round 0 → last, Chen PGD (combined arm), Chen DeepFool, ablation arms above)
    "above": dict(nt=0.90, tg=(0.95, 0.93, 0.99), covid=0.70, rnd=(0.90, 0.03), ft=(0.85, 0.40), pgd=0.85,
                  df=0.75, abl={"cbam": 0.95, "prune0.6": 0.95}),
    "near": dict(nt=0.80, tg=(0.30, 0.50, 0.86), covid=0.35, rnd=(0.35, 0.25), ft=(0.85, 0.80), pgd=0.72,
                 df=0.65, abl={"cbam": 0.55, "prune0.6": 0.55}),
    "below": dict(nt=0.40, tg=(0.30, 0.50, 0.70), covid=0.10, rnd=(0.12, 0.10), ft=(0.85, 0.85), pgd=0.30,
                  df=0.10, abl={"cbam": 0.55, "prune0.6": 0.42}),
}
EXPECTED = {"above": "reproduced", "near": "partly", "below": "not reproduced"}
# The defense claims follow the rule book (course.rules), one rule at every sample size: an interval that reaches the
# paper's number with a paired gain over baseline-ft is "reproduced", never "partly"; the ablation counts arms shown
# better image by image.
EXPECTED_CHEN = {"above": {}, "near": {"chen-pgd": "reproduced", "chen-deepfool": "reproduced", "chen-ablation": "reproduced"},
                 "below": {"chen-ablation": "partly"}}


def _expected(level):
    return {i: EXPECTED_CHEN[level].get(i, EXPECTED[level]) for i in IDS}


def _id(model="resnet18", fp="ck1", **kw):
    return {"model": model, "checkpoint": f"{model}.pt", "checkpoint_fingerprint": fp, **ID_KEYS, **kw}


def _wilson(rate, n):
    from medadv_lib.metrics.defense import wilson_interval
    return wilson_interval(round(rate * n), n)


def fabricate(runs, level: str, notebooks=("01", "02", "03", "04", "05")) -> None:
    """Result files as the notebooks write them (course.record), with the scenario's numbers."""
    s = SCENARIOS[level]
    if "01" in notebooks:
        record("01_train_classifiers", [_id(test_accuracy=0.82, image_size=112, epochs=10, train_seconds=300.0)],
               runs, seconds=12.0)
    if "02" in notebooks:
        recs = [_id(norm="inf", zeta=0.02, eps=0.0176, target=None, fooling_rate=s["nt"] - 0.1,
                    fooling_rate_reweighted=s["nt"], fooling_rate_per_class={"normal": s["nt"], "pneumonia": s["nt"],
                                                                             "COVID-19": s["nt"]},
                    random_fooling_rate=s["rnd"][1], n=348, confusion_labels_to_adv=_confusion(s["covid"]))]
        recs[0]["fooling_rate"] = s["rnd"][0]
        recs += [_id(norm="inf", zeta=0.02, eps=0.0176, target=lab, target_success_rate=t, n=348)
                 for lab, t in zip(("normal", "pneumonia", "COVID-19"), s["tg"])]
        recs.append(_id("mobilenet_v3_small", "ck2", norm="inf", zeta=0.02, target=None, fooling_rate=0.01,
                        uap_from="resnet18"))                      # a transferred UAP: not the headline
        record("02_universal_perturbations", recs, runs, seconds=12.0)
    if "03" in notebooks:
        record("03_pgd_and_deepfool", [_id(attack="pgd", norm="inf", eps=1 / 255, defense_rate=0.7)], runs,
               seconds=30.0)
    if "04" in notebooks:
        from medadv_lib.metrics.defense import outcome_bits
        n, recs = 64, []
        arms = {"baseline": 0.5, "baseline-ft": 0.4, **s["abl"], "cbam+prune0.6": s["pgd"]}

        def rates(rate):     # rate, interval and nested per-image outcomes (the first round(rate · n) images kept)
            lo, hi = _wilson(rate, n)
            return dict(n=n, n_clean_correct=n, defense_rate=rate, defense_rate_lo=lo, defense_rate_hi=hi,
                        outcome_attacked=outcome_bits([i < round(rate * n) for i in range(n)]), outcome_clean="1" * n)
        for arm, rate in arms.items():
            for attack in ("pgd", "worst"):
                recs.append(_id(defense=arm, attack=attack, norm="inf", eps=1 / 255, steps=10, set_by="pgd",
                                balanced_robust_accuracy=rate, masked=False, **rates(rate)))
                recs.append(_id(defense=arm, attack=attack, norm="inf", eps=2 / 255, steps=10, **rates(rate / 2)))
            df = s["df"] if arm == "cbam+prune0.6" else 0.1
            for attack in ("deepfool", "worst-l2"):
                recs.append(_id(defense=arm, attack=attack, norm="2", eps=1.3, zeta=0.02, **rates(df)))
        record("04_pruning_and_attention", recs, runs, seconds=400.0)
    if "05" in notebooks:
        n, (r0, rk) = 348, s["ft"]
        recs = []
        for k, r in enumerate((r0, (r0 + rk) / 2, rk)):
            lo, hi = _wilson(r, n)
            recs.append(_id(defense="uap-finetune", round=k, attack="uap", norm="inf", clean_accuracy=0.82,
                            fresh_uap_fooling_rate=r,
                            fresh_uap_fooling_rate_lo=lo, fresh_uap_fooling_rate_hi=hi,
                            old_uap_fooling_rate=None if k == 0 else 0.1, random_fooling_rate=0.05, n=n, zeta=0.02,
                            train_seconds=50.0 * k))
        recs.append(_id(defense="pgd-at", attack="pgd", norm="inf", eps=1 / 255, n=64, defense_rate=0.9))
        record("05_uap_finetuning_and_adversarial_training", recs, runs, seconds=600.0)


@pytest.mark.parametrize("level", list(SCENARIOS))
def test_claims_from_fabricated_results_above_near_and_below_the_papers(tmp_path, level):
    fabricate(tmp_path, level)
    claims = rep.claims_table(rep.load_results(tmp_path))
    assert [c["id"] for c in claims] == IDS
    got = {c["id"]: c["verdict"] for c in claims}
    assert got == _expected(level), {i: (c["verdict"], c["reason"]) for i, c in zip(IDS, claims)}
    for c in claims:
        assert c["reason"] and c["paper_conditions"] and c["our_conditions"]


def test_numbers_and_reweighting_come_from_the_records(tmp_path):
    fabricate(tmp_path, "near")
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}
    assert c["hirano-nontargeted"]["reweighted"] == pytest.approx(0.80)            # recorded re-weighted rate
    assert c["hirano-nontargeted"]["ours"] == pytest.approx(0.35)                  # our mix, plain rate
    assert c["hirano-to-covid"]["reweighted"] == pytest.approx((200 * 0.35 + 31) / 231)
    assert c["hirano-to-covid"]["ours"] == pytest.approx((200 * 0.35 + 100) / 300)   # our (fabricated) mix
    assert c["hirano-finetune"]["ours_text"] == "85.0 % → 80.0 %"
    assert c["chen-pgd"]["ours"] == pytest.approx(0.72) and "PGD-10 alone: 72.0 %" in c["chen-pgd"]["reason"]
    assert c["hirano-targeted"]["ours"] == pytest.approx(0.30)                     # the lowest target


def test_reweighting_of_destinations_uses_the_paper_mix(tmp_path):
    fabricate(tmp_path, "near", notebooks=("02",))
    path = tmp_path / "results" / "02_universal_perturbations.json"
    recs = json.loads(path.read_text())
    recs[0]["confusion_labels_to_adv"] = [[0, 0, 100], [0, 0, 100], [0, 100, 0]]   # normal, pneumonia → COVID
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}["hirano-to-covid"]
    assert c["ours"] == pytest.approx(2 / 3) and c["reweighted"] == pytest.approx(200 / 231)
    assert c["verdict"] == "reproduced"


def test_targeted_success_is_reweighted_from_the_recorded_confusion(tmp_path):
    fabricate(tmp_path, "near", notebooks=("02",))
    path = tmp_path / "results" / "02_universal_perturbations.json"
    recs = json.loads(path.read_text())
    covid = next(r for r in recs if r.get("target") == "COVID-19")
    covid["confusion_labels_to_adv"] = [[50, 0, 50], [0, 0, 100], [0, 0, 31]]   # normal half, the rest all → COVID
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}["hirano-targeted"]
    assert "→ COVID-19 " + f"{100 * (50 + 100 + 31) / 231:.1f} %" in c["reweighted_text"]
    assert c["reweighted"] == pytest.approx((50 + 100 + 31) / 231)
    assert c["verdict"] == "partly" and c["reason"].startswith("on our test mix")   # not every target re-weighted
    for r in recs:                     # every target re-weighted: → normal and → pneumonia move nobody (43.3 %)
        if r.get("target") in ("normal", "pneumonia"):
            r["confusion_labels_to_adv"] = [[100, 0, 0], [0, 100, 0], [0, 0, 31]]
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}["hirano-targeted"]
    assert c["verdict"] == "not reproduced" and c["reason"].startswith("re-weighted")   # → COVID-19 78.4 % < 80 %
    assert c["reweighted"] == pytest.approx(100 / 231)                # the lowest target


def test_missing_notebooks_are_not_run_never_invented(tmp_path):
    fabricate(tmp_path, "above", notebooks=("01", "02"))
    report = rep.build_report(tmp_path, figures=False)
    v = {c["id"]: c for c in report["claims"]}
    for cid in ("hirano-finetune", "chen-pgd", "chen-deepfool", "chen-ablation"):
        assert v[cid]["verdict"] == "not run" and v[cid]["ours"] is None and "has no results" in v[cid]["reason"]
    assert v["hirano-nontargeted"]["verdict"] == "reproduced"
    assert report["notebooks"]["04_pruning_and_attention"] == "not run"
    cost = {r["notebook"]: r for r in report["cost"]["notebooks"]}
    assert cost["05_uap_finetuning_and_adversarial_training"]["precision"] == "not run"
    assert cost["05_uap_finetuning_and_adversarial_training"]["seconds"] is None


def test_notebook_02_without_destinations_says_so(tmp_path):
    fabricate(tmp_path, "above", notebooks=("02",))
    path = tmp_path / "results" / "02_universal_perturbations.json"
    recs = json.loads(path.read_text())
    del recs[0]["confusion_labels_to_adv"]
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}["hirano-to-covid"]
    assert c["verdict"] == "not run" and "confusion_labels_to_adv" in c["reason"]


def test_cost_and_provenance(tmp_path):
    fabricate(tmp_path, "above")
    path = tmp_path / "results" / "03_pgd_and_deepfool.json"
    recs = json.loads(path.read_text())
    recs[0]["data_fingerprint"] = "other"
    path.write_text(json.dumps(recs))
    report = rep.build_report(tmp_path, figures=False)
    cost = {r["notebook"]: r for r in report["cost"]["notebooks"]}
    assert cost["04_pruning_and_attention"]["seconds"] == 400.0 and cost["01_train_classifiers"]["seconds"] == 12.0
    assert cost["01_train_classifiers"]["precision"] == "fp32"
    assert cost["01_train_classifiers"]["device"] == "not recorded"
    steps = {(s["notebook"], s["what"], s["step"]): s["seconds"] for s in report["cost"]["steps"]}
    assert steps[("01_train_classifiers", "resnet18", "train")] == 300.0
    prov = report["provenance"]
    assert set(prov["data_fingerprints"]) == {"d4t4", "other"} and "2 different datasets" in prov["data_warning"]
    assert {(c["model"], c["fingerprint"]) for c in prov["checkpoints"]} >= {("resnet18", "ck1"),
                                                                             ("mobilenet_v3_small", "ck2")}
    assert prov["settings"]["02_universal_perturbations"]["zeta"] == [0.02]
    assert prov["git_commit"]
    defended = {(r["defense"], r["attack"]) for r in report["defenses"]}
    assert ("pgd-at", "pgd") in defended and ("cbam+prune0.6", "deepfool") in defended
    assert not any(d == "uap-finetune" for d, _ in defended)                     # per-round records are not rows


def test_git_commit_never_fails(monkeypatch):
    def boom(*a, **k):
        raise OSError("no git")
    monkeypatch.setattr(subprocess, "run", boom)
    assert rep.git_commit().startswith("unknown")


def test_html_and_markdown_files(tmp_path):
    runs = tmp_path / "runs"
    fabricate(runs, "near")
    html_path, report = rep.write_report(runs, tmp_path / "out" / "report.html")
    text = html_path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == len(report["figures"]) >= 2
    for c in report["claims"]:
        assert c["claim"].replace("'", "&#x27;") in text
    assert "src='http" not in text and "<script" not in text                       # self-contained
    md_path, _ = rep.write_report(runs, tmp_path / "out" / "report.md", figures=False)
    md = md_path.read_text()
    assert "| paper | claim |" in md and "data:image" not in md and "<img" not in md
    assert md.count("| partly |") == list(_expected("near").values()).count("partly")
    md2, _ = rep.write_report(runs, tmp_path / "out" / "with-figures.md")
    assert "](data:image/png;base64," in md2.read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md", "with-figures.md"]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        rep.load_results(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no results"):
        rep.load_results(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "02_universal_perturbations.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_universal_perturbations.json"):
        rep.load_results(tmp_path)
    with pytest.raises(ValueError, match=r"\.html.*\.md"):
        rep.report_format("report.pdf")


# --------------------------------------------------------------------------------------------------- the CLI

def test_cli_writes_the_report_and_prints_one_json_object(tmp_path, capsys):
    fabricate(tmp_path / "runs", "below")
    out = tmp_path / "report.html"
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ok"] and result["out"] == str(out) and out.is_file() and result["format"] == "html"
    assert result["verdicts"] == _expected("below")
    assert main(["report", "--runs", str(tmp_path / "runs")]) == 0                 # default: RUNS/report.html
    assert (tmp_path / "runs" / "report.html").is_file()
    assert "chen-ablation" in capsys.readouterr().out


@pytest.mark.parametrize("args, option", [
    (["--runs", "{tmp}/missing"], "--runs"),
    (["--runs", "{tmp}/empty"], "--runs"),
    (["--runs", "{tmp}/runs", "--out", "{tmp}/r.pdf"], "--out"),
    (["--runs", "{tmp}/runs", "--out", "{tmp}"], "--out")])
def test_cli_bad_input_is_one_line_naming_the_option_exit_2(tmp_path, capsys, args, option):
    fabricate(tmp_path / "runs", "near")
    (tmp_path / "empty").mkdir()
    argv = ["report", *[a.format(tmp=tmp_path) for a in args], "--json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medadv report: error: ") and option in err[0]
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert last["ok"] is False and last["command"] == "report" and option in last["error"]


def test_verdict_ablation_paired_decides_by_the_discordant_images():
    ref = (0.50, 0.40, 0.60)
    arms = {"cbam": (0.7, 0.59, 0.8), "prune0.6": (0.55, 0.45, 0.65)}      # intervals overlap the reference's
    paired = {"cbam": {"model_only": 12, "reference_only": 0, "p_holm": 0.0005, "shown": "higher"},
              "prune0.6": {"model_only": 9, "reference_only": 0, "p_holm": 0.004, "shown": "higher"}}
    v, reason = rep.verdict_ablation(arms, ref, paired)
    assert v == "reproduced" and "McNemar" in reason and "cbam: kept correct by it alone 12, by baseline-ft alone 0" in reason
    paired["prune0.6"].update(model_only=3, reference_only=2, p_holm=1.0, shown="not shown")
    assert rep.verdict_ablation(arms, ref, paired)[0] == "partly"
    paired["cbam"].update(shown="not shown", p_holm=0.3)
    v, reason = rep.verdict_ablation(arms, ref, paired)
    assert v == "not shown" and reason.startswith("no arm keeps more of the same images correct than baseline-ft")
    paired["prune0.6"].update(model_only=0, reference_only=12, p_holm=0.001, shown="lower")    # shown worse
    assert rep.verdict_ablation(arms, ref, paired)[0] == "not reproduced"
    # an arm a masking check flags never counts as shown
    paired["cbam"].update(shown="higher", p_holm=0.001)
    assert rep.verdict_ablation(arms, ref, paired, masked={"cbam"})[0] == "not reproduced"
    paired["prune0.6"].update(shown="not shown", p_holm=1.0)
    assert rep.verdict_ablation(arms, ref, paired, masked={"cbam"})[0] == "not shown (masking)"


def test_the_report_compares_the_ablation_image_by_image_and_shows_labels_and_rho(tmp_path):
    from medadv_lib.metrics.defense import outcome_bits
    n = 40
    ref_ok = [i < 20 for i in range(n)]
    arm_ok = [i < 32 for i in range(n)]                                   # 12 more images kept, none lost
    recs = [{"notebook": "04_pruning_and_attention", "model": "resnet18", "defense": d, "attack": "worst", "eps": 1 / 255,
             "n": n, "defense_rate": sum(ok) / n, "defense_rate_lo": sum(ok) / n - 0.15, "defense_rate_hi": sum(ok) / n + 0.15,
             "outcome_attacked": outcome_bits(ok), "data_fingerprint": "d", "checkpoint_fingerprint": d, "precision": "fp32",
             "seconds": 1.0} for d, ok in (("baseline", ref_ok), ("baseline-ft", ref_ok), ("cbam", arm_ok), ("prune0.6", arm_ok))]
    recs.append({**recs[2], "attack": "deepfool", "eps": 0.3, "median_rho_adv": 0.0081})
    recs05 = [{**recs[1], "notebook": "05_uap_finetuning_and_adversarial_training", "defense": "pgd-at",
               "defense_label": "FGSM-RS AT (2/255)", "checkpoint_fingerprint": "at"}]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "04_pruning_and_attention.json").write_text(json.dumps(recs))
    (tmp_path / "results" / "05_uap_finetuning_and_adversarial_training.json").write_text(json.dumps(recs05))
    report = rep.build_report(tmp_path, figures=False)
    abl = next(c for c in report["claims"] if c["id"] == "chen-ablation")
    assert abl["verdict"] == "reproduced" and "McNemar" in abl["our_conditions"], abl
    head, rows = rep._tables(report)["defenses"]
    assert head[-1] == "median ρ_adv (DeepFool)"
    assert any(r[1:3] == ["cbam", "deepfool"] and r[-1] == "0.81 %" for r in rows)
    assert any(r[1] == "FGSM-RS AT (2/255)" for r in rows) and not any(r[1] == "pgd-at" for r in rows)


def test_a_masked_arm_is_not_shown_and_the_chen_rows_name_the_worst_case(tmp_path):
    """The Chen et al. rows read the worst case over the suite, name the attacks behind it and the attack that set it,
    and a defended arm a masking check flags is "not shown (masking)" however good its number."""
    fabricate(tmp_path, "above")
    path = tmp_path / "results" / "04_pruning_and_attention.json"
    recs = json.loads(path.read_text())
    for r in recs:
        if r["attack"] == "worst":
            r["fooled_by"] = json.dumps({"pgd": 10, "apgd-ce": 1, "apgd-dlr": 0, "square": 0, "transfer": 0})
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}
    assert c["chen-pgd"]["verdict"] == "reproduced"
    assert "worst case over pgd, apgd-ce, apgd-dlr, square, transfer at L∞ ε = 1/255" in c["chen-pgd"]["our_conditions"]
    assert "of the images the suite fooled, most fell to pgd" in c["chen-pgd"]["reason"]
    for r in recs:
        if r["defense"] == "cbam+prune0.6":
            r["masked"], r["verdict"] = True, "gradient masking suspected: transfer"
    path.write_text(json.dumps(recs))
    c = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}
    assert c["chen-pgd"]["verdict"] == c["chen-deepfool"]["verdict"] == "not shown (masking)"
    assert "masking check flags it" in c["chen-pgd"]["reason"]


def test_a_runs_folder_missing_notebooks_is_refused_unless_partial(tmp_path, capsys):
    """Issue 25, item 7: the report of an unfinished course is refused with one line naming what to run; with
    --partial it is written and says at the top that it is incomplete."""
    fabricate(tmp_path / "runs", "near", notebooks=("01", "04", "05"))
    out = tmp_path / "report.html"
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "02_universal_perturbations, 03_pgd_and_deepfool" in err[0] and "--partial" in err[0]
    assert "runner 02 03" in err[0] and not out.exists()
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(out), "--partial", "--no-figures"]) == 0
    text = out.read_text()
    assert "Incomplete: the course is not finished" in text and "runner 02 03" in text
    md = tmp_path / "report.md"
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(md), "--partial", "--no-figures"]) == 0
    assert "**Incomplete: the course is not finished" in md.read_text()


def test_a_complete_run_has_no_incomplete_banner(tmp_path):
    fabricate(tmp_path / "runs", "near")
    path, report = rep.write_report(tmp_path / "runs", tmp_path / "r.md", figures=False)
    assert rep.missing_notebooks(report) == [] and rep.incomplete_text(report) == ""
    assert "Incomplete" not in path.read_text()
