"""``medadv data check`` decodes every image and reports each bad one by file; empty splits fail,
a split without a class warns.  Runs on small copies of the real dataset (``mini_data``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medadv_lib.cli import main
from medadv_lib.data.check import check_images, inspect_image
from medadv_lib.data import load_metadata


def _last_json(capsys):
    out, err = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1]), out, err


def _files(root, split, label):
    import pandas as pd
    df = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    return list(df[(df["split"] == split) & (df["label"] == label)]["file"])


def test_clean_copy_passes_and_every_image_is_decoded(mini_data, capsys):
    root = mini_data()
    assert main(["data", "check", "--data", str(root), "--json"]) == 0
    res, _, _ = _last_json(capsys)
    assert res["ok"] and res["problems"] == [] and res["warnings"] == [] and res["images_decoded"] == 36
    assert main(["data", "check", "--data", str(root)]) == 0
    assert "all 36 images decode" in capsys.readouterr().out


def test_each_bad_image_is_reported_by_file(mini_data, capsys):
    root = mini_data()
    empty, truncated, rgb, tiny, blank = _files(root, "train", "normal")[:3] + _files(root, "val", "COVID-19")[:2]
    (root / empty).write_bytes(b"")
    data = (root / truncated).read_bytes()
    (root / truncated).write_bytes(data[: len(data) // 2])
    Image.open(root / rgb).convert("RGB").save(root / rgb)
    Image.open(root / tiny).resize((16, 16)).save(root / tiny)
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(root / blank)

    assert main(["data", "check", "--data", str(root), "--json", "--workers", "2"]) == 2
    res, _, err = _last_json(capsys)
    assert res["ok"] is False and res["images_decoded"] == 36
    found = {p["file"]: p["problem"] for p in res["problems"]}
    assert set(found) == {empty, truncated, rgb, tiny, blank}
    assert "empty file (0 bytes)" in found[empty]
    assert "truncated" in found[truncated]
    assert "mode 'RGB'" in found[rgb] and "convert('L')" in found[rgb]
    assert "implausible size 16x16" in found[tiny]
    assert "blank image" in found[blank]
    assert "5 bad image(s)" in err and err.count("medadv data check: error") == 1

    assert main(["data", "check", "--data", str(root)]) == 2        # the text report names each file
    out = capsys.readouterr().out
    assert all(f in out for f in found)


def test_inspect_image_accepts_the_real_images(mini_data):
    root = mini_data(per_class=1)
    df = load_metadata(root)
    assert check_images(df, workers=2) == []
    assert all(inspect_image(p) is None for p in df["path"])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_empty_split_fails_naming_it(mini_data, capsys, split):
    root = mini_data(drop=lambda df: df["split"] == split)
    assert main(["data", "check", "--data", str(root), "--json"]) == 2
    res, _, err = _last_json(capsys)
    assert res["ok"] is False and f"the '{split}' split has no images" in res["error"]
    assert f"the '{split}' split has no images" in err


def test_split_without_a_class_warns(mini_data, capsys):
    root = mini_data(drop=lambda df: (df["split"] == "val") & (df["label"] == "pneumonia"))
    assert main(["data", "check", "--data", str(root), "--json"]) == 0
    res, _, _ = _last_json(capsys)
    assert res["ok"] and res["warnings"] == [
        "the 'val' split has no pneumonia image: its sensitivity is undefined (null) there"]
    assert main(["data", "check", "--data", str(root)]) == 0
    assert "warning: the 'val' split has no pneumonia image" in capsys.readouterr().out
