"""One pipeline per concept: the course's model (:func:`course_model`), UAP (:func:`course_uap`),
defended model (:func:`course_defense` / :func:`defend_checkpoint`) and robustness evaluation
(:func:`course_robustness`), each cached by content in ``OUTPUT_DIR`` and used alike by the notebooks,
the widgets and the CLI."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from .. import LABELS
from ..attacks import pgd
from ..attacks.uap.cache import build_uap
from ..data import image_norm_stats, load_split
from ..data.dataset import stratified_indices
from ..defenses import defense_name, model_cost, normalize_defense, sparsity
from ..metrics.defense import (collapse_flags, defense_summary, hygiene_checks, paired_tests, paired_text,
                               robustness_table)
from ..metrics.robustness import bits_outcome
from ..metrics.universal import reweighted_interval
from ..models import read_checkpoint
from ..runtime import atomic_write_text
from ..stats import mcnemar_exact
from ..train import TrainConfig, load_or_train
from . import config
from .config import DEFENSE_FAST, DEFENSE_FULL, model_config, parse_defense, settings, uap_settings
from .results import file_fingerprint
from .rules import CHEN_PGD, VERDICT_EPS, best_arm, confirm_by_seeds, verdict_ablation, verdict_mark


def uap_build_images(fast: bool, image_size: int | None = None, data_dir=None, seed: int = 0,
                     train: int | None = None, holdout: int | None = None, split: str = "train"):
    """The course's UAP images: ``(x_build, y_build, x_holdout)`` from ``split`` (the training split; notebook
    05's judge uses the validation split, which no training steps on), disjoint and
    class-stratified (seeded): ``holdout`` images the builder measures its stopping rate on and never
    steps on, then ``train`` build images from the rest.  ``None`` takes the mode's number from
    :func:`uap_settings` (FAST 512 build and 128 held-out images; full mode builds on all the rest);
    ``image_size`` defaults to the mode's."""
    u = uap_settings(fast, train, holdout=holdout)
    x, y = load_split(split, image_size or settings(fast).image_size, data_dir)
    if u.holdout >= len(y):
        raise ValueError(f"holdout={u.holdout} leaves no {split} image to build the UAP on ({len(y)} in the split)")
    hold = stratified_indices(y.numpy(), u.holdout, seed)
    rest = np.setdiff1d(np.arange(len(y)), hold)
    build = rest if u.train is None else rest[stratified_indices(y.numpy()[rest], u.train, seed)]
    b, h = torch.from_numpy(build), torch.from_numpy(hold)
    return x[b], y[b], x[h]


def course_uap(model, zeta: float, norm: str = "inf", target=None, fast: bool = True, method: str = "sgd",
               output_dir="../runs", data_dir=None, seed: int = 0, image_size: int | None = None,
               train: int | None = None, epochs: int | None = None, batch_size: int | None = None,
               progress: bool = False, split: str = "train"):
    """The course's UAP for ``model``: built once on the course's build images with the course's
    settings, then loaded from ``OUTPUT_DIR/uaps`` (cached by the model weights, the build images,
    the method and its settings; see :mod:`medadv_lib.attacks.uap.cache`).

    Notebooks 02 and 03, the widgets and ``medadv uap`` all get "the ζ = 2% UAP" from here, so the
    same arguments give the same file.  ``method`` is ``"sgd"`` (Shafahi et al., the course's: it stops
    on a plateau of its rate on held-out training images, :func:`uap_build_images`) or ``"iterative"``
    (Hirano et al.'s algorithm; ``epochs`` then means passes).  ``train``, ``epochs``, ``batch_size``
    override :func:`uap_settings`; ``image_size`` defaults to the mode's size; ``split`` is where the build and
    held-out images come from (``"train"``; ``"val"`` for notebook 05's judge).  The budget is
    ``eps = zeta × mean image norm`` over the whole training split at that size, whatever the split.
    Returns a :class:`~medadv_lib.attacks.uap.UAPResult` (``params["loaded_from"]`` when cached;
    ``converged`` and ``stop_reason`` say whether it reached its plateau).

    Example::
        >>> res = course.course_uap(model, 0.02, "inf", fast=True, output_dir=OUTPUT_DIR)
        >>> res.v.shape, res.eps, res.converged
    """
    u = uap_settings(fast, train, epochs, batch_size)
    size = image_size or settings(fast).image_size
    x, _, x_hold = uap_build_images(fast, size, data_dir, seed, train, split=split)
    stats = image_norm_stats(size, data_dir)
    if method == "sgd":
        kwargs = {**u.kwargs, "holdout": x_hold}
    else:
        kwargs = {"max_iter": u.epochs}
    res = build_uap(model, x, zeta, norm, target, stats=stats, method=method, cache_dir=Path(output_dir) / "uaps",
                    seed=seed, progress=progress, **kwargs)
    res.params["split"] = split
    return res


def course_model(name: str, fast: bool, output_dir="../runs", data_dir=None, device=None, seed: int = 0,
                 image_size: int | None = None, epochs: int | None = None, progress: bool = True,
                 precision=None, **overrides):
    """Load the course's cached ``name`` model or train it; returns ``(model, info)`` like
    :func:`~medadv_lib.train.load_or_train`. The model runs under the precision policy
    ``precision`` (``None``: ``$MEDADV_PRECISION`` or auto)."""
    cfg = model_config(name, fast, image_size, epochs, seed, **overrides)
    return load_or_train(cfg, out_dir=output_dir, data_dir=data_dir, device=device, progress=progress,
                         precision=precision)


