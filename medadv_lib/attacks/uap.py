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
    >>> eps = uap_budget(0.02, "inf", image_size=64)        # 2% of the mean L∞ image norm
    >>> res = iterative_uap(model, x_train, eps=eps, norm="inf")
    >>> res.fooling_rate, res.v.abs().max() <= eps
    >>> x_adv = apply_uap(x_test, res.v)
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._common import check_eps, check_inputs, lp_norm, num_classes_of, parse_norm, project
from ..models import predict
from ..runtime import eval_mode, model_device

__all__ = ["UAPResult", "uap_budget", "iterative_uap", "sgd_uap", "random_uap", "apply_uap",
           "save_uap", "load_uap"]


# --------------------------------------------------------------------------------------------
# Budget, application, result type, files
# --------------------------------------------------------------------------------------------

def _norm_key(norm) -> str:
    return "linf" if parse_norm(norm) == "inf" else "l2"


def uap_budget(zeta: float, norm="inf", stats: dict | torch.Tensor | None = None, image_size: int | None = None,
               data_dir=None, crop_top: bool = False, split: str = "train") -> float:
    """The absolute UAP budget ``eps = zeta · mean image norm`` in pixel units.

    Arguments:
        zeta (float): the norm ratio ζ, strictly between 0 and 1 (Hirano et al.: 0.02 = 2%).
        norm (str | float): ``"inf"`` or ``"2"`` (also ``"linf"``, ``"l2"``, ``2``, ``inf``).
        stats: where the mean norm comes from, one of
            * a dict with keys ``"l2"`` and ``"linf"`` (as returned by
              :func:`medadv_lib.data.image_norm_stats`);
            * a tensor of images ``N×C×H×W`` in [0, 1] (norms over the first channel, as
              Hirano et al.'s ``uap_utils.load_data``);
            * ``None``: computed with ``image_norm_stats(image_size, data_dir, crop_top, split)``
              (the training split at the model's input size).
        image_size (int): the model's input size; needed when ``stats`` is ``None``.
    Returns:
        ``eps`` (float), the radius of the ``norm`` ball for :func:`iterative_uap` and friends.
    Raises:
        ValueError: ζ not in (0, 1), an unknown norm, or stats without the needed key.
    """
    z = float(zeta)
    if not math.isfinite(z) or not 0.0 < z < 1.0:
        raise ValueError(f"zeta is the norm ratio ‖v‖/mean‖x‖ and must satisfy 0 < zeta < 1 "
                         f"(e.g. 0.02 for 2%); got {zeta!r}")
    key = _norm_key(norm)   # raises ValueError for an unknown norm
    if stats is None:
        if image_size is None:
            raise ValueError("uap_budget needs either stats= (a dict from image_norm_stats or a tensor of "
                             "images) or image_size= (the model's input size) to compute the mean image norm")
        from ..data import image_norm_stats
        stats = image_norm_stats(int(image_size), data_dir=data_dir, crop_top=crop_top, split=split)
    if torch.is_tensor(stats):
        check_inputs(stats)
        first = stats[:, :1].flatten(1).double()
        mean_norm = float(lp_norm(first, "inf" if key == "linf" else "2").mean())
    else:
        if key not in stats:
            raise ValueError(f"stats has no {key!r} entry (keys: {sorted(stats)}); "
                             "pass the dict returned by medadv_lib.data.image_norm_stats")
        mean_norm = float(stats[key])
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"the mean {key} image norm must be positive; got {mean_norm}")
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


