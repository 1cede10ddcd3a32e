"""One DAG per base library, generated from ``schemas/libraries/*.yaml``.

Each is scheduled on the silver Assets of its source feeds and on the Assets of the libraries it depends
on (legal_person needs population to link legal representatives), rebuilds the library (golden records
or derived tables, gated by its suite, merged with history), and emits the library's Asset for the
publish DAG and the libraries downstream. A build the gate blocks fails the run and leaves the gold
table as it was.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from pipelines.library_specs import LibrarySpec
from pipelines.orchestration.assets import (
    any_of,
    dag_arguments,
    library_asset,
    loadable_library_specs,
    silver_asset_for_feed,
)


def build_library_dag(spec: LibrarySpec):
    library = spec.library

    @dag(dag_id=f"library__{library}", doc_md=__doc__,
         description=f"base.{library}: built from silver, gated, merged with history",
         schedule=any_of([silver_asset_for_feed(feed) for feed in spec.feeds]
                         + [library_asset(name) for name in spec.depends_on]),
         **dag_arguments("library", library, retries=1))
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


def build_all() -> None:
    for spec in loadable_library_specs():
        globals()[f"library__{spec.library}"] = build_library_dag(spec)


build_all()
