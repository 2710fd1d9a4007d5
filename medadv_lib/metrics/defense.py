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

import json
import math
from dataclasses import dataclass

import pandas as pd
import torch
from ..runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from ..attacks import deepfool, pgd
from ..models import predict
from ..runtime import model_device
from ..stats import mcnemar_exact, wilson_interval  # noqa: F401  (re-exported)
from .robustness import bits_outcome, median_rho_adv, outcome_bits, rho_adv  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class RobustnessSettings:
    """What :func:`robustness_table` runs (see :func:`~medadv_lib.course.robustness_settings`).

    The **worst-case suite** runs at every ε of ``suite_eps`` (``None``: all of ``eps``; ``()``: none), after
    PGD-10, each attack only on the images every earlier one left correct (an image fooled once needs no
    further attack): the stronger PGD (``strong_steps`` × ``strong_restarts``), APGD-CE and APGD-DLR
    (``apgd_steps``; 0 leaves them out), Square (``square_queries``; 0 leaves it out) and the transfer
    examples (where their ε is the suite's).  Beside DeepFool, PGD-L2 and APGD-L2 attack at DeepFool's
    budget (``l2_steps``; 0 leaves them out)."""
    eps: tuple = (1 / 255, 2 / 255, 4 / 255)   # PGD-L∞ budgets
    steps: int = 10                            # the standard PGD
    strong_steps: int = 50                     # the stronger PGD ...
    strong_restarts: int = 5                   # ... with random restarts
    suite_eps: tuple | None = None             # budgets of the worst-case suite (None: all of ``eps``; (): none)
    apgd_steps: int = 100                      # APGD-CE and APGD-DLR (AutoAttack's white-box components)
    deepfool_zeta: float = 0.02                # DeepFool success counts within ζ × mean L2 image norm
    deepfool_steps: int = 50                   # 0: no DeepFool row
    l2_steps: int = 50                         # PGD-L2 and APGD-L2 at DeepFool's budget (0: none)
    square_queries: int = 1000                 # gradient-free attack of the suite (0: none)
    large_eps: float | None = 32 / 255         # check (d); None: not run
    seed: int = 0

    def suite_budgets(self) -> tuple:
        """The ε at which the worst-case suite runs."""
        return tuple(self.eps if self.suite_eps is None else self.suite_eps)


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
    """One :func:`paired_tests` row in words: both counts, the discordant images and the p-values (the raw one
    and the Holm-adjusted one that decides, always both: equal values are the adjustment's result, not an
    omission)."""
    n = int(row["n"])
    return (f"{row['model']} {what} on {round(row['robust_accuracy'] * n)}/{n} images vs "
            f"{round(row['reference_robust_accuracy'] * n)}/{n} for {row['reference']}; discordant: "
            f"{int(row['model_only'])} only {row['model']}, {int(row['reference_only'])} only {row['reference']}; "
            f"exact McNemar p = {row['p_value']:.3g} (Holm-adjusted {row['p_holm']:.3g})")


def _class_rates(y: torch.Tensor, correct: torch.Tensor, ok: torch.Tensor) -> dict:
    """Per-class robust accuracy and defense rate, and their means over the classes present (balanced)."""
    classes = sorted(int(c) for c in torch.unique(y))
    rob = [float((ok & (y == c)).sum()) / max(int((y == c).sum()), 1) for c in classes]
    cln = [float((correct & (y == c)).sum()) / max(int((y == c).sum()), 1) for c in classes]
    dr = [float((ok & correct & (y == c)).sum()) / int((correct & (y == c)).sum())
          if int((correct & (y == c)).sum()) else math.nan for c in classes]
    return {"classes": classes, "n_by_class": [int((y == c).sum()) for c in classes], "clean_accuracy_by_class": cln,
            "robust_accuracy_by_class": rob, "defense_rate_by_class": dr,
            "balanced_robust_accuracy": sum(rob) / len(rob) if rob else math.nan,
            "clean_balanced_accuracy": sum(cln) / len(cln) if cln else math.nan}


