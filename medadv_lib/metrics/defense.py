"""Evaluating a defense the way the field demands (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"; Athalye et al. 2018; Croce & Hein 2020): one call, one tidy table, then checks that
tell real robustness from gradient masking.

:func:`robustness_table` attacks one model *white-box* (the attacks see the evaluated model itself)
with PGD-L∞ at several ε (a standard and a stronger run: more steps, random restarts), DeepFool-L2
(success counted only within a stated L2 budget), the model's own UAP, a transfer attack (adversarial
images crafted on another model, usually the undefended baseline), a gradient-free attack (Square,
from torchattacks, used as a peer, not rewritten) and PGD at a large ε.  Every rate comes with its
Wilson 95 % interval.

:func:`hygiene_checks` reads that table and flags "gradient masking suspected" when

(a) robust accuracy *rises* with more PGD steps and restarts;
(b) the transfer attack beats the white-box attack at the same ε;
(c) the gradient-free attack beats the white-box attack at the same ε;
(d) robust accuracy does not reach (about) zero at a large ε.

Each check allows a tolerance of ``tol`` (one image by default) so that sampling noise alone never
flags a model; a model that fails any check must not be reported as robust.

Vocabulary (see :mod:`medadv_lib.metrics.robustness`): robust accuracy over all ``n`` images;
defense rate over the ``n_clean_correct`` images the model classifies correctly without attack.

**Paired comparisons.** Every row also keeps its per-image outcomes (``outcome_clean``,
``outcome_attacked``: one character per image, ``"1"`` = classified correctly, in the order of the
attacked images).  Models attacked on the *same* images are then compared image by image with an exact
McNemar test (:func:`mcnemar_exact`, :func:`paired_tests`) instead of by whether two Wilson intervals
overlap, which is conservative for paired data.  The paired outcome is "correct under the attack"
(robust accuracy): it is defined for every image, whereas each model's defense rate is over its *own*
clean-correct images, a different subset for every model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from ..attacks import deepfool, pgd
from ..models import predict
from ..runtime import model_device
from .robustness import bits_outcome, outcome_bits, rho_adv  # noqa: F401  (re-exported)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (95 % for ``z = 1.96``);
    ``(nan, nan)`` when ``n = 0``."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RobustnessSettings:
    """What :func:`robustness_table` runs (see ``course.ROBUSTNESS_FAST`` / ``ROBUSTNESS_FULL``)."""
    eps: tuple = (1 / 255, 2 / 255, 4 / 255)   # PGD-L∞ budgets
    steps: int = 10                            # the standard PGD
    strong_steps: int = 50                     # the stronger PGD (check a) ...
    strong_restarts: int = 5                   # ... with random restarts
    strong_eps: tuple | None = None            # budgets of the stronger PGD (None: all of ``eps``; (): none)
    deepfool_zeta: float = 0.02                # DeepFool success counts within ζ × mean L2 image norm
    deepfool_steps: int = 50                   # 0: no DeepFool row
    square_queries: int = 1000                 # gradient-free check (c)
    square_eps: float = 2 / 255
    large_eps: float | None = 32 / 255         # check (d); None: not run
    seed: int = 0


def _binom_two_sided(k: int, n: int) -> float:
    """Two-sided exact binomial p-value of ``k`` successes in ``n`` trials at p = ½ (doubled smaller tail)."""
    if n <= 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mcnemar_exact(a, b) -> dict:
    """Exact McNemar test of two per-image boolean outcomes on the *same* images (e.g. "correct under
    the attack" for model A and model B).

    Only the discordant images carry information: ``a_only`` (A succeeds where B fails) and ``b_only``.
    Under "A and B are equally good" each discordant image is a fair coin, so the p-value is the
    two-sided exact binomial test of ``a_only`` out of ``a_only + b_only`` at ½ (the smaller tail,
    doubled, capped at 1; 1 when there is no discordant image).

    Returns ``{"n", "both", "a_only", "b_only", "neither", "discordant", "p_value"}``.

    Example::
        >>> mcnemar_exact([1, 1, 0, 0, 1], [1, 0, 0, 0, 0])["p_value"]     # 2 vs 0 discordant: 2 × ¼
        0.5
    """
    import numpy as np
    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: {a.size} vs {b.size} outcomes")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return {"n": int(a.size), "both": int((a & b).sum()), "a_only": a_only, "b_only": b_only,
            "neither": int((~a & ~b).sum()), "discordant": a_only + b_only,
            "p_value": _binom_two_sided(a_only, a_only + b_only)}


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given): controls the chance of
    any false "shown" across the family at the stated level."""
    p = [float(v) for v in p_values]
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def _outcome_row(table: pd.DataFrame, model: str, attack: str, eps):
    t = table[(table.model == model) & (table.attack == attack)]
    if eps is not None:
        t = t[(t.eps - eps).abs() < 1e-9]
    if len(t) != 1:
        raise ValueError(f"{len(t)} rows for model {model!r}, attack {attack!r}"
                         + (f" at ε = {eps * 255:.3g}/255" if eps is not None else "") + "; expected one")
    row = t.iloc[0]
    if "outcome_attacked" not in t or not isinstance(row.get("outcome_attacked"), str):
        raise ValueError(f"the {attack} row of {model!r} keeps no per-image outcomes (a table from an older "
                         "version of robustness_table): rerun the evaluation")
    return row


def paired_tests(table: pd.DataFrame, reference: str, attack: str = "pgd", eps: float | None = None,
                 models=None, alpha: float = 0.05) -> pd.DataFrame:
    """Each model of a (concatenated) :func:`robustness_table` against ``reference``, image by image:
    the exact McNemar test (:func:`mcnemar_exact`) of "correct under ``attack`` (at ``eps``)" on the
    shared attacked images, with Holm's adjustment over the models compared.

    Every model must have been attacked on the same images in the same order (the course's
    :func:`~medadv_lib.course.eval_images` makes sure of that); a different count raises ``ValueError``.

    Returns one row per model (``models``: default every model but the reference): ``model, reference,
    attack, eps, n, robust_accuracy, reference_robust_accuracy, model_only`` (images only the model keeps
    correct), ``reference_only``, ``p_value``, ``p_holm`` and ``shown``: ``"higher"``/``"lower"`` when
    ``p_holm < alpha`` (the direction of the discordant majority), else ``"not shown"``.
    """
    ref = _outcome_row(table, reference, attack, eps)
    r_ok = bits_outcome(ref.outcome_attacked)
    names = [m for m in dict.fromkeys(table.model) if m != reference] if models is None else list(models)
    rows = []
    for name in names:
        row = _outcome_row(table, name, attack, eps)
        ok = bits_outcome(row.outcome_attacked)
        if ok.size != r_ok.size:
            raise ValueError(f"{name!r} was attacked on {ok.size} images, {reference!r} on {r_ok.size}: not paired")
        t = mcnemar_exact(ok, r_ok)
        rows.append({"model": name, "reference": reference, "attack": attack, "eps": float(row.eps), "n": t["n"],
                     "robust_accuracy": float(ok.mean()), "reference_robust_accuracy": float(r_ok.mean()),
                     "model_only": t["a_only"], "reference_only": t["b_only"], "p_value": t["p_value"]})
    out = pd.DataFrame(rows, columns=["model", "reference", "attack", "eps", "n", "robust_accuracy",
                                      "reference_robust_accuracy", "model_only", "reference_only", "p_value"])
    out["p_holm"] = holm(out.p_value) if len(out) else []
    out["shown"] = [("higher" if r.model_only > r.reference_only else "lower") if r.p_holm < alpha else "not shown"
                    for r in out.itertuples()]
    return out


def paired_text(row, what: str = "correct under attack") -> str:
    """One :func:`paired_tests` row in words: both counts, the discordant images and the p-values."""
    n = int(row["n"])
    return (f"{row['model']} {what} on {round(row['robust_accuracy'] * n)}/{n} images vs "
            f"{round(row['reference_robust_accuracy'] * n)}/{n} for {row['reference']}; discordant: "
            f"{int(row['model_only'])} only {row['model']}, {int(row['reference_only'])} only {row['reference']}; "
            f"exact McNemar p = {row['p_value']:.3g}" + (f" (Holm-adjusted {row['p_holm']:.3g})"
                                                         if abs(row['p_holm'] - row['p_value']) > 1e-12 else ""))


def _row(model_name, attack, norm, eps, correct, ok, **extra) -> dict:
    n, ncc = len(ok), int(correct.sum())
    k_rob, k_def = int(ok.sum()), int((ok & correct).sum())
    lo, hi = wilson_interval(k_rob, n)
    dlo, dhi = wilson_interval(k_def, ncc)
    return {"model": model_name, "attack": attack, "norm": norm, "eps": float(eps), "n": n,
            "n_clean_correct": ncc, "clean_accuracy": ncc / max(n, 1),
            "robust_accuracy": k_rob / max(n, 1), "robust_accuracy_lo": lo, "robust_accuracy_hi": hi,
            "defense_rate": k_def / ncc if ncc else math.nan, "defense_rate_lo": dlo, "defense_rate_hi": dhi,
            "outcome_clean": outcome_bits(correct), "outcome_attacked": outcome_bits(ok), **extra}


def _batched(attack, model, x, y, batch_size, **kw):
    dev, parts = model_device(model), []
    for i in range(0, len(x), batch_size):
        parts.append(attack(model, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev), **kw).cpu())
    return parts[0].cat(parts)


