"""The ``images`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from .candidates import Candidate
from .inputs import Inputs
from .rules import FINGERPRINT_SIZE


def to_gray8(path: Path) -> Image.Image:
    """Decode an image as 8-bit grayscale: EXIF orientation applied, transparent pixels
    composited on black, 16-bit / 32-bit / float images min-max scaled."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        scaled = (values - values.min()) / span * 255.0
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L")


@dataclass
class Fingerprints:
    """Stacked near-duplicate features of n images (row k = image k)."""

    ahash: np.ndarray   # (n, 256) bool: 16x16 average hash
    dhash: np.ndarray   # (n, 256) bool: 16x16 difference hash
    low: np.ndarray     # (n, 1024) float32: normalised 32x32 thumbnail
    high: np.ndarray    # (n, 6400) float32: normalised 80x80 high-pass crop


def _zscore(values: np.ndarray) -> np.ndarray:
    """Flattened, zero-mean, unit-variance copy (float32)."""
    values = values.astype(np.float32)
    return ((values - values.mean()) / (values.std() + 1e-6)).ravel()


def fingerprint(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ahash, dhash, low, high)`` of a 256x256 grayscale image (see :class:`Fingerprints`)."""
    box = Image.Resampling.BOX
    avg = np.asarray(image.resize((16, 16), box), dtype=np.float64)
    diff = np.asarray(image.resize((17, 16), box), dtype=np.float64)
    small = image.resize((96, 96), box)
    high = (np.asarray(small, dtype=np.float32)
            - np.asarray(small.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32))[8:88, 8:88]
    low = np.asarray(image.resize((32, 32), box), dtype=np.float32)
    return ((avg > avg.mean()).ravel(), (diff[:, 1:] > diff[:, :-1]).ravel(),
            _zscore(low), _zscore(high))


@dataclass
class LoadedImage:
    """A candidate whose file was decoded; ``image`` is already resized for output."""

    candidate: Candidate
    image: Image.Image


def _skip_reason(file: Path, max_file_mib: float | None) -> str | None:
    """Why a candidate's file cannot be used before decoding, or None."""
    if not file.is_file():
        return "file missing from checkout"
    if max_file_mib is not None and file.stat().st_size >= max_file_mib * 2 ** 20:
        return f"file of {max_file_mib:g} MiB or larger (max_file_mib; absent from the snapshot)"
    return None


def load_images(candidates: Sequence[Candidate], inputs: Inputs, image_size: int,
                max_file_mib: float | None, log: collections.Counter,
                say: Callable[[str], None]) -> tuple[list[LoadedImage], Fingerprints]:
    """Decode, convert and resize every usable candidate and fingerprint it."""
    lanczos = Image.Resampling.LANCZOS
    loaded: list[LoadedImage] = []
    features: list[tuple[np.ndarray, ...]] = []
    for n, cand in enumerate(candidates, 1):
        if n % 250 == 0:
            say(f"  decoded {n}/{len(candidates)}")
        file = inputs.checkouts[cand.source].root / cand.path
        reason = _skip_reason(file, max_file_mib)
        if reason is None:
            try:
                gray = to_gray8(file)
            except Exception:   # any undecodable file (truncated, LFS pointer, bomb, ...)
                reason = "unreadable image"
        if reason is not None:
            log[(cand.source, reason)] += 1
            continue
        image = gray.resize((image_size, image_size), lanczos)
        probe = image if image_size == FINGERPRINT_SIZE else gray.resize(
            (FINGERPRINT_SIZE, FINGERPRINT_SIZE), lanczos)
        loaded.append(LoadedImage(cand, image))
        features.append(fingerprint(probe))
    if not features:
        empty = np.zeros((0, 256), bool)
        return loaded, Fingerprints(empty, empty, np.zeros((0, 1024), np.float32),
                                    np.zeros((0, 6400), np.float32))
    columns = [np.stack(col) for col in zip(*features)]
    return loaded, Fingerprints(*columns)