@dataclass
class UAPResult:
    """A universal perturbation and how it was found.

    Attributes:
        v: the perturbation, ``1×1×H×W`` float on the device of ``x``, ``‖v‖ ≤ eps``.
        eps, norm: the budget and its norm (``"inf"`` or ``"2"``).
        method: ``"iterative"``, ``"sgd"``.
        target: the target class index of a targeted UAP, else ``None``.
        history: one dict per pass (iterative) or epoch (SGD): ``fooling_rate`` (vs the
            reference labels, see ``reference``), ``target_success_rate`` (targeted),
            ``v_norm``, ``updates`` (accepted inner steps), ``seconds`` (cumulative).
        seconds: wall-clock time of the whole run.
        passes: passes (iterative) or epochs (SGD) actually run.
        converged: the stopping rate ``1 - delta`` was reached before ``max_iter``/``epochs``.
        stop_reason: ``"fooling_rate"`` (converged), ``"max_iter"``/``"epochs"`` (all passes run) or
            ``"stalled"`` (iterative: a pass changed nothing, so later passes would repeat it).
        reference: ``"clean"`` (fooling = prediction differs from the clean prediction)
            or ``"labels"`` (differs from the true label).
    """

    v: torch.Tensor
    eps: float
    norm: str
    method: str
    target: int | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0
    passes: int = 0
    converged: bool = False
    reference: str = "clean"
    params: dict = field(default_factory=dict)
    stop_reason: str = ""

    @property
    def fooling_rate(self) -> float:
        """Fooling rate (vs ``reference``) on the images it was built on, after the last pass."""
        return self.history[-1]["fooling_rate"] if self.history else float("nan")

    @property
    def target_success_rate(self) -> float | None:
        """Share of the images classified as ``target`` after the last pass (targeted UAPs)."""
        return self.history[-1].get("target_success_rate") if self.history else None

    def summary(self) -> dict:
        """Plain-Python description (JSON-ready): method, budget, rates, time, the history."""
        return {"method": self.method, "eps": float(self.eps), "norm": self.norm, "target": self.target,
                "reference": self.reference, "v_norm": float(lp_norm(self.v, self.norm)[0]),
                "fooling_rate": self.fooling_rate, "target_success_rate": self.target_success_rate,
                "seconds": float(self.seconds), "passes": int(self.passes), "converged": bool(self.converged),
                "stop_reason": self.stop_reason, "params": dict(self.params), "history": list(self.history)}

    def save(self, path: str | os.PathLike) -> Path:
        """Save ``v`` to ``path`` (``.npy``) and :meth:`summary` beside it as ``.json``."""
        path = save_uap(self.v, path)
        from ..runtime import atomic_write_text
        atomic_write_text(json.dumps(self.summary(), indent=2), path.with_suffix(".json"))
        return path


def save_uap(v: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save a UAP as a float32 ``.npy`` array of shape ``1×1×H×W`` (atomically)."""
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_suffix(path.suffix + ".npy") if path.suffix else path.with_suffix(".npy")
    arr = v.detach().float().cpu().numpy()
    if arr.ndim == 2:
        arr = arr[None, None]
    from ..runtime import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
    return path


def load_uap(path: str | os.PathLike, device: torch.device | str | None = None) -> torch.Tensor:
    """Load a UAP saved by :func:`save_uap` (or by Hirano et al.'s scripts) as a ``1×1×H×W`` tensor.

    Accepted array shapes: ``H×W``, ``1×H×W``, ``H×W×1``, ``1×1×H×W``; an ``H×W×3`` array
    (their RGB copy of a grey noise) keeps its first channel.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"UAP file not found: {path}")
    arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1,):
        arr = arr[..., 0]
    arr = arr.squeeze()
    if arr.ndim != 2:
        raise ValueError(f"{path} does not hold a single-channel UAP (array shape {arr.shape}); "
                         "expected H×W, 1×H×W, H×W×1 or 1×1×H×W")
    v = torch.from_numpy(arr.copy())[None, None]
    return v.to(device) if device is not None else v


# --------------------------------------------------------------------------------------------
# Shared argument handling
# --------------------------------------------------------------------------------------------

def _check_target(target, num_classes: int) -> int | None:
    if target is None:
        return None
    if isinstance(target, str):
        from .. import LABELS
        if target in LABELS:
            return LABELS.index(target)
        raise ValueError(f"unknown target class {target!r}; use an index 0..{num_classes - 1} or one of {LABELS}")
    if isinstance(target, bool) or int(target) != target or not 0 <= int(target) < num_classes:
        raise ValueError(f"target must be a class index in 0..{num_classes - 1} for a model with "
                         f"{num_classes} classes; got {target!r}")
    return int(target)


