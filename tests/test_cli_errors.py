"""The CLI's promise, class by class: every failure is one line naming the file or option and the
fix (exit 2, a JSON object with --json), options are checked before any work, nothing wrong passes
silently (empty splits, absent classes, NaN in JSON)."""
from __future__ import annotations

import errno
import json
import os
import urllib.error

import pytest

import medadv_lib.cli.data as cli_data
import medadv_lib.cli.train as cli_train
from medadv_lib import LABELS
from medadv_lib.cli import main
from medadv_lib.cli._guard import budget, describe_error, jsonable
from medadv_lib.data import DataError, image_norm_stats, load_split
from medadv_lib.metrics import classification_report
from medadv_lib.models import build_model, save_checkpoint


def _strict(line: str):
    """json.loads that refuses NaN/Infinity, as strict parsers do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(line, parse_constant=refuse)


def _fails(capsys, argv, *needles, json_out: bool = False) -> str:
    """Run ``medadv argv``: exit 2, exactly one stderr line holding every needle, no traceback; with
    ``json_out`` the last stdout line is a strict-JSON error object. Returns the error line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("medadv ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    if json_out:
        res = _strict(out.strip().splitlines()[-1])
        assert res["ok"] is False and res["error"] in lines[0] and res["command"]
    return lines[0]


@pytest.fixture()
def no_work(monkeypatch):
    """Training must not start: validation comes first."""
    def refuse(*a, **k):
        raise AssertionError("work started before the options were checked")
    monkeypatch.setattr(cli_train, "load_or_train", refuse)


@pytest.fixture()
def fake_checkpoint(tmp_path):
    """A real (untrained) 32-px ResNet-18 checkpoint: enough for commands that only load one."""
    path = tmp_path / "ckpt" / "resnet18-32px.pt"
    save_checkpoint(build_model("resnet18"), path, config={"model": "resnet18", "image_size": 32})
    return str(path)


# --- options are checked before any work starts --------------------------------------------------

@pytest.mark.parametrize("extra,needles", [
    (["--batch-size", "0"], ["--batch-size must be at least 1; got 0"]),
    (["--epochs", "0"], ["--epochs must be at least 1; got 0"]),
    (["--epochs", "-3"], ["--epochs must be at least 1"]),
    (["--image-size", "8"], ["--image-size 8 is below 32 px", "--image-size 112"]),
    (["--lr", "0"], ["--lr must be a positive number"]),
    (["--weights", "IMAGENET_NOPE"], ["--weights 'IMAGENET_NOPE' is not a torchvision weight of resnet18",
                                      "IMAGENET1K_V1"]),
])
def test_train_bad_options_fail_before_training(no_work, tmp_path, capsys, extra, needles):
    _fails(capsys, ["train", "--model", "resnet18", "--out", str(tmp_path / "runs"), "--json"] + extra,
           *needles, json_out=True)


def test_unwritable_out_fails_before_training(no_work, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails(capsys, ["train", "--model", "resnet18", "--out", str(blocker)], "--out", "is a file, not a folder")
    _fails(capsys, ["train", "--model", "resnet18", "--out", str(blocker / "runs")], "--out",
           "is not writable", "pass a folder you can write to")
    if os.geteuid() != 0:                          # root writes into read-only folders anyway
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _fails(capsys, ["train", "--model", "resnet18", "--out", str(ro)], "--out", "is not writable")
        finally:
            ro.chmod(0o700)


def test_linf_eps_above_one_hints_at_255(tmp_path, capsys):
    line = _fails(capsys, ["attack", "--checkpoint", str(tmp_path / "x.pt"), "--attack", "pgd", "--eps", "8",
                           "--json"], "--eps 8 is above 1", "did you mean 8/255", json_out=True)
    assert "0.0314" in line
    assert budget("8/255") == pytest.approx(8 / 255) and budget("0.5") == 0.5
    with pytest.raises(ValueError):
        budget("eight")


def test_checkpoint_folder_is_not_called_missing(fake_checkpoint, tmp_path, capsys):
    folder = os.path.dirname(fake_checkpoint)
    line = _fails(capsys, ["attack", "--checkpoint", folder, "--attack", "pgd", "--eps", "0.01"],
                  "is a folder, not a checkpoint file", fake_checkpoint)
    assert "not found" not in line
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, ["uap", "--checkpoint", str(empty), "--zeta", "0.02"], "is a folder", "medadv train")


@pytest.mark.parametrize("argv,needle", [
    (["attack", "--attack", "pgd", "--eps", "0.01", "--limit", "0"], "--limit must be at least 1"),
    (["attack", "--attack", "pgd", "--eps", "0.01", "--steps", "0"], "--steps must be at least 1"),
    (["uap", "--zeta", "0.02", "--epochs", "0"], "--epochs must be at least 1"),
    (["uap", "--zeta", "0.02", "--train-limit", "-1"], "--train-limit must be at least 1"),
])
def test_counts_must_be_positive_for_every_command(fake_checkpoint, capsys, argv, needle):
    _fails(capsys, argv + ["--checkpoint", fake_checkpoint, "--json"], needle, json_out=True)


def test_uap_out_folder_is_refused(fake_checkpoint, tmp_path, capsys):
    _fails(capsys, ["uap", "--checkpoint", fake_checkpoint, "--zeta", "0.02", "--out", str(tmp_path)],
           "--out", "is a folder: pass a file name")


def test_usage_errors_keep_the_json_contract(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "resnet18", "--epochs", "two", "--json"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    res = _strict(out.strip().splitlines()[-1])
    assert res["ok"] is False and "--epochs" in res["error"] and "--epochs" in err


# --- every exception: one line, exit 2, JSON with --json ---------------------------------------------

@pytest.mark.parametrize("exc,needles", [
    (KeyError("resnet99"), ["unexpected KeyError", "'resnet99'", "MEDADV_DEBUG=1", "test_cli_errors.py"]),
    (IndexError("index 0 is out of bounds"), ["unexpected IndexError", "MEDADV_DEBUG=1"]),
    (ZeroDivisionError("division by zero"), ["unexpected ZeroDivisionError"]),
    (TypeError("unsupported operand"), ["unexpected TypeError"]),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/shared/runs/x.pt"),
     ["/srv/shared/runs/x.pt: Permission denied", "fix its permissions"]),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x.pt"), ["runs/x.pt", "disk is full"]),
    (OSError(errno.EROFS, "Read-only file system", "runs"), ["runs: Read-only file system", "read-only"]),
    (urllib.error.URLError("Name or service not known"), ["network error", "internet"]),
    (MemoryError(), ["out of memory", "--batch-size"]),
    (DataError("metadata.csv: the 'test' split has no images; rebuild"), ["'test' split has no images"]),
])
def test_any_exception_is_one_line_with_exit_2(monkeypatch, capsys, exc, needles):
    def boom(args):
        raise exc
    monkeypatch.setattr(cli_data, "_check", boom)
    _fails(capsys, ["data", "check", "--json"], *needles, json_out=True)


def test_multi_line_messages_become_one_line(tmp_path, capsys):
    line = _fails(capsys, ["data", "check", "--data", str(tmp_path / "nope")], "nope", "medadv data download")
    assert "\n" not in line


def test_debug_env_shows_the_traceback(monkeypatch):
    def boom(args):
        raise KeyError("x")
    monkeypatch.setattr(cli_data, "_check", boom)
    monkeypatch.setenv("MEDADV_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["data", "check"])


def test_interrupt_exits_130(monkeypatch, capsys):
    def stop(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_data, "_check", stop)
    assert main(["data", "check", "--json"]) == 130
    assert _strict(capsys.readouterr().out.strip().splitlines()[-1])["error"] == "interrupted"


def test_library_messages_are_kept_and_foreign_ones_located():
    try:
        load_split("test", 32, limit=0)
    except ValueError as exc:
        assert describe_error(exc) == "limit must be at least 1 image; got 0"
    try:
        {}["k"]
    except KeyError as exc:
        assert describe_error(exc).startswith("unexpected KeyError: 'k' (raised in test_cli_errors.py:")


# --- empty splits: the message names the split ----------------------------------------------------

@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_empty_split_is_named_by_the_library(mini_data, split):
    root = mini_data(drop=lambda df: df["split"] == split)
    with pytest.raises(DataError, match=f"the '{split}' split has no images"):
        load_split(split, 32, root)


def test_empty_train_split_is_named_not_nan(mini_data):
    root = mini_data(drop=lambda df: df["split"] == "train")
    with pytest.raises(DataError, match="the 'train' split has no images"):
        image_norm_stats(32, root)                                  # was "norm must be positive; got nan"


def test_empty_splits_through_the_cli(mini_data, fake_checkpoint, tmp_path, capsys):
    no_test = mini_data(drop=lambda df: df["split"] == "test", name="no-test")
    _fails(capsys, ["attack", "--checkpoint", fake_checkpoint, "--attack", "fgsm", "--eps", "0.01", "--device",
                    "cpu", "--data", str(no_test), "--json"], "the 'test' split has no images", json_out=True)
    _fails(capsys, ["uap", "--checkpoint", fake_checkpoint, "--zeta", "0.02", "--method", "random", "--device",
                    "cpu", "--data", str(no_test), "--runs", str(tmp_path / "runs")], "the 'test' split has no images")
    no_train = mini_data(drop=lambda df: df["split"] == "train", name="no-train")
    _fails(capsys, ["train", "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--device", "cpu",
                    "--data", str(no_train), "--out", str(tmp_path / "runs"), "--json"],
           "the 'train' split has no images", json_out=True)
    _fails(capsys, ["uap", "--checkpoint", fake_checkpoint, "--zeta", "0.02", "--method", "random", "--device",
                    "cpu", "--data", str(no_train), "--runs", str(tmp_path / "runs")], "the 'train' split has no images")


# --- nothing meaningless passes silently ----------------------------------------------------------

def test_sensitivity_of_an_absent_class_is_none():
    r = classification_report([0, 0, 2, 2], [0, 1, 2, 0])          # no pneumonia image
    pn = r["per_class"]["pneumonia"]
    assert pn["sensitivity"] is None and pn["f1"] is None and pn["support"] == 0 and pn["ppv"] == 0.0
    assert r["per_class"]["normal"]["sensitivity"] == pytest.approx(0.5)
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 0.5) / 2)  # over the classes present
    f1_normal, f1_covid = 2 * 0.5 * 0.5 / 1.0, 2 * 1.0 * 0.5 / 1.5
    assert r["macro_f1"] == pytest.approx((f1_normal + f1_covid) / 2)
    empty = classification_report([], [])
    assert empty["accuracy"] is None and empty["macro_f1"] is None and empty["n"] == 0


