"""Defenses: attention modules (CBAM, SE), pruning (unstructured, structured), checkpoints that
rebuild them with weights_only=True, and the defended-model cache."""
import dataclasses
import json
import math

import matplotlib
import pandas as pd
import pytest
import torch

from medadv_lib.defenses import (CBAM, add_attention, apply_defense, attention_maps, defense_name, finalize_defense,
                                 model_cost, normalize_defense, prunable_layers, prune_structured, prune_unstructured,
                                 sparsity)
from medadv_lib.models import build_model, load_checkpoint, save_checkpoint

matplotlib.use("Agg")
SIZE = 48


def _model(arch="resnet18"):
    torch.manual_seed(0)
    return build_model(arch).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["cbam", "se"])
def test_attention_starts_as_the_identity_and_has_the_right_shapes(kind, x):
    m = _model()
    before = m(x)
    add_attention(m, kind)
    blocks = [b for b in m.net.modules() if hasattr(b, "attention")]
    assert len(blocks) == 8                                  # every BasicBlock of a ResNet-18
    assert torch.allclose(m(x), before, atol=1e-6)           # gates start at exactly 1
    feat = torch.rand(2, 64, 12, 12)
    assert blocks[0].attention(feat).shape == feat.shape
    if kind == "cbam":
        assert isinstance(blocks[0].attention, CBAM)


def test_attention_is_refused_where_there_is_no_residual_block():
    with pytest.raises(ValueError, match="no ResNet residual blocks"):
        add_attention(_model("mobilenet_v3_small"), "cbam")
    with pytest.raises(ValueError, match="unknown attention"):
        add_attention(_model(), "transformer")


def test_attention_maps_are_read_out_at_image_size(x):
    m = add_attention(_model(), "cbam")
    maps = attention_maps(m, x)
    assert maps["mean"].shape == (4, 1, SIZE, SIZE)
    assert torch.allclose(maps["mean"], torch.ones_like(maps["mean"]))   # untrained gates: 1 everywhere
    with pytest.raises(ValueError, match="no CBAM"):
        attention_maps(add_attention(_model(), "se"), x)


@pytest.mark.parametrize("amount", [0.3, 0.7])
def test_unstructured_pruning_reaches_the_exact_sparsity_and_survives_a_round_trip(amount, x, tmp_path):
    m = prune_unstructured(_model().set_precision("fp32"), amount)      # channels_last weights, as in training
    assert sparsity(m) == pytest.approx(amount, abs=1e-4)
    head = m.net.fc.weight
    assert (head != 0).all()                                 # the head is not pruned
    finalize_defense(m)
    assert not any(k.endswith("_orig") or k.endswith("_mask") for k in m.state_dict())
    save_checkpoint(m, tmp_path / "p.pt")
    loaded, _ = load_checkpoint(tmp_path / "p.pt", precision="fp32")
    assert sparsity(loaded) == pytest.approx(amount, abs=1e-4)
    assert torch.allclose(loaded(x), m(x), atol=1e-5)


def test_structured_pruning_removes_channels_and_reloads_to_the_same_outputs(x, tmp_path):
    m = _model().set_precision("fp32")                  # channels_last weights, as in training
    cost0 = model_cost(m, SIZE, batch_size=2, repeats=1)
    prune_structured(m, 0.5, SIZE)
    cost1 = model_cost(m, SIZE, batch_size=2, repeats=1)
    assert cost1["params"] < 0.4 * cost0["params"] and cost1["flops"] < 0.4 * cost0["flops"]
    assert m(x).shape == (4, 3)
    save_checkpoint(m, tmp_path / "s.pt")
    loaded, _ = load_checkpoint(tmp_path / "s.pt", precision="fp32")      # weights_only=True inside
    assert torch.allclose(loaded(x), m(x), atol=1e-5)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in m.parameters())


def test_pruning_then_attention_rebuilds_from_the_spec(x, tmp_path):
    m = apply_defense(_model(), {"attention": "cbam", "prune": 0.25, "structured": True}, SIZE)
    assert [d["name"] for d in m.modifications] == ["slim", "attention"]
    assert all(".attention." not in f".{n}." for n, _ in prunable_layers(m))
    save_checkpoint(m, tmp_path / "b.pt")
    loaded, _ = load_checkpoint(tmp_path / "b.pt", precision="fp32")
    assert torch.allclose(loaded(x), m(x), atol=1e-5)


