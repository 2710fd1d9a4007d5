"""Download the pinned sources of covid-cxr-mini, verify them and extract them.

:func:`download_sources` fetches every item of the manifest (by default the six
repositories of :data:`medadv_lib.data.sources.SOURCES` as ``.tar.gz`` archives of
their pinned commit, and the NIH ``Data_Entry_2017_v2020.csv.gz`` file) over
HTTPS with :mod:`urllib`, streaming each to a temporary file while computing its
SHA-256, then extracts it to ``dest/<name>-<commit>/`` (the folder name that
:func:`medadv_lib.data.build.build_dataset` recognises).

Checksum policy:

* a manifest item with a ``sha256`` is verified against it; on a mismatch the
  download is deleted and :class:`ChecksumError` is raised;
* an item without one (the default manifest: the digests could not be computed
  where it was written) is trusted on first use: its digest is recorded in
  ``dest/checksums.json``, and every later download of the same item
  (``owner/name@commit``) must match that record.  Delete the entry to trust a
  new download again (GitHub has regenerated archives in the past).

An item already extracted with a matching recorded digest is not downloaded again.

Addresses: ``base_urls`` (``key -> URL``) wins, then the ``url_template``
argument, then the ``MEDADV_SOURCE_URL`` environment variable, then GitHub
(see :mod:`medadv_lib.data.sources` for the template fields).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Sequence

from .build import DataBuildError, build_dataset
from .sources import MANIFEST, ManifestItem

CHECKSUMS_FILE = "checksums.json"
"""Trust-on-first-use digests, in the download folder."""

MARKER_FILE = ".medadv-download.json"
"""Written into each extracted folder: what it came from and the digest verified."""

_CHUNK = 1 << 20


class DownloadError(DataBuildError):
    """A download that failed (network, HTTP status, bad archive)."""


class ChecksumError(DownloadError):
    """A download whose SHA-256 is not the expected one (the file was deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive with a member that would land outside the extraction folder."""


def _reporter(enabled: bool) -> Callable[[str], None]:
    """A progress printer (to stderr) or a no-op."""
    def say(message: str) -> None:
        if enabled:
            print(f"[medadv data download] {message}", file=sys.stderr, flush=True)
    return say


def load_checksums(dest: Path) -> dict[str, dict]:
    """The recorded digests of ``dest/checksums.json`` (empty if none)."""
    path = Path(dest) / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DownloadError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def _write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (umask permissions, and what an
    interrupted write left is cleaned up: :func:`medadv_lib.runtime.atomic_path`)."""
    from ..runtime import atomic_write_text
    atomic_write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", path)


def resolve_url(item: ManifestItem, base_urls: Mapping[str, str] | None = None,
                url_template: str | None = None) -> str:
    """Address of ``item``: ``base_urls[item.key]``, else the template (argument,
    ``$MEDADV_SOURCE_URL``, GitHub default)."""
    if base_urls and item.key in base_urls:
        return base_urls[item.key]
    return item.url(url_template)


def fetch(url: str, folder: Path, timeout: float, say: Callable[[str], None]) -> tuple[Path, str, int]:
    """Stream ``url`` to a temporary file in ``folder``.

    Returns:
        ``(path, sha256 hex digest, size in bytes)``.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    digest, size, last = hashlib.sha256(), 0, time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "medadv-data-download"})
    try:
        with os.fdopen(fd, "wb") as sink, urllib.request.urlopen(request, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                sink.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if time.monotonic() - last > 5:
                    say(f"  {size / 2 ** 20:.0f} MiB")
                    last = time.monotonic()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"download failed: {url}: {exc}") from exc
    return tmp, digest.hexdigest(), size


def _safe_members(archive: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """Members to extract; raises :class:`UnsafeArchiveError` on path traversal."""
    root = target.resolve()
    members = []
    for member in archive.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or (target / name).resolve() != root / name:
            raise UnsafeArchiveError(f"archive member escapes the target folder: {member.name!r}")
        if member.issym() or member.islnk():
            link = PurePosixPath(member.linkname)
            base = name.parent if member.issym() else PurePosixPath()
            resolved = (root / base / link).resolve()
            if link.is_absolute() or not resolved.is_relative_to(root):
                raise UnsafeArchiveError(
                    f"archive link escapes the target folder: {member.name!r} -> {member.linkname!r}")
        elif not (member.isfile() or member.isdir()):
            continue                        # devices, fifos: never needed
        members.append(member)
    return members


def extract_archive(archive_path: Path, into: Path) -> Path:
    """Extract a ``.tar.gz`` safely into the new folder ``into``.

    A GitHub archive has one top folder; its content becomes ``into``.
    """
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=into.parent))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                members = _safe_members(archive, work)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(work, members=members, filter="data")
                else:                        # pragma: no cover - Python < 3.11.4
                    archive.extractall(work, members=members)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DownloadError(f"cannot extract {archive_path.name}: {exc}") from exc
        entries = list(work.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else work
        if into.exists():
            shutil.rmtree(into)
        top.rename(into)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return into


def _store_file(file_path: Path, item: ManifestItem, into: Path) -> Path:
    """Place a single downloaded file at ``into/<its path in the repository>``."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=into.parent))
    target = staging / item.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(file_path), target)
    if into.exists():
        shutil.rmtree(into)
    staging.rename(into)
    return into


