"""The course's one prediction function."""
from __future__ import annotations

import torch
from torch import nn

from ..runtime import eval_mode, model_device


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device=None,
            return_logits: bool = False, perturbation: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted labels ``N`` (or fp32 logits ``N×K`` with ``return_logits``) of ``model`` on ``x``.

    The course's one prediction function: clean images, adversarial images, and images under a
    universal perturbation (``perturbation``: a ``1×1×H×W`` UAP added to every image and clamped
    to [0, 1], see :func:`~medadv_lib.attacks.uap.apply_uap`).  Runs in chunks of ``batch_size`` on
    ``device`` (default: the model's), in eval mode (train/eval flags restored afterwards), under
    the model's precision policy; the result is on the CPU.
    """
    device = torch.device(device) if device is not None else model_device(model)
    v = None if perturbation is None else perturbation.to(device=device, dtype=x.dtype)
    if v is not None and v.dim() == 2:
        v = v[None, None]
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device, non_blocking=True)
            if v is not None:
                xb = (xb + v).clamp(0, 1)
            logits = model(xb).float()
            out.append((logits if return_logits else logits.argmax(1)).cpu())
    if out:
        return torch.cat(out)
    return torch.empty(0, getattr(model, "num_classes", 0)) if return_logits else torch.empty(0, dtype=torch.long)