def finetune_config(checkpoint, fast: bool, epochs: int | None = None, defense: dict | None = None,
                    perturbation: dict | None = None, seed: int | None = None) -> TrainConfig:
    """The :class:`~medadv_lib.train.TrainConfig` that fine-tunes the model in ``checkpoint`` with the
    course's defense settings (:data:`DEFENSE_FAST`/:data:`DEFENSE_FULL`; ``epochs`` overrides) on the
    training configuration the checkpoint records (size, crop, seed), with a model ``defense``
    (attention/pruning) and/or a per-batch ``perturbation`` description (notebook 05's hooks).
    Every defense of notebooks 04 and 05 is fine-tuned with this very configuration.  ``seed`` is the fine-tuning's
    own seed (batch order, pruning and attention initialisation; ``None``: the checkpoint's training seed), so that
    a defense can be fine-tuned twice from the same model (:func:`seed_replicates`)."""
    base = read_checkpoint(checkpoint).get("meta", {}).get("config")
    if not isinstance(base, dict):
        raise ValueError(f"{checkpoint} records no training configuration; train it with `medadv train` or notebook 01")
    d = DEFENSE_FAST if fast else DEFENSE_FULL
    cfg = TrainConfig(**{k: v for k, v in base.items() if k in TrainConfig.__dataclass_fields__})
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=int(seed))
    return dataclasses.replace(cfg, epochs=epochs or d.epochs, lr=d.lr, warmup_epochs=d.warmup_epochs, patience=None,
                               train_limit=min((v for v in (d.train_limit, cfg.train_limit) if v), default=None),
                               init_from=str(checkpoint), perturbation=perturbation, weights=None,
                               defense=normalize_defense(defense) if perturbation is None or defense else None)


def defend_checkpoint(checkpoint, defense: dict | None, fast: bool, output_dir="../runs", data_dir=None,
                      device=None, epochs: int | None = None, progress: bool = True, precision=None,
                      finetune_seed: int | None = None):
    """Apply ``defense`` (see :mod:`medadv_lib.defenses`; ``None`` = fine-tune only) to the trained
    model in ``checkpoint`` and fine-tune it (:func:`finetune_config`) through
    :func:`~medadv_lib.train.load_or_train`: cached under its own key.  Returns ``(model, info)``.
    ``medadv defend`` and :func:`course_defense` both come here."""
    cfg = finetune_config(checkpoint, fast, epochs, defense, seed=finetune_seed)
    return load_or_train(cfg, out_dir=output_dir, data_dir=data_dir, device=device, progress=progress,
                         precision=precision)


def course_defense(base: str, defense: dict | None, fast: bool, output_dir="../runs", data_dir=None, device=None,
                   seed: int = 0, epochs: int | None = None, progress: bool = True, precision=None,
                   finetune_seed: int | None = None):
    """The course's defended version of model ``base`` (``defense``: see :mod:`medadv_lib.defenses`;
    ``None`` = the fine-tuned baseline): notebook 01's model is loaded (or trained), then
    :func:`defend_checkpoint`.  ``seed`` picks notebook 01's model; ``finetune_seed`` the fine-tuning's own seed
    (``None``: the same as the model's).  Returns ``(model, info)``.

    Example::
        >>> model, info = course.course_defense("resnet18", {"attention": "cbam"}, fast=True, output_dir=OUTPUT_DIR)
    """
    _, base_info = course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
    return defend_checkpoint(base_info["checkpoint"], defense, fast, output_dir, data_dir, device, epochs, progress,
                             precision, finetune_seed)


_TRANSFER_MEMO: dict = {}


def transfer_examples(source, source_info: dict, x, y, eps: float = 2 / 255, steps: int = 10, seed: int = 0) -> dict:
    """PGD-L∞ examples crafted on ``source`` (usually the undefended baseline) for the transfer check
    of :func:`~medadv_lib.metrics.defense.robustness_table`; memoised per source checkpoint."""
    key = (file_fingerprint(source_info["checkpoint"]), len(x), float(x.sum()), eps, steps, seed)
    if key not in _TRANSFER_MEMO:
        dev = next(source.parameters()).device
        res = pgd(source, x.to(dev), y.to(dev), eps=eps, steps=steps, seed=seed)
        _TRANSFER_MEMO[key] = {"source": source_info.get("config", {}).get("model", "source"), "eps": eps,
                               "x_adv": res.x_adv.cpu(), "source_checkpoint": Path(source_info["checkpoint"]).name}
    return _TRANSFER_MEMO[key]


def _suite_at(settings_, eps):
    """``settings_`` cut to the worst-case suite at the budgets ``eps`` only: PGD-10 and the suite there, no DeepFool,
    L2 or large-ε rows (the sparsity sweep, the validation ranking and the precision recomputation)."""
    return dataclasses.replace(settings_, eps=tuple(eps), suite_eps=tuple(eps), deepfool_steps=0, large_eps=None)


def eval_images(fast: bool, image_size: int | None = None, data_dir=None, seed: int = 0, split: str = "test"):
    """The images a robustness evaluation attacks: FAST a class-stratified subset of ``DEFENSE_FAST.eval_images``
    of ``split``, FULL the whole split.  ``split="val"``: the validation images notebook 04 picks its best arm on
    (:func:`robustness_overview`), so that the arm is judged on test images it was not chosen on."""
    d = DEFENSE_FAST if fast else DEFENSE_FULL
    return load_split(split, image_size or settings(fast).image_size, data_dir, limit=d.eval_images, seed=seed)


