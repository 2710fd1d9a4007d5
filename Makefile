# medadv — the two commands a newcomer needs:
#   make tutorial   execute the course notebooks into build/ (FAST on CPU, full size on CUDA; MODE=fast|full)
#   make test       run the test suite (unit tests, peer cross-checks, every notebook in FAST mode)
# Both first run `make setup`, which creates .venv once (idempotent).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODE   ?= auto
# torch/torchvision pins; override for another platform, e.g. TORCH="torch==2.9.1 torchvision==0.24.1"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: setup test test-fast tutorial bench clean help

help:
	@sed -n '1,5p' Makefile

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,peers]" $(TORCH)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test: setup
	$(BIN)/python -m pytest -ra --durations=15 $(PYTEST_ARGS)

# unit tests only (no notebook execution)
test-fast: setup
	$(BIN)/python -m pytest -ra -m "not notebook" $(PYTEST_ARGS)

tutorial: setup
	$(BIN)/python -m medadv_lib.runner --mode $(MODE) --out build

bench: setup
	$(BIN)/python bench/bench_attacks.py
	$(BIN)/python bench/bench_uap.py

clean:
	rm -rf build .pytest_cache
