"""Build the covid-cxr-mini chest X-ray set from local copies of its sources.

:func:`build_dataset` reads plain local checkouts (``git clone``) or extracted
GitHub archives of the six source repositories listed in
:mod:`medadv_lib.data.sources`, plus the NIH ``Data_Entry_2017_v2020.csv.gz``
table, applies the selection rules of the shared snapshot and writes::

    OUT/images/<label>/<image_id>.png   8-bit grayscale, image_size x image_size
    OUT/metadata.csv                    one row per image (METADATA_COLUMNS)
    OUT/SOURCES.md                      sources, counts, dropped images, rules
    OUT/build_summary.json              the summary returned by build_dataset

The rules (the facts of ``SOURCES.md``): labels per source; frontal views only
(PA, AP, AP Supine, AP erect; images whose source states no view are kept as
"frontal (visual check)" unless listed in :data:`VISUAL_EXCLUDE`); patients with
a known age below 18 dropped, and COVID-CXNet files with a "p" suffix
(paediatric); at most 600 normal and 600 pneumonia images; near-duplicates
across sources found with perceptual hashes and correlations, one kept per
cluster (earliest source), clusters with an excluded member or with
conflicting labels dropped whole; ``patient_id`` = ``<source>-<id>`` or
``<source>-imgNNNN``; a patient-disjoint 70/15/15 split stratified by (label,
source) with a fixed seed.

How a source directory is recognised (first rule that matches):

1. its folder name: ``owner+name`` (``hida6+covid-chestxray-dataset``), ``name``
   (``covid-chestxray-dataset``, a ``git clone``) or ``name-<commit>`` (an
   extracted GitHub archive, ``COVID-CXNet-3ade488b...``); case-insensitive;
2. its content: ``chest_xray_images/covid19/`` (COVID-CXNet), ``X-Ray Image
   DataSet/`` (muhammedtalo/COVID-19), ``data.csv`` + ``png/`` (Hannover),
   ``torchxrayvision/data/Data_Entry_2017_v2020.csv.gz`` (NIH table), or a
   ``metadata.csv`` whose header has ``folder`` and ``filename`` (ieee8023 copy),
   ``imagename`` (Actualmed), or ``patientid``, ``finding`` and ``view`` only
   (Figure1).

A folder that is not recognised itself but holds recognised source folders (a
download folder such as ``data/raw``) stands for those folders.  A mapping
``{key: dir}`` skips recognition; keys are the source keys
(``ieee mhh amed fig1 nih cxnet``) or ``owner/name``, and ``nih_meta`` (or
``mlmed/torchxrayvision``) for the NIH table (a file, or a folder holding it).
The NIH table may also be given as a file path in the list, or lie at the top
of the ``muhammedtalo/COVID-19`` folder.

The commit recorded per row is the checkout's ``.git`` HEAD, else the commit in
its folder name (``name-<commit>``), else the one pinned in ``sources.py``.
"""
from __future__ import annotations

import collections
import csv
import gzip
import io
import json
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from .sources import LABELS, NIH_METADATA, SOURCE_BY_KEY, SOURCES, RepoSource

# --------------------------------------------------------------------------- rules
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


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Checkout:
    """A local copy of one source repository.

    Attributes:
        source: the source it holds.
        root: its folder.
        commit: the commit recorded in ``metadata.csv``.
        commit_from: where ``commit`` came from (git HEAD, folder name, pinned).
    """

    source: RepoSource
    root: Path
    commit: str
    commit_from: str


@dataclass
class Inputs:
    """Resolved inputs of a build: checkouts by key and the NIH table."""

    checkouts: dict[str, Checkout] = field(default_factory=dict)
    nih_table: Path | None = None
    nih_table_commit: str = NIH_METADATA.commit
    nih_table_commit_from: str = "pinned in sources.py"
    missing: dict[str, str] = field(default_factory=dict)


_COMMIT_IN_NAME = re.compile(r"^(?P<name>.+)-(?P<commit>[0-9a-f]{7,40})$")


def _name_aliases() -> dict[str, str]:
    """Lower-cased folder names (``name``, ``owner+name``) -> key."""
    aliases = {}
    for item in (*SOURCES, NIH_METADATA):
        aliases[item.name.lower()] = item.key
        aliases[f"{item.owner}+{item.name}".lower()] = item.key
    return aliases


def _identify_by_name(dirname: str) -> tuple[str, str | None] | None:
    """``(key, commit from the name or None)`` for a recognised folder name."""
    aliases = _name_aliases()
    if dirname.lower() in aliases:
        return aliases[dirname.lower()], None
    match = _COMMIT_IN_NAME.match(dirname)
    if match and match["name"].lower() in aliases:
        return aliases[match["name"].lower()], match["commit"]
    return None