def course_robustness(model, info: dict, name: str, fast: bool, source=None, source_info: dict | None = None,
                      output_dir="../runs", data_dir=None, seed: int = 0, progress: bool = True,
                      with_uap: bool | None = None, split: str = "test", eps=None):
    """The course's robustness evaluation of one (defended) model, cached in ``OUTPUT_DIR/robustness``.

    White-box against ``model`` itself: :func:`~medadv_lib.metrics.defense.robustness_table` with
    :func:`robustness_settings` on :func:`eval_images` (PGD-10 and the worst-case suite), the model's own ζ = 2 %
    L∞ UAP (:func:`course_uap`; ``with_uap``, default full mode only: in FAST each arm's converged UAP costs about
    a minute, and notebook 05 judges its models with its own UAPs), transfer examples from ``source`` (PGD-10 on
    the baseline at every budget of the worst-case suite), plus
    the model's parameters, FLOPs and CPU latency per image.  Returns the tidy table (one row per
    attack and ε; columns of ``robustness_table`` plus ``defense``, ``checkpoint_fingerprint``,
    ``params``, ``flops``, ``latency_ms``).  The per-image outcomes (``outcome_clean``, ``outcome_attacked``)
    make the arms' paired comparison possible (:func:`~medadv_lib.metrics.defense.paired_tests`); a cache
    written without them is evaluated again.

    ``split="val"`` with ``eps`` (e.g. ``(VERDICT_EPS,)``): the selection evaluation — the worst-case suite (with
    transfer) at those budgets only, on :func:`eval_images` of the validation split, no DeepFool, L2 or large-ε rows,
    cached apart from the test evaluation and never mixed into the PGD rows the sparsity sweep reuses.
    """
    s = config.robustness_settings(fast) if eps is None else _suite_at(config.robustness_settings(fast), eps)
    size = info["config"]["image_size"]
    fp = file_fingerprint(info["checkpoint"])
    src_fp = file_fingerprint(source_info["checkpoint"]) if source_info else "none"
    # the key holds everything the rows depend on besides the weights: the attacks' settings, the transfer
    # source, the mode, the seed and the UAP builder's settings (the "uap" row is the model's course UAP)
    with_uap = (not fast) if with_uap is None else bool(with_uap)
    key = hashlib.sha1(json.dumps([dataclasses.asdict(s), src_fp, fast, seed, name, config.uap_settings(fast).sgd, with_uap,
                                   "transfer at every suite budget"] + ([split] if split != "test" else []),
                                  sort_keys=True, default=str).encode()).hexdigest()[:10]
    remember = _remember_pgd_rows if split == "test" else (lambda table, *a: table)
    path = Path(output_dir) / "robustness" / f"{name}-{fp}-{key}.json"
    if path.exists():
        cached = pd.read_json(path, orient="records", dtype={"outcome_clean": str, "outcome_attacked": str, "norm": str})
        if "outcome_attacked" in cached:      # older caches kept no per-image outcomes: evaluate again
            return remember(cached, fp, fast, seed, s.seed, size, data_dir)
    x, y = eval_images(fast, size, data_dir, seed, split)
    uap = course_uap(model, 0.02, "inf", fast=fast, output_dir=output_dir, data_dir=data_dir, seed=seed,
                     image_size=size) if with_uap else None
    # transfer examples at every budget of the worst-case suite (PGD-10 on the source), so that the verdict budgets'
    # worst case holds a transfer attack, and check (b) runs where verdicts are decided
    transfer = ([transfer_examples(source, source_info, x, y, eps=e, seed=seed) for e in s.suite_budgets()]
                if source is not None else None)
    table = robustness_table(model, x, y, name, s, mean_norm_2=image_norm_stats(size, data_dir)["mean_norm_2"], uap=uap,
                             transfer=transfer, progress=progress)
    cost = model_cost(model, size)
    table = table.assign(defense=defense_name(info["config"].get("defense")) if info["config"].get("defense")
                         else "baseline", checkpoint_fingerprint=fp, precision=str(model.precision), **cost)
    atomic_write_text(table.to_json(orient="records", indent=1), path)
    return remember(table, fp, fast, seed, s.seed, size, data_dir)


# L∞ rows of the robustness evaluations run in this process, by (checkpoint, ε, steps, images, attack seed): the
# sparsity sweep's PGD-10 and suite on a model the ablation already attacked is the very same computation
# (same images, seed and early-stopped attacks), so it is read from here instead of run twice.
_PGD_ROWS: dict = {}
_SUITE = ("pgd-strong", "apgd-ce", "apgd-dlr", "square")


def _pgd_key(fp, eps, steps, fast, seed, attack_seed, size, data_dir):
    return fp, round(float(eps), 8), int(steps), bool(fast), int(seed), int(attack_seed), int(size), str(data_dir)


def _remember_pgd_rows(table, fp, fast, seed, attack_seed, size, data_dir):
    extra = ["defense", "checkpoint_fingerprint", "precision", "params", "flops", "latency_ms"]
    t = table.drop(columns=extra, errors="ignore")
    for r in t[t.attack == "pgd"].to_dict("records"):
        at = t[((t.eps - r["eps"]).abs() < 1e-9) & t.attack.isin(_SUITE)]
        _PGD_ROWS[_pgd_key(fp, r["eps"], r["steps"], fast, seed, attack_seed, size, data_dir)] = (
            [r] + at.to_dict("records"))
    return table


def _sweep_rows(rows: list[dict]) -> list[dict]:
    """The sweep's rows from a remembered evaluation: PGD-10, and the worst case over the white-box and
    gradient-free suite (the last cumulative suite row; the sweep runs no transfer attack)."""
    last = dict(rows[-1])
    counts = {"pgd": int(rows[0]["n_clean_correct"] - round(rows[0]["defense_rate"] * rows[0]["n_clean_correct"]))}
    counts.update({r["attack"]: int(r["fooled_new"]) for r in rows[1:]})
    last.update(attack="worst", set_by=max(counts, key=counts.get) if any(counts.values()) else "none",
                fooled_by=json.dumps(counts))
    return [rows[0], last] if len(rows) > 1 else [rows[0]]


def defense_study(base: str, arms, fast: bool, output_dir="../runs", data_dir=None, device=None, seed: int = 0,
                  precision=None, progress: bool = True) -> dict:
    """``{arm name: (model, info)}`` for each arm (see :data:`DEFENSE_ARMS`): "baseline" is
    :func:`course_model`, every other arm :func:`course_defense` (cached)."""
    out = {}
    for name in arms:
        d = parse_defense(name)
        out[name] = (course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
                     if d is None else course_defense(base, d, fast, output_dir, data_dir, device, seed,
                                                      progress=progress, precision=precision))
    return out


