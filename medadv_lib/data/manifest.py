"""The SHA-256 manifest of the shared snapshot: check that a dataset folder is the course's, byte for byte.

:data:`SNAPSHOT_MANIFEST` (``medadv_lib/data/covid-cxr-mini.sha256``, committed, shipped in the wheel) holds
one line per file of the shared snapshot ``covid-cxr-mini`` — ``metadata.csv`` and each of its 2326 images
— in the format of GNU ``sha256sum``: ``<64 hex digits><two spaces><path relative to the dataset folder>``,
sorted by path. It was written by::

    medadv data manifest --data ../shared/data/covid-cxr-mini --out medadv_lib/data/covid-cxr-mini.sha256

``medadv data check --verify`` compares a dataset folder with it (:func:`verify_dataset`): a file whose
hash differs is *changed*, one the manifest lists but the folder lacks is *missing*, a file under
``images/`` the manifest does not list is *extra* (names starting with ``.`` are skipped, as in
:mod:`medadv_lib.data.fingerprint`; ``SOURCES.md`` and other files beside ``metadata.csv`` are not
compared). Without this package, ``cd`` into the dataset folder and run ``sha256sum -c`` on the manifest
(it sees changed and missing files, not extra ones). ``medadv data build`` reports how many of the images
it built match the manifest (:func:`build_match`).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..runtime import atomic_write_text
from .dataset import DataError
from .fingerprint import dataset_files

SNAPSHOT_MANIFEST = Path(__file__).with_name("covid-cxr-mini.sha256")
"""The committed manifest of the shared snapshot."""

SNAPSHOT_MANIFEST_NAME = "medadv_lib/data/covid-cxr-mini.sha256"
"""How messages name :data:`SNAPSHOT_MANIFEST` (relative to the project, wherever it is installed)."""

REGENERATE = "medadv data manifest --data DIR --out FILE"

_LINE = re.compile(r"^(?P<hash>[0-9a-f]{64}) [ *](?P<path>\S.*)$")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_hashes(root: str | os.PathLike) -> dict[str, str]:
    """``relative path -> SHA-256`` of ``metadata.csv`` (when present) and every file under ``images/``."""
    return {rel: sha256_file(path) for rel, path in dataset_files(Path(root)) if os.path.isfile(path)}


def format_manifest(hashes: dict[str, str]) -> str:
    """The manifest text: ``sha256sum`` lines sorted by path."""
    return "".join(f"{hashes[rel]}  {rel}\n" for rel in sorted(hashes))


def write_manifest(root: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Hash the dataset folder ``root`` and write its manifest to ``out`` atomically (never half-written).

    Returns ``{"out", "files", "images", "metadata_sha256"}``.
    """
    hashes = dataset_hashes(root)
    if "metadata.csv" not in hashes:
        raise DataError(f"{Path(root) / 'metadata.csv'}: missing; a manifest covers metadata.csv and images/")
    atomic_write_text(format_manifest(hashes), out)
    return {"out": str(out), "files": len(hashes), "images": len(hashes) - 1,
            "metadata_sha256": hashes["metadata.csv"]}


def manifest_name(path: str | os.PathLike | None) -> str:
    """How messages name a manifest: the snapshot's by its project path, another as given."""
    if path is None or Path(path).resolve() == SNAPSHOT_MANIFEST.resolve():
        return SNAPSHOT_MANIFEST_NAME
    return str(path)


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, str]:
    """``relative path -> SHA-256`` from a manifest (default :data:`SNAPSHOT_MANIFEST`).

    Raises:
        DataError: the file is unreadable, empty, or has a line that is not ``<sha256>  <relative path>``
            (the message names the file and line, and how to write a manifest).
    """
    path = SNAPSHOT_MANIFEST if path is None else Path(path)
    name = manifest_name(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the manifest {name} ({getattr(exc, 'strerror', None) or exc}): pass a "
                        f"manifest written by `{REGENERATE}`, or leave the file out for the snapshot's") from None
    out: dict[str, str] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            what = "is not '<sha256>  <relative path>'"
        elif m["path"].startswith("/") or ".." in m["path"].split("/"):
            what = f"names {m['path']!r}, outside the dataset folder"
        elif m["path"] in out:
            what = f"repeats the path {m['path']!r}"
        else:
            out[m["path"]] = m["hash"]
            continue
        raise DataError(f"{name}:{no}: this line {what}; write the manifest with `{REGENERATE}`")
    if not out:
        raise DataError(f"{name}: the manifest lists no file; write it with `{REGENERATE}`")
    return out


def compare(found: dict[str, str], expected: dict[str, str]) -> dict:
    """Compare hashes of a folder (``found``) with a manifest (``expected``).

    Returns ``ok``, ``files`` (in the manifest), ``matched`` and the sorted relative paths ``changed``,
    ``missing`` and ``extra``.
    """
    changed = sorted(rel for rel in expected if rel in found and found[rel] != expected[rel])
    missing = sorted(rel for rel in expected if rel not in found)
    extra = sorted(rel for rel in found if rel not in expected)
    return {"ok": not (changed or missing or extra), "files": len(expected),
            "matched": sum(1 for rel in expected if found.get(rel) == expected[rel]),
            "changed": changed, "missing": missing, "extra": extra}


def verify_dataset(root: str | os.PathLike, manifest: str | os.PathLike | None = None) -> dict:
    """Hash every file of the dataset folder ``root`` and compare it with ``manifest`` (default: the
    shared snapshot's). Returns :func:`compare`'s dict plus ``manifest`` (its name in messages)."""
    expected = read_manifest(manifest)
    return {"manifest": manifest_name(manifest), **compare(dataset_hashes(root), expected)}


def difference_lines(result: dict) -> list[str]:
    """One line per changed, missing or extra file of a :func:`verify_dataset` result."""
    return [f"  {kind}: {rel}" for kind in ("changed", "missing", "extra") for rel in result[kind]]


def difference_summary(result: dict, shown: int = 5) -> str:
    """One line: how many files differ from the manifest, the first few by name, and the fix."""
    bad = [(kind, rel) for kind in ("changed", "missing", "extra") for rel in result[kind]]
    names = "; ".join(f"{kind} {rel}" for kind, rel in bad[:shown]) + (
        f" and {len(bad) - shown} more" if len(bad) > shown else "")
    return (f"{len(bad)} file(s) differ from the manifest {result['manifest']} ({names}): restore the changed and "
            "missing files from the shared snapshot (../shared/data/covid-cxr-mini) and remove the extra ones, "
            f"or verify against the manifest of your own build (`{REGENERATE}`, then --verify FILE)")


def build_match(root: str | os.PathLike, manifest: str | os.PathLike | None = None) -> dict:
    """How much of a built dataset folder matches a manifest (default: the shared snapshot's).

    Returns ``manifest``, ``images_built``, ``images_in_manifest``, ``images_matched`` (built images whose
    path and SHA-256 are in the manifest) and ``metadata_matches``.
    """
    expected = read_manifest(manifest)
    found = dataset_hashes(root)
    images = [rel for rel in found if rel != "metadata.csv"]
    return {"manifest": manifest_name(manifest), "images_built": len(images),
            "images_in_manifest": sum(1 for rel in expected if rel != "metadata.csv"),
            "images_matched": sum(1 for rel in images if expected.get(rel) == found[rel]),
            "metadata_matches": "metadata.csv" in found and expected.get("metadata.csv") == found["metadata.csv"]}
