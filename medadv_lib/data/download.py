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

Interruptions: a download streams into ``dest/.<name>-<commit>.part`` (with a ``.part.json``
note of its URL and validators).  A failed or interrupted download keeps it, and the next run
asks the server for the rest (an HTTP ``Range`` request with ``If-Range``); a server that answers
with the whole file instead (no range support, or the file changed) is read from the start.  The
SHA-256 always covers the whole file.  A response shorter than its ``Content-Length`` is an
error, never a finished download.  An archive is extracted into a temporary folder that gets
its marker file before it is renamed into place, so a folder ``<name>-<commit>`` is either
complete or absent; what a killed run left (``.extract-*`` folders) is removed by the next run.
One download runs per ``dest`` at a time (an ``flock`` on the folder itself; POSIX only).

Addresses: ``base_urls`` (``key -> URL``) wins, then the ``url_template``
argument, then the ``MEDADV_SOURCE_URL`` environment variable, then GitHub
(see :mod:`medadv_lib.data.sources` for the template fields).
"""
from __future__ import annotations

import contextlib
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

from tqdm.auto import tqdm

from ..runtime import atomic_write_text
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
    atomic_write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", path)


def resolve_url(item: ManifestItem, base_urls: Mapping[str, str] | None = None,
                url_template: str | None = None) -> str:
    """Address of ``item``: ``base_urls[item.key]``, else the template (argument,
    ``$MEDADV_SOURCE_URL``, GitHub default)."""
    if base_urls and item.key in base_urls:
        return base_urls[item.key]
    return item.url(url_template)


def part_path(dest: Path, item: ManifestItem) -> Path:
    """Where ``item`` is streamed to: ``dest/.<name>-<commit>.part`` (kept when interrupted)."""
    return Path(dest) / f".{item.dirname}.part"


def _part_note(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_note(part: Path) -> dict:
    """The URL and validators noted for a partial download (empty if none or unreadable)."""
    try:
        note = json.loads(_part_note(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def discard_partial(part: Path) -> None:
    """Remove a partial download and its note."""
    part.unlink(missing_ok=True)
    _part_note(part).unlink(missing_ok=True)


def _hash_existing(path: Path) -> tuple["hashlib._Hash", int]:
    """SHA-256 and size of the bytes already in ``path``."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def _progress_bar(enabled: bool, label: str, total: int | None, initial: int):
    """A tqdm byte counter on stderr (a no-op object when disabled)."""
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, disable=not enabled, file=sys.stderr, leave=False, mininterval=0.5)


