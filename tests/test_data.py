"""Data discovery, validation and loading, on the real dataset and on broken copies of it."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from medadv_lib import LABELS
from medadv_lib.data import (CXRDataset, DataError, augment_batch, class_weights, find_data_dir, image_norm_stats,
                             load_metadata, load_split, read_image, stratified_indices)


@pytest.fixture()
def mini_copy(tmp_path):
    """A small copy of the real dataset (12 images per split, metadata trimmed) we may break."""
    src = find_data_dir()
    df = pd.read_csv(src / "metadata.csv", dtype=str, keep_default_na=False)
    keep = pd.concat([g.head(4) for _, g in df.groupby(["split", "label"])])
    for f in keep["file"]:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / f, tmp_path / f)
    keep.to_csv(tmp_path / "metadata.csv", index=False)
    return tmp_path


def test_real_dataset_is_valid_and_patient_disjoint():
    df = load_metadata()
    assert set(df["label"]) == set(LABELS)
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    assert (df.groupby("split").size() > 300).all()


def test_lookup_order_env_then_defaults(monkeypatch, mini_copy, tmp_path_factory):
    monkeypatch.setenv("MEDADV_DATA", str(mini_copy))
    assert find_data_dir() == mini_copy.resolve()
    explicit = find_data_dir(mini_copy)
    assert explicit == mini_copy.resolve()
    monkeypatch.delenv("MEDADV_DATA")
    assert (find_data_dir() / "metadata.csv").is_file()


def test_missing_data_dir_names_where_it_looked_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDADV_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere[\s\S]*medadv data download"):
        find_data_dir()


def test_missing_column_is_named(mini_copy):
    df = pd.read_csv(mini_copy / "metadata.csv", dtype=str)
    df.drop(columns=["patient_id"]).to_csv(mini_copy / "metadata.csv", index=False)
    with pytest.raises(DataError, match="patient_id"):
        load_metadata(mini_copy)


def test_unknown_label_row_is_reported_by_file(mini_copy):
    df = pd.read_csv(mini_copy / "metadata.csv", dtype=str, keep_default_na=False)
    df.loc[0, "label"] = "flu"
    df.to_csv(mini_copy / "metadata.csv", index=False)
    with pytest.raises(DataError, match=df.loc[0, "file"]):
        load_metadata(mini_copy)


def test_missing_file_is_reported(mini_copy):
    df = pd.read_csv(mini_copy / "metadata.csv", dtype=str, keep_default_na=False)
    (mini_copy / df.loc[3, "file"]).unlink()
    with pytest.raises(DataError, match="missing.*" + df.loc[3, "file"]):
        load_metadata(mini_copy)


def test_patient_leak_between_splits_is_an_error(mini_copy):
    df = pd.read_csv(mini_copy / "metadata.csv", dtype=str, keep_default_na=False)
    other = df.index[df["split"] != df.loc[0, "split"]][0]
    df.loc[other, "patient_id"] = df.loc[0, "patient_id"]
    df.to_csv(mini_copy / "metadata.csv", index=False)
    with pytest.raises(DataError, match="patient-disjoint"):
        load_metadata(mini_copy)


def test_corrupt_png_names_the_file(mini_copy):
    df = load_metadata(mini_copy)
    bad = df["path"].iloc[0]
    with open(bad, "r+b") as f:
        f.seek(40)
        f.write(b"\x00" * 200)
        f.truncate(300)
    with pytest.raises(DataError, match="cannot read image .*" + df["image_id"].iloc[0]):
        CXRDataset(None, 32, mini_copy).tensors()


def test_rgb_image_is_rejected_with_fix(tmp_path):
    from PIL import Image
    p = tmp_path / "rgb.png"
    Image.new("RGB", (8, 8)).save(p)
    with pytest.raises(DataError, match=r"rgb\.png.*1-channel.*convert"):
        read_image(p)


def test_dataset_items_are_unit_range_tensors(mini_copy):
    ds = CXRDataset("train", 48, mini_copy, crop_top=True)
    x, y = ds[0]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and y in range(3)
    aug = CXRDataset("train", 48, mini_copy, augment=True)[0][0]
    assert aug.shape == (1, 48, 48) and 0 <= aug.min() and aug.max() <= 1


def test_crop_top_removes_the_top_sixth(mini_copy):
    df = load_metadata(mini_copy)
    full = read_image(df["path"].iloc[0])
    crop = read_image(df["path"].iloc[0], crop_top=True)
    assert crop.shape == (full.shape[0] - full.shape[0] // 6, full.shape[1])
    np.testing.assert_array_equal(crop, full[full.shape[0] // 6:])


def test_load_split_limit_is_stratified_and_seeded():
    x, y = load_split("test", 32)
    xs, ys = load_split("test", 32, limit=60, seed=1)
    assert xs.shape == (60, 1, 32, 32)
    frac_full = torch.bincount(y, minlength=3) / len(y)
    frac_sub = torch.bincount(ys, minlength=3) / len(ys)
    assert torch.allclose(frac_full, frac_sub, atol=0.03)
    assert torch.equal(load_split("test", 32, limit=60, seed=1)[1], ys)
    assert set(stratified_indices(np.array([0] * 5 + [1] * 5), 4, 0)) <= set(range(10))


def test_augment_keeps_range_and_shape_and_is_seeded():
    x = torch.rand(5, 1, 32, 32)
    a = augment_batch(x, generator=torch.Generator().manual_seed(0))
    b = augment_batch(x, generator=torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, x)


def test_class_weights_balance_the_loss():
    w = class_weights(torch.tensor([0, 1, 1, 2, 2, 2, 2]))
    counts = torch.tensor([1.0, 2.0, 4.0])
    assert torch.allclose(w * counts, (w * counts)[0].expand(3))


def test_image_norm_stats_match_a_direct_computation():
    s = image_norm_stats(32)
    x, _ = load_split("train", 32)
    assert s["n"] == len(x) == 1628
    assert s["mean_norm_2"] == pytest.approx(float(x.flatten(1).norm(dim=1).mean()), rel=1e-5)
    assert s["mean_norm_inf"] == pytest.approx(float(x.flatten(1).amax(1).mean()), rel=1e-5)
    assert 0 < s["mean_norm_inf"] <= 1 and s["mean_norm_2"] > s["mean_norm_inf"]


# Decoding the real snapshot must give exactly the tensors it gave before the decode validation (issue 23)
# existed. Both digests were computed once with the code of commit 03fb5a8 (before decode_gray), on the shared
# snapshot (the files of medadv_lib/data/covid-cxr-mini.sha256), by
#   x, y = load_split("val", 256); sha256(x.numpy().tobytes() + y.numpy().tobytes())            -> _VAL_256
#   for split in train, val, test: x, y = load_split(split, 256); h.update(x.numpy().tobytes()); h.update(y...)
#                                                                                                 -> _ALL_256
# (256 px is the snapshot's own size: no resize, so the digest depends only on the decode and x / 255.)
_VAL_256 = "86bfc3217a273f36e0c289d38085c1681013d6a6fd96ccdb07725ba07b6d97d3"
_ALL_256 = "4d29e26d377e58bebfaba95b1de97a166d25bd5251844a988bebca0f7a8dbca0"


def _is_the_snapshot(root) -> bool:
    from medadv_lib.data.manifest import verify_dataset
    return verify_dataset(root)["ok"]


def test_load_split_of_the_snapshot_is_unchanged_by_the_decode_validation():
    import hashlib
    root = find_data_dir()
    if not _is_the_snapshot(root):
        pytest.skip(f"{root} is not the shared snapshot (medadv data check --verify fails), so its digest differs")
    x, y = load_split("val", 256)
    assert hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest() == _VAL_256


def test_every_snapshot_image_decodes_as_before():
    """The same digest as load_split over all three splits, computed image by image (read_image is what
    load_split stacks), so the 2326 images never sit in memory at once."""
    import hashlib
    from medadv_lib.data import SPLITS
    root = find_data_dir()
    if not _is_the_snapshot(root):
        pytest.skip(f"{root} is not the shared snapshot (medadv data check --verify fails), so its digest differs")
    df = load_metadata(root)
    digest = hashlib.sha256()
    for split in SPLITS:
        part = df[df["split"] == split]
        for path in part["path"]:
            digest.update(read_image(path, 256).tobytes())
        digest.update(part["y"].to_numpy().astype(np.int64).tobytes())
    assert digest.hexdigest() == _ALL_256
