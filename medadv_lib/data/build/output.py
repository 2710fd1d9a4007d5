"""The ``output`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
import csv
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence
from ..sources import LABELS, NIH_METADATA, SOURCE_BY_KEY, SOURCES

from .candidates import Candidate
from .images import LoadedImage
from .inputs import Inputs
from .rules import DataBuildError, LABEL_CAPS, METADATA_COLUMNS, MIN_AGE, SPLIT_SHARES
from .split import Selected


def metadata_rows(chosen: Sequence[Selected], inputs: Inputs) -> list[dict[str, str]]:
    """The ``metadata.csv`` rows."""
    rows = []
    for sel in chosen:
        cand = sel.candidate
        checkout = inputs.checkouts[cand.source]
        rows.append({
            "image_id": sel.image_id, "file": f"images/{cand.label}/{sel.image_id}.png",
            "label": cand.label, "patient_id": sel.patient_id, "split": sel.split,
            "source_repo": checkout.source.repo, "source_commit": checkout.commit,
            "source_path": cand.path, "view": cand.view, "age": cand.age, "sex": cand.sex,
            "license": cand.license or checkout.source.default_license,
        })
    return rows


def write_images(folder: Path, chosen: Sequence[Selected], loaded: Sequence[LoadedImage],
                 rows: Sequence[Mapping[str, str]]) -> None:
    """Save every image as an optimised 8-bit PNG under ``folder``."""
    for label in LABELS:
        (folder / "images" / label).mkdir(parents=True, exist_ok=True)
    for sel, row in zip(chosen, rows):
        loaded[sel.index].image.save(folder / row["file"], optimize=True)


def write_metadata(folder: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write ``metadata.csv``."""
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_summary(rows: Sequence[Mapping[str, str]], inputs: Inputs, log: collections.Counter,
                 conflicts: Sequence[Sequence[Candidate]], links: int, out: Path, seed: int,
                 image_size: int, max_file_mib: float | None) -> dict:
    """The JSON-ready summary of a build (also written to ``build_summary.json``)."""
    splits = [name for name, _ in SPLIT_SHARES]
    counts = {split: {label: 0 for label in LABELS} for split in splits}
    by_source: dict[str, dict[str, dict[str, int]]] = {}
    key_of = {s.repo: s.key for s in SOURCES}
    for row in rows:
        counts[row["split"]][row["label"]] += 1
        per = by_source.setdefault(key_of[row["source_repo"]], {})
        per.setdefault(row["label"], {s: 0 for s in splits})[row["split"]] += 1
    dropped: dict[str, dict[str, int]] = {}
    read = {}
    for (source, reason), n in sorted(log.items()):
        if reason == "read":
            read[source] = n
        else:
            dropped.setdefault(source, {})[reason] = n
    return {
        "out": str(out), "images": len(rows),
        "patients": len({r["patient_id"] for r in rows}),
        "counts": counts,
        "counts_by_label": {label: sum(counts[s][label] for s in splits) for label in LABELS},
        "counts_by_split": {s: sum(counts[s].values()) for s in splits},
        "counts_by_source": by_source,
        "read": read, "dropped": dropped,
        "conflicting_clusters": [[f"{c.source}:{c.path}" for c in cl] for cl in conflicts],
        "patient_links": links,
        "missing_sources": dict(inputs.missing),
        "sources": {k: {"repo": c.source.repo, "commit": c.commit, "commit_from": c.commit_from,
                        "pinned": c.source.commit, "dir": str(c.root)}
                    for k, c in inputs.checkouts.items()},
        "nih_metadata": None if inputs.nih_table is None else {
            "repo": NIH_METADATA.repo, "path": NIH_METADATA.path, "file": str(inputs.nih_table),
            "commit": inputs.nih_table_commit, "commit_from": inputs.nih_table_commit_from},
        "seed": seed, "image_size": image_size, "max_file_mib": max_file_mib,
    }


def _md_table(header: Sequence[str], body: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in body]