def defended_models_table(study: dict):
    """One row per arm of :func:`defense_study`: test accuracy, balanced accuracy, sparsity,
    parameters, fine-tuning seconds, and whether it came from the cache."""
    rows = []
    for name, (m, info) in study.items():
        rows.append({"arm": name, "test_accuracy": info["test"]["accuracy"],
                     "balanced_accuracy": info["test"]["balanced_accuracy"], "sparsity": sparsity(m),
                     "params": sum(p.numel() for p in m.parameters()),
                     "fine_tune_epochs": info["config"]["epochs"] if info["config"].get("init_from") else 0,
                     "train_seconds": info.get("train_seconds"), "cached": info.get("cached")})
    return pd.DataFrame(rows).set_index("arm")


def robustness_study(study: dict, fast: bool, output_dir="../runs", data_dir=None, seed: int = 0,
                     progress: bool = True, split: str = "test", eps=None):
    """:func:`course_robustness` of every arm of :func:`defense_study`, concatenated; the transfer
    examples come from the undefended "baseline" (the first arm when there is none).  ``split="val"`` and
    ``eps=(VERDICT_EPS,)``: the selection evaluation :func:`robustness_overview` picks the best arm from."""
    src_name = "baseline" if "baseline" in study else next(iter(study))
    src, src_info = study[src_name]
    return pd.concat([course_robustness(m, info, name, fast, src, src_info, output_dir, data_dir, seed, progress,
                                        split=split, eps=eps)
                      for name, (m, info) in study.items()], ignore_index=True)


def sparsity_sweep(base: str, sparsities, fast: bool, output_dir="../runs", data_dir=None, device=None,
                   seed: int = 0, eps=(2 / 255,), precision=None, progress: bool = True):
    """Unstructured pruning at each sparsity (fine-tuned, cached; sparsity 0 is the equally fine-tuned
    "baseline-ft"), with clean accuracy, PGD-10 and the worst case over the white-box and gradient-free suite of
    :func:`robustness_settings` (no transfer attack) at each ``eps`` on :func:`eval_images`.  Returns
    ``(table, models)``: rows ``attack`` "pgd" and "worst" with ``sparsity, eps, clean_accuracy, defense_rate,
    defense_rate_lo/hi, robust_accuracy, balanced_robust_accuracy`` and ``{sparsity: model}``."""
    rows, models = [], {}
    # the attacks' seed is the robustness evaluation's (course_robustness), not the run's SEED: the sweep's 0 % and
    # 60 % points are then notebook 04's baseline-ft and prune0.6 attacked the same way, image for image, at any SEED
    s = _suite_at(config.robustness_settings(fast), eps)
    for sp in sparsities:
        m, info = course_defense(base, {"prune": sp}, fast, output_dir, data_dir, device, seed, progress=progress,
                                 precision=precision)
        size = info["config"]["image_size"]
        fp = file_fingerprint(info["checkpoint"])
        known = [_PGD_ROWS.get(_pgd_key(fp, e, s.steps, fast, seed, s.seed, size, data_dir)) for e in eps]
        if all(r is not None for r in known):    # attacked already by course_robustness: the same numbers
            t = pd.DataFrame([r for rs in known for r in _sweep_rows(rs)]).assign(model=f"prune{sp:g}")
        else:
            x, y = eval_images(fast, size, data_dir, seed)
            t = robustness_table(m, x, y, f"prune{sp:g}", s)
        t = t[t.attack.isin(["pgd", "worst"])].assign(sparsity=float(sp))
        rows.append(t)
        models[sp] = m
    return pd.concat(rows, ignore_index=True), models


def _min_discordant(family: int, alpha: float = 0.05) -> int:
    """The fewest discordant images, all one way, whose exact McNemar p-value (× ``family``, Holm's
    first step) falls below ``alpha``."""
    d = 1
    while 2 * 0.5 ** d * max(family, 1) >= alpha:
        d += 1
    return d


def _worst_at(table, eps: float):
    """The ``worst`` rows of a robustness table at budget ``eps``, indexed by model."""
    return table[(table.attack == "worst") & ((table.eps - eps).abs() < 1e-9)].set_index("model")