def test_defense_descriptions_are_validated_and_named():
    assert defense_name(None) == "baseline-ft"
    assert defense_name({"attention": "cbam", "prune": 0.5}) == "cbam+prune0.5"
    assert defense_name({"prune": 0.3, "structured": True}) == "channels0.3"
    with pytest.raises(ValueError, match="prune must be"):
        normalize_defense({"prune": 1.5})
    with pytest.raises(ValueError, match="unknown defense keys"):
        normalize_defense({"dropout": 0.1})


# ---------------------------------------------------------------------------------------------
# Robustness evaluation and the gradient-masking checks
# ---------------------------------------------------------------------------------------------
from torch import nn  # noqa: E402

from medadv_lib.attacks import pgd  # noqa: E402
from medadv_lib.metrics.defense import (MASKING_CHECKS, RobustnessSettings, hygiene_checks,  # noqa: E402
                                       robustness_table, wilson_interval)
from medadv_lib.metrics.robustness import bits_outcome  # noqa: E402
from medadv_lib import course  # noqa: E402

CHECK = RobustnessSettings(eps=(8 / 255,), steps=5, strong_steps=10, strong_restarts=2, apgd_steps=5, deepfool_steps=20,
                           l2_steps=5, square_queries=100, large_eps=64 / 255)


class ZeroGrad(nn.Module):
    """A deliberately gradient-masked model: the base classifier's very predictions, with the gradient to the
    input cut (every white-box attack is blind; Athalye et al. 2018's obfuscated gradients in their purest form)."""

    def __init__(self, base):
        super().__init__()
        self.base, self.num_classes = base, base.num_classes

    def forward(self, x):
        return self.base(x.detach() + 0 * x)


class Saturated(nn.Module):
    """Logits scaled by 10⁴: the softmax saturates, so the cross-entropy gradient is exactly zero in fp32 for
    every image not on the decision boundary (PGD with the CE loss is stuck), while the predictions are the
    base model's — APGD-DLR, whose loss ignores the logits' scale, attacks it as the base model."""

    def __init__(self, base):
        super().__init__()
        self.base, self.num_classes = base, base.num_classes

    def forward(self, x):
        return self.base(x) * 1e4


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))    # nan for an empty sample
    assert wilson_interval(0, 20)[0] == 0 and wilson_interval(20, 20)[1] == 1


def test_the_worst_case_is_the_per_image_union_of_the_suite(small_model, real_batch):
    x, y = real_batch
    src = pgd(small_model, x, y, eps=8 / 255, steps=5, seed=0)
    t = robustness_table(small_model, x, y, "m", CHECK, transfer={"source": "m", "eps": 8 / 255, "x_adv": src.x_adv})
    at = t.set_index("attack")
    assert {"pgd", "pgd-strong", "apgd-ce", "apgd-dlr", "square", "transfer", "worst", "deepfool", "pgd-l2",
            "apgd-l2", "worst-l2", "pgd-large"} <= set(t.attack)
    ok = {a: bits_outcome(at.loc[a, "outcome_attacked"]) for a in ("pgd", "square", "transfer", "worst")}
    clean = bits_outcome(at.loc["pgd", "outcome_clean"])
    # correct under the worst case = clean-correct and correct under every attack (the cascade's last row, transfer)
    assert (ok["worst"] == (clean & ok["pgd"] & ok["square"] & ok["transfer"])).all()
    assert at.loc["worst", "robust_accuracy"] <= min(at.loc[a, "robust_accuracy"] for a in ("pgd", "transfer"))
    counts = json.loads(at.loc["worst", "fooled_by"])
    assert sum(counts.values()) == int(clean.sum() - ok["worst"].sum())
    assert at.loc["worst", "set_by"] == max(counts, key=counts.get)
    # each later attack attacks only what the earlier ones left correct
    assert at.loc["apgd-ce", "attacked"] == int(bits_outcome(at.loc["pgd-strong", "outcome_attacked"]).sum())
    # per class: the balanced robust accuracy is the mean of the per-class ones
    w = at.loc["worst"]
    assert w.balanced_robust_accuracy == pytest.approx(sum(w.robust_accuracy_by_class) / len(w.robust_accuracy_by_class))
    assert at.loc["worst-l2", "robust_accuracy"] <= at.loc["deepfool", "robust_accuracy"]


