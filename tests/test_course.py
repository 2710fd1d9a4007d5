"""Course settings and results as data (`course.record`)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from medadv_lib import course


def _rec(**kw):
    base = {"model": "resnet18", "data_fingerprint": "abc", "checkpoint_fingerprint": "def", "precision": "fp32"}
    return {**base, **kw}


def test_record_writes_one_json_list_with_the_schema(tmp_path):
    path = course.record("02_universal_perturbations",
                         [_rec(norm="inf", zeta=0.02, target=None, fooling_rate=torch.tensor(0.5),
                               fooling_rate_per_class={"normal": 0.9}, median_rho_adv=math.nan)],
                         tmp_path, seconds=12.5)
    assert path == tmp_path / "results" / "02_universal_perturbations.json"
    (r,) = json.loads(path.read_text())
    assert r["notebook"] == "02_universal_perturbations" and r["seconds"] == 12.5
    assert r["fooling_rate"] == 0.5 and r["median_rho_adv"] is None and r["target"] is None
    assert all(k in r for k in course.RECORD_KEYS)


def test_record_refuses_a_record_without_its_identity(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_fingerprint"):
        course.record("01_train_classifiers", [{"model": "resnet18", "data_fingerprint": "a", "precision": "fp32"}],
                      tmp_path, seconds=1)
    assert not (tmp_path / "results" / "01_train_classifiers.json").exists()


def test_model_record_fingerprints_the_checkpoint(small_checkpoint):
    r = course.model_record("resnet18", {"checkpoint": small_checkpoint, "data_fingerprint": "x"}, "fp32")
    assert r["checkpoint_fingerprint"] == course.file_fingerprint(small_checkpoint) and len(r["checkpoint_fingerprint"]) == 10


def test_fast_settings_are_the_documented_ones():
    s = course.settings(True)
    assert s.image_size == 112 and s.models == ("resnet18_w0.5", "mobilenet_v3_small")


def test_course_uap_is_built_once_then_loaded_and_the_cli_gets_the_same_file(small_model, small_checkpoint, tmp_path,
                                                                             capsys):
    from medadv_lib.cli import main
    kw = dict(fast=True, output_dir=tmp_path, image_size=64, train=32, epochs=1)
    first = course.course_uap(small_model, 0.04, "inf", **kw)
    assert "saved_to" in first.params and "loaded_from" not in first.params
    again = course.course_uap(small_model, 0.04, "inf", **kw)
    assert again.params["loaded_from"] == first.params["saved_to"]
    assert torch.equal(again.v, first.v)
    other = course.course_uap(small_model, 0.04, "inf", **{**kw, "epochs": 2})        # other settings: miss
    assert "saved_to" in other.params and other.params["saved_to"] != first.params["saved_to"]
    assert main(["uap", "--checkpoint", small_checkpoint, "--zeta", "0.04", "--norm", "inf", "--mode", "fast",
                 "--runs", str(tmp_path), "--train-limit", "32", "--epochs", "1", "--limit", "16", "--device", "cpu",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["uap_file"] == first.params["saved_to"] and res["cached"] is True


def test_notebook_settings_resolve_none_to_the_mode_defaults():
    a = course.attack_settings(True)
    assert (a.n_test, a.pgd_steps, a.eps_255) == (64, 10, [0.5, 1, 2, 4])
    assert course.attack_settings(False, n_test=10, pgd_steps=5).n_test == 10
    g = course.uap_grid_settings(True, 0.02, zetas=(0.01,))
    assert g.zetas == [0.01, 0.02] and g.target_zetas == [0.02] and g.iter_passes == 4
    assert course.uap_grid_settings(False).target_zetas == course.uap_grid_settings(False).zetas
    fast = course.uap_grid_settings(True).zetas     # the widget's slider: 2 % with a neighbour on each side
    assert fast == [0.01, 0.02, 0.04] and fast == sorted(fast)
