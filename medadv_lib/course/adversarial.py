"""Notebook 05's pipelines: the training-side defenses (UAP fine-tuning rounds, universal adversarial
training, PGD adversarial training) fine-tuned from a trained checkpoint and cached like every course
model, their round-by-round evaluation, and the cross-threat table of every defended model.

The hooks themselves live in :mod:`medadv_lib.defenses.adversarial`; the fine-tuning configuration is
notebook 04's (:func:`~medadv_lib.course.pipelines.finetune_config`), so the two defense notebooks
compare defenses trained the same way.  ``medadv defend --method`` comes here too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import LABELS
from ..attacks.uap import random_uap, uap_budget
from ..data import image_norm_stats, load_split
from ..defenses.adversarial import PGDPerturb, UAPPerturb, UATPerturb
from ..metrics.defense import paired_text, robustness_row, wilson_interval
from ..metrics.universal import uap_report
from ..models import load_checkpoint, predict, read_checkpoint
from ..train import load_or_train
from .config import adversarial_settings
from .pipelines import course_model, course_robustness, course_uap, finetune_config
from .rules import CHEN_PGD, judge_column, recorded_best_arm, verdict_hirano

METHODS = ("uap-finetune", "uat", "pgd-at")
RANDOM_DRAWS = 5
"""Draws of the rounds' random control (the fresh UAP shuffled), as notebook 02's; the strongest is the control."""
COVID = LABELS.index("COVID-19")


def _load(checkpoint, device=None, precision=None):
    model, meta = load_checkpoint(checkpoint, device=device, precision=precision)
    return model, {**meta, "checkpoint": str(checkpoint), "cached": True}


def adversarial_finetune(checkpoint, hook, fast: bool, epochs: int, output_dir="../runs", data_dir=None,
                         device=None, progress: bool = True, precision=None):
    """Fine-tune the model in ``checkpoint`` for ``epochs`` with the per-batch ``hook``
    (:mod:`medadv_lib.defenses.adversarial`) through :func:`~medadv_lib.train.load_or_train`: the
    hook's description enters the configuration, so the result is cached under its own key.
    Returns ``(model, info)``."""
    cfg = finetune_config(checkpoint, fast, epochs, perturbation=hook.describe())
    return load_or_train(cfg, out_dir=output_dir, data_dir=data_dir, device=device, progress=progress,
                         precision=precision, perturb=hook)


def judge_uap(model, fast: bool, output_dir="../runs", data_dir=None, seed: int = 0, image_size: int | None = None,
              target=None):
    """The UAP that judges notebook 05's defenses against UAPs: the course's converged builder (:func:`course_uap`,
    ζ of :func:`adversarial_settings`, L∞, non-targeted or towards ``target``) on validation images
    (``judge_split``), which no training or fine-tuning steps on, with the seed ``seed + judge_seed``; cached
    like every course UAP.  Every model of notebook 05 — rounds, controls, cross-threat table — meets this one
    attacker."""
    a = adversarial_settings(fast)
    return course_uap(model, a.zeta, "inf", target=target, fast=fast, output_dir=output_dir, data_dir=data_dir,
                      seed=seed + a.judge_seed, image_size=image_size, split=a.judge_split)


def uap_finetune_rounds(checkpoint, fast: bool, rounds: int | None = None, output_dir="../runs", data_dir=None,
                        device=None, seed: int = 0, progress: bool = True, precision=None) -> list[dict]:
    """Hirano et al.'s iterative UAP fine-tuning, starting from the model in ``checkpoint``.

    Round 0 is that model and its course UAP (:func:`course_uap`, ζ from
    :func:`adversarial_settings`).  Round k fine-tunes round k−1's model for ``round_epochs`` with a
    UAP added to ``share`` of every batch (:class:`~medadv_lib.defenses.adversarial.UAPPerturb`): one
    drawn from the pool of every UAP built so far (rounds 0 … k−1), newest included, so that the
    model does not forget earlier ones.  Then it builds a **fresh** UAP against the new model — the
    course's converged builder at the same budget, on validation images (``judge_split``: no training or
    fine-tuning steps on them) with a seed of its own (``seed + judge_seed``) — which judges the round and
    joins the pool of round k+1.  Each round is cached (model and UAP).

    Returns one dict per round: ``round``, ``model``, ``info`` (as :func:`load_or_train`),
    ``trained_against`` (the newest UAPResult of the round's pool, i.e. round k−1's fresh UAP;
    ``None`` for round 0), ``pool`` (the number of UAPs it trained on) and ``fresh`` (the UAPResult
    built against the round's model).
    """
    a = adversarial_settings(fast, rounds)
    model, info = _load(checkpoint, device, precision)
    size = info["config"]["image_size"]

    def fresh(m):
        return judge_uap(m, fast, output_dir, data_dir, seed, size)

    out = [{"round": 0, "model": model, "info": info, "trained_against": None, "pool": 0, "fresh": fresh(model)}]
    for k in range(1, a.rounds + 1):
        prev = out[-1]
        pool = torch.cat([r["fresh"].v.detach().cpu() for r in out])
        hook = UAPPerturb(pool, a.share, seed, name=f"uapft-r{k}", zeta=a.zeta, round=k)
        m, inf = adversarial_finetune(prev["info"]["checkpoint"], hook, fast, a.round_epochs, output_dir, data_dir,
                                      device, progress, precision)
        out.append({"round": k, "model": m, "info": inf, "trained_against": prev["fresh"], "pool": len(pool),
                    "fresh": fresh(m)})
    return out


def adversarial_training(checkpoint, method: str, fast: bool, eps: float | None = None, epochs: int | None = None,
                         output_dir="../runs", data_dir=None, device=None, seed: int = 0, progress: bool = True,
                         precision=None):
    """Universal adversarial training (``method="uat"``, Shafahi et al.; ζ of
    :func:`adversarial_settings`) or PGD adversarial training (``"pgd-at"``, Madry et al.; ``eps``
    pixel units, default the mode's ``at_eps``; FAST one FGSM step with a random start, Wong et al.)
    of the model in ``checkpoint``, for ``epochs`` (default: as many as all UAP fine-tuning rounds
    together).  Cached; returns ``(model, info)``."""
    a = adversarial_settings(fast, eps=eps)
    if method == "uat":
        size = read_checkpoint(checkpoint)["meta"]["config"]["image_size"]
        budget = uap_budget(a.zeta, "inf", image_norm_stats(size, data_dir))
        hook = UATPerturb(budget, "inf", share=a.uat_share, seed=seed, name="uat", zeta=a.zeta)
    elif method == "pgd-at":
        hook = PGDPerturb(a.at_eps, steps=a.at_steps, share=a.at_share, seed=seed,
                          name=f"pgdat{a.at_eps * 255:.3g}")
    else:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)} (uap-finetune: uap_finetune_rounds)")
    return adversarial_finetune(checkpoint, hook, fast, epochs or a.epochs, output_dir, data_dir, device, progress,
                                precision)


def course_uap_finetune(base: str, fast: bool, rounds: int | None = None, output_dir="../runs", data_dir=None,
                        device=None, seed: int = 0, progress: bool = True, precision=None) -> list[dict]:
    """:func:`uap_finetune_rounds` from the course's ``base`` model (notebook 01's, loaded or trained)."""
    _, info = course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
    return uap_finetune_rounds(info["checkpoint"], fast, rounds, output_dir, data_dir, device, seed, progress,
                               precision)


def course_adversarial_training(base: str, method: str, fast: bool, eps: float | None = None,
                                output_dir="../runs", data_dir=None, device=None, seed: int = 0,
                                progress: bool = True, precision=None):
    """:func:`adversarial_training` from the course's ``base`` model (notebook 01's, loaded or trained)."""
    _, info = course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
    return adversarial_training(info["checkpoint"], method, fast, eps, None, output_dir, data_dir, device, seed,
                                progress, precision)


def _uap_eval(model, x, y, v, clean, target=None) -> dict:
    """:func:`~medadv_lib.metrics.universal.uap_report` of ``v`` on ``x`` with the model's clean predictions
    ``clean`` computed once by the caller (one forward pass per perturbation, not two)."""
    return uap_report(model, x, y, v, clean, predict(model, x, perturbation=v), target)


def _rate_cols(prefix: str, k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {prefix: k / n if n else float("nan"), f"{prefix}_lo": lo, f"{prefix}_hi": hi}


def attacker_text(res) -> str:
    """What built a UAP, in one phrase: method, images, steps, whether it converged — e.g. "SGD UAP on 222
    validation images (+128 held out), 48 steps, converged (plateau)"."""
    p = res.params
    where = {"train": "training", "val": "validation", "test": "test"}.get(p.get("split"), "build")
    held = f" (+{p['holdout']} held out)" if p.get("holdout") else ""
    steps = p.get("steps")
    return (f"{'SGD' if res.method == 'sgd' else res.method} UAP on {p.get('n', '?')} {where} images{held}"
            + (f", {steps} steps" if steps is not None else f", {res.passes} passes")
            + (f", converged ({res.stop_reason})" if res.converged else f", NOT converged ({res.stop_reason})"))


