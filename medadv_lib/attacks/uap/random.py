"""The random control: noise with exactly the UAP's norm."""
from __future__ import annotations

import torch

from .._common import check_eps, lp_norm, parse_norm


def random_uap(shape_or_like, eps: float, norm="inf", kind: str = "uniform", seed: int = 0) -> torch.Tensor:
    """Random noise with *exactly* ``‖v‖ = eps`` (on the sphere, not merely in the ball): the control.

    Hirano et al. compare each UAP with random noise of the same norm to show that its
    effect is not "just noise".

    Arguments:
        shape_or_like: ``(H, W)``, ``(1, 1, H, W)``, or a tensor of images ``N×C×H×W`` (or a UAP)
            whose size, device and dtype are used.
        eps (float): the norm of the noise, > 0, pixel units.
        norm (str): ``"inf"`` or ``"2"``.
        kind (str): ``"uniform"`` (U[-1,1] per pixel, rescaled), ``"sign"`` (±1 per pixel,
            rescaled: for L∞ every pixel is ±eps), ``"gaussian"`` (N(0,1), rescaled) or ``"shuffle"``:
            the pixels of the UAP ``shape_or_like`` (a ``1×1×H×W`` tensor) in a random order — the
            control that matches the UAP's L2 *and* L∞ norms and its histogram of values, where
            rescaled noise matches only one norm (uniform noise at the UAP's L∞ has about 70 % of
            its L2 energy).  ``eps`` must then be at least the UAP's norm; it is not rescaled.
        seed (int): seed of the noise.
    Returns:
        ``1×1×H×W`` tensor with ``lp_norm(v, norm) == eps`` (up to float rounding; ``"shuffle"``: the
        UAP's own norms).
    """
    norm, eps = parse_norm(norm), check_eps(eps)
    if torch.is_tensor(shape_or_like):
        like = shape_or_like
        h, w = like.shape[-2:]
        device, dtype = like.device, (like.dtype if like.is_floating_point() else torch.float32)
    else:
        shape = tuple(int(s) for s in shape_or_like)
        if len(shape) < 2 or any(s < 1 for s in shape) or any(s != 1 for s in shape[:-2]):
            raise ValueError(f"shape must be (H, W) or (1, 1, H, W); got {shape_or_like!r}")
        h, w = shape[-2:]
        device, dtype = torch.device("cpu"), torch.float32
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "shuffle":
        if not torch.is_tensor(shape_or_like) or shape_or_like.numel() != h * w:
            raise ValueError("kind='shuffle' permutes a UAP's pixels: pass the UAP (a 1×1×H×W tensor) as "
                             "shape_or_like")
        v = shape_or_like.detach()
        if float(lp_norm(v, norm)[0]) > eps * (1 + 1e-5):
            raise ValueError(f"kind='shuffle': the UAP's {norm}-norm {float(lp_norm(v, norm)[0]):.4g} exceeds eps={eps:.4g}")
        flat = v.reshape(-1)
        return flat[torch.randperm(flat.numel(), generator=gen).to(flat.device)].reshape(1, 1, h, w).to(dtype)
    if kind == "uniform":
        r = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64) * 2 - 1
    elif kind == "sign":
        r = torch.randint(0, 2, (1, 1, h, w), generator=gen).double() * 2 - 1
    elif kind == "gaussian":
        r = torch.randn(1, 1, h, w, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"kind must be 'uniform', 'sign', 'gaussian' or 'shuffle'; got {kind!r}")
    r = r / lp_norm(r, norm).clamp_min(1e-300).view(1, 1, 1, 1) * eps
    return r.to(device=device, dtype=dtype)
