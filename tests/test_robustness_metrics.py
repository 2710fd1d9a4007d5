"""Robustness metrics: exact values on a toy model, consistency with attacks, ε-curves."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from medadv_lib.attacks import deepfool, fgsm, pgd
from medadv_lib.metrics import (attack_success_rate, defense_rate, median_rho_adv, predict, rho_adv,
                                robust_accuracy, robustness_curve)


class MeanModel(nn.Module):
    """Two classes: 1 if the mean pixel is above 0.5, else 0 – predictions known by hand."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))   # gives the model a device

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1) * 10 + self.dummy


def _const(values):
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()


# clean preds [0,0,1,1,1] vs y [0,0,1,1,0] -> clean-correct [T,T,T,T,F]
# adv preds   [1,0,0,1,0] vs y             -> adv-correct   [F,T,F,T,T]
X, X_ADV, Y = _const([0.2, 0.3, 0.7, 0.8, 0.6]), _const([0.6, 0.3, 0.4, 0.9, 0.2]), torch.tensor([0, 0, 1, 1, 0])


@pytest.mark.parametrize("bs", [2, 256])
def test_exact_values_on_a_toy_model(bs):
    m = MeanModel()
    assert torch.equal(predict(m, X_ADV, bs), torch.tensor([1, 0, 0, 1, 0]))
    assert robust_accuracy(m, X_ADV, Y, bs) == pytest.approx(3 / 5)
    assert robust_accuracy(m, X, Y, bs) == pytest.approx(4 / 5)                  # clean accuracy
    assert attack_success_rate(m, X_ADV, Y, batch_size=bs) == pytest.approx(2 / 5)
    assert attack_success_rate(m, X_ADV, Y, x=X, batch_size=bs) == pytest.approx(2 / 4)
    assert defense_rate(m, X, X_ADV, Y, bs) == pytest.approx(2 / 4)
    target = torch.ones(5, dtype=torch.long)    # clean already "1" for images 2,3,4
    assert attack_success_rate(m, X_ADV, target, targeted=True, batch_size=bs) == pytest.approx(2 / 5)
    assert attack_success_rate(m, X_ADV, target, x=X, targeted=True, batch_size=bs) == pytest.approx(1 / 2)


def test_defense_rate_is_nan_without_clean_correct_images():
    m = MeanModel()
    assert math.isnan(defense_rate(m, X[:1], X_ADV[:1], torch.tensor([1])))


def test_predict_restores_the_model_mode():
    m = MeanModel().train()
    predict(m, X)
    assert m.training


