"""Execute the course notebooks with papermill (``make tutorial`` and the notebook tests).

    python -m medadv_lib.course.runner [--mode auto|fast|full] [--out build] [--seed N] [--precision P]
                                       [--data-only] [NOTEBOOK ...]

First the data step: :func:`medadv_lib.data.ensure.ensure_dataset` finds the dataset, or says what
it will fetch and downloads and builds it (``MEDADV_OFFLINE=1``: one line, exit 2, nothing fetched);
``--data-only`` stops after it.

Each notebook's ``parameters`` cell is overridden with ``FAST`` (fast on CPU, full size
when CUDA is present, unless ``--mode`` says otherwise), ``OUTPUT_DIR`` (the shared
checkpoint/results folder, so later notebooks reuse earlier models) and ``DATA_DIR``; ``--seed`` sets
every notebook's ``SEED`` (models, UAPs, attacked images and noise drawn anew: the course under another
seed) and ``--precision`` its ``PRECISION`` (``fp32`` or ``bf16``: the course under other arithmetic).
Executed copies go to ``OUT/notebooks/`` and HTML renderings to ``OUT/html/``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

import torch

from ..data.ensure import ensure_dataset
from ..errors import describe_error
from ..runtime import HEADLESS_ENV, available_cpus

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook, the cell and the error."""


