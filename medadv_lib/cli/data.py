"""``medadv data check``, ``manifest`` and ``ensure`` (and, from ``data_build``, ``build`` / ``download``)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .. import LABELS
from ..data import SPLITS, DataError, find_data_dir, load_metadata
from ..data.check import check_images, check_splits
from ..data.ensure import ensure_dataset
from ..data.manifest import (SNAPSHOT_MANIFEST, SNAPSHOT_MANIFEST_NAME, difference_lines, difference_summary,
                             verify_dataset, write_manifest)
from . import emit
from ._guard import CLIError


def _verify(root, manifest) -> tuple[dict | None, list[str]]:
    """``--verify``: the comparison with the manifest and its report lines (``(None, [])`` without it)."""
    if manifest is None:
        return None, []
    verified = verify_dataset(root, manifest)
    if verified["ok"]:
        return verified, [f"manifest: all {verified['files']} files (metadata.csv and images/) match "
                          f"{verified['manifest']}"]
    bad = len(verified["changed"]) + len(verified["missing"]) + len(verified["extra"])
    return verified, [f"manifest: {bad} file(s) differ from {verified['manifest']} "
                      f"({verified['matched']} of {verified['files']} match):", *difference_lines(verified)]


def _check(args) -> int:
    root = find_data_dir(args.data)
    verified, manifest_lines = _verify(root, args.verify)
    try:
        df = load_metadata(root)
    except DataError as exc:
        if verified is None or verified["ok"]:
            raise
        error = f"{exc}; and {difference_summary(verified)}"        # report both, the files by name
        emit({"ok": False, "command": "data check", "data_dir": str(root), "manifest": verified, "error": error,
              "error_type": "DataError"}, args.json, manifest_lines)
        print(f"medadv data check: error: {error}", file=sys.stderr)
        return 2
    counts = {s: {lab: int(((df["split"] == s) & (df["label"] == lab)).sum()) for lab in LABELS} for s in SPLITS}
    problems = check_images(df, workers=args.workers, progress=not args.json)
    split_errors, warnings = check_splits(df, root)
    ok = not problems and not split_errors and (verified is None or verified["ok"])
    result = {"data_dir": str(root), "n_images": len(df), "n_patients": int(df["patient_id"].nunique()),
              "counts": counts, "ok": ok, "images_decoded": len(df), "problems": problems,
              "split_errors": split_errors, "warnings": warnings, "manifest": verified}
    lines = [f"dataset: {root}  ({len(df)} images, {result['n_patients']} patients; all files present, "
             "splits patient-disjoint)", f"{'split':<6} " + " ".join(f"{lab:>10}" for lab in LABELS) + f" {'all':>6}"]
    lines += [f"{s:<6} " + " ".join(f"{counts[s][lab]:>10}" for lab in LABELS) + f" {sum(counts[s].values()):>6}"
              for s in SPLITS]
    lines += [f"warning: {w}" for w in warnings]
    if problems:
        lines.append(f"{len(problems)} of {len(df)} images are bad:")
        lines += [f"  {p['file']}: {p['problem']}" for p in problems]
    elif not split_errors:
        lines.append(f"all {len(df)} images decode as plausible 8-bit grayscale X-rays")
    lines += manifest_lines
    if not ok:
        what = split_errors + ([f"{len(problems)} bad image(s) (listed above): restore them from the dataset "
                                "source or rebuild with `medadv data build`"] if problems else [])
        what += [difference_summary(verified)] if verified is not None and not verified["ok"] else []
        result["error"] = "; ".join(what)
        emit(result, args.json, lines)
        print(f"medadv data check: error: {result['error']}", file=sys.stderr)
        return 2
    emit(result, args.json, lines)
    return 0


def _manifest(args) -> int:
    root = find_data_dir(args.data)
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise CLIError(f"--out {args.out} is a folder: pass a file name, e.g. {out / 'covid-cxr-mini.sha256'}")
    if out.resolve().is_relative_to((root / "images").resolve()):
        raise CLIError(f"--out {args.out} is inside the dataset's images/ folder, where the manifest would "
                       "list itself as an extra file: write it elsewhere")
    result = write_manifest(root, out)
    emit({"ok": True, "data_dir": str(root), **result}, args.json,
         [f"wrote the SHA-256 of {result['files']} files of {root} (metadata.csv and {result['images']} images) "
          f"to {out}"])
    return 0


def _ensure(args) -> int:
    result = ensure_dataset(args.data, sources_dir=args.sources, url_template=args.url_template,
                            progress=not args.json)
    line = (f"dataset: {result['data_dir']} (present, nothing downloaded)" if result["action"] == "present" else
            f"dataset: {result['data_dir']} (built: {result['images']} images in {result['seconds']} s)")
    emit({"ok": True, **result}, args.json, [line])
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="check, build or download the chest X-ray dataset")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="validate the dataset (table, every image decoded, splits) and print "
                                      "per-split, per-label counts; exit 2 on bad data")
    c.add_argument("--workers", type=int, default=None, help="decoding threads (default: 2 per available CPU, <= 8)")
    c.add_argument("--data", default=None, help="dataset folder (default: $MEDADV_DATA, data/, ../shared/data/)")
    c.add_argument("--verify", nargs="?", const=SNAPSHOT_MANIFEST, default=None, metavar="MANIFEST",
                   help="also compare the SHA-256 of metadata.csv and every image with a manifest (default: the "
                        f"shared snapshot's, {SNAPSHOT_MANIFEST_NAME}); each changed, missing or extra file is "
                        "listed and the check fails")
    c.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    c.set_defaults(func=_check)
    m = dsub.add_parser("manifest", help="write the SHA-256 manifest of a dataset folder (metadata.csv and every "
                                         "image, in sha256sum's format), for `medadv data check --verify FILE`")
    m.add_argument("--data", default=None, help="dataset folder (default: $MEDADV_DATA, data/, ../shared/data/)")
    m.add_argument("--out", required=True, metavar="FILE", help="manifest file to write (atomically)")
    m.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    m.set_defaults(func=_manifest)
    e = dsub.add_parser("ensure", help="find the dataset, or download and build it from its public sources "
                                       "(what make tutorial runs first; MEDADV_OFFLINE=1 never downloads)")
    e.add_argument("--data", default=None, help="dataset folder (default: $MEDADV_DATA, data/, ../shared/data/; "
                                                "built at $MEDADV_DATA or data/covid-cxr-mini if missing)")
    e.add_argument("--sources", default=None, metavar="DIR",
                   help="download folder (default: raw/ beside the dataset folder)")
    e.add_argument("--url-template", default=None, metavar="T",
                   help="source URL template with {repo} {commit} {path} (default: $MEDADV_SOURCE_URL, else GitHub)")
    e.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    e.set_defaults(func=_ensure)
    importlib.import_module(f"{__package__}.data_build").register(dsub)
    p.set_defaults(func=lambda args: p.print_help() or 2)
