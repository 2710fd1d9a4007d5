"""Worked solutions to the exercises of notebook 03 (``03_pgd_and_deepfool.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs; in the notebook pass its own objects, e.g.
``exercise_2(model, x_test, y_test, 1 / 255)``."""
from __future__ import annotations

import math

import pandas as pd
import torch

from medadv_lib.attacks import deepfool, fgsm, pgd
from medadv_lib.attacks.uap.cache import precompute_uaps
from medadv_lib.metrics import median_rho_adv, predict, robustness_curve
from medadv_lib.metrics.universal import fooling_rate


def exercise_1(model, x, y, eps_list, seed: int = 0) -> pd.DataFrame:
    """PGD with one step against FGSM: robust accuracy per ε.

    They differ for two reasons: PGD starts from a random point in the ε-ball (FGSM from the image), and its
    step is ``2.5·ε/steps`` = 2.5ε — projected back onto the ball, so after clipping most pixels end at ±ε
    like FGSM's, but measured from the random start, and the projection clips the part that overshoots. One
    step of PGD is therefore FGSM from a noisy start: sometimes a little weaker, sometimes stronger.

    Measured 2026-11-30 (that day's full-width FAST ResNet-18, 03's 64 images then): identical at 0.5 and 1/255 (67.2%, 60.9%), PGD-1
    weaker at 2 and 4/255 (42.2% vs 35.9%, 25.0% vs 21.9% robust accuracy).
    """
    curves = {"FGSM": robustness_curve(model, x, y, fgsm, eps_list),
              "PGD-1": robustness_curve(model, x, y, pgd, eps_list, steps=1, seed=seed)}
    return pd.DataFrame({k: c.set_index("eps")["robust_accuracy"] for k, c in curves.items()})


def exercise_2(model, x, y, eps: float = 1 / 255, restarts: int = 5, steps: int = 10, seed: int = 0) -> pd.Series:
    """Robust accuracy under PGD with one run and with ``restarts`` random restarts (an image counts as
    robust only if every restart fails).

    Restarts can only lower robust accuracy. How much they lower it measures how much a single run
    under-reports the attack: a number from one PGD run is an upper bound on robustness, and a defense
    whose robust accuracy falls a lot with restarts was lucky (or masks gradients) rather than robust.

    Measured 2026-11-30 (that day's full-width FAST ResNet-18, 03's 64 images then) at 1/255: 60.9% with one run and with five
    restarts — on this undefended model one PGD-10 run already finds what restarts find; the check matters
    for defended models (notebook 04's hygiene checks run it).
    """
    dev = next(model.parameters()).device
    one = pgd(model, x.to(dev), y.to(dev), eps, steps=steps, seed=seed).cpu()
    many = pgd(model, x.to(dev), y.to(dev), eps, steps=steps, restarts=restarts, seed=seed).cpu()
    return pd.Series({"1 run": float((one.pred == y).float().mean()),
                      f"{restarts} restarts": float((many.pred == y).float().mean())}, name="robust_accuracy")


def exercise_3(model, x, y, overshoots=(0.0, 0.02, 0.1), steps: int = 50) -> pd.DataFrame:
    """DeepFool with several overshoots: success over the clean-correct images and median ρ_adv (%).

    With ``overshoot=0`` DeepFool stops on the linearised boundary, so on a curved network it can land just
    short (a failure) while giving the smallest perturbations; a larger overshoot buys success with a larger
    ρ_adv — the median grows roughly by the factor (1 + overshoot), so ρ_adv is only comparable between runs
    with the same overshoot.

    Measured 2026-11-30 (that day's full-width FAST ResNet-18, 03's 64 images then): success 1.0 at overshoot 0, 0.02 and 0.1 alike
    (the last step crosses the boundary anyway), median ρ_adv 0.759% → 0.770% → 0.819%.
    """
    ok = predict(model, x) == y
    rows = {}
    for o in overshoots:
        r = deepfool(model, x, y, steps=steps, overshoot=o).cpu()
        rows[o] = {"success (clean-correct)": float(r.success[ok].float().mean()),
                   "median ρ_adv (%)": 100 * median_rho_adv(r.r, x, mask=ok & r.success)["overall"]}
    return pd.DataFrame(rows).T.rename_axis("overshoot")


def exercise_4(model, x, y, eps_255: float = 2.0, steps: int = 10, seed: int = 0) -> pd.Series:
    """PGD in L∞ (ε/255 per pixel) and in L2 at the widget's same slider value (‖δ‖₂ ≤ ε/255·√pixels).

    Every L∞ perturbation of size ε/255 has ‖δ‖₂ ≤ ε/255·√pixels, so the L2 ball contains the L∞ ball: the
    L2 attacker may do everything the L∞ one may, and more (concentrate the change on a few pixels). With an
    exact attack L2 robust accuracy is therefore at most the L∞ one; PGD is not exact, so a small inversion
    is possible, but rare. The returned ``contains`` checks the inclusion on the L∞ attack's own δ.

    Measured 2026-11-30 (that day's full-width FAST ResNet-18, 03's 64 images then) at slider value 2: robust accuracy 28.1% in L∞,
    3.1% in L2.
    """
    n = x[0].numel()
    eps_inf, eps_l2 = eps_255 / 255, eps_255 / 255 * math.sqrt(n)
    a = pgd(model, x, y, eps_inf, steps=steps, seed=seed).cpu()
    b = pgd(model, x, y, eps_l2, steps=steps, norm="2", seed=seed).cpu()
    inside = bool(((a.x_adv - x).flatten(1).norm(dim=1) <= eps_l2 + 1e-6).all())
    return pd.Series({"robust_accuracy L∞": float((a.pred == y).float().mean()),
                      "robust_accuracy L2": float((b.pred == y).float().mean()), "contains": inside})


def exercise_5(model, x_ok, y_ok, x_build_sets: dict, stats, zeta: float = 0.02, epochs=(3,), batch_size: int = 16,
               deepfool_steps: int = 50, seed: int = 0) -> pd.DataFrame:
    """The UAP / per-image ratio of section 4 for UAPs built with more effort: for each ``{name: build images}``
    and number of epochs, the L2 UAP's fooling rate on the clean-correct images ``x_ok``, DeepFool's L2 norm
    that fools the same share, and their ratio (the UAP's budget over that norm).

    A better UAP fools more images with the same budget; the per-image norm needed for that larger share is
    larger too, so the ratio shrinks from both sides. The UAP's budget is fixed by ζ, so only its fooling rate
    can move the ratio: compare the rows' ``UAP fooling`` before reading the ratio.
    """
    norms = deepfool(model, x_ok, y_ok, steps=deepfool_steps).cpu()
    sorted_norms = torch.where(norms.success, norms.delta_norm, torch.full_like(norms.delta_norm, math.inf)).sort().values
    rows = {}
    for name, xb in x_build_sets.items():
        for e in epochs:
            res = precompute_uaps(model, xb, zetas=(zeta,), norms=("2",), stats=stats, seed=seed, method="sgd",
                                  epochs=e, batch_size=batch_size)[(zeta, "2", None)]
            rate = fooling_rate(model, x_ok, res.v, reference="labels", y=y_ok)
            k = max(1, math.ceil(rate * len(sorted_norms)))
            per_image = float(sorted_norms[k - 1]) if rate > 0 else math.nan
            rows[(name, e)] = {"UAP fooling": rate, "UAP L2 budget": res.eps, "per-image L2 at that share": per_image,
                               "UAP / per-image": res.eps / per_image if per_image > 0 else math.nan}
    return pd.DataFrame(rows).T.rename_axis(["build images", "epochs"])
