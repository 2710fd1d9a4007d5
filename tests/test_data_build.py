"""Tests of the covid-cxr-mini builder, downloader and CLI on a tiny fabricated raw layout.

The fixture writes, for each of the six sources, a few images (distinct random
smooth textures, so none are near-duplicates by accident) and the metadata file in
the source's real column layout, plus a small NIH ``Data_Entry_2017_v2020.csv.gz``.
Special cases: one near-duplicate across sources (ieee -> cxnet), a copy of a
lateral view, a copy with a conflicting label, a lateral view, a CT row, children,
a 16-bit PNG, an RGBA PNG with a transparent white corner, a large file, and a git
checkout whose HEAD is read.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medadv_lib.cli.data_build import register
from medadv_lib.data import build as B
from medadv_lib.data import download as D
from medadv_lib.data.sources import MANIFEST, NIH_METADATA, SOURCE_BY_KEY

GIT_SHA = "1234567890abcdef1234567890abcdef12345678"

IEEE_COLUMNS = ("patientid,offset,sex,age,finding,survival,intubated,went_icu,"
                "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,"
                "neutrophil_count,lymphocyte_count,view,modality,date,location,folder,filename,"
                "doi,url,license,clinical_notes,other_notes,Unnamed: 28").split(",")
MHH_COLUMNS = ("patient_id,image_id,sex,age,size,weight,admission_offset,icu_admission_offset,"
               "icu_release_offset,death_offset,modality,projection,crp_offset,crp_val,"
               "d-dimer_offset,d-dimer_val,factor_xii_offset,factor_xii_val,ldh_offset,ldh_val,"
               "lymphocytes_offset,lymphocytes_val,neutrophils_offset,neutrophils_val,pco2_offset,"
               "pco2_val,po2_offset,po2_val").split(",")
AMED_COLUMNS = ("patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,"
                "modality,imagename,artifacts/distortion,notes").split(",")
FIG1_COLUMNS = ("patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,"
                "modality,artifacts/distortion,notes").split(",")
CXNET_COLUMNS = ("filename,patient_id,sex,age,view,label,pcr_test,survival,location,"
                 "admission_offset,symptom_offset,also_had_ct,has_fever,has_cough,has_dyspnea,"
                 "has_diarrhea,spo2,other_symptoms,medical_background,opacification,other,"
                 "is_bilateral,url").split(",")
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
               "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
               "OriginalImagePixelSpacing[x", "y]"]


# --------------------------------------------------------------------------- fabrication
def texture(seed: int, size: tuple[int, int] = (300, 280)) -> Image.Image:
    """A smooth random grayscale texture, unlike any other seed's."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((10, 10)) * 255).astype(np.uint8)
    return Image.fromarray(coarse, "L").resize(size, Image.Resampling.BICUBIC)


def save(image: Image.Image, path: Path) -> Image.Image:
    """Save by suffix (JPEG quality 95); returns the image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            path, quality=95)
    else:
        image.save(path)
    return image


def near_copy(image: Image.Image, path: Path) -> None:
    """A re-scaled, re-encoded copy of ``image`` (a near-duplicate)."""
    w, h = image.size
    save(image.resize((int(w * 0.85), int(h * 0.85)), Image.Resampling.BICUBIC), path)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """A CSV with the given header; missing fields empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def make_ieee(root: Path, seeds) -> dict[str, Image.Image]:
    """hida6 copy as a git checkout (HEAD on a branch)."""
    rows, kept = [], {}
    specs = [  # patient, finding, view, modality, age, file, kind
        ("1", "COVID-19", "PA", "X-ray", "60", "covid1.jpg", "plain"),
        ("1", "COVID-19", "AP Supine", "X-ray", "60", "covid2.png", "rgba"),
        ("2", "Pneumonia", "PA", "X-ray", "45", "pneu1.jpg", "plain"),
        ("3", "COVID-19", "L", "X-ray", "50", "lateral.jpg", "plain"),
        ("4", "COVID-19", "Axial", "CT", "70", "ct.jpg", "plain"),
        ("5", "COVID-19", "PA", "X-ray", "8", "child.jpg", "plain"),
        ("6", "No Finding", "PA", "X-ray", "40", "nofinding.jpg", "plain"),
        ("7", "todo", "PA", "X-ray", "40", "todo.jpg", "plain"),
        ("8", "COVID-19", "AP", "X-ray", "55", "dup.jpg", "plain"),
    ]
    for patient, finding, view, modality, age, name, kind in specs:
        image = texture(next(seeds))
        if kind == "rgba":
            rgb = np.stack([np.asarray(image)] * 3, axis=-1)
            alpha = np.full(rgb.shape[:2], 255, np.uint8)
            rgb[:60, :60] = 255          # white, but fully transparent -> black
            alpha[:60, :60] = 0
            image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        save(image, root / "images" / name)
        kept[name] = image
        rows.append(dict(patientid=patient, sex="M", age=age, finding=finding, view=view,
                         modality=modality, folder="images", filename=name,
                         license="CC BY 4.0" if name == "covid1.jpg" else ""))
    rows.append(dict(patientid="9", finding="COVID-19", view="Axial", modality="CT",
                     folder="volumes", filename="vol.nii.gz"))
    write_csv(root / "metadata.csv", IEEE_COLUMNS, rows)
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    (root / ".git" / "refs" / "heads" / "master").write_text(GIT_SHA + "\n")
    return kept


