"""Runtime helpers: device choice, the precision policy, seeding, eval mode and atomic file writes."""
from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm as _tqdm

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


def model_device(model: torch.nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device a model's parameters (or buffers) live on; ``fallback`` for a module without any."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


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


# --------------------------------------------------------------------------------------------
# The precision policy: one place decides the dtype and memory format of every forward/backward
# --------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_ENV = "MEDADV_PRECISION"


def _cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (``/proc/cpuinfo``); empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


_BF16_NATIVE: dict = {}


def cpu_bf16_native() -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16), and why.

    Looks at torch's CPU capability and the kernel's CPU flags, then verifies once with a tiny
    bf16 matmul under autocast.  Without native support oneDNN emulates bf16 with fp32
    instructions plus conversions, which is *slower* than plain fp32 (measured on a Cascade Lake
    "AVX-512 with DL Boost" VM: a ResNet-18 training step 1.2–2× slower), so the policy then
    stays in fp32.  The answer is cached for the process.
    """
    if "answer" in _BF16_NATIVE:
        return _BF16_NATIVE["answer"]
    cap = str(torch.backends.cpu.get_cpu_capability())
    flags = _cpu_flags() & {"amx_bf16", "avx512_bf16"}
    if not flags and "BF16" not in cap.upper() and "AMX" not in cap.upper():
        answer = (False, f"no AMX-BF16/AVX512-BF16 on this CPU (torch capability {cap})")
    else:
        try:
            a = torch.linspace(-1, 1, 64).view(8, 8)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = a @ a
            ok = out.dtype == torch.bfloat16 and torch.allclose(out.float(), a @ a, atol=0.05)
        except Exception as exc:  # pragma: no cover - a broken bf16 path
            ok, cap = False, f"{cap}; bf16 check raised {type(exc).__name__}"
        what = ", ".join(sorted(flags)) or cap
        answer = (ok, f"native bf16 ({what})" if ok else f"bf16 check failed on this CPU ({what})")
    _BF16_NATIVE["answer"] = answer
    return answer


@dataclass(frozen=True)
class Precision:
    """How every forward and backward of a course model runs: autocast dtype and memory format.

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the autocast dtype; weights stay fp32).
        device_type: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        channels_last: run convolutions in NHWC (``torch.channels_last``) memory format.
        reason: why the policy chose this (printed once per notebook or CLI run).
    """
    name: str = "fp32"
    device_type: str = "cpu"
    channels_last: bool = False
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or ``None`` for fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        """Context manager: autocast to :attr:`dtype` on :attr:`device_type` (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.name}{layout}"


FP32 = Precision("fp32", "cpu", False, "plain fp32")


