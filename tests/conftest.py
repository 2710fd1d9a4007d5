"""Shared fixtures: real chest X-rays at a small size and a small model trained on them."""
from __future__ import annotations

import pytest
import torch

from medadv_lib.data import load_split
from medadv_lib.runtime import limit_cpu_threads
from medadv_lib.train import TrainConfig, load_or_train

SMALL_SIZE = 64
SMALL_CONFIG = TrainConfig(model="resnet18_w0.5", image_size=SMALL_SIZE, epochs=3, train_limit=480, batch_size=32, seed=0)


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
    """A half-width ResNet-18 (the FAST course model) trained for 3 epochs on 480 real training images at 64 px
    (CPU, eval mode).

    Cached in pytest's cache folder, so only the first test session pays the ~15 s.
    """
    return _small[0].eval()


@pytest.fixture(scope="session")
def small_checkpoint(_small) -> str:
    """Path of the checkpoint file behind ``small_model`` (for CLI tests)."""
    return _small[1]["checkpoint"]


@pytest.fixture()
def mini_data(tmp_path):
    """Factory of small copies of the real dataset that a test may break: ``make(per_class=4,
    drop=None, name="mini")`` copies the first ``per_class`` images of every (split, label) into
    ``tmp_path/name`` and writes their ``metadata.csv``, less the rows for which ``drop(df)`` is True."""
    import shutil

    import pandas as pd

    from medadv_lib.data import find_data_dir

    def make(per_class: int = 4, drop=None, name: str = "mini"):
        src, root = find_data_dir(), tmp_path / name
        df = pd.read_csv(src / "metadata.csv", dtype=str, keep_default_na=False)
        keep = pd.concat([g.head(per_class) for _, g in df.groupby(["split", "label"])])
        if drop is not None:
            keep = keep[~drop(keep)]
        for f in keep["file"]:
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / f, root / f)
        keep.to_csv(root / "metadata.csv", index=False)
        return root

    return make
