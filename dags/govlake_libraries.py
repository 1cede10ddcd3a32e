"""One DAG per base library, generated from ``schemas/libraries/*.yaml``.

Each is scheduled on the silver Assets of its source feeds and on the
Assets of the libraries it depends on (legal_person needs population to link
legal representatives), rebuilds the library (golden records or derived
tables, gated by its suite, merged with history), and emits the library's
Asset for the publish DAG and the libraries downstream. A build the gate
blocks fails the run and leaves the gold table as it was.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from airflow.sdk import dag, task

from pipelines.library_specs import LibrarySpecError, load_library_spec
from pipelines.orchestration.assets import any_of, library_asset, silver_asset_for_feed
from pipelines.settings import get_settings

log = logging.getLogger(__name__)


def build_library_dag(library: str, source_feeds: list[str], depends_on: list[str]):
    @dag(
        dag_id=f"library__{library}",
        description=f"base.{library}: built from silver, gated, merged with history",
        doc_md=__doc__,
        schedule=any_of([silver_asset_for_feed(feed) for feed in source_feeds]
                        + [library_asset(name) for name in depends_on]),
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        tags=["library", library],
        default_args={"retries": 1, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(hours=2)},
    )
    def library_dag():
        @task(outlets=[library_asset(library)])
        def build(name: str = library) -> dict:
            """Build or refresh the library; fail if its gate blocks the result."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.libraries.build import build_library
            from pipelines.spark import build_spark_session

            result = build_library(build_spark_session(app_name=f"govlake-{name}"), name)
            if result["status"] != "built":
                raise AirflowFailException(f"base.{name} blocked by its quality gate: {result.get('gate')}")
            return {k: v for k, v in result.items() if k not in ("gate", "report")}

        build()

    return library_dag()


for _path in sorted((Path(get_settings().schemas_dir) / "libraries").glob("*.yaml")):
    try:
        _spec = load_library_spec(_path.stem)
    except (LibrarySpecError, KeyError, yaml.YAMLError) as _error:
        log.error("no DAG for %s: %s", _path, _error)
        continue
    globals()[f"library__{_spec.library}"] = build_library_dag(_spec.library, _spec.feeds, list(_spec.depends_on))
