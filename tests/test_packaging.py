"""Packaging: the declared stack, a non-editable install from the wheel, ``medadv --version``."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import medadv_lib
from medadv_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_dependencies() -> list[str]:
    tomllib = pytest.importorskip("tomllib")          # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_course_stack_is_declared_in_pyproject_and_environment_yml():
    deps = {_name(d) for d in _pyproject_dependencies()}
    assert {"jupyterlab", "seaborn"} <= deps
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(line.strip()[2:]) for line in env.splitlines() if line.strip().startswith("- ")}
    missing = deps - listed
    assert not missing, f"environment.yml lacks {sorted(missing)} of pyproject's dependencies"


def test_version_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"medadv {medadv_lib.__version__}"


def test_the_version_is_written_once_in_medadv_lib():
    """pyproject.toml takes its version from ``medadv_lib.__version__`` (setuptools' dynamic version); no second
    copy to forget. The wheel test below checks that a built wheel carries it."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "medadv_lib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", medadv_lib.__version__)


def _can_build_offline() -> bool:
    try:
        import setuptools
        major = int(setuptools.__version__.split(".")[0])
    except Exception:
        return False
    return major >= 77                                  # pyproject's build-system requirement


def test_wheel_installs_and_imports_outside_the_checkout(tmp_path):
    """``pip install .`` (not only ``-e``): build the wheel from a copy of the sources, install it into a
    separate target folder and import the package (with its data files and console script) from there."""
    if not _can_build_offline():
        pytest.skip("setuptools>=77 is not installed here; building the wheel would need the network")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "medadv_lib", src / "medadv_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, env=env, cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("medadv-*.whl")
    assert wheel.name.startswith(f"medadv-{medadv_lib.__version__}-"), wheel.name   # the dynamic version
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"medadv_lib/{p.relative_to(ROOT / 'medadv_lib').as_posix()}"
                for p in (ROOT / "medadv_lib").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected <= set(names), sorted(expected - set(names))[:5]
    assert "medadv_lib/data/BUILDING.md" in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(target), str(wheel)], check=True, env=env, timeout=300)
    probe = ("import importlib, pathlib, medadv_lib, medadv_lib.cli as cli; "
             "mods = ['medadv_lib.data', 'medadv_lib.attacks', 'medadv_lib.metrics', 'medadv_lib.train', "
             "'medadv_lib.widgets', 'medadv_lib.course.runner']; [importlib.import_module(m) for m in mods]; "
             "root = pathlib.Path(medadv_lib.__file__).parent; "
             "print(root); print((root / 'data' / 'BUILDING.md').is_file()); "
             "print(sorted(cli.build_parser()._subparsers._group_actions[0].choices))")
    run_env = {**env, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                         env=run_env, cwd=tmp_path, timeout=300).stdout.splitlines()
    assert Path(out[0]).resolve() == (target / "medadv_lib").resolve()
    assert out[1] == "True"
    for command in ("data", "train", "attack", "uap"):
        assert f"'{command}'" in out[2]
    script = target / "bin" / "medadv"
    assert script.is_file()
    version = subprocess.run([sys.executable, str(script), "--version"], check=True, capture_output=True,
                             text=True, env=run_env, cwd=tmp_path, timeout=300).stdout.strip()
    assert version == f"medadv {medadv_lib.__version__}"


# ---------------------------------------------------------------- `make setup`: Python >= 3.10 first
CHECK = ROOT / "tools" / "check_python.sh"


def _fake_python(folder: Path, name: str = "python3", version: str = "3.9.18") -> Path:
    """A stand-in interpreter: whatever it is asked, it answers with ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / name
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{version}'\n")
    fake.chmod(0o755)
    return fake


def _make_env(**extra) -> dict:
    """The environment without an outer make's variables (a sub-make would add directory lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    return {**env, **extra}