def square_attack(model, x, y, eps: float, queries: int, seed: int = 0, batch_size: int = 128) -> torch.Tensor:
    """Adversarial images from the gradient-free Square attack (Andriushchenko et al. 2020) of
    ``torchattacks`` (L∞, margin loss), the course's peer for check (c)."""
    try:
        import torchattacks
    except ImportError as exc:   # a peer: pyproject's `peers` extra, which `make setup` installs
        raise ImportError("the gradient-free check uses torchattacks' Square attack: "
                          'pip install "torchattacks>=3.3,<3.4" (or run `make setup`)') from exc
    atk = torchattacks.Square(model, norm="Linf", eps=float(eps), n_queries=int(queries), n_restarts=1, seed=seed)
    dev, out = model_device(model), []
    for i in range(0, len(x), batch_size):
        out.append(atk(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)).detach().cpu())
    model.eval()
    return torch.cat(out)


def robustness_table(model, x: torch.Tensor, y: torch.Tensor, name: str = "model",
                     settings: RobustnessSettings = RobustnessSettings(), mean_norm_2: float | None = None,
                     uap=None, transfer: dict | None = None, batch_size: int = 64,
                     progress: bool = False) -> pd.DataFrame:
    """Attack ``model`` white-box on ``x, y`` and return one tidy row per (attack, ε).

    Args:
        settings: the attacks and budgets (:class:`RobustnessSettings`).
        mean_norm_2: mean L2 norm of the images (``image_norm_stats(...)["mean_norm_2"]``) (DeepFool's budget is ``deepfool_zeta`` × this);
            ``None``: the mean over ``x``.
        uap: a :class:`~medadv_lib.attacks.uap.UAPResult` built against this very model (row ``uap``).
        transfer: ``{"source": name, "eps": ε, "x_adv": images}``: adversarial versions of ``x``
            crafted on another model (row ``transfer``).
    Returns:
        a DataFrame with columns ``model, attack, norm, eps, steps, restarts, n, n_clean_correct,
        clean_accuracy, robust_accuracy(_lo/_hi), defense_rate(_lo/_hi), outcome_clean, outcome_attacked``
        (per-image outcomes, :func:`outcome_bits`), and ``median_rho_adv`` (a fraction) for
        DeepFool, ``fooling_rate`` for the UAP; attacks are ``pgd``, ``pgd-strong``, ``deepfool``,
        ``uap``, ``transfer``, ``square``, ``pgd-large``.
    """
    s, y = settings, y.cpu()
    correct = predict(model, x, batch_size) == y
    rows = []
    runs = [("pgd", e, s.steps, 1) for e in s.eps]
    runs += [("pgd-strong", e, s.strong_steps, s.strong_restarts) for e in (s.eps if s.strong_eps is None else s.strong_eps)]
    runs += [("pgd-large", s.large_eps, s.steps, 1)] if s.large_eps else []
    from tqdm.auto import tqdm
    for attack, eps, steps, restarts in tqdm(runs, desc=f"PGD on {name}", disable=not progress, leave=False):
        res = _batched(pgd, model, x, y, batch_size, eps=eps, steps=steps, restarts=restarts, seed=s.seed,
                       early_stop=True)
        rows.append(_row(name, attack, "inf", eps, correct, res.pred == y, steps=steps, restarts=restarts))
    if s.deepfool_steps:
        norms = x.flatten(1).norm(dim=1)
        budget = s.deepfool_zeta * (float(norms.mean()) if mean_norm_2 is None else mean_norm_2)
        df = _batched(deepfool, model, x, y, batch_size, norm="2", steps=s.deepfool_steps)
        fooled = df.success & (df.delta_norm <= budget * (1 + 1e-6))
        rho = rho_adv(df.delta, x)[correct & df.success]
        rows.append(_row(name, "deepfool", "2", budget, correct, ~fooled, steps=s.deepfool_steps, restarts=1,
                         zeta=s.deepfool_zeta, median_rho_adv=float(rho.median()) if rho.numel() else math.nan))
    if uap is not None:
        pred_clean = predict(model, x, batch_size)
        pred = predict(model, x, batch_size, perturbation=uap.v)
        rows.append(_row(name, "uap", uap.norm, uap.eps, correct, pred == y, zeta=uap.params.get("zeta"),
                         fooling_rate=float((pred != pred_clean).float().mean())))
    if transfer is not None:
        pred = predict(model, transfer["x_adv"], batch_size)
        rows.append(_row(name, "transfer", "inf", transfer["eps"], correct, pred == y, source=transfer["source"]))
    if s.square_queries:
        x_sq = square_attack(model, x, y, s.square_eps, s.square_queries, s.seed)
        rows.append(_row(name, "square", "inf", s.square_eps, correct, predict(model, x_sq, batch_size) == y,
                         steps=s.square_queries, restarts=1))
    return pd.DataFrame(rows)