def fetch(url: str, part: Path, timeout: float, say: Callable[[str], None],
          progress: bool = False, label: str = "") -> tuple[Path, str, int]:
    """Stream ``url`` to the partial file ``part``, resuming what an earlier try left there.

    A partial file noted with the same URL is continued with ``Range: bytes=N-`` (and ``If-Range``
    with the noted ETag or Last-Modified); an answer ``206`` is appended, an answer ``200`` (no
    range support, or the file changed) replaces it.  A partial file as long as the noted total is
    not fetched again.  On failure the partial file is kept for the next try.

    Returns:
        ``(part, sha256 hex digest of the whole file, size in bytes)``.

    Raises:
        DownloadError: network error, HTTP error, or a response shorter than announced.
    """
    part = Path(part)
    note = _read_note(part)
    if part.exists() and note.get("url") != url:
        discard_partial(part)                 # left by another address: not a prefix of this file
        note = {}
    offset = part.stat().st_size if part.exists() else 0
    if offset and note.get("total") == offset:
        say(f"  {label}: {offset / 2 ** 20:.1f} MiB already downloaded; verifying")
        digest, size = _hash_existing(part)
        return part, digest.hexdigest(), size
    headers = {"User-Agent": "medadv-data-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = note.get("etag") or ""
        validator = (etag if etag and not etag.startswith("W/") else None) or note.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:       # the partial file is not a prefix of this resource
            discard_partial(part)
            return fetch(url, part, timeout, say, progress, label)
        raise DownloadError(f"download failed: {url}: {exc}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DownloadError(f"download failed: {url}: {exc}; run again to retry"
                            + (f" (the {offset / 2 ** 20:.1f} MiB already downloaded are kept)"
                               if offset else "")) from exc
    with resp:
        resumed = offset > 0 and resp.status == 206 and \
            (resp.headers.get("Content-Range") or "").startswith(f"bytes {offset}-")
        if resp.status == 206 and not resumed:   # not the range we asked for
            if not offset:
                raise DownloadError(f"download failed: {url}: the server sent part of the file "
                                    f"({resp.headers.get('Content-Range')}) without being asked")
            resp.close()
            discard_partial(part)                # start again from the first byte
            return fetch(url, part, timeout, say, progress, label)
        if resumed:
            digest, size = _hash_existing(part)
            say(f"  {label}: resuming at {size / 2 ** 20:.1f} MiB")
        else:
            digest, size = hashlib.sha256(), 0
        length = resp.headers.get("Content-Length")
        expected = size + int(length) if length and length.isdigit() else None
        if not resumed:
            _write_note(part, {"url": url, "etag": resp.headers.get("ETag"),
                               "last_modified": resp.headers.get("Last-Modified"), "total": expected})
        bar = _progress_bar(progress, label, expected, size)
        try:
            with open(part, "ab" if resumed else "wb") as sink:
                while chunk := resp.read(_CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise DownloadError(f"download interrupted: {url}: {exc}; {size / 2 ** 20:.1f} MiB kept in "
                                f"{part}; run again to resume") from exc
        finally:
            bar.close()
    if expected is not None and size != expected:
        raise DownloadError(f"download interrupted: {url}: got {size} of {expected} bytes; the part is kept "
                            f"in {part}; run again to resume")
    if expected is None:
        _write_note(part, {**_read_note(part), "total": size})
    return part, digest.hexdigest(), size


def _write_note(part: Path, note: dict) -> None:
    """Record the URL and validators of a partial download beside it."""
    atomic_write_text(json.dumps(note, indent=1) + "\n", _part_note(part))


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


def extract_archive(archive_path: Path, into: Path, marker: Mapping | None = None) -> Path:
    """Extract a ``.tar.gz`` safely into the new folder ``into``.

    A GitHub archive has one top folder; its content becomes ``into``.  ``marker`` (if given) is
    written to ``MARKER_FILE`` inside before the folder is renamed into place, so a marked
    folder is always a complete extraction.
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
        if marker is not None:
            (top / MARKER_FILE).write_text(json.dumps(dict(marker), indent=1) + "\n", encoding="utf-8")
        if into.exists():
            shutil.rmtree(into)
        top.rename(into)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return into


def _store_file(file_path: Path, item: ManifestItem, into: Path, marker: Mapping | None = None) -> Path:
    """Place a single downloaded file at ``into/<its path in the repository>`` (marked, then renamed)."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=into.parent))
    try:
        target = staging / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(file_path), target)
        if marker is not None:
            (staging / MARKER_FILE).write_text(json.dumps(dict(marker), indent=1) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if into.exists():
        shutil.rmtree(into)
    staging.rename(into)
    return into


def _marker(folder: Path) -> dict:
    """The marker of a finished extraction in ``folder`` (empty if none or unreadable)."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _already_there(folder: Path, expected: str | None) -> bool:
    """True if ``folder`` holds a finished extraction of the expected digest."""
    if expected is None:
        return False
    return _marker(folder).get("sha256") == expected


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


def _record(dest: Path, item: ManifestItem, url: str, digest: str, size: int) -> None:
    """Add a trust-on-first-use digest to ``dest/checksums.json``."""
    recorded = load_checksums(dest)
    recorded[item.ident] = {"key": item.key, "url": url, "sha256": digest, "bytes": size,
                            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_json_atomic(dest / CHECKSUMS_FILE, recorded)


def download_item(item: ManifestItem, dest: Path, url: str, timeout: float,
                  say: Callable[[str], None], progress: bool = False) -> Path:
    """Download, verify and extract one item into ``dest/<name>-<commit>``.

    A finished extraction (its marker) is reused: when its digest matches the manifest or
    ``checksums.json``, or when ``checksums.json`` has no entry for it yet (a run interrupted
    between extracting and recording; the marker's digest is recorded then).
    """
    recorded = load_checksums(dest)
    expected = item.sha256.lower() if item.sha256 else recorded.get(item.ident, {}).get("sha256")
    folder = dest / item.dirname
    if _already_there(folder, expected):
        say(f"{item.key}: already in {folder}")
        return folder
    done = _marker(folder)
    if expected is None and done.get("ident") == item.ident and done.get("sha256"):
        _record(dest, item, done.get("url", url), done["sha256"], int(done.get("bytes") or 0))
        say(f"{item.key}: already in {folder}; its sha256 recorded in {CHECKSUMS_FILE}")
        return folder
    say(f"{item.key}: downloading {url}")
    part, digest, size = fetch(url, part_path(dest, item), timeout, say, progress, item.key)
    try:
        origin = _verify(item, url, digest, recorded)
        marker = {"ident": item.ident, "url": url, "sha256": digest, "bytes": size}
        if item.is_archive:
            extract_archive(part, folder, marker)
        else:
            _store_file(part, item, folder, marker)
    except DownloadError:
        discard_partial(part)                # a wrong digest or a broken archive: not worth resuming
        raise
    discard_partial(part)
    if origin == "recorded now":
        _record(dest, item, url, digest, size)
        say(f"{item.key}: sha256 {digest} recorded in {CHECKSUMS_FILE} (trust on first use)")
    else:
        say(f"{item.key}: sha256 verified against the {origin}")
    return folder


@contextlib.contextmanager
def download_lock(dest: Path, say: Callable[[str], None] = lambda _m: None):
    """Hold an exclusive ``flock`` on the folder ``dest`` (no lock file is left behind); waits while
    another download into ``dest`` runs.  Without ``fcntl`` (Windows) it does nothing."""
    try:
        import fcntl  # optional: POSIX only (no fcntl on Windows)
    except ImportError:                       # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(dest, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another download into {dest} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                          # releases the lock


def clean_leftovers(dest: Path) -> list[Path]:
    """Remove what killed runs left in ``dest``: ``.extract-*`` folders and the temporary
    ``.download-*.part`` files of earlier versions (call it holding :func:`download_lock`)."""
    removed = []
    for path in list(Path(dest).glob(".extract-*")) + list(Path(dest).glob(".download-*.part")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


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
    urls = {item.key: resolve_url(item, base_urls, url_template) for item in manifest}
    with download_lock(dest, say):
        clean_leftovers(dest)
        return {item.key: download_item(item, dest, urls[item.key], timeout, say, progress)
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
