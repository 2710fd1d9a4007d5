"""Worked solutions to the exercises of notebook 05 (``05_uap_finetuning_and_adversarial_training.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs (a tiny model fine-tuned for one epoch on a few images);
the notebook's versions of the same steps go through ``course.adversarial_finetune`` and the cached models."""
from __future__ import annotations

import copy

import pandas as pd

from medadv_lib.attacks import pgd
from medadv_lib.attacks.uap.cache import precompute_uaps
from medadv_lib.defenses.adversarial import PGDPerturb, UAPPerturb
from medadv_lib.metrics.universal import fooling_rate
from medadv_lib.train import TrainConfig, evaluate, fit


def _uap(model, x_build, stats, zeta, seed, **sgd):
    return precompute_uaps(model, x_build, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, **sgd)[(zeta, "inf", None)]


def _finetune(model, hook, config: TrainConfig, train, val):
    m = copy.deepcopy(model)
    fit(m, train, val, config, progress=False, precision="fp32", perturb=hook)
    return m.eval()


def exercise_1(model, config: TrainConfig, train, val, x_build, x_test, stats, rounds: int = 3, zeta: float = 0.02,
               seed: int = 0, **sgd) -> pd.DataFrame:
    """Forgetting: fine-tune against the newest UAP only, round after round. Per round: the fooling rate of the
    UAP the round trained on (old) and of a fresh UAP built against the fine-tuned model.

    The old UAP's rate falls after its round — the model learns that one pattern. The fresh UAP's rate is the
    real defense: fine-tuned on one pattern at a time, the model unlearns the earlier ones, the attacker finds
    a new pattern, and the fresh rate falls little or comes back (in the course's FAST run it returned to its
    round-0 level after three rounds). This is why ``uap_finetune_rounds`` trains on the pool of all earlier UAPs.
    """
    rows, m = [], model
    v = _uap(m, x_build, stats, zeta, seed, **sgd).v
    rows.append({"round": 0, "old UAP": float("nan"), "fresh UAP": fooling_rate(m, x_test, v)})
    for k in range(1, rounds + 1):
        m = _finetune(m, UAPPerturb(v, name="newest-only"), config, train, val)
        fresh = _uap(m, x_build, stats, zeta, seed, **sgd).v
        rows.append({"round": k, "old UAP": fooling_rate(m, x_test, v), "fresh UAP": fooling_rate(m, x_test, fresh)})
        v = fresh
    return pd.DataFrame(rows).set_index("round")


def exercise_2(model, x_test, stats, image_size: int, zeta: float = 0.02, train=(512, 1500), patience=(3, 9),
               holdout: int | None = None, fast: bool = True, data_dir=None, seed: int = 0, **sgd) -> pd.DataFrame:
    """A stronger attacker against a defended model: the course's converged UAP builder with its own effort, then
    with 1,500 build images (three times the course builder's 512, seven times the judge's) and three times the patience (it waits three times as long for a gain
    on its held-out images before it stops). Returns per (build images, patience) the test fooling rate, the steps
    and whether it converged. ``sgd`` overrides the course's other settings (e.g. ``batch_size=8`` on a tiny model).

    What survives of a defense under the stronger UAP is the defense; what disappears was a weakness of the
    default attacker. A defense evaluated only with the settings it was trained against over-states itself —
    report it against an attacker with more budget than the defender expected.
    """
    from medadv_lib import course
    u = course.uap_settings(fast, holdout=holdout)
    rows = {}
    for n, p in zip(train, patience):
        xb, _, xh = course.uap_build_images(fast, image_size, data_dir, seed, train=n, holdout=holdout)
        settings = {**u.kwargs, "patience": p, **sgd}
        res = _uap(model, xb, stats, zeta, seed, method="sgd", holdout=xh, **settings)
        rows[(len(xb), p)] = {"fooling_rate": fooling_rate(model, x_test, res.v), "steps": res.params["steps"],
                              "converged": res.converged}
    return pd.DataFrame(rows).T.rename_axis(["build images", "patience"])


def exercise_3(model, config: TrainConfig, train, val, v, x_test, y_test, shares=(0.5, 1.0)) -> pd.DataFrame:
    """UAP fine-tuning with a different share of perturbed images per batch: clean accuracy and the fooling
    rate of the UAP ``v`` trained against, per share.

    Share 1.0 never shows the model a clean image during fine-tuning: expect the UAP's fooling rate to fall
    further and clean accuracy to pay for it (the model learns the perturbed distribution). Share 0.5, the course's
    default (the paper does not publish its share), keeps most of the clean accuracy; the trade-off is the gap between the two rows.
    """
    rows = {}
    for s in shares:
        m = _finetune(model, UAPPerturb(v, share=s, name=f"share{s:g}"), config, train, val)
        rows[s] = {"clean accuracy": evaluate(m, x_test, y_test)["accuracy"], "UAP fooling rate": fooling_rate(m, x_test, v)}
    return pd.DataFrame(rows).T.rename_axis("share")


def exercise_4(model, config: TrainConfig, train, val, x_test, y_test, at_eps=(2 / 255, 4 / 255),
               test_eps=(1 / 255, 2 / 255, 4 / 255), seed: int = 0) -> pd.DataFrame:
    """FGSM-RS adversarial training (``PGDPerturb`` with one step) at two budgets: clean accuracy and PGD-10
    robust accuracy at each test ε.

    Expect a larger training budget to buy robust accuracy at the larger test ε and to cost clean accuracy; on small,
    briefly trained models the cost can be large enough that the model predicts mostly one class — check
    the balanced accuracy in the notebook before calling it robust.
    """
    rows = {}
    for eps in at_eps:
        m = _finetune(model, PGDPerturb(eps, steps=1, seed=seed), config, train, val)
        row = {"clean accuracy": evaluate(m, x_test, y_test)["accuracy"]}
        for e in test_eps:
            row[f"PGD @ {e * 255:g}/255"] = float((pgd(m, x_test, y_test, e, steps=10, seed=seed).pred.cpu() == y_test).float().mean())
        rows[f"AT ε = {eps * 255:g}/255"] = row
    return pd.DataFrame(rows).T


def exercise_5(matrix: pd.DataFrame, eps_255: int = 2) -> pd.Series:
    """Which defense to deploy, from notebook 05's cross-threat ``matrix``: (a) against one printed universal
    pattern, the model with the lowest ``uap_fooling_rate``; (b) against a white-box per-image attacker, the
    one with the highest ``pgd<ε>_defense_rate``, each among models whose clean accuracy is within 5 points of
    the best (a defense that loses the diagnosis is no defense).

    The number to measure on more images first is the one whose Wilson interval (``_lo``/``_hi``) overlaps
    the runner-up's: with 56 attacked images the defense rates' intervals are ±10–15 points wide (the notebook prints this run's widest).
    """
    ok = matrix[matrix.clean_accuracy >= matrix.clean_accuracy.max() - 0.05]
    col = f"pgd{eps_255}_defense_rate"
    return pd.Series({"(a) universal pattern": ok.uap_fooling_rate.idxmin(), "(b) white-box per image": ok[col].idxmax()})