def _csv_header(path: Path) -> set[str]:
    """Column names of a CSV file (empty set if absent or unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            return {c.strip() for c in next(csv.reader(f), [])}
    except OSError:
        return set()


def _identify_by_content(root: Path) -> str | None:
    """Key of a source folder recognised by its marker files, or None."""
    if (root / "chest_xray_images" / "covid19").is_dir():
        return "cxnet"
    if (root / "X-Ray Image DataSet").is_dir():
        return "nih"
    if (root / NIH_METADATA.path).is_file() or (root / NIH_METADATA.filename).is_file():
        return NIH_METADATA.key
    if (root / "data.csv").is_file() and (root / "png").is_dir():
        return "mhh"
    header = _csv_header(root / "metadata.csv")
    if {"folder", "filename"} <= header:
        return "ieee"
    if "imagename" in header:
        return "amed"
    if {"patientid", "finding", "view"} <= header:
        return "fig1"
    return None


def identify_source_dir(path: Path) -> tuple[str, str | None]:
    """Recognise a source folder (or the NIH table file) by name, then by content.

    Returns:
        ``(key, commit)``: the source key (``ieee`` ... ``cxnet``, or ``nih_meta``) and
        the commit found in a ``name-<commit>`` folder name, else ``None``.

    Raises:
        DataBuildError: the path does not exist or is not recognised.
    """
    path = Path(path)
    if not path.exists():
        raise DataBuildError(f"source path does not exist: {path}")
    if path.is_file():
        if path.name.startswith("Data_Entry_2017"):
            return NIH_METADATA.key, None
        raise DataBuildError(f"not a source folder nor the NIH Data_Entry table: {path}")
    found = _identify_by_name(path.resolve().name)
    if found:
        return found
    key = _identify_by_content(path)
    if key:
        return key, None
    names = ", ".join(f"{s.owner}+{s.name}" for s in (*SOURCES, NIH_METADATA))
    raise DataBuildError(
        f"unrecognised source folder: {path} (name it after its repository: {names}, "
        "or 'name' / 'name-<commit>'; or pass a mapping key -> folder)")


def _git_dir(root: Path) -> Path | None:
    """The git directory of a checkout (``.git`` folder, or a ``gitdir:`` file)."""
    dotgit = root / ".git"
    if dotgit.is_file():
        text = dotgit.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            dotgit = (root / text[len("gitdir:"):].strip()).resolve()
    return dotgit if dotgit.is_dir() else None


def git_head(root: Path) -> str | None:
    """Commit of a checkout's HEAD read from its ``.git`` files (no ``git`` needed)."""
    gitdir = _git_dir(Path(root))
    if gitdir is None or not (gitdir / "HEAD").is_file():
        return None
    head = (gitdir / "HEAD").read_text(errors="replace").strip()
    if re.fullmatch(r"[0-9a-f]{40}", head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[len("ref:"):].strip()
    bases = [gitdir]
    if (gitdir / "commondir").is_file():            # linked worktree
        bases.append((gitdir / (gitdir / "commondir").read_text().strip()).resolve())
    for base in bases:
        if (base / ref).is_file():
            return (base / ref).read_text().strip()
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


def _commit_of(root: Path, name_commit: str | None, pinned: str) -> tuple[str, str]:
    """``(commit, where from)``: git HEAD, else the folder name, else the pinned one."""
    head = git_head(root)
    if head:
        return head, "git HEAD"
    if name_commit:
        if len(name_commit) < 40 and pinned.startswith(name_commit):
            return pinned, "folder name (abbreviated; pinned commit)"
        return name_commit, "folder name"
    return pinned, "pinned in sources.py"


def _normalise_key(key: str) -> str:
    """A mapping key as a source key (accepts ``owner/name`` too)."""
    if key in _ANY_SOURCE_KEYS:
        return key
    for item in (*SOURCES, NIH_METADATA):
        if key.lower() == item.repo.lower():
            return item.key
    raise DataBuildError(f"unknown source key {key!r} (known: {', '.join(_ANY_SOURCE_KEYS)})")


def _nih_table_in(path: Path) -> Path | None:
    """The NIH table given as a file, or found inside a folder."""
    if path.is_file():
        return path
    for candidate in (path / NIH_METADATA.path, path / NIH_METADATA.filename,
                      path / NIH_METADATA.filename.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _recognised_children(folder: Path) -> list[tuple[str, Path, str | None]]:
    """``(key, path, commit)`` of the recognised source folders (and NIH table) directly
    inside ``folder`` (a download folder such as ``data/raw``); others are ignored."""
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or not (child.is_dir() or child.name.startswith("Data_Entry")):
            continue
        try:
            key, commit = identify_source_dir(child)
        except DataBuildError:
            continue
        found.append((key, child, commit))
    return found


def resolve_inputs(sources: Mapping[str, Path] | Sequence[Path]) -> Inputs:
    """Match the given folders to sources; note (and warn about) the missing ones.

    Raises:
        DataBuildError: a folder that does not exist, is not recognised, or two
            folders for one source.
    """
    pairs: list[tuple[str, Path, str | None]] = []
    if isinstance(sources, Mapping):
        for key, path in sources.items():
            path = Path(path)
            if not path.exists():
                raise DataBuildError(f"source path does not exist: {path} (for {key!r})")
            key = _normalise_key(str(key))
            named = _identify_by_name(path.resolve().name) if path.is_dir() else None
            pairs.append((key, path, named[1] if named and named[0] == key else None))
    else:
        for path in map(Path, sources):
            try:
                key, commit = identify_source_dir(path)
            except DataBuildError:
                children = _recognised_children(path)
                if not children:
                    raise
                pairs += children
                continue
            pairs.append((key, path, commit))

    inputs = Inputs()
    seen: dict[str, Path] = {}
    for key, path, name_commit in pairs:
        if key in seen:
            raise DataBuildError(f"two folders for source {key!r}: {seen[key]} and {path}")
        seen[key] = path
        if key == NIH_METADATA.key:
            table = _nih_table_in(path)
            if table is None:
                raise DataBuildError(f"no {NIH_METADATA.filename} in {path}")
            inputs.nih_table = table
            root = path if path.is_dir() else path.parent
            inputs.nih_table_commit, inputs.nih_table_commit_from = _commit_of(
                root, name_commit, NIH_METADATA.commit)
            continue
        if not path.is_dir():
            raise DataBuildError(f"source {key!r} must be a folder: {path}")
        source = SOURCE_BY_KEY[key]
        commit, origin = _commit_of(path, name_commit, source.commit)
        inputs.checkouts[key] = Checkout(source, path, commit, origin)

    if inputs.nih_table is None and "nih" in inputs.checkouts:
        inputs.nih_table = _nih_table_in(inputs.checkouts["nih"].root)
    for source in SOURCES:
        if source.key not in inputs.checkouts:
            inputs.missing[source.key] = "not given"
    if "nih" in inputs.checkouts and inputs.nih_table is None:
        del inputs.checkouts["nih"]
        inputs.missing["nih"] = f"{NIH_METADATA.filename} ({NIH_METADATA.repo}) not given"
    return inputs


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """One image named by a source, before the image-level rules.

    A candidate with ``exclude`` set is not used, but its near-duplicates in other
    sources are dropped with it (the copy of a lateral view, of a child, ...).
    """

    source: str
    path: str
    label: str | None
    patient: str
    view: str
    age: str
    sex: str
    license: str = ""
    exclude: str | None = None


_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}


def make_candidate(source: str, path: str, label: str | None, patient: str, view: str,
                   age: str | None = "", sex: str | None = "", license: str = "",
                   exclude: str | None = None) -> Candidate:
    """A :class:`Candidate` with age, sex and patient id normalised and the age rule applied."""
    age = (age or "").strip()
    age = age if re.fullmatch(r"\d+(\.\d+)?", age) else ""
    if exclude is None and age and float(age) < MIN_AGE:
        exclude = f"age < {MIN_AGE}"
    patient = (patient or "").strip()
    return Candidate(source=source, path=path, label=label,
                     patient=f"{source}-{patient}" if patient else "", view=view, age=age,
                     sex=_SEX.get((sex or "").strip().lower(), ""), license=license.strip(),
                     exclude=exclude)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (``.csv`` or ``.csv.gz``) as dicts, BOM and stray spaces in names removed."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig", errors="replace")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({(k or "").strip(): (v or "") for k, v in row.items()})
    return rows


