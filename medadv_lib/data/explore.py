"""Looking at the data before trusting a model: tables of sources, splits and ages, and a
*shortcut* baseline that shows how much of the label can be guessed without the lungs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import LABELS
from ..stats import balanced_accuracy_interval
from .dataset import load_metadata, load_split


def count_table(df: pd.DataFrame, rows: str = "source", cols: str = "label") -> pd.DataFrame:
    """Images per ``rows`` × ``cols`` (e.g. source × label, split × label), with totals."""
    order = list(LABELS) if cols == "label" else None
    t = pd.crosstab(df[rows], df[cols], margins=True, margins_name="all")
    if order:
        t = t[[c for c in order if c in t.columns] + ["all"]]
    return t


def demographics_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per label: how many images have an age, median age and IQR, sex counts, views."""
    out = {}
    for lab in LABELS:
        g = df[df["label"] == lab]
        age = pd.to_numeric(g.get("age", pd.Series(dtype=float)), errors="coerce").dropna()
        sex = g.get("sex", pd.Series(dtype=str)).replace("", "unknown").value_counts()
        view = g.get("view", pd.Series(dtype=str)).value_counts()
        out[lab] = {"images": len(g), "with age": len(age),
                    "median age": float(age.median()) if len(age) else np.nan,
                    "age IQR": f"{age.quantile(.25):.0f}-{age.quantile(.75):.0f}" if len(age) else "",
                    "female": int(sex.get("F", 0)), "male": int(sex.get("M", 0)), "sex unknown": int(sex.get("unknown", 0)),
                    "top view": f"{view.index[0]} ({view.iloc[0]})" if len(view) else ""}
    return pd.DataFrame(out).T


def region_mask(image_size: int, region: str, frame: float = 0.125) -> torch.Tensor:
    """Boolean ``H×W`` mask of the pixels a shortcut baseline may see.

    ``"full"``: all; ``"border"``: only a frame of width ``frame``·size on every side (lungs
    hidden); ``"center"``: the complement of that frame (mostly lungs and heart).
    """
    m = torch.zeros(image_size, image_size, dtype=torch.bool)
    w = max(1, int(round(frame * image_size)))
    m[:w, :] = m[-w:, :] = m[:, :w] = m[:, -w:] = True
    if region == "border":
        return m
    if region == "center":
        return ~m
    if region == "full":
        return torch.ones_like(m)
    raise ValueError(f"unknown region {region!r}; use 'full', 'border' or 'center'")


def shortcut_baseline(regions=("full", "border", "center"), image_size: int = 32, target: str = "label",
                      data_dir=None) -> pd.DataFrame:
    """Fit a linear classifier (class-balanced ridge regression on standardised pixels) on a
    few raw pixels of a region and report its test accuracy, balanced accuracy and per-class
    sensitivity; ``balanced accuracy lo``/``hi`` bound a 95 % stratified bootstrap interval of the
    balanced accuracy over the test images (:func:`~medadv_lib.stats.balanced_accuracy_interval`).

    If a linear model on a 32×32 thumbnail's *border* (no lungs in view) predicts the label
    well, the dataset carries shortcuts (source, markers, text, exposure) a deep network
    will happily learn.  ``target="source"`` predicts the source key instead of the label.
    """
    from sklearn.linear_model import RidgeClassifier  # lazy: scikit-learn takes seconds to import
    from sklearn.pipeline import make_pipeline  # lazy: as above
    from sklearn.preprocessing import StandardScaler  # lazy: as above

    df = load_metadata(data_dir)
    rows = []
    xs = {s: load_split(s, image_size, data_dir)[0] for s in ("train", "test")}
    ys = {}
    for s in ("train", "test"):
        part = df[df["split"] == s]
        ys[s] = part["y"].to_numpy() if target == "label" else part["source"].to_numpy()
    majority = pd.Series(ys["train"]).value_counts().index[0]
    for region in regions:
        m = region_mask(image_size, region).flatten()
        feats = {s: xs[s].flatten(1)[:, m].numpy() for s in xs}
        clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=100.0, class_weight="balanced"))
        clf.fit(feats["train"], ys["train"])
        pred = clf.predict(feats["test"])
        ba, lo, hi = balanced_accuracy_interval(ys["test"], pred)
        row = {"region": region, "pixels seen": int(m.sum()), "test accuracy": float((pred == ys["test"]).mean()),
               "balanced accuracy": ba, "balanced accuracy lo": lo, "balanced accuracy hi": hi}
        if target == "label":
            for i, lab in enumerate(LABELS):
                row[f"sens. {lab}"] = float((pred[ys["test"] == i] == i).mean())
        rows.append(row)
    rows.append({"region": "majority class (no pixels)", "pixels seen": 0,
                 "test accuracy": float((ys["test"] == majority).mean()),
                 "balanced accuracy": 1.0 / len(np.unique(ys["test"]))})
    return pd.DataFrame(rows).set_index("region")


def hide_region(x: torch.Tensor, region: str = "center", frame: float = 0.125, fill: float | None = None) -> torch.Tensor:
    """Copy of ``x`` (``N×1×H×W``) with everything *outside* ``region`` replaced by ``fill``
    (default: each image's mean), e.g. ``region="border"`` keeps only the frame and hides the lungs."""
    keep = region_mask(x.shape[-1], region, frame).to(x.device)
    value = x.mean(dim=(1, 2, 3), keepdim=True) if fill is None else torch.full_like(x[:, :1, :1, :1], fill)
    return torch.where(keep, x, value.expand_as(x))
