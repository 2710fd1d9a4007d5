"""Notebook 05's defenses: UAP fine-tuning, universal adversarial training, PGD adversarial training."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from medadv_lib import course
from medadv_lib.attacks.uap import sgd_uap, uap_budget
from medadv_lib.cli import main
from medadv_lib.data import load_split
from medadv_lib.defenses.adversarial import PGDPerturb, UAPPerturb, UATPerturb
from medadv_lib.models import build_model, load_checkpoint
from medadv_lib.runtime import seed_everything
from medadv_lib.train import TrainConfig, fit

TINY = TrainConfig(model="resnet18", image_size=64, epochs=1, batch_size=16, seed=0)


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_zero_uap_hook_equals_plain_fine_tuning(real_batch):
    """The UAP fine-tuning hook with v = 0 leaves training bit-identical (seeded, CPU)."""
    x, y = real_batch
    states = []
    for hook in (None, UAPPerturb(torch.zeros(1, 1, 64, 64), share=0.5)):
        seed_everything(0)
        m = build_model("resnet18")
        fit(m, (x, y), None, TINY, device="cpu", progress=False, precision="fp32", perturb=hook)
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_uap_hook_perturbs_exactly_its_share(real_batch):
    x, _ = real_batch
    v = torch.full((1, 1, 64, 64), 0.01)
    out = UAPPerturb(v, share=0.25)(None, x, None)
    changed = (out != x).flatten(1).any(1)
    assert int(changed.sum()) == 8 and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="share"):
        UAPPerturb(v, share=0)


def test_uat_keeps_its_uap_inside_the_ball_and_moves_it(small_model, real_batch):
    x, y = real_batch
    eps = 4 / 255
    for norm, size in (("inf", lambda v: v.abs().max()), ("2", lambda v: v.norm())):
        hook = UATPerturb(eps if norm == "inf" else 1.0, norm, lr=eps if norm == "inf" else 0.5)
        for _ in range(4):
            out = hook(small_model, x, y)
            assert out.min() >= 0 and out.max() <= 1
        bound = eps if norm == "inf" else 1.0
        assert 0 < float(size(hook.v)) <= bound + 1e-6, norm
        assert len(hook.history) == 4
    assert small_model.training is False          # crafting in eval mode restores the caller's mode


def test_pgd_hook_stays_in_the_ball_and_fools_more_than_noise(small_model, real_batch):
    x, y = real_batch
    eps = 4 / 255
    hook = PGDPerturb(eps, steps=3)
    x_adv = hook(small_model, x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        acc_adv = (small_model(x_adv).argmax(1) == y).float().mean()
        acc = (small_model(x).argmax(1) == y).float().mean()
    assert acc_adv < acc
    fgsm = PGDPerturb(eps)                        # one step = FGSM with random start, step 1.25·eps
    assert fgsm.steps == 1 and fgsm.alpha == pytest.approx(1.25 * eps)


def test_checkpoints_carry_the_defense_in_their_hash(small_checkpoint):
    v = torch.zeros(1, 1, 64, 64)
    a = course.finetune_config(small_checkpoint, True, 1, perturbation=UAPPerturb(v, name="uapft-r1").describe())
    b = course.finetune_config(small_checkpoint, True, 1, perturbation=UAPPerturb(v + 0.01, name="uapft-r1").describe())
    c = course.finetune_config(small_checkpoint, True, 1, perturbation=PGDPerturb(2 / 255, name="pgdat2").describe())
    plain = course.finetune_config(small_checkpoint, True, 1)
    assert len({a.key(), b.key(), c.key(), plain.key()}) == 4        # a different UAP is a different model
    assert "-uapft-r1-" in a.filename() and "-pgdat2-" in c.filename()
    assert a.defense is None and plain.defense is not None            # notebook 04's keys are unchanged


def test_one_round_of_uap_fine_tuning_lowers_the_fooling_rate_of_its_uap(small_checkpoint, tmp_path):
    """Hirano et al.'s defense, one round on the small real-data model: the UAP it trained against
    fools fewer test images afterwards — image by image, significantly (one-sided exact McNemar test at
    0.05), not by a band fitted to one CPU's run.  ζ = 8 % makes the UAP strong enough on this small
    64-px model for one epoch to close it clearly (measured on an AVX2 CPU in fp32: 42 % → 20 % of the
    348 test predictions, discordant 109 vs 32; at ζ = 4 % the fall, 20 % → 15 %, was within noise)."""
    from medadv_lib.claims import not_worse
    from medadv_lib.models import predict
    model, _ = load_checkpoint(small_checkpoint, precision="fp32")
    x_tr, _ = load_split("train", 64, limit=128, seed=0)
    x_te, _ = load_split("test", 64)
    uap = sgd_uap(model, x_tr, eps=uap_budget(0.08, "inf", x_tr), epochs=3, batch_size=16)

    def fooled(m):
        return (predict(m, (x_te + uap.v).clamp(0, 1)) != predict(m, x_te)).numpy()
    before = fooled(model)
    hook = UAPPerturb(uap.v, share=0.5, name="uapft-r1")
    tuned, info = course.adversarial_finetune(small_checkpoint, hook, True, 1, output_dir=tmp_path, device="cpu",
                                              progress=False, precision="fp32")
    after = fooled(tuned)
    assert before.mean() > 0.1, before.mean()                 # the UAP works before the round
    assert not not_worse(after, before), (before.mean(), after.mean())   # and fools significantly fewer after it
    assert info["config"]["perturbation"]["uap"] == hook.describe()["uap"]


def test_defend_method_json_contract(small_checkpoint, tmp_path, capsys):
    common = ["--checkpoint", small_checkpoint, "--mode", "fast", "--out", str(tmp_path), "--device", "cpu",
              "--precision", "fp32", "--json"]
    assert main(["defend", "--method", "pgd-at", "--eps", "2/255", "--epochs", "1", *common]) == 0
    res = _last_json(capsys)
    assert res["defense"] == "pgd-at" and res["perturbation"]["kind"] == "pgd" and res["epochs"] == 1
    assert res["perturbation"]["eps"] == pytest.approx(2 / 255) and not res["cached"]
    assert 0 <= res["test_accuracy"] <= 1 and res["checkpoint"].endswith(".pt")
    assert main(["defend", "--method", "uap-finetune", "--rounds", "1", *common]) == 0
    res = _last_json(capsys)
    assert res["defense"] == "uap-finetune" and [r["round"] for r in res["rounds"]] == [0, 1]
    assert load_checkpoint(res["checkpoint"])[1]["config"]["init_from"] == small_checkpoint
    for bad, msg in ((["--method", "uat", "--eps", "0.01"], "--eps belongs to --method pgd-at"),
                     (["--method", "pgd-at", "--eps", "8"], "did you mean 8/255"),
                     (["--method", "uap-finetune", "--rounds", "0"], "rounds must be a positive integer"),
                     (["--method", "uat", "--attention", "cbam"], "leave out --attention")):
        assert main(["defend", *bad, *common]) == 2
        assert msg in capsys.readouterr().err


def _matrix(u_base, u_ft, u_at, acc_ft=0.80, at1=0.92, at1_lo=0.82, pgd2_ft=0.49, n=348):
    import pandas as pd

    from medadv_lib.metrics.defense import wilson_interval
    rows = {}
    for name, u, acc, p1, p2 in (("baseline", u_base, 0.83, 0.80, 0.37), ("uap-finetune", u_ft, acc_ft, 0.80, pgd2_ft),
                                 ("pgd-at", u_at, 0.80, at1, 0.88)):
        lo, hi = wilson_interval(round(u * n), n)
        rows[name] = {"clean_accuracy": acc, "uap_fooling_rate": u, "uap_fooling_rate_lo": lo, "uap_fooling_rate_hi": hi,
                      "pgd1_defense_rate": p1, "pgd1_defense_rate_lo": at1_lo if name == "pgd-at" else p1 - 0.1,
                      "pgd1_defense_rate_hi": min(1, p1 + 0.05), "pgd2_defense_rate": p2,
                      "pgd2_defense_rate_lo": p2 - 0.12, "pgd2_defense_rate_hi": p2 + 0.12}
        rows[name].update({k.replace("pgd", "worst"): v for k, v in rows[name].items() if k.startswith("pgd")})
    return pd.DataFrame(rows).T


@pytest.mark.parametrize("u_ft, acc_ft, goal, hirano", [
    (0.10, 0.81, True, "reproduced"),       # a third of the rate, 2 points lost
    (0.20, 0.81, False, "reproduced"),      # lowered by 10 points (intervals apart), but not halved
    (0.28, 0.81, False, "not reproduced"),  # within the noise
    (0.10, 0.75, False, "partly"),          # halved, but 8 points of clean accuracy lost (the rule book allows 5)
])
def test_adversarial_verdicts_follow_the_numbers(u_ft, acc_ft, goal, hirano):
    v = course.adversarial_verdicts(_matrix(0.30, u_ft, 0.05, acc_ft=acc_ft)).set_index("key")
    assert bool(v.met["finetune-uap-ratio"] and v.met["finetune-accuracy"]) is goal
    helped = "retraining did not help" if hirano == "not reproduced" else "retraining helped"
    assert v.verdict["hirano-finetune"] == hirano
    assert v.verdict["hirano-few-cases"] == f"cannot test a frequency; in this one case {helped}"
    # 5 % vs 10 % on 348 images: the Wilson intervals touch, so no winner is declared
    assert v.verdict["at-vs-finetune-uap"] == (
        "pgd-at leaves the lower fresh-UAP rate" if u_ft >= 0.2 else "not shown to differ (intervals overlap)")


def test_the_pgd_goal_uses_the_papers_bar():
    # the interval [0.60, 0.80] holds 77.18 %: neither met nor not met, whichever side the point falls
    held = course.adversarial_verdicts(_matrix(0.3, 0.1, 0.05, at1=0.75, at1_lo=0.6)).set_index("key")
    assert held.met["at-pgd-bar"] is None and held.verdict["at-pgd-bar"].startswith("not decided")
    assert "the interval holds the bar" in held.measured["at-pgd-bar"]
    below = _matrix(0.3, 0.1, 0.05, at1=0.60, at1_lo=0.5)
    below.loc["pgd-at", "worst1_defense_rate_hi"] = 0.70                    # the whole interval below the bar
    v = course.adversarial_verdicts(below).set_index("key")
    assert v.met["at-pgd-bar"] is False and v.verdict["at-pgd-bar"] == "not met"
    base_high = course.adversarial_verdicts(_matrix(0.3, 0.1, 0.05, at1=0.85, at1_lo=0.78)).set_index("key")   # undefended 0.85
    assert base_high.met["at-pgd-bar"] is True
    assert base_high.verdict["at-pgd-bar"].startswith("met, but the undefended model meets it too")
    base_low = _matrix(0.3, 0.1, 0.05, at1=0.85, at1_lo=0.78)
    base_low.loc["baseline", "worst1_defense_rate"] = 0.70                  # below the bar: a plain "met"
    v = course.adversarial_verdicts(base_low).set_index("key")
    assert v.met["at-pgd-bar"] is True and v.verdict["at-pgd-bar"] == "met"


def test_best_arm_of_04_reads_the_results_or_says_it_used_the_default(tmp_path):
    arm, why = course.best_arm_of_04(tmp_path)
    assert arm == "cbam+prune0.6" and "default" in why
    # the rule book: the highest balanced robust accuracy under the worst case, masked and collapsed arms left out
    recs = [{"attack": "worst", "eps": 1 / 255, "defense": d, "defense_rate": r, "balanced_robust_accuracy": b, **flag}
            for d, r, b, flag in (("baseline", 0.99, 0.9, {}), ("baseline-ft", 0.9, 0.8, {}), ("cbam", 0.7, 0.5, {}),
                                  ("prune0.6", 0.8, 0.4, {}), ("prune0.9", 0.95, 0.7, {"collapsed": True}),
                                  ("channels0.3", 0.9, 0.6, {"masked": True}))]
    recs.append({"attack": "pgd", "eps": 1 / 255, "defense": "prune0.6", "defense_rate": 0.99})   # PGD-10 is not read
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "04_pruning_and_attention.json").write_text(json.dumps(recs))
    arm, why = course.best_arm_of_04(tmp_path)
    assert arm == "cbam" and "50.0 %" in why and "prune0.9 (collapsed" in why and "channels0.3 (masking" in why


def test_the_hirano_verdict_needs_to_beat_plain_fine_tuning_too():
    from medadv_lib.metrics.defense import wilson_interval

    def summary(rate):
        lo, hi = wilson_interval(round(rate * 348), 348)
        return {"uap_fooling_rate": rate, "uap_fooling_rate_lo": lo, "uap_fooling_rate_hi": hi, "clean_accuracy": 0.8}
    m = _matrix(0.30, 0.15, 0.05)
    v = course.adversarial_verdicts(m, controls={"plain 3 epochs": summary(0.40), "plain 1 epoch": summary(0.16)}).set_index("key")
    assert v.verdict["hirano-finetune"] == "partly" and "not separable from fine-tuning alone" in v.measured["hirano-finetune"]
    assert v.verdict["control:plain 3 epochs"] == "uap-finetune leaves the lower fresh-UAP rate"
    assert v.verdict["control:plain 1 epoch"] == "not shown to differ (intervals overlap)"
    assert "plain 1 epoch 16.0 %" in v.measured["hirano-finetune"]
    v = course.adversarial_verdicts(m, controls={"plain 3 epochs": summary(0.40)}).set_index("key")
    assert v.verdict["hirano-finetune"] == "reproduced"


@pytest.mark.parametrize("fresh, acc_k, controls, strongest", [
    ([0.45, 0.30, 0.15], 0.80, {"plain": 0.40}, None),       # reproduced
    ([0.45, 0.30, 0.15], 0.70, {"plain": 0.40}, None),       # partly: 12 points of clean accuracy paid
    ([0.45, 0.30, 0.15], 0.80, {"plain": 0.16}, None),       # partly: not separable from plain fine-tuning
    ([0.45, 0.44, 0.43], 0.80, {}, None),                    # not reproduced
    ([0.45, 0.30, 0.15], 0.80, {"plain": 0.40}, [0.45, 0.30, 0.44]),   # not reproduced: round 0's UAP still fools 44 %
])
def test_notebook_05_and_the_report_give_hirano_the_same_verdict(tmp_path, fresh, acc_k, controls, strongest):
    """Issue 25, item 2: one claim, one verdict. Notebook 05's row and the report's claim come from the rule
    book's verdict_hirano on the same numbers (the rounds table the round records are written from)."""
    import pandas as pd

    from medadv_lib.course import report as rep
    from medadv_lib.course.results import record
    from medadv_lib.metrics.defense import wilson_interval
    n = 348
    ci = [wilson_interval(round(f * n), n) for f in fresh]
    rt = pd.DataFrame({"round": list(range(len(fresh))), "n": n, "fresh_uap_fooling_rate": fresh,
                       "fresh_uap_fooling_rate_lo": [c[0] for c in ci], "fresh_uap_fooling_rate_hi": [c[1] for c in ci],
                       "clean_accuracy": [0.82] + [0.81] * (len(fresh) - 2) + [acc_k]})
    if strongest is not None:
        sci = [wilson_interval(round(f * n), n) for f in strongest]
        rt = rt.assign(strongest_uap_fooling_rate=strongest, strongest_uap_fooling_rate_lo=[c[0] for c in sci],
                       strongest_uap_fooling_rate_hi=[c[1] for c in sci], strongest_uap=["fresh", "fresh", "round 0"])
    summaries = {}
    for name, rate in controls.items():
        lo, hi = wilson_interval(round(rate * n), n)
        summaries[name] = {"uap_fooling_rate": rate, "uap_fooling_rate_lo": lo, "uap_fooling_rate_hi": hi, "clean_accuracy": 0.8}
    m = _matrix(fresh[0], fresh[-1], 0.05, acc_ft=acc_k)
    nb = course.adversarial_verdicts(m, controls=summaries, rounds=rt).set_index("key")
    ids = {"data_fingerprint": "d", "checkpoint_fingerprint": "c", "precision": "fp32", "model": "resnet18"}
    recs = [{**r, **ids, "defense": "uap-finetune", "zeta": 0.02} for r in rt.to_dict(orient="records")]
    recs += [{**ids, "control": k, "defense": "none", "fooling_rate": c["uap_fooling_rate"],
              "fooling_rate_lo": c["uap_fooling_rate_lo"]} for k, c in summaries.items()]
    record("05_uap_finetuning_and_adversarial_training", recs, tmp_path)
    claims = {c["id"]: c for c in rep.claims_table(rep.load_results(tmp_path))}
    hirano = claims["hirano-finetune"]
    assert nb.verdict["hirano-finetune"] == hirano["verdict"], (nb.measured["hirano-finetune"], hirano["reason"])
    assert nb.measured["hirano-finetune"] == hirano["reason"]
    if strongest is not None:
        assert hirano["verdict"] == "not reproduced" and "round 0's" in hirano["our_conditions"]


