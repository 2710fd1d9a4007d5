"""Worked solutions to the exercises of notebook 04 (``04_pruning_and_attention.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs (tiny models, light attack settings); in the notebook pass
its own models, e.g. ``exercise_5(study["cbam"][0], x_eval, y_eval)``."""
from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import torch
from torch import nn

from medadv_lib.attacks import pgd
from medadv_lib.course.config import parse_defense
from medadv_lib.defenses import apply_defense
from medadv_lib.defenses.attention import add_attention, attention_maps, gate_by_region
from medadv_lib.defenses.pruning import model_cost
from medadv_lib.metrics import defense_rate
from medadv_lib.metrics.defense import RobustnessSettings, hygiene_checks, robustness_table
from medadv_lib.models import build_model
from medadv_lib.train import TrainConfig, evaluate, fit


def _pgd_defense_rate(model, x, y, eps: float, steps: int = 10, seed: int = 0) -> float:
    return defense_rate(model, x, pgd(model, x, y, eps, steps=steps, seed=seed).x_adv.cpu(), y)


def exercise_1(config: TrainConfig, train, val, x_eval, y_eval, eps: float = 1 / 255, steps: int = 10) -> pd.DataFrame:
    """A baseline and a CBAM ResNet trained **from scratch** with the same configuration: clean test accuracy
    and the PGD defense rate at ``eps``.

    Notebook 04 fine-tunes attention into a trained model for one epoch; here both arms see the same training
    from the first step, the fair comparison. If CBAM's advantage (or disadvantage) in the fine-tuned ablation
    vanishes here, it came from the extra fine-tuning or the initialisation, not from attention.
    """
    rows = {}
    for arm in ("baseline", "cbam"):
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        if arm == "cbam":
            add_attention(model, "cbam")
        fit(model, train, val, config, progress=False, precision="fp32")
        model.eval()
        rows[arm] = {"test accuracy": evaluate(model, x_eval, y_eval)["accuracy"],
                     f"PGD defense rate @ {eps * 255:g}/255": _pgd_defense_rate(model, x_eval, y_eval, eps, steps)}
    return pd.DataFrame(rows).T


def exercise_2(models: dict, x, y=None) -> pd.DataFrame:
    """Where the CBAM spatial gates look after different amounts of fine-tuning (``{label: cbam model}``, e.g.
    ``{"1 epoch": study["cbam"][0], "5 epochs": course.course_defense(BASE_MODEL, {"attention": "cbam"}, FAST,
    output_dir=OUTPUT_DIR, epochs=5)[0]}``): mean gate value in the border frame and the centre, and the mean
    distance of the gates from 1 (1 = the gate changes nothing).

    Gates start at 1-ish; longer fine-tuning moves them further from 1. Whether they turn *down* the border
    (``border_minus_center`` < 0: the gates suppress the frame) or up is the question — on confounded data the
    loss may reward looking at the border, which would make attention a shortcut amplifier, not a defense.
    """
    rows = {}
    for name, m in models.items():
        maps = attention_maps(m, x)["mean"]
        rows[name] = {**gate_by_region(maps, y).loc["all"].to_dict(), "mean |gate − 1|": float((maps - 1).abs().mean())}
    return pd.DataFrame(rows).T


class Saturated(nn.Module):
    """``model`` with its logits multiplied by ``scale`` (exercise 3): the same predictions, but a softmax so
    saturated that the cross-entropy gradient is exactly zero in floating point."""

    def __init__(self, model, scale: float = 1e4):
        super().__init__()
        self.base, self.scale, self.num_classes = model, scale, getattr(model, "num_classes", 3)

    def forward(self, x):
        return self.base(x) * self.scale


def audit(model, x, y, name: str, settings: RobustnessSettings, transfer: dict | None = None) -> tuple:
    """``robustness_table`` and ``hygiene_checks`` of one model (exercises 3 and 6)."""
    table = robustness_table(model, x, y, name, settings, transfer=transfer)
    return table, hygiene_checks(table)


