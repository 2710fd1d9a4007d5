"""The ``rules`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import numpy as np
from ..sources import NIH_METADATA, SOURCE_BY_KEY


MIN_AGE = 18
"""Patients with a known age below this are not used."""

LABEL_CAPS: dict[str, int | None] = {"normal": 600, "pneumonia": 600, "COVID-19": None}
"""Most images per label (``None``: no cap), filled in source order."""

SPLIT_SHARES: tuple[tuple[str, float], ...] = (("train", 0.70), ("val", 0.15), ("test", 0.15))
"""Target share of each split within every (label, source) stratum."""

FRONTAL_VIEWS = {"PA": "PA", "AP": "AP", "AP SUPINE": "AP Supine", "AP ERECT": "AP erect"}
"""Accepted views (upper-cased source value -> value written to ``view``)."""

VISUAL_CHECK_VIEW = "frontal (visual check)"
"""``view`` of images whose source states none (checked by eye on the snapshot)."""

VISUAL_EXCLUDE: dict[tuple[str, str], str] = {
    ("cxnet", "chest_xray_images/covid19/040.png"): "looks like a CT scout view",
}
"""Images without a stated view that failed the visual check."""

IEEE_FINDINGS: dict[str, str] = {
    "COVID-19": "COVID-19", "COVID-19, ARDS": "COVID-19",
    **{f: "pneumonia" for f in (
        "Pneumonia", "Bacterial", "Streptococcus", "Klebsiella", "Legionella", "E.Coli",
        "Mycoplasma Bacterial Pneumonia", "Chlamydophila", "Pneumocystis", "SARS",
        "Influenza", "Varicella")},
}
"""ieee8023 ``finding`` -> label; other findings are read only to drop their copies."""

COVIDNET_FINDINGS = {"COVID-19": "COVID-19", "No finding": "normal", "Pneumonia": "pneumonia"}
"""Actualmed / Figure1 ``finding`` -> label (empty finding: inconclusive, not used)."""

NIH_FOLDERS = (("No_findings", "normal"), ("Pneumonia", "pneumonia"))
"""Folders of ``X-Ray Image DataSet/`` in muhammedtalo/COVID-19 and their labels."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".webp")
"""Image files looked at in folder-based sources (COVID-CXNet)."""

FINGERPRINT_SIZE = 256
"""Fingerprints are taken on this square size whatever ``image_size`` is."""

DUP_MAX_DIST = 40
"""Largest hash distance at which two images are compared further."""

METADATA_COLUMNS = ["image_id", "file", "label", "patient_id", "split", "source_repo",
                    "source_commit", "source_path", "view", "age", "sex", "license"]
"""Columns of ``metadata.csv``, in order."""

_ANY_SOURCE_KEYS = (*SOURCE_BY_KEY, NIH_METADATA.key)


class DataBuildError(Exception):
    """A build that cannot go on (bad input folder, nothing to build, unsafe output)."""


class MissingSourceWarning(UserWarning):
    """A source was not given (or is unusable); the build goes on without it."""


def is_duplicate(dist: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Same picture (re-encoded, cropped a little, annotated): the snapshot's thresholds."""
    return (dist <= 20) | ((dist <= DUP_MAX_DIST) & ((high >= 0.60) | (low >= 0.965)))


def maybe_same_patient(dist: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Looser: links an image without a patient id to a very similar one of its label."""
    return (dist <= DUP_MAX_DIST) & (low >= 0.93)