FAST_CHECK = dataclasses.replace(course.robustness_settings(True), eps=(1 / 255, 2 / 255), large_eps=32 / 255)
MASK_CHECK = dataclasses.replace(FAST_CHECK, eps=(2 / 255,), suite_eps=(2 / 255,), deepfool_steps=0)


@pytest.fixture(scope="module")
def masking_tables(small_model, real_batch):
    """The course's FAST suite on an honest model and on two models built to mask gradients."""
    x, y = real_batch
    src = pgd(small_model, x, y, eps=2 / 255, steps=10, seed=0)
    transfer = {"source": "honest", "eps": 2 / 255, "x_adv": src.x_adv}
    return {name: robustness_table(m, x, y, name, MASK_CHECK, transfer=transfer)
            for name, m in (("honest", small_model), ("zero-grad", ZeroGrad(small_model).eval()),
                            ("saturated", Saturated(small_model).eval()))}


def test_no_masking_check_fires_on_an_honest_model(masking_tables):
    checks = hygiene_checks(masking_tables["honest"]).iloc[0]
    assert checks.verdict == "no masking detected", checks.evidence
    assert all(checks[c] is not None and bool(checks[c]) for c in MASKING_CHECKS), checks.to_dict()


def test_the_checks_read_a_table_back_from_its_json_cache(masking_tables, tmp_path):
    """The robustness cache is JSON, where pandas reads the norm "inf" back as a float: the checks must not care."""
    import io
    for t in masking_tables.values():
        back = pd.read_json(io.StringIO(t.to_json(orient="records")), orient="records",
                            dtype={"outcome_clean": str, "outcome_attacked": str})
        assert hygiene_checks(back).drop(columns="model").equals(hygiene_checks(t).drop(columns="model"))


def test_blind_gradients_fire_the_transfer_and_large_eps_checks(masking_tables):
    checks = hygiene_checks(masking_tables["zero-grad"]).iloc[0]
    assert {"transfer", "large_eps"} <= set(checks.failed), checks.evidence
    # the masked model "looks" robust to PGD-10: the very trap the checks exist for ...
    t = {k: v.set_index(["attack", "eps"]) for k, v in masking_tables.items()}
    assert t["zero-grad"].loc[("pgd", 2 / 255), "robust_accuracy"] > t["honest"].loc[("pgd", 2 / 255), "robust_accuracy"]
    # ... and the worst case, which holds the transfer attack, sees through it
    assert t["zero-grad"].loc[("worst", 2 / 255), "robust_accuracy"] < t["zero-grad"].loc[("pgd", 2 / 255), "robust_accuracy"]


def test_the_gradient_free_check_fires_when_square_fools_what_the_white_box_attacks_left():
    """Check (c)'s rule on a table: Square fooling 12 of 20 white-box survivors fires it, 2 of 20 does not.  (At the
    course's budgets FAST's Square is too weak to fire it on a real model: on the test model, Square with 1,000
    queries at 2/255 fooled 2 of 23 clean-correct images where PGD-10 fooled 10 — see the closing note of issue 22.)"""
    def table(square_new):
        bits = "1" * 20 + "0" * 12
        rows = [{"model": "m", "attack": "pgd", "eps": 2 / 255, "norm": "inf", "outcome_attacked": bits,
                 "outcome_clean": "1" * 32},
                {"model": "m", "attack": "square", "eps": 2 / 255, "norm": "inf", "fooled_new": square_new,
                 "outcome_attacked": "1" * (20 - square_new) + "0" * (12 + square_new), "outcome_clean": "1" * 32},
                {"model": "m", "attack": "worst", "eps": 2 / 255, "norm": "inf"}]
        return pd.DataFrame(rows)
    assert "gradient_free" in hygiene_checks(table(12)).iloc[0].failed
    assert hygiene_checks(table(2)).iloc[0].failed == []


def test_a_saturated_softmax_fires_the_steps_check_and_apgd_dlr_sets_the_worst_case(masking_tables):
    t = masking_tables["saturated"]
    checks = hygiene_checks(t).iloc[0]
    assert "steps_restarts" in checks.failed, checks.evidence
    w = t[(t.attack == "worst") & ((t.eps - 2 / 255).abs() < 1e-12)].iloc[0]
    assert w.set_by in ("apgd-dlr", "square", "transfer"), w.fooled_by