def _setup(model, x, y, eps, norm, target, reference):
    if eps is None:
        raise ValueError("eps is required: the budget in pixel units, e.g. eps=uap_budget(0.02, 'inf', stats)")
    norm, eps = parse_norm(norm), check_eps(eps)
    if eps == 0:
        raise ValueError("eps must be > 0; get it from uap_budget(zeta, norm, ...)")
    n_cls = num_classes_of(model, x)
    check_inputs(x, y, n_cls)
    if x.shape[0] == 0:
        raise ValueError("x holds no images")
    target = _check_target(target, n_cls)
    if reference not in ("clean", "labels"):
        raise ValueError(f"reference must be 'clean' (the model's clean predictions) or 'labels'; got {reference!r}")
    if reference == "labels" and y is None:
        raise ValueError("reference='labels' needs the true labels y")
    return norm, eps, target


def _rates(model, x, v, ref, target, batch_size):
    pred = predict(model, x, batch_size, perturbation=v)
    out = {"fooling_rate": float((pred != ref.cpu()).float().mean())}
    if target is not None:
        out["target_success_rate"] = float((pred == target).float().mean())
    return out


def _stop_rate(rates, target):
    return rates["target_success_rate"] if target is not None else rates["fooling_rate"]


def _log_pass(history, k, rates, v, norm, updates, t0):
    rec = {"pass": k, **rates, "v_norm": float(lp_norm(v, norm)[0]), "updates": int(updates),
           "seconds": time.perf_counter() - t0}
    history.append(rec)
    return rec


# --------------------------------------------------------------------------------------------
# Iterative UAP (Moosavi-Dezfooli et al. 2017; FGSM inner attacker as in Hirano et al. 2020)
# --------------------------------------------------------------------------------------------

def _fgsm_steps(model, xv, ref, target, step, inner_norm, with_pred=False):
    """One FGSM step for each image of ``xv`` (already ``x + v`` clamped); returns the steps ``u``
    (and the predictions on ``xv`` when ``with_pred``: the gradient's forward gives them for free)."""
    xv = xv.detach().requires_grad_(True)
    logits = model(xv)
    if target is None:
        loss = F.cross_entropy(logits, ref, reduction="sum")
    else:
        loss = -F.cross_entropy(logits, torch.full_like(ref, target), reduction="sum")
    grad, = torch.autograd.grad(loss, xv)
    if inner_norm == "inf":
        u = step * grad.sign()
    else:
        u = step * grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
    return (logits.detach().argmax(1), u) if with_pred else u


def _deepfool_fn():
    """The sibling per-image DeepFool (``medadv_lib.attacks.deepfool.deepfool``)."""
    import importlib
    return importlib.import_module(__package__ + ".deepfool").deepfool


def _deepfool_steps(model, xv, ref, kwargs):
    res = _deepfool_fn()(model, xv.detach(), ref, **kwargs)
    return res.x_adv - xv.detach()


