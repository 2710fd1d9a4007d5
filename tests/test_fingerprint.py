"""The dataset fingerprint (medadv_lib.data.fingerprint): keyed by content, memoised by stat signature.

Each test builds a tiny dataset folder (metadata.csv + a few PNGs) and a private cache folder
($XDG_CACHE_HOME), so nothing touches the real data or the user's cache.
"""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from medadv_lib.data import DataError
from medadv_lib.data import fingerprint as F


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """Six 16x16 PNGs and a metadata.csv, old enough that nothing is 'racy'; cache in tmp."""
    root = tmp_path / "covid-cxr-mini"
    rows = ["image_id,file,label,patient_id,split"]
    for i, label in enumerate(["normal", "pneumonia", "COVID-19"] * 2):
        rel = f"images/{label}/x-{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8), "L").save(root / rel)
        rows.append(f"x-{i},{rel},{label},p{i},train")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(F, "RACY_SECONDS", 0.0)      # freshly written files may be memoised here
    return root


@pytest.fixture
def reads(monkeypatch):
    """Count the files whose bytes are read (every read goes through _hash_file)."""
    seen: list[str] = []
    real = F._hash_file

    def counting(path):
        seen.append(os.path.relpath(path))
        return real(path)
    monkeypatch.setattr(F, "_hash_file", counting)
    return seen


def _image(root):
    return root / "images" / "COVID-19" / "x-2.png"


def test_unchanged_dataset_same_fingerprint_without_rehashing(dataset, reads, tmp_path):
    first = F.dataset_fingerprint(dataset)
    assert len(reads) == 7                                        # 6 images + metadata.csv
    assert F.cache_file(dataset).is_file()
    assert str(F.cache_file(dataset)).startswith(str(tmp_path / "cache" / "medadv"))
    assert not any(p.name.startswith(".") or p.suffix == ".json" for p in dataset.rglob("*"))
    reads.clear()
    assert F.dataset_fingerprint(dataset) == first
    assert reads == []                                            # nothing read again
    assert F.dataset_fingerprint(dataset, use_cache=False) == first   # memo agrees with a full hash


def test_editing_one_image_changes_the_fingerprint_and_rehashes_only_it(dataset, reads):
    first = F.dataset_fingerprint(dataset)
    target = _image(dataset)
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF                                              # same size, other bytes
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime restored
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    reads.clear()
    second = F.dataset_fingerprint(dataset)
    assert second != first                                        # caught through st_ctime_ns
    assert reads == [os.path.relpath(target)]
    assert second == F.dataset_fingerprint(dataset, use_cache=False)


def test_table_rename_add_remove_change_it_and_a_move_does_not(dataset, tmp_path):
    base = F.dataset_fingerprint(dataset)
    with open(dataset / "metadata.csv", "a") as f:
        f.write("\n")
    edited_table = F.dataset_fingerprint(dataset)
    assert edited_table != base
    extra = dataset / "images" / "normal" / "new.png"
    extra.write_bytes(_image(dataset).read_bytes())
    added = F.dataset_fingerprint(dataset)
    assert added != edited_table
    extra.unlink()
    assert F.dataset_fingerprint(dataset) == edited_table          # back to the same content
    (dataset / "images" / "normal" / ".DS_Store").write_bytes(b"junk")  # hidden files do not count
    assert F.dataset_fingerprint(dataset) == edited_table
    _image(dataset).rename(_image(dataset).with_name("renamed.png"))
    assert F.dataset_fingerprint(dataset) != edited_table
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    dataset.rename(moved)
    assert F.dataset_fingerprint(moved) == F.dataset_fingerprint(moved, use_cache=False)


@pytest.mark.parametrize("how", ["chmod", "under-a-file", "erofs"])
def test_read_only_cache_folder_still_works(dataset, reads, tmp_path, monkeypatch, how):
    """A cache folder that cannot be written: a 0500 folder (skipped as root, who writes anyway), a
    path below a regular file, a read-only file system (EROFS from the write): same fingerprint, by
    hashing every file, and no error."""
    import errno

    cache = tmp_path / "ro-cache"
    if how == "chmod":
        cache.mkdir()
        cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
        if os.access(cache, os.W_OK):
            cache.chmod(stat.S_IRWXU)
            pytest.skip("running as a user who writes anywhere (root); the other cases cover it")
    elif how == "under-a-file":
        (tmp_path / "a-file").write_text("x")
        cache = tmp_path / "a-file" / "cache"
    else:
        def erofs(*_args, **_kwargs):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(F, "atomic_write_text", erofs)           # where the memo writer looks it up
    try:
        expected = F.dataset_fingerprint(dataset, use_cache=False)
        reads.clear()
        assert F.dataset_fingerprint(dataset, cache_dir=cache) == expected
        assert len(reads) == 7
        assert not cache.is_dir() or list(cache.iterdir()) == []      # nothing written
        reads.clear()
        assert F.dataset_fingerprint(dataset, cache_dir=cache) == expected
        assert len(reads) == 7                                        # falls back to hashing everything
    finally:
        if how == "chmod":
            cache.chmod(stat.S_IRWXU)


def test_corrupt_or_foreign_cache_file_is_ignored(dataset, reads):
    first = F.dataset_fingerprint(dataset)
    memo = F.cache_file(dataset)
    memo.write_text("{not json")
    reads.clear()
    assert F.dataset_fingerprint(dataset) == first and len(reads) == 7
    # a memo claiming a wrong hash for the right signatures, but of another version: ignored
    memo.write_text('{"version": 0, "root": "x", "files": {}}')
    reads.clear()
    assert F.dataset_fingerprint(dataset) == first and len(reads) == 7


def test_racy_files_are_not_memoised(dataset, reads, monkeypatch):
    """A file modified within RACY_SECONDS of being hashed is hashed again on the next call."""
    monkeypatch.setattr(F, "RACY_SECONDS", 3600.0)                 # every file counts as just written
    F.dataset_fingerprint(dataset)
    reads.clear()
    F.dataset_fingerprint(dataset)
    assert len(reads) == 7


def test_missing_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="metadata.csv"):
        F.dataset_fingerprint(tmp_path / "nothing-here")


def test_training_cache_key_follows_the_image_bytes(dataset):
    """The cached-model key (train.data_fingerprint) changes when one image's bytes change, so an
    edited dataset no longer reports a stale model as cached."""
    from medadv_lib.train import TrainConfig, data_fingerprint

    before = data_fingerprint(dataset)
    assert before == F.dataset_fingerprint(dataset)[:10]
    target = _image(dataset)
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    after = data_fingerprint(dataset)
    assert after != before
    assert TrainConfig().filename(after) != TrainConfig().filename(before)