def test_a_masked_or_collapsed_arm_never_wins_and_a_masked_arm_is_not_shown():
    from medadv_lib.course.rules import best_arm, verdict_defense
    rows = [{"model": "baseline-ft", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.3, "defense_rate": 0.4},
            {"model": "masked", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.9, "defense_rate": 0.9,
             "masked": True},
            {"model": "gave-up", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.8, "defense_rate": 0.95,
             "collapsed": True},
            {"model": "honest", "attack": "worst", "eps": 1 / 255, "balanced_robust_accuracy": 0.5, "defense_rate": 0.6}]
    arm, why = best_arm(rows)
    assert arm == "honest" and "masked (masking" in why and "gave-up (collapsed" in why
    assert verdict_defense(0.9, 0.8, 0.95, 0.7718, "higher", masked=True)[0] == "not shown (masking)"
    assert verdict_defense(0.9, 0.8, 0.95, 0.7718, "not shown", masked=False)[0] == "not shown"
    assert verdict_defense(0.9, 0.8, 0.95, 0.7718, "higher", masked=False, collapsed=True)[0] == "not shown"
    # the same rule at every sample size: a wide interval that reaches the paper's number is not "partly"
    assert verdict_defense(0.5, 0.2, 0.8, 0.7718, "not shown", masked=False)[0] == "not shown"


def test_the_collapse_guard_flags_an_arm_that_gave_up_a_class(small_model, real_batch):
    """A fabricated arm that predicts COVID-19 for every image keeps its COVID-19 images "robust" and gives up the
    others: the guard flags it and the rule book never names it best."""
    from medadv_lib.course.rules import best_arm
    from medadv_lib.metrics.defense import collapse_flags

    class AlwaysCovid(nn.Module):
        num_classes = 3

        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)) * 0, x.mean((1, 2, 3)) * 0, 10 + x.mean((1, 2, 3))], 1)

    x, y = real_batch
    s = dataclasses.replace(FAST_CHECK, suite_eps=(1 / 255,), apgd_steps=0, square_queries=0, deepfool_steps=0,
                            large_eps=None)
    t = pd.concat([robustness_table(small_model, x, y, "baseline", s), robustness_table(AlwaysCovid(), x, y, "covid", s)])
    flags = collapse_flags(t).set_index("model")
    assert flags.loc["covid", "collapsed"] and not flags.loc["baseline", "collapsed"], flags
    w = t[t.attack == "worst"].merge(flags.reset_index()[["model", "collapsed"]], on="model")
    assert best_arm(w)[0] != "covid"


# ---------------------------------------------------------------------------------------------
# The pipeline (course.defend_checkpoint via `medadv defend`) and `medadv evaluate`
# ---------------------------------------------------------------------------------------------

from medadv_lib import course  # noqa: E402
from medadv_lib.cli import main  # noqa: E402


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_arm_names_round_trip():
    for name in course.DEFENSE_ARMS[1:] + ("cbam+channels0.3",):
        assert defense_name(course.parse_defense(name)) == name
    assert course.parse_defense("baseline") is None
    with pytest.raises(ValueError, match="unknown defense arm"):
        course.parse_defense("dropout0.5")


def test_defend_json_contract_and_cache(small_checkpoint, tmp_path, capsys):
    args = ["defend", "--checkpoint", small_checkpoint, "--attention", "cbam", "--prune", "0.5", "--epochs", "1",
            "--mode", "fast", "--out", str(tmp_path), "--device", "cpu", "--precision", "fp32", "--json"]
    assert main(args) == 0
    res = _last_json(capsys)
    assert res["defense"] == "cbam+prune0.5" and res["attention"] == "cbam" and res["prune"] == 0.5
    assert not res["cached"] and res["epochs"] == 1 and 0 <= res["test_accuracy"] <= 1
    assert res["sparsity"] > 0.45                        # prunable weights (attention excepted) half zero
    loaded, meta = load_checkpoint(res["checkpoint"], precision="fp32")
    assert [m["name"] for m in loaded.modifications] == ["prune_unstructured", "attention"]
    assert meta["config"]["init_from"] == small_checkpoint
    assert main(args) == 0
    again = _last_json(capsys)
    assert again["cached"] and again["checkpoint"] == res["checkpoint"]
    # the other commands take the defended checkpoint like any other
    assert main(["attack", "--checkpoint", res["checkpoint"], "--attack", "pgd", "--eps", "0.0078", "--limit", "12",
                 "--device", "cpu", "--precision", "fp32", "--json"]) == 0
    attacked = _last_json(capsys)
    assert attacked["n"] == 12 and 0 <= attacked["robust_accuracy"] <= attacked["clean_accuracy"]
    assert main(["defend", "--checkpoint", small_checkpoint, "--prune", "1.5", "--out", str(tmp_path)]) == 2
    assert "prune must be in [0, 1)" in capsys.readouterr().err