def rounds_table(rounds: list[dict], data_dir=None, seed: int = 0, defense: str = "uap-finetune"):
    """One row per round of :func:`uap_finetune_rounds`, measured on the whole test split.

    Columns: ``defense``, ``round``, ``pool`` (UAPs trained on), ``clean_accuracy`` (with its Wilson ``_lo``/``_hi``), ``balanced_accuracy``, ``sensitivity_<class>``;
    ``old_uap_fooling_rate`` (the UAP the round was fine-tuned against, on the fine-tuned model;
    empty for round 0), ``fresh_uap_fooling_rate`` (a new white-box UAP against the round's model,
    same budget and effort) and ``random_fooling_rate`` (the control: the strongest of :data:`RANDOM_DRAWS` draws of the
    fresh UAP's own pixels shuffled, so of its very L2 and L∞ norm; ``random_fooling_rate_mean`` their mean), each with
    its Wilson 95 % interval (``_lo``/``_hi``) and the fresh rate per class; ``cosine_to_previous``:
    cosine similarity of the fresh UAP to the previous round's (does the attacker's pattern change?);
    ``fresh_uap_attacker`` (:func:`attacker_text`), ``fresh_uap_steps``, ``fresh_uap_converged``;
    ``strongest_uap_fooling_rate`` (with ``_lo``/``_hi`` and ``_reweighted``): the highest fooling rate of any UAP
    the attacker has against the round's model — its fresh UAP and every UAP of the round's pool (the fresh UAPs
    of the earlier rounds, which the fine-tuning saw) — and ``strongest_uap`` which one set it (``"fresh"`` or
    ``"round j"``).  A judge that is not the strongest UAP there would flatter the defense, so the verdict reads
    this column (:func:`~medadv_lib.course.rules.verdict_hirano`).
    Fooling rate = prediction changed by the perturbation (:mod:`medadv_lib.metrics.universal`).
    """
    size = rounds[0]["info"]["config"]["image_size"]
    x, y = load_split("test", size, data_dir)
    n, rows, prev_v = len(y), [], None
    for i, r in enumerate(rounds):
        m, fresh = r["model"], r["fresh"]
        clean = predict(m, x)
        ev = _uap_eval(m, x, y, fresh.v, clean)
        draws = [_uap_eval(m, x, y, random_uap(fresh.v, fresh.eps, fresh.norm, kind="shuffle", seed=seed + d), clean)
                 for d in range(RANDOM_DRAWS)]          # the fresh UAP's own pixels, shuffled: same L2 and L∞
        rnd = max(draws, key=lambda e: e["fooling_rate"])
        row = {"defense": defense, "round": r["round"], "pool": r.get("pool", 0),
               **_rate_cols("clean_accuracy", round(ev["clean_accuracy"] * n), n),
               "balanced_accuracy": float(sum(ev["sensitivity_clean"]) / len(LABELS)),
               **{f"sensitivity_{lab}": s for lab, s in zip(LABELS, ev["sensitivity_clean"])}}
        if r["trained_against"] is not None:
            old = _uap_eval(m, x, y, r["trained_against"].v, clean)
            row.update(_rate_cols("old_uap_fooling_rate", round(old["fooling_rate"] * n), n))
        else:
            row.update(old_uap_fooling_rate=float("nan"), old_uap_fooling_rate_lo=float("nan"),
                       old_uap_fooling_rate_hi=float("nan"))
        row.update(_rate_cols("fresh_uap_fooling_rate", round(ev["fooling_rate"] * n), n))
        row.update({f"fresh_uap_fooling_rate_{lab}": f for lab, f in zip(LABELS, ev["fooling_rate_per_class"])})
        row["fresh_uap_fooling_rate_reweighted"] = ev["fooling_rate_reweighted"]
        row.update(_rate_cols("random_fooling_rate", round(rnd["fooling_rate"] * n), n))
        row.update(random_fooling_rate_mean=float(np.mean([e["fooling_rate"] for e in draws])), random_draws=len(draws))
        best, best_ev = "fresh", ev
        for earlier in rounds[:i]:                       # the pool the round was fine-tuned on
            e = old if earlier["fresh"] is r["trained_against"] else _uap_eval(m, x, y, earlier["fresh"].v, clean)
            if e["fooling_rate"] > best_ev["fooling_rate"]:
                best, best_ev = f"round {earlier['round']}", e
        row.update(_rate_cols("strongest_uap_fooling_rate", round(best_ev["fooling_rate"] * n), n))
        row.update(strongest_uap_fooling_rate_reweighted=best_ev["fooling_rate_reweighted"], strongest_uap=best)
        v = fresh.v.flatten().float().cpu()
        row["cosine_to_previous"] = (float(torch.nn.functional.cosine_similarity(v, prev_v, dim=0))
                                     if prev_v is not None else float("nan"))
        row.update(eps=fresh.eps, zeta=fresh.params.get("zeta"), n=n, checkpoint=Path(r["info"]["checkpoint"]).name,
                   fresh_uap_attacker=attacker_text(fresh), fresh_uap_steps=fresh.params.get("steps"),
                   fresh_uap_converged=bool(fresh.converged))
        prev_v = v
        rows.append(row)
    return pd.DataFrame(rows)


