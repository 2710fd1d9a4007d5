"""Deep validation of the dataset: decode every image and look at every split (``medadv data check``).

:func:`load_metadata` checks the table (columns, labels, files present, patient-disjoint splits);
this module checks what the table points at: each image is decoded in full (in threads, with a
progress bar) by the loaders' own :func:`~medadv_lib.data.dataset.decode_gray` and reported by file
when it is empty, truncated or otherwise unreadable, not 1-channel grayscale, of an absurd or
implausible size, stored so that it would decode to the wrong brightness (a 16-bit image whose values
fit in 12 bits, a transparent gray value, an EXIF rotation), or blank; every bad image is listed,
one line each, before the check fails; and each split must hold images (of every class, or a
warning says which is missing).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from ..runtime import progress_bar as tqdm   # tqdm.auto's, silent under the course runner

from .. import LABELS
from ..runtime import available_cpus
from .dataset import GRAYSCALE_MODES, SPLITS, ImageDecodeError, decode_gray, empty_split_message  # noqa: F401

MIN_SIDE, MAX_SIDE, MAX_ASPECT = 64, 8192, 4.0
"""A chest X-ray smaller than 64 px, larger than 8192 px or more elongated than 4:1 is not one (stricter
than what :func:`~medadv_lib.data.dataset.decode_gray` refuses to decode: a side under 32 or over 8192 px)."""


def inspect_image(path: str | os.PathLike) -> str | None:
    """Decode one image in full; ``None`` when it is a plausible grayscale X-ray, else what is wrong.

    The decode and its validation are :func:`~medadv_lib.data.dataset.decode_gray`'s, the one every
    loader uses (unreadable, absurd size, not 1-channel grayscale, bit depth that does not match the
    values, transparency or EXIF rotation it would ignore); on top, the size must be plausible for a
    chest X-ray and the image must not be blank.
    """
    try:
        arr, _ = decode_gray(path)
    except ImageDecodeError as exc:
        return exc.problem
    h, w = arr.shape
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE or max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
        return (f"implausible size {w}x{h} px for a chest X-ray (expected sides {MIN_SIDE}-{MAX_SIDE} px, "
                f"at most {MAX_ASPECT:g}:1)")
    if arr.size and arr.min() == arr.max():
        return f"blank image (every pixel is {arr.flat[0]})"
    return None


def check_images(df: pd.DataFrame, workers: int | None = None, progress: bool = False) -> list[dict]:
    """Decode every image of ``df`` (from :func:`~medadv_lib.data.load_metadata`) in ``workers``
    threads; return one ``{"file", "split", "label", "problem"}`` per bad image, in table order."""
    paths = df["path"].tolist()
    workers = max(1, workers or min(8, 2 * available_cpus()))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(tqdm(pool.map(inspect_image, paths), total=len(paths), desc="decoding images",
                          unit="img", disable=not progress, leave=False))
    return [{"file": row.file, "split": row.split, "label": row.label, "problem": problem}
            for row, problem in zip(df.itertuples(index=False), found) if problem is not None]


def check_splits(df: pd.DataFrame, root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the splits: a split without images is an error; a split without
    one of the classes is a warning (that class's sensitivity is undefined there)."""
    errors, warnings = [], []
    for split in SPLITS:
        part = df[df["split"] == split]
        if part.empty:
            errors.append(empty_split_message(root, split))
            continue
        missing = [lab for lab in LABELS if not (part["label"] == lab).any()]
        if missing:
            warnings.append(f"the {split!r} split has no {' or '.join(missing)} image: "
                            f"{'their' if len(missing) > 1 else 'its'} sensitivity is undefined (null) there")
    return errors, warnings
