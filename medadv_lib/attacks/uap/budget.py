"""The UAP budget ``eps = ζ · mean image norm`` and applying a UAP to images."""
from __future__ import annotations

import math

import torch

from .._common import check_inputs, lp_norm, parse_norm


def uap_budget(zeta: float, norm="inf", stats: dict | torch.Tensor | None = None) -> float:
    """The absolute UAP budget ``eps = zeta · mean image norm`` in pixel units.

    Arguments:
        zeta (float): the norm ratio ζ, strictly between 0 and 1 (Hirano et al.: 0.02 = 2%).
        norm (str | float): ``"inf"`` or ``"2"`` (also ``"linf"``, ``"l2"``, ``2``, ``inf``).
        stats: where the mean norm comes from, one of
            * a dict with keys ``"mean_norm_inf"`` and ``"mean_norm_2"`` (as returned by
              :func:`medadv_lib.data.image_norm_stats`);
            * a tensor of images ``N×C×H×W`` in [0, 1] (norms over the first channel, as
              Hirano et al.'s ``uap_utils.load_data``).
            The attacks never read the dataset: for the training split at the model's input size,
            pass ``image_norm_stats(image_size, data_dir)``.
    Returns:
        ``eps`` (float), the radius of the ``norm`` ball for :func:`iterative_uap` and friends.
    Raises:
        ValueError: ζ not in (0, 1), an unknown norm, no stats, or stats without the needed key.
    """
    z = float(zeta)
    if not math.isfinite(z) or not 0.0 < z < 1.0:
        raise ValueError(f"zeta is the norm ratio ‖v‖/mean‖x‖ and must satisfy 0 < zeta < 1 "
                         f"(e.g. 0.02 for 2%); got {zeta!r}")
    kind = parse_norm(norm)   # raises ValueError for an unknown norm
    key = f"mean_norm_{kind}"
    if stats is None:
        raise ValueError("uap_budget needs stats= to know the mean image norm: a tensor of images, or the dict "
                         "from medadv_lib.data.image_norm_stats(image_size, data_dir) (the training split at "
                         "the model's input size)")
    if torch.is_tensor(stats):
        check_inputs(stats)
        first = stats[:, :1].flatten(1).double()
        mean_norm = float(lp_norm(first, kind).mean())
    else:
        if key not in stats:
            raise ValueError(f"stats has no {key!r} entry (keys: {sorted(stats)}); "
                             "pass the dict returned by medadv_lib.data.image_norm_stats")
        mean_norm = float(stats[key])
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"the mean image norm ({key}) must be positive; got {mean_norm}")
    return z * mean_norm


def apply_uap(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Add the universal perturbation to every image and clamp to [0, 1]: ``(x + v).clamp(0, 1)``.

    ``v`` (``1×1×H×W``, or ``H×W``) is broadcast over the batch and the channels of ``x``
    (``N×C×H×W``) and moved to ``x``'s device and dtype.
    """
    v = v.to(device=x.device, dtype=x.dtype)
    if v.dim() == 2:
        v = v[None, None]
    return (x + v).clamp(0, 1)
