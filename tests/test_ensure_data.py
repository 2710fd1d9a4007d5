"""``make tutorial`` on a fresh machine: the data step (medadv_lib.data.ensure) end to end.

A loopback HTTP server (127.0.0.1, port 0) serves fabricated archives in the real sources' layout
(GitHub's ``<name>-<commit>/`` top folder; the small fabricated repositories of test_data_build)
and the NIH table, at ``/{repo}/{commit}/{path}``; ``$MEDADV_SOURCE_URL`` points the download at it
and ``$MEDADV_DATA`` at a temporary folder.  The server logs every request, answers ``Range``
requests (``206``, with ``If-Range`` against its ETag) unless told not to, and can cut a response in
half to stand for a dropped connection.  No notebook is executed: the runner's ``--data-only``
stops after the data step.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pytest

from medadv_lib.cli import main as cli_main
from medadv_lib.course import runner
from medadv_lib.data import SPLITS, load_split
from medadv_lib.data import download as D
from medadv_lib.data import ensure as E
from medadv_lib.data.sources import MANIFEST, SOURCE_BY_KEY
from test_data_build import (FIG1_COLUMNS, make_amed, make_cxnet, make_fig1, make_ieee, make_mhh, make_nih, save,
                             texture, write_csv)

PROJECT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the loopback sources
def add_patients(dirs: dict, seeds, per_label: int = 8) -> None:
    """More patients than test_data_build's set, so that every split gets images of every class:
    Figure1 normals and pneumonias (files named after ``patientid``) and COVID-CXNet images (one
    patient each), all small."""
    import csv

    with open(dirs["fig1"] / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for finding in ("No finding", "Pneumonia"):
        for i in range(per_label):
            pid = f"EXTRA-{finding[:2].upper()}{i:02d}"
            save(texture(next(seeds), (96, 96)), dirs["fig1"] / "images" / f"{pid}.jpg")
            rows.append(dict(patientid=pid, finding=finding, view="PA", age="40", modality="X-ray"))
    write_csv(dirs["fig1"] / "metadata.csv", FIG1_COLUMNS, rows)
    for i in range(per_label):
        save(texture(next(seeds), (96, 96)), dirs["cxnet"] / "chest_xray_images" / "covid19" / f"x{i:03d}.png")


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET with Range/If-Range support; every request logged in ``server.log``."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:                           # noqa: N802 (http.server's name)
        srv = self.server
        path = urllib.parse.unquote(self.path)
        srv.log.append({"path": path, "range": self.headers.get("Range"),
                        "if_range": self.headers.get("If-Range")})
        file = srv.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and srv.ranges and self.headers.get("If-Range", etag) == etag:
            start = int(wanted.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_error(416)
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if srv.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if path in srv.cut:                             # a dropped connection halfway through
            srv.cut.discard(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """Fabricated source archives and the NIH table, as GitHub serves them (served path -> bytes)."""
    base = tmp_path_factory.mktemp("fabricated")
    seeds = iter(range(3000, 4000))
    dirs = {key: base / key for key in ("ieee", "mhh", "amed", "fig1", "nih", "cxnet", "nih_meta")}
    ieee = make_ieee(dirs["ieee"], seeds)
    make_mhh(dirs["mhh"], seeds)
    make_amed(dirs["amed"], seeds)
    make_fig1(dirs["fig1"], seeds)
    nih_copy = make_nih(dirs["nih"], dirs["nih_meta"], seeds)
    make_cxnet(dirs["cxnet"], seeds, ieee, nih_copy)
    add_patients(dirs, seeds)
    root = tmp_path_factory.mktemp("served")
    paths = {}
    for item in MANIFEST:
        target = root / item.repo / item.commit / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.is_archive:
            with tarfile.open(target, "w:gz") as tar:
                tar.add(dirs[item.key], arcname=item.dirname,
                        filter=lambda ti: None if ".git" in Path(ti.name).parts else ti)
        else:
            target.write_bytes((dirs["nih_meta"] / item.path).read_bytes())
        paths[item.key] = "/" + target.relative_to(root).as_posix()
    return {"root": root, "paths": paths}


@pytest.fixture
def server(sources):
    """The loopback server; ``log`` lists the requests, ``cut`` the paths to drop halfway once."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.root, httpd.log, httpd.cut, httpd.ranges = sources["root"], [], set(), True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.template = f"http://127.0.0.1:{httpd.server_address[1]}/{{repo}}/{{commit}}/{{path}}"
    httpd.paths = sources["paths"]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fresh(tmp_path, monkeypatch, server):
    """A machine without the dataset: $MEDADV_DATA names a folder that does not exist yet, the
    sources are the loopback server, nothing is offline."""
    target = tmp_path / "data" / "covid-cxr-mini"
    monkeypatch.setenv("MEDADV_DATA", str(target))
    monkeypatch.setenv("MEDADV_SOURCE_URL", server.template)
    monkeypatch.delenv("MEDADV_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return {"target": target, "raw": tmp_path / "data" / "raw", "server": server}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _served(server, key: str) -> bytes:
    return (server.root / server.paths[key].lstrip("/")).read_bytes()


def _err_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- tests
def test_fresh_machine_fetch_build_load_then_nothing_downloaded(fresh, capsys):
    server, target = fresh["server"], fresh["target"]
    assert runner.main(["--data-only"]) == 0                    # what `make tutorial` runs first
    err = capsys.readouterr().err
    # it said what it would fetch, how much and where, before fetching
    announce = err.index("not found; building it from its public sources")
    assert "about 2.5 GB" in err and "dataset (~73 MB" in err
    for item in MANIFEST:
        assert f"{item.repo}@{item.commit[:7]}" in err
    assert f"-> {fresh['raw']}/" in err and f"-> {target}/" in err
    assert announce < err.index("downloading")
    # every source fetched once, verified (trust on first use) and recorded
    assert sorted(r["path"] for r in server.log) == sorted(server.paths.values())
    recorded = json.loads((fresh["raw"] / D.CHECKSUMS_FILE).read_text())
    assert {v["key"]: v["sha256"] for v in recorded.values()} == \
        {key: _sha256(_served(server, key)) for key in server.paths}
    # the dataset loads
    assert (target / "metadata.csv").is_file()
    for split in SPLITS:
        x, y = load_split(split, 32, data_dir=target)
        assert x.shape[1:] == (1, 32, 32) and len(x) == len(y) > 0
        assert sorted(set(y.tolist())) == [0, 1, 2]              # every class in every split
    assert not list(fresh["raw"].glob(".*.part*")) and not list(target.parent.glob(".covid-cxr-mini.*"))

    # present now: the runner and `medadv data ensure` send no request at all
    server.log.clear()
    assert runner.main(["--data-only"]) == 0
    assert cli_main(["data", "ensure", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == {"ok": True, "action": "present", "data_dir": str(target.resolve())}
    assert server.log == []


@pytest.mark.parametrize("ranges", [True, False], ids=["server-resumes", "server-ignores-range"])
def test_interrupted_download_resumes(fresh, capsys, ranges):
    server, target, raw = fresh["server"], fresh["target"], fresh["raw"]
    server.ranges = ranges
    cut = server.paths["cxnet"]
    server.cut.add(cut)
    assert cli_main(["data", "ensure"]) == 2                  # the dropped connection
    lines = _err_lines(capsys.readouterr())
    assert lines[-1].startswith("medadv data ensure: error: download interrupted") and "run again to resume" \
        in lines[-1] and "Traceback" not in "\n".join(lines)
    item = SOURCE_BY_KEY["cxnet"]
    part = D.part_path(raw, item)
    full = _served(server, "cxnet")
    assert part.stat().st_size == len(full) // 2              # the first half is kept
    assert not target.exists() and not (raw / item.dirname).exists()   # nothing half-built
    before = {r["path"] for r in server.log}
    assert SOURCE_BY_KEY["amed"].dirname in {p.name for p in raw.iterdir()}   # earlier sources done

    server.log.clear()
    assert runner.main(["--data-only"]) == 0
    again = [r for r in server.log if r["path"] == cut]
    assert len(again) == 1 and again[0]["range"] == f"bytes={len(full) // 2}-" and again[0]["if_range"]
    finished_earlier = before - {cut}
    assert not finished_earlier & {r["path"] for r in server.log}      # not fetched again
    recorded = json.loads((raw / D.CHECKSUMS_FILE).read_text())[item.ident]
    assert recorded["sha256"] == _sha256(full) and recorded["bytes"] == len(full)   # the whole file
    assert not part.exists() and (target / "metadata.csv").is_file()


def test_interrupted_build_leaves_no_dataset_and_resumes_without_downloading(fresh, monkeypatch, capsys):
    from medadv_lib.data.build import pipeline

    server, target = fresh["server"], fresh["target"]
    real = pipeline.write_metadata

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "write_metadata", killed)
    assert runner.main(["--data-only"]) == 130
    assert "interrupted; run again" in capsys.readouterr().err
    assert not target.exists() and not list(target.parent.glob(".covid-cxr-mini.*"))
    monkeypatch.setattr(pipeline, "write_metadata", real)
    server.log.clear()
    assert runner.main(["--data-only"]) == 0
    assert server.log == []                                   # the sources were complete: only the build reran
    assert (target / "metadata.csv").is_file()


def test_killed_run_leftovers_are_removed(fresh, capsys):
    """What a SIGKILL leaves (an extraction folder, an old build's staging folder) goes on the next run."""
    import os
    import time

    target, raw = fresh["target"], fresh["raw"]
    (raw / ".extract-abc123" / "half").mkdir(parents=True)
    staging = target.parent / ".covid-cxr-mini.building-xyz"
    (staging / "images").mkdir(parents=True)
    old = time.time() - 2 * E.STALE_STAGING_SECONDS
    os.utime(staging, (old, old))
    assert runner.main(["--data-only"]) == 0
    assert not (raw / ".extract-abc123").exists() and not staging.exists()


def test_offline_is_one_line_and_exit_2(fresh, monkeypatch, capsys):
    server, target = fresh["server"], fresh["target"]
    monkeypatch.setenv("MEDADV_OFFLINE", "1")
    for entry in (lambda: cli_main(["data", "ensure"]), lambda: runner.main(["--data-only"]),
                  lambda: runner.main(["00"])):
        assert entry() == 2
        lines = _err_lines(capsys.readouterr())
        assert len(lines) == 1, lines
        assert lines[0].startswith("medadv data ensure: error: no covid-cxr-mini dataset")
        assert "MEDADV_OFFLINE is set, so nothing was downloaded" in lines[0] and str(target) in lines[0]
    assert server.log == [] and not target.parent.exists()    # nothing fetched, nothing created
    assert cli_main(["data", "ensure", "--json"]) == 2
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] is False and "MEDADV_OFFLINE" in out["error"]


def test_offline_with_the_data_present_is_fine(fresh, monkeypatch, capsys):
    assert runner.main(["--data-only"]) == 0
    monkeypatch.setenv("MEDADV_OFFLINE", "1")
    fresh["server"].log.clear()
    assert cli_main(["data", "ensure"]) == 0
    assert "present, nothing downloaded" in capsys.readouterr().out
    assert fresh["server"].log == []


def test_runner_runs_no_notebook_without_data(fresh, monkeypatch, capsys):
    """The data step comes first: a failure stops the runner before any notebook starts."""
    monkeypatch.setenv("MEDADV_OFFLINE", "1")

    def no_notebooks(*_args, **_kwargs):
        raise AssertionError("a notebook ran without data")
    monkeypatch.setattr(runner, "run_notebook", no_notebooks)
    assert runner.main(["00", "--mode", "fast"]) == 2
    assert runner.main(["99_no_such"]) == 2                   # a typo is reported before any download
    assert "no notebooks matched" in capsys.readouterr().err


def test_bad_inputs_fail_before_downloading(fresh, monkeypatch, tmp_path, capsys):
    server = fresh["server"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    monkeypatch.setenv("MEDADV_DATA", str(precious))
    assert cli_main(["data", "ensure"]) == 2
    line = _err_lines(capsys.readouterr())[-1]
    assert "is not a covid-cxr-mini folder" in line and "MEDADV_DATA" in line
    assert (precious / "notes.txt").read_text() == "mine" and sorted(p.name for p in precious.iterdir()) == \
        ["notes.txt"]

    monkeypatch.setenv("MEDADV_DATA", str(fresh["target"]))
    monkeypatch.setenv("MEDADV_SOURCE_URL", server.template.replace("{commit}", "{sha}"))
    assert cli_main(["data", "ensure"]) == 2
    line = _err_lines(capsys.readouterr())[-1]
    assert "unknown field" in line and "{sha}" in line
    assert server.log == []


def test_checksum_mismatch_is_one_line_and_deletes_the_download(fresh, capsys):
    server, raw = fresh["server"], fresh["raw"]
    item = SOURCE_BY_KEY["mhh"]
    raw.mkdir(parents=True)
    (raw / D.CHECKSUMS_FILE).write_text(json.dumps({item.ident: {"key": "mhh", "sha256": "0" * 64}}))
    assert cli_main(["data", "ensure"]) == 2
    line = _err_lines(capsys.readouterr())[-1]
    assert line.startswith("medadv data ensure: error: checksum mismatch for " + item.ident)
    assert not D.part_path(raw, item).exists() and not (raw / item.dirname).exists()
    assert not fresh["target"].exists()


def test_make_tutorial_runs_the_runner_whose_first_step_is_the_data(tmp_path):
    """`make tutorial` calls the runner (whose data step the tests above cover), nothing before it
    that needs the data."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    dry = subprocess.run(["make", "-n", "tutorial"], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "medadv_lib.course.runner" in dry.stdout