def robustness_row(model_name, attack, norm, eps, correct, ok, y=None, **extra) -> dict:
    """One row of :func:`robustness_table` from per-image booleans: ``correct`` (clean prediction right) and
    ``ok`` (right under the attack).  Robust accuracy and defense rate with their Wilson intervals, the
    per-image outcomes, per-class rates when ``y`` is given, and any ``extra`` columns."""
    n, ncc = len(ok), int(correct.sum())
    k_rob, k_def = int(ok.sum()), int((ok & correct).sum())
    lo, hi = wilson_interval(k_rob, n)
    dlo, dhi = wilson_interval(k_def, ncc)
    per_class = _class_rates(y, correct, ok) if y is not None else {}
    return {"model": model_name, "attack": attack, "norm": norm, "eps": float(eps), "n": n,
            "n_clean_correct": ncc, "clean_accuracy": ncc / max(n, 1),
            "robust_accuracy": k_rob / max(n, 1), "robust_accuracy_lo": lo, "robust_accuracy_hi": hi,
            "defense_rate": k_def / ncc if ncc else math.nan, "defense_rate_lo": dlo, "defense_rate_hi": dhi,
            "outcome_clean": outcome_bits(correct), "outcome_attacked": outcome_bits(ok), **per_class, **extra}


def _batched(attack, model, x, y, batch_size, **kw):
    dev, parts = model_device(model), []
    for i in range(0, len(x), batch_size):
        parts.append(attack(model, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev), **kw).cpu())
    return parts[0].cat(parts)


def _torchattacks():
    try:
        import torchattacks  # optional: torchattacks is in the peers extra
    except ImportError as exc:   # a peer: pyproject's `peers` extra, which `make setup` installs
        raise ImportError("the worst-case suite uses torchattacks' APGD and Square attacks: "
                          'pip install "torchattacks>=3.3,<3.4" (or run `make setup`)') from exc
    return torchattacks


def _run_peer(atk, model, x, y, batch_size):
    dev, out = model_device(model), []
    for i in range(0, len(x), batch_size):
        out.append(atk(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)).detach().cpu())
    model.eval()
    return torch.cat(out) if out else x.clone()


def square_attack(model, x, y, eps: float, queries: int, seed: int = 0, batch_size: int = 128) -> torch.Tensor:
    """Adversarial images from the gradient-free Square attack (Andriushchenko et al. 2020) of
    ``torchattacks`` (L∞, margin loss), the suite's gradient-free attack (check (c))."""
    atk = _torchattacks().Square(model, norm="Linf", eps=float(eps), n_queries=int(queries), n_restarts=1, seed=seed)
    return _run_peer(atk, model, x, y, batch_size)


def apgd_attack(model, x, y, eps: float, steps: int, loss: str = "ce", norm: str = "inf", seed: int = 0,
                batch_size: int = 128) -> torch.Tensor:
    """Adversarial images from APGD (Croce & Hein 2020, AutoAttack's white-box component) of ``torchattacks``:
    ``loss="ce"`` (cross-entropy) or ``"dlr"`` (the difference-of-logits ratio, invariant to the logits' scale,
    so a model that saturates its softmax cannot hide from it), ``norm`` ``"inf"`` or ``"2"``."""
    atk = _torchattacks().APGD(model, norm="Linf" if str(norm) == "inf" else "L2", eps=float(eps), steps=int(steps),
                               n_restarts=1, seed=seed, loss=loss)
    return _run_peer(atk, model, x, y, batch_size)


def _suite(s: RobustnessSettings, model, eps, batch_size, norm="inf"):
    """The attacks after the first one at ``eps``: ``(name, steps, restarts, fn(x, y) -> x_adv)``, in order."""
    if norm == "inf":
        out = [("pgd-strong", s.strong_steps, s.strong_restarts,
                lambda x, y: _batched(pgd, model, x, y, batch_size, eps=eps, steps=s.strong_steps,
                                      restarts=s.strong_restarts, seed=s.seed, early_stop=True).x_adv)] \
            if s.strong_steps else []
        out += [(f"apgd-{loss}", s.apgd_steps, 1,
                 lambda x, y, loss=loss: apgd_attack(model, x, y, eps, s.apgd_steps, loss, "inf", s.seed, batch_size))
                for loss in ("ce", "dlr")] if s.apgd_steps else []
        out += [("square", s.square_queries, 1, lambda x, y: square_attack(model, x, y, eps, s.square_queries, s.seed,
                                                                           batch_size))] if s.square_queries else []
        return out
    return [("pgd-l2", s.l2_steps, 1, lambda x, y: _batched(pgd, model, x, y, batch_size, eps=eps, norm="2",
                                                              steps=s.l2_steps, seed=s.seed, early_stop=True).x_adv),
            ("apgd-l2", s.l2_steps, 1, lambda x, y: apgd_attack(model, x, y, eps, s.l2_steps, "ce", "2", s.seed,
                                                               batch_size))] if s.l2_steps else []


