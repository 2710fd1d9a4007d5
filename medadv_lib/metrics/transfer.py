"""How far a universal perturbation carries from the model it was built on to other models: the
transferability matrix (:func:`transfer_matrix`), with the random control of every column.

A black-box attacker cannot compute gradients of the deployed model, but can build a UAP on a model of
their own and hope it transfers.  Row = the model whose UAP it is (the *source*), column = the model it
is applied to (the *target*); the diagonal is each model's white-box rate against its own UAP.  The
last row holds, per column, random noise of the same norm and size as the target's own UAP
(:func:`~medadv_lib.attacks.uap.random_uap`): a transferred UAP only matters where it beats that row.

Fooling rate = share of images whose prediction under ``x + v`` differs from the target's **clean
prediction** (the library's definition, :mod:`medadv_lib.metrics.universal`).

Example::

    >>> from medadv_lib.metrics.transfer import transfer_matrix
    >>> from medadv_lib.viz.uap import plot_transfer_matrix
    >>> m = transfer_matrix({"resnet18": r18, "mobilenet": mnet}, {"resnet18": u_r18, "mobilenet": u_mnet}, x, y)
    >>> plot_transfer_matrix(m)
"""
from __future__ import annotations

import pandas as pd
import torch

from .. import LABELS
from ..attacks.uap import random_uap
from ..models import predict
from ..stats import wilson_interval
from .universal import uap_metrics_from_predictions

__all__ = ["transfer_matrix", "transfer_summary", "RANDOM_ROW", "METRICS"]

RANDOM_ROW = "random control"
"""Name of the matrix's last row: per column, random noise of the target's own UAP's norm and size."""

METRICS = ("fooling_rate", "fooling_rate_balanced", "fooling_rate_reweighted", "fooling_rate_vs_labels")
"""What a cell can hold (see :func:`~medadv_lib.metrics.universal.uap_metrics_from_predictions`)."""


def _v(u) -> torch.Tensor:
    v = getattr(u, "v", u)
    return torch.as_tensor(v).detach().float().cpu()


def _control_budget(target: str, uaps: dict) -> tuple[float, str]:
    """The (eps, norm) of column ``target``'s random control: its own UAP's, else the one all UAPs share."""
    if target in uaps:
        u = uaps[target]
        return float(u.eps), str(u.norm)
    budgets = {(round(float(u.eps), 12), str(u.norm)) for u in uaps.values()}
    if len(budgets) != 1:
        raise ValueError(f"target {target!r} has no UAP of its own and the UAPs have different budgets "
                         f"{sorted(budgets)}: pass its UAP in uaps, or UAPs of one budget, so that the random "
                         "control of its column is defined")
    eps, norm = budgets.pop()
    return eps, norm


def transfer_matrix(models: dict, uaps: dict, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0,
                    metric: str = "fooling_rate", random_kind: str = "uniform", batch_size: int = 256):
    """Each source model's UAP applied to every target model: one rate per cell, plus the random control.

    Arguments:
        models: ``{name: model}``, every model taking ``x`` (the same input size; course models take
            [0, 1] pixels with one grey channel).
        uaps: ``{source name: UAPResult}`` (anything with ``v``, ``eps``, ``norm``); sources need not be
            in ``models`` (a UAP built on a model the attacker owns) but each must match ``x``'s size.
        x: the evaluation images ``N×1×H×W`` in [0, 1] (the test split).
        y: their true labels; needed for every ``metric`` but ``"fooling_rate"``.
        seed: seed of the random controls (column ``t`` uses ``random_uap(v_t, eps_t, norm_t, seed=seed)``,
            ``v_t`` the target's own UAP; a target without one uses the budget all UAPs share).
        metric: the cell value, one of :data:`METRICS` (default the plain fooling rate vs clean predictions;
            ``"fooling_rate_reweighted"``: per-class rates weighted to the paper's 100/100/31 test mix).
        random_kind: noise of the control (``"uniform"``, ``"sign"``, ``"gaussian"``).
        batch_size: images per forward pass.
    Returns:
        a ``pandas.DataFrame``: rows = the sources (in ``uaps`` order) and a last row :data:`RANDOM_ROW`;
        columns = the targets (in ``models`` order); ``attrs`` hold ``metric``, ``n``, ``eps`` and
        ``norm`` per source, and ``random_eps`` per target.
    Raises:
        ValueError: no models or no UAPs, an unknown ``metric``, ``y`` missing where needed, or a UAP of
        another size than ``x``.
    """
    if not models or not uaps:
        raise ValueError("transfer_matrix needs at least one model and one UAP: pass {name: model} and "
                         "{name: UAPResult}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if metric != "fooling_rate" and y is None:
        raise ValueError(f"metric {metric!r} needs the true labels y")
    size = tuple(x.shape[-2:])
    for name, u in uaps.items():
        if tuple(_v(u).shape[-2:]) != size:
            raise ValueError(f"the UAP of {name!r} is {tuple(_v(u).shape[-2:])} but the images are {size}: the "
                             "matrix compares models of one input size; build the UAPs at that size")
    k = len(LABELS)

    def cell(pred_clean, pred_adv) -> float:
        if metric == "fooling_rate":
            return float((pred_adv != pred_clean).float().mean()) if len(pred_clean) else float("nan")
        m = uap_metrics_from_predictions(pred_clean, pred_adv, y, num_classes=k)
        return float("nan") if m[metric] is None else float(m[metric])

    budgets = {t: _control_budget(t, uaps) for t in models}       # checked before any forward pass
    table, random_eps = {}, {}
    for t, m in models.items():
        clean = predict(m, x, batch_size)
        col = {s: cell(clean, predict(m, x, batch_size, perturbation=_v(u))) for s, u in uaps.items()}
        eps, norm = budgets[t]
        rnd = random_uap(tuple(size), eps, norm, kind=random_kind, seed=seed)
        col[RANDOM_ROW] = cell(clean, predict(m, x, batch_size, perturbation=rnd))
        random_eps[t] = eps
        table[t] = col
    out = pd.DataFrame(table).loc[[*uaps, RANDOM_ROW], list(models)]
    out.index.name, out.columns.name = "UAP built on", "applied to"
    out.attrs.update(metric=metric, n=len(x), random_eps=random_eps,
                     eps={s: float(getattr(u, "eps", float("nan"))) for s, u in uaps.items()},
                     norm={s: str(getattr(u, "norm", "")) for s, u in uaps.items()})
    return out


def transfer_summary(matrix):
    """One row per cell of a :func:`transfer_matrix` (fooling rates), with its Wilson 95 % interval on the
    matrix's ``n`` images and the verdict against the random control of its column:

    ``source``, ``target``, ``white_box`` (source is target), ``rate``, ``rate_lo``, ``rate_hi``,
    ``random``, ``random_hi`` and ``beats_random`` — True when the cell's interval lies wholly above the
    control's (a transferred UAP that only matches noise teaches the attacker nothing).
    """
    n = int(matrix.attrs.get("n", 0))
    rows = []
    for target in matrix.columns:
        rnd = float(matrix.loc[RANDOM_ROW, target])
        _, rnd_hi = wilson_interval(round(rnd * n), n)
        for source in matrix.index.drop(RANDOM_ROW):
            rate = float(matrix.loc[source, target])
            lo, hi = wilson_interval(round(rate * n), n)
            rows.append({"source": source, "target": target, "white_box": source == target, "rate": rate,
                         "rate_lo": lo, "rate_hi": hi, "random": rnd, "random_hi": rnd_hi, "beats_random": lo > rnd_hi})
    return pd.DataFrame(rows)