def full_precision(device_type: str):
    """Context manager: no autocast inside (fp32), whatever policy is active outside — the one
    exception the precision policy makes, for the classifier head (see ``models.Float32Linear``)."""
    return torch.autocast(device_type, enabled=False)


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles for bf16 (``amx_bf16`` in the kernel's flags, or torch's capability says AMX)."""
    return "amx_bf16" in _cpu_flags() or "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


BF16_WITHOUT_AMX = "its bf16 runs slower than fp32 (bench/bench_precision.py), so auto stays in fp32"
"""Why ``auto`` keeps a CPU with AVX512-BF16 but no AMX in fp32: its bf16 is native but not faster.  Measured with
``bench/bench_precision.py`` on a 2-core Intel Xeon with AVX512-BF16 and no AMX (2026-12-08): bf16 + channels_last
ran a training epoch at 0.87× (ResNet-18, half width) and 0.66× (MobileNetV3-small) and PGD-10 at 0.85× and 0.66×
the speed of plain fp32, where fp32 + channels_last ran at 1.19×/1.25× and 1.15×/1.02×."""


def resolve_precision(requested: str | Precision | None = None, device: torch.device | str | None = None) -> Precision:
    """The precision policy for ``device``: the one place that decides dtype and memory format.

    Arguments:
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only), or ``None`` for
            ``$MEDADV_PRECISION`` (default ``"auto"``); a :class:`Precision` is returned as is.
        device: the compute device (default: :func:`get_device`).

    ``auto`` picks, on CUDA, bf16 autocast where the GPU supports it (else fp16) with
    ``channels_last``; on a CPU with native bf16 (:func:`cpu_bf16_native`) *and* AMX (:func:`cpu_has_amx`), bf16
    autocast with ``channels_last``; otherwise fp32 (``channels_last`` on a CPU as well: measured faster for the
    course's ResNet-18 in fp32, see ``bench/bench_precision.py``).  AVX512-BF16 without AMX computes bf16
    natively but more slowly than fp32 (:data:`BF16_WITHOUT_AMX`), so ``auto`` stays in fp32 there; an explicit
    ``bf16`` runs it natively.  An explicit ``bf16`` on a CPU without native support is honoured (emulated, slower;
    useful for tests).
    """
    if isinstance(requested, Precision):
        return requested
    source = "argument"
    if requested in (None, ""):
        requested, source = os.environ.get(PRECISION_ENV, "") or "auto", PRECISION_ENV
    key = str(requested).strip().lower()
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r} (from {source}); use one of {', '.join(PRECISIONS)}")
    dev = torch.device(device) if device is not None else get_device()
    if dev.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if key == "auto":
            return Precision("bf16" if bf16 else "fp16", "cuda", True, "auto on CUDA")
        if key == "bf16" and not bf16:
            raise ValueError("precision 'bf16' requested but this GPU does not support bf16; use 'fp16' or 'auto'")
        return Precision(key, "cuda", True, f"{key} requested")
    if dev.type == "mps":
        if key not in ("auto", "fp32"):
            raise ValueError(f"precision {key!r} is not supported on MPS by the course; use 'fp32' or 'auto'")
        return Precision("fp32", "mps", False, "fp32 on MPS")
    if key == "fp16":
        raise ValueError("precision 'fp16' is for CUDA; on a CPU use 'bf16' or 'fp32' (or 'auto')")
    native, why = cpu_bf16_native()
    if key == "auto":
        if native and not cpu_has_amx():
            return Precision("fp32", "cpu", True, f"{why} but no AMX: {BF16_WITHOUT_AMX}")
        return Precision("bf16", "cpu", True, why) if native else Precision("fp32", "cpu", True, why)
    if key == "bf16":
        return Precision("bf16", "cpu", True, why if native else f"bf16 requested, emulated: {why}")
    return Precision("fp32", "cpu", True, "fp32 requested")


def describe_run(device: torch.device, precision: Precision) -> str:
    """One line naming the device, the precision policy and the CPU threads (printed once per run)."""
    return (f"device: {device} · precision: {precision} ({precision.reason}) · "
            f"torch threads: {torch.get_num_threads()} of {available_cpus()} CPUs · torch {torch.__version__}")


def setup_run(device: str | None = "auto", precision: str | None = None, seed: int | None = 0,
              verbose: bool = True) -> tuple[torch.device, Precision]:
    """The first call of every notebook and CLI command: pick the device, the precision policy
    and seed everything; print one line describing them. Returns ``(device, precision)``."""
    dev = get_device(device)
    prec = resolve_precision(precision, dev)
    if seed is not None:
        seed_everything(seed)
    if verbose:
        print(describe_run(dev, prec))
    return dev, prec


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


TEMP_TAG = "medadv-tmp"
"""Marks the temporary files of :func:`atomic_path`: ``.<name>.medadv-tmp-<host>-<pid>-<random>.tmp``."""

STALE_TEMP_SECONDS = 3600
"""A temporary file untouched this long is left over from an interrupted save, whoever wrote it."""

_TEMP_RE = re.compile(rf"^\..+\.{TEMP_TAG}-(?P<host>[^/]*)-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")     # mkstemp names of earlier versions


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)          # elsewhere: the classic read-by-setting (restored at once)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True                 # exists, owned by someone else
    return True


def clean_stale_temp_files(folder: str | os.PathLike, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove what interrupted atomic saves left in ``folder``; return the removed paths.

    A temporary file of :func:`atomic_path` goes when the process that wrote it (same host) is gone,
    or when nobody has touched it for ``max_age`` seconds (another host's, or an earlier version's);
    a save in progress is never touched.  :func:`atomic_path` calls this on every save, so the next
    run after a crash cleans up.
    """
    removed = []
    host = socket.gethostname()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not name.endswith(".tmp") or not name.startswith("."):
            continue
        m = _TEMP_RE.match(name)
        if m is None and not _LEGACY_TEMP_RE.match(name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > max_age
            dead = m is not None and m["host"] == host and not _pid_alive(int(m["pid"]))
            if old or dead:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed, so nothing half-written is left; what an
    interrupted process (killed, power cut) left is removed by the next save in the folder
    (:func:`clean_stale_temp_files`).  The file gets the permissions a plain ``open`` would give
    (``0666`` less the umask), so a shared cache folder stays readable to the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_TAG}-{socket.gethostname()}-{os.getpid()}-",
                               suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())          # mkstemp made it 0600
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
    """Write text (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


HEADLESS_ENV = "MEDADV_HEADLESS"
"""Set (to anything but empty) by the course runner for the kernels it starts: no progress bar is drawn."""


def progress_bar(*args, **kwargs):
    """``tqdm.auto.tqdm(*args, **kwargs)``, the one progress bar of the library, silenced (``disable=True``) when
    ``$MEDADV_HEADLESS`` is set.  The course runner sets it for the kernels it starts, so an executed notebook and
    its HTML hold no bar frozen at "0%" (a widget bar's last state is not saved with the notebook); in JupyterLab
    and on the command line the bars show as usual."""
    if os.environ.get(HEADLESS_ENV):
        kwargs["disable"] = True
    return _tqdm(*args, **kwargs)