def cross_threat_table(models: dict, fast: bool, source: str = "baseline", output_dir="../runs", data_dir=None,
                       seed: int = 0, progress: bool = True):
    """Every model × every threat: ``models`` is ``{name: (model, info)}``; ``source`` names the
    undefended model whose PGD examples are the transfer check.

    Per model: :func:`course_robustness` (white-box PGD-L∞ at the mode's ε, the stronger PGD, DeepFool,
    transfer, Square, large ε — on :func:`eval_images`; cached, so notebook 04's arms are not attacked
    twice) and, on the whole test split, the model's own non-targeted ζ = 2 % UAP and its targeted UAP
    → COVID-19 (:func:`judge_uap`: the attacker every model of notebook 05 meets).  Returns ``(matrix, table)``: ``matrix`` one row per model with
    ``clean_accuracy`` (test split), ``uap_fooling_rate``, ``uap_to_covid_success`` (among the test images
    the model does *not* already predict COVID-19: the share the targeted UAP sends there) and
    ``pgd<ε·255>_defense_rate`` (PGD-10) and ``worst<ε·255>_defense_rate`` (the worst case over the suite, where it
    ran; each with ``_lo``/``_hi``), ``worst<ε·255>_balanced`` (balanced robust accuracy), ``deepfool_median_rho_adv``; ``table`` the
    long robustness table of every model (plus the ``uap-test`` and ``uap-covid-test`` rows) for
    :func:`~medadv_lib.metrics.defense.hygiene_checks` and the records.
    """
    src, src_info = models[source]
    tables, rows, splits = [], [], {}
    for name, (m, info) in models.items():
        t = course_robustness(m, info, name, fast, src, src_info, output_dir, data_dir, seed, progress)
        size = info["config"]["image_size"]
        if size not in splits:                   # the test split once per image size
            splits[size] = load_split("test", size, data_dir)
        x, y = splits[size]
        clean = predict(m, x)
        correct = clean == y
        uaps = {"uap-test": None, "uap-covid-test": COVID}
        extra = []
        for attack, target in uaps.items():
            u = judge_uap(m, fast, output_dir, data_dir, seed, size, target)
            adv = predict(m, x, perturbation=u.v)
            ev = uap_report(m, x, y, u.v, clean, adv, target)
            r = robustness_row(name, attack, "inf", u.eps, correct, adv == y, zeta=0.02,
                               target=None if target is None else LABELS[target], fooling_rate=ev["fooling_rate"],
                               target_success_rate=ev.get("target_success_rate"),
                               target_success_rate_non_target=ev.get("target_success_rate_non_target"))
            extra.append(r)
            if target is None:
                rows.append({"model": name, **_rate_cols("uap_fooling_rate", int((adv != clean).sum()), len(y))})
            else:      # among the images not already predicted COVID-19: what the UAP itself achieves
                moved = clean != target
                rows.append({"model": name, **_rate_cols("uap_to_covid_success", int((adv[moved] == target).sum()),
                                                         int(moved.sum()))})
        t = pd.concat([t, pd.DataFrame(extra)], ignore_index=True)
        tables.append(t)
        base = {"model": name, "clean_accuracy": float(correct.float().mean())}
        for _, p in t[t.attack.isin(["pgd", "worst"])].iterrows():       # PGD-10 alone, and the worst case over the suite
            tag = f"{p.attack}{p.eps * 255:.3g}_defense_rate"
            base.update({tag: p.defense_rate, f"{tag}_lo": p.defense_rate_lo, f"{tag}_hi": p.defense_rate_hi})
            if p.attack == "worst":
                base[f"worst{p.eps * 255:.3g}_balanced"] = p.get("balanced_robust_accuracy")
        df = t[t.attack == "deepfool"]
        base["deepfool_median_rho_adv"] = float(df.median_rho_adv.iloc[0]) if len(df) else float("nan")
        rows.append(base)
    matrix = pd.DataFrame(rows).groupby("model", sort=False).first()
    lead = ["clean_accuracy", "uap_fooling_rate", "uap_fooling_rate_lo", "uap_fooling_rate_hi", "uap_to_covid_success",
            "uap_to_covid_success_lo", "uap_to_covid_success_hi"]
    return matrix[lead + [c for c in matrix.columns if c not in lead]], pd.concat(tables, ignore_index=True)


