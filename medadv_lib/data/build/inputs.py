"""The ``inputs`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence
from ..sources import NIH_METADATA, SOURCE_BY_KEY, SOURCES, RepoSource

from .rules import DataBuildError, _ANY_SOURCE_KEYS


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