def ablation_verdict(table, eps: float = 1 / 255, best: str | None = None, control: str = "baseline-ft",
                     undefended: str = "baseline", alpha: float = 0.05, checks=None, replicates=None) -> dict:
    """Notebook 04's verdict on "pruning and attention raise robustness", from a
    :func:`robustness_study` table: every defended arm against the equally fine-tuned ``control`` and
    against the ``undefended`` model, image by image on the shared attacked images — "correct under
    PGD-10 at ``eps``", exact McNemar test, Holm's adjustment over the defended arms
    (:func:`~medadv_lib.metrics.defense.paired_tests`).

    ``best``: the arm the sentence spells out (default: the highest worst-case defense rate at ``eps``).
    The outcome is "correct under every attack of the suite" (the ``worst`` rows).  The verdict is the rule
    book's on Chen et al.'s ablation claim, the word the report gives it
    (:func:`~medadv_lib.course.rules.verdict_ablation` on these paired tests, an arm that fails a masking check
    of ``checks`` — :func:`~medadv_lib.metrics.defense.hygiene_checks` — never counting): "reproduced" when an
    attention arm and a pruning arm keep significantly more images correct than ``control`` (Holm-adjusted
    p < ``alpha``), "partly" when some arm does, "not shown (masking)" when only masked arms do, "not
    reproduced" when none does and some arm keeps significantly fewer, else "not shown".  The text marks the
    word with the claim's key (:func:`~medadv_lib.course.rules.verdict_mark`).

    ``replicates`` (:func:`seed_replicates`): an arm counts as shown only if it is shown at every fine-tuning seed
    (:func:`~medadv_lib.course.rules.confirm_by_seeds`; its ``shown`` becomes "not at every seed" otherwise).

    Returns ``{"verdict", "text"`` (Markdown), ``"vs_control", "vs_undefended"`` (the two
    :func:`paired_tests` tables), ``"best"}``.
    """
    arms = [m for m in dict.fromkeys(table.model) if m not in (control, undefended)]
    if best is None:
        w = table[(table.attack == "worst") & ((table.eps - eps).abs() < 1e-9) & table.model.isin(arms)]
        best = w.loc[w.defense_rate.idxmax(), "model"]
    vs_c = paired_tests(table, control, "worst", eps, arms, alpha)
    vs_u = paired_tests(table, undefended, "worst", eps, arms, alpha)
    first = vs_c.set_index("model").shown
    if replicates is not None:
        every = dict(zip(replicates.arm, replicates.every_seed))
        confirmed = confirm_by_seeds({r["model"]: r for r in vs_c.to_dict(orient="records")}, every)
        vs_c = vs_c.assign(shown=[confirmed[m]["shown"] for m in vs_c.model])
    unconfirmed = list(vs_c.model[vs_c.shown == "not at every seed"])
    masked = set() if checks is None else {m for m, f in zip(checks.model, checks.failed) if f}
    bc, bu = (t.set_index("model").loc[best].to_dict() | {"model": best} for t in (vs_c, vs_u))
    w = _worst_at(table, eps)

    def rate(m):
        return tuple(None if c not in w or pd.isna(w.at[m, c]) else float(w.at[m, c])
                     for c in ("defense_rate", "defense_rate_lo", "defense_rate_hi"))
    verdict, _ = verdict_ablation({a: rate(a) for a in arms}, rate(control),
                                  {r["model"]: r for r in vs_c.to_dict(orient="records")}, masked)
    up = vs_c[(vs_c.shown == "higher") & ~vs_c.model.isin(masked)]
    down = vs_c[vs_c.shown == "lower"]
    n = int(vs_c.n.iloc[0])
    intro = (f"Paired on the same {n} attacked images (the outcome: correct under every attack of the suite at "
             f"ε = {eps * 255:g}/255, "
             f"defined for every image; exact McNemar test on the images where two models disagree; Holm's "
             f"adjustment over the {len(arms)} defended arms): {paired_text(bc)}. Against the undefended model: "
             f"{paired_text(bu)}.")
    if verdict == "not shown (masking)":
        flagged = vs_c[vs_c.shown == "higher"].model
        why = (f"{', '.join(flagged)} keep more images correct than {control} beyond chance, but a masking check flags "
               f"{'it' if len(flagged) == 1 else 'them'}: their robustness may be the attacks failing")
    elif len(up):
        why = (f"{', '.join(up.model)} keep{'s' if len(up) == 1 else ''} more images correct than {control} beyond chance "
               f"(Holm-adjusted p = {', '.join(f'{p:.3g}' for p in up.p_holm)})"
               + ("" if verdict == "reproduced" else ", but not an arm of each module (attention, pruning)"))
    else:
        why = (f"no defended arm keeps more of the {n} images correct than {control} beyond chance "
               f"(smallest Holm-adjusted p = {vs_c.p_holm.min():.3g}"
               + (f"; {', '.join(down.model)} keep{'s' if len(down) == 1 else ''} significantly fewer" if len(down) else "")
               + f"; at least {_min_discordant(len(arms), alpha)} discordant images, all one way, would be needed for one "
               "arm to show)")
    if unconfirmed:
        why += (f"; {', '.join(unconfirmed)} {'was' if len(unconfirmed) == 1 else 'were'} shown "
                f"{'/'.join(sorted({first[m] for m in unconfirmed}))} at the first fine-tuning seed but not at every seed, "
                "so it does not count")
    return {"verdict": verdict, "text": intro + " Verdict on Chen et al.'s ablation claim (the rule book's, as in the "
            f"report): {verdict_mark('chen-ablation', verdict)}: {why}.", "vs_control": vs_c,
            "vs_undefended": vs_u, "best": best}


def leaders(values, how: str = "max", digits: int = 3) -> str:
    """Who holds the maximum (``how="max"``) or minimum of ``values`` (a Series indexed by name), counting values
    equal as shown (rounded to ``digits``) as tied: ``"a"``, ``"a, b (tied)"``, or ``"all tied"`` when every name
    holds it, so a sentence never crowns one arm of a tie.

    Example::
        >>> import pandas as pd
        >>> leaders(pd.Series({"a": 0.1, "b": 0.3, "c": 0.3}))
        'b, c (tied)'
    """
    v = values.dropna().astype(float).round(digits)
    names = list(v.index[v == (v.max() if how == "max" else v.min())])
    if len(names) == len(v) > 1:
        return "all tied"
    return names[0] if len(names) == 1 else f"{', '.join(map(str, names))} (tied)"


