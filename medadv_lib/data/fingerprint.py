"""A fingerprint of the dataset's content, cheap to recompute: the cache key of trained models.

:func:`dataset_fingerprint` is the SHA-1 of one line ``<relative path>\\0<SHA-1 of the file's bytes>``
per file, in path order, over ``metadata.csv`` and every file under ``images/`` (names starting
with ``.`` are skipped).  Editing, adding, removing or renaming one image, or editing the table,
changes it; copying or moving the dataset does not.

Reading ~2,300 PNGs (73 MB) takes a second or more, so each file's content hash is memoised in
a small JSON file under the user's cache folder (``$XDG_CACHE_HOME/medadv/fingerprints/``, else
``~/.cache/medadv/fingerprints/``; one file per dataset folder, never inside the dataset).  A
memoised hash is reused only while the file's **stat signature** — size, ``st_mtime_ns``,
``st_ctime_ns`` and inode — is unchanged; a file whose signature changed is read and hashed
again, and only those are.  A warm call on an unchanged dataset is a ``stat`` per file plus one
small JSON read (tens of milliseconds).

**A same-size edit with its modification time set back** (``os.utime``) is caught: writing the
file and setting its times both set ``st_ctime_ns`` to the current time, and no user-level call
can set it back, so the signature differs and the file is hashed again.  Likewise a file replaced
by another one (new inode).  Two cases the signature cannot see, stated precisely:

* an edit made within the file system's timestamp granularity after the hash was memoised
  (a "racy" edit: same size, and mtime and ctime identical to the memoised ones because the clock
  had not ticked).  Guarded against: a hash is memoised only if the file's mtime and ctime are at
  least :data:`RACY_SECONDS` older than the moment it was read, otherwise it is recomputed on the
  next call;
* a file system that does not maintain ``st_ctime`` (some FUSE or network mounts) together with
  a same-size edit whose mtime is restored, or the system clock set back so that the new ctime
  equals the memoised one to the nanosecond.  Pass ``use_cache=False`` (or delete the cache
  file) there to hash every byte.

The cache is an optimisation only: an unreadable, corrupt or unwritable cache file (a read-only
cache folder, a full disk) is ignored and every file is hashed, giving the same fingerprint.
Writes go through :func:`medadv_lib.runtime.atomic_write_text`, so a killed process never leaves
a half-written cache file.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..runtime import atomic_write_text
from .dataset import find_data_dir

CACHE_ENV = "XDG_CACHE_HOME"
"""Environment variable of the user's cache root (the XDG Base Directory convention)."""

CACHE_VERSION = 1
"""Format of the memo file; a memo of another version is ignored."""

RACY_SECONDS = 2.0
"""A file modified less than this many seconds before it was hashed is not memoised (see above)."""

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/medadv/fingerprints``, else ``~/.cache/medadv/fingerprints``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medadv" / "fingerprints"


def _hash_file(path: str) -> str:
    """SHA-1 of a file's bytes (the only place file contents are read)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(st: os.stat_result) -> list[int]:
    """What a memoised hash is valid for: size, mtime, ctime (ns) and inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def dataset_files(root: Path) -> list[tuple[str, str]]:
    """``(relative POSIX path, absolute path)`` of ``metadata.csv`` and every file under ``images/``,
    sorted by relative path (hidden names skipped)."""
    root = Path(root)
    found = [("metadata.csv", str(root / "metadata.csv"))]
    stack = [(root / "images", "images")]
    while stack:
        folder, rel = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            sub = f"{rel}/{entry.name}"
            if entry.is_dir(follow_symlinks=True):
                stack.append((Path(entry.path), sub))
            elif entry.is_file(follow_symlinks=True):
                found.append((sub, entry.path))
    return sorted(found)


def cache_file(root: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """The memo file of the dataset folder ``root`` (named by a hash of its resolved path)."""
    key = hashlib.sha1(str(Path(root).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"{key}.json"


def _load_memo(path: Path, root: Path) -> dict[str, list]:
    """The memoised ``relative path -> [size, mtime_ns, ctime_ns, inode, sha1]`` (empty if none or unusable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("root") != str(root):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _save_memo(path: Path, root: Path, files: dict[str, list]) -> bool:
    """Write the memo atomically; ``False`` (and nothing written) where the cache folder is not writable."""
    text = json.dumps({"version": CACHE_VERSION, "root": str(root), "files": files}, separators=(",", ":"))
    try:
        atomic_write_text(text, path)
    except OSError:
        return False
    return True


def content_hashes(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                   use_cache: bool = True) -> tuple[dict[str, str], dict]:
    """SHA-1 of every dataset file (``relative path -> hex``), reusing memoised hashes of unchanged files.

    Returns:
        ``(hashes, stats)`` with ``stats`` = ``files``, ``hashed`` (files read this call),
        ``cache`` (the memo file, or ``None``) and ``cache_written`` (bool).

    Raises:
        FileNotFoundError: ``root/metadata.csv`` (or a file that vanished while listing) is missing.
    """
    root = Path(root).resolve()
    memo_path = cache_file(root, cache_dir) if use_cache else None
    memo = _load_memo(memo_path, root) if memo_path else {}
    hashes: dict[str, str] = {}
    fresh: dict[str, list] = {}
    hashed = 0
    changed = False
    for rel, path in dataset_files(root):
        st = os.stat(path)
        sig = _signature(st)
        old = memo.get(rel)
        if isinstance(old, list) and len(old) == 5 and old[:4] == sig and isinstance(old[4], str):
            hashes[rel] = old[4]
            fresh[rel] = old
            continue
        started = time.time_ns()
        digest = _hash_file(path)
        hashed += 1
        hashes[rel] = digest
        st_after = os.stat(path)
        racy = started - max(st_after.st_mtime_ns, st_after.st_ctime_ns) < RACY_SECONDS * 1e9
        if _signature(st_after) == sig and not racy:
            fresh[rel] = [*sig, digest]
        changed = True
    changed = changed or set(fresh) != set(memo)
    written = False
    if memo_path is not None and changed:
        written = _save_memo(memo_path, root, fresh)
    return hashes, {"files": len(hashes), "hashed": hashed, "cache": str(memo_path) if memo_path else None,
                    "cache_written": written}


def dataset_fingerprint(data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                        use_cache: bool = True) -> str:
    """SHA-1 (hex) over ``(relative path, content SHA-1)`` of ``metadata.csv`` and every image.

    Args:
        data_dir: dataset folder (default: :func:`medadv_lib.data.find_data_dir`'s search).
        cache_dir: folder of the memo files (default :func:`default_cache_dir`).
        use_cache: ``False`` hashes every byte and touches no cache file.

    Raises:
        medadv_lib.data.DataError: no dataset found.
    """
    root = find_data_dir(data_dir)
    hashes, _ = content_hashes(root, cache_dir, use_cache)
    total = hashlib.sha1()
    for rel in sorted(hashes):
        total.update(f"{rel}\0{hashes[rel]}\n".encode("utf-8", "surrogateescape"))
    return total.hexdigest()