def best_arm_of_04(output_dir="../runs", default: str = "cbam+prune0.6", eps: float = 1 / 255) -> tuple[str, str]:
    """Notebook 04's best defended arm by the rule book (the highest balanced robust accuracy under the worst case at
    ``eps`` on validation images, masked and collapsed arms left out: the arm its records mark, else
    :func:`~medadv_lib.course.rules.best_arm` over its test rows; :func:`~medadv_lib.course.rules.recorded_best_arm`),
    read from ``OUTPUT_DIR/results/04_pruning_and_attention.json``; ``(default, reason)`` when that file is missing or
    no arm qualifies.  Returns ``(arm, how it was chosen)``."""
    path = Path(output_dir) / "results" / "04_pruning_and_attention.json"
    if not path.is_file():
        return default, f"notebook 04's results are not in {path.parent.name}/: the default arm {default}"
    arm, why = recorded_best_arm(json.loads(path.read_text()), eps)
    if arm is None:
        return default, f"notebook 04's results name no best arm ({why}): the default arm {default}"
    return arm, f"notebook 04's best arm: {why}"


def uap_fooling_summary(model, info: dict, fast: bool, output_dir="../runs", data_dir=None, seed: int = 0) -> dict:
    """The model's own judging UAP (:func:`judge_uap`, the same attacker as the rounds', cached) on the whole test split:
    ``uap_fooling_rate`` with ``_lo``/``_hi`` (Wilson 95 %), ``clean_accuracy``, ``n`` — the numbers
    :func:`adversarial_verdicts` compares, for a model outside the cross-threat table (e.g. the
    equally fine-tuned control) — and the model's identity (``model``, ``checkpoint``,
    ``data_fingerprint``, ``fine_tune_epochs``) for :func:`~medadv_lib.course.results.control_records`."""
    size = info["config"]["image_size"]
    x, y = load_split("test", size, data_dir)
    u = judge_uap(model, fast, output_dir, data_dir, seed, size)
    clean, adv = predict(model, x), predict(model, x, perturbation=u.v)
    return {**_rate_cols("uap_fooling_rate", int((adv != clean).sum()), len(y)),
            "clean_accuracy": float((clean == y).float().mean()), "n": len(y),
            "model": info["config"]["model"], "checkpoint": info["checkpoint"],
            "data_fingerprint": info.get("data_fingerprint"),
            "fine_tune_epochs": info["config"]["epochs"] if info["config"].get("init_from") else 0,
            "attacker": attacker_text(u)}


