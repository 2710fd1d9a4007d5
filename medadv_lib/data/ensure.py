"""Make sure the course's dataset is there: find it, or download and build it (``make tutorial``).

:func:`ensure_dataset` is the data step of ``make tutorial`` (the runner,
``python -m medadv_lib.course.runner``, calls it before the first notebook) and of
``medadv data ensure``:

* the dataset is found (:func:`medadv_lib.data.find_data_dir`: ``--data``, ``$MEDADV_DATA``,
  ``data/covid-cxr-mini``, ``../shared/data/covid-cxr-mini``): nothing else happens, no network;
* it is missing and ``$MEDADV_OFFLINE`` is set (``1``, ``true``, ``yes``): :class:`DataError`
  with the usual "no dataset found" message, on one line, saying that nothing was downloaded;
* it is missing: it says what it will fetch (the seven pinned sources, the approximate size,
  where the archives and the dataset will go), then runs
  :func:`medadv_lib.data.download.download_and_build` with ``max_file_mib=4`` (which reproduces the
  shared snapshot): progress bars, SHA-256 checks, resumable partial downloads, and a dataset
  folder that appears only when complete (it is built beside its place and renamed).  Run it
  again after an interruption: finished sources are kept, a partial download resumes.

Where things go: the dataset to the folder named by ``data_dir`` or ``$MEDADV_DATA`` if given,
else ``data/covid-cxr-mini`` in the project; the source archives, extracted, to ``raw/`` beside
the dataset folder (``data/raw`` in the project; kept for a rebuild, delete it to free the space).
Addresses: ``url_template``, else ``$MEDADV_SOURCE_URL`` (a mirror, or a test server), else GitHub
(see :mod:`medadv_lib.data.sources`).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from .build import DataBuildError
from .build.output import _check_out_dir
from .dataset import DATASET_NAME, ENV_VAR, PROJECT_ROOT, DataError, find_data_dir
from .download import DownloadError, _already_there, download_and_build, load_checksums, resolve_url
from .sources import MANIFEST

OFFLINE_ENV = "MEDADV_OFFLINE"
"""Set to 1 to forbid downloading: a missing dataset is an error instead."""

APPROX_DOWNLOAD = "about 2.5 GB"
"""Estimated size of the seven source archives together (Actualmed's full-size PNGs alone exceed
700 MiB; the others are estimates from their contents, not measured: the archives are generated
by GitHub and their size is not published).  The first download records each exact size in
``checksums.json``, and later announcements use those."""

DATASET_SIZE = "73 MB"
"""Size of the built dataset (2326 PNGs at 256x256)."""

MAX_FILE_MIB = 4.0
"""Files of 4 MiB or more are skipped, as they were absent from the shared snapshot: this
reproduces it (2326 images; see ``BUILDING.md``)."""

STALE_STAGING_SECONDS = 3600
"""A build staging folder untouched this long was left by a killed build and is removed."""


def offline() -> bool:
    """True when ``$MEDADV_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def default_target(data_dir: str | os.PathLike | None = None) -> Path:
    """Where a missing dataset is built: ``data_dir``, else ``$MEDADV_DATA``, else
    ``data/covid-cxr-mini`` in the project (in the working directory for an installed package)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return base / "data" / DATASET_NAME


def default_sources_dir(target: Path) -> Path:
    """The download folder for ``target``: ``raw/`` beside it (``data/raw`` in the project)."""
    return Path(target).parent / "raw"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _shown(path: Path) -> str:
    """A path relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plan(target: Path, sources_dir: Path, url_template: str | None = None) -> list[str]:
    """The announcement: what will be fetched, from where, how much, and where it goes."""
    try:
        recorded = load_checksums(sources_dir)
    except DownloadError:                              # a broken checksums.json: the download reports it
        recorded = {}
    lines = [f"{DATASET_NAME} not found; building it from its public sources (pinned commits, "
             f"{APPROX_DOWNLOAD} to download):"]
    exact = 0
    for item in MANIFEST:
        entry = recorded.get(item.ident, {})
        expected = item.sha256 or entry.get("sha256")
        if _already_there(sources_dir / item.dirname, expected):
            size = "already downloaded"
        elif entry.get("bytes"):
            size = f"{entry['bytes'] / 2 ** 20:.0f} MiB"
            exact += entry["bytes"]
        else:
            size = "size unknown"
        lines.append(f"  {item.repo}@{item.commit[:7]} ({size}): {resolve_url(item, None, url_template)}")
    lines += [f"archives (resumable if interrupted; kept for a rebuild, delete the folder to free the space) "
              f"-> {_shown(sources_dir)}/",
              f"dataset (~{DATASET_SIZE}, files of {MAX_FILE_MIB:g} MiB or more skipped as in the shared "
              f"snapshot) -> {_shown(target)}/",
              f"to use a copy you already have instead, set {ENV_VAR}=/path/to/{DATASET_NAME}; "
              f"{OFFLINE_ENV}=1 never downloads"]
    return lines


