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


@pytest.mark.parametrize("attack,norm,eps", [("pgd", "inf", 2 / 255), ("fgsm", "2", 0.5), ("deepfool", "2", 0.5)])
def test_attack_json_contract(small_checkpoint, capsys, attack, norm, eps):
    args = ["attack", "--checkpoint", small_checkpoint, "--attack", attack, "--norm", norm, "--eps", str(eps),
            "--limit", "24", "--steps", "5", "--device", "cpu", "--json"]
    assert main(args) == 0
    res = _last_json(capsys)
    for key in ("attack", "norm", "eps", "clean_accuracy", "robust_accuracy", "defense_rate",
                "attack_success_rate", "seconds"):
        assert key in res, key
    assert res["n"] == 24 and res["robust_accuracy"] <= res["clean_accuracy"] + 1e-9
    assert 0 <= res["defense_rate"] <= 1
    if attack == "deepfool":
        assert res["median_rho_adv"] > 0


@pytest.mark.parametrize("extra,msg", [
    (["--attack", "cw"], "unknown attack 'cw'"),
    (["--attack", "pgd", "--norm", "l7"], "unknown norm 'l7'"),
    (["--attack", "pgd", "--eps", "-0.1"], "eps must be a finite number >= 0"),
])
def test_attack_bad_inputs(small_checkpoint, capsys, extra, msg):
    args = ["attack", "--checkpoint", small_checkpoint, "--eps", "0.01", "--device", "cpu"] + extra
    assert main(args) == 2
    assert msg in capsys.readouterr().err


def test_attack_missing_checkpoint(tmp_path, capsys):
    assert main(["attack", "--checkpoint", str(tmp_path / "x.pt"), "--attack", "pgd", "--eps", "0.01"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.parametrize("method,target", [("sgd", None), ("random", None), ("iterative", "COVID-19")])
def test_uap_json_contract(small_checkpoint, tmp_path, capsys, method, target):
    out = tmp_path / "v.npy"
    args = ["uap", "--checkpoint", small_checkpoint, "--zeta", "0.04", "--norm", "inf", "--method", method,
            "--limit", "48", "--train-limit", "64", "--epochs", "2", "--device", "cpu", "--runs", str(tmp_path),
            "--out", str(out), "--json"]
    if target:
        args += ["--target", target]
    assert main(args) == 0
    res = _last_json(capsys)
    for key in ("method", "norm", "zeta", "eps", "fooling_rate", "fooling_rate_balanced",
                "fooling_rate_vs_labels", "clean_accuracy", "robust_accuracy", "seconds"):
        assert key in res, key
    assert res["n_test"] == 48 and out.exists()
    assert res["v_norm_inf"] <= res["eps"] * (1 + 1e-5)
    assert ("target_success_rate" in res) == bool(target)
    if method == "sgd":                        # the course's builder says how far it went and whether it converged
        assert res["steps"] >= 1 and isinstance(res["converged"], bool) and res["holdout"] >= 1
        assert res["fooling_rate_reweighted_lo"] <= res["fooling_rate_reweighted"] <= res["fooling_rate_reweighted_hi"]
        assert main(args[:-1]) == 0 and "converged: " in capsys.readouterr().out


@pytest.mark.parametrize("extra,msg", [
    (["--zeta", "0"], "0 < zeta < 1"),
    (["--zeta", "1.5"], "0 < zeta < 1"),
    (["--zeta", "0.02", "--norm", "l3"], "unknown norm"),
    (["--zeta", "0.02", "--target", "flu"], "unknown target class 'flu'"),
    (["--zeta", "0.02", "--method", "magic"], "unknown method 'magic'"),
])
def test_uap_bad_inputs(small_checkpoint, capsys, extra, msg):
    assert main(["uap", "--checkpoint", small_checkpoint, "--device", "cpu"] + extra) == 2
    assert msg in capsys.readouterr().err


def test_uap_missing_checkpoint(tmp_path, capsys):
    assert main(["uap", "--checkpoint", str(tmp_path / "none.pt"), "--zeta", "0.02"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