def hygiene_checks(table: pd.DataFrame, tol: int = 1, large_eps_max: float = 0.05) -> pd.DataFrame:
    """The four gradient-masking checks of the module docstring, per model of a
    :func:`robustness_table` (several models' tables concatenated are fine).

    ``tol`` images of slack on checks (a)–(c); check (d) passes when robust accuracy at the large ε
    is at most ``large_eps_max``.  Returns one row per model: ``steps_restarts``, ``transfer``,
    ``gradient_free``, ``large_eps`` (True = passed, None = not run), ``failed`` (the names of failed
    checks) and ``verdict`` ("no masking detected" or "gradient masking suspected: …").
    """
    out = []
    for model_name, t in table.groupby("model", sort=False):
        acc = {(r.attack, round(r.eps, 8)): r.robust_accuracy for r in t.itertuples()}
        n = int(t["n"].iloc[0])
        slack = tol / max(n, 1) + 1e-9

        def get(attack, eps):
            return acc.get((attack, round(eps, 8)))

        def worst_whitebox(eps):
            vals = [v for a in ("pgd", "pgd-strong") if (v := get(a, eps)) is not None]
            return min(vals) if vals else None

        strong = [(r.eps, r.robust_accuracy) for r in t[t.attack == "pgd-strong"].itertuples()]
        c_a = None if not strong else all(ra <= get("pgd", e) + slack for e, ra in strong if get("pgd", e) is not None)
        tr = t[t.attack == "transfer"]
        c_b = None
        if len(tr) and worst_whitebox(tr.eps.iloc[0]) is not None:
            c_b = bool(tr.robust_accuracy.iloc[0] + slack >= worst_whitebox(tr.eps.iloc[0]))
        sq = t[t.attack == "square"]
        c_c = None
        if len(sq) and worst_whitebox(sq.eps.iloc[0]) is not None:
            c_c = bool(sq.robust_accuracy.iloc[0] + slack >= worst_whitebox(sq.eps.iloc[0]))
        lg = t[t.attack == "pgd-large"]
        c_d = None if not len(lg) else bool(lg.robust_accuracy.iloc[0] <= large_eps_max)
        checks = {"steps_restarts": c_a, "transfer": c_b, "gradient_free": c_c, "large_eps": c_d}
        failed = [k for k, v in checks.items() if v is False]
        out.append({"model": model_name, **checks, "failed": failed,
                    "verdict": "gradient masking suspected: " + ", ".join(failed) if failed else "no masking detected"})
    return pd.DataFrame(out)