def test_train_reports_null_sensitivity_for_a_class_absent_from_test(mini_data, tmp_path, capsys):
    root = mini_data(drop=lambda df: (df["split"] == "test") & (df["label"] == "COVID-19"))
    argv = ["train", "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--device", "cpu",
            "--precision", "fp32", "--data", str(root), "--out", str(tmp_path / "runs"), "--quiet"]
    assert main(argv + ["--json"]) == 0
    res = _strict(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["per_class"]["COVID-19"]["sensitivity"] is None
    assert all(res["per_class"][lab]["sensitivity"] is not None for lab in LABELS if lab != "COVID-19")
    assert main(argv) == 0                                          # the text summary (cached model)
    assert "COVID-19   sensitivity n/a" in capsys.readouterr().out


def test_json_output_never_contains_nan(monkeypatch, capsys):
    import numpy as np
    import torch

    def nan_result(args):
        from medadv_lib.cli import emit
        emit({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan"), "d": torch.tensor(0.5),
              "e": {"f": -float("inf")}, "g": np.arange(2)}, True)
        return 0
    monkeypatch.setattr(cli_data, "_check", nan_result)
    assert main(["data", "check", "--json"]) == 0
    res = _strict(capsys.readouterr().out.strip().splitlines()[-1])
    assert res == {"a": None, "b": [1.0, None], "c": None, "d": 0.5, "e": {"f": None}, "g": [0, 1]}
    assert jsonable({"x": (float("nan"),)}) == {"x": [None]}


def test_library_attacks_warn_about_linf_eps_above_one():
    import warnings

    import torch

    from medadv_lib.attacks import fgsm, pgd
    model = build_model("resnet18").eval()
    x, y = torch.rand(2, 1, 32, 32), torch.tensor([0, 2])
    with pytest.warns(UserWarning, match=r"did you mean 8/255 = 0\.0314"):
        fgsm(model, x, y, eps=8)
    with pytest.warns(UserWarning, match="did you mean 4/255"):
        pgd(model, x, y, eps=4, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fgsm(model, x, y, eps=3.0, norm="2")                       # an L2 budget above 1 is ordinary
        fgsm(model, x, y, eps=8 / 255)
