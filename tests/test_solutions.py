"""The worked solutions in docs/solutions/ run, on small inputs, and answer their exercise's question.

Each exercise of notebooks 00–06 has a function in ``docs/solutions/sNN_*.py``; these tests call every one of
them with tiny models (untrained or one short epoch at 32 px), a few real X-rays and light attack settings, so
the suite stays at unit-test speed and no course model is trained.

Beyond running, each test checks the facts its solution's answer states that hold whatever the training:
rates are rates (in [0, 1]), the tables have the stated rows and columns, and the orderings the answer
derives from the construction (restarts only lower robust accuracy, the L2 ball holds the L∞ ball, a smaller
DeepFool budget only defends more, attention starts as the identity, ...).  Numbers that depend on
training (the measured values quoted in the answers) are not asserted."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from medadv_lib import LABELS
from medadv_lib.data import load_metadata, load_split
from medadv_lib.models import build_model
from medadv_lib.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "docs" / "solutions"
SIZE = 32
STATS = {"mean_norm_2": 16.0, "mean_norm_inf": 0.9}                      # mean image norms at 32 px, near the real ones
SGD = {"method": "sgd", "epochs": 1, "batch_size": 8}


def _load(stem: str):
    spec = importlib.util.spec_from_file_location(stem, SOLUTIONS / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


S = {nn: _load(p.stem) for p in sorted(SOLUTIONS.glob("s[0-9][0-9]_*.py")) for nn in [p.stem[1:3]]}


def _rates(obj) -> bool:
    """Every value of a Series/DataFrame is a rate in [0, 1] (NaN allowed: an empty group)."""
    import numpy as np
    v = np.asarray(obj, dtype=float).ravel()
    v = v[~np.isnan(v)]
    return bool(v.size) and bool(((v >= 0) & (v <= 1)).all())


def _tiny(seed: int = 0, name: str = "resnet18"):
    """An untrained course architecture (fp32): the solutions' mechanics, not their numbers, are under test."""
    torch.manual_seed(seed)
    return build_model(name).set_precision("fp32").eval()


@pytest.fixture(scope="module")
def data():
    """24 training and 24 test X-rays at 32 px (class-stratified) and 12 validation ones."""
    return {s: load_split(s, SIZE, limit=n, seed=0) for s, n in (("train", 24), ("val", 12), ("test", 24))}


@pytest.fixture(scope="module")
def config():
    return TrainConfig(model="resnet18", image_size=SIZE, epochs=1, batch_size=8, seed=0, augment=False)


