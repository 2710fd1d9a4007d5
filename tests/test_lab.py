"""``make lab``: JupyterLab starts on the notebooks folder with the project's kernel, and stops."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from medadv_lib.course.runner import course_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET", timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _run_in_kernel(connection_file: Path, code: str) -> str:
    """Run ``code`` in a kernel the server started (through its connection file, encryption keys
    included) and return what it printed, stripped; the resolved path for a path."""
    from jupyter_client import BlockingKernelClient

    deadline = time.time() + 60
    while not connection_file.is_file():
        assert time.time() < deadline, f"no connection file {connection_file}"
        time.sleep(0.5)
    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        out = []
        reply = client.execute_interactive(
            code, timeout=120, output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
    text = "".join(out).strip()
    return str(Path(text).resolve()) if text.startswith("/") else text


@pytest.mark.timeout(300)
def test_make_lab_serves_the_notebooks_with_the_project_kernel_and_stops():
    pytest.importorskip("jupyterlab")
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    port, token = _free_port(), "medadv-test-token"
    prefix = Path(sys.prefix)
    work = Path(tempfile.mkdtemp(prefix="medadv-lab-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MAKE", "MFLAGS"))}
    env.update(JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_CONFIG_DIR=str(work / "config"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), JUPYTERLAB_SETTINGS_DIR=str(work / "settings"))
    lab_args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
                f"--IdentityProvider.token={token}" + (" --allow-root" if os.geteuid() == 0 else ""))
    # the real target, with the venv this test runs in taken as set up (-o: do not remake its stamp)
    cmd = [make, "-o", f"{prefix}/.setup-done", "lab", f"VENV={prefix}", f"LAB_ARGS={lab_args}"]
    log = open(work / "lab.log", "w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"make lab exited with {proc.returncode}:\n{(work / 'lab.log').read_text()}"
            try:
                if _get(f"{base}/api/status?token={token}", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, f"JupyterLab did not answer:\n{(work / 'lab.log').read_text()}"
            time.sleep(1)

        assert _get(f"{base}/api/contents")[0] in (401, 403)          # the token is required
        status, body = _get(f"{base}/api/contents?token={token}")
        assert status == 200
        listed = {item["name"] for item in json.loads(body)["content"]}
        assert {nb.name for nb in course_notebooks()} <= listed        # rooted at notebooks/
        status, body = _get(f"{base}/lab?token={token}")
        assert status == 200 and b"JupyterLab" in body                   # the Lab front end itself

        specs = json.loads(_get(f"{base}/api/kernelspecs?token={token}")[1])
        default = specs["kernelspecs"][specs["default"]]["spec"]
        assert Path(default["argv"][0]).resolve() == Path(sys.executable).resolve(), default["argv"]

        status, body = _get(f"{base}/api/kernels?token={token}", method="POST")
        assert status in (200, 201), body
        kid = json.loads(body)["id"]
        assert _run_in_kernel(work / "runtime" / f"kernel-{kid}.json", "import sys; print(sys.executable)") \
            == str(Path(sys.executable).resolve())                       # the project's Python answers
        assert _get(f"{base}/api/kernels/{kid}?token={token}", method="DELETE")[0] == 204
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)          # make and the server it started (their own group)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
        text = (work / "lab.log").read_text()
        shutil.rmtree(work, ignore_errors=True)
    with pytest.raises(OSError):                                         # stopped: nothing listens any more
        _get(f"{base}/api/status", timeout=3)
    assert "without encryption" not in text, text


def test_readme_first_screen_names_make_lab():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make lab" in first_screen