def list_files(root: Path, under: str) -> list[str]:
    """Files below ``root/under`` as sorted ``/``-separated paths relative to ``root``."""
    base = root / under
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(root).parts)


def _frontal(view: str) -> str | None:
    """The normalised frontal view, or None."""
    return FRONTAL_VIEWS.get(view.strip().upper())


def read_ieee(checkout: Checkout) -> list[Candidate]:
    """ieee8023 copy: ``metadata.csv`` rows of folder ``images`` (``todo`` rows skipped)."""
    out = []
    for row in read_csv_rows(checkout.root / "metadata.csv"):
        finding, view = row.get("finding", "").strip(), row.get("view", "").strip()
        if row.get("folder", "").strip() != "images" or finding == "todo":
            continue
        label, frontal = IEEE_FINDINGS.get(finding), _frontal(view)
        if row.get("modality", "").strip() != "X-ray":
            exclude = f"CT ({view})"
        elif not frontal:
            exclude = f'not frontal (view "{view}")'
        elif not label:
            exclude = f'finding "{finding}"'
        else:
            exclude = None
        out.append(make_candidate("ieee", "images/" + row["filename"].strip(), label,
                                  row.get("patientid", ""), frontal or view, row.get("age"),
                                  row.get("sex"), row.get("license", ""), exclude))
    return out


def read_mhh(checkout: Checkout) -> list[Candidate]:
    """Hannover: every ``data.csv`` row is a COVID-19 image ``png/<image_id>.png``."""
    out = []
    for row in read_csv_rows(checkout.root / "data.csv"):
        projection = row.get("projection", "").strip()
        frontal = _frontal(projection)
        exclude = None if frontal else f'not frontal (projection "{projection}")'
        out.append(make_candidate("mhh", f"png/{row['image_id'].strip()}.png", "COVID-19",
                                  row.get("patient_id", ""), frontal or projection,
                                  row.get("age"), row.get("sex"), exclude=exclude))
    return out


def _covidnet_candidate(source: str, row: Mapping[str, str], path: str) -> Candidate:
    """One Actualmed / Figure1 row (same metadata layout)."""
    finding, view = row.get("finding", "").strip(), row.get("view", "").strip()
    frontal = _frontal(view) or (VISUAL_CHECK_VIEW if not view else None)
    if finding not in COVIDNET_FINDINGS:
        exclude = "finding empty (inconclusive)" if not finding else f'finding "{finding}"'
    elif not frontal:
        exclude = f'not frontal (view "{view}")'
    else:
        exclude = None
    patient = re.sub(r"[a-z]$", "", row.get("patientid", "").strip())   # COVID-00003a -> COVID-00003
    return make_candidate(source, path, COVIDNET_FINDINGS.get(finding), patient,
                          frontal or view, row.get("age"), row.get("sex"), exclude=exclude)