def method_label(method: str, fast: bool, eps: float | None = None) -> str:
    """How a defense of notebook 05 is *shown*: ``"pgd-at"`` (its cache and record key) is PGD-7 adversarial
    training in full mode but one FGSM step with a random start in FAST (Wong et al. 2020), so it reads
    ``"FGSM-RS AT (2/255)"`` or ``"PGD-7 AT (2/255)"`` (the mode's ``at_steps`` and ``at_eps``, or ``eps``);
    every other name is returned unchanged."""
    if method != "pgd-at":
        return method
    a = adversarial_settings(fast, eps=eps)
    kind = "FGSM-RS" if a.at_steps == 1 else f"PGD-{a.at_steps}"
    return f"{kind} AT ({a.at_eps * 255:.3g}/255)"


def method_labels(fast: bool, eps: float | None = None) -> dict:
    """``{key: shown name}`` for the renamed defenses (:func:`method_label`), for ``DataFrame.rename``."""
    return {m: method_label(m, fast, eps) for m in METHODS if method_label(m, fast, eps) != m}


def _apart(m, a: str, b: str, col: str) -> bool:
    """The Wilson intervals of ``col`` for rows ``a`` and ``b`` of ``m`` do not overlap."""
    return bool(m.loc[a, f"{col}_hi"] < m.loc[b, f"{col}_lo"] or m.loc[b, f"{col}_hi"] < m.loc[a, f"{col}_lo"])