def make_mhh(root: Path, seeds) -> None:
    """Hannover: data.csv + png/, one 16-bit image."""
    rows = []
    for patient, image_id, projection, sixteen in (("aa11", "0001aaaa", "ap", False),
                                                   ("aa11", "0002bbbb", "pa", False),
                                                   ("bb22", "0003cccc", "pa", True)):
        image = texture(next(seeds))
        if sixteen:
            image = Image.fromarray(np.asarray(image).astype(np.uint16) * 8 + 1000)
        save(image, root / "png" / f"{image_id}.png")
        rows.append(dict(patient_id=patient, image_id=image_id, sex="f", modality="CR",
                         projection=projection))
    write_csv(root / "data.csv", MHH_COLUMNS, rows)


def make_amed(root: Path, seeds) -> Path:
    """Actualmed; returns the path of its one large file."""
    rows = []
    for patient, finding, view, name in (("ANON1", "No finding", "PA", "a1.png"),
                                         ("ANON2", "COVID-19", "AP", "a2.png"),
                                         ("ANON3", "", "PA", "a3.png"),
                                         ("ANON4", "COVID-19", "AP", "big.png")):
        if name == "big.png":
            noise = np.random.default_rng(99).integers(0, 256, (500, 500), dtype=np.uint8)
            save(Image.fromarray(noise, "L"), root / "images" / name)
        else:
            save(texture(next(seeds)), root / "images" / name)
        rows.append(dict(patientid=patient, finding=finding, view=view, modality="X-ray",
                         imagename=name))
    write_csv(root / "metadata.csv", AMED_COLUMNS, rows)
    return root / "images" / "big.png"


def make_fig1(root: Path, seeds) -> None:
    """Figure1: files named after patientid."""
    rows = []
    for pid, finding, view, age in (("COVID-00001", "COVID-19", "AP erect", "33"),
                                    ("COVID-00002", "", "AP erect", "50+"),
                                    ("COVID-00003a", "COVID-19", "AP", "28"),
                                    ("COVID-00003b", "COVID-19", "AP", "28"),
                                    ("COVID-00004", "No finding", "", ""),
                                    ("COVID-00005", "Pneumonia", "PA", "")):
        save(texture(next(seeds)), root / "images" / f"{pid}.jpg")
        rows.append(dict(patientid=pid, finding=finding, view=view, age=age, modality="X-ray"))
    write_csv(root / "metadata.csv", FIG1_COLUMNS, rows)


def make_nih(root: Path, table_dir: Path, seeds) -> Image.Image:
    """muhammedtalo/COVID-19 images and the NIH table; returns the image copied into cxnet."""
    entries = [  # file, folder, labels, patient, age, sex, view
        ("00000001_000.png", "No_findings", "No Finding", "1", "50", "M", "PA"),
        ("00000001_001.png", "No_findings", "No Finding", "1", "51", "M", "AP"),
        ("00000003_000.png", "No_findings", "Effusion", "3", "60", "F", "PA"),
        ("00000007_000.png", "No_findings", "No Finding", "7", "30", "F", "PA"),
        ("00000002_000.png", "Pneumonia", "Pneumonia|Infiltration", "2", "40", "F", "AP"),
        ("00000004_000.png", "Pneumonia", "Pneumonia", "4", "12", "M", "PA"),
    ]
    rows, conflict = [], None
    for name, folder, labels, patient, age, sex, view in entries:
        image = save(texture(next(seeds)), root / "X-Ray Image DataSet" / folder / name)
        if name == "00000007_000.png":
            conflict = image
        rows.append({"Image Index": name, "Finding Labels": labels, "Follow-up #": "0",
                     "Patient ID": patient, "Patient Age": age, "Patient Gender": sex,
                     "View Position": view})
    save(texture(next(seeds)), root / "X-Ray Image DataSet" / "No_findings" / "00000006_000.png")
    save(texture(next(seeds)), root / "X-Ray Image DataSet" / "Covid-19" / "x.png")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=NIH_COLUMNS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    table = table_dir / NIH_METADATA.path
    table.parent.mkdir(parents=True)
    table.write_bytes(gzip.compress(text.getvalue().encode()))
    return conflict