def _fake_rounds_table():
    import pandas as pd
    return pd.DataFrame({"round": [0, 1, 2], "n": [300] * 3, "fresh_uap_fooling_rate": [0.5, 0.2, 0.3],
                         "fresh_uap_fooling_rate_lo": [0.45, 0.16, 0.25], "fresh_uap_fooling_rate_hi": [0.55, 0.25, 0.35],
                         "old_uap_fooling_rate": [float("nan"), 0.1, 0.05], "random_fooling_rate": [0.02, 0.03, 0.01],
                         "cosine_to_previous": [float("nan"), 0.4, -0.1], "clean_accuracy": [0.8, 0.78, 0.79],
                         "balanced_accuracy": [0.7, 0.69, 0.71]})


def test_old_uap_before_after_pairs_each_round_with_the_fresh_uap_one_row_up():
    assert course.old_uap_before_after(_fake_rounds_table()) == [(0.5, 0.1), (0.2, 0.05)]


def test_rounds_narrative_reads_the_rounds_table_and_every_control():
    text = course.rounds_narrative(_fake_rounds_table(), {"plain": {"uap_fooling_rate": 0.31}, "ft": {"uap_fooling_rate": 0.4}})
    assert text.startswith("Before any fine-tuning a fresh UAP changes **50.0%** of the 300 test predictions (random noise: 2.0%)")
    assert "After round 1 the UAP it trained on changes only **10.0%**, and a fresh one built against the fine-tuned model 20.0%" in text
    assert "(round 2) the fresh UAP changes **30.0%** [25.0%, 35.0%], 0.60× the undefended rate" in text
    assert "The lowest fresh rate of any round is 20.0% (round 1)" in text
    tied = _fake_rounds_table()
    tied.loc[tied.index[-1], "fresh_uap_fooling_rate"] = 0.2
    assert "(rounds 1 and 2)" in course.rounds_narrative(tied, {})
    last_lowest = _fake_rounds_table()
    last_lowest.loc[last_lowest.index[-1], "fresh_uap_fooling_rate"] = 0.1
    assert "lowest fresh rate" not in course.rounds_narrative(last_lowest, {})
    assert "the controls leave a fresh UAP 31.0% (plain), 40.0% (ft):" in text
    assert "still changes more predictions than the fresh judge" not in text      # the judge beat the old UAP every round
    strong_old = _fake_rounds_table()
    strong_old.loc[strong_old.index[-1], "old_uap_fooling_rate"] = 0.4             # round 2: the old UAP 40 % > the judge's 30 %
    assert ("In round 2 a UAP the model was fine-tuned against still changes more predictions than the fresh judge "
            "(40.0% vs 30.0%)") in course.rounds_narrative(strong_old, {})
    # with the strongest-UAP column (course.rounds_table), the narrative names the UAP that set it and its rate
    strongest = _fake_rounds_table().assign(strongest_uap=["fresh", "fresh", "round 0"],
                                            strongest_uap_fooling_rate=[0.5, 0.2, 0.45],
                                            strongest_uap_fooling_rate_lo=[0.45, 0.16, 0.40],
                                            strongest_uap_fooling_rate_hi=[0.55, 0.25, 0.51])
    text = course.rounds_narrative(strongest, {"plain": {"uap_fooling_rate": 0.6, "uap_fooling_rate_lo": 0.55}})
    assert "(round 0's 45.0% vs 30.0%)" in text and "after the last round **45.0%** [40.0%, 51.0%]" in text
    assert "the last round's interval lies below every control's" in text        # 51 % < 55 %: read on the strongest


