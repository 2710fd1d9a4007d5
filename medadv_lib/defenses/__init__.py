"""Defenses against the course's attacks (notebook 04: pruning and attention; notebook 05: UAP
fine-tuning and adversarial training).

What lives here: the defenses that modify a trained model (attention modules, pruning), each recorded
in the model spec so that a checkpoint rebuilds the defended module and loads it with
``weights_only=True`` (the structure they replay, :mod:`medadv_lib.models.modifications`, lives in the
models layer, so loading needs no defense code); and the *defense description* a
:class:`~medadv_lib.train.TrainConfig` carries in ``defense`` (so that one training loop,
:func:`medadv_lib.train.load_or_train`, fine-tunes every defended model and caches it under its own
key).  A description is a dict::

    {"attention": None | "cbam" | "se",      # attention module in every residual block
     "prune": 0.0 ... <1,                    # pruning amount (share of weights / channels)
     "structured": False | True}             # channels (torch-pruning) instead of weights

Order: pruning first (on the trained network), then attention (so pruning never touches the new,
zero-initialised gates), then fine-tuning with the masks on, then :func:`finalize_defense`.
"""
from __future__ import annotations

from .attention import CBAM, KINDS, add_attention, attention_maps, gate_by_region, residual_blocks, se_module  # noqa: F401
from .pruning import (make_permanent, model_cost, prunable_layers, prune_structured,  # noqa: F401
                      prune_unstructured, sparsity)


def normalize_defense(defense: dict | None) -> dict:
    """A complete, validated defense description (see the module docstring); ``None`` → no defense."""
    d = {"attention": None, "prune": 0.0, "structured": False, **(defense or {})}
    unknown = set(d) - {"attention", "prune", "structured"}
    if unknown:
        raise ValueError(f"unknown defense keys {sorted(unknown)}; use attention, prune, structured")
    if d["attention"] not in (None, *KINDS):
        raise ValueError(f"unknown attention {d['attention']!r}; use one of {', '.join(KINDS)} or None")
    d["prune"] = float(d["prune"])
    if not 0 <= d["prune"] < 1:
        raise ValueError(f"prune must be in [0, 1); got {d['prune']}")
    d["structured"] = bool(d["structured"])
    return d


def defense_name(defense: dict | None) -> str:
    """Short name used in tables, file names and results: ``"baseline-ft"``, ``"cbam"``,
    ``"prune0.5"``, ``"channels0.3"``, ``"cbam+prune0.5"`` …"""
    d = normalize_defense(defense)
    parts = [d["attention"]] if d["attention"] else []
    if d["prune"] > 0:
        parts.append(f"{'channels' if d['structured'] else 'prune'}{d['prune']:g}")
    return "+".join(parts) or "baseline-ft"


def apply_defense(model, defense: dict | None, image_size: int):
    """Apply a defense description to a trained ``model`` in place, before fine-tuning: pruning,
    then attention (see the module docstring).  Returns the model."""
    d = normalize_defense(defense)
    if d["prune"] > 0:
        if d["structured"]:
            prune_structured(model, d["prune"], image_size)
        else:
            prune_unstructured(model, d["prune"])
    if d["attention"]:
        add_attention(model, d["attention"])
    return model


def finalize_defense(model):
    """After fine-tuning: make pruning masks permanent, so the checkpoint holds plain weights."""
    return make_permanent(model)