def adversarial_verdicts(matrix, base: str = "baseline", defended: str = "uap-finetune", reference: str = "pgd-at",
                         pgd_bar: float = CHEN_PGD, max_ratio: float = 0.5, max_acc_loss: float = 0.03,
                         controls: dict | None = None, paired=None, labels: dict | None = None, rounds=None):
    """Notebook 05's goals and the papers' claims, decided from a :func:`cross_threat_table` matrix.

    ``controls``: ``{name: summary}`` of models fine-tuned *without* UAPs (:func:`uap_fooling_summary`),
    e.g. plain fine-tuning for as many epochs and notebook 04's one-epoch ``baseline-ft``: fine-tuning
    alone moves a model and so its fresh UAP, and a defense must beat that too.

    One row per statement with ``key`` (a stable name to read it by: ``finetune-uap-ratio``,
    ``finetune-accuracy``, ``at-pgd-bar``, ``hirano-finetune``, ``hirano-few-cases``, ``at-vs-finetune-uap``,
    ``finetune-pgd2``, ``control:<name>``, ``paired:<model>``), ``measured`` (text), ``verdict`` (a phrase)
    and ``met`` (True/False for the goals, None for claims and comparisons):

    * UAP fine-tuning: a fresh UAP fools at most ``max_ratio`` × as many test images as on ``base``;
    * UAP fine-tuning: clean accuracy loss at most ``max_acc_loss``;
    * ``reference`` (PGD adversarial training): defense rate at ε = 1/255 ≥ ``pgd_bar`` (Chen et al.'s
      77.18 %) — met when the Wilson interval lies above the bar, not met when below, "not decided" (``met``
      None) when it holds the bar, the rule book's one rule for every sample size — shown beside the undefended model's rate at 1/255 and both at 2/255; when the undefended
      model reaches the bar too, the verdict says so (the goal is met but separates nothing);
    * Hirano et al.: UAP fine-tuning lowers the fresh UAP's fooling rate — the rule book's
      :func:`~medadv_lib.course.rules.verdict_hirano`, the very rule and words of the report ("reproduced",
      "partly", "not reproduced"), on round 0 and the last round of ``rounds`` (a :func:`rounds_table`: the
      numbers the report reads) or, without it, on ``base`` and ``defended`` of the matrix, against every control;
    * Hirano, Minagi & Takemoto 2021, "only very few cases": one model cannot test a frequency; the row
      says whether *this* case helps (as the previous claim) and says so;
    * per-image vs UAP training against UAPs: which of ``reference`` and ``defended`` leaves the lower
      fresh-UAP fooling rate (intervals apart, else "not shown to differ");
    * UAP fine-tuning against per-image PGD at 2/255 vs ``base``: with ``paired`` (a
      :func:`~medadv_lib.metrics.defense.paired_tests` table of the defended models against ``base``, e.g.
      at 2/255) image by image — the discordant images and the exact McNemar p-value (Holm-adjusted over
      the models compared) — else by whether the Wilson intervals of the defense rates overlap;
    * one row per control: UAP fine-tuning vs that control against a fresh UAP (intervals: the controls'
      UAP rates are on the whole test split, kept as rates only);
    * with ``paired``, one more row per other model of it: that model vs ``base``, paired.

    ``labels``: how to show model names (e.g. :func:`method_labels`); the keys stay as they are.
    """
    m = matrix
    labels = labels or {}

    def lab(k):
        return labels.get(k, k)

    def paired_row(name):
        r = paired.set_index("model").loc[name].to_dict()
        txt = paired_text({**r, "model": lab(name), "reference": lab(r["reference"])})
        verdict = (f"{'more' if r['shown'] == 'higher' else 'fewer'} images correct under attack than the undefended "
                   "model" if r["shown"] != "not shown" else "not shown to differ (paired)")
        return (f"paired:{name}", "comparison", f"{lab(name)} against the worst case over the suite (ε = {r['eps'] * 255:.3g}/255) vs the undefended "
                              "model, image by image", txt, verdict)
    controls = controls or {}
    if controls:
        m = pd.concat([m, pd.DataFrame(list(controls.values()), index=list(controls))])
    u0, ud, ur = (m.loc[k, "uap_fooling_rate"] for k in (base, defended, reference))
    judge = "a fresh UAP"
    if rounds is not None and judge_column(rounds.iloc[-1].to_dict()) == "strongest_uap_fooling_rate":
        ud, judge = float(rounds.iloc[-1]["strongest_uap_fooling_rate"]), "its strongest UAP"   # as the claim reads it
    ratio = ud / u0 if u0 else float("nan")
    loss = m.loc[base, "clean_accuracy"] - m.loc[defended, "clean_accuracy"]
    at1, lo1, hi1 = (m.loc[reference, f"worst1_defense_rate{s}"] for s in ("", "_lo", "_hi"))
    lowered = _apart(m, defended, base, "uap_fooling_rate") and ud < u0
    r0, rk = ((rounds.iloc[0].to_dict(), rounds.iloc[-1].to_dict()) if rounds is not None else
              tuple({"fresh_uap_fooling_rate": m.loc[k, "uap_fooling_rate"], "fresh_uap_fooling_rate_lo": m.loc[k, "uap_fooling_rate_lo"],
                     "fresh_uap_fooling_rate_hi": m.loc[k, "uap_fooling_rate_hi"], "clean_accuracy": m.loc[k, "clean_accuracy"]}
                    for k in (base, defended)))
    hirano, hirano_why = verdict_hirano(r0, rk, [{"control": c, "fooling_rate": m.loc[c, "uap_fooling_rate"],
                                                  "fooling_rate_lo": m.loc[c, "uap_fooling_rate_lo"]} for c in controls])

    def lower_of(a, b, col, what):
        if not _apart(m, a, b, col):
            return "not shown to differ (intervals overlap)"
        return f"{lab(a if m.loc[a, col] < m.loc[b, col] else b)} leaves the lower {what}"

    rows = [
        ("finetune-uap-ratio", "goal", f"{defended}: {judge} fools ≤ {max_ratio:.0%} as many test images as a fresh UAP on the undefended model",
         f"{u0:.1%} → {ud:.1%} ({ratio:.2f}×)", bool(ratio <= max_ratio)),
        ("finetune-accuracy", "goal", f"{defended}: clean accuracy loss ≤ {max_acc_loss * 100:.0f} points",
         f"{abs(loss) * 100:.1f} points {'lost' if loss >= 0 else 'gained'}", bool(loss <= max_acc_loss)),
        ("at-pgd-bar", "goal", f"{lab(reference)}: worst-case defense rate at ε = 1/255 ≥ {pgd_bar:.2%}",
         f"{at1:.1%} [{lo1:.1%}, {hi1:.1%}]" + ("" if lo1 >= pgd_bar or hi1 < pgd_bar else " (the interval holds the bar)")
         + f"; undefended {m.loc[base, 'worst1_defense_rate']:.1%}; at 2/255 {m.loc[reference, 'worst2_defense_rate']:.1%} vs "
           f"{m.loc[base, 'worst2_defense_rate']:.1%} undefended",
         True if lo1 >= pgd_bar else False if hi1 < pgd_bar else "not decided: the interval holds the bar"),
        ("hirano-finetune", "claim", "Hirano et al. 2020: fine-tuning with UAPs makes the model more robust to UAPs",
         hirano_why, hirano),
        ("hirano-few-cases", "claim", "Hirano, Minagi & Takemoto 2021: adversarial retraining helps in only very few cases",
         f"one model, one seed: {ratio:.2f}× the undefended rate",
         "cannot test a frequency; in this one case " + ("retraining helped" if lowered else "retraining did not help")),
        ("at-vs-finetune-uap", "comparison", f"against UAPs, {lab(reference)} (per-image) vs {defended} (UAP-specific)",
         f"fresh UAP {ur:.1%} vs {ud:.1%}", lower_of(reference, defended, "uap_fooling_rate", "fresh-UAP rate")),
        (("finetune-pgd2",) + paired_row(defended)[1:]) if paired is not None else
        ("finetune-pgd2", "comparison", f"{defended} against the worst case over the suite (ε = 2/255) vs the undefended model",
         f"defense rate {m.loc[defended, 'worst2_defense_rate']:.1%} vs {m.loc[base, 'worst2_defense_rate']:.1%}",
         ("not shown to differ (intervals overlap)" if not _apart(m, defended, base, "worst2_defense_rate") else
          f"{'higher' if m.loc[defended, 'worst2_defense_rate'] > m.loc[base, 'worst2_defense_rate'] else 'lower'} "
          "than the undefended model's")),
    ]
    for c in controls:
        rows.append((f"control:{c}", "comparison", f"{defended} vs {c}, against a fresh UAP",
                     f"fresh UAP {ud:.1%} vs {m.loc[c, 'uap_fooling_rate']:.1%}",
                     lower_of(defended, c, "uap_fooling_rate", "fresh-UAP rate")))
    if paired is not None:
        rows += [paired_row(name) for name in paired.model if name != defended]
    out = pd.DataFrame(rows, columns=["key", "kind", "statement", "measured", "verdict"])
    out["met"] = [v if isinstance(v, bool) else None for v in out.verdict]
    out["verdict"] = [("met" if v else "not met") if isinstance(v, bool) else v for v in out.verdict]
    if bool(lo1 >= pgd_bar) and m.loc[base, "worst1_defense_rate"] >= pgd_bar:
        # the goal is met, but it cannot tell the defense from no defense at this budget
        out.loc[out.key == "at-pgd-bar", "verdict"] = "met, but the undefended model meets it too: at 1/255 the bar separates nothing"
    return out