def _exercises(nb: Path) -> int:
    """The number of numbered exercises in the notebook's exercises section (the last cell that has one)."""
    import nbformat
    cells = [c.source for c in nbformat.read(nb, 4).cells if c.cell_type == "markdown"
             and re.search(r"^## .*exercises", c.source, flags=re.M | re.I)]
    part = re.split(r"^## .*exercises.*$", cells[-1], flags=re.M | re.I)[-1]
    return len(re.findall(r"^\d+\. ", part, flags=re.M))


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("0[0-6]_*.ipynb")), ids=lambda p: p.stem[:2])
def test_every_exercise_has_a_solution_function(nb):
    mod = S[nb.stem[:2]]
    n = _exercises(nb)
    assert n >= 3, f"{nb.name}: no numbered exercises found"
    missing = [k for k in range(1, n + 1) if not callable(getattr(mod, f"exercise_{k}", None))]
    assert not missing, f"{mod.__name__} lacks exercise_{missing}"
    for k in range(1, n + 1):
        assert len(getattr(mod, f"exercise_{k}").__doc__ or "") > 120, f"{mod.__name__}.exercise_{k} needs its answer"
    assert f"docs/solutions/{mod.__name__}.py" in (ROOT / "docs" / "instructor.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------------- 00
def test_00_shortcut_by_resolution():
    t = S["00"].exercise_1(sizes=(16,))
    assert list(t.columns) == [16] and {"full", "border", "center"} <= set(t.index)
    assert _rates(t)
    assert t.loc["border", 16] > 1 / 3 + 0.15          # the answer: far above chance (1/3) already at 16 px


def test_00_views_of_covid_only_and_a_reseeded_split():
    meta = load_metadata()
    views = S["00"].exercise_2(meta)
    assert len(views) >= 1 and (views["COVID-19 share"] >= 0.9).all()
    assert {"frontal (visual check)", "AP Supine"} <= set(views.index)       # the two views the answer names
    assert views.images.is_monotonic_decreasing and _rates(views["COVID-19 share"])
    new, most = S["00"].exercise_3(meta, seed=7)
    assert most == 1 and set(new.split) == {"train", "val", "test"} and len(new) == len(meta)
    assert abs((new.split == "test").mean() - 0.15) < 0.03 and not (new.split == meta.split).all()


# ----------------------------------------------------------------------------------------------------- 01
def test_01_crop_top_probe():
    t = S["01"].exercise_1(_tiny(0), _tiny(1), SIZE, limit=18)
    assert list(t.index) == ["whole image", "crop_top=True"] and list(t.columns) == ["full", "border only", "center only"]
    assert _rates(t)                                    # balanced accuracies


def test_01_more_epochs(config, data):
    t = S["01"].exercise_2(config, data["train"], data["val"], data["test"])
    assert list(t.index) == [1, 2] and t["best val accuracy"].between(0, 1).all()
    assert list(t.columns) == ["test accuracy", "test balanced accuracy", "best val accuracy"] and _rates(t)


def test_01_cli_sensitivity(tmp_path):
    s = S["01"].exercise_3(("--model", "resnet18", "--image-size", "32", "--epochs", "1", "--quiet"), out=tmp_path)
    assert list(s.index) == list(LABELS) and s.between(0, 1).all()


def test_01_old_batchnorm_momentum_is_used_and_restored(config, data):
    import medadv_lib.models.architectures as A
    out = S["01"].exercise_4(config.__class__(**{**config.__dict__, "epochs": 2}), data["train"], data["val"])
    assert out["bn_momentum"] == [0.01] and out["epochs_checked"] == 1 and A.BN_MOMENTUM == 0.1
    assert len(out["collapsed_epochs"]) <= out["epochs_checked"] and out["collapsed"] == bool(out["collapsed_epochs"])


# ----------------------------------------------------------------------------------------------------- 02
def test_02_uap_exercises(data):
    m, m2 = _tiny(0), _tiny(1)
    xb, (xt, yt) = data["train"][0][:16], data["test"]
    t, reached = S["02"].exercise_1(m, xb, xt, yt, STATS, zetas=(0.02, 0.2), goal=2.0, **SGD)
    assert list(t.index) == [0.02, 0.2] and reached is None and (t.fooling_rate <= 1).all()
    assert _rates(t) and (t.best_ceiling == t.best_ceiling.iloc[0]).all()   # one ceiling: a property of the model
    res = next(iter(S["02"].exercise_1.__globals__["precompute_uaps"](m, xb, zetas=(0.02,), norms=("inf",), stats=STATS,
                                                                        **SGD).values()))
    s = S["02"].exercise_2(m, xt, res, kinds=("shuffle", "uniform", "sign"))
    assert list(s.index) == ["UAP", "random (shuffle)", "random (uniform)", "random (sign)"] and _rates(s)
    t3 = S["02"].exercise_3(m, xt, STATS, SIZE, train=(8, 16), holdout=8, batch_size=8, eval_every=1, epochs=2)
    assert t3.index.tolist() == [8, 16] and list(t3.columns) == ["fooling_rate (held out)", "fooling_rate (test)",
                                                                  "steps", "converged"]
    assert _rates(t3[["fooling_rate (held out)", "fooling_rate (test)"]]) and (t3.steps >= 1).all()
    t4 = S["02"].exercise_4(m, xb, xt, yt, STATS, zetas=(0.02,), **SGD)
    assert t4.index.get_level_values("target").tolist() == list(LABELS) and _rates(t4)
    assert t4.target_rate_clean.sum() == pytest.approx(1)      # every clean prediction lies in exactly one target class
    t5 = S["02"].exercise_5(m, m2, xb, xt, STATS, **SGD)
    assert t5.shape == (3, 2) and _rates(t5)             # two sources and the random control × two targets
    t6 = S["02"].exercise_6(m, xb, xt, yt, STATS, max_iter=1, **SGD)
    assert len(t6) == 2 and "v_norm_inf_share" in t6.columns
    assert (t6.v_norm_inf_share <= 1 + 1e-6).all()       # a share of the budget: no UAP leaves its ball


# ----------------------------------------------------------------------------------------------------- 03
def test_03_attack_exercises(data):
    m = _tiny(0)
    x, y = data["test"]
    x, y = x[:8], y[:8]
    t1 = S["03"].exercise_1(m, x, y, [1 / 255, 4 / 255])
    assert list(t1.columns) == ["FGSM", "PGD-1"] and len(t1) == 2 and _rates(t1)
    s2 = S["03"].exercise_2(m, x, y, 1 / 255, restarts=2, steps=2)
    assert s2.iloc[1] <= s2.iloc[0] and _rates(s2)      # restarts can only lower robust accuracy
    t3 = S["03"].exercise_3(m, x, y, overshoots=(0.0, 0.1), steps=5)
    assert list(t3.index) == [0.0, 0.1] and list(t3.columns) == ["success (clean-correct)", "median ρ_adv (%)"]
    assert _rates(t3["success (clean-correct)"])
    rho = t3["median ρ_adv (%)"].dropna()
    assert ((rho > 0) & (rho < 100)).all()             # in percent: a perturbation smaller than the image
    s4 = S["03"].exercise_4(m, x, y, eps_255=2, steps=2)
    assert s4["contains"]                              # the L2 ball holds the L∞ attack's δ ...
    assert s4["robust_accuracy L2"] <= s4["robust_accuracy L∞"] + 1 / len(y)   # ... so L2 robust accuracy ≤ L∞ (one image of slack: PGD is not exact)
    t5 = S["03"].exercise_5(m, x, y, {"8 images": data["train"][0][:8]}, STATS, epochs=(1,), batch_size=8,
                            deepfool_steps=5)
    assert t5.index.tolist() == [("8 images", 1)] and t5["UAP L2 budget"].iloc[0] == pytest.approx(0.02 * STATS["mean_norm_2"])
    r5 = t5.iloc[0]
    assert 0 <= r5["UAP fooling"] <= 1
    if r5["per-image L2 at that share"] > 0:           # the ratio is the UAP's budget over that per-image norm
        assert r5["UAP / per-image"] == pytest.approx(r5["UAP L2 budget"] / r5["per-image L2 at that share"])


# ----------------------------------------------------------------------------------------------------- 04
def test_04_defense_exercises(config, data):
    m = _tiny(0)
    x, y = data["test"]
    x, y = x[:8], y[:8]
    t1 = S["04"].exercise_1(config, data["train"], data["val"], x, y, steps=2)
    assert list(t1.index) == ["baseline", "cbam"] and _rates(t1)
    from medadv_lib.defenses.attention import add_attention
    cbam = add_attention(_tiny(0), "cbam").eval()
    t2 = S["04"].exercise_2({"a": cbam}, x, y)
    assert {"border", "center", "mean |gate − 1|"} <= set(t2.columns)
    assert t2.loc["a", "mean |gate − 1|"] < 1e-6        # the answer's premise: untrained gates start at 1
    s = S["04"].light_settings()
    checks = S["04"].exercise_3(m, x, y, s)
    assert len(checks) == 1 and "verdict" in checks.columns
    # every check ran; on 8 images of an untrained model too few survive for one to fire (they fire on a trained
    # model in tests/test_defenses.py::test_a_saturated_softmax_fires_the_steps_check_and_apgd_dlr_sets_the_worst_case)
    assert checks.steps_restarts.iloc[0] is not None and checks.large_eps.iloc[0] is not None, checks.evidence.iloc[0]
    t4 = S["04"].exercise_4(m, SIZE, x, y)
    assert t4.loc["cbam+channels0.3", "params"] < t4.loc["baseline", "params"]
    share = t4.loc["cbam+channels0.3", "params"] / t4.loc["baseline", "params"]
    assert 0.4 < share < 0.6                             # 30 % of the channels off: about 0.7² ≈ half; CBAM adds few
    assert _rates(t4[["accuracy", "PGD defense rate @ 1/255"]])
    s5 = S["04"].exercise_5(m, x, y, zetas=(0.001, 0.05), steps=5)
    assert s5.loc[0.001] >= s5.loc[0.05]               # a smaller budget can only defend more
    assert _rates(s5)
    assert "verdict" in S["04"].exercise_6(m, x, y, s).columns


# ----------------------------------------------------------------------------------------------------- 05
def test_05_adversarial_training_exercises(config, data):
    m = _tiny(0)
    xb, (xt, yt) = data["train"][0][:16], data["test"]
    t1 = S["05"].exercise_1(m, config, data["train"], data["val"], xb, xt, STATS, rounds=1, **SGD)
    assert t1.index.tolist() == [0, 1] and t1.loc[1].notna().all() and _rates(t1)
    assert list(t1.columns) == ["old UAP", "fresh UAP"] and t1.loc[0, "old UAP"] != t1.loc[0, "old UAP"]   # round 0: no old UAP
    s2 = S["05"].exercise_2(m, xt, STATS, SIZE, train=(8, 16), patience=(1, 3), holdout=8, batch_size=8, eval_every=1,
                            epochs=2)
    assert s2.index.tolist() == [(8, 1), (16, 3)] and list(s2.columns) == ["fooling_rate", "steps", "converged"]
    assert _rates(s2[["fooling_rate"]]) and (s2.steps >= 1).all()
    v = torch.zeros(1, 1, SIZE, SIZE).uniform_(-0.02, 0.02)
    t3 = S["05"].exercise_3(m, config, data["train"], data["val"], v, xt, yt, shares=(0.5, 1.0))
    assert t3.index.tolist() == [0.5, 1.0] and list(t3.columns) == ["clean accuracy", "UAP fooling rate"] and _rates(t3)
    t4 = S["05"].exercise_4(m, config, data["train"], data["val"], xt[:8], yt[:8], at_eps=(2 / 255,), test_eps=(1 / 255,))
    assert t4.shape == (1, 2) and t4.index.tolist() == ["AT ε = 2/255"] and _rates(t4)
    import pandas as pd
    matrix = pd.DataFrame({"clean_accuracy": [0.80, 0.79, 0.60], "uap_fooling_rate": [0.30, 0.10, 0.01],
                           "pgd2_defense_rate": [0.20, 0.25, 0.90]}, index=["baseline", "uap-finetune", "pgd-at"])
    pick = S["05"].exercise_5(matrix)
    assert pick.tolist() == ["uap-finetune", "uap-finetune"]    # pgd-at loses 20 points of accuracy: not eligible


# ----------------------------------------------------------------------------------------------------- 06
def test_06_transfer_exercises(data):
    from medadv_lib.attacks.uap.cache import precompute_uaps
    a, b, c = _tiny(0), _tiny(1), _tiny(2)
    xb, (xt, yt) = data["train"][0][:16], data["test"]
    uaps = {n: precompute_uaps(m, xb, zetas=(0.02,), norms=("inf",), stats=STATS, **SGD)[(0.02, "inf", None)]
            for n, m in (("a", a), ("b", b))}
    d = S["06"].exercise_1({"a": a, "b": b}, uaps, xt, yt)
    assert d.shape == (3, 2) and ((d.abs() <= 1) | d.isna()).all().all()    # differences of two rates
    s2 = S["06"].exercise_2(c, {"a": (a, SGD), "b (2 epochs)": (b, {**SGD, "epochs": 2})}, xb, xt, STATS)
    assert s2.index.tolist() == ["a", "b (2 epochs)", "random control"] and _rates(s2)
    s3 = S["06"].exercise_3(uaps["a"], uaps["b"], c, xt)
    assert s3.index.tolist() == ["UAP 1", "UAP 2", "ensemble", "random"] and _rates(s3)
    t4 = S["06"].exercise_4({}, {})
    assert len(t4) == 8 and not t4.changed.any() and (t4.before == "not run").all()
    t5 = S["06"].exercise_5(models=("covidnet_small",))
    assert t5.loc["covidnet_small", "image size"] == 224 and t5.loc["covidnet_small", "parameters (M)"] > 0
    fast = S["06"].exercise_5.__globals__["settings"](True)
    assert fast.image_size * 2 == 224                    # the answer: 4× the pixels per image (2× per side)
