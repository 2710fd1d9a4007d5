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
from ..dataset import DECODE_MAX_SIDE, DECODE_MIN_SIDE
from .rules import FINGERPRINT_SIZE, DataBuildError


class UnusableImage(DataBuildError):
    """A source image the build decodes but cannot use; ``reason`` is its row in the Dropped table
    of ``SOURCES.md`` (the message also names the file and what was found)."""

    def __init__(self, path: Path, reason: str, detail: str = ""):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}{f' ({detail})' if detail else ''}")


SIZE_REASON = f"implausible size (a side under {DECODE_MIN_SIDE} or over {DECODE_MAX_SIDE} px)"
"""Drop reason of a source image whose size is absurd (read from its header, before decoding)."""


def to_gray8(path: Path) -> Image.Image:
    """Decode an image as 8-bit grayscale: EXIF orientation applied, transparent pixels
    composited on black, 16-bit / 32-bit / float images min-max scaled (so their stored bit depth
    cannot make them too dark or too bright).

    What is decoded is validated: :class:`UnusableImage` (naming the file) for an absurd size (a side
    under 32 or over 8192 px, the limits of :func:`medadv_lib.data.dataset.decode_gray`, checked
    before the pixels are read), non-finite values in a float image, or a blank result (one gray)."""
    with Image.open(path) as opened:
        w, h = opened.size
        if min(w, h) < DECODE_MIN_SIDE or max(w, h) > DECODE_MAX_SIDE:
            raise UnusableImage(path, SIZE_REASON, f"{w}x{h} px")
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise UnusableImage(path, "non-finite pixel values (NaN or infinity)")
        span = float(values.max() - values.min()) or 1.0
        scaled = (values - values.min()) / span * 255.0
        gray = Image.fromarray(np.round(scaled).astype(np.uint8), "L")
    else:
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
                image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        gray = image.convert("L")
    lo, hi = gray.getextrema()
    if lo == hi:
        raise UnusableImage(path, "blank image (one gray value)", f"every pixel is {lo}")
    return gray


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
            except UnusableImage as exc:   # decoded, but absurd: its own row in the Dropped table
                reason = exc.reason
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