def old_uap_before_after(rt) -> list[tuple[float, float]]:
    """Per round k ≥ 1 of a :func:`rounds_table`, the UAP the round trained on: its fooling rate on
    round k−1's model (where it was built: that round's ``fresh_uap_fooling_rate``) and on round k's
    model after the round (``old_uap_fooling_rate``).  Returns ``[(before, after), ...]``."""
    return [(rt.fresh_uap_fooling_rate.iloc[k - 1], rt.old_uap_fooling_rate.iloc[k]) for k in range(1, len(rt))]


def old_uap_closed(rt) -> list[bool]:
    """Per round k ≥ 1 of a :func:`rounds_table`: did the round close the UAP it trained on beyond sampling
    noise — its Wilson interval after the round (``old_uap_fooling_rate_hi``) below the one it had where it
    was built (round k−1's ``fresh_uap_fooling_rate_lo``)?"""
    return [bool(rt.old_uap_fooling_rate_hi.iloc[k] < rt.fresh_uap_fooling_rate_lo.iloc[k - 1]) for k in range(1, len(rt))]


def pattern_change_text(cos, d: int) -> str:
    """How the attacker's pattern moves between successive fresh UAPs (cosine similarities ``cos`` of UAPs of
    ``d`` pixels), as one sentence.  Two independent random patterns of ``d`` pixels have a cosine within
    ±5/√d almost surely (five standard deviations), so a cosine above that bound means the new UAP shares part
    of the previous one's direction, one within it an unrelated pattern; ≥ 0.9 would be the same pattern.

        >>> pattern_change_text([0.41, -0.02], 12544)
        'Cosine similarity between successive fresh UAPs: +0.41, -0.02 (1 = the same pattern; two independent random patterns of 12544 pixels lie within ±0.045). Round 1: partly the previous pattern; round 2: an unrelated pattern.'
    """
    bound = 5 / d ** 0.5
    kinds = ["the same pattern" if c >= 0.9 else "partly the previous pattern" if c > bound else "an unrelated pattern"
             if c >= -bound else "partly the previous pattern, reversed" for c in cos]
    return (f"Cosine similarity between successive fresh UAPs: {', '.join(f'{c:+.2f}' for c in cos)} (1 = the same "
            f"pattern; two independent random patterns of {d} pixels lie within ±{bound:.3f}). "
            + "; ".join(f"{'R' if i == 0 else 'r'}ound {i + 1}: {k}" for i, k in enumerate(kinds)) + ".")


def rounds_narrative(rt, controls: dict) -> str:
    """Notebook 05's reading of its :func:`rounds_table` ``rt`` as a Markdown paragraph: the fresh UAP before
    any fine-tuning (and random noise), the old and fresh UAP after round 1, the fresh UAP after the last
    round (interval, ratio to the undefended rate, clean and balanced accuracy), the round with the lowest
    fresh rate, the rounds where a UAP of the pool still beats the fresh judge (the verdicts then read the strongest UAP),
    and what the ``controls`` fine-tuned without UAPs (``{name: uap_fooling_summary dict}``)
    leave a fresh UAP."""
    r0, last = rt.iloc[0], rt.iloc[-1]
    later = rt.iloc[1:]
    low = later[later.fresh_uap_fooling_rate == later.fresh_uap_fooling_rate.min()]["round"].astype(int).tolist()
    lowest = ("" if low == [int(last["round"])] else          # the last round is the lowest: said already
              f"The lowest fresh rate of any round is {later.fresh_uap_fooling_rate.min():.1%} "
              f"(round{'s' if len(low) > 1 else ''} {' and '.join(map(str, low))}). ")
    strongest = "strongest_uap" in rt
    beat = (later[later.strongest_uap != "fresh"] if strongest else
            later[later.old_uap_fooling_rate > later.fresh_uap_fooling_rate])    # the judge is not the strongest UAP there
    col = judge_column(last.to_dict())
    judge = ("" if beat.empty else
             f"In round{'s' if len(beat) > 1 else ''} {' and '.join(str(int(r)) for r in beat['round'])} a UAP the model "
             "was fine-tuned against still changes more predictions than the fresh judge ("
             + ", ".join((f"{r.strongest_uap}'s {r.strongest_uap_fooling_rate:.1%}" if strongest else
                          f"{r.old_uap_fooling_rate:.1%}") + f" vs {r.fresh_uap_fooling_rate:.1%}" for r in beat.itertuples())
             + "): the judge, built on validation images, is not the strongest UAP there. "
             + (f"So every round is judged by its strongest UAP, and the verdicts read that rate: after the last round "
                f"**{last.strongest_uap_fooling_rate:.1%}** [{last.strongest_uap_fooling_rate_lo:.1%}, "
                f"{last.strongest_uap_fooling_rate_hi:.1%}]. " if strongest else
                "Read the fresh rates — and the verdicts on them — as optimistic for the defense. "))
    return (f"Before any fine-tuning a fresh UAP changes **{r0.fresh_uap_fooling_rate:.1%}** of the {int(r0.n)} test "
            f"predictions (random noise: {r0.random_fooling_rate:.1%}). After round 1 the UAP it trained on changes only "
            f"**{rt.iloc[1].old_uap_fooling_rate:.1%}**, and a fresh one built against the fine-tuned model "
            f"{rt.iloc[1].fresh_uap_fooling_rate:.1%}. After the last round (round {int(last['round'])}) the fresh UAP changes "
            f"**{last.fresh_uap_fooling_rate:.1%}** [{last.fresh_uap_fooling_rate_lo:.1%}, {last.fresh_uap_fooling_rate_hi:.1%}], "
            f"{last.fresh_uap_fooling_rate / r0.fresh_uap_fooling_rate:.2f}× the undefended rate, at clean accuracy "
            f"{last.clean_accuracy:.1%} (undefended {r0.clean_accuracy:.1%}, balanced {last.balanced_accuracy:.1%} vs "
            f"{r0.balanced_accuracy:.1%}). {lowest}{judge}Fine-tuned without any UAP, the controls leave a fresh UAP "
            + ", ".join(f"{c['uap_fooling_rate']:.1%} ({k})" for k, c in controls.items())
            + (": the last round's interval lies below every control's, so fine-tuning alone does not explain the fall "
               "(one training run per setting; the verdicts below compare with every control)."
               if controls and all(c.get("uap_fooling_rate_lo") is not None
                                   and last[col + "_hi"] < c["uap_fooling_rate_lo"] for c in controls.values())
               else ": fine-tuning alone moves this rate by as much as the defense does, in either direction — one "
               "training run per setting cannot separate the two, which is why the verdicts below compare with every "
               "control."))


