"""The day's bureau scorecard, stored (schedule: ``catalog/governance.yaml``).

Two tasks. The scorecard as it stands (completeness, validity, uniqueness,
timeliness, open issues per feed, and each feed's score) into
``governance.scorecard_history``, replacing the day's rows, so a rerun
leaves one snapshot. Governors rank bureaus by month from it (the portal's
数据质量通报); bureaus see their own trend. Spark reads the lake; delta-rs
writes the rows. And every resource's freshness and quality pass rate
(``governance.resource_health``, delta-rs only; publishing refreshes it too).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from pipelines.orchestration.assets import dag_arguments, governance_schedule


@dag(dag_id="governance_daily", description="Store the day's bureau scorecard (scorecard_history)",
     doc_md=__doc__, schedule=governance_schedule(), **dag_arguments("governance"))
def governance_daily_dag():
    @task
    def snapshot_scorecard() -> dict:
        """The scorecard of every feed, stored for today; counts of what was stored."""
        from pipelines.contracts import load_contracts
        from pipelines.governance.reports import snapshot_scorecard
        from pipelines.spark import build_spark_session

        rows = snapshot_scorecard(build_spark_session(app_name="govlake-governance"), load_contracts())
        return {"feeds": len(rows), "bureaus": len({r["bureau"] for r in rows})}

    @task
    def snapshot_resource_health() -> dict:
        """Every resource's freshness and quality pass rate (resource_health), recomputed."""
        from pipelines.contracts import load_contracts
        from pipelines.governance.health import snapshot_resource_health

        rows = snapshot_resource_health(load_contracts())
        return {"resources": len(rows), "with_checks": sum(1 for r in rows if r["checks"])}

    snapshot_scorecard()
    snapshot_resource_health()


governance_daily_dag()
