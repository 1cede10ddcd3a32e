"""Loads of different feeds running at once, as Airflow's workers run them:
every delivery lands, the shared governance tables take all of them, counts
reconcile, a commit conflict is retried, and no load starts a JVM."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.contracts import get_contract
from pipelines.lake.delta import COMMIT_ATTEMPTS, _with_commit_retries, read_delta_rows
from pipelines.lake.manifest import latest_events
from pipelines.lake.paths import governance_path, table_path
from pipelines.settings import get_settings

# four feeds of four bureaus: each process writes its own bronze/silver and
# the same quarantine, quality_results, issues and load_manifest tables
FEEDS = ["psb.hukou", "mca.death", "nr.standard_address", "amr.abnormal_list"]


def _no_java_environment(tmp_path: Path, home: str) -> dict:
    """The environment of a load that cannot start a JVM: JAVA_HOME is an
    empty folder and PATH holds only the venv, so Spark's launcher would fail."""
    empty = tmp_path / "no-java"
    empty.mkdir(exist_ok=True)
    return dict(os.environ, GOVLAKE_HOME=home, JAVA_HOME=str(empty), PATH=str(Path(sys.executable).parent),
                SPARK_HOME=str(empty))


@pytest.fixture(scope="module")
def parallel_loads(ingested_city, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    settings = dataclasses.replace(get_settings(), home=str(tmp / "lake"))
    environment = _no_java_environment(tmp, settings.home)
    start = threading.Barrier(len(FEEDS))
    results: dict[str, subprocess.CompletedProcess] = {}

    def load(feed: str) -> None:
        contract = get_contract(feed)
        files = sorted((ingested_city.deliveries / contract.bureau / contract.feed_name).iterdir())
        start.wait()
        results[feed] = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "ingest", feed, str(files[0]), "--json"],
            env=environment, capture_output=True, text=True, timeout=600)

    threads = [threading.Thread(target=load, args=(feed,)) for feed in FEEDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loads = {}
    for feed, done in results.items():
        assert done.stdout.strip(), f"{feed}: no JSON output; stderr: {done.stderr[-3000:]}"
        loads[feed] = json.loads(done.stdout)[0]
    return settings, loads


def test_every_parallel_load_lands_without_a_jvm(parallel_loads):
    _, loads = parallel_loads
    for feed, load in loads.items():
        assert load["status"] in ("loaded", "blocked"), (feed, load["message"])
        assert load["reconciles"], feed


def test_manifest_records_each_load_once_with_its_counts(parallel_loads):
    settings, loads = parallel_loads
    events = latest_events(settings)
    for feed, load in loads.items():
        event = events[load["load_id"]]
        assert (event["feed"], event["status"]) == (feed, load["status"])
        for count in ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate"):
            assert event[count] == load[count], (feed, count)
    raw = read_delta_rows(governance_path("load_manifest", settings))
    assert sorted(row["load_id"] for row in raw) == sorted(load["load_id"] for load in loads.values())


def test_shared_tables_hold_every_load(parallel_loads):
    settings, loads = parallel_loads
    quarantine = read_delta_rows(governance_path("quarantine", settings))
    results = read_delta_rows(governance_path("quality_results", settings))
    issues = read_delta_rows(governance_path("issues", settings))
    for feed, load in loads.items():
        assert sum(row["_load_id"] == load["load_id"] for row in quarantine) == load["rows_quarantined"], feed
        gate_rows = [row for row in results if row["load_id"] == load["load_id"]]
        assert gate_rows and all(row["feed"] == feed for row in gate_rows), feed
        failed_rules = {row["rule"] for row in gate_rows if not row["success"]}
        opened = {row["rule"] for row in issues if row["feed"] == feed and row["first_load_id"] == load["load_id"]}
        assert failed_rules <= opened, (feed, failed_rules - opened)
        landed = table_path("pending" if load["status"] == "blocked" else "silver", get_contract(feed), settings)
        rows = read_delta_rows(landed)
        assert sum(row["_load_id"] == load["load_id"] for row in rows) == load["rows_loaded"], feed


def test_a_conflicting_commit_is_retried_not_dropped(tmp_path):
    """A real delta-rs conflict: the first attempt deletes through a table
    snapshot that another writer has changed since; the retry reads afresh."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    path = str(tmp_path / "shared")
    write_deltalake(path, pa.table({"feed": ["a", "a", "b"], "x": [1, 2, 3]}), partition_by="feed")
    stale = DeltaTable(path)
    DeltaTable(path).delete("x = 1")          # another process, meanwhile
    attempts = []

    def delete_row_two() -> None:
        attempts.append(1)
        table = stale if len(attempts) == 1 else DeltaTable(path)
        table.delete("feed = 'a'")

    with pytest.raises(CommitFailedError):   # what the first attempt meets on its own
        DeltaTable(path, version=stale.version()).delete("feed = 'a'")
    _with_commit_retries(delete_row_two, path, "delete feed a")
    assert len(attempts) == 2
    assert DeltaTable(path).to_pyarrow_table().to_pylist() == [{"feed": "b", "x": 3}]


def test_a_commit_that_keeps_conflicting_fails_naming_the_table(tmp_path):
    from deltalake.exceptions import CommitFailedError

    from pipelines.lake.delta import CommitConflictError

    calls = []

    def always_conflicts() -> None:
        calls.append(1)
        raise CommitFailedError("Failed to commit transaction: Metadata changed since last commit.")

    with pytest.raises(CommitConflictError, match="governance/quarantine.*after 8 attempts"):
        _with_commit_retries(always_conflicts, "lake/governance/quarantine", "replace feed = 'x'")
    assert len(calls) == COMMIT_ATTEMPTS == 8
