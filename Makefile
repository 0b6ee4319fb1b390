# Every target creates (or reuses) the virtual environment and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-latest docs lock lint bench services clean

# What was tested is what installs: the versions come from requirements/dev.lock (the
# Dockerfile uses requirements/runtime.lock, Flower's extra included: compose runs
# `tryon flower` from the image), the project itself without resolving again.
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## run: the service's main job on the embedded defaults (sandbox emulator, SQLite)
run: $(STAMP)
	$(BIN)/tryon demo

## test: the whole suite against real RabbitMQ, PostgreSQL and worker processes: in
## parallel (each test has a namespace and a database of its own), then the tests whose
## figures of time or utilization need the machine to themselves
# More xdist workers than cores: most tests wait on worker processes, brokers and timers
# (a run on 2 workers kept the CPU about 25% busy). 3, not more: the suite needs about 15
# minutes of CPU, and with 6-8 workers on 2 cores the tests that time worker start-ups and
# broker diagnostics failed for want of CPU. `loadgroup` hands each idle
# worker the next test in the order tests/harness/scheduling.py sets: the long runs first.
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder
test: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/python -m pytest -q $(PARALLEL) -m "not serial"
	$(BIN)/python -m pytest -q -m serial

## test-fast: unit and integration tests, in parallel (the edit-test loop)
test-fast: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/python -m pytest -q $(PARALLEL) -m "not serial" tests/unit tests/integration

## test-latest: the newest versions pyproject.toml allows, in a venv of their own, against
## the tests that touch every dependency (a new release is seen here before a user sees it)
LATEST := .venv-latest
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,flower]'
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	bash scripts/ensure-services.sh
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider $(PARALLEL) $(LATEST_TESTS)
LATEST_TESTS ?= tests/unit tests/integration/test_operations.py tests/integration/test_embedded.py \
	tests/integration/test_web.py tests/integration/test_store.py tests/integration/test_result_copies.py \
	tests/integration/test_compose_services.py

## lock: re-resolve requirements/*.lock from pyproject.toml (after changing a dependency)
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--extra flower -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--extra dev --extra bench --extra docs --extra flower -o requirements/dev.lock

## docs: the manual (docs/, MkDocs Material) into site/; a broken link fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: the benchmarks (bench/README.md), under 10 minutes; QUICK=1: under 2 minutes
# requirements/dev.lock holds the bench extra too (matplotlib, pyinstrument).
bench: $(STAMP)
	bash scripts/ensure-services.sh
	BENCH_COMMAND="make bench$(if $(QUICK), QUICK=$(QUICK))" PYTHONPATH=tests:. \
		$(BIN)/python -m bench.run $(if $(QUICK),--quick)

services:
	bash scripts/ensure-services.sh

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