def test_evaluate_json_contract(small_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(course.config, "robustness_settings", lambda fast: CHECK)
    monkeypatch.setattr(course.DEFENSE_FAST, "eval_images", 24)
    args = ["evaluate", "--checkpoint", small_checkpoint, "--transfer-from", small_checkpoint, "--mode", "fast",
            "--out", str(tmp_path), "--device", "cpu", "--precision", "fp32", "--json"]
    assert main(args) == 0
    res = _last_json(capsys)
    attacks = {r["attack"] for r in res["rows"]}
    # the suite and its worst case, L∞ and L2; FAST runs no per-model UAP (full mode does)
    assert attacks == {"pgd", "pgd-strong", "apgd-ce", "apgd-dlr", "square", "transfer", "worst", "pgd-large", "deepfool",
                       "pgd-l2", "apgd-l2", "worst-l2"}
    row = next(r for r in res["rows"] if r["attack"] == "pgd")
    assert row["n"] == 24 and row["robust_accuracy_lo"] <= row["robust_accuracy"] <= row["robust_accuracy_hi"]
    assert set(res["hygiene"]) == {"steps_restarts", "transfer", "gradient_free", "large_eps"}
    assert res["verdict"] in ("no masking detected",) or res["verdict"].startswith("gradient masking suspected")
    assert list((tmp_path / "robustness").glob("*.json"))      # cached for the next call


def test_the_sparsity_view_marks_the_chosen_point():
    from medadv_lib.widgets.defense_widget import sparsity_view
    sweep = pd.DataFrame({"sparsity": [0.0, 0.3, 0.6], "eps": 2 / 255, "clean_accuracy": [0.8, 0.79, 0.75],
                          "defense_rate": [0.1, 0.12, 0.2], "defense_rate_lo": [0.05, 0.07, 0.12],
                          "defense_rate_hi": [0.2, 0.22, 0.3]})
    row, fig = sparsity_view(sweep, 0.55)
    assert row["sparsity"] == 0.6 and "60% pruned" in fig.axes[0].get_title()


def test_the_sparsity_sweep_reuses_the_pgd_rows_of_a_model_already_evaluated(small_model, small_checkpoint,
                                                                            tmp_path, monkeypatch):
    """A sweep point whose model the ablation already attacked reads its PGD-10 rows instead of
    attacking it again; they equal what the sweep computes itself."""
    import medadv_lib.course.pipelines as P
    from medadv_lib.models import read_checkpoint
    info = {"checkpoint": small_checkpoint, "config": read_checkpoint(small_checkpoint)["meta"]["config"]}
    monkeypatch.setattr(P, "course_defense", lambda *a, **k: (small_model, info))
    monkeypatch.setattr(P, "_PGD_ROWS", {})
    monkeypatch.setattr(P.config, "robustness_settings",
                        lambda fast: RobustnessSettings(eps=(2 / 255,), strong_steps=0, apgd_steps=2, square_queries=0,
                                                        deepfool_steps=0, l2_steps=0, large_eps=None))
    cols = ["eps", "n", "robust_accuracy", "defense_rate", "defense_rate_lo", "defense_rate_hi"]
    computed, _ = P.sparsity_sweep("resnet18", [0.0], True, output_dir=tmp_path)
    P.course_robustness(small_model, info, "baseline-ft", True, output_dir=tmp_path)
    assert P._PGD_ROWS
    calls = []
    monkeypatch.setattr(P, "robustness_table", lambda *a, **k: calls.append(1))   # where the pipelines look it up
    reused, _ = P.sparsity_sweep("resnet18", [0.0], True, output_dir=tmp_path)
    assert not calls
    pd.testing.assert_frame_equal(reused[cols].reset_index(drop=True), computed[cols].reset_index(drop=True))
    assert set(reused.model) == {"prune0"} and list(reused.attack) == ["pgd", "worst"]


def test_sparsity_curve_draws_one_curve_per_budget_even_when_eps_floats_differ_in_the_last_bits():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from medadv_lib.viz.defense import plot_sparsity_curve
    e = 2 / 255
    sweep = pd.DataFrame({"sparsity": [0.0, 0.3, 0.6, 0.9], "clean_accuracy": [0.8, 0.8, 0.78, 0.7],
                          "defense_rate": [0.2, 0.3, 0.4, 0.7], "defense_rate_lo": [0.1, 0.2, 0.3, 0.6],
                          "defense_rate_hi": [0.3, 0.4, 0.5, 0.8], "eps": [e, e * (1 + 1e-12), e, e * (1 + 1e-12)]})
    fig = plot_sparsity_curve(sweep)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["clean accuracy", "PGD-10 defense rate, ε = 2/255"]
    plt.close(fig)


def test_the_best_arm_is_ranked_on_validation_images_and_recorded_for_the_later_notebooks(small_model, small_checkpoint,
                                                                                          real_batch):
    """Issue 22, item 5 (winner's curse): with a selection table (the suite on validation images) the best arm is
    the one ranked first *there*, whatever the test images say, and the records mark it so that notebook 05 and the
    report read the same arm; without the marks the records fall back to the rule book over the test rows."""
    from medadv_lib.course.rules import recorded_best_arm
    x, y = real_batch
    s = dataclasses.replace(FAST_CHECK, suite_eps=(1 / 255,), apgd_steps=0, square_queries=0, deepfool_steps=0,
                            large_eps=None)
    one = robustness_table(small_model, x, y, "baseline", s)
    test = pd.concat([one, one.assign(model="a"), one.assign(model="b")], ignore_index=True)   # a and b tie on test
    assert course.robustness_overview(test).best == "b"                    # a tie goes to the later name
    picks = test.copy()
    worst = (picks.attack == "worst") & ((picks.eps - 1 / 255).abs() < 1e-9)
    picks.loc[worst & (picks.model == "a"), "balanced_robust_accuracy"] = 0.9
    picks.loc[worst & (picks.model == "b"), "balanced_robust_accuracy"] = 0.1
    ov = course.robustness_overview(test, selection=picks)
    assert ov.best == "a" and ov.best_why.startswith(f"chosen on {len(y)} validation images, judged on the test images")
    from medadv_lib.models import read_checkpoint
    info = {"checkpoint": small_checkpoint, "config": read_checkpoint(small_checkpoint)["meta"]["config"]}
    study = {m: (small_model, info) for m in ("baseline", "a", "b")}
    recs = course.defense_records(test, ov.checks, study, "fp32", best=ov.best, best_why=ov.best_why)
    assert recorded_best_arm(recs) == ("a", ov.best_why)
    assert recorded_best_arm([{k: v for k, v in r.items() if k != "best_arm"} for r in recs])[0] == "b"


def test_the_validation_evaluation_attacks_validation_images_and_stays_out_of_the_sweeps_memo(small_model, small_checkpoint,
                                                                                          tmp_path, monkeypatch):
    import medadv_lib.course.pipelines as P
    from medadv_lib.models import read_checkpoint
    info = {"checkpoint": small_checkpoint, "config": read_checkpoint(small_checkpoint)["meta"]["config"]}
    monkeypatch.setattr(P, "_PGD_ROWS", {})
    monkeypatch.setattr(P.config, "robustness_settings",
                        lambda fast: RobustnessSettings(eps=(1 / 255, 2 / 255), suite_eps=(1 / 255,), strong_steps=0, apgd_steps=2,
                                                        square_queries=0, deepfool_steps=0, l2_steps=0, large_eps=None))
    seen = []
    real = P.eval_images
    monkeypatch.setattr(P, "eval_images", lambda *a, **k: seen.append(a[4] if len(a) > 4 else k.get("split")) or real(*a, **k))
    val = P.course_robustness(small_model, info, "baseline", True, output_dir=tmp_path, split="val", eps=(1 / 255,))
    assert seen == ["val"] and not P._PGD_ROWS
    assert set(val.attack) >= {"pgd", "worst"} and set(val.eps.round(6)) == {round(1 / 255, 6)}
    test = P.course_robustness(small_model, info, "baseline", True, output_dir=tmp_path)
    assert seen == ["val", "test"] and P._PGD_ROWS and len(list((tmp_path / "robustness").glob("*.json"))) == 2
    assert set(test.eps.round(6)) >= {round(1 / 255, 6), round(2 / 255, 6)}
