"""Robustness metrics: robust accuracy, attack success, defense rate, ρ_adv and ε-curves.

Definitions (untargeted, labels ``y``; "clean-correct" = classified correctly without attack):

* robust accuracy      = share of *all* images still classified correctly under the attack;
* attack success rate  = share of images misclassified under the attack (targeted: predicted
  as the target); with ``x`` given, only clean-correct images count — the third variant of the
  course's one fooling-rate definition, "prediction changed", counted over clean-correct images
  (the other two, over all images against the clean prediction or the label, are
  :func:`medadv_lib.metrics.universal.fooling_rate`'s ``reference="clean"`` / ``"labels"``);
* defense rate         = among clean-correct images, the share still correct under the attack
  (= 1 − attack success rate over clean-correct images);
* ρ_adv                = ‖r‖₂ / ‖x‖₂ per image (DeepFool's robustness measure).

Evaluation runs in chunks of ``batch_size`` on the model's device; results are on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from ..runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from .. import LABELS, attacks
from ..attacks import apply_uap, check_eps_255, eps_from_255, parse_norm, pgd, random_uap
from ..attacks.result import AttackResult
from ..models import predict  # noqa: F401  (re-exported: labels predicted in chunks)
from ..stats import median_interval
from ..runtime import model_device


def outcome_bits(mask) -> str:
    """A per-image boolean outcome as a string of ``"0"``/``"1"`` (compact, JSON-safe)."""
    return "".join("1" if bool(v) else "0" for v in (mask.tolist() if hasattr(mask, "tolist") else mask))


def bits_outcome(bits: str):
    """The inverse of :func:`outcome_bits`: a NumPy boolean array."""
    if not isinstance(bits, str) or set(bits) - {"0", "1"}:
        raise ValueError(f"not a per-image outcome string of 0/1: {str(bits)[:40]!r}")
    return np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")


def fooled_at(curve, eps: float):
    """Per image, fooled at ``eps`` in a :func:`robustness_curve` table (indexed by ``eps`` or not): the
    negation of its ``outcome_attacked`` bits, as a NumPy boolean array, for paired comparisons of attacks."""
    row = curve.loc[eps] if eps in getattr(curve, "index", ()) and "eps" not in curve.columns else \
        curve[(curve.eps - eps).abs() < 1e-12].iloc[0]
    return ~bits_outcome(row["outcome_attacked"])


def _rate(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else math.nan


def robust_accuracy(model, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on the adversarial images ``x_adv`` against the true labels ``y``."""
    return _rate(predict(model, x_adv, batch_size) == y.cpu())


def attack_success_rate(model, x_adv: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None,
                        targeted: bool = False, batch_size: int = 256) -> float:
    """Share of attacks that succeed.

    Untargeted: prediction on ``x_adv`` ≠ ``y``; targeted: prediction = ``y`` (the targets).
    With the clean images ``x``, only images the attack had to change count: clean-correct ones
    (untargeted) or those not already predicted as the target (targeted).
    """
    y = y.cpu()
    hit = predict(model, x_adv, batch_size) == y
    success = hit if targeted else ~hit
    if x is not None:
        clean_hit = predict(model, x, batch_size) == y
        success = success[~clean_hit if targeted else clean_hit]
    return _rate(success)


def defense_rate(model, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Among images classified correctly when clean, the share still correct under the attack."""
    y = y.cpu()
    correct = predict(model, x, batch_size) == y
    return _rate((predict(model, x_adv, batch_size) == y)[correct])


def rho_adv(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ρ_adv = ‖r‖₂ / ‖x‖₂ per sample (``N×...`` → ``N``); 0/0 (black image, no change) gives 0."""
    return r.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)


def median_rho_adv(r: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None, class_names=LABELS) -> dict:
    """Median (mean of the two middle values for even counts) ρ_adv overall and per class of ``y`` (e.g. ``mask=res.success`` keeps successes only).

    Returns ``{"overall": m, "<class name>": m_c, ...}``; NaN for an empty group.
    """
    rho = rho_adv(r, x).cpu()
    keep = torch.ones_like(rho, dtype=torch.bool) if mask is None else mask.cpu().bool()
    med = lambda sel: float(rho[sel].quantile(0.5)) if sel.any() else math.nan  # noqa: E731
    out = {"overall": med(keep)}
    if y is not None:
        y = y.cpu()
        names = list(class_names) if class_names else [str(c) for c in range(int(y.max()) + 1)]
        for c, name in enumerate(names):
            out[name] = med(keep & (y == c))
    return out