def iterative_uap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | None = None,
                  norm="inf", target: int | None = None, step: float = 0.001, max_iter: int = 15,
                  delta: float = 1e-6, batch_size: int = 64, inner: str = "fgsm", aggregate: str = "sum",
                  accept: str = "flipped", inner_norm="inf", reference: str = "clean",
                  deepfool_kwargs: dict | None = None, stop_stalled: bool = True, eval_batch_size: int = 256,
                  seed: int = 0, progress: bool = False) -> UAPResult:
    r"""Iterative UAP of Moosavi-Dezfooli et al. (2017), batched, with an FGSM (or DeepFool) inner step.

    'Universal adversarial perturbations' [https://arxiv.org/abs/1610.08401]; the setting of
    Hirano et al. (2020): ART's ``UniversalPerturbation(attacker="fgsm",
    attacker_params={"eps": 0.001}, delta=1e-6, max_iter=15, eps=ζ·mean‖x‖, norm=norm)``.

    The original, per sample (ART 1.0, one image at a time, in a shuffled order)::

        for each pass (at most max_iter, until the fooling rate reaches 1 - delta):
            for each training image x_i:
                if x_i + v is not fooled (non-targeted: prediction == clean prediction;
                                          targeted: prediction != target):
                    x_adv = FGSM(x_i + v)                 # one step of 0.001 (targeted: toward target)
                    if x_adv is fooled (non-targeted: label changed; targeted: label == target):
                        v = project(x_adv - x_i, eps, norm)

    This implementation, per *mini-batch* of ``batch_size`` shuffled images:

    1. finds the images of the mini-batch not yet fooled by the current ``v`` (one batched forward);
    2. takes the inner step for all of them at once, **every one from the same current v**
       (FGSM: ``u_i = step·sign(∇ loss(clamp(x_i + v)))``; the gradient is taken at the
       clamped image, pixel-space house rule);
    3. keeps the steps that fool their image (``accept="flipped"``, as the original; ``"all"``
       keeps every step);
    4. aggregates the kept steps – ``aggregate="sum"``: ``v ← v + Σ_i u_i`` (default: the same
       number of unit steps per pass as the original, so it moves as far per pass);
       ``"mean"``: ``v ← v + mean_i u_i`` (a consensus step, ≤ ``step`` per pixel per batch) –
    5. projects ``v`` onto the ``eps`` ball once.

    Where this differs from the per-sample original, precisely:

    * *Stale v inside a mini-batch* (Jacobi instead of Gauss–Seidel): in the original, image
      ``i+1`` is tested and stepped from the ``v`` already updated by image ``i``; here all
      images of a mini-batch are tested and stepped from the ``v`` at the start of the
      mini-batch.  With ``batch_size=1`` this and the next point vanish (tested against a
      hand-written per-sample loop).
    * *One projection per mini-batch* instead of one after every accepted image.  For L∞,
      ``clip(clip(v+u₁)+u₂) ≠ clip(v+u₁+u₂)`` when steps of opposite sign meet a face of the box.
    * *No per-image truncation of v*: the original sets ``v := clip(x_i + v + u_i) − x_i``, which
      also truncates ``v`` to image ``i``'s valid range ``[−x_i, 1 − x_i]`` (e.g. resets it to 0
      on pixels where ``x_i`` is saturated white).  Summed over many images that truncation
      would overshoot, so it is dropped; ``x + v`` is clamped to [0, 1] whenever it is applied.
    * ART's original predicts on ``x_i + v`` *unclamped*; here the model always sees ``clamp(x_i + v)``.
    * Cost per pass: one batched forward+backward over the mini-batches (it also tells which
      images are still unfooled; once more than half of the images are fooled, a no-grad forward
      picks them first and only they are back-propagated), one forward of the unfooled images
      (the accept test) and one forward of all images (the stopping test).  The original does
      the same passes per image at batch size 1, plus one more forward per image.
    * The stopping test runs after each pass over all images, as in the original; in addition
      (``stop_stalled=True``) the run stops after a pass that changed nothing: every test and
      inner step depends only on the image and ``v``, so all later passes would repeat it and
      the ``v`` returned is the one ``max_iter`` passes give (up to floating-point differences
      between batch compositions).  The per-sample original spends those passes anyway.

    Arguments:
        model (nn.Module): classifier on [0,1] pixels (a ``MedModel``); run in eval mode.
        x (Tensor): the images the UAP is built on, ``N×C×H×W`` in [0, 1] (C = 1 for X-rays).
        y (Tensor): optional ``N`` true labels; used with ``reference="labels"``, else only
            checked.  (Default: None)
        eps (float): the ball radius in pixel units, ``uap_budget(zeta, norm, ...)``.
        norm (str): ``"inf"`` (default) or ``"2"``: the ball ``v`` is projected onto.
        target (int): class index for a targeted UAP (``medadv_lib.LABELS.index("COVID-19")``).
            (Default: None, non-targeted)
        step (float): FGSM inner step in pixel units. (Default: 0.001, Hirano et al.)
        max_iter (int): at most this many passes over ``x``. (Default: 15)
        delta (float): stop once the fooling rate (targeted: target success rate) ≥ ``1 - delta``.
            (Default: 1e-6)
        batch_size (int): images per batched inner step. (Default: 64)
        inner (str): ``"fgsm"`` (default) or ``"deepfool"`` (the original paper's inner attacker,
            :func:`medadv_lib.attacks.deepfool`, non-targeted only; ``deepfool_kwargs`` go to it,
            default ``{"steps": 50, "overshoot": 0.02, "candidates": 3, "norm": norm}``).
        aggregate (str): ``"sum"`` (default) or ``"mean"`` of the kept steps, see above.
        accept (str): ``"flipped"`` (default, as the original) or ``"all"``.
        inner_norm (str): the FGSM step's norm: ``"inf"`` (sign step; ART's FGSM default,
            which Hirano et al. used for both L∞ and L2 UAPs) or ``"2"`` (``step·∇/‖∇‖₂``).
        reference (str): non-targeted "fooled" means the prediction differs from the clean
            prediction (``"clean"``, default, as ART) or from the true label ``y`` (``"labels"``).
        stop_stalled (bool): stop after a pass without any update (see above). (Default: True)
        eval_batch_size (int): batch size of the per-pass evaluation. (Default: 256)
        seed (int): seeds the shuffling; same seed, same inputs → same ``v`` (on CPU bit for bit).
        progress (bool): tqdm bar over passes. (Default: False)
    Returns:
        :class:`UAPResult` with ``v`` (``1×1×H×W``, ``‖v‖ ≤ eps``) and the per-pass history.
    Examples::
        >>> eps = uap_budget(0.02, "inf", stats=x_train)
        >>> res = iterative_uap(model, x_train, eps=eps)                       # non-targeted
        >>> res = iterative_uap(model, x_train, eps=eps, target=LABELS.index("COVID-19"))
        >>> res.history[-1], res.seconds
    """
    norm, eps, target = _setup(model, x, y, eps, norm, target, reference)
    if inner not in ("fgsm", "deepfool"):
        raise ValueError(f"inner must be 'fgsm' or 'deepfool'; got {inner!r}")
    if aggregate not in ("sum", "mean"):
        raise ValueError(f"aggregate must be 'sum' or 'mean'; got {aggregate!r}")
    if accept not in ("flipped", "all"):
        raise ValueError(f"accept must be 'flipped' or 'all'; got {accept!r}")
    inner_norm = parse_norm(inner_norm)
    step = check_eps(step, "step")
    if int(max_iter) != max_iter or max_iter < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"max_iter and batch_size must be positive integers; got {max_iter}, {batch_size}")
    df_kwargs = {}
    if inner == "deepfool":
        if target is not None:
            raise ValueError("inner='deepfool' is non-targeted only (DeepFool has no target); use inner='fgsm'")
        try:
            _deepfool_fn()
        except (ImportError, AttributeError) as exc:
            raise NotImplementedError("inner='deepfool' needs medadv_lib.attacks.deepfool.deepfool, which is "
                                      "not available; use inner='fgsm'") from exc
        df_kwargs = {"steps": 50, "overshoot": 0.02, "candidates": 3, "norm": norm, **(deepfool_kwargs or {})}

    t0 = time.perf_counter()
    dev = model_device(model, x.device)
    n, (_, _, h, w) = x.shape[0], x.shape
    gen = torch.Generator().manual_seed(int(seed))
    ref = (y if reference == "labels" else predict(model, x, eval_batch_size)).to(x.device)
    v = torch.zeros(1, 1, h, w, dtype=x.dtype, device=dev)
    history: list = []
    converged = False
    bar = tqdm(range(int(max_iter)), desc="iterative UAP", disable=not progress)
    stop_reason = "max_iter"
    merged = True            # one forward with grad for "not yet fooled?" and the FGSM gradient
    with eval_mode(model):
        for k in bar:
            perm = torch.randperm(n, generator=gen)
            updates = 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size].to(x.device)
                xb, rb = x[idx].to(dev), ref[idx].to(dev)
                xv = apply_uap(xb, v)
                if inner == "fgsm" and merged:
                    pred, u_all = _fgsm_steps(model, xv, rb, target, step, inner_norm, with_pred=True)
                    active = pred == rb if target is None else pred != target
                    if not bool(active.any()):
                        continue
                    u = u_all[active]
                else:
                    with torch.no_grad():
                        pred = model(xv).argmax(1)
                    active = pred == rb if target is None else pred != target
                    if not bool(active.any()):
                        continue
                    if inner == "fgsm":
                        u = _fgsm_steps(model, xv[active], rb[active], target, step, inner_norm)
                    else:
                        u = _deepfool_steps(model, xv[active], rb[active], df_kwargs)
                ra = rb[active]
                u = u.mean(1, keepdim=True)                   # one grey step per image (C = 1: identity)
                if accept == "flipped":
                    with torch.no_grad():
                        new = model(apply_uap(xb[active], v + u)).argmax(1)
                    ok = new != ra if target is None else new == target
                    if not bool(ok.any()):
                        continue
                    u = u[ok]
                upd = u.sum(0, keepdim=True) if aggregate == "sum" else u.mean(0, keepdim=True)
                v = project(v + upd, eps, norm)
                updates += u.shape[0]
            rates = _rates(model, x, v, ref, target, eval_batch_size)
            rec = _log_pass(history, k + 1, rates, v, norm, updates, t0)
            bar.set_postfix(fr=f"{rec['fooling_rate']:.3f}", **({"tsr": f"{rec['target_success_rate']:.3f}"}
                                                                   if target is not None else {}))
            # cheaper variant for the next pass: skip the backward of already-fooled images
            merged = _stop_rate(rates, target) < 0.5
            if _stop_rate(rates, target) >= 1.0 - delta:
                converged, stop_reason = True, "fooling_rate"
                break
            if updates == 0 and stop_stalled:
                # v did not change during a whole pass.  Every test and inner step depends only on
                # (image, v), so every further pass would repeat this one: stop (same v as max_iter).
                stop_reason = "stalled"
                break
    bar.close()
    params = {"step": step, "max_iter": int(max_iter), "delta": delta, "batch_size": int(batch_size),
              "inner": inner, "aggregate": aggregate, "accept": accept, "inner_norm": inner_norm, "seed": int(seed),
              "n": int(n), "stop_reason": stop_reason}
    if inner == "deepfool":
        params["deepfool"] = df_kwargs
    return UAPResult(v=v.detach().to(x.device), eps=eps, norm=norm, method="iterative", target=target,
                     history=history, seconds=time.perf_counter() - t0, passes=len(history),
                     converged=converged, reference=reference, params=params, stop_reason=stop_reason)


