# The commands people run are the ones CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: quickstart test lint bench install install-test dist clean forget-old-name

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The distribution was called `eventflow` before it became `eventflow-orchestrator` (the name
# `eventflow` on PyPI is an unrelated project). A .venv made before the rename still holds the
# old distribution, whose entry points would register every plugin a second time.
forget-old-name: $(BIN)/python
	@if $(BIN)/pip show --quiet eventflow >/dev/null 2>&1; then \
		echo "removing the old 'eventflow' distribution from $(VENV)"; \
		$(BIN)/pip uninstall --quiet --yes eventflow; \
	fi

install: forget-old-name
	$(BIN)/pip install --quiet -e .

install-test: forget-old-name
	$(BIN)/pip install --quiet -e '.[test]'
	scripts/install-test-services.sh

## Build the sdist and the wheel into dist/ (install one with pip install dist/...whl).
dist: $(BIN)/python
	$(BIN)/python -c 'import build' 2>/dev/null || $(BIN)/pip install --quiet build
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

## Install eventflow and run the quickstart pipeline end to end (directory sensor, SQLite).
quickstart: install
	EVENTFLOW=$(abspath $(BIN))/eventflow PYTHON=$(abspath $(BIN))/python examples/quickstart/run.sh

## Install what the tests need and run the whole suite (lint, types, tests).
# Two workers (the CI machine has two cores), each taking whole test files: a file's
# session services (a broker, an orchestrator) start once on the worker that needs them.
PYTEST_WORKERS ?= 2

test: install-test lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=30

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Run the benchmarks and print latency percentiles and throughput.
bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) dist build .eventflow examples/quickstart/.eventflow examples/quickstart/landing examples/quickstart/out