def make_cxnet(root: Path, seeds, ieee: dict[str, Image.Image], nih_copy: Image.Image) -> None:
    """COVID-CXNet: folder of images, metadata.csv for some of them."""
    folder = root / "chest_xray_images" / "covid19"
    for name in ("001.jpeg", "002.jpg", "003p.jpg", "004-.png", "040.png"):
        save(texture(next(seeds)), folder / name)
    near_copy(ieee["dup.jpg"], folder / "005.jpg")        # copy of a kept ieee image
    near_copy(ieee["lateral.jpg"], folder / "006.jpg")    # copy of an excluded image
    near_copy(nih_copy, folder / "007.jpg")               # copy with another label
    (folder / "notes.txt").write_text("not an image")
    write_csv(root / "metadata.csv", CXNET_COLUMNS, [
        dict(filename="002.jpg", patient_id="10", sex="male", age="50", view="AP"),
        dict(filename="003p.jpg", patient_id="11", sex="female", age="7", view="AP"),
        dict(filename="004-.png", patient_id="12", sex="female", age="39", view="PA"),
    ])


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict:
    """The fabricated raw layout: folder names exercise every recognition rule."""
    base = tmp_path_factory.mktemp("raw")
    seeds = iter(range(1000, 2000))
    dirs = {
        "ieee": base / "hida6+covid-chestxray-dataset",                 # owner+name, git
        "mhh": base / "covid-19-image-repository",                      # name
        "amed": base / f"Actualmed-COVID-chestxray-dataset-{SOURCE_BY_KEY['amed'].commit}",
        "fig1": base / "fig_one_copy",                                  # by content
        "nih": base / "COVID-19",                                       # name
        "cxnet": base / "armiro+COVID-CXNet",
        "nih_meta": base / f"torchxrayvision-{NIH_METADATA.commit}",
    }
    ieee = make_ieee(dirs["ieee"], seeds)
    make_mhh(dirs["mhh"], seeds)
    big = make_amed(dirs["amed"], seeds)
    make_fig1(dirs["fig1"], seeds)
    nih_copy = make_nih(dirs["nih"], dirs["nih_meta"], seeds)
    make_cxnet(dirs["cxnet"], seeds, ieee, nih_copy)
    return {"base": base, "dirs": dirs, "big": big}


