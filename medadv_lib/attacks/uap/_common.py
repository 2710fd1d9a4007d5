"""Argument handling and per-pass bookkeeping shared by the UAP builders."""
from __future__ import annotations

import time

import torch

from .._common import check_eps, check_inputs, lp_norm, num_classes_of, parse_norm, parse_target
from ...models import predict
from ...runtime import model_device


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
    target = parse_target(target, num_classes=n_cls)
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


def _start(model, x, y, reference, eval_batch_size, seed):
    """What every UAP build starts from: the clock, the model's device, a seeded CPU generator for the
    batch order, the reference predictions (clean ones or the labels) and a zero ``v`` (``1×1×H×W``)."""
    t0 = time.perf_counter()
    dev = model_device(model, x.device)
    gen = torch.Generator().manual_seed(int(seed))
    ref = (y if reference == "labels" else predict(model, x, eval_batch_size)).to(x.device)
    v = torch.zeros(1, 1, *x.shape[-2:], dtype=x.dtype, device=dev)
    return t0, dev, gen, ref, v