def test_the_hirano_verdict_reads_the_strongest_uap_of_each_round():
    """Issue 21, item 4: a fresh judge weaker than a UAP the model was fine-tuned against cannot make the defense
    look better: the rule reads the strongest UAP of the round where the rounds table has it."""
    from medadv_lib.course.rules import judge_column, verdict_hirano
    r0 = {"round": 0, "fresh_uap_fooling_rate": 0.5, "fresh_uap_fooling_rate_lo": 0.45, "fresh_uap_fooling_rate_hi": 0.55,
          "strongest_uap_fooling_rate": 0.5, "strongest_uap_fooling_rate_lo": 0.45, "strongest_uap_fooling_rate_hi": 0.55,
          "clean_accuracy": 0.8}
    rk = {"round": 3, "fresh_uap_fooling_rate": 0.2, "fresh_uap_fooling_rate_lo": 0.16, "fresh_uap_fooling_rate_hi": 0.25,
          "clean_accuracy": 0.8}
    assert verdict_hirano(r0, rk)[0] == "reproduced"                    # records without the column: the fresh judge
    strong = {**rk, "strongest_uap_fooling_rate": 0.49, "strongest_uap_fooling_rate_lo": 0.44,
              "strongest_uap_fooling_rate_hi": 0.54}
    kind, why = verdict_hirano(r0, strong)
    assert judge_column(strong) == "strongest_uap_fooling_rate" and kind == "not reproduced"
    assert why.startswith("strongest-UAP fooling rate 50.0 % (round 0) → 49.0 % (round 3)")


