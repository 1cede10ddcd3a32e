"""One DAG per bureau feed, generated from ``schemas/feeds/**.yaml`` (a new contract file adds a DAG): ingest
the waiting deliveries once through the quality gate; emit the silver Asset when silver changed; fail, naming
the load, when a delivery was blocked, rejected or failed. Parse time reads YAML only (Spark: inside tasks)."""

from airflow.sdk import dag, task

from pipelines.contracts import Contract
from pipelines.orchestration.assets import dag_arguments, loadable_contracts, silver_asset

PICK_UP_SCHEDULE = {"hourly": "*/15 * * * *", "daily": "@hourly", "weekly": "@daily", "monthly": "@daily"}


def build_feed_dag(contract: Contract):
    @dag(dag_id=f"feed__{contract.slug}", doc_md=__doc__, schedule=PICK_UP_SCHEDULE.get(contract.cadence, "@hourly"),
         description=f"{contract.owner_bureau_name} {contract.title}: landing -> raw/bronze -> gate -> silver",
         **dag_arguments("feed", contract.bureau))
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
    for contract in loadable_contracts():
        globals()[f"feed__{contract.slug}"] = build_feed_dag(contract)


build_all()