def _cascade(name, model, x, y, correct, first_ok, first, eps, norm, suite, batch_size, transfer=None):
    """Run ``suite`` after the attack ``first`` (whose per-image outcome is ``first_ok``), each attack only on the
    images still correct; return the suite's rows (each cumulative: correct under every attack so far) and the
    ``worst`` row, which names the attack that fooled the most images (``set_by``) and counts every attack's new
    ones (``fooled_by``)."""
    alive = (first_ok & correct).clone()
    fooled_by, rows = {first: int((correct & ~first_ok).sum())}, []
    for attack, steps, restarts, fn in suite:
        idx = alive.nonzero().flatten()
        newly = idx[predict(model, fn(x[idx], y[idx]), batch_size) != y[idx]] if len(idx) else idx
        alive[newly] = False
        fooled_by[attack] = int(len(newly))
        rows.append(robustness_row(name, attack, norm, eps, correct, alive.clone(), y, steps=steps,
                                   restarts=restarts, attacked=int(len(idx)), fooled_new=int(len(newly)),
                                   cascade=True))
    if transfer is not None:
        t_ok = predict(model, transfer["x_adv"], batch_size) == y
        rows.append(robustness_row(name, "transfer", norm, eps, correct, t_ok, y, source=transfer["source"],
                                   attacked=int(alive.sum()), fooled_new=int((alive & ~t_ok).sum())))
        fooled_by["transfer"] = int((alive & ~t_ok).sum())
        alive &= t_ok
    set_by = max(fooled_by, key=lambda a: fooled_by[a]) if any(fooled_by.values()) else "none"
    rows.append(robustness_row(name, "worst" if norm == "inf" else "worst-l2", norm, eps, correct, alive, y,
                               set_by=set_by, fooled_by=json.dumps(fooled_by)))
    return rows


