"""Finding, validating and loading the course's chest X-ray dataset.

The dataset layout (``covid-cxr-mini``) is ``metadata.csv`` plus
``images/<label>/<image_id>.png`` (8-bit grayscale).  Images are returned as float
tensors ``1×H×W`` in [0, 1]; labels are indices into :data:`medadv_lib.LABELS`.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .. import LABELS

DATASET_NAME = "covid-cxr-mini"
REQUIRED_COLUMNS = ("image_id", "file", "label", "patient_id", "split")
SPLITS = ("train", "val", "test")
ENV_VAR = "MEDADV_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOW_TO_GET = (
    "Get the data: set MEDADV_DATA=/path/to/covid-cxr-mini, or place the folder at "
    f"data/{DATASET_NAME} in the project, or build it from the public source repositories "
    "with `medadv data download` (see README, 'Data')."
)


class DataError(ValueError):
    """The dataset is missing or malformed; the message names the file and the fix."""


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the dataset is looked for, in order: argument, $MEDADV_DATA, data/, ../shared/data/."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    if os.environ.get(ENV_VAR):
        return [Path(os.environ[ENV_VAR]).expanduser()]
    out = []
    for root in (PROJECT_ROOT, Path.cwd(), Path.cwd().parent):
        for cand in (root / "data" / DATASET_NAME, root.parent / "shared" / "data" / DATASET_NAME):
            if cand not in out:
                out.append(cand)
    return out


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the dataset folder, or raise :class:`DataError` listing where it looked.

    An explicit ``data_dir`` or ``$MEDADV_DATA`` is used alone (a wrong path is an error,
    not a silent fallback to another copy).
    """
    tried = candidate_dirs(data_dir)
    for cand in tried:
        if (cand / "metadata.csv").is_file():
            return cand.resolve()
    where = "\n  ".join(str(p) for p in tried)
    src = "the folder you passed" if data_dir is not None else (
        f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default places")
    raise DataError(f"no {DATASET_NAME} dataset (a folder with metadata.csv) found in {src}:\n  {where}\n{HOW_TO_GET}")


def _bad_rows(df: pd.DataFrame, mask, what: str, path: Path) -> None:
    if mask.any():
        rows = df.loc[mask, "file"].astype(str).tolist()
        shown = ", ".join(rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        raise DataError(f"{path}: {what}: {shown}")


def load_metadata(data_dir: str | os.PathLike | None = None, check_files: bool = True) -> pd.DataFrame:
    """Read and validate ``metadata.csv``.

    Checks: required columns, known labels and splits, unique image ids, files present
    (``check_files``), and that no patient appears in two splits.  Adds the columns
    ``path`` (absolute), ``y`` (label index) and ``source`` (source key from the image id).
    """
    root = find_data_dir(data_dir)
    path = root / "metadata.csv"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}. Rebuild the dataset or restore the file.") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks required column(s) {missing}; it has {list(df.columns)}. "
                        f"Expected at least {list(REQUIRED_COLUMNS)}.")
    if df.empty:
        raise DataError(f"{path} has no rows")
    _bad_rows(df, ~df["label"].isin(LABELS), f"unknown label (known: {list(LABELS)}) in rows for", path)
    _bad_rows(df, ~df["split"].isin(SPLITS), f"unknown split (known: {list(SPLITS)}) in rows for", path)
    _bad_rows(df, df["image_id"].duplicated(keep=False), "duplicate image_id in rows for", path)
    df["path"] = [str(root / f) for f in df["file"]]
    if check_files:
        _bad_rows(df, ~df["path"].map(os.path.isfile), "image file(s) missing", path)
    per_patient = df.groupby("patient_id")["split"].nunique()
    leaked = per_patient[per_patient > 1].index
    if len(leaked):
        raise DataError(f"{path}: splits are not patient-disjoint; patient(s) in several splits: "
                        f"{', '.join(leaked[:5])}. Rebuild the split with `medadv data build`.")
    df["y"] = df["label"].map({c: i for i, c in enumerate(LABELS)}).astype(int)
    df["source"] = df["image_id"].str.split("-").str[0]
    return df