def _already_there(folder: Path, expected: str | None) -> bool:
    """True if ``folder`` holds a finished extraction of the expected digest."""
    marker = folder / MARKER_FILE
    if expected is None or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("sha256") == expected
    except ValueError:
        return False


def _verify(item: ManifestItem, url: str, digest: str, recorded: Mapping[str, dict]) -> str:
    """Check ``digest``; returns where the expectation came from (or ``"recorded now"``)."""
    if item.sha256:
        if digest != item.sha256.lower():
            raise ChecksumError(f"checksum mismatch for {item.ident} from {url}: got sha256 "
                                f"{digest}, manifest says {item.sha256}; the download was deleted")
        return "manifest"
    entry = recorded.get(item.ident)
    if entry:
        if digest != entry.get("sha256"):
            raise ChecksumError(
                f"checksum mismatch for {item.ident} from {url}: got sha256 {digest}, "
                f"{CHECKSUMS_FILE} recorded {entry.get('sha256')} on first use; the download was "
                f"deleted (if the upstream archive legitimately changed, remove its entry from "
                f"{CHECKSUMS_FILE} and run again)")
        return CHECKSUMS_FILE
    return "recorded now"


def download_item(item: ManifestItem, dest: Path, url: str, timeout: float,
                  say: Callable[[str], None]) -> Path:
    """Download, verify and extract one item into ``dest/<name>-<commit>``."""
    recorded = load_checksums(dest)
    expected = item.sha256.lower() if item.sha256 else recorded.get(item.ident, {}).get("sha256")
    folder = dest / item.dirname
    if _already_there(folder, expected):
        say(f"{item.key}: already in {folder}")
        return folder
    say(f"{item.key}: downloading {url}")
    tmp, digest, size = fetch(url, dest, timeout, say)
    try:
        origin = _verify(item, url, digest, recorded)
        if item.is_archive:
            extract_archive(tmp, folder)
        else:
            _store_file(tmp, item, folder)
    finally:
        tmp.unlink(missing_ok=True)
    (folder / MARKER_FILE).write_text(json.dumps(
        {"ident": item.ident, "url": url, "sha256": digest, "bytes": size}, indent=1) + "\n",
        encoding="utf-8")
    if origin == "recorded now":
        recorded = load_checksums(dest)
        recorded[item.ident] = {"key": item.key, "url": url, "sha256": digest, "bytes": size,
                                "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_json_atomic(dest / CHECKSUMS_FILE, recorded)
        say(f"{item.key}: sha256 {digest} recorded in {CHECKSUMS_FILE} (trust on first use)")
    else:
        say(f"{item.key}: sha256 verified against the {origin}")
    return folder


def download_sources(dest: Path, base_urls: Mapping[str, str] | None = None,
                     manifest: Sequence[ManifestItem] = MANIFEST, timeout: float = 60,
                     progress: bool = True, url_template: str | None = None) -> dict[str, Path]:
    """Fetch, verify and extract every manifest item into ``dest``.

    Args:
        dest: download folder (created); holds ``checksums.json`` and one
            ``<name>-<commit>`` folder per item.
        base_urls: ``key -> URL`` overrides for single items.
        manifest: the items (default: six repositories and the NIH table).
        timeout: socket timeout in seconds.
        progress: print progress to stderr.
        url_template: template for all items (fields ``{repo} {owner} {name}
            {commit} {path} {key}``); default ``$MEDADV_SOURCE_URL``, else GitHub.

    Returns:
        ``key -> folder`` for every item (``nih_meta`` for the NIH table's folder).

    Raises:
        DownloadError: network or archive failure; ChecksumError: a digest mismatch.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    say = _reporter(progress)
    return {item.key: download_item(item, dest, resolve_url(item, base_urls, url_template),
                                    timeout, say)
            for item in manifest}


def download_and_build(dest: Path, out: Path, seed: int = 1234, image_size: int = 256,
                       max_file_mib: float | None = None,
                       base_urls: Mapping[str, str] | None = None,
                       manifest: Sequence[ManifestItem] = MANIFEST, timeout: float = 60,
                       progress: bool = True, url_template: str | None = None) -> dict:
    """:func:`download_sources` into ``dest``, then
    :func:`~medadv_lib.data.build.build_dataset` into ``out``.

    Returns:
        The build summary, with ``downloaded`` (``key -> folder``) added.
    """
    folders = download_sources(dest, base_urls=base_urls, manifest=manifest, timeout=timeout,
                               progress=progress, url_template=url_template)
    summary = build_dataset(folders, out, seed=seed, image_size=image_size,
                            max_file_mib=max_file_mib, progress=progress)
    summary["downloaded"] = {k: str(v) for k, v in folders.items()}
    return summary
