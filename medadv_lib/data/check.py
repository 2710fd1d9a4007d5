"""Deep validation of the dataset: decode every image and look at every split (``medadv data check``).

:func:`load_metadata` checks the table (columns, labels, files present, patient-disjoint splits);
this module checks what the table points at: each image is decoded in full (in threads, with a
progress bar) and reported by file when it is empty, truncated or otherwise unreadable, not 8-bit
grayscale, implausibly sized or blank; and each split must hold images (of every class, or a
warning says which is missing).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .. import LABELS
from .dataset import SPLITS, empty_split_message

GRAYSCALE_MODES = ("L", "I;16", "I")
"""Modes :func:`~medadv_lib.data.read_image` accepts (the builder writes 8-bit ``L``)."""

MIN_SIDE, MAX_SIDE, MAX_ASPECT = 64, 8192, 4.0
"""A chest X-ray smaller than 64 px, larger than 8192 px or more elongated than 4:1 is not one."""


def inspect_image(path: str | os.PathLike) -> str | None:
    """Decode one image in full; ``None`` when it is a plausible grayscale X-ray, else what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            im.load()                                   # decodes every byte: truncation shows here
            mode, (w, h) = im.mode, im.size
            if mode not in GRAYSCALE_MODES:
                return (f"mode {mode!r} ({len(im.getbands())} channels), expected 8-bit grayscale 'L': "
                        "convert it with PIL's .convert('L') or rebuild the dataset")
            arr = np.asarray(im)
    except UnidentifiedImageError:
        return f"not an image PIL can identify ({size} bytes)"
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or "end of file" in text.lower():
            return f"truncated file ({size} bytes): {text}"
        return f"unreadable image ({size} bytes): {text}"
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE or max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
        return (f"implausible size {w}x{h} px for a chest X-ray (expected sides {MIN_SIDE}-{MAX_SIDE} px, "
                f"at most {MAX_ASPECT:g}:1)")
    if arr.size and arr.min() == arr.max():
        return f"blank image (every pixel is {arr.flat[0]})"
    return None


def check_images(df: pd.DataFrame, workers: int | None = None, progress: bool = False) -> list[dict]:
    """Decode every image of ``df`` (from :func:`~medadv_lib.data.load_metadata`) in ``workers``
    threads; return one ``{"file", "split", "label", "problem"}`` per bad image, in table order."""
    from tqdm.auto import tqdm

    from ..runtime import available_cpus
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
