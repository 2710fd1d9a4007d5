"""Shared fixtures: real chest X-rays at a small size and a small model trained on them."""
from __future__ import annotations

import pytest
import torch

from medadv_lib.data import load_split
from medadv_lib.runtime import limit_cpu_threads
from medadv_lib.train import TrainConfig, load_or_train

SMALL_SIZE = 64
SMALL_CONFIG = TrainConfig(model="resnet18", image_size=SMALL_SIZE, epochs=3, train_limit=480, batch_size=32, seed=0)


def pytest_report_header(config):
    import os

    from medadv_lib.runtime import available_cpus, resolve_precision
    prec = resolve_precision(None, "cpu")
    return (f"medadv: cpus available {available_cpus()} (os.cpu_count {os.cpu_count()}), "
            f"torch {torch.__version__} threads {torch.get_num_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; precision policy on the CPU: {prec} ({prec.reason})")


def pytest_collection_modifyitems(config, items):
    """Run the slow notebook executions last, so every unit test reports even if time runs short."""
    items.sort(key=lambda item: item.get_closest_marker("notebook") is not None)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    limit_cpu_threads(2)


@pytest.fixture(scope="session")
def real_batch():
    """32 real test-split chest X-rays at 64×64 (class-stratified, seeded) and their labels."""
    return load_split("test", SMALL_SIZE, limit=32, seed=0)


@pytest.fixture(scope="session")
def _small(request):
    out = request.config.cache.mkdir("medadv-models")
    # fp32: the peer cross-checks compare outputs exactly (test_precision covers the bf16 policy)
    return load_or_train(SMALL_CONFIG, out_dir=out, device="cpu", progress=False, precision="fp32")


@pytest.fixture(scope="session")
def small_model(_small):
    """A ResNet-18 trained for 3 epochs on 480 real training images at 64 px (CPU, eval mode).

    Cached in pytest's cache folder, so only the first test session pays the ~15 s.
    """
    return _small[0].eval()


@pytest.fixture(scope="session")
def small_checkpoint(_small) -> str:
    """Path of the checkpoint file behind ``small_model`` (for CLI tests)."""
    return _small[1]["checkpoint"]