def fresh_rate_trend(rates, tol: float = 0.02) -> str:
    """Words for a sequence of fresh-UAP fooling rates (round 0, 1, ...): "kept falling" when every round fell,
    "fell, and then held" when some round did not fall but none rose by more than ``tol``; "rose in between but ended at its lowest" when one did and the last is
    (within ``tol``) the lowest after round 0; else "fell after the first round and climbed again later"."""
    r = [float(v) for v in rates]
    if not any(b > a + tol for a, b in zip(r, r[1:])):
        return ("kept falling" if all(b < a for a, b in zip(r, r[1:]))
                else f"fell, and then held (no round rose by more than {tol * 100:g} points)")
    if r[-1] <= min(r[1:]) + tol:
        return "rose in between but ended at its lowest"
    return "fell after the first round and climbed again later"


def adversarial_recap(rt, controls: dict, matrix, checks, verdicts, fast: bool) -> str:
    """Notebook 05's "What you saw" as Markdown bullets, from its tables: the rounds (:func:`rounds_table`
    ``rt``: fresh-UAP rates, :func:`old_uap_before_after`, cosine similarities), the ``controls``
    fine-tuned without UAPs (:func:`uap_fooling_summary` dicts), the :func:`cross_threat_table` matrix
    (clean accuracy, fresh and targeted UAP, PGD at 2/255 per model), the masking ``checks`` and the goals
    of :func:`adversarial_verdicts`; ``fast`` adds that FAST-mode checks are weak evidence."""
    m, cos = matrix, rt.cosine_to_previous.dropna()
    ctrl_rates = ", ".join(f"{c['uap_fooling_rate']:.1%}" for c in controls.values())
    return (f"- {len(rt) - 1} rounds of UAP fine-tuning: the fresh UAP's fooling rate went "
            f"{' → '.join(f'{v:.1%}' for v in rt.fresh_uap_fooling_rate)} (random noise {rt.random_fooling_rate.max():.1%} "
            f"at most), the UAP each round trained on fooled "
            f"{', '.join(f'{b:.1%} → {a_:.1%}' for b, a_ in old_uap_before_after(rt))} before → after the round.\n"
            f"- The attacker's pattern changes between rounds (cosine similarity {cos.min():+.2f} to {cos.max():+.2f}); "
            f"fine-tuning without UAPs left fresh-UAP rates of {ctrl_rates}.\n"
            f"- Clean accuracy: {', '.join(f'{n} {a:.1%}' for n, a in m.clean_accuracy.items())}.\n"
            f"- Fresh UAP fooling rate: {', '.join(f'{n} {a:.1%}' for n, a in m.uap_fooling_rate.items())}; "
            f"targeted → COVID-19 (among images not already predicted COVID-19): {', '.join(f'{n} {a:.1%}' for n, a in m.uap_to_covid_success.items())}.\n"
            f"- Worst-case defense rate at 2/255 (PGD-10, APGD-CE, APGD-DLR, Square, transfer): {', '.join(f'{n} {a:.1%}' for n, a in m.worst2_defense_rate.items())}.\n"
            f"- Masking checks: {(checks.verdict == 'no masking detected').sum()} of {len(checks)} models passed every masking check that ran"
            f"{' (FAST settings: weak evidence)' if fast else ''}.\n"
            f"- Goals: " + "; ".join(f"{r.statement}: {r.verdict}" for r in verdicts[verdicts.kind == 'goal'].itertuples())
            + ".")

