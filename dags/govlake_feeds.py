"""One DAG per bureau feed, generated from ``schemas/feeds/**.yaml``.

Adding a contract file adds a DAG; there is no Python to write. Each DAG picks
up the deliveries waiting in the feed's landing folder, ingests them exactly
once through the quality gate, and:

- ``publish_silver`` emits the feed's silver Asset when a delivery reached silver
  (it is skipped otherwise, so downstream DAGs do not run for nothing);
- ``check_deliveries`` fails, naming the load and its governance issues, when a
  delivery was blocked, rejected or failed. Other feeds' DAGs are unaffected.

Parse time reads YAML only; Spark is imported inside the tasks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

from pipelines.contracts import Contract, ContractError, contract_paths, load_contract
from pipelines.orchestration.assets import silver_asset

log = logging.getLogger(__name__)

PICK_UP_SCHEDULE = {"hourly": "*/15 * * * *", "daily": "@hourly", "weekly": "@daily", "monthly": "@daily"}


def build_feed_dag(contract: Contract):
    @dag(
        dag_id=f"feed__{contract.slug}",
        description=f"{contract.owner_bureau_name} {contract.title}: landing -> raw/bronze -> gate -> silver",
        doc_md=__doc__,
        schedule=PICK_UP_SCHEDULE.get(contract.cadence, "@hourly"),
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        tags=["feed", contract.bureau],
        default_args={"retries": 2, "retry_delay": timedelta(minutes=2),
                      "execution_timeout": timedelta(hours=2)},
    )
    def feed_dag():
        @task
        def ingest_deliveries(feed: str = contract.feed) -> dict:
            """Ingest every waiting delivery; returns load ids by outcome."""
            from pipelines.ingest.landing import ingest_landing

            return ingest_landing(feed)

        @task(outlets=[silver_asset(contract)], retries=0)
        def publish_silver(summary: dict) -> list[str]:
            """Emit the silver asset event when a delivery reached silver."""
            from airflow.sdk.exceptions import AirflowSkipException

            if not summary["silver_changed"]:
                raise AirflowSkipException(f"{summary['feed']}: silver unchanged")
            return summary["loaded"]

        @task(retries=0)
        def check_deliveries(summary: dict) -> str:
            """Fail visibly for blocked, rejected or failed deliveries."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.ingest.landing import DeliveryProblem, raise_for_problem_deliveries

            try:
                return raise_for_problem_deliveries(summary)
            except DeliveryProblem as exc:
                raise AirflowFailException(str(exc)) from None

        summary = ingest_deliveries()
        publish_silver(summary)
        check_deliveries(summary)

    return feed_dag()


def build_all() -> None:
    """A broken contract file must not take the other feeds' DAGs down with it:
    it is logged (naming the file and field) and skipped; `govlake contracts
    check` and the test suite fail on it."""
    for path in contract_paths():
        try:
            contract = load_contract(path)
        except ContractError as exc:
            log.error("no DAG for %s: %s", path, exc)
            continue
        globals()[f"feed__{contract.slug}"] = build_feed_dag(contract)


build_all()
