# Every target creates (or reuses) the virtual environment and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the service's main job on the embedded defaults (sandbox emulator, SQLite)
run: $(STAMP)
	$(BIN)/tryon demo

## test: the whole suite against real RabbitMQ, PostgreSQL and worker processes
test: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/python -m pytest -q

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: the benchmarks (bench/README.md), under 10 minutes; QUICK=1: under 2 minutes
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	bash scripts/ensure-services.sh
	BENCH_COMMAND="make bench$(if $(QUICK), QUICK=$(QUICK))" PYTHONPATH=tests:. \
		$(BIN)/python -m bench.run $(if $(QUICK),--quick)

services:
	bash scripts/ensure-services.sh

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
