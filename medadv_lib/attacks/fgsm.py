"""Fast Gradient Sign Method (L∞) and Fast Gradient Method (L2) – one gradient step."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_eps, check_inputs, num_classes_of, parse_norm
from .result import AttackResult, eval_mode, make_result


def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         norm="inf", targeted: bool = False) -> AttackResult:
    r"""FGSM / FGM: one step of size ``eps`` along the loss gradient.

    'Explaining and Harnessing Adversarial Examples' [https://arxiv.org/abs/1412.6572]

    Distance measure: L∞ (``x + eps·sign(∇)``) or L2 (``x + eps·∇/‖∇‖₂``, the "fast gradient
    method" of Miyato et al. / Kurakin et al.).

    Arguments:
        model (nn.Module): classifier taking [0,1] pixels (e.g. a ``MedModel``); run in eval mode.
        x (Tensor): clean images ``N×C×H×W`` in [0, 1].
        y (Tensor): ``N`` labels; the *target* labels when ``targeted=True``.
        eps (float): budget in pixel units, ≥ 0 (e.g. 2/255 for L∞, 0.5 for L2).
        norm (str | float): ``"inf"`` (default) or ``"2"``.
        targeted (bool): step *down* the cross-entropy of ``y`` instead of up. (Default: False)
    Returns:
        :class:`AttackResult` (``x_adv`` in [0,1], ``success``, ``delta_norm`` ≤ ``eps``, ...).
    Examples::
        >>> res = fgsm(model, x, y, eps=2/255)
        >>> res.success_rate
    """
    norm = parse_norm(norm)
    eps = check_eps(eps, norm=norm)
    check_inputs(x, y, num_classes_of(model, x))
    y = y.to(x.device)
    with eval_mode(model):
        x_ = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_), y, reduction="sum")
        grad, = torch.autograd.grad(-loss if targeted else loss, x_)
        if norm == "inf":
            step = grad.sign()
        else:
            step = grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
        x_adv = (x.detach() + eps * step).clamp(0, 1)
        return make_result(model, x, x_adv, y, norm, targeted)
