"""Runtime helpers: device choice, seeding, mixed precision and atomic file writes."""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def available_cpus(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """CPUs this process may really use: the smaller of its CPU affinity and its cgroup CPU quota.

    ``os.cpu_count()`` (and so torch's default thread count) reports the host's cores even in a
    container limited to two; running 32 threads on 2 CPUs makes training many times slower.
    Reads cgroup v2 ``cpu.max`` or cgroup v1 ``cpu/cpu.cfs_quota_us`` under ``cgroup_root``.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    root = Path(cgroup_root)
    for quota_file, period_file in ((root / "cpu.max", None),
                                    (root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us")):
        try:
            fields = quota_file.read_text().split()
            quota = fields[0]
            period = fields[1] if period_file is None else period_file.read_text().strip()
            if quota not in ("max", "-1"):
                n = min(n, max(1, int(quota) // int(period)))
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return max(1, n)


def limit_cpu_threads(max_threads: int | None = None) -> int:
    """Cap torch's intra-op CPU threads at :func:`available_cpus` (or ``max_threads``); never raises it.

    Returns the thread count in force.  Called by :func:`get_device`, so every notebook and CLI
    command runs with a sane thread count inside CPU-limited containers (CI, Colab, Docker).
    """
    cap = max(1, max_threads or available_cpus())
    if torch.get_num_threads() > cap:
        torch.set_num_threads(cap)
    return torch.get_num_threads()


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: ``cuda`` → ``mps`` → ``cpu``.

    Args:
        prefer: ``None`` or ``"auto"`` for the first available device, or an explicit
            device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).  An explicit
            device that is not available raises ``RuntimeError`` naming the fix.

    Also caps torch's CPU threads at the CPUs really available (:func:`limit_cpu_threads`).
    """
    limit_cpu_threads()
    if prefer in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(prefer)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {prefer!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {prefer!r} requested but MPS is not available; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a seeded CPU ``torch.Generator``.

    With ``deterministic=True`` cuDNN autotuning is switched off so CUDA runs repeat as
    closely as cuDNN allows; CPU runs are reproducible bit for bit.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def autocast(device: torch.device | str, enabled: bool = True):
    """Mixed-precision context: bf16/fp16 autocast on CUDA, a no-op elsewhere."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run ``model`` in eval mode (BatchNorm/Dropout frozen) inside the block, then restore every
    submodule's own train/eval flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed, so nothing half-written is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a partial file at ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)
