"""The ``candidates`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
import csv
import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from ..sources import SOURCES

from .inputs import Checkout, Inputs
from .rules import COVIDNET_FINDINGS, DataBuildError, FRONTAL_VIEWS, IEEE_FINDINGS, IMAGE_SUFFIXES, MIN_AGE, NIH_FOLDERS, VISUAL_CHECK_VIEW


@dataclass
class Candidate:
    """One image named by a source, before the image-level rules.

    A candidate with ``exclude`` set is not used, but its near-duplicates in other
    sources are dropped with it (the copy of a lateral view, of a child, ...).
    """

    source: str
    path: str
    label: str | None
    patient: str
    view: str
    age: str
    sex: str
    license: str = ""
    exclude: str | None = None


_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}


def make_candidate(source: str, path: str, label: str | None, patient: str, view: str,
                   age: str | None = "", sex: str | None = "", license: str = "",
                   exclude: str | None = None) -> Candidate:
    """A :class:`Candidate` with age, sex and patient id normalised and the age rule applied."""
    age = (age or "").strip()
    age = age if re.fullmatch(r"\d+(\.\d+)?", age) else ""
    if exclude is None and age and float(age) < MIN_AGE:
        exclude = f"age < {MIN_AGE}"
    patient = (patient or "").strip()
    return Candidate(source=source, path=path, label=label,
                     patient=f"{source}-{patient}" if patient else "", view=view, age=age,
                     sex=_SEX.get((sex or "").strip().lower(), ""), license=license.strip(),
                     exclude=exclude)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (``.csv`` or ``.csv.gz``) as dicts, BOM and stray spaces in names removed."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig", errors="replace")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({(k or "").strip(): (v or "") for k, v in row.items()})
    return rows


def list_files(root: Path, under: str) -> list[str]:
    """Files below ``root/under`` as sorted ``/``-separated paths relative to ``root``."""
    base = root / under
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(root).parts)


def _frontal(view: str) -> str | None:
    """The normalised frontal view, or None."""
    return FRONTAL_VIEWS.get(view.strip().upper())


def read_ieee(checkout: Checkout) -> list[Candidate]:
    """ieee8023 copy: ``metadata.csv`` rows of folder ``images`` (``todo`` rows skipped)."""
    out = []
    for row in read_csv_rows(checkout.root / "metadata.csv"):
        finding, view = row.get("finding", "").strip(), row.get("view", "").strip()
        if row.get("folder", "").strip() != "images" or finding == "todo":
            continue
        label, frontal = IEEE_FINDINGS.get(finding), _frontal(view)
        if row.get("modality", "").strip() != "X-ray":
            exclude = f"CT ({view})"
        elif not frontal:
            exclude = f'not frontal (view "{view}")'
        elif not label:
            exclude = f'finding "{finding}"'
        else:
            exclude = None
        out.append(make_candidate("ieee", "images/" + row["filename"].strip(), label,
                                  row.get("patientid", ""), frontal or view, row.get("age"),
                                  row.get("sex"), row.get("license", ""), exclude))
    return out


def read_mhh(checkout: Checkout) -> list[Candidate]:
    """Hannover: every ``data.csv`` row is a COVID-19 image ``png/<image_id>.png``."""
    out = []
    for row in read_csv_rows(checkout.root / "data.csv"):
        projection = row.get("projection", "").strip()
        frontal = _frontal(projection)
        exclude = None if frontal else f'not frontal (projection "{projection}")'
        out.append(make_candidate("mhh", f"png/{row['image_id'].strip()}.png", "COVID-19",
                                  row.get("patient_id", ""), frontal or projection,
                                  row.get("age"), row.get("sex"), exclude=exclude))
    return out


def _covidnet_candidate(source: str, row: Mapping[str, str], path: str) -> Candidate:
    """One Actualmed / Figure1 row (same metadata layout)."""
    finding, view = row.get("finding", "").strip(), row.get("view", "").strip()
    frontal = _frontal(view) or (VISUAL_CHECK_VIEW if not view else None)
    if finding not in COVIDNET_FINDINGS:
        exclude = "finding empty (inconclusive)" if not finding else f'finding "{finding}"'
    elif not frontal:
        exclude = f'not frontal (view "{view}")'
    else:
        exclude = None
    patient = re.sub(r"[a-z]$", "", row.get("patientid", "").strip())   # COVID-00003a -> COVID-00003
    return make_candidate(source, path, COVIDNET_FINDINGS.get(finding), patient,
                          frontal or view, row.get("age"), row.get("sex"), exclude=exclude)


def read_actualmed(checkout: Checkout) -> list[Candidate]:
    """Actualmed: ``metadata.csv`` rows, image ``images/<imagename>``."""
    return [_covidnet_candidate("amed", row, "images/" + row["imagename"].strip())
            for row in read_csv_rows(checkout.root / "metadata.csv")]


def read_figure1(checkout: Checkout) -> list[Candidate]:
    """Figure1: ``metadata.csv`` rows whose ``patientid`` names a file in ``images/``."""
    by_stem = {Path(p).stem: p for p in list_files(checkout.root, "images")}
    out = []
    for row in read_csv_rows(checkout.root / "metadata.csv"):
        path = by_stem.get(row.get("patientid", "").strip())
        if path is not None:
            out.append(_covidnet_candidate("fig1", row, path))
    return out


def read_nih_table(path: Path) -> dict[str, dict[str, str]]:
    """NIH ``Data_Entry_2017_v2020`` rows by ``Image Index``."""
    return {row["Image Index"].strip(): row for row in read_csv_rows(path)}


def read_nih(checkout: Checkout, table: Mapping[str, Mapping[str, str]]) -> list[Candidate]:
    """muhammedtalo/COVID-19: NIH images of ``No_findings`` / ``Pneumonia`` found in the table.

    ``No_findings`` images count as normal only if the NIH label is exactly "No Finding",
    ``Pneumonia`` images as pneumonia only if the NIH labels include "Pneumonia".
    """
    out = []
    for folder, label in NIH_FOLDERS:
        for path in list_files(checkout.root, f"X-Ray Image DataSet/{folder}"):
            entry = table.get(Path(path).name)
            if entry is None:
                continue
            findings = [f.strip() for f in entry.get("Finding Labels", "").split("|")]
            view = entry.get("View Position", "").strip()
            frontal = _frontal(view)
            if label == "normal" and findings != ["No Finding"]:
                exclude = f'NIH labels "{"|".join(findings)}" are not "No Finding"'
            elif label == "pneumonia" and "Pneumonia" not in findings:
                exclude = 'NIH labels lack "Pneumonia"'
            elif not frontal:
                exclude = f'not frontal (view "{view}")'
            else:
                exclude = None
            out.append(make_candidate("nih", path, label, entry.get("Patient ID", ""),
                                      frontal or view, entry.get("Patient Age"),
                                      entry.get("Patient Gender"), exclude=exclude))
    return out


def read_cxnet(checkout: Checkout) -> list[Candidate]:
    """COVID-CXNet: image files of ``chest_xray_images/covid19``, metadata matched by stem."""
    meta_path = checkout.root / "metadata.csv"
    rows = read_csv_rows(meta_path) if meta_path.is_file() else []
    meta = {Path(r.get("filename", "").strip()).stem.lower(): r for r in rows}
    out = []
    for path in list_files(checkout.root, "chest_xray_images/covid19"):
        if not path.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = Path(path).stem.lower()
        row = meta.get(stem, {})
        view = row.get("view", "").strip()
        frontal = _frontal(view) or (VISUAL_CHECK_VIEW if not view else None)
        if re.fullmatch(r"\d+p-?", stem):
            exclude = 'paediatric (file name suffix "p")'
        elif not frontal:
            exclude = f'not frontal (view "{view}")'
        else:
            exclude = None
        out.append(make_candidate("cxnet", path, "COVID-19", row.get("patient_id", ""),
                                  frontal or view, row.get("age"), row.get("sex"),
                                  exclude=exclude))
    return out


READERS: dict[str, Callable[[Checkout], list[Candidate]]] = {
    "ieee": read_ieee, "mhh": read_mhh, "amed": read_actualmed, "fig1": read_figure1,
    "cxnet": read_cxnet,
}
"""Reader per source key (``nih`` also needs the NIH table, see :func:`read_nih`)."""


def read_candidates(inputs: Inputs, log: collections.Counter) -> list[Candidate]:
    """All candidates of the present sources, in source order; counts them in ``log``."""
    table = read_nih_table(inputs.nih_table) if "nih" in inputs.checkouts else {}
    found: list[Candidate] = []
    for source in SOURCES:
        checkout = inputs.checkouts.get(source.key)
        if checkout is None:
            continue
        try:
            items = (read_nih(checkout, table) if source.key == "nih"
                     else READERS[source.key](checkout))
        except (OSError, KeyError) as exc:
            raise DataBuildError(f"cannot read the metadata of {source.key} in {checkout.root}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        log[(source.key, "read")] = len(items)
        found += items
    return found