def most_fragile(r: torch.Tensor, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                 class_names=LABELS, level: float = 0.95) -> str:
    """Which class sits closest to the decision boundary, said only as far as the data show it: the class with the
    lowest median ρ_adv (among ``mask``, e.g. clean-correct and fooled) when its distribution-free ``level``
    interval (:func:`~medadv_lib.stats.median_interval`) lies wholly below every other class's, else
    ``"no class apart (intervals overlap)"``; a class of too few images for an interval counts as overlapping.

    Example::
        >>> import torch
        >>> x, y = torch.ones(16, 1, 1, 1), torch.tensor([0] * 8 + [1] * 8)
        >>> most_fragile(torch.cat([torch.full((8, 1, 1, 1), 0.01), torch.full((8, 1, 1, 1), 0.05)]), x, y,
        ...              class_names=("a", "b"))
        'a'
    """
    rho = rho_adv(r, x).cpu()
    keep = torch.ones_like(rho, dtype=torch.bool) if mask is None else mask.cpu().bool()
    y = y.cpu()
    groups = {name: rho[keep & (y == c)].numpy() for c, name in enumerate(class_names)}
    groups = {k: v for k, v in groups.items() if len(v)}
    if len(groups) < 2:
        return "no class apart (fewer than two classes)"
    ivals = {k: median_interval(v, level) for k, v in groups.items()}
    low = min(groups, key=lambda k: float(np.median(groups[k])))
    hi = ivals[low][1]
    apart = all(not math.isnan(hi) and not math.isnan(ivals[k][0]) and hi < ivals[k][0] for k in groups if k != low)
    return low if apart else "no class apart (intervals overlap)"


def _resolve_attack(attack):
    if callable(attack):
        return attack
    if isinstance(attack, str) and attack.lower() in ("fgsm", "pgd", "deepfool"):
        return getattr(attacks, attack.lower())
    raise ValueError(f"unknown attack {attack!r}; pass a callable or one of 'fgsm', 'pgd', 'deepfool'")


def _replay(result):
    """A minimal-norm 'attack' that returns the slices of an existing result (see robustness_curve)."""
    def replay(model, x, y, **kw):
        start = replay.offset
        replay.offset += len(x)
        return result[start:start + len(x)]
    replay.offset, replay.minimal_norm, replay.__name__ = 0, True, "replay"
    return replay


