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
BENCH_LARGE_ROWS ?= 48000000

.PHONY: setup browser demo test test-unit test-integration test-security bench-ingest bench-ingest-large bench-quality bench-build bench-city bench-day bench-query bench-synth bench-er bench-cluster postgres suites airflow airflow-down trino-up trino-down builder-up builder-down portal portal-down cluster-up cluster-down down contracts clean clean-lake help

help:
	@echo "make demo     generate a small city (SCALE=$(SCALE)) and ingest all of it"
	@echo "make test     run the test suite (installs everything first)"
	@echo "make setup    create .venv, install govlake, cache the Delta jars"
	@echo "make bench-ingest  whole govlake ingest processes (1M and 1,500 rows, gate on) vs pyarrow (BENCH_ROWS=...)"
	@echo "make bench-ingest-large one ~5 GB delivery (48M hukou rows, BENCH_LARGE_ROWS=...) vs streaming pyarrow: wall and peak RSS"
	@echo "make bench-quality GX gate engines (DuckDB, pandas) on a 1M-row hukou delivery"
	@echo "make bench-build   raw files to all base libraries at scales 0.01, 0.02, 0.05 (SCALES=...)"
	@echo "make bench-city    a city (SCALE=1.0 here) day 0 + 3 daily increments (DAYS=), full rebuild (FULL_REBUILD=no skips), Trino point lookup; builds through the build service (BUILD_SERVICE=no: each in its own process)"
	@echo "make bench-day     one daily build at bench-city's scale: this tree against BASELINE (a commit, default HEAD), alternating"
	@echo "make bench-synth   govlake synth (SYNTH_SCALE=0.1) vs the same with its workbooks written in process"
	@echo "make bench-query   Trino vs DuckDB on base.population / base.legal_person (BENCH_SCALE=0.05)"
	@echo "make bench-er      govlake entity resolution vs Splink on the hard-case city (ER_SCALE=0.05): P/R/F1, seconds"
	@echo "make suites   re-render quality/suites/*.json from contracts and quality/custom/"
	@echo "make airflow  start Airflow 3 (standalone) on 127.0.0.1; make down stops it"
	@echo "make trino-up start Trino (HTTPS, passwords) on 127.0.0.1:8443; make down stops it"
	@echo "make cluster-up  start a Spark standalone master and two workers on 127.0.0.1 (GOVLAKE_SPARK_MASTER=spark://127.0.0.1:7077 builds there)"
	@echo "make portal   start the governance portal (https://127.0.0.1:8445, Trino's users and passwords); make down stops it"
	@echo "make builder-up start the lake's build service (a warm Spark driver govlake build builds through); make down stops it"

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

test: setup browser postgres
	$(BIN)/pytest -q --durations=40

# The portal's browser tests: Debian's chromium and its chromedriver, and a CJK
# font so pages (and screenshots) show Chinese; nothing is downloaded at run time.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && fc-list :lang=zh | grep -q .; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else echo "the portal's browser tests need: apt-get install $(BROWSER_PACKAGES)" >&2; fi

# Airflow's metadata DB at scale (GOVLAKE_AIRFLOW_DATABASE=postgres): Debian's PostgreSQL server
# binaries; the project runs its own cluster, so the package's default one is not created
postgres:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	elif command -v sudo >/dev/null; then sudo mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" | sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null && sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else echo "Airflow on PostgreSQL needs: apt-get install postgresql" >&2; fi

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q tests/integration

test-security: setup
	$(BIN)/pytest -q tests/security

contracts: setup
	$(BIN)/govlake contracts check

suites: setup
	$(BIN)/govlake quality suites

airflow: setup
	$(BIN)/govlake airflow up

trino-up: setup
	$(BIN)/govlake trino up

trino-down:
	-$(BIN)/govlake trino down

airflow-down:
	-$(BIN)/govlake airflow down

builder-up: setup
	$(BIN)/govlake builder up

builder-down:
	-$(BIN)/govlake builder down

portal: trino-up
	$(BIN)/govlake portal up

portal-down:
	-$(BIN)/govlake portal down

cluster-up: setup
	$(BIN)/govlake cluster up

cluster-down:
	-$(BIN)/govlake cluster down

down: portal-down airflow-down trino-down builder-down cluster-down

bench-ingest: setup
	$(BIN)/python -m pipelines.dev.bench ingest --rows $(BENCH_ROWS)

bench-ingest-large: setup
	$(BIN)/python -m pipelines.dev.bench ingest-large --rows $(BENCH_LARGE_ROWS)

bench-quality: setup
	$(BIN)/python -m pipelines.dev.bench quality --rows $(BENCH_ROWS)

SCALES ?= 0.01,0.02,0.05
# issue 19: build --full on local[2] and on the two-worker standalone cluster (overhead on one machine)
bench-cluster: setup
	$(BIN)/python -m pipelines.dev.bench cluster --scale $(or $(SCALE),0.05) --repeats $(or $(REPEATS),1)

bench-build: setup
	$(BIN)/python -m pipelines.dev.bench build --scales $(SCALES)

BENCH_SCALE ?= 0.05
# scale 1.0 (the real city) unless SCALE= is given: SCALE's default is the demo's
bench-city: setup
	$(BIN)/python -m pipelines.dev.bench city --scale $(if $(filter command line environment,$(origin SCALE)),$(SCALE),1.0) --days $(or $(DAYS),3) $(if $(filter 0 no,$(FULL_REBUILD)),--no-full-rebuild) $(if $(filter 0 no,$(BUILD_SERVICE)),--no-build-service)

bench-day: setup
	$(BIN)/python -m pipelines.dev.bench day --baseline $(or $(BASELINE),HEAD) --scale $(if $(filter command line environment,$(origin SCALE)),$(SCALE),1.0) --day $(or $(DAY),4) --repeats $(or $(REPEATS),2)

bench-query: setup
	$(BIN)/python -m pipelines.dev.bench query --scale $(BENCH_SCALE)

# govlake's entity resolution vs Splink on the hard-case city (issue 17); ER_SCALE=0.05 by default
bench-er: setup
	$(BIN)/python -m pipelines.dev.bench er --scale $(or $(ER_SCALE),0.05)

bench-synth: setup
	$(BIN)/python -m pipelines.dev.bench synth --scale $(or $(SYNTH_SCALE),0.1)

clean-lake:
	rm -rf lake

clean: clean-lake
	rm -rf $(VENV) .cache data bench-out
