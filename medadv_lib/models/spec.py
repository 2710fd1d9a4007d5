"""Model specs: an architecture plus registered modifications (attention modules, pruned shapes),
from which :func:`build_from_spec` rebuilds the exact module a checkpoint's weights fit."""
from __future__ import annotations

import importlib

from .architectures import MedModel, build_model

MODIFICATIONS: dict = {}
"""Registry of model modifications a spec can name: ``name -> fn(model, **params)``, where ``fn``
changes ``model`` in place (insert attention modules, slim pruned layers, ...) deterministically from
``params`` alone, so that :func:`build_from_spec` rebuilds a module whose state dict the
checkpoint's weights fit.  Defenses register theirs with :func:`register_modification`."""


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
    recorded modification in order.  Modules that register modifications (e.g.
    ``medadv_lib.defenses``) are imported first so their names resolve."""
    mods = spec.get("modifications", [])
    if mods:
        importlib.import_module("medadv_lib.defenses")
    model = build_model(spec["arch"], spec["num_classes"], spec["in_channels"],
                        mean=spec.get("mean", [None])[0], std=spec.get("std", [None])[0])
    for m in mods:
        apply_modification(model, m["name"], **m.get("params", {}))
    return model
