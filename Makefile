# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install, make sample data, fit (then score and report)
#   make test   same install with the dev extras, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned: the locally served CPU wheel. An unpinned torch would pull CUDA builds.
TORCH  := torch==2.13.0

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" bash pipelines/demo.sh

# Two workers (pytest-xdist), a test file per worker so that a file's fitted models are
# made once; one BLAS/OpenMP thread each, so that the two do not fight over the cores.
test: $(VENV)/.installed-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check trafficsiam tests bench
	$(BIN)/mypy trafficsiam

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/fit_stages.py

clean:
	rm -rf $(VENV) demo .pytest_cache
