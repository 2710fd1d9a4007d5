"""Model specs: an architecture plus registered modifications (attention modules, pruned shapes),
from which :func:`build_from_spec` rebuilds the exact module a checkpoint's weights fit."""
from __future__ import annotations

from .architectures import MedModel, build_model

MODIFICATIONS: dict = {}
"""Registry of model modifications a spec can name: ``name -> fn(model, **params)``, where ``fn``
changes ``model`` in place (insert attention modules, slim pruned layers, ...) deterministically from
``params`` alone, so that :func:`build_from_spec` rebuilds a module whose state dict the
checkpoint's weights fit.  The course's own (attention modules, pruned shapes) are registered by
:mod:`medadv_lib.models.modifications`, which :mod:`medadv_lib.models` imports, so a checkpoint rebuilds
whatever was imported before; others register theirs with :func:`register_modification`."""


def register_modification(name: str):
    """Decorator: register ``fn(model, **params)`` under ``name`` in :data:`MODIFICATIONS`."""
    def deco(fn):
        MODIFICATIONS[name] = fn
        return fn
    return deco


def apply_modification(model: MedModel, name: str, **params) -> MedModel:
    """Apply the registered modification ``name`` to ``model`` and record it in its spec."""
    if name not in MODIFICATIONS:
        raise ValueError(f"unknown model modification {name!r}; registered: {sorted(MODIFICATIONS) or 'none'}")
    MODIFICATIONS[name](model, **params)
    model.modifications.append({"name": name, "params": params})
    return model


def build_from_spec(spec: dict) -> MedModel:
    """Rebuild a course model from its spec (:meth:`MedModel.spec`): the architecture, then each
    recorded modification in order (registered in :data:`MODIFICATIONS`)."""
    mods = spec.get("modifications", [])
    model = build_model(spec["arch"], spec["num_classes"], spec["in_channels"],
                        mean=spec.get("mean", [None])[0], std=spec.get("std", [None])[0])
    for m in mods:
        apply_modification(model, m["name"], **m.get("params", {}))
    return model
