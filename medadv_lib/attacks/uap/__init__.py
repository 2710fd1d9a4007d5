"""Universal adversarial perturbations (UAPs): one noise image ``v`` that fools a model on most X-rays.

A UAP is a single ``1×1×H×W`` tensor added to *every* image, ``x + v`` clamped to [0, 1]
(:func:`apply_uap`).  Its size is a share ζ (``zeta``) of the dataset's mean image norm,
``‖v‖_p ≤ eps = ζ · mean_i ‖x_i‖_p`` (:func:`uap_budget`), as in Hirano, Koga & Takemoto
(2020), *Vulnerability of deep neural networks for detecting COVID-19 cases from chest
X-ray images to universal adversarial attacks* (PLoS ONE 15(12): e0243963).

Three ways to get one:

* :func:`iterative_uap` – the iterative algorithm of Moosavi-Dezfooli et al. (2017) with an
  FGSM inner attacker, as Hirano et al. ran it through ART's ``UniversalPerturbation``;
  batched over mini-batches (see its docstring for exactly what that changes).
* :func:`sgd_uap` – the mini-batch sign-gradient UAP of Shafahi et al. (2020),
  *Universal adversarial training*, on a clipped cross-entropy.
* :func:`random_uap` – the control: random noise with exactly the same norm.

Example::

    >>> from medadv_lib.attacks import iterative_uap, uap_budget, apply_uap
    >>> from medadv_lib.data import image_norm_stats
    >>> eps = uap_budget(0.02, "inf", image_norm_stats(64))  # 2% of the mean L∞ image norm
    >>> res = iterative_uap(model, x_train, eps=eps, norm="inf")
    >>> res.fooling_rate, res.v.abs().max() <= eps
    >>> x_adv = apply_uap(x_test, res.v)
"""
from __future__ import annotations

from .budget import apply_uap, uap_budget
from .iterative import iterative_uap
from .random import random_uap
from .result import UAPResult, load_uap, save_uap
from .sgd import sgd_uap

__all__ = ["UAPResult", "uap_budget", "iterative_uap", "sgd_uap", "random_uap", "apply_uap", "save_uap", "load_uap"]