def robustness_table(model, x: torch.Tensor, y: torch.Tensor, name: str = "model",
                     settings: RobustnessSettings = RobustnessSettings(), mean_norm_2: float | None = None,
                     uap=None, transfer: dict | None = None, batch_size: int = 64,
                     progress: bool = False) -> pd.DataFrame:
    """Attack ``model`` white-box on ``x, y`` and return one tidy row per (attack, ε), with the per-image
    **worst case** over the attack suite at every ε of ``settings.suite_budgets()``.

    At each suite ε, PGD-10 attacks every image; then the stronger PGD, APGD-CE, APGD-DLR and Square each attack
    only the images every earlier attack left correct (so their rows are *cumulative*: correct under PGD-10 and
    every attack up to this one; ``attacked`` and ``fooled_new`` say how many images each attacked and newly
    fooled), and the transfer examples (crafted on another model; a standalone row) fold in last.  The row
    ``worst`` is the per-image worst case: an image counts as correct only if no attack of the suite fooled it.
    It names the attack that fooled the most images (``set_by``) and counts each attack's (``fooled_by``, JSON).
    Beside DeepFool (success within ``deepfool_zeta`` × the mean L2 norm; ``not_converged`` counts the clean-correct
    images it did not finish), PGD-L2 and APGD-L2 attack at the same budget, and ``worst-l2`` is their worst case
    with DeepFool's: an image DeepFool did not finish is attacked again, not counted as defended.

    Args:
        settings: the attacks and budgets (:class:`RobustnessSettings`).
        mean_norm_2: mean L2 norm of the images (``image_norm_stats(...)["mean_norm_2"]``) (DeepFool's budget is
            ``deepfool_zeta`` × this); ``None``: the mean over ``x``.
        uap: a :class:`~medadv_lib.attacks.uap.UAPResult` built against this very model (row ``uap``).
        transfer: ``{"source": name, "eps": ε, "x_adv": images}`` (or a list of them, one per ε): adversarial
            versions of ``x`` crafted on another model (row ``transfer``; at a suite ε part of the worst case).
    Returns:
        a DataFrame with columns ``model, attack, norm, eps, steps, restarts, n, n_clean_correct,
        clean_accuracy, robust_accuracy(_lo/_hi), defense_rate(_lo/_hi), outcome_clean, outcome_attacked``
        (per-image outcomes, :func:`outcome_bits`), per class ``classes, robust_accuracy_by_class,
        defense_rate_by_class, balanced_robust_accuracy, clean_balanced_accuracy``; the suite's ``attacked,
        fooled_new, cascade``; ``set_by, fooled_by`` on worst-case rows; ``median_rho_adv`` (a fraction) and
        ``not_converged`` for DeepFool, ``fooling_rate`` for the UAP.  Attacks: ``pgd``, ``pgd-strong``,
        ``apgd-ce``, ``apgd-dlr``, ``square``, ``transfer``, ``worst``, ``deepfool``, ``pgd-l2``, ``apgd-l2``,
        ``worst-l2``, ``uap``, ``pgd-large``.
    """
    s, y = settings, y.cpu()
    correct = predict(model, x, batch_size) == y
    rows = []
    budgets = s.suite_budgets()
    transfers = [] if transfer is None else [transfer] if isinstance(transfer, dict) else list(transfer)
    if any(all(abs(b - e) > 1e-12 for e in s.eps) for b in budgets):
        raise ValueError(f"suite_eps {budgets} must be budgets of eps {s.eps}: the suite starts from PGD-10's outcome")
    runs = [("pgd", e, s.steps) for e in s.eps] + ([("pgd-large", s.large_eps, s.steps)] if s.large_eps else [])
    used = set()
    for attack, eps, steps in tqdm(runs, desc=f"attacks on {name}", disable=not progress, leave=False):
        res = _batched(pgd, model, x, y, batch_size, eps=eps, steps=steps, restarts=1, seed=s.seed, early_stop=True)
        ok = res.pred == y
        rows.append(robustness_row(name, attack, "inf", eps, correct, ok, y, steps=steps, restarts=1))
        if attack == "pgd" and any(abs(b - eps) < 1e-12 for b in budgets):
            tr = next((t for t in transfers if abs(t["eps"] - eps) < 1e-12), None)
            used |= {id(tr)} if tr is not None else set()
            rows += _cascade(name, model, x, y, correct, ok, "pgd", eps, "inf", _suite(s, model, eps, batch_size),
                             batch_size, tr)
    if s.deepfool_steps:
        norms = x.flatten(1).norm(dim=1)
        budget = s.deepfool_zeta * (float(norms.mean()) if mean_norm_2 is None else mean_norm_2)
        df = _batched(deepfool, model, x, y, batch_size, norm="2", steps=s.deepfool_steps)
        fooled = df.success & (df.delta_norm <= budget * (1 + 1e-6))
        rho = median_rho_adv(df.delta, x, mask=correct & df.success)["overall"]     # the course's one median
        rows.append(robustness_row(name, "deepfool", "2", budget, correct, ~fooled, y, steps=s.deepfool_steps,
                                   restarts=1, zeta=s.deepfool_zeta, median_rho_adv=rho,
                                   not_converged=int((correct & ~df.success).sum())))
        if s.l2_steps:
            rows += _cascade(name, model, x, y, correct, ~fooled, "deepfool", budget, "2",
                             _suite(s, model, budget, batch_size, norm="2"), batch_size)
    if uap is not None:
        pred_clean = predict(model, x, batch_size)
        pred = predict(model, x, batch_size, perturbation=uap.v)
        rows.append(robustness_row(name, "uap", uap.norm, uap.eps, correct, pred == y, y, zeta=uap.params.get("zeta"),
                                   fooling_rate=float((pred != pred_clean).float().mean())))
    for tr in transfers:
        if id(tr) not in used:         # at a budget outside the suite: a standalone row
            pred = predict(model, tr["x_adv"], batch_size)
            rows.append(robustness_row(name, "transfer", "inf", tr["eps"], correct, pred == y, y, source=tr["source"]))
    return pd.DataFrame(rows)


