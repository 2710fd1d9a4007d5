"""``medadv data build`` and ``medadv data download``: make covid-cxr-mini elsewhere.

:func:`register` adds both subcommands to the ``medadv data`` group::

    medadv data build --from DIR [DIR ...] --out DIR [--seed S] [--max-file-mib M] [--json]
    medadv data download [--dest DIR] [--out DIR] [--url-template T] [--seed S]
                         [--max-file-mib M] [--no-build] [--json]

Each sets ``func`` to a handler ``(args) -> int``.  With ``--json`` the last line
on stdout is one JSON object (``ok``, counts, ``out``, ``seconds``, ...).  Expected
failures (missing or unrecognised folder, checksum mismatch, network error) print
one message on stderr and return 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

from medadv_lib.data.build import DataBuildError, build_dataset
from medadv_lib.data.download import download_and_build, download_sources

DEFAULT_DEST = Path("data/raw")
"""Default download folder (git-ignored)."""

DEFAULT_OUT = Path("data/covid-cxr-mini")
"""Default dataset folder (git-ignored)."""

EXIT_ERROR = 2


def register(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``build`` and ``download`` to the ``medadv data`` subparsers."""
    build = data_subparsers.add_parser(
        "build", help="build covid-cxr-mini from local source checkouts",
        description="Build covid-cxr-mini from local checkouts or extracted archives of its "
                    "source repositories (recognised by folder name or content).")
    build.add_argument("--from", dest="sources", nargs="+", type=Path, required=True,
                       metavar="DIR", help="source folders (and the NIH Data_Entry table)")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    _add_build_options(build)
    build.set_defaults(func=run_build)

    download = data_subparsers.add_parser(
        "download", help="download the pinned sources, then build covid-cxr-mini",
        description="Download the pinned source archives over HTTPS (checksums: manifest, "
                    "else trust on first use in DEST/checksums.json), extract them and build.")
    download.add_argument("--dest", type=Path, default=DEFAULT_DEST, metavar="DIR",
                          help=f"download folder (default {DEFAULT_DEST})")
    download.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                          help=f"dataset folder (default {DEFAULT_OUT})")
    download.add_argument("--url-template", default=None, metavar="T",
                          help="URL template with {repo} {commit} {path} (default: "
                               "$MEDADV_SOURCE_URL, else GitHub)")
    download.add_argument("--no-build", action="store_true", help="only download and extract")
    _add_build_options(download)
    download.set_defaults(func=run_download)


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by both subcommands."""
    parser.add_argument("--seed", type=int, default=1234, help="split seed (default 1234)")
    parser.add_argument("--max-file-mib", type=float, default=None, metavar="M",
                        help="skip source files of M MiB or more (4 reproduces the shared "
                             "snapshot)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object as the last stdout line")


def _report(args: argparse.Namespace, command: str, result: dict, started: float) -> None:
    """Print the outcome: a JSON line with ``--json``, else a short text."""
    result = {"ok": True, "command": command, **result,
              "seconds": round(time.monotonic() - started, 2)}
    if args.json:
        print(json.dumps(result, sort_keys=True, default=str))
        return
    if "images" in result:
        by_split = ", ".join(f"{k} {v}" for k, v in result["counts_by_split"].items())
        print(f"wrote {result['images']} images ({by_split}) to {result['out']}")
        for key, why in result.get("missing_sources", {}).items():
            print(f"  missing source {key}: {why}")
        match = result.get("manifest")
        if match:
            print(f"{match['images_matched']} of {match['images_built']} built images match the manifest "
                  f"{match['manifest']} ({match['images_in_manifest']} images; metadata.csv "
                  f"{'matches' if match['metadata_matches'] else 'differs'})")
    for key, folder in result.get("downloaded", {}).items():
        print(f"  {key}: {folder}")


def _guarded(command: str, args: argparse.Namespace, work: Callable[[], dict]) -> int:
    """Run ``work``; expected failures -> stderr message and exit code 2."""
    started = time.monotonic()
    try:
        result = work()
    except (DataBuildError, OSError, ValueError) as exc:
        print(f"medadv {command}: error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "command": command, "error": str(exc)}))
        return EXIT_ERROR
    _report(args, command, result, started)
    return 0


def run_build(args: argparse.Namespace) -> int:
    """Handler of ``medadv data build``."""
    return _guarded("data build", args, lambda: build_dataset(
        args.sources, args.out, seed=args.seed, max_file_mib=args.max_file_mib, progress=True))


def run_download(args: argparse.Namespace) -> int:
    """Handler of ``medadv data download``."""
    if args.no_build:
        def work() -> dict:
            folders = download_sources(args.dest, url_template=args.url_template)
            return {"dest": str(args.dest), "downloaded": {k: str(v) for k, v in folders.items()}}
    else:
        def work() -> dict:
            return download_and_build(args.dest, args.out, seed=args.seed,
                                      max_file_mib=args.max_file_mib,
                                      url_template=args.url_template)
    return _guarded("data download", args, work)
