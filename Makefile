# The two commands of the README: `make demo` (main job, embedded store) and `make test` (the test suite).
# Setup is idempotent: it makes .venv, installs torch==2.13.0 first (so no other torch is pulled),
# then the package with its dev extras, and redoes it only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.perovdb-installed
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast schemas benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/perovdb demo

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

schemas: setup
	$(BIN)/perovdb schemas --write schemas

benchmarks: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .perovdb .pytest_cache
