"""Mini-batch SGD UAP (Shafahi et al. 2020, *Universal adversarial training*)."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from ...runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from .._common import check_eps, project
from ...models import predict
from ...runtime import eval_mode
from ._common import _log_pass, _rates, _setup, _start, _stop_rate
from .result import UAPResult


def sgd_uap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | None = None,
            norm="inf", target: int | None = None, epochs: int = 10, batch_size: int = 32,
            lr: float | None = None, lr_decay: float = 0.9, loss_clip: float | None = None,
            reference: str = "clean", delta: float = 1e-6, eval_batch_size: int = 256, seed: int = 0,
            progress: bool = False, holdout: torch.Tensor | None = None, eval_every: int | None = None,
            patience: int | None = None, min_delta: float = 0.0, max_steps: int | None = None,
            lr_ratio: float = 0.2) -> UAPResult:
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

    **Stopping on a plateau.**  With ``patience``, the builder measures its stopping rate (fooling rate,
    or the target's share for a targeted UAP) every ``eval_every`` steps on ``holdout`` — images it
    never steps on (default: the build images) — and stops once ``patience`` measurements in a row
    have not beaten the best by more than ``min_delta``: ``converged`` is then True with
    ``stop_reason = "plateau"``, and ``v`` is the best measured one.  Without a plateau it stops after
    ``epochs`` passes or ``max_steps`` steps (``converged`` False, ``stop_reason`` ``"epochs"`` or
    ``"budget"``): an attacker that ran out of budget says so.

    Arguments:
        model, x, y, eps, norm, target, reference, delta, eval_batch_size, seed, progress:
            as :func:`iterative_uap`.
        epochs (int): passes over ``x`` at most. (Default: 10)
        batch_size (int): images per gradient step. (Default: 32)
        lr (float): first step size in pixel units. (Default: ``lr_ratio × eps``)
        lr_ratio (float): the first step as a share of the budget when ``lr`` is not given, in (0, 1]. The
            course uses 0.5: from a fifth of the budget its FAST UAP settled in a weaker pattern (the images
            herded into pneumonia, test re-weighted fooling 0.43) than from half of it (into COVID-19, 0.79).
            (Default: 0.2)
        lr_decay (float): multiplicative decay of ``lr`` per epoch, in (0, 1]. (Default: 0.9)
        loss_clip (float): see above. (Default: None → 10 non-targeted, 0.05 targeted)
        holdout (Tensor): images the stopping rate is measured on (their clean predictions are the
            reference; ``reference="labels"`` needs them in ``x``'s stead, so it is refused). (Default: ``x``)
        eval_every (int): steps between two measurements. (Default: one epoch)
        patience (int): measurements without improvement before stopping; ``None`` never stops on a
            plateau. (Default: None)
        min_delta (float): the improvement that counts, as a rate. (Default: 0, any gain)
        max_steps (int): step budget; ``None``: ``epochs`` alone bounds the run. (Default: None)
    Returns:
        :class:`UAPResult` with one history record per measurement (``step``, ``epoch``, the rates on the
        images measured, ``on``: ``"build"`` or ``"holdout"``).
    Examples::
        >>> res = sgd_uap(model, x_train, eps=uap_budget(0.02, "2", stats=x_train), norm="2", epochs=10)
        >>> res = sgd_uap(model, x_build, eps=eps, holdout=x_hold, eval_every=8, patience=4, max_steps=400)
        >>> res.converged, res.stop_reason, res.history[-1]["step"]
    """
    norm, eps, target = _setup(model, x, y, eps, norm, target, reference)
    if int(epochs) != epochs or epochs < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive integers; got {epochs}, {batch_size}")
    for name, val in (("eval_every", eval_every), ("patience", patience), ("max_steps", max_steps)):
        if val is not None and (int(val) != val or val < 1):
            raise ValueError(f"{name} must be a positive integer or None; got {val!r}")
    if holdout is not None and reference == "labels":
        raise ValueError("holdout images carry no labels here: use reference='clean' with holdout, or no holdout")
    if not 0 < float(lr_ratio) <= 1:
        raise ValueError(f"lr_ratio must be in (0, 1]; got {lr_ratio}")
    lr = float(lr_ratio) * eps if lr is None else check_eps(lr, "lr")
    if not 0 < float(lr_decay) <= 1:
        raise ValueError(f"lr_decay must be in (0, 1]; got {lr_decay}")
    if loss_clip is None:
        loss_clip = 10.0 if target is None else 0.05
    loss_clip = check_eps(loss_clip, "loss_clip")

    t0, dev, gen, ref, v = _start(model, x, y, reference, eval_batch_size, seed)
    n = x.shape[0]
    if holdout is None:
        x_m, ref_m, on = x, ref, "build"
    else:
        x_m, on = holdout, "holdout"
        ref_m = predict(model, holdout, eval_batch_size).to(holdout.device)
    per_epoch = -(-n // int(batch_size))
    every = int(eval_every or per_epoch)
    history: list = []
    converged, stop_reason = False, "epochs"
    best, best_v, best_i, stale, step, logged = -1.0, v, None, 0, 0, 0
    total = min(int(epochs) * per_epoch, int(max_steps or 1 << 62))
    bar = tqdm(total=total, desc="SGD UAP", unit="step", disable=not progress)
    with eval_mode(model):
        for e in range(int(epochs)):
            lr_e = lr * float(lr_decay) ** e
            perm = torch.randperm(n, generator=gen)
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
                d = g.sign() if norm == "inf" else g / (g.norm() + 1e-12)
                v = project(v + lr_e * d, eps, norm)
                step += 1
                bar.update(1)
                last = i + batch_size >= n or step == total
                if step % every and not last:
                    continue
                rates = _rates(model, x_m, v, ref_m, target, eval_batch_size)
                rec = _log_pass(history, len(history) + 1, rates, v, norm, step - logged, t0)
                rec.update(step=step, epoch=round(step / per_epoch, 3), lr=lr_e, on=on)
                logged = step
                bar.set_postfix(fr=f"{rec['fooling_rate']:.3f}")
                r = _stop_rate(rates, target)
                if r > best + min_delta:
                    best, best_v, best_i, stale = r, v.detach().clone(), len(history) - 1, 0
                else:
                    stale += 1
                if r >= 1.0 - delta:
                    converged, stop_reason, best_v, best_i = True, "fooling_rate", v.detach().clone(), len(history) - 1
                elif patience is not None and stale >= patience:
                    converged, stop_reason = True, "plateau"
                elif step >= total and total < int(epochs) * per_epoch:
                    stop_reason = "budget"
                if converged or step >= total:
                    break
            if converged or step >= total:
                break
    bar.close()
    v_out = best_v if patience is not None else v
    params = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "lr_decay": float(lr_decay),
              "lr_ratio": float(lr_ratio),
              "loss_clip": float(loss_clip), "delta": delta, "seed": int(seed), "n": int(n), "steps": int(step),
              "holdout": None if holdout is None else int(holdout.shape[0]), "eval_every": every,
              "patience": patience, "min_delta": float(min_delta), "max_steps": max_steps,
              "best_rate": None if patience is None else float(best),
              "best_measurement": None if patience is None else best_i}
    return UAPResult(v=v_out.detach().to(x.device), eps=eps, norm=norm, method="sgd", target=target,
                     history=history, seconds=time.perf_counter() - t0, passes=len(history),
                     converged=converged, reference=reference, params=params, stop_reason=stop_reason)
