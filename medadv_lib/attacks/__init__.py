"""Adversarial attacks on [0,1] grayscale chest X-ray classifiers.

Per-image attacks (:func:`fgsm`, :func:`pgd`, :func:`deepfool`) return an
:class:`AttackResult`; see :mod:`medadv_lib.attacks.result` for the convention.
"""
from ._common import (NORMS, check_eps, check_eps_255, check_inputs, eps_from_255, lp_norm, num_classes_of, parse_norm,
                      parse_target, project)
from .deepfool import deepfool
from .fgsm import fgsm
from .pgd import pgd
from .result import AttackResult

__all__ = ["fgsm", "pgd", "deepfool", "AttackResult", "NORMS", "parse_norm", "parse_target", "check_eps",
           "check_eps_255", "eps_from_255", "check_inputs", "lp_norm", "project", "num_classes_of"]

# Universal adversarial perturbations (attacks/uap.py) are exported below (extend __all__ there too).
from .uap import iterative_uap, sgd_uap, random_uap, uap_budget, apply_uap, UAPResult
from .uap import load_uap, save_uap

__all__ += ["iterative_uap", "sgd_uap", "random_uap", "uap_budget", "apply_uap", "UAPResult",
            "load_uap", "save_uap"]
