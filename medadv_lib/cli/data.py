"""``medadv data check`` (and, from ``data_build``, ``build`` / ``download``)."""
from __future__ import annotations

import importlib

from .. import LABELS
from ..data import SPLITS, load_metadata
from . import emit


def _check(args) -> int:
    df = load_metadata(args.data)
    counts = {s: {lab: int(((df["split"] == s) & (df["label"] == lab)).sum()) for lab in LABELS} for s in SPLITS}
    result = {"data_dir": str(df["path"].iloc[0]).rsplit("/images/", 1)[0], "n_images": len(df),
              "n_patients": int(df["patient_id"].nunique()), "counts": counts, "ok": True}
    lines = [f"dataset: {result['data_dir']}  ({len(df)} images, {result['n_patients']} patients; all files present, "
             "splits patient-disjoint)", f"{'split':<6} " + " ".join(f"{lab:>10}" for lab in LABELS) + f" {'all':>6}"]
    lines += [f"{s:<6} " + " ".join(f"{counts[s][lab]:>10}" for lab in LABELS) + f" {sum(counts[s].values()):>6}"
              for s in SPLITS]
    emit(result, args.json, lines)
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="check, build or download the chest X-ray dataset")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="validate the dataset and print per-split, per-label counts")
    c.add_argument("--data", default=None, help="dataset folder (default: $MEDADV_DATA, data/, ../shared/data/)")
    c.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    c.set_defaults(func=_check)
    try:
        build = importlib.import_module(f"{__package__}.data_build")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.data_build":
            raise
    else:
        build.register(dsub)
    p.set_defaults(func=lambda args: p.print_help() or 2)