GRAYSCALE_MODES = ("L", "I;16", "I")
"""PIL modes the decoder reads: 8-bit ``L`` (what the builder writes) and 16-bit grayscale (``I;16``, or
``I`` as some Pillow versions and formats open it)."""

DECODE_MIN_SIDE, DECODE_MAX_SIDE = 32, 8192
"""An image with a side under 32 px or over 8192 px is not decoded (checked from the header, before any
pixel is read): nothing that small is a chest X-ray, nothing that large fits the course."""

MIN_PEAK_16BIT = 4096
"""A 16-bit image is read on the 0-65535 scale; one whose largest value is below 4096 (its values fit in
12 bits: 8-, 10- or 12-bit data stored without scaling) would decode at most 1/16 as bright as meant."""

_CORRUPT_FIX = "The file is corrupt or not an image; restore it from the dataset source or rebuild the dataset."


class ImageDecodeError(DataError):
    """An image file the decoder refuses.  ``problem`` is one line saying what is wrong and the fix
    (``medadv data check`` lists it after the file name); the message names the file."""

    def __init__(self, path, problem: str, message: str | None = None):
        self.path, self.problem = str(path), problem
        super().__init__(message or f"{path}: {problem}")


def _corrupt(path, problem: str) -> ImageDecodeError:
    return ImageDecodeError(path, problem, f"cannot read image {path}: {problem}. {_CORRUPT_FIX}")


def _check_mode(path, im: Image.Image) -> str:
    if im.mode not in GRAYSCALE_MODES:
        raise ImageDecodeError(path, f"mode {im.mode!r} ({len(im.getbands())} channels), expected a 1-channel "
                                     "grayscale image (8-bit 'L'): convert it with PIL's .convert('L') or rebuild "
                                     "the dataset with `medadv data build`")
    return im.mode


