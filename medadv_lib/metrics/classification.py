"""Clinical-style classification metrics: accuracy, per-class sensitivity and PPV, macro F1."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import LABELS
from ..stats import balanced_accuracy_interval  # noqa: F401  (re-exported)


def confusion_matrix(y_true, y_pred, num_classes: int = len(LABELS)) -> np.ndarray:
    """``C[i, j]`` = number of images of true class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def classification_report(y_true, y_pred, labels=LABELS) -> dict:
    """Accuracy, macro F1, the confusion matrix and per-class sensitivity (recall), PPV
    (precision), F1 and support, as plain Python types (JSON-ready).

    Sensitivity of class c = TP / (images of class c); PPV = TP / (images predicted c).
    A class never predicted has PPV 0 by convention (reported, not hidden).  A class with no image
    in ``y_true`` has no sensitivity (and no F1): they are ``None``, not 0, and the macro F1 and the
    balanced accuracy average over the classes present.  With no image at all, ``accuracy``,
    ``macro_f1`` and ``balanced_accuracy`` are ``None`` too.
    """
    k = len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = support > 0
    sens = np.divide(tp, support, out=np.zeros(k), where=present)
    ppv = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * sens * ppv, sens + ppv, out=np.zeros(k), where=(sens + ppv) > 0)
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else None,
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "balanced_accuracy": float(sens[present].mean()) if present.any() else None,
        "per_class": {lab: {"sensitivity": float(sens[i]) if present[i] else None, "ppv": float(ppv[i]),
                            "f1": float(f1[i]) if present[i] else None, "support": int(support[i])}
                      for i, lab in enumerate(labels)},
        "confusion": cm.tolist(),
        "labels": list(labels),
        "n": int(total),
    }


def report_table(reports: dict, labels=LABELS):
    """One row per model: accuracy, macro F1, and per-class sensitivity and PPV (a pandas DataFrame)."""
    rows = {}
    for name, r in reports.items():
        row = {"accuracy": r["accuracy"], "balanced acc.": r["balanced_accuracy"], "macro F1": r["macro_f1"]}
        for lab in labels:
            row[f"sens. {lab}"] = r["per_class"][lab]["sensitivity"]
            row[f"PPV {lab}"] = r["per_class"][lab]["ppv"]
        rows[name] = row
    return pd.DataFrame(rows).T
