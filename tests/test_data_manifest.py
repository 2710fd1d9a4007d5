"""The SHA-256 manifest of the shared snapshot: committed, what ``medadv data manifest`` writes, and
``medadv data check --verify`` passes on the snapshot and names each changed, missing or extra file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from medadv_lib.cli import main
from medadv_lib.data import DataError, find_data_dir
from medadv_lib.data.fingerprint import dataset_files
from medadv_lib.data.manifest import (SNAPSHOT_MANIFEST, compare, dataset_hashes, format_manifest, read_manifest,
                                      verify_dataset)


def _last_json(capsys):
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), out, err


def test_committed_manifest_is_what_the_command_writes_for_the_snapshot(tmp_path, capsys):
    root = find_data_dir()
    text = SNAPSHOT_MANIFEST.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 2327 and lines[-1].endswith("  metadata.csv")          # 2326 images + the table
    assert all(line.split("  ", 1)[1].startswith("images/") for line in lines[:-1])
    assert main(["data", "manifest", "--data", str(root), "--out", str(tmp_path / "m.sha256"), "--json"]) == 0
    res, _, _ = _last_json(capsys)
    assert res["ok"] and res["files"] == 2327 and res["images"] == 2326
    assert (tmp_path / "m.sha256").read_text(encoding="utf-8") == text, \
        "the shared snapshot changed, or the manifest was edited by hand: rerun medadv data manifest"


def test_check_verify_passes_on_the_snapshot(capsys):
    assert main(["data", "check", "--verify", "--json"]) == 0
    res, _, _ = _last_json(capsys)
    assert res["ok"] and res["manifest"]["ok"] and res["manifest"]["matched"] == 2327
    assert res["manifest"]["manifest"] == "medadv_lib/data/covid-cxr-mini.sha256"
    assert res["images_decoded"] == 2326 and res["problems"] == []


@pytest.fixture()
def linked_snapshot(tmp_path):
    """The snapshot's layout with every file a symlink to the real one (no copy), which a test may change."""
    src, root = find_data_dir(), tmp_path / "linked"
    for rel, path in dataset_files(src):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, root / rel)
    return root


def test_verify_names_the_changed_the_missing_and_the_extra_image(linked_snapshot, capsys):
    root = linked_snapshot
    images = sorted(rel for rel, _ in dataset_files(root) if rel.startswith("images/"))
    changed, missing, extra = images[10], images[20], "images/normal/zz-extra.png"
    pixels = np.asarray(Image.open(root / changed)).copy()
    pixels[0, 0] ^= 1                                                     # one pixel, one gray level
    (root / changed).unlink()
    Image.fromarray(pixels).save(root / changed)                          # still a valid image
    (root / missing).unlink()
    shutil.copy(root / images[30], root / extra)

    got = verify_dataset(root)
    assert (got["changed"], got["missing"], got["extra"]) == ([changed], [missing], [extra])
    assert not got["ok"] and got["matched"] == 2325 and got["files"] == 2327

    # the missing file also breaks metadata.csv's check: both are reported, every file by name
    assert main(["data", "check", "--data", str(root), "--verify", "--json"]) == 2
    res, _, err = _last_json(capsys)
    assert res["ok"] is False and res["manifest"]["changed"] == [changed] and res["manifest"]["extra"] == [extra]
    assert len(err.strip().splitlines()) == 1 and err.startswith("medadv data check: error: ")
    assert all(name in err for name in (changed, missing, extra)) and "3 file(s) differ from the manifest" in err
    assert main(["data", "check", "--data", str(root), "--verify"]) == 2
    out = capsys.readouterr().out
    for line in (f"  changed: {changed}", f"  missing: {missing}", f"  extra: {extra}"):
        assert line in out.splitlines()


def test_own_manifest_round_trip_and_one_changed_image_fails(mini_data, tmp_path, capsys):
    root = mini_data()
    manifest = tmp_path / "mini.sha256"
    assert main(["data", "manifest", "--data", str(root), "--out", str(manifest)]) == 0
    assert "wrote the SHA-256 of 37 files" in capsys.readouterr().out
    assert main(["data", "check", "--data", str(root), "--verify", str(manifest), "--json"]) == 0
    res, _, _ = _last_json(capsys)
    assert res["ok"] and res["manifest"]["matched"] == 37 and res["manifest"]["manifest"] == str(manifest)
    if shutil.which("sha256sum"):                                         # the format of coreutils
        subprocess.run(["sha256sum", "-c", "--quiet", str(manifest)], cwd=root, check=True)

    victim = sorted(read_manifest(manifest))[0]
    pixels = np.asarray(Image.open(root / victim)).copy()
    pixels[5, 5] = 255 - pixels[5, 5]
    Image.fromarray(pixels).save(root / victim)
    assert main(["data", "check", "--data", str(root), "--verify", str(manifest), "--json"]) == 2
    res, _, err = _last_json(capsys)
    assert res["manifest"]["changed"] == [victim] and res["problems"] == []   # it still decodes fine
    assert f"changed {victim}" in err and len(err.strip().splitlines()) == 1
    # against the snapshot's manifest the small copy misses most files
    snapshot = verify_dataset(root)
    assert len(snapshot["missing"]) == 2326 - 36 and sorted(snapshot["changed"]) == sorted(["metadata.csv", victim])


def test_bad_manifest_and_bad_out_are_one_line_each(mini_data, tmp_path, capsys):
    root = mini_data(per_class=1)
    bad = tmp_path / "bad.sha256"
    bad.write_text("0" * 64 + "  metadata.csv\nnot a line\n", encoding="utf-8")
    assert main(["data", "check", "--data", str(root), "--verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:2: this line is not '<sha256>  <relative path>'" in err
    assert "medadv data manifest" in err
    with pytest.raises(DataError, match="repeats the path .metadata.csv."):
        bad.write_text(("0" * 64 + "  metadata.csv\n") * 2, encoding="utf-8")
        read_manifest(bad)
    with pytest.raises(DataError, match=r"bad\.sha256:1: .*images/\.\./\.\./x.* outside the dataset folder"):
        bad.write_text("0" * 64 + "  images/../../x\n", encoding="utf-8")
        read_manifest(bad)
    assert main(["data", "check", "--data", str(root), "--verify", str(tmp_path / "nope.sha256")]) == 2
    assert "cannot read the manifest" in capsys.readouterr().err
    assert main(["data", "manifest", "--data", str(root), "--out", str(tmp_path)]) == 2
    assert "is a folder: pass a file name" in capsys.readouterr().err
    assert main(["data", "manifest", "--data", str(root), "--out", str(root / "images" / "m.sha256")]) == 2
    assert "inside the dataset's images/ folder" in capsys.readouterr().err
    assert not (root / "images" / "m.sha256").exists()


def test_compare_and_format_are_exact():
    a, b = "a" * 64, "b" * 64
    assert format_manifest({"metadata.csv": a, "images/x.png": b}) == f"{b}  images/x.png\n{a}  metadata.csv\n"
    got = compare({"metadata.csv": a, "images/new.png": b}, {"metadata.csv": b, "images/old.png": b})
    assert got == {"ok": False, "files": 2, "matched": 0, "changed": ["metadata.csv"], "missing": ["images/old.png"],
                   "extra": ["images/new.png"]}
    assert dataset_hashes.__doc__ and verify_dataset.__doc__