def read_actualmed(checkout: Checkout) -> list[Candidate]:
    """Actualmed: ``metadata.csv`` rows, image ``images/<imagename>``."""
    return [_covidnet_candidate("amed", row, "images/" + row["imagename"].strip())
            for row in read_csv_rows(checkout.root / "metadata.csv")]


def read_figure1(checkout: Checkout) -> list[Candidate]:
    """Figure1: ``metadata.csv`` rows whose ``patientid`` names a file in ``images/``."""
    by_stem = {Path(p).stem: p for p in list_files(checkout.root, "images")}
    out = []
    for row in read_csv_rows(checkout.root / "metadata.csv"):
        path = by_stem.get(row.get("patientid", "").strip())
        if path is not None:
            out.append(_covidnet_candidate("fig1", row, path))
    return out


def read_nih_table(path: Path) -> dict[str, dict[str, str]]:
    """NIH ``Data_Entry_2017_v2020`` rows by ``Image Index``."""
    return {row["Image Index"].strip(): row for row in read_csv_rows(path)}


def read_nih(checkout: Checkout, table: Mapping[str, Mapping[str, str]]) -> list[Candidate]:
    """muhammedtalo/COVID-19: NIH images of ``No_findings`` / ``Pneumonia`` found in the table.

    ``No_findings`` images count as normal only if the NIH label is exactly "No Finding",
    ``Pneumonia`` images as pneumonia only if the NIH labels include "Pneumonia".
    """
    out = []
    for folder, label in NIH_FOLDERS:
        for path in list_files(checkout.root, f"X-Ray Image DataSet/{folder}"):
            entry = table.get(Path(path).name)
            if entry is None:
                continue
            findings = [f.strip() for f in entry.get("Finding Labels", "").split("|")]
            view = entry.get("View Position", "").strip()
            frontal = _frontal(view)
            if label == "normal" and findings != ["No Finding"]:
                exclude = f'NIH labels "{"|".join(findings)}" are not "No Finding"'
            elif label == "pneumonia" and "Pneumonia" not in findings:
                exclude = 'NIH labels lack "Pneumonia"'
            elif not frontal:
                exclude = f'not frontal (view "{view}")'
            else:
                exclude = None
            out.append(make_candidate("nih", path, label, entry.get("Patient ID", ""),
                                      frontal or view, entry.get("Patient Age"),
                                      entry.get("Patient Gender"), exclude=exclude))
    return out


def read_cxnet(checkout: Checkout) -> list[Candidate]:
    """COVID-CXNet: image files of ``chest_xray_images/covid19``, metadata matched by stem."""
    meta_path = checkout.root / "metadata.csv"
    rows = read_csv_rows(meta_path) if meta_path.is_file() else []
    meta = {Path(r.get("filename", "").strip()).stem.lower(): r for r in rows}
    out = []
    for path in list_files(checkout.root, "chest_xray_images/covid19"):
        if not path.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = Path(path).stem.lower()
        row = meta.get(stem, {})
        view = row.get("view", "").strip()
        frontal = _frontal(view) or (VISUAL_CHECK_VIEW if not view else None)
        if re.fullmatch(r"\d+p-?", stem):
            exclude = 'paediatric (file name suffix "p")'
        elif not frontal:
            exclude = f'not frontal (view "{view}")'
        else:
            exclude = None
        out.append(make_candidate("cxnet", path, "COVID-19", row.get("patient_id", ""),
                                  frontal or view, row.get("age"), row.get("sex"),
                                  exclude=exclude))
    return out


READERS: dict[str, Callable[[Checkout], list[Candidate]]] = {
    "ieee": read_ieee, "mhh": read_mhh, "amed": read_actualmed, "fig1": read_figure1,
    "cxnet": read_cxnet,
}
"""Reader per source key (``nih`` also needs the NIH table, see :func:`read_nih`)."""


