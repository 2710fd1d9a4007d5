# medadv — the commands a newcomer needs:
#   make tutorial   execute the course notebooks into build/ (FAST on CPU, full size on CUDA; MODE=fast|full;
#                   SEED=1 and PRECISION=fp32|bf16 run it under another seed or arithmetic, OUT=build-seed1),
#                   then write the reproduction report build/report.html
#   make lab        open the course in JupyterLab (the project's kernel, on notebooks/; LAB_ARGS="--port 8890")
#   make test       run the test suite (unit tests, peer cross-checks, every notebook in FAST mode)
# All first run `make setup`, which creates .venv once (idempotent).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODE   ?= auto
# make tutorial: every notebook's SEED and PRECISION (empty: the notebooks' own, 0 and the policy's) and the output folder
SEED      ?=
PRECISION ?=
OUT       ?= build
# torch/torchvision pins; override for another platform, e.g. TORCH="torch==2.9.1 torchvision==0.24.1"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# a PyTorch wheel index for torch/torchvision only, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (CPU-only wheels, far smaller); empty (the default, what CI tests): PyPI's wheels
TORCH_INDEX ?=
PYTEST_ARGS ?=
# extra `jupyter lab` options for `make lab`, e.g. LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=

.PHONY: setup constraints test test-fast tutorial readme-numbers lab bench clean help

help:
	@sed -n '1,7p' Makefile

setup: $(VENV)/.setup-done

# Python >= 3.10 first (tools/check_python.sh: the venv's python once it exists, else $(PYTHON)); a too old
# or missing one stops here with one line, exit status 2. pip shows its downloads (PIP_QUIET=1 hides them).
# With TORCH_INDEX, torch and torchvision come from that index alone (--no-deps: their pure-Python
# dependencies come from PyPI with everything else in the next step). constraints.txt pins every other
# package to the version in a working .venv (see `make constraints`).
$(VENV)/.setup-done: pyproject.toml constraints.txt
	$(if $(PYTHON_PROBLEM),$(error $(patsubst %.,%,$(PYTHON_PROBLEM))))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt $(TORCH)$(if $(TORCH_INDEX), --no-deps --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev,peers]" $(TORCH)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

SETUP_PYTHON   = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
SETUP_FIX      = $(if $(wildcard $(BIN)/python),remove $(VENV) and run `make setup PYTHON=python3.11` (or another python3.10+),install Python 3.10 or newer and run `make setup PYTHON=python3.11` (or whichever python3.X you installed))
PYTHON_PROBLEM = $(shell sh tools/check_python.sh '$(SETUP_PYTHON)' '$(SETUP_FIX)' 2>&1)

test: setup
	$(BIN)/python -m pytest -ra --durations=15 $(PYTEST_ARGS)

# unit tests only (no notebook execution)
test-fast: setup
	$(BIN)/python -m pytest -ra -m "not notebook" $(PYTEST_ARGS)

# the runner's first step finds the dataset, or says what it fetches and downloads and builds it
# (medadv_lib.data.ensure; MEDADV_OFFLINE=1: a one-line error instead), then runs every notebook
tutorial: setup
	$(BIN)/python -m medadv_lib.course.runner --mode $(MODE) --out $(OUT)$(if $(SEED), --seed $(SEED))$(if $(PRECISION), --precision $(PRECISION))
	$(BIN)/python -m medadv_lib report --runs $(OUT)/runs --out $(OUT)/report.html
	$(BIN)/python -m medadv_lib.course.recorded --runs $(OUT)/runs --out $(OUT)/recorded_run.json

# after `make tutorial`: make its numbers the README's (docs/recorded_run.json and the README's recorded-run block)
readme-numbers: setup
	$(BIN)/python -m medadv_lib.course.recorded --runs build/runs --out docs/recorded_run.json
	$(BIN)/python -m medadv_lib.course.recorded --from docs/recorded_run.json --readme README.md

# JupyterLab from the venv, rooted at notebooks/; its kernels run the project's (.venv) Python (the venv's
# kernel specs before the user's) and talk to the server over CurveZMQ-encrypted sockets, not plain TCP
lab: setup
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --ServerApp.root_dir=notebooks \
		--KernelManager.transport_encryption=auto $(LAB_ARGS)

bench: setup
	$(BIN)/python bench/bench_attacks.py
	$(BIN)/python bench/bench_uap.py

clean:
	rm -rf build .pytest_cache

# after a dependency change and a `make setup` that works: pin what .venv holds, for everyone's `make setup`
# (torch, torchvision and their CUDA bundle stay with TORCH; each pin is marked with .venv's Python version,
# the one that tested it, so another Python resolves from pyproject's ranges instead)
constraints:
	@test -x $(BIN)/python || { echo "make constraints: $(VENV) does not exist; run make setup first" >&2; exit 2; }
	@pyver=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') && { \
	  echo "# The versions \`make setup\` installs (pip -c), frozen from a working .venv by \`make constraints\`."; \
	  echo "# torch, torchvision, triton, nvidia-* and cuda-* are set by the Makefile's TORCH, not here."; \
	  $(BIN)/python -m pip freeze --exclude-editable \
	    | grep -Eiv '^(#|-e |medadv==|torch==|torchvision==|triton==|nvidia-|cuda-)' | grep -v ' @ ' \
	    | sed "s/\$$/ ; python_version == \"$$pyver\"/"; \
	} > constraints.txt.tmp
	@if cmp -s constraints.txt.tmp constraints.txt; then rm constraints.txt.tmp; echo "constraints.txt: unchanged"; \
	 else mv constraints.txt.tmp constraints.txt; echo "constraints.txt: updated from $(VENV)"; fi