# --------------------------------------------------------------------------------------------
# SGD UAP (Shafahi et al. 2020)
# --------------------------------------------------------------------------------------------

def sgd_uap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | None = None,
            norm="inf", target: int | None = None, epochs: int = 10, batch_size: int = 32,
            lr: float | None = None, lr_decay: float = 0.9, loss_clip: float | None = None,
            reference: str = "clean", delta: float = 1e-6, eval_batch_size: int = 256, seed: int = 0,
            progress: bool = False) -> UAPResult:
    r"""Mini-batch SGD UAP of Shafahi et al. (2020): signed mean gradient of a clipped loss, projected.

    'Universal adversarial training' [https://arxiv.org/abs/1811.11304], Algorithm 1
    (the "batched" UAP, reported ~13× faster than the iterative method)::

        for each epoch e, for each mini-batch B (shuffled):
            g = ∇_v  mean_{x∈B} ℓ̂(clamp(x + v))            # one forward/backward for the batch
            v = project(v + lr·0.9^e·sign(g), eps, norm)    # L2: lr·g/‖g‖₂ instead of sign

    The loss ℓ̂ is clipped so that images already fooled stop steering ``v``:

    * non-targeted: ``ℓ̂ = min(CE(logits, clean prediction), loss_clip)`` (default ``loss_clip=10``);
    * targeted: ascend ``−max(CE(logits, target), loss_clip)`` (default ``loss_clip=0.05``,
      i.e. images already classified as the target with p ≥ 0.95 stop contributing).

    Arguments:
        model, x, y, eps, norm, target, reference, delta, eval_batch_size, seed, progress:
            as :func:`iterative_uap`.
        epochs (int): passes over ``x``. (Default: 10)
        batch_size (int): images per gradient step. (Default: 32)
        lr (float): first step size in pixel units. (Default: ``eps/5``)
        lr_decay (float): multiplicative decay of ``lr`` per epoch, in (0, 1]. (Default: 0.9)
        loss_clip (float): see above. (Default: None → 10 non-targeted, 0.05 targeted)
    Returns:
        :class:`UAPResult` with the per-epoch history.
    Examples::
        >>> res = sgd_uap(model, x_train, eps=uap_budget(0.02, "2", stats=x_train), norm="2", epochs=10)
    """
    norm, eps, target = _setup(model, x, y, eps, norm, target, reference)
    if int(epochs) != epochs or epochs < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive integers; got {epochs}, {batch_size}")
    lr = eps / 5 if lr is None else check_eps(lr, "lr")
    if not 0 < float(lr_decay) <= 1:
        raise ValueError(f"lr_decay must be in (0, 1]; got {lr_decay}")
    if loss_clip is None:
        loss_clip = 10.0 if target is None else 0.05
    loss_clip = check_eps(loss_clip, "loss_clip")

    t0 = time.perf_counter()
    dev = model_device(model, x.device)
    n, (_, _, h, w) = x.shape[0], x.shape
    gen = torch.Generator().manual_seed(int(seed))
    ref = (y if reference == "labels" else predict(model, x, eval_batch_size)).to(x.device)
    v = torch.zeros(1, 1, h, w, dtype=x.dtype, device=dev)
    history: list = []
    converged = False
    stop_reason = "epochs"
    bar = tqdm(range(int(epochs)), desc="SGD UAP", disable=not progress)
    with eval_mode(model):
        for e in bar:
            lr_e = lr * float(lr_decay) ** e
            perm = torch.randperm(n, generator=gen)
            steps = 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size].to(x.device)
                xb, rb = x[idx].to(dev), ref[idx].to(dev)
                vv = v.detach().requires_grad_(True)
                logits = model((xb + vv).clamp(0, 1))
                if target is None:
                    obj = F.cross_entropy(logits, rb, reduction="none").clamp(max=loss_clip).mean()
                else:
                    tgt = torch.full_like(rb, target)
                    obj = -F.cross_entropy(logits, tgt, reduction="none").clamp(min=loss_clip).mean()
                g, = torch.autograd.grad(obj, vv)
                if norm == "inf":
                    d = g.sign()
                else:
                    d = g / (g.norm() + 1e-12)
                v = project(v + lr_e * d, eps, norm)
                steps += 1
            rates = _rates(model, x, v, ref, target, eval_batch_size)
            rec = _log_pass(history, e + 1, rates, v, norm, steps, t0)
            rec["epoch"], rec["lr"] = e + 1, lr_e
            bar.set_postfix(fr=f"{rec['fooling_rate']:.3f}")
            if _stop_rate(rates, target) >= 1.0 - delta:
                converged, stop_reason = True, "fooling_rate"
                break
    bar.close()
    params = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "lr_decay": float(lr_decay),
              "loss_clip": float(loss_clip), "delta": delta, "seed": int(seed), "n": int(n)}
    return UAPResult(v=v.detach().to(x.device), eps=eps, norm=norm, method="sgd", target=target,
                     history=history, seconds=time.perf_counter() - t0, passes=len(history),
                     converged=converged, reference=reference, params=params, stop_reason=stop_reason)


# --------------------------------------------------------------------------------------------
# Random control
# --------------------------------------------------------------------------------------------

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
            rescaled: for L∞ every pixel is ±eps) or ``"gaussian"`` (N(0,1), rescaled).
        seed (int): seed of the noise.
    Returns:
        ``1×1×H×W`` tensor with ``lp_norm(v, norm) == eps`` (up to float rounding).
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
    if kind == "uniform":
        r = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64) * 2 - 1
    elif kind == "sign":
        r = torch.randint(0, 2, (1, 1, h, w), generator=gen).double() * 2 - 1
    elif kind == "gaussian":
        r = torch.randn(1, 1, h, w, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"kind must be 'uniform', 'sign' or 'gaussian'; got {kind!r}")
    r = r / lp_norm(r, norm).clamp_min(1e-300).view(1, 1, 1, 1) * eps
    return r.to(device=device, dtype=dtype)
