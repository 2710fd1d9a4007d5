"""Atomic saves: permissions follow the umask, and what an interrupted save left is removed next time."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import torch

from medadv_lib.runtime import (TEMP_TAG, atomic_path, atomic_torch_save, atomic_write_text, clean_stale_temp_files,
                                current_umask)


@pytest.fixture()
def umask():
    """Set the umask for one test, restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_saved_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    assert _mode(atomic_write_text("{}", tmp_path / "results.json")) == expected
    assert _mode(atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "model.pt")) == expected
    with open(tmp_path / "plain.txt", "w"):
        pass
    assert _mode(tmp_path / "plain.txt") == expected                   # the same as a plain open()


def test_an_interrupted_save_is_cleaned_up_by_the_next(tmp_path):
    target = tmp_path / "runs" / "model.pt"
    code = ("import os, sys; from medadv_lib.runtime import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    open(tmp, 'wb').write(b'half a checkpoint')\n"
            "    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in target.parent.iterdir() if p.name != target.name]
    assert len(left) == 1 and TEMP_TAG in left[0].name and not target.exists()
    atomic_write_text("done", tmp_path / "runs" / "other.json")      # the next save in that folder
    assert sorted(p.name for p in target.parent.iterdir()) == ["other.json"]


def test_only_stale_temporary_files_are_removed(tmp_path):
    host, me = socket.gethostname(), os.getpid()
    names = {
        "live": f".a.pt.{TEMP_TAG}-{host}-{me}-abcd1234.tmp",             # a save in progress (this process)
        "other_host_fresh": f".b.pt.{TEMP_TAG}-elsewhere-1-abcd1234.tmp",
        "other_host_old": f".c.pt.{TEMP_TAG}-elsewhere-1-abcd1234.tmp",
        "legacy_fresh": ".d.pt.k2j4h5g6.tmp",
        "legacy_old": ".e.pt.k2j4h5g6.tmp",
        "live_but_old": f".f.pt.{TEMP_TAG}-{host}-{me}-abcd1234.tmp",
        "unrelated": ".notes.tmp",
        "unrelated_old": "draft.tmp",
    }
    for key, name in names.items():
        (tmp_path / name).write_text("x")
        if key.endswith("old"):
            past = time.time() - 2 * 3600
            os.utime(tmp_path / name, (past, past))
    removed = {p.name for p in clean_stale_temp_files(tmp_path)}
    assert removed == {names["other_host_old"], names["legacy_old"], names["live_but_old"]}
    kept = {p.name for p in tmp_path.iterdir()}
    assert {names[k] for k in ("live", "other_host_fresh", "legacy_fresh", "unrelated", "unrelated_old")} <= kept


def test_a_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.pt") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