def run_build(sources, out: Path, **kwargs) -> tuple[dict, list]:
    """build_dataset with warnings recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = B.build_dataset(sources, out, progress=False, **kwargs)
    return summary, caught


def read_rows(out: Path) -> list[dict]:
    with open(out / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory) -> dict:
    """One build from a list of folders (recognised by name / content)."""
    out = tmp_path_factory.mktemp("built") / "covid-cxr-mini"
    summary, caught = run_build(list(raw["dirs"].values()), out, seed=1234)
    return {"out": out, "summary": summary, "rows": read_rows(out), "warnings": caught}


# --------------------------------------------------------------------------- build
def test_layout_columns_and_images(built):
    out, rows = built["out"], built["rows"]
    assert list(rows[0]) == B.METADATA_COLUMNS
    assert (out / "SOURCES.md").is_file() and (out / "build_summary.json").is_file()
    assert not list(out.parent.glob(".covid-cxr-mini.*"))        # no staging left
    files = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))
    assert files == sorted(r["file"] for r in rows)
    for row in rows:
        assert row["file"] == f"images/{row['label']}/{row['image_id']}.png"
        with Image.open(out / row["file"]) as im:
            assert im.mode == "L" and im.size == (256, 256)
    assert built["summary"]["images"] == len(rows) == 21
    # compared with the shared snapshot's manifest: fabricated images match none of its 2326
    assert built["summary"]["manifest"] == {"manifest": "medadv_lib/data/covid-cxr-mini.sha256", "images_built": 21,
                                            "images_in_manifest": 2326, "images_matched": 0,
                                            "metadata_matches": False}
    assert json.loads((out / "build_summary.json").read_text())["manifest"]["images_built"] == 21


def test_labels_views_and_exclusions(built):
    rows, dropped = built["rows"], built["summary"]["dropped"]
    by = {(r["image_id"].split("-")[0], r["source_path"]): r for r in rows}
    counts = {}
    for r in rows:
        key = (r["image_id"].split("-")[0], r["label"])
        counts[key] = counts.get(key, 0) + 1
    assert counts == {("ieee", "COVID-19"): 3, ("ieee", "pneumonia"): 1, ("mhh", "COVID-19"): 3,
                      ("amed", "normal"): 1, ("amed", "COVID-19"): 2, ("fig1", "COVID-19"): 3,
                      ("fig1", "normal"): 1, ("fig1", "pneumonia"): 1, ("nih", "normal"): 2,
                      ("nih", "pneumonia"): 1, ("cxnet", "COVID-19"): 3}
    assert {r["view"] for r in rows} <= {"PA", "AP", "AP Supine", "AP erect",
                                          B.VISUAL_CHECK_VIEW}
    assert by[("fig1", "images/COVID-00004.jpg")]["view"] == B.VISUAL_CHECK_VIEW
    assert all(not r["age"] or float(r["age"]) >= 18 for r in rows)
    paths = {r["source_path"] for r in rows}
    for gone in ("images/lateral.jpg", "images/ct.jpg", "images/child.jpg", "images/todo.jpg",
                 "images/nofinding.jpg", "chest_xray_images/covid19/003p.jpg",
                 "chest_xray_images/covid19/040.png", "images/a3.png",
                 "X-Ray Image DataSet/No_findings/00000003_000.png",
                 "X-Ray Image DataSet/Pneumonia/00000004_000.png"):
        assert gone not in paths, gone
    assert dropped["ieee"] == {'not frontal (view "L")': 1, "CT (Axial)": 1, "age < 18": 1,
                               'finding "No Finding"': 1}
    assert dropped["cxnet"]['paediatric (file name suffix "p")'] == 1
    assert dropped["cxnet"]["visual check: looks like a CT scout view"] == 1
    assert dropped["amed"]["finding empty (inconclusive)"] == 1
    assert dropped["fig1"]["finding empty (inconclusive)"] == 1
    assert dropped["nih"]["age < 18"] == 1
    # licenses: per image where given, else the source default
    assert by[("ieee", "images/covid1.jpg")]["license"] == "CC BY 4.0"
    assert by[("ieee", "images/pneu1.jpg")]["license"] == "not stated in source metadata"
    assert by[("mhh", "png/0001aaaa.png")]["license"] == "CC BY 3.0"


def test_near_duplicates(built):
    rows, dropped = built["rows"], built["summary"]["dropped"]
    paths = {r["source_path"]: r for r in rows}
    assert paths["images/dup.jpg"]["image_id"].startswith("ieee-")        # earliest source
    for copy in ("005.jpg", "006.jpg", "007.jpg"):
        assert f"chest_xray_images/covid19/{copy}" not in paths
    assert dropped["cxnet"]["near-duplicate of a kept image"] == 1
    assert dropped["cxnet"]['near-duplicate of an excluded image (not frontal (view "L"))'] == 1
    assert dropped["cxnet"]["near-duplicate cluster with conflicting labels"] == 1
    assert dropped["nih"]["near-duplicate cluster with conflicting labels"] == 1
    assert "X-Ray Image DataSet/No_findings/00000007_000.png" not in paths


def test_patients_splits_and_commits(built):
    rows = built["rows"]
    splits: dict[str, set] = {}
    for r in rows:
        splits.setdefault(r["patient_id"], set()).add(r["split"])
        assert r["split"] in ("train", "val", "test")
    assert all(len(s) == 1 for s in splits.values())                      # patient-disjoint
    pid = {r["source_path"]: r["patient_id"] for r in rows}
    assert pid["images/COVID-00003a.jpg"] == pid["images/COVID-00003b.jpg"] == "fig1-COVID-00003"
    assert pid["X-Ray Image DataSet/No_findings/00000001_000.png"] == "nih-1"
    assert pid["chest_xray_images/covid19/001.jpeg"].startswith("cxnet-img")
    commit = {r["image_id"].split("-")[0]: r["source_commit"] for r in rows}
    assert commit["ieee"] == GIT_SHA                                      # .git HEAD
    assert commit["amed"] == SOURCE_BY_KEY["amed"].commit                  # folder name
    assert commit["mhh"] == SOURCE_BY_KEY["mhh"].commit                    # pinned
    summary = built["summary"]
    assert summary["missing_sources"] == {}
    assert sum(summary["counts_by_split"].values()) == 21


def test_pixels_16bit_and_alpha(built):
    out = built["out"]
    by = {r["source_path"]: r for r in built["rows"]}
    with Image.open(out / by["images/covid2.png"]["file"]) as im:
        assert np.asarray(im)[:20, :20].max() <= 5           # transparent corner -> black
    with Image.open(out / by["png/0003cccc.png"]["file"]) as im:
        a = np.asarray(im)
        assert a.min() <= 5 and a.max() >= 250                # 16-bit min-max scaled


def test_deterministic_and_max_file(raw, built, tmp_path):
    mapping = {k: v for k, v in raw["dirs"].items()}          # mapping form this time
    from medadv_lib.data.manifest import write_manifest
    manifest = tmp_path / "first.sha256"
    write_manifest(built["out"], manifest)                     # the manifest of the first build
    again, _ = run_build(mapping, tmp_path / "again", seed=1234, manifest=manifest)
    assert again["manifest"] == {"manifest": str(manifest), "images_built": 21, "images_in_manifest": 21,
                                 "images_matched": 21, "metadata_matches": True}
    assert (tmp_path / "again" / "metadata.csv").read_bytes() == \
        (built["out"] / "metadata.csv").read_bytes()
    for row in built["rows"]:
        assert (tmp_path / "again" / row["file"]).read_bytes() == \
            (built["out"] / row["file"]).read_bytes()
    big = raw["big"].stat().st_size
    limit = (big - 1) / 2 ** 20
    assert all(p.stat().st_size < big - 1 for p in raw["base"].rglob("*.*")
               if p != raw["big"] and p.suffix in (".png", ".jpg", ".jpeg"))
    capped, _ = run_build(mapping, tmp_path / "capped", seed=1234, max_file_mib=limit)
    assert capped["images"] == 20
    assert any("MiB or larger" in why for why in capped["dropped"]["amed"])


def test_missing_sources_warn(raw, tmp_path):
    dirs = raw["dirs"]
    summary, caught = run_build([dirs["mhh"], dirs["cxnet"], dirs["nih"]], tmp_path / "part")
    assert set(summary["missing_sources"]) == {"ieee", "amed", "fig1", "nih"}
    assert "Data_Entry" in summary["missing_sources"]["nih"]
    assert any(issubclass(w.category, B.MissingSourceWarning) for w in caught)
    assert "Missing sources" in (tmp_path / "part" / "SOURCES.md").read_text()
    assert {r["image_id"].split("-")[0] for r in read_rows(tmp_path / "part")} == {"mhh", "cxnet"}


def test_bad_inputs_and_atomic_write(raw, tmp_path, monkeypatch):
    stray = tmp_path / "stray_folder"
    stray.mkdir()
    (stray / "x.txt").write_text("?")
    with pytest.raises(B.DataBuildError, match="stray_folder"):
        B.build_dataset([stray], tmp_path / "o1", progress=False)
    with pytest.raises(B.DataBuildError, match="does not exist"):
        B.build_dataset([tmp_path / "nope"], tmp_path / "o2", progress=False)
    not_dataset = tmp_path / "precious"
    not_dataset.mkdir()
    (not_dataset / "keep.txt").write_text("mine")
    with pytest.raises(B.DataBuildError, match="not a dataset folder"):
        B.build_dataset([raw["dirs"]["mhh"]], not_dataset, progress=False)

    def boom(*_args, **_kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(B.pipeline, "write_metadata", boom)   # where build_dataset looks it up
    with pytest.raises(RuntimeError):
        run_build([raw["dirs"]["mhh"]], tmp_path / "o3")
    assert not (tmp_path / "o3").exists()
    assert not list(tmp_path.glob(".o3.*"))


def test_source_images_of_absurd_size_or_blank_are_dropped_by_name(tmp_path):
    for name, size in (("tiny.png", (31, 300)), ("huge.png", (8193, 40))):
        texture(1, size).save(tmp_path / name)
        with pytest.raises(B.UnusableImage, match=rf"{name}: implausible size .*\({size[0]}x{size[1]} px\)"):
            B.to_gray8(tmp_path / name)
    Image.new("L", (300, 280), 77).save(tmp_path / "blank.png")
    with pytest.raises(B.UnusableImage, match=r"blank\.png: blank image .*every pixel is 77"):
        B.to_gray8(tmp_path / "blank.png")
    Image.fromarray(np.full((300, 280), 5000, np.uint16)).save(tmp_path / "blank16.png")
    with pytest.raises(B.UnusableImage, match="blank16"):
        B.to_gray8(tmp_path / "blank16.png")               # min-max scaling of one value gave all black
    nan = np.asarray(texture(2), np.float32).copy()
    nan[0, 0] = np.nan
    Image.fromarray(nan, "F").save(tmp_path / "nan.tif")
    with pytest.raises(B.UnusableImage, match=r"nan\.tif: non-finite"):
        B.to_gray8(tmp_path / "nan.tif")
    low16 = Image.fromarray(np.asarray(texture(3)).astype(np.uint16))      # 16-bit, values fit in 8 bits
    low16.save(tmp_path / "low16.png")
    gray = np.asarray(B.to_gray8(tmp_path / "low16.png"))
    assert gray.min() == 0 and gray.max() == 255               # min-max: the stored bit depth cannot darken it

    # in a build: dropped, each reason its own row of the Dropped table
    mhh = tmp_path / "covid-19-image-repository"
    make_mhh(mhh, iter(range(5000, 5100)))
    texture(4, (31, 300)).save(mhh / "png" / "0004tiny.png")
    Image.new("L", (300, 280), 0).save(mhh / "png" / "0005blank.png")
    with open(mhh / "data.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MHH_COLUMNS, restval="")
        for image_id in ("0004tiny", "0005blank"):
            writer.writerow(dict(patient_id="cc33", image_id=image_id, sex="f", modality="CR", projection="pa"))
    summary, _ = run_build([mhh], tmp_path / "out", manifest=None)
    assert summary["dropped"]["mhh"] == {B.SIZE_REASON: 1, "blank image (one gray value)": 1}
    assert summary["images"] == 3 and summary["manifest"] is None


def test_bad_manifest_fails_before_building(raw, tmp_path):
    from medadv_lib.data import DataError
    with pytest.raises(DataError, match="cannot read the manifest"):
        B.build_dataset([raw["dirs"]["mhh"]], tmp_path / "o", progress=False, manifest=tmp_path / "nope.sha256")
    assert not (tmp_path / "o").exists()


def test_exif_orientation(tmp_path):
    image = texture(5, (200, 100))                                 # not blank: a blank source is dropped
    exif = Image.Exif()
    exif[0x0112] = 6                                               # rotate 90 on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert B.to_gray8(tmp_path / "r.jpg").size == (100, 200)


def test_pair_search_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 40
    base = rng.random((n, 256)) > 0.5
    base[5] = base[3]
    base[7, :30] = ~base[2, :30]
    base[7, 30:] = base[2, 30:]
    fp = B.Fingerprints(base, base.copy(), rng.standard_normal((n, 1024)).astype(np.float32),
                        rng.standard_normal((n, 6400)).astype(np.float32))
    pairs = B.find_similar_pairs(fp, block=7)
    got = {(int(i), int(j), int(d)) for i, j, d in zip(pairs.i, pairs.j, pairs.dist)}
    want = {(i, j, int((base[i] != base[j]).sum())) for i in range(n) for j in range(i + 1, n)
            if (base[i] != base[j]).sum() <= 40}
    assert got == want and (3, 5, 0) in got and (2, 7, 30) in got


# --------------------------------------------------------------------------- download
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(raw, tmp_path_factory):
    """Loopback HTTP server serving each manifest item at /{repo}/{commit}/{path}."""
    root = tmp_path_factory.mktemp("srv")
    digests = {}
    for item in MANIFEST:
        target = root / item.repo / item.commit / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.is_archive:
            with tarfile.open(target, "w:gz") as tar:
                tar.add(raw["dirs"][item.key], arcname=item.dirname,   # no .git, like GitHub
                        filter=lambda ti: None if ".git" in Path(ti.name).parts else ti)
        else:
            target.write_bytes((raw["dirs"]["nih_meta"] / item.path).read_bytes())
        digests[item.key] = hashlib.sha256(target.read_bytes()).hexdigest()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    template = f"http://127.0.0.1:{httpd.server_address[1]}/{{repo}}/{{commit}}/{{path}}"
    yield {"root": root, "template": template, "digests": digests}
    httpd.shutdown()
    httpd.server_close()


def test_download_checksums(server, tmp_path):
    good = [dataclasses.replace(SOURCE_BY_KEY["mhh"], sha256=server["digests"]["mhh"])]
    folders = D.download_sources(tmp_path / "dl", manifest=good, url_template=server["template"],
                                 progress=False)
    assert (folders["mhh"] / "data.csv").is_file()
    assert B.identify_source_dir(folders["mhh"]) == ("mhh", SOURCE_BY_KEY["mhh"].commit)

    bad = [dataclasses.replace(SOURCE_BY_KEY["fig1"], sha256="0" * 64)]
    with pytest.raises(D.ChecksumError, match="checksum mismatch"):
        D.download_sources(tmp_path / "dl2", manifest=bad, url_template=server["template"],
                           progress=False)
    assert [p.name for p in (tmp_path / "dl2").iterdir()] == []          # nothing left


def test_download_trust_on_first_use_and_build(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDADV_SOURCE_URL", server["template"])
    dest = tmp_path / "raw"
    summary = D.download_and_build(dest, tmp_path / "out", progress=False)
    assert summary["images"] == 21
    recorded = json.loads((dest / D.CHECKSUMS_FILE).read_text())
    assert {v["key"]: v["sha256"] for v in recorded.values()} == server["digests"]

    # a later download must match the record: change the served archive
    item = SOURCE_BY_KEY["cxnet"]
    served = server["root"] / item.repo / item.commit / item.path
    original = served.read_bytes()
    try:
        served.write_bytes(original + b"\0" * 1024)
        shutil.rmtree(dest / item.dirname)
        with pytest.raises(D.ChecksumError, match="checksums.json"):
            D.download_sources(dest, manifest=[item], progress=False)
        assert not (dest / item.dirname).exists()
        assert not list(dest.glob(".download-*"))
    finally:
        served.write_bytes(original)
    again = D.download_sources(dest, manifest=[item], progress=False)      # verified again
    assert again["cxnet"] == dest / item.dirname


def test_archive_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("top/../../evil.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "x").mkdir()
    with pytest.raises(D.UnsafeArchiveError):
        D.extract_archive(archive, tmp_path / "x" / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x" / "out").exists()


# --------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medadv")
    groups = parser.add_subparsers(dest="group")
    data = groups.add_parser("data")
    register(data.add_subparsers(dest="data_command"))
    return parser


def test_cli_build_and_errors(raw, tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(["data", "build", "--from", str(raw["base"]),   # parent folder
                              "--out", str(tmp_path / "cli"), "--json"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ok"] and result["images"] == 21 and result["out"] == str(tmp_path / "cli")
    assert "seconds" in result and result["counts_by_label"]["normal"] == 4
    assert result["manifest"]["images_matched"] == 0 and result["manifest"]["images_built"] == 21
    from medadv_lib.cli.data_build import _report
    _report(argparse.Namespace(json=False), "data build", {k: v for k, v in result.items() if k != "seconds"}, 0.0)
    assert ("0 of 21 built images match the manifest medadv_lib/data/covid-cxr-mini.sha256 (2326 images; "
            "metadata.csv differs)") in capsys.readouterr().out

    args = parser.parse_args(["data", "build", "--from", str(tmp_path / "missing"),
                              "--out", str(tmp_path / "x")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_cli_download(server, tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(["data", "download", "--dest", str(tmp_path / "d"), "--out",
                              str(tmp_path / "o"), "--url-template", server["template"],
                              "--json"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 21 and set(result["downloaded"]) == {i.key for i in MANIFEST}

    bad = server["template"].replace("{commit}", "nosuchcommit")
    args = parser.parse_args(["data", "download", "--dest", str(tmp_path / "d2"),
                              "--url-template", bad, "--no-build", "--json"])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert "download failed" in captured.err and "Traceback" not in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["ok"] is False
