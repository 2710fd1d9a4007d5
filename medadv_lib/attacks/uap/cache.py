"""The course's UAP grid and file cache: keys, fingerprints, build-or-load.

A UAP is identified by its grid key ``(zeta, norm, target)`` (:func:`uap_key`: ζ a float such as 0.02,
``norm`` ``"inf"`` or ``"2"``, ``target`` ``None`` or a class index) and by what it was built from: the
model weights, the build images, the method and its settings (:func:`fingerprint`).  With a
``cache_dir`` each UAP is saved as ``.npy`` + ``.json`` (atomically) under :func:`cache_path` and
loaded instead of rebuilt — by notebooks, widgets, :func:`medadv_lib.course.course_uap` and
``medadv uap`` alike, so the same arguments give the same file.

Example::

    >>> uaps = precompute_uaps(model, x_train, zetas=(0.01, 0.02), norms=("inf",), targets=(None, 2),
    ...                        stats=image_norm_stats(112), epochs=3, cache_dir="runs/uaps")
    >>> res = build_uap(model, x_train, 0.02, "inf", stats=image_norm_stats(112), epochs=3, cache_dir="runs/uaps")
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from ... import LABELS
from .._common import parse_norm, parse_target
from .budget import uap_budget
from .iterative import iterative_uap
from .result import UAPResult, load_uap
from .sgd import sgd_uap

__all__ = ["ZETA_GRID", "METHODS", "uap_key", "grid_axes", "check_zeta", "fingerprint", "cache_path",
           "load_result", "build_uap", "precompute_uaps"]

ZETA_GRID = (0.005, 0.01, 0.02, 0.04)
"""Default ζ values (norm ratios: 0.02 = 2% of the mean image norm, Hirano et al.'s headline)."""

METHODS = {"sgd": sgd_uap, "iterative": iterative_uap}


def check_zeta(zeta) -> float:
    try:
        z = float(zeta)
    except (TypeError, ValueError):
        raise ValueError(f"zeta is the norm ratio ‖v‖/mean‖x‖, a number with 0 < zeta < 1 "
                         f"(e.g. 0.02 for 2%); got {zeta!r}") from None
    if not math.isfinite(z) or not 0.0 < z < 1.0:
        raise ValueError(f"zeta is the norm ratio ‖v‖/mean‖x‖, a number with 0 < zeta < 1 "
                         f"(e.g. 0.02 for 2%); got {zeta!r}")
    return round(z, 10)          # 0.1 + 0.2 style float noise must not make two keys


def uap_key(zeta, norm="inf", target=None, labels=LABELS) -> tuple:
    """The grid key ``(zeta, norm, target)`` in canonical form.

    Arguments:
        zeta (float): norm ratio, 0 < ζ < 1.
        norm: ``"inf"``/``"linf"``/``inf`` or ``"2"``/``"l2"``/``2``.
        target: ``None`` (or ``"none"``) for a non-targeted UAP, a class name or a class index.
    Raises:
        ValueError: ζ outside (0, 1) or not a number, an unknown norm or target.
    """
    return check_zeta(zeta), parse_norm(norm), parse_target(target, labels)


def grid_axes(uaps: dict, value=None) -> tuple:
    """The axes of a UAP grid ``{(zeta, norm, target): UAPResult}`` and a starting ζ on it.

    Returns ``(zetas, norms, value)``: the sorted ζ values, the norm kinds present (``"inf"`` before
    ``"2"``) and ``value`` as a grid ζ (default: 0.02 if on the grid, else the middle ζ).
    Raises ``ValueError`` for an empty grid or a ``value`` not on it."""
    if not uaps:
        raise ValueError("uaps is empty: build a grid first with precompute_uaps(model, x_train, ...)")
    zetas = sorted({k[0] for k in uaps})
    norms = [n for n in ("inf", "2") if any(k[1] == n for k in uaps)]
    if value is None:
        value = 0.02 if 0.02 in zetas else zetas[len(zetas) // 2]
    if check_zeta(value) not in zetas:
        raise ValueError(f"value {value!r} is not on the ζ grid {zetas}")
    return zetas, norms, check_zeta(value)


def target_name(target, labels=LABELS) -> str:
    """The name of a UAP's target in tables and labels: ``"none"`` (non-targeted) or the class name."""
    return "none" if target is None else str(labels[target])


def zeta_pct(zeta: float) -> str:
    """ζ as the percentage the course writes it: ``0.02`` → ``"2%"``."""
    return f"{100 * zeta:g}%"


def fingerprint(model: torch.nn.Module, x: torch.Tensor, extra: dict) -> str:
    """Short hash of the model weights, the build images and the attack settings (file-cache key)."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=_by_content).encode())
    return h.hexdigest()[:10]


def _by_content(obj) -> str:
    """JSON stand-in for a setting that is not JSON: a tensor (e.g. the held-out images of
    ``sgd_uap(holdout=...)``) by the hash of its contents, anything else by ``str``."""
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        return f"tensor{tuple(t.shape)}:" + hashlib.sha1(t.numpy().tobytes()).hexdigest()
    return str(obj)


def load_result(path: Path, device) -> UAPResult:
    s = json.loads(path.with_suffix(".json").read_text())
    params = dict(s.get("params", {}))
    params["loaded_from"] = str(path)
    return UAPResult(v=load_uap(path, device=device), eps=s["eps"], norm=s["norm"], method=s["method"],
                     target=s["target"], history=s["history"], seconds=s["seconds"], passes=s["passes"],
                     converged=s["converged"], reference=s["reference"], params=params,
                     stop_reason=s.get("stop_reason", ""))


def precompute_uaps(model: torch.nn.Module, x: torch.Tensor, zetas=ZETA_GRID, norms=("inf", "2"),
                    targets=(None,), stats=None, method: str = "sgd", uaps: dict | None = None,
                    cache_dir=None, seed: int = 0, progress: bool = False, labels=LABELS,
                    **attack_kwargs) -> dict:
    """Build one UAP per grid point ``(ζ, norm, target)``; return ``{key: UAPResult}``.

    Every combination of ``zetas × norms × targets`` is built with the same ``method`` and
    settings on the same images ``x`` (the training images, never the test images).  Keys already
    in ``uaps`` are kept, not rebuilt, so a grid can be extended in steps.

    Arguments:
        model (nn.Module): the classifier (on its device; ``x`` may stay on the CPU).
        x (Tensor): ``N×C×H×W`` images in [0, 1] the UAPs are built on.
        zetas: norm ratios ζ, each in (0, 1). (Default: :data:`ZETA_GRID`)
        norms: ``"inf"`` and/or ``"2"``. (Default: both)
        targets: ``None`` (non-targeted) and/or class indices or names. (Default: ``(None,)``)
        stats: the mean image norm behind ``eps = ζ · mean‖x‖``: a dict from
            :func:`medadv_lib.data.image_norm_stats` (the whole training split, Hirano et al.)
            or a tensor of images. (Default: None → the build images ``x``)
        method (str): ``"sgd"`` (:func:`~medadv_lib.attacks.sgd_uap`, default) or
            ``"iterative"`` (:func:`~medadv_lib.attacks.iterative_uap`).
        uaps (dict): an existing grid to extend (modified in place and returned).
        cache_dir: a folder; each UAP is saved there as ``.npy`` + ``.json`` (atomic writes)
            under a name holding the architecture, method, norm, ζ, target, ``eps`` and a hash of
            the model weights, ``x``, ``method`` and its settings,
            and loaded instead of rebuilt next time (its ``params["loaded_from"]`` says so; a new one's ``params["saved_to"]``).
            (Default: None, no files)
        seed (int): seed of the attack's shuffling.
        progress (bool): a tqdm bar per attack.
        labels: class names (target names and file names). (Default: :data:`medadv_lib.LABELS`)
        attack_kwargs: passed to the attack (e.g. ``epochs=5`` for SGD, ``max_iter=15`` iterative).
    Returns:
        the dict ``uaps`` with a :class:`~medadv_lib.attacks.UAPResult` per key.
    Raises:
        ValueError: an empty grid, a bad ζ, norm or target, or an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {method!r}")
    keys = [uap_key(z, n, t, labels) for z in zetas for n in norms for t in targets]
    if not keys:
        raise ValueError("the grid is empty: give at least one zeta, one norm and one target (None = non-targeted)")
    uaps = {} if uaps is None else uaps
    stats = x if stats is None else stats
    todo = [k for k in dict.fromkeys(keys) if k not in uaps]
    fp = None
    if cache_dir is not None and todo:
        fp = fingerprint(model, x, {"method": method, "seed": int(seed), "kwargs": attack_kwargs})
    for key in todo:
        uaps[key] = _build(model, x, key, stats, method, cache_dir, fp, seed, progress, labels, attack_kwargs)
    return uaps


def cache_path(cache_dir, model: torch.nn.Module, method: str, key: tuple, eps: float, fp: str, labels=LABELS) -> Path:
    """The file a cached UAP lives in: architecture, method, norm kind, ζ, target, ``eps`` and the hash
    :func:`fingerprint` of the model weights, the build images and the settings.

    Each field after the method is a prefix and a value, the norm kind spelled as everywhere else
    (``"inf"`` or ``"2"``): ``resnet18-sgd-norminf-z2pct-none-eps0.0176-<hash>.npy``,
    ``resnet18-sgd-norm2-z2pct-covid19-eps1.3-<hash>.npy``."""
    zeta, norm, target = key
    tname = target_name(target, labels).replace("-", "").lower()
    arch = str(getattr(model, "arch", type(model).__name__))
    return Path(cache_dir) / (f"{arch}-{method}-norm{parse_norm(norm)}-z{100 * zeta:g}pct-"
                              f"{tname}-eps{eps:.6g}-{fp}.npy")


def _build(model, x, key, stats, method, cache_dir, fp, seed, progress, labels, attack_kwargs) -> UAPResult:
    zeta, norm, target = key
    eps = uap_budget(zeta, norm, stats)
    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, model, method, key, eps, fp, labels)
        if path.is_file() and path.with_suffix(".json").is_file():
            return load_result(path, x.device)
    res = METHODS[method](model, x, eps=eps, norm=norm, target=target, seed=seed, progress=progress,
                          **attack_kwargs)
    res.params["zeta"] = zeta
    if path is not None:
        res.save(path)
        res.params["saved_to"] = str(path)
    return res


def build_uap(model: torch.nn.Module, x: torch.Tensor, zeta, norm="inf", target=None, stats=None,
              method: str = "sgd", cache_dir=None, seed: int = 0, progress: bool = False, labels=LABELS,
              **attack_kwargs) -> UAPResult:
    """One UAP, ``(ζ, norm, target)``, built on ``x`` — or loaded from ``cache_dir`` when the same
    model weights, build images, method and settings made it before.  Same file as the same grid
    point of :func:`precompute_uaps` (the grid calls this very code)."""
    return precompute_uaps(model, x, zetas=(zeta,), norms=(norm,), targets=(target,), stats=stats, method=method,
                           cache_dir=cache_dir, seed=seed, progress=progress, labels=labels,
                           **attack_kwargs)[uap_key(zeta, norm, target, labels)]