def test_adversarial_recap_lists_rounds_models_checks_and_goals():
    import pandas as pd
    names = ["baseline", "uap-finetune"]
    matrix = pd.DataFrame({"clean_accuracy": [0.8, 0.78], "uap_fooling_rate": [0.5, 0.3], "uap_to_covid_success": [0.9, 0.6],
                           "pgd2_defense_rate": [0.1, 0.2], "worst2_defense_rate": [0.1, 0.2]}, index=names)
    checks = pd.DataFrame({"model": names, "verdict": ["no masking detected", "gradient masking suspected"]})
    verdicts = pd.DataFrame({"kind": ["goal", "claim"], "statement": ["fewer images fooled", "Hirano"],
                             "verdict": ["met", "supported"]})
    text = course.adversarial_recap(_fake_rounds_table(), {"plain": {"uap_fooling_rate": 0.31}}, matrix, checks, verdicts, True)
    lines = text.split("\n")
    assert len(lines) == 7 and all(line.startswith("- ") for line in lines)
    assert lines[0].startswith("- 2 rounds of UAP fine-tuning: the fresh UAP's fooling rate went 50.0% → 20.0% → 30.0%")
    assert "fooled 50.0% → 10.0%, 20.0% → 5.0% before → after the round." in lines[0]
    assert "(cosine similarity -0.10 to +0.40)" in lines[1] and lines[1].endswith("rates of 31.0%.")
    assert lines[2] == "- Clean accuracy: baseline 80.0%, uap-finetune 78.0%."
    assert lines[5] == "- Masking checks: 1 of 2 models passed every masking check that ran (FAST settings: weak evidence)."
    assert lines[6] == "- Goals: fewer images fooled: met."
    assert "weak evidence" not in course.adversarial_recap(_fake_rounds_table(), {}, matrix, checks, verdicts, False)


