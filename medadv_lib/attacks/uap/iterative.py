"""Iterative UAP (Moosavi-Dezfooli et al. 2017) with an FGSM (or DeepFool) inner step, as Hirano et al. ran it."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from ...runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from ...runtime import eval_mode
from .._common import check_eps, parse_norm, project
from ..deepfool import deepfool
from ._common import _log_pass, _rates, _setup, _start, _stop_rate
from .budget import apply_uap
from .result import UAPResult


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
    """The per-image DeepFool (``medadv_lib.attacks.deepfool.deepfool``), imported when needed."""
    return deepfool


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

    t0, dev, gen, ref, v = _start(model, x, y, reference, eval_batch_size, seed)
    n = x.shape[0]
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