def course_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks in order (``NN_name.ipynb``)."""
    return sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))


def resolve_mode(mode: str = "auto") -> bool:
    """``True`` for FAST mode: ``fast``, or ``auto`` without CUDA."""
    if mode not in ("auto", "fast", "full"):
        raise ValueError(f"unknown mode {mode!r}; use auto, fast or full")
    if mode == "auto":
        return not torch.cuda.is_available()
    return mode == "fast"


def _describe_failure(nb_path: Path, exc) -> str:
    import nbformat  # optional: the notebooks extra
    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errs:
            src = cell.source.strip().splitlines()
            head = src[0] if src else ""
            return (f"{nb_path.name}: code cell {i} (execution count {cell.get('execution_count')}, "
                    f"starting {head!r}) failed: {errs[0]['ename']}: {errs[0]['evalue']}")
    return f"{nb_path.name} failed: {exc}"


def _poll_reply_channels_periodically() -> None:
    """Work around a lost wake-up that can hang headless notebook execution for ever.

    nbclient waits for a cell's ``execute_reply`` with ``shell_channel.get_msg(timeout=None)``
    while it polls IOPub the same way.  With widget cells on a busy CPU the asyncio poll of the
    zmq socket sometimes never wakes up although the reply has arrived (the kernel sits idle;
    jupyter/nbclient#312).  Reproduced here: a notebook of six Output-widget cells, executed 15
    times while two busy loops held both CPUs, hung 6 times; with this patch, 0 of 15.  The patch
    makes an unbounded wait a loop of 1-second polls, so a missed wake-up costs at most a second.
    Idempotent; affects only jupyter_client's asyncio channels in this process.
    """
    from jupyter_client.channels import AsyncZMQSocketChannel  # optional: the notebooks extra

    if getattr(AsyncZMQSocketChannel.get_msg, "_medadv_polling", False):
        return
    original = AsyncZMQSocketChannel.get_msg

    async def get_msg(self, timeout=None):
        if timeout is not None:
            return await original(self, timeout)
        while True:
            try:
                return await original(self, 1.0)
            except Empty:
                continue

    get_msg._medadv_polling = True
    AsyncZMQSocketChannel.get_msg = get_msg


def _kernel_transport(socket_dir: str):
    """The kernel manager's configuration for a private kernel connection (a traitlets ``Config``).

    ipykernel warns "Kernel is running over TCP without encryption" on every start over plain TCP.
    On POSIX the runner's kernels use local IPC (Unix-domain) sockets in ``socket_dir`` instead — no
    network port at all; elsewhere TCP with CurveZMQ keys the kernel manager provisions (where pyzmq
    and jupyter_client support it).
    """
    from traitlets.config import Config  # optional: the notebooks extra

    if os.name == "posix":
        return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(socket_dir, "kernel")}})
    import zmq  # optional: the notebooks extra
    from jupyter_client.manager import KernelManager  # optional: the notebooks extra
    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


def _socket_dir() -> str:
    """A fresh private folder for a kernel's IPC sockets, with a short path (Unix socket paths are limited
    to about 100 bytes)."""
    base = None if len(tempfile.gettempdir()) <= 60 or not os.path.isdir("/tmp") else "/tmp"
    return tempfile.mkdtemp(prefix="medadv-kernel-", dir=base)


def run_notebook(nb: Path, out_dir: Path, fast: bool = True, output_dir: Path | None = None,
                 data_dir: str | None = None, html: bool = True, extra: dict | None = None,
                 progress: bool = False) -> Path:
    """Execute one notebook into ``out_dir/notebooks`` (and HTML into ``out_dir/html``); return its path."""
    import papermill as pm  # optional: the notebooks extra
    out_dir = Path(out_dir).resolve()
    executed = out_dir / "notebooks" / nb.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    params = {"FAST": bool(fast), "OUTPUT_DIR": str((output_dir or out_dir / "runs").resolve())}
    if data_dir:
        params["DATA_DIR"] = str(Path(data_dir).resolve())
    params.update(extra or {})
    # the kernel inherits this: numpy/sklearn/torch then use the CPUs the container grants, not the host's
    os.environ.setdefault("OMP_NUM_THREADS", str(available_cpus()))
    os.environ.setdefault("MEDADV_STRICT_CLAIMS", "1")   # a claim the outputs contradict fails the run (claims.py)
    _poll_reply_channels_periodically()
    socket_dir = _socket_dir()
    headless = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"           # for the kernel: no progress bar frozen at "0%" in the executed copy
    try:
        pm.execute_notebook(str(nb), str(executed), parameters=params, cwd=str(nb.parent),
                            kernel_name="python3", progress_bar=progress, log_output=False,
                            iopub_timeout=30,   # nbclient's 4 s wait for a cell's last output is short on a busy CI CPU
                            config=_kernel_transport(socket_dir))
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(_describe_failure(executed, exc)) from None
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        if headless is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = headless
    if html:
        import nbconvert  # optional: the notebooks extra
        import nbformat  # optional: the notebooks extra
        body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
        (out_dir / "html").mkdir(parents=True, exist_ok=True)
        (out_dir / "html" / nb.with_suffix(".html").name).write_text(body)
    return executed


def _data_step(data_dir: str | None) -> int:
    """Make sure the dataset is there before any notebook; 0, or 2 with one line on stderr."""
    try:
        ensure_dataset(data_dir)
    except KeyboardInterrupt:
        print("medadv data ensure: interrupted; run again to resume the download", file=sys.stderr)
        return 130
    except Exception as exc:                 # the CLI's promise: one line naming the cause and the fix
        print(f"medadv data ensure: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medadv_lib.course.runner", description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebook files or name prefixes like 00 01 (default: all)")
    ap.add_argument("--mode", default="auto", choices=["auto", "fast", "full"])
    ap.add_argument("--out", default="build", help="folder for executed notebooks, HTML and runs/")
    ap.add_argument("--data", default=None, help="dataset folder (default: $MEDADV_DATA, data/, ../shared/data/)")
    ap.add_argument("--seed", type=int, default=None,
                    help="every notebook's SEED (default: each notebook's own, 0): the course under another seed")
    ap.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                    help="every notebook's PRECISION (default: the policy's choice, $MEDADV_PRECISION or auto)")
    ap.add_argument("--no-html", action="store_true")
    ap.add_argument("--data-only", action="store_true",
                    help="only the data step: find the dataset, or download and build it; run no notebook")
    args = ap.parse_args(argv)
    notebooks = course_notebooks()
    if args.notebooks:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(s) or nb.name == Path(s).name
                                                     for s in args.notebooks)]
    if not notebooks and not args.data_only:
        print("no notebooks matched", file=sys.stderr)
        return 2
    status = _data_step(args.data)          # before any notebook: find, or download and build, the dataset
    if status or args.data_only:
        return status
    fast = resolve_mode(args.mode)
    extra = {k: v for k, v in (("SEED", args.seed), ("PRECISION", args.precision)) if v is not None}
    said = "".join(f", {k} = {v}" for k, v in extra.items())
    print(f"running {len(notebooks)} notebook(s) in {'FAST' if fast else 'full'} mode{said} -> {args.out}/")
    if not fast:
        if not torch.cuda.is_available():
            print("warning: full mode without a GPU: on a 2-core CPU notebook 01 alone takes ~18 h and notebooks "
                  "02-03 about two days (README, 'FAST vs full mode'); a 16-core workstation is 5-8x faster. "
                  "Use --mode fast, or a GPU.", file=sys.stderr)
    for nb in notebooks:
        t0 = time.time()
        try:
            run_notebook(nb, Path(args.out), fast, data_dir=args.data, html=not args.no_html, extra=extra,
                         progress=True)
        except NotebookFailed as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            return 1
        print(f"  {nb.name}: ok in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
