"""Publish the lake to departments whenever a silver table or a base library changes.

Scheduled on every feed's silver Asset and every base library's Asset (any of them). Tasks: append
new query events and audited HTTP requests to the hash-chained audit log (delta-rs) and refresh the
collection and sharing lists (Spark), make sure Trino is up, register new tables and (re)create the
views, and recompile the access rules (expired grants drop out here). Each task is safe to rerun.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from pipelines.orchestration.assets import all_library_assets, all_silver_assets, any_of, dag_arguments


@dag(dag_id="publish", description="Lists, audit log, Trino registration, views and access rules", doc_md=__doc__,
     schedule=any_of(all_silver_assets() + all_library_assets()),
     **dag_arguments("publish", "trino", retry_delay=timedelta(minutes=1), execution_timeout=timedelta(minutes=30)))
def publish_dag():
    @task
    def refresh_governance_lists() -> dict:
        """New audit events (no Spark, so first), then the collection and sharing lists, into governance tables."""
        from pipelines.serving.audit import load_audit
        from pipelines.serving.requests import refresh_lists
        from pipelines.spark import build_spark_session

        audit = load_audit()
        return refresh_lists(build_spark_session(app_name="govlake-publish")) | {"audit": audit}

    @task
    def start_trino() -> str:
        """Start Trino if it is not running (fetches it on first use), with the
        rules keeper that expires grants and loads the audit log."""
        from pipelines.serving.publish import trino_up_with_rules

        return trino_up_with_rules()["url"]

    @task
    def register_tables() -> dict:
        """Register new Delta tables and (re)create the views in Trino."""
        from pipelines.serving.publish import publish

        outcome = publish()
        return {k: v for k, v in outcome.items() if k != "tables"}

    @task
    def compile_access_rules() -> dict:
        """Catalog + grants -> Trino rules; Trino reloads them within seconds."""
        from pipelines.serving.rules import compile_rules

        return compile_rules()

    refresh_governance_lists() >> start_trino() >> register_tables() >> compile_access_rules()


publish_dag()
