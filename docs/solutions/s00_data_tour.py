"""Worked solutions to the exercises of notebook 00 (``00_data_tour.ipynb``).

Run by ``tests/test_solutions.py`` on small inputs; call them in the notebook with its own objects."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from medadv_lib.data.build.split import Selected, assign_splits
from medadv_lib.data.explore import count_table, shortcut_baseline


def exercise_1(sizes=(16, 32, 64), data_dir=None) -> pd.DataFrame:
    """Balanced accuracy of the linear shortcut baseline per region (rows) and thumbnail size (columns).

    Read the ``border`` row from left to right. Burnt-in text, arrows and markers are a few pixels wide at
    the original size: at 16 px they blur into the frame's mean brightness, at 64 px letters start to
    survive. A border that gets *more* predictive with resolution points at such fine-grained cues; one
    that is already predictive at 16 px points at coarse ones (exposure, collimation, padding).

    Measured 2026-11-30 on ``covid-cxr-mini``: the border's balanced accuracy is 0.644 / 0.694 / 0.649 at
    16 / 32 / 64 px (chance 0.333): far above chance already at 16 px, so coarse cues carry most of it; the small rise at 32 px and
    the fall at 64 px (the full image falls too, 0.703 → 0.641) is the ridge model getting more pixels than
    ~1600 training images can fit, not the markers fading. A linear model cannot read text; a CNN can.
    """
    return pd.DataFrame({s: shortcut_baseline(image_size=s, data_dir=data_dir)["balanced accuracy"] for s in sizes})


def exercise_2(meta: pd.DataFrame, min_share: float = 0.9) -> pd.DataFrame:
    """Views that (almost) only COVID-19 images have: per view, its images and the COVID-19 share, kept
    when the share is at least ``min_share``.

    Counted on 2026-11-30 on ``covid-cxr-mini``: ``frontal (visual check)`` (471 images, 98.9% COVID-19: only the COVID-19 sources
    leave the projection unrecorded, so it was labelled by eye) and ``AP Supine`` (126 images, 93.7%: patients
    imaged lying down, typical of ward and intensive-care COVID-19 cases). The model never reads this column, but
    what lies behind it does reach the pixels: the source's scanners, AP portable imaging of ward
    patients, cropping and markers. A model can learn "looks like a web-collection image" and score
    COVID-19 without looking at the lungs — the same confounding as the source itself.
    """
    t = count_table(meta, "view", "label").drop(index="all")
    out = pd.DataFrame({"images": t["all"], "COVID-19 share": t["COVID-19"] / t["all"]})
    return out[out["COVID-19 share"] >= min_share].sort_values("images", ascending=False)


def exercise_3(meta: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, int]:
    """Re-split the dataset with another seed and check it is patient-disjoint.

    ``medadv data build --seed S`` needs the raw sources; its split step (``assign_splits``: patient groups,
    stratified by label and source, shuffled with ``seed``) works on the metadata alone, so we rerun exactly
    that step here on the shipped ``metadata.csv`` (patient ids as groups). Returns the new metadata and the
    largest number of splits any patient appears in — 1 means patient-disjoint, as ``load_metadata``
    requires. The split shares stay near 70/15/15 whatever the seed; which patients land in test changes.
    """
    chosen = [Selected(i, SimpleNamespace(label=r.label, source=r.source), r.image_id, r.patient_id, True, [])
              for i, r in enumerate(meta.itertuples())]
    assign_splits(chosen, {s.image_id: s.patient_id for s in chosen}, seed)
    new = meta.assign(split=[s.split for s in chosen])
    return new, int(new.groupby("patient_id")["split"].nunique().max())