def test_control_records_carry_the_identity_and_the_rates(small_checkpoint):
    from medadv_lib.course.results import RECORD_KEYS, control_records, file_fingerprint
    c = {"uap_fooling_rate": 0.4, "uap_fooling_rate_lo": 0.35, "uap_fooling_rate_hi": 0.45, "clean_accuracy": 0.8,
         "n": 348, "model": "resnet18", "checkpoint": small_checkpoint, "data_fingerprint": "d4t4", "fine_tune_epochs": 3}
    (r,) = control_records({"plain fine-tuning, 3 epochs": c}, "fp32")
    assert r["control"] == "plain fine-tuning, 3 epochs" and r["round"] is None and r["defense"] == "none"
    assert (r["fooling_rate"], r["fooling_rate_lo"], r["fooling_rate_hi"]) == (0.4, 0.35, 0.45)
    assert r["checkpoint_fingerprint"] == file_fingerprint(small_checkpoint) and r["norm"] == "inf"
    assert not set(RECORD_KEYS) - set(r) - {"notebook", "seconds"}


@pytest.mark.parametrize("rates, words", [
    ((0.30, 0.12, 0.10, 0.09), "kept falling"),
    ((0.47, 0.28, 0.21, 0.21), "fell, and then held (no round rose by more than 2 points)"),
    ((0.30, 0.12, 0.23, 0.10), "rose in between but ended at its lowest"),
    ((0.30, 0.05, 0.10, 0.20), "fell after the first round and climbed again later")])
def test_fresh_rate_trend_says_what_the_rates_do(rates, words):
    assert course.fresh_rate_trend(rates) == words


def test_rounds_narrative_says_whether_the_controls_explain_the_fall():
    import pandas as pd
    rt = pd.DataFrame({"round": [0, 1], "n": [348, 348], "random_fooling_rate": [0.05, 0.05],
                       "old_uap_fooling_rate": [None, 0.1], "fresh_uap_fooling_rate": [0.30, 0.10],
                       "fresh_uap_fooling_rate_lo": [0.25, 0.07], "fresh_uap_fooling_rate_hi": [0.35, 0.13],
                       "clean_accuracy": [0.83, 0.80], "balanced_accuracy": [0.80, 0.78]})
    far = {"plain": {"uap_fooling_rate": 0.35, "uap_fooling_rate_lo": 0.30, "uap_fooling_rate_hi": 0.40}}
    near = {"plain": {"uap_fooling_rate": 0.12, "uap_fooling_rate_lo": 0.09, "uap_fooling_rate_hi": 0.16}}
    assert "does not explain the fall" in course.rounds_narrative(rt, far)
    assert "cannot separate the two" in course.rounds_narrative(rt, near)
