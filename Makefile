# The two commands of the README: `make demo` (main job, embedded store) and `make test` (the test suite).
# Setup is idempotent: it makes .venv, installs torch==2.13.0 first (so no other torch is pulled),
# then the package with its dev extras, and redoes it only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.perovdb-installed
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: setup browser demo test test-fast schemas benchmarks accuracy clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

# Debian's chromium for the browser tests of the web page (skipped, with a reason, where it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) \
		|| echo "chromium not installed: the browser tests will be skipped")

demo: setup
	$(BIN)/perovdb demo

test: setup browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

schemas: setup
	$(BIN)/perovdb schemas --write schemas

benchmarks: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/graphs.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/builders.py
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/api_load.py
	$(BIN)/python benchmarks/flow_overhead.py
	$(BIN)/python benchmarks/end_to_end.py

accuracy: setup
	$(BIN)/perovdb evaluate --preset full --out reports

clean:
	rm -rf $(VENV) .perovdb .pytest_cache
