"""The papermill runner's helpers (notebook execution itself is in test_notebooks.py)."""
from __future__ import annotations

import asyncio

import pytest

from medadv_lib.course.runner import _poll_reply_channels_periodically, course_notebooks, resolve_mode


def test_unbounded_channel_wait_polls_and_still_returns_a_late_message():
    zmq_asyncio = pytest.importorskip("zmq.asyncio")
    import zmq
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.session import Session

    _poll_reply_channels_periodically()
    patched = AsyncZMQSocketChannel.get_msg
    _poll_reply_channels_periodically()                      # idempotent: not wrapped twice
    assert AsyncZMQSocketChannel.get_msg is patched and patched._medadv_polling

    async def scenario():
        ctx = zmq_asyncio.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://medadv-runner-test")
        b.connect("inproc://medadv-runner-test")
        session = Session()
        channel = AsyncZMQSocketChannel(b, session)

        async def send_late():
            await asyncio.sleep(1.5)                         # later than one 1-second poll
            session.send(a, "execute_reply", {"status": "ok"})

        sender = asyncio.ensure_future(send_late())
        msg = await asyncio.wait_for(channel.get_msg(timeout=None), 10)
        await sender
        a.close(), b.close(), ctx.term()
        return msg

    msg = asyncio.run(scenario())
    assert msg["header"]["msg_type"] == "execute_reply" and msg["content"] == {"status": "ok"}


def test_course_notebooks_are_numbered_and_modes_resolve():
    names = [p.name for p in course_notebooks()]
    assert names == sorted(names) and all(n[:2].isdigit() for n in names)
    assert resolve_mode("fast") is True and resolve_mode("full") is False
    with pytest.raises(ValueError):
        resolve_mode("medium")


@pytest.mark.timeout(300)
def _probe_notebook(path, source: str):
    """Write a one-cell notebook (after a tagged parameters cell) that runs ``source``; return its path."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell("FAST = True")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_runner_kernels_use_a_private_transport_without_the_tcp_warning(tmp_path, capfd):
    """The runner's kernels talk over IPC sockets (POSIX) or CurveZMQ, so ipykernel never warns
    "Kernel is running over TCP without encryption"; the socket folder is removed afterwards."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    import os
    import tempfile

    from medadv_lib.course.runner import run_notebook

    path = _probe_notebook(tmp_path / "00_probe.ipynb", "from ipykernel.kernelapp import IPKernelApp\n"
                           "app = IPKernelApp.instance()\n"
                           "print(app.transport, app.curve_secretkey is not None, app.ip)")
    before = set(os.listdir(tempfile.gettempdir()))
    executed = run_notebook(path, tmp_path / "out", html=False)
    (probe,) = [c for c in nbformat.read(executed, as_version=4).cells if "IPKernelApp" in c.source]
    transport, curve, ip = probe.outputs[0]["text"].split()
    if os.name == "posix":
        assert transport == "ipc" and os.path.isabs(ip)
        assert not os.path.exists(os.path.dirname(ip))              # the socket folder is cleaned up
    else:
        assert transport == "ipc" or curve == "True"
    assert "without encryption" not in "".join(capfd.readouterr())
    assert not {d for d in set(os.listdir(tempfile.gettempdir())) - before if d.startswith("medadv-kernel-")}


def test_the_runner_sets_every_notebooks_seed_and_precision_when_asked(monkeypatch, capsys):
    """`--seed 1 --precision fp32` (``make tutorial SEED=1 PRECISION=fp32``) reach every notebook's parameters;
    without them the notebooks keep their own."""
    from medadv_lib.course import runner
    calls = []
    monkeypatch.setattr(runner, "_data_step", lambda data: 0)
    monkeypatch.setattr(runner, "run_notebook", lambda nb, out, fast, **kw: calls.append((nb.name, kw["extra"])))
    assert runner.main(["--mode", "fast", "--seed", "1", "--precision", "fp32", "00", "01"]) == 0
    assert [e for _, e in calls] == [{"SEED": 1, "PRECISION": "fp32"}] * 2
    assert "SEED = 1, PRECISION = fp32" in capsys.readouterr().out
    calls.clear()
    assert runner.main(["--mode", "fast", "02"]) == 0 and calls == [("02_universal_perturbations.ipynb", {})]


def test_make_tutorial_passes_seed_precision_and_out_to_the_runner():
    import shutil
    import subprocess
    from pathlib import Path
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    root = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-n", "tutorial", "SEED=1", "PRECISION=fp32", "OUT=build-seed1"], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "--out build-seed1 --seed 1 --precision fp32" in dry.stdout and "--runs build-seed1/runs" in dry.stdout
    plain = subprocess.run(["make", "-n", "tutorial"], cwd=root, capture_output=True, text=True, timeout=60).stdout
    assert "--seed" not in plain and "--out build" in plain


def test_runner_kernels_draw_no_progress_bar_and_the_runner_leaves_its_environment_as_it_was(tmp_path, monkeypatch):
    """Issue 25, item 4: an executed copy holds no tqdm bar frozen at '0%'.  The runner sets $MEDADV_HEADLESS for
    its kernel only; the library's one progress bar (runtime.progress_bar) is then disabled."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    import os

    from medadv_lib.course.runner import run_notebook
    from medadv_lib.runtime import HEADLESS_ENV

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    path = _probe_notebook(tmp_path / "00_bars.ipynb", "from medadv_lib.runtime import progress_bar\n"
                           "bar = progress_bar(range(3), desc='probe')\n"
                           "print('disabled', bar.disable)")
    executed = run_notebook(path, tmp_path / "out", html=False)
    cell = nbformat.read(executed, as_version=4).cells[-1]
    texts = "".join(o.get("text", "") for o in cell.outputs)
    assert "disabled True" in texts and "probe" not in texts           # no bar in stdout, stderr or a widget
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs)
    assert HEADLESS_ENV not in os.environ                               # restored after the run


def test_progress_bar_follows_its_disable_argument_unless_headless(monkeypatch):
    from medadv_lib.runtime import HEADLESS_ENV, progress_bar
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    assert progress_bar(total=1, disable=False).disable is False and progress_bar(total=1, disable=True).disable
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert progress_bar(total=1, disable=False).disable is True