def masking_text(checks: pd.DataFrame, labels: dict | None = None, what: str = "arm") -> str:
    """One sentence from :func:`hygiene_checks`: which models the four masking checks flag, and why.

    Rendered rather than asserted: whether a weakly attacked, briefly fine-tuned model masks its gradients
    is an outcome of the run (another CPU's arithmetic or another seed can tip it), so a notebook says what
    its checks found instead of promising a result.

        >>> masking_text(pd.DataFrame({"model": ["a"], "failed": [[]], "verdict": ["no masking detected"]}))
        'No arm is flagged: no masking check that ran failed for any of the 1.'
    """
    labels = labels or {}
    flagged = [(labels.get(m, m), f) for m, f in zip(checks.model, checks.failed) if f]
    if not flagged:
        return f"No {what} is flagged: no masking check that ran failed for any of the {len(checks)}."
    names = "; ".join(f"{m} ({', '.join(f)})" for m, f in flagged)
    return (f"**{len(flagged)} of {len(checks)} flagged \"gradient masking suspected\"**: {names}. Their robustness "
            f"numbers are not evidence of robustness until a stronger attack confirms them.")


def defense_summary(table: pd.DataFrame, checks: pd.DataFrame | None = None, eps=(1 / 255, 2 / 255)) -> pd.DataFrame:
    """One row per model of a (concatenated) :func:`robustness_table`: clean accuracy, the PGD-10
    defense rate at each ``eps`` and the DeepFool, UAP, transfer and Square defense rates (each
    ``rate [lo, hi]`` as numbers in separate columns), DeepFool's median ρ_adv, the UAP fooling
    rate, and — with ``checks`` from :func:`hygiene_checks` — the verdict."""
    rows = []
    for model_name, t in table.groupby("model", sort=False):
        r = {"model": model_name, "defense": t["defense"].iloc[0] if "defense" in t else model_name,
             "clean_accuracy": t["clean_accuracy"].iloc[0], "n": int(t["n"].iloc[0])}
        for e in eps:
            hit = t[(t.attack == "pgd") & ((t.eps - e).abs() < 1e-9)]
            if len(hit):
                tag = f"pgd{round(e * 255):d}"
                r.update({f"{tag}_defense_rate": hit.defense_rate.iloc[0], f"{tag}_lo": hit.defense_rate_lo.iloc[0],
                          f"{tag}_hi": hit.defense_rate_hi.iloc[0]})
        for attack in ("deepfool", "uap", "transfer", "square"):
            hit = t[t.attack == attack]
            if len(hit):
                r.update({f"{attack}_defense_rate": hit.defense_rate.iloc[0], f"{attack}_lo": hit.defense_rate_lo.iloc[0],
                          f"{attack}_hi": hit.defense_rate_hi.iloc[0]})
        df = t[t.attack == "deepfool"]
        if len(df):
            r["median_rho_adv"] = df.median_rho_adv.iloc[0]
        u = t[t.attack == "uap"]
        if len(u):
            r["uap_fooling_rate"] = u.fooling_rate.iloc[0]
        for k in ("params", "flops", "latency_ms"):
            if k in t:
                r[k] = t[k].iloc[0]
        rows.append(r)
    out = pd.DataFrame(rows)
    if checks is not None:
        out = out.merge(checks[["model", "verdict"]], on="model", how="left")
    return out