def test_check_python_accepts_this_interpreter():
    out = subprocess.run(["sh", str(CHECK), sys.executable], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


@pytest.mark.parametrize("version", ["3.9.18", "2.7.18"])
def test_check_python_rejects_an_old_one_in_one_sentence(tmp_path, version):
    fake = _fake_python(tmp_path / "bin", version=version)
    out = subprocess.run(["sh", str(CHECK), str(fake)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line == (f"medadv needs Python 3.10 or newer, but {fake} is Python {version}: install Python 3.10 "
                    "or newer and run `make setup PYTHON=python3.11` (or whichever python3.X you installed).")


def test_check_python_names_a_missing_interpreter(tmp_path):
    out = subprocess.run(["sh", str(CHECK), str(tmp_path / "python3.42")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert "python3.42 was not found" in line and "make setup PYTHON=python3.11" in line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_stops_on_python_39_before_creating_the_venv(tmp_path):
    """`make setup` with a Python 3.9 as `python3` on PATH: one line, exit status 2, no venv."""
    fake_bin = tmp_path / "bin"
    _fake_python(fake_bin)
    venv = tmp_path / "venv"
    env = _make_env(PATH=f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(["make", "setup", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert "medadv needs Python 3.10 or newer, but python3 is Python 3.9.18: install Python 3.10 or newer and " \
           "run `make setup PYTHON=python3.11`" in line, line
    assert not venv.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("index", ["", "https://download.pytorch.org/whl/cpu"])
def test_make_setup_passes_torch_index_to_the_torch_install_only(tmp_path, index):
    """`make -n setup TORCH_INDEX=…`: the torch/torchvision install alone uses that index (the rest comes from
    PyPI); without TORCH_INDEX no install names an index. Nothing is run (`make -n`)."""
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", "setup", f"VENV={venv}", f"PYTHON={sys.executable}", f"TORCH_INDEX={index}"],
                         cwd=ROOT, capture_output=True, text=True, env=_make_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    installs = [line for line in out.stdout.splitlines() if " -m pip install " in line]
    (torch_line,) = [line for line in installs if "torch==" in line and " -e " not in line]
    (project_line,) = [line for line in installs if '-e ".[dev,peers]"' in line]
    assert installs.index(torch_line) < installs.index(project_line)
    assert " -q" not in torch_line and " -q" not in project_line      # pip's download progress stays visible
    if index:
        assert torch_line.endswith(f"--no-deps --index-url {index}")
    assert sum("--index-url" in line for line in installs) == (1 if index else 0)
    assert not venv.exists()


def test_torchattacks_is_a_declared_peer_without_the_requests_pin():
    """torchattacks 3.4-3.5.1 pin requests~=2.25.1, which JupyterLab's requests>=2.31 rules out (`pip check`
    fails); 3.3.0 declares no dependencies, so the `peers` extra takes it and `make setup` installs nothing
    on the side."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (spec,) = [r for r in extras["peers"] if _name(r) == "torchattacks"]
    assert "<3.4" in spec.replace(" ", "")
    assert "torchattacks" not in (ROOT / "Makefile").read_text()
    assert "torchattacks>=3.3,<3.4" in (ROOT / "environment.yml").read_text()
    try:
        from importlib.metadata import PackageNotFoundError, requires
        installed = requires("torchattacks") or []
    except PackageNotFoundError:
        pytest.skip("torchattacks is not installed")
    assert not [r for r in installed if _name(r) == "requests"], \
        f"the installed torchattacks requires {installed}: run `make setup` (pyproject's peers extra)"


def test_constraints_pin_exact_versions_that_pyproject_allows():
    """constraints.txt (`make setup` installs with -c; `make constraints` writes it): one exact pin per line,
    none for medadv itself or for what the Makefile's TORCH governs, each within pyproject's ranges."""
    Requirement = pytest.importorskip("packaging.requirements").Requirement
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in ("dev", "peers") for r in project["optional-dependencies"][extra]]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins[_name(req.name)] = spec.version
    assert {"numpy", "jupyterlab", "requests", "torchattacks", "captum"} <= set(pins)
    assert not {"medadv", "torch", "torchvision", "triton"} & set(pins)
    assert not [n for n in pins if n.startswith(("nvidia-", "cuda-"))]
    for req in declared:
        name = _name(req.name)
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {req}"
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c constraints.txt") == 2          # the torch install and the project's