def decode_gray(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode one grayscale image and validate what was decoded.

    Returns ``(values, full_scale)``: ``values`` a 2-D integer array, ``values / full_scale`` the
    brightness in [0, 1] (``full_scale`` 255 for 8-bit ``L``, 65535 for 16-bit).  Raises
    :class:`ImageDecodeError` naming the file, when it is unreadable (missing, empty, truncated, not an
    image); its size is absurd (a side under :data:`DECODE_MIN_SIDE` or over :data:`DECODE_MAX_SIDE` px,
    read from the header before decoding); it is not 1-channel grayscale; or what it stores would silently
    decode to the wrong brightness or geometry: a 16-bit image whose values fit in 12 bits (below
    :data:`MIN_PEAK_16BIT`) or leave 0-65535, an 8-bit image with a transparent gray value (PNG ``tRNS``),
    an EXIF orientation other than upright.
    """
    try:
        nbytes = os.stat(path).st_size
    except OSError as exc:
        raise _corrupt(path, f"cannot read the file ({exc.strerror or exc})") from None
    if nbytes == 0:
        raise _corrupt(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            _check_mode(path, im)                       # from the header, before any pixel is read
            w, h = im.size
            if min(w, h) < DECODE_MIN_SIDE or max(w, h) > DECODE_MAX_SIDE:
                raise ImageDecodeError(path, f"implausible size {w}x{h} px (an image with a side under "
                                             f"{DECODE_MIN_SIDE} or over {DECODE_MAX_SIDE} px is not decoded): "
                                             "replace it with the original X-ray or rebuild the dataset "
                                             "with `medadv data build`")
            im.load()                                   # decodes every byte: truncation shows here
            mode = _check_mode(path, im)                # (a loader may change the mode while decoding)
            if mode == "L" and "transparency" in im.info:
                raise ImageDecodeError(path, f"8-bit grayscale with a transparent gray value "
                                             f"({im.info['transparency']!r}, a PNG tRNS chunk): those pixels "
                                             "would decode as that gray, not as transparent; save it without "
                                             "transparency (composited on black) or rebuild the dataset")
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (1, None):
                raise ImageDecodeError(path, f"EXIF orientation {orientation} (rotated or mirrored on display), "
                                             "which the decoder does not apply: save it upright without the tag "
                                             "(PIL's ImageOps.exif_transpose) or rebuild the dataset")
            values = np.asarray(im)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, f"implausible size ({exc})") from None
    except UnidentifiedImageError:
        raise _corrupt(path, f"not an image PIL can identify ({nbytes} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        kind = "truncated file" if "truncated" in text.lower() or "end of file" in text.lower() else "unreadable image"
        raise _corrupt(path, f"{kind} ({nbytes} bytes): {text}") from exc
    if values.ndim != 2:
        raise ImageDecodeError(path, f"decodes to an array of shape {values.shape}, not a 2-D grayscale image: "
                                     "convert it with PIL's .convert('L') or rebuild the dataset")
    if mode == "L":
        return values, 255.0
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > 65535:
        raise ImageDecodeError(path, f"values {lo}..{hi} outside the 16-bit range 0-65535 (mode {mode!r}): they "
                                     "would decode outside [0, 1]; save it as 8-bit 'L' or as 16-bit within 0-65535")
    if hi < MIN_PEAK_16BIT:
        raise ImageDecodeError(path, f"16-bit image whose values fit in {max(1, hi.bit_length())} bits (largest "
                                     f"{hi} of 65535): it would decode at most {hi / 65535:.1%} bright, probably "
                                     "lower-bit data stored without scaling; save it as 8-bit 'L' or scale it to "
                                     "0-65535")
    return values, 65535.0


def read_image(path: str | os.PathLike, image_size: int | None = None, crop_top: bool = False) -> np.ndarray:
    """Read one grayscale image as a float32 ``H×W`` array in [0, 1].

    ``crop_top`` removes the top sixth of the image first (COVIDx-style, where text
    labels often sit); ``image_size`` resizes to a square with bilinear antialiasing.
    The file is decoded and validated by :func:`decode_gray`: a corrupt file, one that is not
    single-channel, of an absurd size, or whose stored bit depth does not match its values raises
    :class:`ImageDecodeError` (a :class:`DataError`) naming it.
    """
    values, scale = decode_gray(path)
    arr = values.astype(np.float32) / scale
    if crop_top:
        arr = arr[arr.shape[0] // 6:, :]
    if image_size is not None and arr.shape != (image_size, image_size):
        img = Image.fromarray(arr, mode="F").resize((image_size, image_size), Image.BILINEAR, reducing_gap=None)
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return arr


class CXRDataset(Dataset):
    """A split of the chest X-ray dataset as a torch ``Dataset``.

    Yields ``(image, label)`` with ``image`` a float tensor ``1×image_size×image_size`` in
    [0, 1] and ``label`` an index into :data:`medadv_lib.LABELS`.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (or ``None`` for all images).
        image_size: side length after resizing.
        data_dir: dataset folder (default: see :func:`find_data_dir`).
        crop_top: drop the top sixth of each image first (COVIDx-style).
        augment: light random augmentation (for training only).
        cache: keep decoded images in memory after the first read.
    """

    def __init__(self, split: str | None = "train", image_size: int = 128, data_dir=None,
                 crop_top: bool = False, augment: bool = False, cache: bool = True,
                 metadata: pd.DataFrame | None = None):
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        meta = load_metadata(data_dir) if metadata is None else metadata
        self.meta = (meta if split is None else meta[meta["split"] == split]).reset_index(drop=True)
        self.split, self.image_size, self.crop_top, self.augment = split, image_size, crop_top, augment
        self.labels = self.meta["y"].to_numpy()
        self._cache: dict[int, torch.Tensor] = {} if cache else None

    def __len__(self) -> int:
        return len(self.meta)

    def load(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        t = torch.from_numpy(read_image(self.meta.at[i, "path"], self.image_size, self.crop_top))[None]
        if self._cache is not None:
            self._cache[i] = t
        return t

    def __getitem__(self, i: int):
        x = self.load(i)
        if self.augment:
            x = augment_batch(x[None])[0]
        return x, int(self.labels[i])

    def tensors(self, num_workers: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """All images stacked into ``N×1×H×W`` plus labels ``N`` (decoded in threads)."""
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            xs = list(pool.map(self.load, range(len(self))))
        x = torch.stack(xs) if xs else torch.empty(0, 1, self.image_size, self.image_size)
        return x, torch.tensor(self.labels, dtype=torch.long)


_SPLIT_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def stratified_indices(y: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """``limit`` indices drawn without replacement, class proportions kept (seeded), sorted."""
    y = np.asarray(y)
    if limit >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / counts.sum() * limit).astype(int)
    quota = np.maximum(quota, np.minimum(1, counts))
    while quota.sum() < limit:                       # hand out the remainder to the largest
        quota[np.argmax(counts - quota)] += 1
    while quota.sum() > limit:
        quota[np.argmax(quota)] -= 1
    picked = [rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def load_split(split: str, image_size: int = 128, data_dir=None, crop_top: bool = False,
               limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split into memory: ``x`` ``N×1×S×S`` float in [0, 1], ``y`` ``N`` long.

    ``limit`` takes a seeded, class-stratified subset.  Results are cached per process,
    so notebooks may call this freely.  A split without images raises :class:`DataError` naming
    it (nothing downstream can train on, evaluate or size a budget from zero images).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 image; got {limit}")
    root = find_data_dir(data_dir)
    key = (str(root), split, image_size, crop_top)
    if key not in _SPLIT_CACHE:
        ds = CXRDataset(split, image_size, root, crop_top, cache=False)
        if len(ds) == 0:
            raise DataError(empty_split_message(root, split))
        _SPLIT_CACHE[key] = ds.tensors()
    x, y = _SPLIT_CACHE[key]
    if limit is not None:
        idx = torch.from_numpy(stratified_indices(y.numpy(), limit, seed))
        return x[idx], y[idx]
    return x, y


def empty_split_message(root: Path, split: str) -> str:
    """The one message for a split without images (``load_split``, ``medadv data check``)."""
    return (f"{Path(root) / 'metadata.csv'}: the {split!r} split has no images; every split ({', '.join(SPLITS)}) "
            "needs images of each class. Fix the split column or rebuild the dataset with `medadv data build`.")


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, max_rotate: float = 7.0,
                  max_shift: float = 0.06, scale: tuple[float, float] = (0.92, 1.08),
                  contrast: float = 0.15, brightness: float = 0.08) -> torch.Tensor:
    """Light, batched augmentation for training: random affine (rotation, shift, zoom)
    and contrast/brightness jitter, all on the tensor's device, result clamped to [0, 1].
    No flips: the heart's side is anatomy, not noise.
    """
    n, dev = x.shape[0], x.device

    def u(lo, hi):
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev)

    ang = u(-max_rotate, max_rotate) * math.pi / 180
    s = u(*scale)
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, u(-max_shift, max_shift)], 1),
                         torch.stack([sin, cos, u(-max_shift, max_shift)], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = u(1 - contrast, 1 + contrast).view(-1, 1, 1, 1)
    b = u(-brightness, brightness).view(-1, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * c + mean + b).clamp(0, 1)


def class_weights(y, num_classes: int = len(LABELS)) -> torch.Tensor:
    """Inverse-frequency class weights (mean 1) for a class-balanced loss."""
    counts = torch.bincount(torch.as_tensor(y), minlength=num_classes).float().clamp(min=1)
    w = counts.sum() / (num_classes * counts)
    return w / w.mean()


def image_norm_stats(image_size: int, data_dir=None, crop_top: bool = False, split: str = "train") -> dict:
    """Mean per-image L∞ and L2 norm of a split at ``image_size`` (pixel units, [0,1]).

    Keys ``mean_norm_inf`` and ``mean_norm_2`` (``mean_norm_`` + the norm kind, ``"inf"`` or ``"2"``),
    plus ``n``, ``image_size``, ``split`` and ``crop_top``.  These are the units of the
    universal-perturbation budgets: ``eps = zeta * stats["mean_norm_inf"]`` (L∞) or
    ``zeta * stats["mean_norm_2"]`` (L2); :func:`medadv_lib.attacks.uap_budget` does this for a norm kind.
    """
    x, _ = load_split(split, image_size, data_dir, crop_top)
    flat = x.flatten(1).double()
    return {"mean_norm_inf": float(flat.abs().amax(1).mean()), "mean_norm_2": float(flat.norm(dim=1).mean()),
            "n": int(x.shape[0]), "image_size": int(image_size), "split": split, "crop_top": bool(crop_top)}