def remove_stale_staging(target: Path, max_age: float = STALE_STAGING_SECONDS) -> list[Path]:
    """Remove the staging folders of builds that were killed (``.<name>.building-*``, ``.<name>.old-*``
    beside ``target``, untouched for ``max_age`` seconds)."""
    removed = []
    now = time.time()
    for pattern in (f".{target.name}.building-*", f".{target.name}.old-*"):
        for path in Path(target).parent.glob(pattern):
            try:
                if path.is_dir() and now - path.stat().st_mtime > max_age:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                continue
    return removed


def ensure_dataset(data_dir: str | os.PathLike | None = None, *, sources_dir: str | os.PathLike | None = None,
                   url_template: str | None = None, progress: bool = True, timeout: float = 60,
                   say: Callable[[str], None] | None = None) -> dict:
    """Return where the dataset is, downloading and building it first if it is missing.

    Args:
        data_dir: the dataset folder (default: ``$MEDADV_DATA`` and the usual places, see
            :func:`medadv_lib.data.find_data_dir`; a missing one is built at :func:`default_target`).
        sources_dir: download folder (default: ``raw/`` beside the dataset folder).
        url_template: source address template (default ``$MEDADV_SOURCE_URL``, else GitHub).
        progress: progress bars and messages on stderr.
        timeout: socket timeout of each download, seconds.
        say: where the announcement goes (default: stderr).

    Returns:
        ``{"data_dir": str, "action": "present" | "built", ...}``; after a build also ``images``,
        ``counts_by_split``, ``sources_dir``, ``seconds``.

    Raises:
        DataError: the dataset is missing and ``$MEDADV_OFFLINE`` is set (one line, nothing done),
            or the build did not produce a dataset where it is looked for.
        medadv_lib.data.build.DataBuildError: a download, checksum or build failure (partial
            downloads are kept for the next try; no dataset folder is left half-built).
        ValueError: an unknown field in the URL template (before anything is downloaded).
    """
    try:
        return {"data_dir": str(find_data_dir(data_dir)), "action": "present"}
    except DataError as exc:
        missing = _one_line(str(exc))
    if offline():
        raise DataError(f"{missing} ({OFFLINE_ENV} is set, so nothing was downloaded: unset it to download "
                        f"and build the dataset from its public sources, {APPROX_DOWNLOAD})")

    started = time.monotonic()
    target = default_target(data_dir)
    sources = Path(sources_dir).expanduser() if sources_dir is not None else default_sources_dir(target)
    try:
        _check_out_dir(target)                              # never replace a folder that is not a dataset
    except DataBuildError:
        raise DataError(f"{target} exists and is not a {DATASET_NAME} folder (no metadata.csv), so the dataset "
                        f"cannot be built there: point {ENV_VAR} (or --data) at the dataset, or at a new or "
                        "empty folder to build it there") from None
    for item in MANIFEST:                                   # a bad URL template fails before any download
        resolve_url(item, None, url_template)
    if say is None:
        def say(line: str) -> None:
            print(f"[medadv data ensure] {line}", file=sys.stderr, flush=True)
    for line in plan(target, sources, url_template):
        say(line)
    remove_stale_staging(target)
    summary = download_and_build(sources, target, max_file_mib=MAX_FILE_MIB, progress=progress,
                                 timeout=timeout, url_template=url_template)
    try:
        found = find_data_dir(data_dir)
    except DataError as exc:                                # pragma: no cover - target is always searched
        raise DataError(f"built {target} but the dataset is not found there: {_one_line(str(exc))}") from None
    say(f"{summary['images']} images ready in {_shown(found)}/")
    return {"data_dir": str(found), "action": "built", "images": summary["images"],
            "counts_by_split": summary["counts_by_split"], "sources_dir": str(sources),
            "seconds": round(time.monotonic() - started, 1)}
