"""The `medadv` command line: JSON contract and clear errors."""
from __future__ import annotations

import json

import pytest

from medadv_lib.cli import main


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_data_check_json(capsys):
    assert main(["data", "check", "--json"]) == 0
    res = _last_json(capsys)
    assert res["n_images"] == 2326 and res["counts"]["test"]["COVID-19"] == 199


def test_data_check_missing_dir_is_clear(tmp_path, capsys):
    assert main(["data", "check", "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "medadv data download" in err and "Traceback" not in err


def test_train_json_contract_and_cache(tmp_path, capsys):
    args = ["train", "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--out", str(tmp_path),
            "--device", "cpu", "--json"]
    assert main(args) == 0
    res = _last_json(capsys)
    for key in ("model", "image_size", "test_accuracy", "per_class", "checkpoint", "seconds"):
        assert key in res
    assert set(res["per_class"]) == {"normal", "pneumonia", "COVID-19"}
    assert set(res["per_class"]["normal"]) == {"sensitivity", "ppv"}
    assert not res["cached"]
    assert main(args) == 0
    assert _last_json(capsys)["cached"]


def test_train_unknown_model(capsys):
    assert main(["train", "--model", "alexnet"]) == 2
    assert "unknown model 'alexnet'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