def _binom_upper_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)) if n > 0 else 1.0


def _exceeds(k: int, n: int, share: float, alpha: float) -> bool:
    """True when ``k`` of ``n`` is significantly more than ``share`` of them (one-sided exact binomial test)."""
    return n > 0 and k > share * n and _binom_upper_tail(k, n, share) < alpha


MASKING_CHECKS = ("steps_restarts", "transfer", "gradient_free", "large_eps")
_LINF_SUITE = ("pgd", "pgd-strong", "apgd-ce", "apgd-dlr", "square", "transfer", "worst")


def hygiene_checks(table: pd.DataFrame, share: float = 0.1, alpha: float = 0.05,
                   large_eps_max: float = 0.05) -> pd.DataFrame:
    """The four gradient-masking checks of the module docstring, per model of a :func:`robustness_table`
    (several models' tables concatenated are fine), at every ε where the worst-case suite ran.

    Checks (a)–(c) ask whether a later kind of attack fools *significantly more* than ``share`` of the images an
    earlier kind left correct (one-sided exact binomial test at ``alpha``): (a) the stronger white-box attacks
    (stronger PGD, APGD-CE, APGD-DLR) against PGD-10's survivors — PGD-10 had not converged; (b) the transfer
    examples against the white-box attacks' survivors; (c) Square against them.  ``share`` is the slack a
    converged attack leaves (random restarts find a few more images by luck); the test turns it into a count that
    follows from how many survivors there are, so a handful of survivors can never fire a check and a masked
    model, whose survivors the later attack fools in bulk, always does.  (d) fails when the robust accuracy of
    PGD at the large ε is significantly above ``large_eps_max`` (its Wilson interval lies above it).

    Returns one row per model: ``steps_restarts``, ``transfer``, ``gradient_free``, ``large_eps`` (True = passed,
    None = not run), ``evidence`` (the counts behind each), ``failed`` (the names of failed checks) and
    ``verdict`` ("no masking detected" or "gradient masking suspected: …").
    """
    out = []
    for model_name, t in table.groupby("model", sort=False):
        res = {k: None for k in MASKING_CHECKS}
        evidence = []

        def judge(check, k, n, what):
            passed = not _exceeds(k, n, share, alpha)
            res[check] = passed if res[check] is None else (res[check] and passed)
            evidence.append(f"{what}: {k} of {n}")

        for w in t[t.attack == "worst"].itertuples():
            at = t[((t.eps - w.eps).abs() < 1e-9) & t.attack.isin(_LINF_SUITE)].set_index("attack")
            tag = f"{w.eps * 255:g}/255"
            if "pgd" not in at.index:
                continue
            pgd_ok, corr = bits_outcome(at.loc["pgd", "outcome_attacked"]), bits_outcome(at.loc["pgd", "outcome_clean"])
            n_a = int((pgd_ok & corr).sum())
            strong = [a for a in ("pgd-strong", "apgd-ce", "apgd-dlr") if a in at.index]
            if strong:
                judge("steps_restarts", int(sum(at.loc[a, "fooled_new"] for a in strong)), n_a,
                      f"(a) {tag} stronger white-box fooled, of PGD-10's survivors")
            wb = bits_outcome(at.loc[strong[-1], "outcome_attacked"]) if strong else pgd_ok & corr
            n_wb = int((wb & corr).sum())
            if "transfer" in at.index:
                t_ok = bits_outcome(at.loc["transfer", "outcome_attacked"])
                judge("transfer", int((wb & corr & ~t_ok).sum()), n_wb,
                      f"(b) {tag} transfer fooled, of the white-box survivors")
            if "square" in at.index:
                judge("gradient_free", int(at.loc["square", "fooled_new"]), n_wb,
                      f"(c) {tag} Square fooled, of the white-box survivors")
        lg = t[t.attack == "pgd-large"]
        if len(lg):
            r = lg.iloc[0]
            res["large_eps"] = bool(r.robust_accuracy_lo <= large_eps_max)
            evidence.append(f"(d) {r.eps * 255:g}/255 robust accuracy {r.robust_accuracy:.1%} "
                            f"[{r.robust_accuracy_lo:.1%}, {r.robust_accuracy_hi:.1%}]")
        failed = [k for k, v in res.items() if v is False]
        out.append({"model": model_name, **res, "evidence": "; ".join(evidence), "failed": failed,
                    "verdict": "gradient masking suspected: " + ", ".join(failed) if failed else "no masking detected"})
    return pd.DataFrame(out, columns=["model", *MASKING_CHECKS, "evidence", "failed", "verdict"])


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
    """One row per model of a (concatenated) :func:`robustness_table`: clean accuracy and clean balanced accuracy;
    at each ``eps`` the PGD-10 defense rate (``pgd<ε·255>_…``) and the **worst case** over the suite
    (``worst<ε·255>_defense_rate``, ``_lo``, ``_hi``, ``_robust_accuracy``, ``_balanced`` — the balanced robust accuracy —
    and ``_set_by``, the attack that fooled the most images); DeepFool's defense rate and median ρ_adv, the L2 worst
    case (``worst_l2_…``), the UAP and transfer rates; and — with ``checks`` from :func:`hygiene_checks` — the
    masking verdict (``verdict``, ``masked``)."""
    rows = []
    for model_name, t in table.groupby("model", sort=False):
        r = {"model": model_name, "defense": t["defense"].iloc[0] if "defense" in t else model_name,
             "clean_accuracy": t["clean_accuracy"].iloc[0], "n": int(t["n"].iloc[0])}
        if "clean_balanced_accuracy" in t:
            r["clean_balanced_accuracy"] = t["clean_balanced_accuracy"].iloc[0]
        for e in eps:
            for attack, tag in (("pgd", f"pgd{round(e * 255):d}"), ("worst", f"worst{round(e * 255):d}")):
                hit = t[(t.attack == attack) & ((t.eps - e).abs() < 1e-9)]
                if len(hit):
                    h = hit.iloc[0]
                    r.update({f"{tag}_defense_rate": h.defense_rate, f"{tag}_lo": h.defense_rate_lo,
                              f"{tag}_hi": h.defense_rate_hi})
                    if attack == "worst":
                        r.update({f"{tag}_robust_accuracy": h.robust_accuracy, f"{tag}_set_by": h.set_by,
                                  f"{tag}_balanced": h.get("balanced_robust_accuracy", math.nan)})
        for attack, tag in (("deepfool", "deepfool"), ("worst-l2", "worst_l2"), ("uap", "uap"), ("transfer", "transfer")):
            hit = t[t.attack == attack]
            if len(hit):
                r.update({f"{tag}_defense_rate": hit.defense_rate.iloc[0], f"{tag}_lo": hit.defense_rate_lo.iloc[0],
                          f"{tag}_hi": hit.defense_rate_hi.iloc[0]})
        df = t[t.attack == "deepfool"]
        if len(df):
            r["median_rho_adv"] = df.median_rho_adv.iloc[0]
            if "not_converged" in df:
                r["deepfool_not_converged"] = df.not_converged.iloc[0]
        w2 = t[t.attack == "worst-l2"]
        if len(w2):
            r["worst_l2_set_by"] = w2.set_by.iloc[0]
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
        out["masked"] = out.verdict.str.startswith("gradient masking")
    return out


def collapse_flags(table: pd.DataFrame, reference: str = "baseline") -> pd.DataFrame:
    """The collapse guard: per model of a :func:`robustness_table`, the classes on which its *clean* accuracy lies
    significantly below ``reference``'s (Wilson 95 % intervals apart, on the same images).  A model that gave up
    a class to look robust on the others is ``collapsed`` and cannot be the best arm.  Returns one row per model:
    ``model, collapsed, classes_given_up`` (class indices), ``clean_balanced_accuracy``."""
    first = table.drop_duplicates("model").set_index("model")
    ref = first.loc[reference]
    rows = []
    for model_name, r in first.iterrows():
        given = [c for c, n, a, b in zip(r.classes, r.n_by_class, r.clean_accuracy_by_class, ref.clean_accuracy_by_class)
                 if wilson_interval(round(a * n), n)[1] < wilson_interval(round(b * n), n)[0]]
        rows.append({"model": model_name, "collapsed": bool(given), "classes_given_up": given,
                     "clean_balanced_accuracy": r.clean_balanced_accuracy})
    return pd.DataFrame(rows)