def exercise_3(model, x, y, settings: RobustnessSettings, transfer: dict | None = None) -> pd.DataFrame:
    """A model that only *looks* robust: the baseline with its logits × 10⁴. Returns its hygiene checks.

    The cross-entropy gradient vanishes, so PGD (which climbs the cross-entropy) gets no signal and robust
    accuracy looks high; the predictions are the baseline's. The checks are built to catch it: APGD-DLR, whose
    loss ignores the logits' scale, fools the images PGD-10 left correct (check (a)), and PGD at ε = 32/255 fails
    to drive accuracy to zero (check (d)) — obfuscated gradients (Athalye et al. 2018), not robustness; the
    worst case over the suite reads the model's real robustness.
    """
    return audit(Saturated(model).eval(), x, y, "saturated", settings, transfer)[1]


def exercise_4(model, image_size: int, x, y, arm: str = "cbam+channels0.3", eps: float = 1 / 255) -> pd.DataFrame:
    """The baseline and ``arm`` (built from a copy with :func:`~medadv_lib.defenses.apply_defense`; in the
    notebook use the fine-tuned ``course.course_defense(BASE_MODEL, parse_defense(arm), FAST, ...)``): accuracy,
    parameters, latency per image and the PGD defense rate at ``eps``.

    Removing 30% of the channels of every layer leaves about 0.7² ≈ half of the parameters; CBAM adds few.
    Compare the fine-tuned arm's accuracy with the baseline's, then its PGD defense rate: a change smaller
    than the rate's Wilson interval (±10–15 points on 56 images; the notebook prints this run's widest) means neither channel pruning nor attention
    defended against white-box PGD here.
    """
    arms = {"baseline": model, arm: apply_defense(copy.deepcopy(model), parse_defense(arm), image_size).eval()}
    rows = {}
    for name, m in arms.items():
        cost = model_cost(m, image_size, batch_size=4, repeats=2)
        rows[name] = {"accuracy": evaluate(m, x, y)["accuracy"], "params": cost["params"],
                      "latency_ms": cost["latency_ms"], f"PGD defense rate @ {eps * 255:g}/255": _pgd_defense_rate(m, x, y, eps)}
    return pd.DataFrame(rows).T


def exercise_5(model, x, y, zetas=(0.005, 0.01, 0.02), steps: int = 50) -> pd.Series:
    """DeepFool's defense rate with its success counted within ζ × mean image norm, for several ζ.

    The DeepFool "defense rate" is the share of clean-correct images whose minimal perturbation is *larger*
    than the budget, so it rises steeply as the budget shrinks: between ζ = 0.5% and 2% it can go from near 1
    to near 0 on the same model. A DeepFool defense rate without its budget (Chen et al.'s 69.49%) cannot be
    compared with anything.
    """
    rates = {}
    for z in zetas:
        s = RobustnessSettings(eps=(), suite_eps=(), square_queries=0, large_eps=None, l2_steps=0, deepfool_zeta=z,
                               deepfool_steps=steps)
        t = robustness_table(model, x, y, "model", s)
        rates[z] = float(t.loc[t.attack == "deepfool", "defense_rate"].iloc[0])
    return pd.Series(rates, name="DeepFool defense rate").rename_axis("zeta")


def exercise_6(model, x, y, settings: RobustnessSettings, transfer: dict | None = None) -> pd.DataFrame:
    """The hygiene checks of a heavily pruned model (the sweep's 90% sparsity: ``course.course_defense(BASE_MODEL,
    {"prune": 0.9}, FAST, output_dir=OUTPUT_DIR)``).

    If its robustness is real, APGD, the transferred examples and Square find few of the images PGD-10 left
    correct; if it came from a damaged, flattened loss surface, one of them finds the
    adversarial examples white-box PGD missed and the verdict reads "gradient masking suspected".
    """
    return audit(model, x, y, "prune0.9", settings, transfer)[1]


def light_settings() -> RobustnessSettings:
    """Attack settings small enough for a unit test (not for conclusions)."""
    return dataclasses.replace(RobustnessSettings(), eps=(2 / 255,), steps=2, strong_steps=3, strong_restarts=1,
                               apgd_steps=3, l2_steps=2, deepfool_steps=5, square_queries=20, large_eps=32 / 255)
