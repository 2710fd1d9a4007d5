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


# --------------------------------------------------------------------------------------------
# every decode path validates what it decodes (decode_gray: read_image, CXRDataset, load_split, data check)
# --------------------------------------------------------------------------------------------

def _texture(h=64, w=64, peak=255, dtype=np.uint8):
    """A smooth non-blank gradient of ``h x w`` whose largest value is ``peak``."""
    ramp = np.linspace(0, 1, h * w).reshape(h, w)
    return np.round(ramp * peak).astype(dtype)


def _png(path, arr, **save_kwargs):
    Image.fromarray(arr).save(path, **save_kwargs)
    return path


def test_16bit_image_whose_values_fit_in_8_bits_is_refused_naming_the_file(tmp_path):
    from medadv_lib.data import ImageDecodeError, read_image
    p = _png(tmp_path / "eight-in-sixteen.png", _texture(peak=255, dtype=np.uint16))
    assert Image.open(p).mode == "I;16"
    with pytest.raises(ImageDecodeError, match=r"eight-in-sixteen\.png: 16-bit image whose values fit in 8 bits "
                                               r"\(largest 255 of 65535\).*0\.4% bright.*8-bit 'L'"):
        read_image(p)
    assert "fit in 8 bits" in inspect_image(p)


def test_16bit_image_with_12_bit_values_is_refused_but_a_full_range_one_reads(tmp_path):
    from medadv_lib.data import ImageDecodeError, read_image
    twelve = _png(tmp_path / "twelve.png", _texture(peak=4095, dtype=np.uint16))
    with pytest.raises(ImageDecodeError, match=r"twelve\.png: 16-bit image whose values fit in 12 bits"):
        read_image(twelve)
    full = _png(tmp_path / "full.png", _texture(peak=60000, dtype=np.uint16))
    arr = read_image(full)
    assert arr.dtype == np.float32 and arr.max() == pytest.approx(60000 / 65535) and arr.min() == 0
    assert inspect_image(full) is None
    lowest = _png(tmp_path / "lowest.png", _texture(peak=4096, dtype=np.uint16))      # 13 bits: accepted
    assert read_image(lowest).max() == pytest.approx(4096 / 65535)


def test_32bit_values_outside_the_16bit_range_are_refused(tmp_path):
    from medadv_lib.data import ImageDecodeError, read_image
    p = tmp_path / "wide.tif"
    Image.fromarray(_texture(peak=70000, dtype=np.int32)).save(p)
    assert Image.open(p).mode == "I"
    with pytest.raises(ImageDecodeError, match=r"wide\.tif: values 0\.\.70000 outside the 16-bit range"):
        read_image(p)


def test_8bit_image_with_a_transparent_gray_is_refused(tmp_path):
    from medadv_lib.data import ImageDecodeError, read_image
    p = _png(tmp_path / "trns.png", _texture(), transparency=255)
    assert Image.open(p).info.get("transparency") == 255
    with pytest.raises(ImageDecodeError, match=r"trns\.png: 8-bit grayscale with a transparent gray value"):
        read_image(p)


def test_exif_rotation_the_decoder_would_ignore_is_refused(tmp_path):
    from medadv_lib.data import ImageDecodeError, read_image
    exif = Image.Exif()
    exif[0x0112] = 6
    p = _png(tmp_path / "rotated.png", _texture(64, 96), exif=exif)
    with pytest.raises(ImageDecodeError, match=r"rotated\.png: EXIF orientation 6"):
        read_image(p)
    upright = Image.Exif()
    upright[0x0112] = 1
    assert read_image(_png(tmp_path / "upright.png", _texture(64, 96), exif=upright)).shape == (64, 96)


@pytest.mark.parametrize("size", [(31, 64), (64, 20), (8193, 40)])
def test_absurd_size_is_refused_before_decoding(tmp_path, size):
    from medadv_lib.data import ImageDecodeError, read_image
    from medadv_lib.data.dataset import DECODE_MAX_SIDE, DECODE_MIN_SIDE
    w, h = size
    p = _png(tmp_path / "odd.png", _texture(h, w))
    with pytest.raises(ImageDecodeError, match=rf"odd\.png: implausible size {w}x{h} px.*under {DECODE_MIN_SIDE} "
                                               rf"or over {DECODE_MAX_SIDE} px"):
        read_image(p)
    assert f"implausible size {w}x{h}" in inspect_image(p)


def test_smallest_decodable_side_reads(tmp_path):
    from medadv_lib.data import read_image
    assert read_image(_png(tmp_path / "ok.png", _texture(32, 32))).shape == (32, 32)


def test_every_decode_path_uses_the_validation(tmp_path):
    """CXRDataset and load_split (through read_image) refuse the same file, naming it."""
    import pandas as pd

    from medadv_lib.data import CXRDataset, ImageDecodeError, load_split
    bad = "images/normal/n-0001.png"
    (tmp_path / "images" / "normal").mkdir(parents=True)
    _png(tmp_path / bad, _texture(peak=200, dtype=np.uint16))
    rows = [{"image_id": "n-0001", "file": bad, "label": "normal", "patient_id": "p1", "split": s}
            for s in ("train",)]
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(ImageDecodeError, match=r"n-0001\.png: 16-bit image whose values fit in 8 bits"):
        CXRDataset("train", 32, tmp_path)[0]
    with pytest.raises(ImageDecodeError, match=r"n-0001\.png"):
        load_split("train", 32, tmp_path)


def test_check_lists_every_decode_problem_together(mini_data, capsys):
    root = mini_data()
    files = _files(root, "train", "COVID-19")[:4] + _files(root, "test", "pneumonia")[:1]
    eight16, trns, rotated, tiny, good16 = files
    _png(root / eight16, _texture(256, 256, peak=255, dtype=np.uint16))
    _png(root / trns, np.asarray(Image.open(root / trns)), transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 8
    _png(root / rotated, np.asarray(Image.open(root / rotated)), exif=exif)
    _png(root / tiny, _texture(20, 256))
    _png(root / good16, np.asarray(Image.open(root / good16)).astype(np.uint16) * 257)   # a valid 16-bit copy

    assert main(["data", "check", "--data", str(root), "--json"]) == 2
    res, _, err = _last_json(capsys)
    found = {p["file"]: p["problem"] for p in res["problems"]}
    assert set(found) == {eight16, trns, rotated, tiny} and res["images_decoded"] == 36
    assert "fit in 8 bits" in found[eight16] and "transparent gray" in found[trns]
    assert "EXIF orientation 8" in found[rotated] and "implausible size 256x20" in found[tiny]
    assert "4 bad image(s)" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "check", "--data", str(root)]) == 2
    out = capsys.readouterr().out
    for f, problem in found.items():
        assert f"  {f}: {problem}" in out.splitlines()        # one line each