def sparsity_verdict(sweep, alpha: float = 0.05) -> dict:
    """Notebook 04's reading of a :func:`sparsity_sweep` (one ε): the sparsity with the highest worst-case
    defense rate against the unpruned model (sparsity 0), image by image on the same attacked images —
    "correct under every attack of the suite", exact McNemar test, Holm over the pruned sparsities
    (:func:`~medadv_lib.metrics.defense.paired_tests`) — and the collapse guard against the unpruned model
    (:func:`~medadv_lib.metrics.defense.collapse_flags`).  Returns ``{"top"`` (the sparsity), ``"shown"``
    ("higher"/"lower"/"not shown"; "none" when the unpruned model is the top), ``"tests"``, ``"text"``,
    ``"collapsed"`` (the classes the top sparsity gave up; empty when none), ``"weaker"`` (True when its clean
    balanced accuracy's 95 % interval lies wholly below the unpruned model's: a worse classifier even where no
    single class is significantly below on the few attacked images)}``."""
    eps = float(sweep.eps.iloc[0])
    s = sweep[((sweep.eps - eps).abs() < 1e-9) & (sweep.attack == "worst")]
    top, zero = s.loc[s.defense_rate.idxmax()], s.loc[s.sparsity == 0].iloc[0]
    tests = paired_tests(s, zero.model, "worst", eps, [m for m in s.model if m != zero.model], alpha)
    text = (f"The highest worst-case defense rate of the sweep (ε = {eps * 255:g}/255) is at **{top.sparsity:.0%}** sparsity: "
            f"{top.defense_rate:.1%} [{top.defense_rate_lo:.1%}, {top.defense_rate_hi:.1%}], against {zero.defense_rate:.1%} "
            f"[{zero.defense_rate_lo:.1%}, {zero.defense_rate_hi:.1%}] unpruned.")
    if top.model == zero.model:
        return {"top": float(top.sparsity), "shown": "none", "tests": tests, "collapsed": [],
                "text": text + " No pruned model does better than the unpruned one."}
    r = tests.set_index("model").loc[top.model].to_dict() | {"model": top.model}
    text += (f" Image by image on the same {int(r['n'])} attacked images (correct under every attack of the suite; exact "
             f"McNemar test, Holm over the {len(tests)} pruned sparsities): {paired_text(r)} — "
             + ("**not shown** to differ." if r["shown"] == "not shown" else
                f"**{'more' if r['shown'] == 'higher' else 'fewer'}** images kept correct beyond chance."))
    collapsed, weaker = [], False
    if "clean_accuracy_by_class" in s:        # the collapse guard: did the top sparsity give up a class to get there?
        flags = collapse_flags(s, reference=zero.model).set_index("model")
        collapsed = [LABELS[c] for c in flags.loc[top.model, "classes_given_up"]]
        lo, hi = reweighted_interval([(round(a * n), n) for a, n in zip(top.clean_accuracy_by_class, top.n_by_class)],
                                     labels=list(top.classes), mix={c: 1 for c in top.classes})
        weaker = bool(hi < zero.clean_balanced_accuracy)     # below the unpruned model's by more than its own interval
        bal = (f"clean balanced accuracy {top.clean_balanced_accuracy:.1%} [{lo:.1%}, {hi:.1%}] vs "
               f"{zero.clean_balanced_accuracy:.1%} unpruned")
        text += (f" But it **collapsed**: its clean accuracy on {', '.join(collapsed)} lies significantly below the "
                 f"unpruned model's (Wilson intervals apart; {bal}), so its robustness is that of a model that gave up "
                 "classes, not a defense." if collapsed else
                 f" No single class lies significantly below the unpruned model's on these few images, but it is a **worse "
                 f"classifier**: {bal}, the whole interval below. A model that leans towards one class keeps that answer "
                 "under attack too, so part of its defense rate can be that lean, not robustness." if weaker else
                 f" It gave up no class ({bal}; no class significantly below).")
    return {"top": float(top.sparsity), "shown": r["shown"], "tests": tests, "text": text, "collapsed": collapsed,
            "weaker": weaker}


def robustness_overview(table, eps=(1 / 255, 2 / 255), reference: str = "baseline", verdict_eps: float | None = None,
                        selection=None):
    """What notebooks 04 and 05 read from a :func:`robustness_study` table, in one call: the masking checks
    (:func:`~medadv_lib.metrics.defense.hygiene_checks`), the collapse guard against ``reference``
    (:func:`~medadv_lib.metrics.defense.collapse_flags`), the per-model summary at ``eps``
    (:func:`~medadv_lib.metrics.defense.defense_summary`, with ``collapsed``), the worst case per class at each
    ``eps`` (``by_class``: one row per model and ε) and the best arm by the rule book
    (:func:`~medadv_lib.course.rules.best_arm` at ``verdict_eps``, default :data:`~medadv_lib.course.rules.VERDICT_EPS`).
    ``selection``: the same arms' worst case on *validation* images (:func:`robustness_study` with ``split="val"``):
    the best arm is then ranked there — masked and collapsed arms (flagged on the test table) left out — and judged
    on ``table``'s test images, so that it is not picked and judged on the same images (winner's curse).
    Returns a namespace with ``checks, collapse, summary, by_class, best, best_why``."""
    checks = hygiene_checks(table)
    collapse = collapse_flags(table, reference) if reference in set(table.model) else None
    summary = defense_summary(table, checks, eps)
    if collapse is not None:
        summary = summary.merge(collapse[["model", "collapsed"]], on="model", how="left")
    worst = table[table.attack == "worst"].merge(summary[["model", "masked"] + (["collapsed"] if collapse is not None
                                                                              else [])], on="model", how="left")
    if selection is not None:                 # rank on validation images, with the test table's flags
        flags = worst.drop_duplicates("model").set_index("model")[[c for c in ("masked", "collapsed") if c in worst]]
        ranked = selection[selection.attack == "worst"].drop(columns=[c for c in ("masked", "collapsed") if c in selection])
        best, why = best_arm(ranked.join(flags, on="model"), VERDICT_EPS if verdict_eps is None else verdict_eps)
        n_val = int(ranked.n.iloc[0]) if len(ranked) else 0
        why = f"chosen on {n_val} validation images, judged on the test images: {why}"
    else:
        best, why = best_arm(worst, VERDICT_EPS if verdict_eps is None else verdict_eps)
    rows = []
    for r in worst.itertuples():
        if any(abs(r.eps - e) < 1e-9 for e in eps):
            rows.append({"model": r.model, "eps (/255)": round(r.eps * 255, 3), "set by": r.set_by,
                         **{f"robust {LABELS[c]} (of {k})": v
                            for c, k, v in zip(r.classes, r.n_by_class, r.robust_accuracy_by_class)},
                         "balanced robust accuracy": r.balanced_robust_accuracy,
                         "clean balanced accuracy": r.clean_balanced_accuracy})
    return SimpleNamespace(checks=checks, collapse=collapse, summary=summary, best=best, best_why=why,
                           by_class=pd.DataFrame(rows))