def read_candidates(inputs: Inputs, log: collections.Counter) -> list[Candidate]:
    """All candidates of the present sources, in source order; counts them in ``log``."""
    table = read_nih_table(inputs.nih_table) if "nih" in inputs.checkouts else {}
    found: list[Candidate] = []
    for source in SOURCES:
        checkout = inputs.checkouts.get(source.key)
        if checkout is None:
            continue
        try:
            items = (read_nih(checkout, table) if source.key == "nih"
                     else READERS[source.key](checkout))
        except (OSError, KeyError) as exc:
            raise DataBuildError(f"cannot read the metadata of {source.key} in {checkout.root}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        log[(source.key, "read")] = len(items)
        found += items
    return found


# --------------------------------------------------------------------------- images
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


# --------------------------------------------------------------------------- near-duplicates
@dataclass
class SimilarPairs:
    """Image pairs ``i < j`` with hash distance ``dist <= DUP_MAX_DIST`` and their
    thumbnail (``low``) and high-pass (``high``) correlations."""

    i: np.ndarray
    j: np.ndarray
    dist: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def select(self, mask: np.ndarray) -> "SimilarPairs":
        """The pairs where ``mask`` is true."""
        return SimilarPairs(self.i[mask], self.j[mask], self.dist[mask], self.low[mask],
                            self.high[mask])


def find_similar_pairs(fp: Fingerprints, max_dist: int = DUP_MAX_DIST,
                       block: int = 512) -> SimilarPairs:
    """All pairs within ``max_dist`` (= max of aHash and dHash Hamming distances).

    Hamming distances come from matrix products of the 0/1 hash matrices, a block of
    rows at a time (memory ``block * n``); correlations only for the pairs found.
    """
    n = len(fp.ahash)
    a, d = fp.ahash.astype(np.float32), fp.dhash.astype(np.float32)
    ones_a, ones_d = a.sum(1), d.sum(1)
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        ham_a = ones_a[start:stop, None] + ones_a[None, :] - 2.0 * (a[start:stop] @ a.T)
        ham_d = ones_d[start:stop, None] + ones_d[None, :] - 2.0 * (d[start:stop] @ d.T)
        dist = np.rint(np.maximum(ham_a, ham_d)).astype(np.int32)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        rows, cols = np.nonzero((dist <= max_dist) & upper)
        found_i.append(rows + start)
        found_j.append(cols)
        found_d.append(dist[rows, cols])
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    dist = np.concatenate(found_d) if found_d else np.zeros(0, np.int32)
    low = np.einsum("pk,pk->p", fp.low[i], fp.low[j]) / max(fp.low.shape[1], 1)
    high = np.einsum("pk,pk->p", fp.high[i], fp.high[j]) / max(fp.high.shape[1], 1)
    return SimilarPairs(i.astype(np.int64), j.astype(np.int64), dist, low, high)


class DisjointSet:
    """Union-find over hashable nodes (path halving)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, node):
        """Representative of ``node``'s set."""
        parent = self.parent
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a, b) -> bool:
        """Merge the sets of ``a`` and ``b``; True if they were apart."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[rb] = ra
        return True


_RANK = {s.key: n for n, s in enumerate(SOURCES)}


def _order(cand: Candidate) -> tuple[int, str]:
    """Sort key: source order, then path."""
    return _RANK[cand.source], cand.path


@dataclass
class Survivor:
    """The image kept of a near-duplicate cluster, with its dropped copies."""

    index: int
    copies: list[int]


def resolve_duplicates(loaded: Sequence[LoadedImage], pairs: SimilarPairs,
                       log: collections.Counter) -> tuple[list[Survivor], list[list[Candidate]]]:
    """Cluster near-duplicates; keep the earliest source's image of each clean cluster.

    A cluster is dropped whole if a member is excluded by a rule or if its members
    carry different labels.  Returns the survivors (in source, path order) and the
    clusters dropped for conflicting labels.
    """
    dups = pairs.select(is_duplicate(pairs.dist, pairs.low, pairs.high))
    sets = DisjointSet()
    for a, b in zip(dups.i.tolist(), dups.j.tolist()):
        sets.union(a, b)
    clusters: dict[int, list[int]] = collections.defaultdict(list)
    for k in range(len(loaded)):
        clusters[sets.find(k)].append(k)

    survivors, conflicts = [], []
    for members in clusters.values():
        members.sort(key=lambda k: _order(loaded[k].candidate))
        cands = [loaded[k].candidate for k in members]
        for cand in cands:
            if cand.exclude is None and (cand.source, cand.path) in VISUAL_EXCLUDE:
                cand.exclude = "visual check: " + VISUAL_EXCLUDE[(cand.source, cand.path)]
        reasons = [c.exclude for c in cands if c.exclude]
        if reasons:
            for cand in cands:
                log[(cand.source, cand.exclude or
                     f"near-duplicate of an excluded image ({reasons[0]})")] += 1
            continue
        if len({c.label for c in cands}) > 1:
            conflicts.append(cands)
            for cand in cands:
                log[(cand.source, "near-duplicate cluster with conflicting labels")] += 1
            continue
        for cand in cands[1:]:
            log[(cand.source, "near-duplicate of a kept image")] += 1
        survivors.append(Survivor(members[0], members[1:]))
    survivors.sort(key=lambda s: _order(loaded[s.index].candidate))
    return survivors, conflicts


# --------------------------------------------------------------------------- ids and split
@dataclass
class Selected:
    """An image of the dataset."""

    index: int
    candidate: Candidate
    image_id: str
    patient_id: str
    has_patient: bool
    copy_patients: list[str]
    split: str = ""


def select_and_name(survivors: Sequence[Survivor], loaded: Sequence[LoadedImage],
                    log: collections.Counter) -> list[Selected]:
    """Apply the label caps and give ids ``<source>-NNNN`` (numbered per source)."""
    per_label: collections.Counter = collections.Counter()
    per_source: collections.Counter = collections.Counter()
    chosen = []
    for survivor in survivors:
        cand = loaded[survivor.index].candidate
        cap = LABEL_CAPS[cand.label]
        if cap is not None and per_label[cand.label] >= cap:
            log[(cand.source, f"over the cap of {cap} {cand.label} images")] += 1
            continue
        per_label[cand.label] += 1
        per_source[cand.source] += 1
        number = per_source[cand.source]
        copies = [loaded[k].candidate.patient for k in survivor.copies]
        chosen.append(Selected(
            index=survivor.index, candidate=cand, image_id=f"{cand.source}-{number:04d}",
            patient_id=cand.patient or f"{cand.source}-img{number:04d}",
            has_patient=bool(cand.patient), copy_patients=[p for p in copies if p]))
    return chosen


def group_patients(chosen: Sequence[Selected], pairs: SimilarPairs) -> tuple[dict[str, str], int]:
    """Split groups: ``image_id -> group`` (the group's smallest image id) and the
    number of similarity links made.

    Patient ids are merged across near-duplicate copies of one picture, and an image
    without a source patient id joins a same-label image with thumbnail correlation
    >= 0.93 (hash distance <= 40).
    """
    sets = DisjointSet()
    for sel in chosen:
        sets.union(("image", sel.image_id), ("patient", sel.patient_id))
        for patient in sel.copy_patients:
            sets.union(("image", sel.image_id), ("patient", patient))
    by_index = {sel.index: sel for sel in chosen}
    near = pairs.select(maybe_same_patient(pairs.dist, pairs.low))
    links = 0
    for a, b in zip(near.i.tolist(), near.j.tolist()):
        sa, sb = by_index.get(a), by_index.get(b)
        if (sa is None or sb is None or (sa.has_patient and sb.has_patient)
                or sa.candidate.label != sb.candidate.label):
            continue
        links += sets.union(("image", sa.image_id), ("image", sb.image_id))
    smallest: dict = {}
    for sel in chosen:
        root = sets.find(("image", sel.image_id))
        smallest[root] = min(smallest.get(root, sel.image_id), sel.image_id)
    return {sel.image_id: smallest[sets.find(("image", sel.image_id))] for sel in chosen}, links


def assign_splits(chosen: Sequence[Selected], groups: Mapping[str, str], seed: int) -> None:
    """Patient-group-disjoint split, stratified by (label, source), in place.

    Each group belongs to the stratum most of its images are in.  Per stratum (in
    sorted order) the groups are shuffled with one ``random.Random(seed)``, stably
    sorted largest first, and each goes to the split furthest below its share.
    """
    members: dict[str, list[Selected]] = collections.defaultdict(list)
    for sel in chosen:
        members[groups[sel.image_id]].append(sel)
    strata: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for group in sorted(members):
        counts = collections.Counter((m.candidate.label, m.candidate.source) for m in members[group])
        strata[counts.most_common(1)[0][0]].append(group)
    rng = random.Random(seed)
    for stratum in sorted(strata):
        order = strata[stratum]
        rng.shuffle(order)
        order.sort(key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in order)
        filled: collections.Counter = collections.Counter()
        for group in order:
            name = max(SPLIT_SHARES, key=lambda s: s[1] * total - filled[s[0]])[0]
            filled[name] += len(members[group])
            for sel in members[group]:
                sel.split = name


# --------------------------------------------------------------------------- output
def metadata_rows(chosen: Sequence[Selected], inputs: Inputs) -> list[dict[str, str]]:
    """The ``metadata.csv`` rows."""
    rows = []
    for sel in chosen:
        cand = sel.candidate
        checkout = inputs.checkouts[cand.source]
        rows.append({
            "image_id": sel.image_id, "file": f"images/{cand.label}/{sel.image_id}.png",
            "label": cand.label, "patient_id": sel.patient_id, "split": sel.split,
            "source_repo": checkout.source.repo, "source_commit": checkout.commit,
            "source_path": cand.path, "view": cand.view, "age": cand.age, "sex": cand.sex,
            "license": cand.license or checkout.source.default_license,
        })
    return rows


def write_images(folder: Path, chosen: Sequence[Selected], loaded: Sequence[LoadedImage],
                 rows: Sequence[Mapping[str, str]]) -> None:
    """Save every image as an optimised 8-bit PNG under ``folder``."""
    for label in LABELS:
        (folder / "images" / label).mkdir(parents=True, exist_ok=True)
    for sel, row in zip(chosen, rows):
        loaded[sel.index].image.save(folder / row["file"], optimize=True)


def write_metadata(folder: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write ``metadata.csv``."""
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_summary(rows: Sequence[Mapping[str, str]], inputs: Inputs, log: collections.Counter,
                 conflicts: Sequence[Sequence[Candidate]], links: int, out: Path, seed: int,
                 image_size: int, max_file_mib: float | None) -> dict:
    """The JSON-ready summary of a build (also written to ``build_summary.json``)."""
    splits = [name for name, _ in SPLIT_SHARES]
    counts = {split: {label: 0 for label in LABELS} for split in splits}
    by_source: dict[str, dict[str, dict[str, int]]] = {}
    key_of = {s.repo: s.key for s in SOURCES}
    for row in rows:
        counts[row["split"]][row["label"]] += 1
        per = by_source.setdefault(key_of[row["source_repo"]], {})
        per.setdefault(row["label"], {s: 0 for s in splits})[row["split"]] += 1
    dropped: dict[str, dict[str, int]] = {}
    read = {}
    for (source, reason), n in sorted(log.items()):
        if reason == "read":
            read[source] = n
        else:
            dropped.setdefault(source, {})[reason] = n
    return {
        "out": str(out), "images": len(rows),
        "patients": len({r["patient_id"] for r in rows}),
        "counts": counts,
        "counts_by_label": {label: sum(counts[s][label] for s in splits) for label in LABELS},
        "counts_by_split": {s: sum(counts[s].values()) for s in splits},
        "counts_by_source": by_source,
        "read": read, "dropped": dropped,
        "conflicting_clusters": [[f"{c.source}:{c.path}" for c in cl] for cl in conflicts],
        "patient_links": links,
        "missing_sources": dict(inputs.missing),
        "sources": {k: {"repo": c.source.repo, "commit": c.commit, "commit_from": c.commit_from,
                        "pinned": c.source.commit, "dir": str(c.root)}
                    for k, c in inputs.checkouts.items()},
        "nih_metadata": None if inputs.nih_table is None else {
            "repo": NIH_METADATA.repo, "path": NIH_METADATA.path, "file": str(inputs.nih_table),
            "commit": inputs.nih_table_commit, "commit_from": inputs.nih_table_commit_from},
        "seed": seed, "image_size": image_size, "max_file_mib": max_file_mib,
    }


def _md_table(header: Sequence[str], body: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in body]


_RULES_TEXT = """## Rules applied

- Labels: ieee8023 `finding` COVID-19 (also "COVID-19, ARDS") -> COVID-19; Pneumonia, Bacterial,
  Streptococcus, Klebsiella, Legionella, E.Coli, Mycoplasma Bacterial Pneumonia, Chlamydophila,
  Pneumocystis, SARS, Influenza, Varicella -> pneumonia; "No Finding", ARDS, Lipoid, CT and `todo`
  rows not used. Hannover: all COVID-19. Actualmed / Figure1: COVID-19, "No finding" -> normal,
  Pneumonia; empty finding (inconclusive) not used. muhammedtalo/COVID-19 (NIH ChestX-ray8):
  `No_findings` only if the NIH label is exactly "No Finding", `Pneumonia` only if the NIH labels
  include "Pneumonia"; its `Covid-19` folder is not read. COVID-CXNet `chest_xray_images/covid19`:
  COVID-19.
- Views: PA, AP, AP Supine, AP erect where the source states a view; images without a stated view
  are kept as "frontal (visual check)" (checked by eye on the snapshot; failures excluded).
- Known age below {min_age} not used; COVID-CXNet files with a "p" suffix (paediatric) not used.
- Caps per label: {caps}.
- Near-duplicates: on 256x256 images, d = max(16x16 aHash, 16x16 dHash Hamming distance);
  duplicates if d <= 20, or d <= 40 and (80x80 high-pass correlation >= 0.60 or 32x32
  thumbnail correlation >= 0.965). One image kept per cluster, from the earliest source in the
  table; clusters with an excluded member or conflicting labels dropped whole.
- `patient_id` = `<source>-<id>`, or `<source>-imgNNNN` where the source has none. Split groups
  merge patient ids across copies of one picture and link an image without patient id to a
  same-label image with thumbnail correlation >= 0.93 (d <= 40) ({links} links).
- Split {split}, stratified by (label, source), patient-disjoint, seed {seed}.
- Preprocessing: 8-bit grayscale (EXIF orientation, alpha on black, 16-bit min-max), whole image
  resized to {size}x{size} with Pillow LANCZOS (no crop), optimised PNG.
"""


def sources_markdown(summary: Mapping) -> str:
    """The ``SOURCES.md`` build report."""
    splits = [name for name, _ in SPLIT_SHARES]
    by_source = summary["counts_by_source"]
    md = ["# covid-cxr-mini: sources and build report", "",
          f"{summary['images']} frontal chest X-rays, 8-bit grayscale PNG, "
          f"{summary['image_size']}x{summary['image_size']}, built by "
          f"`medadv_lib.data.build` (seed {summary['seed']}, max_file_mib "
          f"{summary['max_file_mib']}).", "", "## Sources", ""]
    body = []
    for source in SOURCES:
        info = summary["sources"].get(source.key)
        commit = f"`{info['commit']}` ({info['commit_from']})" if info else "missing"
        body.append([source.key, f"`{source.repo}`", commit,
                     *(sum(by_source.get(source.key, {}).get(l, {}).values()) for l in LABELS),
                     source.license])
    md += _md_table(["key", "repository", "commit", *LABELS, "license / terms"], body) + [""]
    meta = summary["nih_metadata"]
    md.append(f"Metadata only: `{NIH_METADATA.repo}` file `{NIH_METADATA.path}`, commit "
              + (f"`{meta['commit']}` ({meta['commit_from']})" if meta else "missing")
              + f"; {NIH_METADATA.license}.")
    md.append("")
    if summary["missing_sources"]:
        md += ["**Missing sources** (built without them):", ""]
        md += [f"- `{k}` ({SOURCE_BY_KEY[k].repo}): {why}"
               for k, why in summary["missing_sources"].items()] + [""]
    md += ["## Counts", ""]
    md += _md_table(["label", *splits, "total"],
                    [[l, *(summary["counts"][s][l] for s in splits), summary["counts_by_label"][l]]
                     for l in LABELS]
                    + [["all", *(summary["counts_by_split"][s] for s in splits), summary["images"]]])
    md += [""] + _md_table(["source", "label", *splits, "total"],
                           [[k, l, *(v[s] for s in splits), sum(v.values())]
                            for k in (s.key for s in SOURCES) for l, v in by_source.get(k, {}).items()])
    md += ["", f"Patients (`patient_id`): {summary['patients']}.", "", "## Dropped", ""]
    md += _md_table(["source", "reason", "images"],
                    [[k, why, n] for k, reasons in summary["dropped"].items()
                     for why, n in reasons.items()])
    md += ["", "Images read per source (before the rules): "
           + ", ".join(f"{k} {n}" for k, n in summary["read"].items()) + ".", ""]
    if summary["conflicting_clusters"]:
        md += ["Near-duplicate clusters with conflicting labels (dropped):", ""]
        md += ["- " + "; ".join(f"`{m}`" for m in cl) for cl in summary["conflicting_clusters"]]
        md.append("")
    md.append(_RULES_TEXT.format(
        min_age=MIN_AGE, links=summary["patient_links"], seed=summary["seed"],
        size=summary["image_size"],
        caps=", ".join(f"{l} {LABEL_CAPS[l] or 'none'}" for l in LABELS),
        split=" / ".join(f"{name} {round(share * 100)}%" for name, share in SPLIT_SHARES)))
    if summary["max_file_mib"] is not None:
        md.append(f"Files of {summary['max_file_mib']:g} MiB or more were skipped "
                  "(`max_file_mib`), as they were absent from the shared snapshot.\n")
    return "\n".join(md)


def _check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a dataset build."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "metadata.csv").is_file())):
        raise DataBuildError(f"output {out} exists and is not a dataset folder "
                             "(no metadata.csv); choose another --out or remove it")


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished build ``new`` to ``out``, replacing an older build there."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _reporter(enabled: bool) -> Callable[[str], None]:
    """A progress printer (to stderr) or a no-op."""
    def say(message: str) -> None:
        if enabled:
            print(f"[medadv data build] {message}", file=sys.stderr, flush=True)
    return say


# --------------------------------------------------------------------------- entry point
def build_dataset(sources: Mapping[str, Path] | Sequence[Path], out: Path, seed: int = 1234,
                  image_size: int = 256, max_file_mib: float | None = None,
                  progress: bool = True) -> dict:
    """Build covid-cxr-mini from local source folders into ``out``.

    Args:
        sources: folders of the source repositories (checkouts or extracted archives)
            and the NIH table: a list recognised by name or content, or a mapping
            ``key -> path`` (see the module docstring).  Missing sources are
            skipped with a :class:`MissingSourceWarning` and listed in the report.
        out: output folder; built in a temporary folder beside it and renamed at the
            end, so a failed build leaves ``out`` as it was.  An existing ``out`` is
            replaced only if it is empty or holds a ``metadata.csv``.
        seed: seed of the split.
        image_size: side of the square output images (the shared snapshot: 256).
        max_file_mib: skip source files of this size or more; ``4`` reproduces the
            shared snapshot (files of 4 MiB or more were absent from it).
        progress: print progress to stderr.

    Returns:
        The summary: ``images``, ``patients``, ``counts`` (split -> label -> n),
        ``counts_by_label``, ``counts_by_split``, ``counts_by_source``, ``read``,
        ``dropped`` (source -> reason -> n), ``missing_sources``, ``sources``
        (commit used per source), ``nih_metadata``, ``seconds`` and the parameters.

    Raises:
        DataBuildError: unrecognised or non-existent source folder, no usable
            source, or an ``out`` that is not a dataset folder.
    """
    started = time.monotonic()
    say = _reporter(progress)
    out = Path(out)
    if image_size < 8:
        raise DataBuildError(f"image_size must be at least 8, not {image_size}")
    _check_out_dir(out)
    inputs = resolve_inputs(sources)
    for key, why in inputs.missing.items():
        warnings.warn(f"source {key} ({SOURCE_BY_KEY[key].repo}) missing: {why}; "
                      "building without it", MissingSourceWarning, stacklevel=2)
    for checkout in inputs.checkouts.values():
        if checkout.commit != checkout.source.commit:
            warnings.warn(f"{checkout.source.repo} is at {checkout.commit}, not the pinned "
                          f"{checkout.source.commit}; the build will differ from the snapshot",
                          stacklevel=2)
    if not inputs.checkouts:
        raise DataBuildError("no usable source folder given; nothing to build")

    log: collections.Counter = collections.Counter()
    say("reading metadata of " + ", ".join(inputs.checkouts))
    candidates = read_candidates(inputs, log)
    say(f"{len(candidates)} candidate images; decoding")
    loaded, fps = load_images(candidates, inputs, image_size, max_file_mib, log, say)
    say(f"searching near-duplicates among {len(loaded)} images")
    pairs = find_similar_pairs(fps)
    survivors, conflicts = resolve_duplicates(loaded, pairs, log)
    chosen = select_and_name(survivors, loaded, log)
    groups, links = group_patients(chosen, pairs)
    assign_splits(chosen, groups, seed)
    rows = metadata_rows(chosen, inputs)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        say(f"writing {len(rows)} images")
        write_images(staging, chosen, loaded, rows)
        write_metadata(staging, rows)
        summary = make_summary(rows, inputs, log, conflicts, links, out, seed, image_size,
                               max_file_mib)
        (staging / "SOURCES.md").write_text(sources_markdown(summary), encoding="utf-8")
        (staging / "build_summary.json").write_text(json.dumps(summary, indent=1) + "\n",
                                                    encoding="utf-8")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary["seconds"] = round(time.monotonic() - started, 2)
    say(f"wrote {len(rows)} images to {out} in {summary['seconds']:.1f} s")
    return summary

