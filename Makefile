# One task runner: README, CI and developers all call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_MODEL := $(abspath ..)/shared/models/all-MiniLM-L6-v2-int8
# Tests never reach a model hub: they use a local ONNX model folder.
export MEMORYD_MODEL_DIR ?= $(SHARED_MODEL)

.PHONY: install test lint bench bench-smoke bench-locomo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check memoryd cli tests scripts
	$(BIN)/mypy memoryd

bench: install
	$(BIN)/python scripts/bench.py --sizes 10000,100000 --real-search 100000 --json-out bench-results.json

bench-locomo: install
	$(BIN)/python scripts/bench_locomo.py --data $(abspath ..)/shared/bench/locomo-dev

bench-smoke: install
	$(BIN)/python scripts/bench.py --sizes 1000 --queries 20 --real 0

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
