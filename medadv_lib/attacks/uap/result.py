"""The result type of every UAP builder, and UAP files (``.npy`` + ``.json``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...runtime import atomic_path, atomic_write_text
from .._common import lp_norm


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

    def _record(self) -> dict | None:
        """The history record of the returned ``v``: the best measurement of a builder that stops on a plateau
        (``params["best_measurement"]``), else the last."""
        if not self.history:
            return None
        best = self.params.get("best_measurement")
        return self.history[best] if best is not None and 0 <= best < len(self.history) else self.history[-1]

    @property
    def fooling_rate(self) -> float:
        """Fooling rate (vs ``reference``) of the returned ``v`` on the images it was measured on (the build
        images, or the held-out ones of ``sgd_uap(holdout=...)``, see the history's ``on``)."""
        rec = self._record()
        return rec["fooling_rate"] if rec else float("nan")

    @property
    def target_success_rate(self) -> float | None:
        """Share of the measured images classified as ``target`` under the returned ``v`` (targeted UAPs)."""
        rec = self._record()
        return rec.get("target_success_rate") if rec else None

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
