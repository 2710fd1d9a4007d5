"""Shared pieces of every attack: argument checks, norms and projections.

All attacks work in pixel space: ``x`` is a float tensor ``N×C×H×W`` in [0, 1]
(C = 1 for the course's grayscale X-rays) and ``x_adv`` stays in [0, 1].
"""
from __future__ import annotations

import math
import warnings

import torch

from .. import LABELS

NORMS = ("inf", "2")
_NORM_ALIASES = {"inf": "inf", "linf": "inf", "l_inf": "inf", "infinity": "inf",
                 "2": "2", "l2": "2", "l_2": "2"}


def parse_norm(norm) -> str:
    """Return ``"inf"`` or ``"2"`` for the spellings people use (``inf``, ``"linf"``, ``2``, ``"l2"``...)."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        if math.isinf(norm):
            return "inf"
        if norm == 2:
            return "2"
    key = str(norm).strip().lower()
    if key in _NORM_ALIASES:
        return _NORM_ALIASES[key]
    raise ValueError(f"unknown norm {norm!r}; use one of {NORMS} ('inf' for L∞, '2' for L2)")


def parse_target(target, labels=None, num_classes: int | None = None) -> int | None:
    """The course's one target parser: ``None`` (non-targeted) or a class index.

    Accepts ``None``, ``"none"``, ``""`` or ``"non-targeted"`` (non-targeted); a class name of
    ``labels`` (default :data:`medadv_lib.LABELS`; case-insensitive, so ``covid-19`` works); or an
    integer index in ``0..K-1`` (``K`` = ``num_classes`` or ``len(labels)``).  Anything else raises
    ``ValueError`` naming the valid choices.
    """
    if labels is None:
        labels = LABELS if num_classes in (None, len(LABELS)) else tuple(str(i) for i in range(num_classes))
    labels = list(labels)
    k = len(labels) if num_classes is None else int(num_classes)
    choices = f"None (non-targeted), one of {labels} or an index 0..{k - 1}"
    if target is None or (isinstance(target, str) and target.strip().lower() in ("none", "", "non-targeted")):
        return None
    if isinstance(target, str):
        lowered = [lab.lower() for lab in labels]
        if target.strip().lower() in lowered:
            return lowered.index(target.strip().lower())
        raise ValueError(f"unknown target class {target!r}; use {choices}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or int(target) != target \
            or not 0 <= int(target) < k:
        raise ValueError(f"unknown target {target!r}; use {choices}")
    return int(target)


def check_eps_255(eps_255) -> float:
    """A budget in grey levels (1 = one step of an 8-bit image) as a float in [0, 255]; anything else
    (negative, above 255, not finite, not a number) raises ``ValueError`` naming ``eps_255``."""
    try:
        e = float(eps_255)
    except (TypeError, ValueError):
        raise ValueError(f"eps_255 must be a number of grey levels in [0, 255]; got {eps_255!r}") from None
    if not math.isfinite(e) or not 0.0 <= e <= 255.0:
        raise ValueError(f"eps_255 must be a number of grey levels in [0, 255] (e.g. 2 for 2/255); got {eps_255!r}")
    return e


def eps_from_255(eps_255: float, norm="inf", image_shape=(1, 96, 96)) -> float:
    """Budget in pixel units from grey levels: L∞ ``eps_255/255``; L2 ``eps_255/255·√(C·H·W)``.

    The L2 budget is the L2 norm of a perturbation whose root-mean-square pixel change is
    ``eps_255`` grey levels, so the L∞ ball of the same ``eps_255`` lies inside the L2 ball.

    Arguments:
        eps_255 (float): budget in grey levels, 0 ≤ eps_255 ≤ 255.
        norm (str): ``"inf"`` or ``"2"``.
        image_shape: ``(C, H, W)`` of one image (only used for L2).
    Raises:
        ValueError: a negative, non-finite or > 255 ``eps_255``, or an unknown norm.
    """
    e, norm = check_eps_255(eps_255), parse_norm(norm)
    return e / 255.0 if norm == "inf" else e / 255.0 * math.sqrt(math.prod(image_shape))


def check_eps(eps: float, name: str = "eps", norm: str | None = None) -> float:
    """Budgets are non-negative finite numbers in pixel units.  With ``norm="inf"`` a budget above 1
    (every pixel may change completely: usually a budget meant in 0-255 units) warns, naming ``/255``."""
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (pixel units, [0,1] images); got {eps}")
    if norm == "inf" and eps > 1:
        warnings.warn(f"{name}={eps:g} is above 1, but pixels are in [0, 1], so this L∞ budget can change every "
                      f"pixel completely: did you mean {eps:g}/255 = {eps / 255:.4f}?", stacklevel=3)
    return eps


def check_inputs(x: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None) -> None:
    """Validate an attack's images and labels; raise ``ValueError`` with the fix.

    ``x`` must be a floating tensor ``N×C×H×W`` with values in [0, 1]; ``y`` (optional)
    a 1-D integer tensor of length N with labels in ``[0, num_classes)``.
    """
    if not torch.is_tensor(x) or x.dim() != 4:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"x must be a 4-D tensor N×C×H×W; got {shape}. Add a batch dim with x.unsqueeze(0).")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor in [0,1]; got dtype {x.dtype}. Divide uint8 images by 255.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"x must lie in [0,1] (pixel space); got range [{x.min():.3g}, {x.max():.3g}]. "
                         "Models carry their own normalisation, so pass raw pixels.")
    if y is None:
        return
    if not torch.is_tensor(y) or y.dim() != 1 or y.dtype in (torch.float16, torch.float32, torch.float64):
        raise ValueError(f"y must be a 1-D integer tensor of labels; got "
                         f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"shape mismatch: x has {x.shape[0]} images but y has {y.shape[0]} labels")
    if num_classes is not None and y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels out of range: got [{int(y.min())}, {int(y.max())}] for a model "
                         f"with {num_classes} classes (valid: 0..{num_classes - 1})")


def lp_norm(t: torch.Tensor, norm) -> torch.Tensor:
    """Per-sample L∞ or L2 norm of ``t`` (``N×...`` → ``N``)."""
    flat = t.flatten(1)
    return flat.abs().amax(1) if parse_norm(norm) == "inf" else flat.norm(p=2, dim=1)


def project(delta: torch.Tensor, eps, norm) -> torch.Tensor:
    """Project each sample of ``delta`` (``N×...``) onto the ``norm`` ball of radius ``eps``.

    ``eps`` is a float or a per-sample tensor of shape ``N``.  L∞: clamp; L2: rescale the
    samples whose norm exceeds ``eps``.
    """
    norm = parse_norm(norm)
    eps_t = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device)
    view = (-1,) + (1,) * (delta.dim() - 1)
    if norm == "inf":
        e = eps_t.view(view) if eps_t.dim() else eps_t
        return torch.maximum(torch.minimum(delta, e), -e)
    n = lp_norm(delta, "2")
    factor = torch.clamp(eps_t / (n + 1e-12), max=1.0)
    return delta * factor.view(view)


def num_classes_of(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Number of output classes, from the model's ``num_classes`` attribute or one forward pass."""
    n = getattr(model, "num_classes", None)
    if n is not None:
        return int(n)
    with torch.no_grad():
        return int(model(x[:1]).shape[1])
