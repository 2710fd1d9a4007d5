"""Worked solutions to the exercises of notebook 02 (``02_universal_perturbations.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs (a tiny model, a few images, one epoch); in the notebook
pass its own objects, e.g. ``exercise_1(model, x_build, x_test, y_test, stats, zetas=(0.04, 0.06, 0.08), **SGD)``."""
from __future__ import annotations

import pandas as pd

from medadv_lib import LABELS
from medadv_lib.attacks import random_uap
from medadv_lib.attacks.uap.cache import precompute_uaps
from medadv_lib.metrics import predict
from medadv_lib.metrics.transfer import transfer_matrix
from medadv_lib.metrics.universal import compare_uap_builds, fooling_rate, uap_table


def ceilings(model, x) -> pd.Series:
    """Per class: the largest plain fooling rate a UAP can reach by sending every image to that class
    (1 − the share of clean predictions already in it)."""
    pred = predict(model, x)
    return pd.Series({lab: 1 - float((pred == c).float().mean()) for c, lab in enumerate(LABELS)}, name="ceiling")


def exercise_1(model, x_build, x_test, y_test, stats, zetas=(0.04, 0.06, 0.08), goal: float = 0.85, seed: int = 0,
               **sgd) -> tuple[pd.DataFrame, float | None]:
    """Non-targeted L∞ UAPs at growing ζ: the test fooling rate per ζ, and the first ζ reaching ``goal``
    (None if none does).

    The table carries the largest ceiling over the classes: a UAP that sends every image to one class
    cannot change more predictions than that. When the goal lies above the ceiling, no ζ reaches it by
    herding — only a UAP that also scatters images across classes can, which takes a much larger budget.
    Compare each ζ's rate with the ceiling before adding more ζ.
    """
    uaps = precompute_uaps(model, x_build, zetas=zetas, norms=("inf",), stats=stats, seed=seed, **sgd)
    rates = pd.Series({z: fooling_rate(model, x_test, uaps[(z, "inf", None)].v) for z in zetas}, name="fooling_rate")
    table = rates.to_frame().assign(best_ceiling=ceilings(model, x_test).max()).rename_axis("zeta")
    reached = [z for z, r in rates.items() if r >= goal]
    return table, (min(reached) if reached else None)


def exercise_2(model, x_test, res, kinds=("shuffle", "uniform", "sign", "gaussian"), seed: int = 0) -> pd.Series:
    """The UAP ``res`` against random controls of its norm, one per kind (test fooling rates).

    ``"shuffle"`` (the course's control) is the UAP's own pixels reordered: its L2 and L∞ norms and its values.
    Sign noise (every pixel ±ε) is the largest noise the L∞ ball holds, with more L2 energy than the UAP itself;
    uniform and Gaussian noise rescaled to the L∞ budget carry less.  Expect the controls to order by energy; the
    question is whether any catches up with the UAP — if they stay far below, the UAP's effect comes from its
    pattern, not from its size.
    """
    out = {"UAP": fooling_rate(model, x_test, res.v)}
    out.update({f"random ({k})": fooling_rate(model, x_test, random_uap(res.v, res.eps, res.norm, kind=k, seed=seed))
                for k in kinds})
    return pd.Series(out, name="fooling_rate")