_RULES_TEXT = """## Rules applied

- Labels: ieee8023 `finding` COVID-19 (also "COVID-19, ARDS") -> COVID-19; Pneumonia, Bacterial,
  Streptococcus, Klebsiella, Legionella, E.Coli, Mycoplasma Bacterial Pneumonia, Chlamydophila,
  Pneumocystis, SARS, Influenza, Varicella -> pneumonia; "No Finding", ARDS, Lipoid, CT and `todo`
  rows not used. Hannover: all COVID-19. Actualmed / Figure1: COVID-19, "No finding" -> normal,
  Pneumonia; empty finding (inconclusive) not used. muhammedtalo/COVID-19 (NIH ChestX-ray8):
  `No_findings` only if the NIH label is exactly "No Finding", `Pneumonia` only if the NIH labels
  include "Pneumonia"; its `Covid-19` folder is not read. COVID-CXNet `chest_xray_images/covid19`:
  COVID-19.
- Views: PA, AP, AP Supine, AP erect where the source states a view; images without a stated view
  are kept as "frontal (visual check)" (checked by eye on the snapshot; failures excluded).
- Known age below {min_age} not used; COVID-CXNet files with a "p" suffix (paediatric) not used.
- Caps per label: {caps}.
- Near-duplicates: on 256x256 images, d = max(16x16 aHash, 16x16 dHash Hamming distance);
  duplicates if d <= 20, or d <= 40 and (80x80 high-pass correlation >= 0.60 or 32x32
  thumbnail correlation >= 0.965). One image kept per cluster, from the earliest source in the
  table; clusters with an excluded member or conflicting labels dropped whole.
- `patient_id` = `<source>-<id>`, or `<source>-imgNNNN` where the source has none. Split groups
  merge patient ids across copies of one picture and link an image without patient id to a
  same-label image with thumbnail correlation >= 0.93 (d <= 40) ({links} links).
- Split {split}, stratified by (label, source), patient-disjoint, seed {seed}.
- Preprocessing: 8-bit grayscale (EXIF orientation, alpha on black, 16-bit min-max), whole image
  resized to {size}x{size} with Pillow LANCZOS (no crop), optimised PNG.
"""


def sources_markdown(summary: Mapping) -> str:
    """The ``SOURCES.md`` build report."""
    splits = [name for name, _ in SPLIT_SHARES]
    by_source = summary["counts_by_source"]
    md = ["# covid-cxr-mini: sources and build report", "",
          f"{summary['images']} frontal chest X-rays, 8-bit grayscale PNG, "
          f"{summary['image_size']}x{summary['image_size']}, built by "
          f"`medadv_lib.data.build` (seed {summary['seed']}, max_file_mib "
          f"{summary['max_file_mib']}).", "", "## Sources", ""]
    body = []
    for source in SOURCES:
        info = summary["sources"].get(source.key)
        commit = f"`{info['commit']}` ({info['commit_from']})" if info else "missing"
        body.append([source.key, f"`{source.repo}`", commit,
                     *(sum(by_source.get(source.key, {}).get(l, {}).values()) for l in LABELS),
                     source.license])
    md += _md_table(["key", "repository", "commit", *LABELS, "license / terms"], body) + [""]
    meta = summary["nih_metadata"]
    md.append(f"Metadata only: `{NIH_METADATA.repo}` file `{NIH_METADATA.path}`, commit "
              + (f"`{meta['commit']}` ({meta['commit_from']})" if meta else "missing")
              + f"; {NIH_METADATA.license}.")
    md.append("")
    if summary["missing_sources"]:
        md += ["**Missing sources** (built without them):", ""]
        md += [f"- `{k}` ({SOURCE_BY_KEY[k].repo}): {why}"
               for k, why in summary["missing_sources"].items()] + [""]
    md += ["## Counts", ""]
    md += _md_table(["label", *splits, "total"],
                    [[l, *(summary["counts"][s][l] for s in splits), summary["counts_by_label"][l]]
                     for l in LABELS]
                    + [["all", *(summary["counts_by_split"][s] for s in splits), summary["images"]]])
    md += [""] + _md_table(["source", "label", *splits, "total"],
                           [[k, l, *(v[s] for s in splits), sum(v.values())]
                            for k in (s.key for s in SOURCES) for l, v in by_source.get(k, {}).items()])
    md += ["", f"Patients (`patient_id`): {summary['patients']}.", "", "## Dropped", ""]
    md += _md_table(["source", "reason", "images"],
                    [[k, why, n] for k, reasons in summary["dropped"].items()
                     for why, n in reasons.items()])
    md += ["", "Images read per source (before the rules): "
           + ", ".join(f"{k} {n}" for k, n in summary["read"].items()) + ".", ""]
    if summary["conflicting_clusters"]:
        md += ["Near-duplicate clusters with conflicting labels (dropped):", ""]
        md += ["- " + "; ".join(f"`{m}`" for m in cl) for cl in summary["conflicting_clusters"]]
        md.append("")
    md.append(_RULES_TEXT.format(
        min_age=MIN_AGE, links=summary["patient_links"], seed=summary["seed"],
        size=summary["image_size"],
        caps=", ".join(f"{l} {LABEL_CAPS[l] or 'none'}" for l in LABELS),
        split=" / ".join(f"{name} {round(share * 100)}%" for name, share in SPLIT_SHARES)))
    if summary["max_file_mib"] is not None:
        md.append(f"Files of {summary['max_file_mib']:g} MiB or more were skipped "
                  "(`max_file_mib`), as they were absent from the shared snapshot.\n")
    return "\n".join(md)


def _check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a dataset build."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "metadata.csv").is_file())):
        raise DataBuildError(f"output {out} exists and is not a dataset folder "
                             "(no metadata.csv); choose another --out or remove it")


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished build ``new`` to ``out``, replacing an older build there."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _reporter(enabled: bool) -> Callable[[str], None]:
    """A progress printer (to stderr) or a no-op."""
    def say(message: str) -> None:
        if enabled:
            print(f"[medadv data build] {message}", file=sys.stderr, flush=True)
    return say