def best_arm_text(ov, best: str, paper: float | None = None, eps: float | None = None) -> str:
    """Notebook 04's headline sentence from a :func:`robustness_overview`: at the verdict budget, the worst-case defense
    rates of the undefended and the equally fine-tuned baselines and of ``best`` (the rule book's best arm; its interval, the
    images it keeps over all attacked ones against the undefended model's), the undefended rate against the paper's
    ``paper`` (default Chen et al.'s PGD number), and what PGD-10 alone would have claimed."""
    paper = CHEN_PGD if paper is None else paper
    tag = f"worst{round((VERDICT_EPS if eps is None else eps) * 255):d}"
    s = ov.summary.set_index("model")
    base, ft, rate = (s.loc[a, f"{tag}_defense_rate"] for a in ("baseline", "baseline-ft", best))
    lo, hi, blo, bhi = s.loc[best, f"{tag}_lo"], s.loc[best, f"{tag}_hi"], s.loc["baseline", f"{tag}_lo"], s.loc["baseline", f"{tag}_hi"]
    kept = {a: round(s.loc[a, f"{tag}_robust_accuracy"] * s.loc[a, "n"]) for a in (best, "baseline")}
    pgd10 = s.loc[best, tag.replace("worst", "pgd") + "_defense_rate"]
    e = tag[5:]
    return (f"At ε = {e}/255, under the worst case over the suite, the undefended baseline keeps **{base:.1%}** of its correct "
            f"answers and the fine-tuned baseline **{ft:.1%}**. The rule book's best arm, nominally, is **{best}** "
            f"({ov.best_why}): it keeps **{rate:.1%}** (95 % interval {lo:.1%}–{hi:.1%}), {abs(rate - ft) * 100:.1f} points "
            f"{'above' if rate >= ft else 'below'} the fine-tuned baseline — a point estimate; over all {int(s.loc[best, 'n'])} "
            f"images it keeps {kept[best]} correct, the undefended baseline {kept['baseline']}, and section 7 tests it image by "
            f"image. The *undefended* baseline's {base:.1%} is {'above' if base > paper else 'below'} Chen et al.'s {paper:.2%} "
            f"(their budget is unstated){f'; its interval, {blo:.1%}–{bhi:.1%}, contains that number' if blo <= paper <= bhi else ''}. "
            + (f"PGD-10 alone gives the same {rate:.1%}: no later attack fooled any of {best}'s PGD-10 survivors."
               if abs(rate - pgd10) < 1e-9 else f"PGD-10 alone would have claimed {pgd10:.1%} for {best}."))