def exercise_3(model, x_test, stats, image_size: int, zeta: float = 0.02, train=(128, 512), holdout: int | None = None,
               fast: bool = True, data_dir=None, seed: int = 0, **sgd) -> pd.DataFrame:
    """The course's SGD UAP (it stops on a plateau of its held-out rate) on a quarter of the course's build images,
    then on the course's number, with the same held-out images: the held-out and test fooling rates, the steps it
    took and whether it converged.  With section 8's experiment (every training image not held out) this gives
    three points of the rate against the build-set size.

    If the test rate hardly moves while both UAPs converged, the number of build images was not the limit; a
    held-out rate well above the test rate would say the held-out training images are easier than the test ones.
    ``sgd`` overrides the course's settings (e.g. ``batch_size=8``, ``eval_every=2`` on a tiny model).
    """
    from medadv_lib import course
    u = course.uap_settings(fast, holdout=holdout)
    settings = {**u.kwargs, **sgd}
    rows = {}
    for n in train:
        xb, _, xh = course.uap_build_images(fast, image_size, data_dir, seed, train=n, holdout=holdout)
        res = precompute_uaps(model, xb, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, method="sgd",
                              holdout=xh, **settings)[(zeta, "inf", None)]
        rows[len(xb)] = {"fooling_rate (held out)": res.fooling_rate, "fooling_rate (test)": fooling_rate(model, x_test, res.v),
                         "steps": res.params["steps"], "converged": res.converged}
    return pd.DataFrame(rows).T.rename_axis("build images")


def exercise_4(model, x_build, x_test, y_test, stats, zetas=(0.01, 0.02, 0.04), seed: int = 0, **sgd) -> pd.DataFrame:
    """Targeted L∞ UAPs for every class at every ζ: success among the images not already predicted as the
    target, beside the random control's success and the share already predicted as the target.

    The easiest target is the one with the highest ``target_success_rate_non_target`` well above its random
    control; compare the ranking across ζ — a target that wins only at the largest ζ is "easy" only with a
    visible budget. The plain success rate flatters the class the model already predicts most (here the
    majority, COVID-19): that is why the ranking uses the images not yet in the target class.
    """
    uaps = precompute_uaps(model, x_build, zetas=zetas, norms=("inf",), targets=range(len(LABELS)), stats=stats,
                           seed=seed, **sgd)
    cols = ("target_success_rate_non_target", "random_target_success_rate", "target_rate_clean")
    tables = {z: uap_table({lab: (model, uaps, t) for t, lab in enumerate(LABELS)}, x_test, y_test, z, columns=cols,
                           seed=seed)[0] for z in zetas}
    return pd.concat(tables, names=["zeta", "target"])


def exercise_5(model_a, model_b, x_build, x_test, stats, zeta: float = 0.02, names=("a", "b"), seed: int = 0,
               **sgd) -> pd.DataFrame:
    """Each model's own L∞ UAP applied to both models: the transfer matrix (rows: the UAP's source, columns:
    the model attacked; last row the random control of each column).

    Transfer is symmetric only if both off-diagonal cells beat their column's random control by similar
    margins. It usually is not: a UAP built on the more noise-sensitive model tends to be a stronger,
    more generic pattern, and the less sensitive model's UAP may not beat noise on the other at all.
    """
    models = dict(zip(names, (model_a, model_b)))
    uaps = {n: precompute_uaps(m, x_build, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, **sgd)[(zeta, "inf", None)]
            for n, m in models.items()}
    return transfer_matrix(models, uaps, x_test, seed=seed)


def exercise_6(model, x_build, x_test, y_test, stats, zeta: float = 0.02, max_iter: int = 4, step_share: float = 0.2,
               seed: int = 0, **sgd) -> pd.DataFrame:
    """Hirano et al.'s iterative UAP with an FGSM step of ``step_share`` × ε (instead of 0.001) against the
    SGD UAP: passes, seconds, build and test fooling rates, and the share of the budget ``v`` used.

    A step of ε/5 lets one accepted step move ``v`` far, so ``v`` fills its budget in fewer passes than with
    0.001; whether its fooling rate then reaches SGD's depends on the run (the table says); a pass costs
    seconds in proportion to the unfooled images it tries, so compare rate per second, not only rate.
    """
    sgd_res = precompute_uaps(model, x_build, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, **sgd)[(zeta, "inf", None)]
    step = step_share * sgd_res.eps
    it = precompute_uaps(model, x_build, zetas=(zeta,), norms=("inf",), stats=stats, seed=seed, method="iterative",
                         step=step, max_iter=max_iter)[(zeta, "inf", None)]
    return compare_uap_builds(model, x_test, y_test, {f"iterative (step {step:.4f})": it, "SGD": sgd_res})
