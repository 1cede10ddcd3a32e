# govlake: two commands do all set-up — `make demo` and `make test`.
# Every target installs what it needs, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JARS := .cache/ivy/govlake-delta-jars.txt
SCALE ?= 0.002
SEED ?= 7
BENCH_ROWS ?= 1000000

.PHONY: setup demo test test-unit test-integration bench-ingest contracts clean clean-lake help

help:
	@echo "make demo     generate a small city (SCALE=$(SCALE)) and ingest all of it"
	@echo "make test     run the test suite (installs everything first)"
	@echo "make setup    create .venv, install govlake, cache the Delta jars"
	@echo "make bench-ingest  1M-row hukou ingest vs pyarrow (BENCH_ROWS=...)"

setup: $(INSTALLED) $(JARS)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# Resolved once through Spark's own package resolution; later runs are offline.
$(JARS): $(INSTALLED)
	$(BIN)/govlake setup

demo: setup
	$(BIN)/govlake demo --scale $(SCALE) --seed $(SEED)

test: setup
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q tests/integration

contracts: setup
	$(BIN)/govlake contracts check

bench-ingest: setup
	$(BIN)/python -m pipelines.bench ingest --rows $(BENCH_ROWS)

clean-lake:
	rm -rf lake

clean: clean-lake
	rm -rf $(VENV) .cache data bench-out
