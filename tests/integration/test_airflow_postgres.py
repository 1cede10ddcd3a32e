"""Issue 19, item 3: Airflow on PostgreSQL runs the feed DAGs four at a time.

``airflow standalone`` with the LocalExecutor on the project's own PostgreSQL
(``GOVLAKE_AIRFLOW_DATABASE=postgres``, parallelism 4) picks up every
delivery of a small generated city: every feed DAG is unpaused and
triggered through the REST API. Airflow's own record (the task_instance
table in PostgreSQL) shows four tasks running at once and never more; the
lake shows every delivery loaded (or blocked, or rejected) exactly once,
every load's rows reconciled, and the shared tables (manifest, quarantine,
quality results) holding every load's rows: no commit lost."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from pipelines.contracts import load_contracts
from pipelines.dev.synth import generate_city
from pipelines.ingest.landing import drop_deliveries, pending_deliveries
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.manifest import latest_events
from pipelines.lake.paths import governance_path
from pipelines.settings import get_settings

AIRFLOW_PORT = 18470                # PostgreSQL at +715
PARALLELISM = 4


def _api(url: str, token: str | None = None, data: dict | None = None, method: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                     headers=headers, method=method or ("POST" if data is not None else "GET"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def _most_at_once(intervals: list[tuple]) -> int:
    """The largest number of [start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_feed_dags_run_four_at_once_on_postgres_and_load_every_delivery_once(tmp_path):
    from pipelines.orchestration.airflow_local import airflow_down, airflow_up
    from pipelines.orchestration.postgres import _connect

    # PostgreSQL runs as its own account under root: its folder must be reachable (not under a 0700 tmp dir)
    base = Path(tempfile.mkdtemp(prefix="govlake-airflow-pg-", dir="/var/tmp"))
    base.chmod(0o711)
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), airflow_home=base / "airflow",
                                   airflow_port=AIRFLOW_PORT, airflow_database="postgres",
                                   airflow_parallelism=PARALLELISM)
    contracts = load_contracts()
    generate_city(tmp_path / "city", scale=0.0006, seed=5)
    drop_deliveries(tmp_path / "city" / "deliveries", contracts, settings)
    # a resent file (the same bytes again) is one delivery: exactly once means once per content
    landed = {(contract.feed, hashlib.sha256(path.read_bytes()).hexdigest())
              for contract in contracts.values() for path in pending_deliveries(contract, settings)}
    feed_dags = {f"feed__{c.slug}" for c in contracts.values()}
    try:
        # paused at creation: only the feed DAGs are unpaused (the library DAGs stay still)
        status = airflow_up(settings, wait_seconds=300,
                            extra_environment={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"})
        url = status["url"]
        password = json.loads(Path(status["password_file"]).read_text())["admin"]
        token = _api(f"{url}/auth/token", data={"username": "admin", "password": password})["access_token"]
        deadline, listed = time.monotonic() + 180, set()
        while time.monotonic() < deadline and not listed >= feed_dags:
            listed = {d["dag_id"] for d in _api(f"{url}/api/v2/dags?limit=1000", token)["dags"]}
            time.sleep(2)
        assert listed >= feed_dags
        for dag_id in sorted(feed_dags):
            _api(f"{url}/api/v2/dags/{dag_id}", token, {"is_paused": False}, method="PATCH")
            _api(f"{url}/api/v2/dags/{dag_id}/dagRuns", token, {"logical_date": None})
        deadline, states = time.monotonic() + 900, {}
        while time.monotonic() < deadline:
            runs = _api(f"{url}/api/v2/dags/~/dagRuns?limit=1000", token)["dag_runs"]
            states = Counter(r["state"] for r in runs if r["dag_id"] in feed_dags)
            if {r["dag_id"] for r in runs} >= feed_dags and set(states) <= {"success", "failed"}:
                break
            time.sleep(5)
        assert set(states) <= {"success", "failed"}, states

        # Airflow's own record, in PostgreSQL: four tasks at once, never more
        connection = _connect(settings)
        with connection.cursor() as cursor:
            cursor.execute("SELECT dag_id, task_id, state, start_date, end_date FROM task_instance "
                           "WHERE dag_id LIKE 'feed\\_\\_%' AND start_date IS NOT NULL")
            tasks = cursor.fetchall()
        connection.close()
    finally:
        airflow_down(settings)
        shutil.rmtree(base, ignore_errors=True)
    ingests = [t for t in tasks if t[1] == "ingest_deliveries"]
    assert {t[0] for t in ingests} == feed_dags and all(t[2] == "success" for t in ingests), ingests
    assert _most_at_once([(t[3], t[4]) for t in tasks]) == PARALLELISM

    # the lake: every landed delivery exactly once, rows reconciled, no commit lost
    events = latest_events(settings)
    assert sorted((e["feed"], e["sha256"]) for e in events.values()) == sorted(landed)
    outcomes = Counter(e["status"] for e in events.values())
    # a correction (更正) replaces its original: both were loaded, the original's latest event says replaced
    assert set(outcomes) <= {"loaded", "blocked", "rejected", "replaced"}, outcomes
    assert outcomes["loaded"] > len(landed) // 2, outcomes
    ingested = {row["load_id"]: row for row in read_delta_rows(governance_path("load_manifest", settings))
                if row["status"] in ("loaded", "blocked")}           # the event ingest ended each load with
    assert set(ingested) == {i for i, e in events.items() if e["status"] != "rejected"}
    quarantine = Counter(r["_load_id"] for r in read_delta_rows(governance_path("quarantine", settings)))
    checked = {r["load_id"] for r in read_delta_rows(governance_path("quality_results", settings))}
    for load_id, event in ingested.items():
        assert event["rows_read"] == event["rows_loaded"] + event["rows_quarantined"] + event["rows_duplicate"], event
        assert quarantine[load_id] == event["rows_quarantined"], event      # one row per quarantined row
        assert load_id in checked, f"{event['source_file']}: no quality results"
