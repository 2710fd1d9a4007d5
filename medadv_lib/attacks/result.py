"""One result type for every per-image attack (FGSM, PGD, DeepFool).

Convention
----------
Every per-image attack returns an :class:`AttackResult` whose tensors all have the batch
size ``N`` as first dimension and live on the device of ``x``:

* ``x_adv``   – ``N×C×H×W`` float, adversarial images, always clamped to [0, 1];
* ``delta``   – ``N×C×H×W`` float, the perturbation actually applied, ``x_adv - x``
  (after clamping; DeepFool's "minimal perturbation" r);
* ``success`` – ``N`` bool: *untargeted*: the model's prediction on ``x_adv`` differs from
  ``y``; *targeted*: the prediction equals the target ``y``.  Clean images that are already
  misclassified count as successes (with ``norm`` 0 for DeepFool) – restrict to clean-correct
  images with :func:`medadv_lib.metrics.defense_rate` when that matters;
* ``delta_norm`` – ``N`` float, ``‖delta‖`` per sample in the attack's norm;
* ``norm``    – the norm kind, ``"inf"`` or ``"2"`` (the library's one spelling);
* ``pred``    – ``N`` long, the model's prediction on ``x_adv`` (``success`` is derived from it);
* ``y``       – ``N`` long, the labels (untargeted) or targets (targeted) the attack used;
* ``iterations`` – ``N`` long, gradient steps spent per sample (``None`` for one-step attacks);
* ``loss``    – ``N`` float, the attack objective at ``x_adv``, higher = stronger (PGD: the
  cross-entropy of ``y``, or minus that of the target when targeted); ``None`` elsewhere.

Example::

    >>> res = pgd(model, x, y, eps=2/255)
    >>> res.success_rate, res.delta_norm.max() <= 2/255, rho_adv(res.delta, x)
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..runtime import eval_mode  # noqa: F401  (attacks run the model in eval mode)
from ._common import lp_norm


@dataclass
class AttackResult:
    """Output of a per-image attack; see the module docstring for the convention."""

    x_adv: torch.Tensor
    delta: torch.Tensor
    success: torch.Tensor
    delta_norm: torch.Tensor
    pred: torch.Tensor
    y: torch.Tensor
    norm: str = "inf"
    targeted: bool = False
    iterations: torch.Tensor | None = None
    loss: torch.Tensor | None = None

    @property
    def r(self) -> torch.Tensor:
        """Alias of ``delta`` (DeepFool's notation)."""
        return self.delta

    @property
    def success_rate(self) -> float:
        """Share of the batch on which the attack succeeded."""
        return float(self.success.float().mean()) if len(self) else float("nan")

    def __len__(self) -> int:
        return self.x_adv.shape[0]

    def _map(self, fn) -> "AttackResult":
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)
                                if torch.is_tensor(getattr(self, f.name))})

    def __getitem__(self, idx) -> "AttackResult":
        """Select samples: ``res[res.success]``, ``res[:8]``."""
        return self._map(lambda t: t[idx])

    def to(self, device) -> "AttackResult":
        return self._map(lambda t: t.to(device))

    def cpu(self) -> "AttackResult":
        return self.to("cpu")

    @classmethod
    def cat(cls, results: list["AttackResult"]) -> "AttackResult":
        """Concatenate results of consecutive batches (same attack settings)."""
        first = results[0]
        return replace(first, **{f.name: torch.cat([getattr(r, f.name) for r in results])
                                 for f in fields(first) if torch.is_tensor(getattr(first, f.name))})

def make_result(model, x, x_adv, y, norm, targeted=False, iterations=None, loss=None,
                pred=None) -> AttackResult:
    """Build an :class:`AttackResult` from ``x``/``x_adv``; one forward pass unless ``pred`` is given."""
    x_adv = x_adv.detach().clamp(0, 1)
    if pred is None:
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
    success = pred == y if targeted else pred != y
    delta = x_adv - x.detach()
    return AttackResult(x_adv=x_adv, delta=delta, success=success, delta_norm=lp_norm(delta, norm),
                        pred=pred, y=y, norm=norm, targeted=targeted,
                        iterations=iterations, loss=loss)
