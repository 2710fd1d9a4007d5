"""The bench scripts run end to end on a tiny configuration (their timings are not checked here:
speed claims live in bench/, never in tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script, *args):
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=300, env={"OMP_NUM_THREADS": "2", **os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


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
                "--epochs", "1", "--device", "cpu")
    for needle in ("ours iterative", "ours SGD", "ART UniversalPerturbation", "iterative UAP: ART / ours time",
                   "batching gain on this device"):
        assert needle in text, text