def robustness_curve(model, x: torch.Tensor, y: torch.Tensor, attack, eps_list, batch_size: int = 64,
                     progress: bool = False, return_results: bool = False, **kw):
    """Clean/robust accuracy, attack success and defense rate for each budget ε in ``eps_list``.

    ``attack`` is ``fgsm``/``pgd``-like (``attack(model, x, y, eps, **kw) -> AttackResult``) or a
    minimal-norm attack such as ``deepfool`` (marked ``attack.minimal_norm = True``): that one
    runs *once* and an image counts as fooled at ε when the attack succeeded with
    ``norm ≤ ε`` (in the attack's norm).  Untargeted only.

    Returns a DataFrame with one row per ε: ``eps, norm, n, n_clean_correct, clean_accuracy,
    robust_accuracy, attack_success_rate`` (over clean-correct images), ``defense_rate``,
    ``median_norm`` (of the successful perturbations on clean-correct images), ``outcome_attacked``
    (per image, correct under the attack, as a ``"0"``/``"1"`` string: :func:`~medadv_lib.metrics.defense.bits_outcome`
    reads it back, so two attacks on the same images can be compared image by image).

    With ``return_results=True`` it returns ``(DataFrame, results)`` where ``results`` lists the
    :class:`~medadv_lib.attacks.AttackResult` of each run (one for a minimal-norm attack, else
    one per ε, on the CPU), so callers can reuse the adversarial images without re-attacking.

    Example::
        >>> robustness_curve(model, x, y, pgd, [0, 1/255, 2/255], steps=10)
    """
    done = attack if isinstance(attack, AttackResult) else None
    if done is not None:
        if len(done.delta_norm) != len(x):
            raise ValueError(f"the AttackResult holds {len(done.delta_norm)} images but x has {len(x)}; "
                             "pass the result of a minimal-norm attack run on these very images")
        attack = _replay(done)
    attack = _resolve_attack(attack)
    if kw.get("targeted"):
        raise ValueError("robustness_curve is untargeted: drop targeted=True")
    eps_list = [float(e) for e in eps_list]
    if any(not math.isfinite(e) or e < 0 for e in eps_list):
        raise ValueError(f"eps_list must hold finite numbers >= 0; got {eps_list}")
    if len(x) != len(y):
        raise ValueError(f"shape mismatch: x has {len(x)} images but y has {len(y)} labels")
    y = y.cpu()
    dev, chunks = model_device(model), range(0, len(x), batch_size)
    correct = predict(model, x, batch_size) == y
    minimal = getattr(attack, "minimal_norm", False)
    runs = [None] if minimal else eps_list
    rows, results = [], []
    with tqdm(total=len(runs) * len(chunks), disable=not progress, desc=getattr(attack, "__name__", "attack")) as bar:
        for eps in runs:
            parts = []
            for i in chunks:
                args = (model, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev))
                parts.append((attack(*args, **kw) if minimal else attack(*args, eps, **kw)).cpu())
                bar.update()
            res = parts[0].cat(parts)
            results.append(res)
            for e in (eps_list if minimal else [eps]):
                fooled = res.success & (res.delta_norm <= e * (1 + 1e-6)) if minimal else res.pred != y
                ok = ~fooled   # clean errors: DeepFool reports them as successes at norm 0
                sel = res.delta_norm[correct & fooled]
                rows.append({"eps": e, "norm": res.norm, "n": len(y), "n_clean_correct": int(correct.sum()),
                             "clean_accuracy": _rate(correct), "robust_accuracy": _rate(ok),
                             "attack_success_rate": _rate(fooled[correct]), "defense_rate": _rate(ok[correct]),
                             "median_norm": float(sel.quantile(0.5)) if sel.numel() else math.nan,
                             "outcome_attacked": outcome_bits(ok)})
    df = pd.DataFrame(rows)
    return (df, results) if return_results else df


def pgd_at_budget(model, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", steps: int = 10,
                  seed: int = 0, cache: dict | None = None):
    """PGD on ``x`` at one budget and the clean predictions, memoised in ``cache`` under
    ``(id(model), id(x), eps, norm, steps, seed)`` (and ``(id(model), id(x), "clean")``), so that a
    slider moving back to a budget costs nothing.  ``eps = 0`` runs no step.  Returns
    ``(AttackResult on the CPU, clean predictions)``."""
    cache = {} if cache is None else cache
    key, ckey = (id(model), id(x), float(eps), norm, int(steps), int(seed)), (id(model), id(x), "clean")
    if key not in cache:
        dev = model_device(model)
        cache[key] = pgd(model, x.to(dev), y.to(dev), eps, steps=int(steps) if eps > 0 else 0, norm=norm,
                         seed=seed).cpu()
    if ckey not in cache:
        cache[ckey] = predict(model, x)
    return cache[key], cache[ckey]


def attack_summary(res: AttackResult, y: torch.Tensor, pred_clean: torch.Tensor, labels=LABELS) -> dict:
    """The numbers of one attacked batch: ``n``, ``n_clean_correct``, ``clean_accuracy``,
    ``robust_accuracy`` (all images), ``attack_success_rate`` and ``defense_rate`` (over the
    clean-correct images), ``adv_pred_counts`` (``{class: images predicted as it under attack}``)."""
    y = y.detach().cpu()
    correct, still = pred_clean.cpu() == y, res.pred.cpu() == y
    return {"n": len(y), "n_clean_correct": int(correct.sum()), "clean_accuracy": _rate(correct),
            "robust_accuracy": _rate(still), "attack_success_rate": _rate(~still[correct]),
            "defense_rate": _rate(still[correct]),
            "adv_pred_counts": {lab: int((res.pred == c).sum()) for c, lab in enumerate(labels)}}


