"""Nightly table upkeep, from ``catalog/upkeep.yaml`` (its schedule and its layers, one task each).

Each task Z-orders the base libraries by key (point lookups read one file), compacts the small files
hourly and daily loads leave, and VACUUMs what no version within the retention references. Rows never
change; Spark is not used. Parse time reads the YAML only.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from pipelines.lake.upkeep import load_policy
from pipelines.orchestration.assets import dag_arguments

POLICY = load_policy()


@dag(dag_id="lake_upkeep", description="Z-order base libraries, compact small files, VACUUM past the retention",
     doc_md=__doc__, schedule=POLICY.schedule,
     **dag_arguments("upkeep", retries=1, execution_timeout=timedelta(hours=3)))
def lake_upkeep_dag():
    previous = None
    for layer in POLICY.layers:
        @task(task_id=f"upkeep_{layer}")
        def upkeep(layer: str = layer) -> dict:
            """Keep up every table of the layer; counts of what was done."""
            from pipelines.lake.upkeep import run_upkeep

            done = run_upkeep([layer])
            return {"tables": len(done), "rewritten": sum(r["action"] != "none" for r in done),
                    "vacuumed_files": sum(r["vacuumed_files"] for r in done)}

        # one layer at a time: the nightly window is long, the machine's cores are few
        current = upkeep()
        if previous is not None:
            previous >> current
        previous = current


lake_upkeep_dag()
