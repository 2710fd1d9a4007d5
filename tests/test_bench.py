"""The bench scripts run end to end on a tiny configuration (their timings are not checked here:
speed claims live in bench/, never in tests)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script, *args, rc=0):
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=300, env={"OMP_NUM_THREADS": "2", **os.environ})
    assert out.returncode == rc, out.stderr[-3000:]
    return out.stdout if rc == 0 else out.stderr


@pytest.mark.peers
def test_bench_attacks_runs_and_reports_ratios():
    pytest.importorskip("torchattacks"), pytest.importorskip("foolbox")
    text = _run("bench_attacks.py", "--batch-size", "4", "--image-size", "32", "--device", "cpu", "--steps", "2",
                "--df-steps", "5")
    for needle in ("PGD: medadv / torchattacks time", "DeepFool: torchattacks / medadv time",
                   "DeepFool: foolbox / medadv time", "batching gain on this device"):
        assert needle in text, text


@pytest.mark.peers
def test_bench_uap_runs_and_reports_ratios():
    pytest.importorskip("art")
    text = _run("bench_uap.py", "--n", "8", "--n-test", "8", "--image-size", "32", "--max-iter", "1",
                "--epochs", "1", "--device", "cpu", "--art-steps", "1eps,0.001")
    for needle in ("ours iterative", "ours SGD", "ART UniversalPerturbation", "iterative UAP: ART / ours time",
                   "batching gain on this device", "step sweep", "operating point: fooling rate ≥ 0.5"):
        assert needle in text, text
    # the sweep: one line per step, largest first, the best one marked
    sweep = text.split("step sweep", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(sweep) == 2 and float(sweep[0].split()[0]) > float(sweep[1].split()[0]), text
    assert sum("← best" in line for line in sweep) == 1, text
    # the operating-point table: a row per method, each with a time to the target or "did not reach"
    table = text.rsplit("operating point: fooling rate ≥ 0.5", 1)[1].split("(wall s, CPU s", 1)[0].splitlines()[2:]
    names = ("ART UniversalPerturbation", "ours iterative (step 0.001)", "ours SGD", "random control")
    for name in names:
        line = next((ln for ln in table if ln.startswith(name)), None)
        assert line is not None, (name, text)
        if name != "random control":
            assert "did not reach" in line or re.search(r"\d+\.\d\d s ", line), (name, line)


def test_bench_uap_image_size_comes_from_the_checkpoint(tmp_path):
    from medadv_lib.models import build_model, save_checkpoint
    ckpt = tmp_path / "r18-32px.pt"
    save_checkpoint(build_model("resnet18"), ckpt, config={"model": "resnet18", "image_size": 32})
    err = _run("bench_uap.py", "--checkpoint", str(ckpt), "--image-size", "64", "--device", "cpu", rc=2)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--image-size 64" in lines[0] and "32 px" in lines[0], err
    assert "Traceback" not in err
    text = _run("bench_uap.py", "--checkpoint", str(ckpt), "--n", "4", "--n-test", "0", "--max-iter", "1",
                "--device", "cpu", "--skip", "art", "sgd")
    assert "at 32px" in text, text
    assert re.search(r"^ours iterative \(step 0\.001\) .*(did not reach|\d\.\d\d s )", text, re.M), text