def pgd_at_grey_levels(model, x: torch.Tensor, y: torch.Tensor, eps_255: float, norm="inf", steps: int = 10,
                       seed: int = 0, cache: dict | None = None, labels=LABELS):
    """PGD at a budget given in grey levels (:func:`medadv_lib.attacks.eps_from_255`) and its numbers.

    The computation behind the PGD ε slider (:func:`medadv_lib.widgets.attack_widget.pgd_view`):
    :func:`pgd_at_budget` (memoised in ``cache``; ``eps_255 = 0`` runs no step) then
    :func:`attack_summary`.

    Returns:
        ``(summary, result, pred_clean)``: ``summary`` is :func:`attack_summary`'s dict after
        ``eps_255``, ``eps`` (pixel units), ``norm`` and ``steps`` (0 at ``eps_255 = 0``);
        ``result`` the :class:`~medadv_lib.attacks.AttackResult` on the CPU; ``pred_clean`` the
        clean predictions.
    Raises:
        ValueError: a bad ``eps_255``, an unknown norm, or ``x`` and ``y`` of different lengths.
    """
    e255, norm = check_eps_255(eps_255), parse_norm(norm)
    if len(x) != len(y):
        raise ValueError(f"shape mismatch: x has {len(x)} images but y has {len(y)} labels")
    eps = eps_from_255(e255, norm, tuple(x.shape[1:]))
    res, pred_clean = pgd_at_budget(model, x, y, eps, norm, steps, seed, cache)
    summary = {"eps_255": e255, "eps": eps, "norm": norm, "steps": int(steps) if e255 > 0 else 0,
               **attack_summary(res, y.detach().cpu(), pred_clean, labels)}
    return summary, res, pred_clean


def universal_vs_per_image(model, x: torch.Tensor, y: torch.Tensor, uaps: dict, eps: dict, deepfool_result: AttackResult,
                           pgd_steps: int = 10, seed: int = 0, random_kind: str = "uniform") -> pd.DataFrame:
    """One universal perturbation against per-image attacks of the same budget, on the same images.

    Arguments:
        model: the classifier.
        x, y: images and labels — meant to be the model's clean-correct images, where "fooled" (prediction ≠
            label) is the same as "prediction changed".
        uaps: ``{"inf": v, "2": v}``: a UAP per norm (``1×H×W`` or ``H×W``, pixel units).
        eps: ``{"inf": ε, "2": ε}``: their budgets (:func:`medadv_lib.attacks.uap_budget`).
        deepfool_result: DeepFool on ``x`` (an :class:`~medadv_lib.attacks.AttackResult`), read at the L2 budget.
        pgd_steps, seed: PGD's steps and seed for the L∞ per-image attack.
        random_kind: the random control's noise (:func:`medadv_lib.attacks.random_uap`). (Default: "uniform")
    Returns:
        a DataFrame indexed by norm (``inf``, ``2``) with ``budget ε (pixel units)``, ``UAP fooling``, ``random noise fooling``
        (noise of exactly the UAP's norm) and ``per-image fooling`` (L∞: PGD at ε; L2: DeepFool within ε).
    """
    def fooled(v):
        return _rate(predict(model, apply_uap(x, v)) != y.cpu())

    dev = model_device(model)
    per_image = {"inf": pgd(model, x.to(dev), y.to(dev), eps["inf"], steps=pgd_steps, seed=seed).success.cpu(),
                 "2": deepfool_result.success.cpu() & (deepfool_result.delta_norm.cpu() <= eps["2"])}
    rows = {norm: {"budget ε (pixel units)": eps[norm], "UAP fooling": fooled(uaps[norm]),
                   "random noise fooling": fooled(random_uap(uaps[norm], eps[norm], norm, kind=random_kind, seed=seed)),
                   "per-image fooling": _rate(per_image[norm])} for norm in ("inf", "2")}
    return pd.DataFrame(rows).T
