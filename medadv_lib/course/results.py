"""Results as data: each notebook records its headline numbers with one call (:func:`record`) into
``OUTPUT_DIR/results/<notebook>.json``, one schema for every notebook (:data:`RECORD_KEYS`)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .. import LABELS
from ..runtime import atomic_write_text
from ..train import collapse_check

RECORD_KEYS = ("notebook", "model", "data_fingerprint", "checkpoint_fingerprint", "precision", "seconds")
"""Keys every record holds.  Attack results add their budget beside the numbers (``norm`` "inf"/"2",
``zeta`` or ``eps``, ``target`` — None when non-targeted) and use the library's metric names
(``test_accuracy``, ``balanced_accuracy``, ``fooling_rate``, ``fooling_rate_per_class`` (class → rate),
``fooling_rate_reweighted``, ``target_success_rate``, ``random_fooling_rate``, ``robust_accuracy``,
``defense_rate``, ``median_rho_adv``); defense results add ``defense``."""


def file_fingerprint(path) -> str:
    """Short sha1 of a file's bytes (checkpoints, UAPs): what a record was computed from."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]


def json_safe(v):
    """``v`` as JSON data for a record: dict keys become strings, tuples lists, 0-d tensors and NumPy
    scalars Python numbers, NaN and infinities ``None``, any other object its ``str``."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def record(notebook: str, records: list[dict], output_dir="../runs", seconds: float | None = None) -> Path:
    """Write a notebook's headline numbers to ``OUTPUT_DIR/results/<notebook>.json`` (atomically).

    ``records`` is a list of flat dicts, one per (model, budget, ...) result; each must hold the
    :data:`RECORD_KEYS` except ``notebook`` (added here) and ``seconds`` (filled from ``seconds``
    when missing).  Values are made JSON-safe (tensors/NumPy scalars → numbers, NaN → null).
    The file is a JSON list of records; a rerun replaces it.  Returns its path.

    Example::
        >>> course.record("01_train_classifiers", [{"model": "resnet18", "test_accuracy": 0.82, ...}], OUTPUT_DIR)
    """
    out = []
    for r in records:
        r = {"notebook": notebook, **r}
        if r.get("seconds") is None:
            r["seconds"] = seconds
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"record for {notebook!r} lacks {missing}; every record holds {list(RECORD_KEYS)}")
        out.append(json_safe(r))
    path = Path(output_dir) / "results" / f"{notebook}.json"
    atomic_write_text(json.dumps(out, indent=1), path)
    return path


def model_record(name: str, info: dict, precision) -> dict:
    """The identity part of a record for a course model: name, fingerprints, precision."""
    return {"model": name, "checkpoint": Path(info["checkpoint"]).name,
            "checkpoint_fingerprint": file_fingerprint(info["checkpoint"]),
            "data_fingerprint": info.get("data_fingerprint"), "precision": str(precision),
            "device": _device_of(precision), "torch_version": str(torch.__version__)}


def _device_of(precision) -> str:
    """Where a record's numbers were computed: the device type of the precision policy (a
    :class:`~medadv_lib.runtime.Precision`), else ``"not recorded"``."""
    return str(getattr(precision, "device_type", "not recorded"))


def classifier_record(name: str, info: dict, report: dict, precision) -> dict:
    """Notebook 01's record of one trained model: test accuracy, balanced accuracy, per-class
    sensitivity/PPV, the collapse check and the training cost."""
    cfg = info.get("config", {})
    return {**model_record(name, info, precision), "image_size": cfg.get("image_size"), "epochs": cfg.get("epochs"),
            "test_accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"],
            "macro_f1": report["macro_f1"],
            "sensitivity": {k: v["sensitivity"] for k, v in report["per_class"].items()},
            "ppv": {k: v["ppv"] for k, v in report["per_class"].items()},
            "collapsed_epochs": collapse_check(info.get("history", []))["collapsed_epochs"],
            "train_seconds": info.get("train_seconds"), "train_precision": info.get("precision")}


def uap_record(name: str, info: dict, precision, metrics: dict, zeta: float, norm: str, target=None,
               **extra) -> dict:
    """A record of one UAP evaluation (a dict from :func:`medadv_lib.metrics.evaluate_uap`, optionally
    with the ``random_*`` keys of the widget's view) in the results schema."""
    keys = ("fooling_rate", "fooling_rate_balanced", "fooling_rate_vs_labels", "fooling_rate_reweighted",
            "fooling_rate_reweighted_lo", "fooling_rate_reweighted_hi", "fooling_rate_vs_labels_reweighted",
            "fooling_rate_vs_labels_reweighted_lo", "fooling_rate_vs_labels_reweighted_hi",
            "target_success_rate", "random_fooling_rate", "random_target_success_rate", "clean_accuracy",
            "confusion_labels_to_adv", "adv_prediction_share")
    out = {**model_record(name, info, precision), "norm": norm, "zeta": zeta, "eps": metrics.get("eps"),
           "target": None if target is None else LABELS[int(target)],
           **{k: metrics[k] for k in keys if k in metrics},
           "fooling_rate_per_class": dict(zip(metrics.get("labels", LABELS), metrics["fooling_rate_per_class"])),
           "n": metrics.get("n")}
    out.update(extra)
    return out


def curve_records(name: str, info: dict, precision, curve, attack: str, **settings) -> list[dict]:
    """Records of one robustness curve (a DataFrame from
    :func:`medadv_lib.metrics.robustness_curve`): one per budget, with ``attack`` and its settings."""
    keys = ("clean_accuracy", "robust_accuracy", "defense_rate", "attack_success_rate", "n")
    ident = model_record(name, info, precision)
    return [{**ident, "attack": attack, "norm": str(row["norm"]), "eps": float(row["eps"]), "target": None,
             **{k: row[k] for k in keys}, **settings} for _, row in curve.iterrows()]


def defense_records(table, checks, study: dict, precision, labels: dict | None = None, collapse=None,
                    best: str | None = None, best_why: str | None = None, replicates=None) -> list[dict]:
    """Notebook 04's (and 05's) records (results schema): one per arm and attack row of the robustness
    table, with ``defense`` (the arm's key), the budget, the rates with their intervals, the per-image
    outcomes (``outcome_clean``, ``outcome_attacked``: the report's paired comparison) and the hygiene
    verdict with ``masked`` (a masking check failed); per class and balanced rates, the worst case's ``set_by``;
    with ``collapse`` (:func:`~medadv_lib.metrics.defense.collapse_flags`) ``collapsed`` and ``classes_given_up``;
    ``labels`` (``{key: shown name}``, e.g. :func:`~medadv_lib.course.method_labels`) adds
    ``defense_label``, the name the report shows.  ``best`` (the arm notebook 04 chose, e.g. on validation images:
    :func:`~medadv_lib.course.robustness_overview`) marks that arm's records ``best_arm`` = True with ``best_arm_why``,
    so that notebook 05 and the report read the same arm (:func:`~medadv_lib.course.rules.recorded_best_arm`).
    ``replicates`` (:func:`~medadv_lib.course.seed_replicates`) adds, on the replicated arms' ``worst`` records at the
    replicates' budget, ``every_seed`` (the paired verdict against baseline-ft across fine-tuning seeds),
    ``finetune_seeds``, ``shown_by_seed`` and ``defense_rate_by_seed``, which the report's verdicts read (:func:`~medadv_lib.course.rules.confirm_by_seeds`)."""
    keys = ("attack", "norm", "eps", "zeta", "steps", "restarts", "n", "n_clean_correct", "clean_accuracy",
            "robust_accuracy", "robust_accuracy_lo", "robust_accuracy_hi", "defense_rate", "defense_rate_lo",
            "defense_rate_hi", "median_rho_adv", "fooling_rate", "target_success_rate", "target_success_rate_non_target",
            "params", "flops", "latency_ms", "outcome_clean", "outcome_attacked", "set_by", "fooled_by", "attacked",
            "fooled_new", "not_converged", "classes", "n_by_class", "clean_accuracy_by_class",
            "robust_accuracy_by_class", "defense_rate_by_class", "balanced_robust_accuracy", "clean_balanced_accuracy")
    verdict = dict(zip(checks.model, checks.verdict))
    masked = {m: bool(f) for m, f in zip(checks.model, checks.failed)}
    gone = {} if collapse is None else {r.model: (bool(r.collapsed), list(r.classes_given_up))
                                        for r in collapse.itertuples()}
    labels = labels or {}
    again = {}
    if replicates is not None and len(replicates):
        eps_r = float(replicates.eps.iloc[0])
        for arm, g in replicates.groupby("arm", sort=False):
            again[arm] = {"every_seed": g.every_seed.iloc[0], "finetune_seeds": [int(v) for v in g.finetune_seed],
                          "shown_by_seed": [str(v) for v in g.shown],
                          "defense_rate_by_seed": [float(v) for v in g.defense_rate]}
    out = []
    for row in table.to_dict(orient="records"):
        rep = (again.get(row["model"]) if again and row.get("attack") == "worst"
               and abs(float(row.get("eps", -1)) - eps_r) < 1e-9 else None)
        _, info = study[row["model"]]
        out.append({**model_record(info["config"]["model"], info, precision), "defense": row["model"],
                    **({"defense_label": labels[row["model"]]} if row["model"] in labels else {}),
                    "target": None, **{k: row[k] for k in keys if k in row and _present(row[k])},
                    "verdict": verdict.get(row["model"]), "masked": masked.get(row["model"]),
                    **({"collapsed": gone[row["model"]][0], "classes_given_up": gone[row["model"]][1]}
                       if row["model"] in gone else {}),
                    **({"best_arm": True, "best_arm_why": best_why} if best is not None and row["model"] == best else {}),
                    **(rep or {})})
    return out


def _present(v) -> bool:
    """False for the NaN a concatenated table puts where a row has no such column."""
    return not (isinstance(v, float) and math.isnan(v))


def round_records(table, rounds: list[dict], precision) -> list[dict]:
    """Notebook 05's per-round records (results schema): one per row of
    :func:`medadv_lib.course.rounds_table`, with ``defense``, ``round`` (0 = the undefended model),
    ``clean_accuracy``, ``old_uap_fooling_rate``, ``fresh_uap_fooling_rate`` and the random control
    (each with its Wilson interval), the fresh UAP's per-class rates and its budget."""
    by_round = {r["round"]: r for r in rounds}
    out = []
    for row in table.to_dict(orient="records"):
        info = by_round[row["round"]]["info"]
        out.append({**model_record(info["config"]["model"], info, precision), "norm": "inf", "target": None,
                    "attack": "uap", **{k: v for k, v in row.items() if k not in ("checkpoint",)}})
    return out


def control_records(controls: dict, precision) -> list[dict]:
    """Notebook 05's controls, fine-tuned *without* UAPs (``{label: summary}`` of
    :func:`medadv_lib.course.uap_fooling_summary`): one record each with ``control`` (the label),
    ``defense`` = ``"none"``, ``round`` = None and the fresh UAP's ``fooling_rate`` with its interval, so
    that the report judges Hirano et al.'s claim against the same controls as the notebook."""
    out = []
    for label, c in controls.items():
        out.append({**model_record(c["model"], c, precision), "control": label, "defense": "none", "round": None,
                    "attack": "uap", "norm": "inf", "zeta": 0.02, "target": None, "n": c["n"],
                    "fine_tune_epochs": c.get("fine_tune_epochs"), "clean_accuracy": c["clean_accuracy"],
                    "fooling_rate": c["uap_fooling_rate"], "fooling_rate_lo": c["uap_fooling_rate_lo"],
                    "fooling_rate_hi": c["uap_fooling_rate_hi"]})
    return out


def transfer_records(summary, infos: dict, precision) -> list[dict]:
    """Notebook 06's records: one per cell of the transfer matrix (a
    :func:`medadv_lib.metrics.transfer.transfer_summary`): the target model's identity, ``uap_from`` (the
    source), ``fooling_rate`` with its interval, the random control and ``beats_random``."""
    out = []
    for row in summary.to_dict(orient="records"):
        info = infos[row["target"]]
        out.append({**model_record(row["target"], info, precision), "uap_from": row["source"], "attack": "uap",
                    "norm": "inf", "zeta": 0.02, "target": None, "white_box": row["white_box"],
                    "fooling_rate": row["rate"], "fooling_rate_lo": row["rate_lo"], "fooling_rate_hi": row["rate_hi"],
                    "random_fooling_rate": row["random"], "beats_random": row["beats_random"]})
    return out
