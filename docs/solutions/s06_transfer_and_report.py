"""Worked solutions to the exercises of notebook 06 (``06_transfer_and_report.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs (tiny models and UAPs); in the notebook pass its
``models``, ``uaps``, ``x`` and ``y``."""
from __future__ import annotations

import pandas as pd

from medadv_lib.attacks import random_uap
from medadv_lib.attacks.uap.cache import precompute_uaps
from medadv_lib.course import settings
from medadv_lib.course.report import claims_table
from medadv_lib.metrics.transfer import transfer_matrix
from medadv_lib.metrics.universal import fooling_rate
from medadv_lib.models import build_model


def exercise_1(models: dict, uaps: dict, x, y) -> pd.DataFrame:
    """The transfer matrix re-weighted to the paper's test mix (100 normal / 100 pneumonia / 31 COVID-19) minus
    the plain one: the cells that change most.

    Re-weighting moves a cell when the UAP fools the classes unevenly: a UAP that pushes images into COVID-19
    cannot fool images already predicted COVID-19, which are 57% of our test split but 13% of the paper's, so
    such a cell *rises* when re-weighted; a UAP that mostly moves COVID-19 images falls.
    """
    plain = transfer_matrix(models, uaps, x, y)
    return transfer_matrix(models, uaps, x, y, metric="fooling_rate_reweighted") - plain


def exercise_2(target, surrogates: dict, x_build, x_test, stats, zeta: float = 0.02, seed: int = 0) -> pd.Series:
    """UAPs built on each surrogate ``{name: (model, sgd settings)}`` (e.g. an independently trained ResNet-18
    with ``seed=1``, the MobileNet built on about 3× the images) applied to ``target``; last the random control.

    An independently trained copy of the same architecture is the fairest black-box surrogate; if its UAP
    transfers no better than the MobileNet's, architecture is not what limits transfer. If the MobileNet UAP
    built with more effort fools its own model more but the target no more, the extra effort overfitted the
    surrogate.
    """
    out = {}
    for name, (model, sgd) in surrogates.items():
        res = precompute_uaps(model, x_build, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, **sgd)[(zeta, "inf", None)]
        out[name] = fooling_rate(target, x_test, res.v)
    out["random control"] = fooling_rate(target, x_test, random_uap(res.v, res.eps, "inf", seed=seed))
    return pd.Series(out, name="fooling_rate on the target")


def exercise_3(u1, u2, third, x) -> pd.Series:
    """An ensemble surrogate: the mean of two L∞ UAPs (``UAPResult``s), scaled back to the full budget, on a
    third model — beside each UAP alone and random noise of the same budget.

    Averaging keeps what the two patterns share and cancels the rest; scaled to the budget, the shared part
    gets more of it. Liu et al. (2017) found ensembles transfer better; compare the ensemble's gain with the
    spread between the two single UAPs (and with the random control) before calling it one.
    """
    v = (u1.v + u2.v) / 2
    v = v * u1.eps / v.abs().max()
    return pd.Series({"UAP 1": fooling_rate(third, x, u1.v), "UAP 2": fooling_rate(third, x, u2.v),
                      "ensemble": fooling_rate(third, x, v),
                      "random": fooling_rate(third, x, random_uap(v, u1.eps, "inf", seed=0))}, name="fooling_rate")


def exercise_4(results_before: dict, results_after: dict) -> pd.DataFrame:
    """Which verdicts moved between two runs: the claims table of each (``course.report.load_results(runs)``
    before and after changing a setting such as ``ROUNDS = 5``), side by side, with ``changed`` marking them.

    Only claims fed by the notebook you reran can move; a verdict that moves with one setting is a verdict
    about the setting as much as about the paper — say so in your report.
    """
    before, after = pd.DataFrame(claims_table(results_before)), pd.DataFrame(claims_table(results_after))
    out = pd.DataFrame({"claim": before.claim, "before": before.verdict, "after": after.verdict,
                        "ours before": before.ours_text, "ours after": after.ours_text})
    return out.assign(changed=out.before != out.after)


def exercise_5(models=None) -> pd.DataFrame:
    """The full mode's models (``course.settings(False)``) at 224 px: parameters per model, against the FAST ones.

    The verdicts themselves need the full run on a GPU (``make tutorial MODE=full``), which this solution cannot
    execute; what changes is known in advance: 10–100× more parameters, 4× the pixels per image (so an L∞ budget
    of the same ζ adds up over 4× more pixels), and COVIDNet-CXR Small, the architecture Hirano et al. attacked.
    """
    full = settings(False)
    names = list(models or full.models)
    return pd.DataFrame({n: {"parameters (M)": sum(p.numel() for p in build_model(n).parameters()) / 1e6,
                             "image size": full.image_size} for n in names}).T
