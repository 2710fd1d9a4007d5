"""The ``pipeline`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Mapping, Sequence
from ..manifest import SNAPSHOT_MANIFEST, build_match, read_manifest
from ..sources import SOURCE_BY_KEY

from .candidates import read_candidates
from .duplicates import find_similar_pairs, resolve_duplicates
from .images import load_images
from .inputs import resolve_inputs
from .output import _check_out_dir, _replace_dir, _reporter, make_summary, metadata_rows, sources_markdown, write_images, write_metadata
from .rules import DataBuildError, MissingSourceWarning
from .split import assign_splits, group_patients, select_and_name


def build_dataset(sources: Mapping[str, Path] | Sequence[Path], out: Path, seed: int = 1234,
                  image_size: int = 256, max_file_mib: float | None = None,
                  progress: bool = True, manifest: Path | str | None = SNAPSHOT_MANIFEST) -> dict:
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
        manifest: a SHA-256 manifest (:mod:`medadv_lib.data.manifest`; default the shared
            snapshot's) the built files are compared with; ``None`` skips the comparison.

    Returns:
        The summary: ``images``, ``patients``, ``counts`` (split -> label -> n),
        ``counts_by_label``, ``counts_by_split``, ``counts_by_source``, ``read``,
        ``dropped`` (source -> reason -> n), ``missing_sources``, ``sources``
        (commit used per source), ``nih_metadata``, ``seconds``, the parameters and
        ``manifest`` (:func:`~medadv_lib.data.manifest.build_match`: how many built images match
        the manifest, and whether ``metadata.csv`` does; ``None`` without a manifest).

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
    if manifest is not None:
        read_manifest(manifest)             # a bad manifest fails now, not after the build
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
        summary["manifest"] = None if manifest is None else build_match(staging, manifest)
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
