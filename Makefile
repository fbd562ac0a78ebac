# The commands people run are the ones CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: quickstart test lint bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	scripts/install-test-services.sh

## Install eventflow and run the quickstart pipeline end to end (directory sensor, SQLite).
quickstart: install
	EVENTFLOW=$(abspath $(BIN))/eventflow PYTHON=$(abspath $(BIN))/python examples/quickstart/run.sh

## Install what the tests need and run the whole suite (lint, types, tests).
test: install-test lint
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Run the benchmarks and print latency percentiles and throughput.
bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .eventflow examples/quickstart/.eventflow examples/quickstart/landing examples/quickstart/out
