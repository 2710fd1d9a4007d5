"""Defenses: attention modules (CBAM, SE), pruning (unstructured, structured), checkpoints that
rebuild them with weights_only=True, and the defended-model cache."""
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
from medadv_lib.metrics.defense import RobustnessSettings, hygiene_checks, robustness_table, wilson_interval  # noqa: E402

CHECK = RobustnessSettings(eps=(8 / 255,), steps=5, strong_steps=10, strong_restarts=2, deepfool_steps=20,
                           square_queries=100, square_eps=8 / 255, large_eps=64 / 255)


class Quantised(nn.Module):
    """A deliberately gradient-masked model: a non-differentiable quantisation in front of a real
    classifier (the gradient of round() is zero almost everywhere; Athalye et al. 2018's
    "shattered gradients")."""

    def __init__(self, base):
        super().__init__()
        self.base, self.num_classes = base, base.num_classes

    def forward(self, x):
        return self.base(torch.round(x * 8) / 8)


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))    # nan for an empty sample
    assert wilson_interval(0, 20)[0] == 0 and wilson_interval(20, 20)[1] == 1


def test_the_hygiene_checks_flag_a_masked_model_and_pass_an_honest_one(small_model, real_batch):
    x, y = real_batch
    masked = Quantised(small_model).eval()
    src = pgd(small_model, x, y, eps=8 / 255, steps=5, seed=0)
    transfer = {"source": "honest", "eps": 8 / 255, "x_adv": src.x_adv}
    honest_t = robustness_table(small_model, x, y, "honest", CHECK, transfer=transfer)
    masked_t = robustness_table(masked, x, y, "masked", CHECK, transfer=transfer)
    assert set(honest_t.attack) == {"pgd", "pgd-strong", "pgd-large", "deepfool", "transfer", "square"}
    assert (honest_t.robust_accuracy_lo <= honest_t.robust_accuracy).all()
    checks = hygiene_checks(pd.concat([honest_t, masked_t])).set_index("model")
    assert checks.loc["honest", "verdict"] == "no masking detected", checks.loc["honest"].to_dict()
    assert checks.loc["masked", "verdict"].startswith("gradient masking suspected")
    assert {"gradient_free", "transfer"} <= set(checks.loc["masked", "failed"])
    # the masked model "looks" robust to PGD: the very trap the checks exist for
    pgd_acc = masked_t.set_index("attack").loc["pgd", "robust_accuracy"]
    assert pgd_acc > honest_t.set_index("attack").loc["pgd", "robust_accuracy"]


# ---------------------------------------------------------------------------------------------
# The pipeline (course.defend_checkpoint via `medadv defend`) and `medadv evaluate`
# ---------------------------------------------------------------------------------------------
import json  # noqa: E402

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
    monkeypatch.setattr(course.UAP_FAST, "train", 32)
    monkeypatch.setattr(course.UAP_FAST, "epochs", 1)
    args = ["evaluate", "--checkpoint", small_checkpoint, "--transfer-from", small_checkpoint, "--mode", "fast",
            "--out", str(tmp_path), "--device", "cpu", "--precision", "fp32", "--json"]
    assert main(args) == 0
    res = _last_json(capsys)
    attacks = {r["attack"] for r in res["rows"]}
    assert attacks == {"pgd", "pgd-strong", "pgd-large", "deepfool", "uap", "transfer", "square"}
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
                        lambda fast: RobustnessSettings(strong_eps=(), square_queries=0, deepfool_steps=0, large_eps=None))
    cols = ["eps", "n", "robust_accuracy", "defense_rate", "defense_rate_lo", "defense_rate_hi"]
    computed, _ = P.sparsity_sweep("resnet18", [0.0], True, output_dir=tmp_path)
    P.course_robustness(small_model, info, "baseline-ft", True, output_dir=tmp_path)
    assert P._PGD_ROWS
    calls = []
    monkeypatch.setattr("medadv_lib.metrics.defense.robustness_table", lambda *a, **k: calls.append(1))
    reused, _ = P.sparsity_sweep("resnet18", [0.0], True, output_dir=tmp_path)
    assert not calls
    pd.testing.assert_frame_equal(reused[cols].reset_index(drop=True), computed[cols].reset_index(drop=True))
    assert list(reused.model) == ["prune0"]


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
    assert labels == ["clean accuracy", "PGD defense rate, ε = 2/255"]
    plt.close(fig)
