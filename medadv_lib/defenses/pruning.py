"""Pruning (Chen, Zhao & Chen 2021's "pruning module"), both kinds the field uses, from the libraries
that implement them:

* **unstructured** global magnitude pruning with ``torch.nn.utils.prune.global_unstructured``: the
  smallest ``amount`` of all convolution/linear weights (the classifier head and attention modules
  excepted) are set to zero, the masks stay on while fine-tuning, and :func:`make_permanent`
  (``prune.remove``) bakes them in before saving.  Same architecture, sparse weights: no speed-up
  on dense kernels, which is why the course measures latency;
* **structured** channel pruning with ``torch-pruning`` (Fang et al. 2023, DepGraph): whole channels
  with the smallest L2 norm are removed, residual-coupled channels together, so the network really
  gets smaller (fewer parameters, FLOPs and CPU latency; :func:`model_cost` measures them).

Both record themselves in the model spec (``prune_unstructured``: the amount, for the record;
``slim``: the new shape of every changed layer), so :func:`~medadv_lib.models.load_checkpoint`
rebuilds a pruned model and loads it with ``weights_only=True``.
"""
from __future__ import annotations

import time

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from ..models import Float32Linear, MedModel
from ..models.modifications import layer_shapes
from ..runtime import eval_mode, model_device


def prunable_layers(model: MedModel) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the convolutions and linear layers pruning may touch: all of
    ``model.net`` except the classifier head (a :class:`~medadv_lib.models.Float32Linear`) and
    attention modules (their gates start at zero and would be pruned first)."""
    return [(n, m) for n, m in model.net.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, Float32Linear)
            and ".attention." not in f".{n}."]


def sparsity(model: MedModel) -> float:
    """Share of exactly-zero weights over :func:`prunable_layers` (masks applied)."""
    zeros = total = 0
    for _, m in prunable_layers(model):
        w = m.weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


def prune_unstructured(model: MedModel, amount: float) -> MedModel:
    """Zero the ``amount`` (0–1) smallest-magnitude weights over all :func:`prunable_layers` at once
    (global L1), in place, and record it in the spec.  The masks stay attached (fine-tuning keeps
    the pruned weights at zero) until :func:`make_permanent`."""
    if not 0 <= amount < 1:
        raise ValueError(f"prune amount must be in [0, 1); got {amount}")
    params = [(m, "weight") for _, m in prunable_layers(model)]
    cl = any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())   # channels_last weights
    model.to(memory_format=torch.contiguous_format)      # prune flattens weights with .view(-1)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    if cl:
        model.to(memory_format=torch.channels_last)
    model.modifications.append({"name": "prune_unstructured", "params": {"amount": float(amount)}})
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove every pruning re-parametrisation (``prune.remove``): the zeros become plain weights,
    so the state dict has the unpruned model's keys.  A model without masks is left unchanged."""
    for m in model.modules():
        if prune.is_pruned(m) and hasattr(m, "weight_orig"):
            prune.remove(m, "weight")
    return model


def prune_structured(model: MedModel, ratio: float, image_size: int = 112) -> MedModel:
    """Remove the ``ratio`` (0–1) of channels with the smallest L2 norm from every prunable layer
    (torch-pruning's ``BasePruner`` with group L2 importance; residual-coupled channels are removed together;
    the head's outputs are kept), in place, and record the new layer shapes in the spec (``slim``)."""
    if not 0 < ratio < 1:
        raise ValueError(f"structured pruning ratio must be in (0, 1); got {ratio}")
    if model.modifications and any(m["name"] == "attention" for m in model.modifications):
        raise ValueError("prune channels before adding attention modules (the course prunes, then adds attention)")
    before = layer_shapes(model.net)
    head = [m for m in model.net.modules() if isinstance(m, Float32Linear)]
    example = torch.rand(1, model.in_channels, image_size, image_size, device=model_device(model))
    mf = any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())   # channels_last weights
    model.net.to(memory_format=torch.contiguous_format)
    pruner = tp.pruner.BasePruner(model.net, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=float(ratio), ignored_layers=head, global_pruning=False)
    pruner.step()
    if mf:
        model.net.to(memory_format=torch.channels_last)
    after = layer_shapes(model.net)
    changed = {n: s for n, s in after.items() if before.get(n) != s}
    model.modifications.append({"name": "slim", "params": {"ratio": float(ratio), "layers": changed}})
    return model


@torch.no_grad()
def model_cost(model: MedModel, image_size: int, batch_size: int = 16, repeats: int = 10) -> dict:
    """Parameters, FLOPs (multiply-accumulates × 2, from torch-pruning's counter) and the latency in
    ms per image of a forward pass of ``batch_size`` images on the model's device, under its precision
    policy: the fastest of ``repeats`` timed passes after a warm-up (the minimum is the least disturbed
    by other work on the machine; still, differences of ~10 % between equal architectures are noise)."""
    dev = model_device(model)
    one = torch.rand(1, model.in_channels, image_size, image_size, device=dev)
    with eval_mode(model):
        macs, params = tp.utils.count_ops_and_params(model.net, model.normalize(one))
        xb = torch.rand(batch_size, model.in_channels, image_size, image_size, device=dev)
        model(xb)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(xb)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {"params": int(params), "flops": int(2 * macs), "latency_ms": 1000 * min(times) / batch_size}