def test_rho_adv():
    x = torch.ones(3, 1, 4, 4)
    r = torch.stack([0.1 * x[0], 0.2 * x[0], torch.zeros_like(x[0])])
    assert torch.allclose(rho_adv(r, x), torch.tensor([0.1, 0.2, 0.0]))
    assert rho_adv(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0   # black image


def test_median_rho_adv_overall_and_per_class():
    x = torch.ones(4, 1, 2, 2)
    r = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(-1, 1, 1, 1) * x
    y = torch.tensor([0, 0, 1, 2])
    out = median_rho_adv(r, x, y)
    assert out == pytest.approx({"overall": 0.25, "normal": 0.15, "pneumonia": 0.3, "COVID-19": 0.4})
    masked = median_rho_adv(r, x, y, mask=torch.tensor([True, False, True, False]))
    assert masked["overall"] == pytest.approx(0.2) and masked["normal"] == pytest.approx(0.1)
    assert math.isnan(masked["COVID-19"])
    assert median_rho_adv(r, x) == pytest.approx({"overall": 0.25})


# ---------------------------------------------------------------- on the small trained model
@pytest.fixture(scope="module")
def batch(real_batch):
    x, y = real_batch
    return x[::4].clone(), y[::4].clone()     # 8 images, all three classes


def test_metrics_agree_with_attack_results(small_model, batch):
    x, y = batch
    res = fgsm(small_model, x, y, 1 / 255)
    assert torch.equal(predict(small_model, x, batch_size=3), predict(small_model, x))
    assert robust_accuracy(small_model, res.x_adv, y) == pytest.approx(float((res.pred == y).float().mean()))
    assert attack_success_rate(small_model, res.x_adv, y) == pytest.approx(res.success_rate)
    assert defense_rate(small_model, x, res.x_adv, y) == pytest.approx(
        1 - attack_success_rate(small_model, res.x_adv, y, x=x))


def test_robustness_curve_with_a_budgeted_attack(small_model, batch):
    x, y = batch
    eps_list = [0.0, 1 / 255]
    df = robustness_curve(small_model, x, y, fgsm, eps_list, batch_size=3)
    assert isinstance(df, pd.DataFrame) and list(df["eps"]) == eps_list
    assert {"clean_accuracy", "robust_accuracy", "attack_success_rate", "defense_rate"} <= set(df.columns)
    row0, row1 = df.iloc[0], df.iloc[1]
    assert row0.robust_accuracy == pytest.approx(row0.clean_accuracy) and row0.defense_rate == 1.0
    x_adv = fgsm(small_model, x, y, 1 / 255).x_adv
    assert row1.robust_accuracy == pytest.approx(robust_accuracy(small_model, x_adv, y))
    assert row1.defense_rate == pytest.approx(defense_rate(small_model, x, x_adv, y))
    assert row1.attack_success_rate == pytest.approx(1 - row1.defense_rate)
    by_name = robustness_curve(small_model, x, y, "pgd", [1 / 255], batch_size=8, steps=1, random_start=False)
    assert by_name.iloc[0].robust_accuracy <= row0.clean_accuracy


def test_robustness_curve_runs_deepfool_once_and_thresholds(small_model, batch):
    x, y = batch
    calls = []

    def counted(model, xb, yb, **kw):
        calls.append(len(xb))
        return deepfool(model, xb, yb, **kw)

    counted.minimal_norm = True
    eps_list = [0.0, 0.1, 0.3, 1.0, 100.0]
    df = robustness_curve(small_model, x, y, counted, eps_list, batch_size=8, steps=20)
    assert calls == [8]
    res = deepfool(small_model, x, y, steps=20)
    for e, row in zip(eps_list, df.itertuples()):
        assert row.robust_accuracy == pytest.approx(float((~(res.success & (res.delta_norm <= e))).float().mean()))
    acc = df["robust_accuracy"].tolist()
    assert acc == sorted(acc, reverse=True)                        # more budget, fewer survivors
    assert acc[0] == pytest.approx(df["clean_accuracy"][0]) and acc[-1] == 0.0
    assert (df["norm"] == "2").all()
    # an existing minimal-norm result gives the same curve without attacking again, in any batching
    for bs in (3, 64):
        again = robustness_curve(small_model, x, y, res, eps_list, batch_size=bs)
        pd.testing.assert_frame_equal(again.reset_index(drop=True), df.reset_index(drop=True))
    with pytest.raises(ValueError, match="AttackResult holds"):
        robustness_curve(small_model, x[:4], y[:4], res, eps_list)


def test_robustness_curve_bad_inputs(small_model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="unknown attack"):
        robustness_curve(small_model, x, y, "cw", [0.1])
    with pytest.raises(ValueError, match="eps_list"):
        robustness_curve(small_model, x, y, fgsm, [-0.1])
    with pytest.raises(ValueError, match="untargeted"):
        robustness_curve(small_model, x, y, pgd, [0.1], targeted=True)
    with pytest.raises(ValueError, match="shape mismatch"):
        robustness_curve(small_model, x, y[:3], fgsm, [0.1])


def test_universal_vs_per_image_against_direct_computation(small_model, batch):
    from medadv_lib.attacks import apply_uap, random_uap
    from medadv_lib.metrics.robustness import universal_vs_per_image
    x, y = batch
    ok = predict(small_model, x) == y
    x, y = x[ok][:12], y[ok][:12]
    eps = {"inf": 2 / 255, "2": 0.5}
    g = torch.Generator().manual_seed(0)
    uaps = {"inf": (torch.rand(1, *x.shape[-2:], generator=g) * 2 - 1) * eps["inf"],
            "2": random_uap(x[:1], eps["2"], "2", seed=3)[0]}
    r = deepfool(small_model, x, y, steps=20)
    t = universal_vs_per_image(small_model, x, y, uaps, eps, r, pgd_steps=3, seed=0)
    assert list(t.index) == ["inf", "2"] and t.loc["2", "budget ε (pixel units)"] == 0.5
    want = float((predict(small_model, apply_uap(x, uaps["inf"])) != y).float().mean())
    assert t.loc["inf", "UAP fooling"] == pytest.approx(want)
    assert t.loc["2", "per-image fooling"] == pytest.approx(float((r.success & (r.delta_norm <= 0.5)).float().mean()))
    assert t.loc["inf", "per-image fooling"] == pytest.approx(pgd(small_model, x, y, eps["inf"], steps=3, seed=0).success_rate)