def precision_agreement(study: dict, arms, fast: bool, precision: str = "fp32", eps=(1 / 255, 2 / 255),
                        output_dir="../runs", data_dir=None, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Notebook 04's worst case of ``arms`` recomputed under another arithmetic (issue 22, item 7).

    The recorded rows are :func:`course_robustness`'s (cached, computed under the precision the run used,
    ``bf16`` on a CPU with AMX); the same models, images, attack settings and seeds are then attacked
    again with every model — the transfer source included — switched to ``precision``.  Per arm and ε, the
    worst-case robust accuracy and defense rate of both, the recorded Wilson 95 % interval, the images whose
    outcome changed (``flipped_up``: correct only in the recomputation, ``flipped_down``) with the exact McNemar
    p-value, and ``agree``: the recomputed defense rate lies in the recorded interval and McNemar finds no
    difference at ``alpha``.  ``study``: :func:`defense_study`'s ``{arm: (model, info)}`` with a "baseline"
    (the transfer source).  The models are switched back to their precision afterwards."""
    src, src_info = study["baseline"]
    recorded = pd.concat([course_robustness(*study[a], a, fast, src, src_info, output_dir, data_dir, seed, False)
                          for a in arms], ignore_index=True)
    s = _suite_at(config.robustness_settings(fast), eps)
    before = {a: study[a][0].precision for a in {*arms, "baseline"}}
    rows = []
    try:
        for a in before:
            study[a][0].set_precision(precision)
        for a in arms:
            model, info = study[a]
            x, y = eval_images(fast, info["config"]["image_size"], data_dir, seed)
            # crafted anew, not transfer_examples: its memo is keyed by checkpoint and would hand back the run's precision
            transfer = [{"source": "baseline", "eps": e, "x_adv": pgd(src, x, y, eps=e, steps=10, seed=seed).x_adv}
                        for e in eps]
            new = robustness_table(model, x, y, a, s, transfer=transfer)
            for e in eps:
                r = recorded[(recorded.model == a) & (recorded.attack == "worst") & ((recorded.eps - e).abs() < 1e-9)].iloc[0]
                q = new[(new.attack == "worst") & ((new.eps - e).abs() < 1e-9)].iloc[0]
                t = mcnemar_exact(bits_outcome(q.outcome_attacked), bits_outcome(r.outcome_attacked))
                rows.append({"model": a, "eps": e, "recorded_precision": r.get("precision"), "precision": precision,
                             "robust_accuracy": r.robust_accuracy, "robust_accuracy_new": q.robust_accuracy,
                             "defense_rate": r.defense_rate, "defense_rate_lo": r.defense_rate_lo,
                             "defense_rate_hi": r.defense_rate_hi, "defense_rate_new": q.defense_rate,
                             "set_by": r.set_by, "set_by_new": q.set_by, "flipped_up": t["a_only"],
                             "flipped_down": t["b_only"], "p_value": t["p_value"],
                             "agree": bool(r.defense_rate_lo - 1e-9 <= q.defense_rate <= r.defense_rate_hi + 1e-9
                                           and t["p_value"] >= alpha)})
    finally:
        for a, p in before.items():
            study[a][0].set_precision(p)
    return pd.DataFrame(rows)


def replicate_arms(table, best: str | None, eps: float = VERDICT_EPS, control: str = "baseline-ft",
                   undefended: str = "baseline", alpha: float = 0.05) -> list[str]:
    """The arms a verdict rests on, which a second fine-tuning seed must confirm (:func:`seed_replicates`):
    ``best`` (the rule book's best arm), the attention-and-pruning arm with the highest worst-case defense rate at
    ``eps`` (Chen et al.'s row of the report), and every arm the paired test finds better than ``control`` at
    ``eps`` or worse (the ablation's "shown" either way), in the table's order; ``control`` is always fine-tuned again
    beside them."""
    arms = [m for m in dict.fromkeys(table.model) if m not in (control, undefended)]
    w = _worst_at(table, eps)
    both = [a for a in arms if a in w.index and "+" in a]
    pick = {best} if best else set()
    if both:
        pick.add(max(both, key=lambda a: w.at[a, "defense_rate"]))
    shown = paired_tests(table, control, "worst", eps, arms, alpha)
    pick |= set(shown.model[shown.shown.isin(["higher", "lower"])])
    return [a for a in arms if a in pick]


def seed_replicates(base: str, table, arms, fast: bool, seeds=(1,), output_dir="../runs", data_dir=None, device=None,
                    seed: int = 0, precision=None, progress: bool = True, eps: float = VERDICT_EPS,
                    control: str = "baseline-ft", alpha: float = 0.05) -> pd.DataFrame:
    """Issue 22, item 6: do the arms' paired verdicts hold for another fine-tuning seed?

    ``control`` and each of ``arms`` are fine-tuned again from the same notebook-01 model with each fine-tuning seed
    of ``seeds`` (:func:`course_defense` ``finetune_seed``; cached), attacked with the worst-case suite at ``eps`` on
    the same test images as ``table`` (:func:`course_robustness`, transfer from the undefended baseline included),
    and each arm is compared with the ``control`` of its own seed, image by image (exact McNemar test, Holm over the
    arms).  Seed 0's rows are read from ``table`` (notebook 04's evaluation).

    Returns one row per (arm, fine-tuning seed): ``arm, finetune_seed, n, robust_accuracy,
    reference_robust_accuracy, model_only, reference_only, p_value, p_holm, shown, defense_rate`` (the worst case
    over the arm's own clean-correct images), plus ``every_seed``: the arm's verdict across seeds — ``"higher"``
    when it is shown better than the control at every seed, ``"lower"`` when shown worse at every seed, else
    ``"not at every seed"`` (or ``"not shown"`` when no seed shows a difference)."""
    arms = [a for a in arms if a != control]
    frames = []
    first = paired_tests(table, control, "worst", eps, arms, alpha).assign(finetune_seed=seed)
    w0 = _worst_at(table, eps).defense_rate
    frames.append(first.assign(defense_rate=[float(w0[a]) for a in first.model]))
    src, src_info = course_model(base, fast, output_dir, data_dir, device, seed, progress=progress, precision=precision)
    for s in seeds:
        rows = []
        for name in [control, *arms]:
            m, info = course_defense(base, parse_defense(name), fast, output_dir, data_dir, device, seed,
                                     progress=progress, precision=precision, finetune_seed=s)
            rows.append(course_robustness(m, info, f"{name}-ftseed{s}", fast, src, src_info, output_dir, data_dir, seed,
                                          progress, eps=(eps,)).assign(model=name))
        t = pd.concat(rows, ignore_index=True)
        p = paired_tests(t, control, "worst", eps, arms, alpha).assign(finetune_seed=s)
        ws = _worst_at(t, eps).defense_rate
        frames.append(p.assign(defense_rate=[float(ws[a]) for a in p.model]))
    out = pd.concat(frames, ignore_index=True).rename(columns={"model": "arm"})

    def across(shown):
        s = set(shown)
        return ("higher" if s == {"higher"} else "lower" if s == {"lower"} else
                "not shown" if s == {"not shown"} else "not at every seed")
    out["every_seed"] = out.arm.map(out.groupby("arm").shown.agg(across))
    return out


def replicate_text(reps) -> str:
    """:func:`seed_replicates` in one Markdown paragraph: per arm, its worst-case robust accuracy against baseline-ft's
    at each fine-tuning seed (Holm-adjusted p) and whether the paired verdict holds at every seed."""
    if reps is None or not len(reps):
        return "No arm was fine-tuned again."
    n = int(reps.n.iloc[0])
    seeds = sorted(set(reps.finetune_seed))
    ref = reps.groupby("finetune_seed").reference_robust_accuracy.first()
    parts = []
    for arm, g in reps.groupby("arm", sort=False):
        by = "; ".join(f"seed {int(r.finetune_seed)}: {round(r.robust_accuracy * n)} vs {round(r.reference_robust_accuracy * n)} "
                       f"(p_holm = {r.p_holm:.2g}, {r.shown})" for r in g.itertuples())
        parts.append(f"**{arm}** — {by} → **{g.every_seed.iloc[0]}**")
    arms = reps.arm.nunique()
    return (f"Correct under every attack of the suite at ε = {float(reps.eps.iloc[0]) * 255:g}/255, of the same {n} test "
            f"images, each arm against the baseline-ft fine-tuned with the same seed (fine-tuning seeds "
            f"{', '.join(map(str, seeds))}; p_holm: Holm over the {arms} re-run arm{'s' if arms > 1 else ''} at each seed): "
            + "; ".join(parts) + ". baseline-ft itself keeps " + ", ".join(
                f"{round(v * n)}/{n} at seed {int(k)}" for k, v in ref.items())
            + " correct: the seed alone moves a model by this much. A verdict counts an arm as better (or worse) than "
            "baseline-ft only if every seed says so.")
