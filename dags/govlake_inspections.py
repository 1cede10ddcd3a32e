"""One DAG per inspection plan in ``schemas/inspections/``: the "double random, one public" draw
(双随机一公开, docs/inspections.md).

Triggered by hand with the announced seed (``{"seed": N}``: the seed is what lets anyone re-run a
draw, so the DAG never picks it); a plan drawn already needs ``replaces`` and ``reason`` as well.
Draw and record (plan text, seed, input versions, digest); draw again from the record and fail
unless it is the same; write the public notice (CSV, offline HTML) under ``<lake>/notices/``. A
shortfall of inspectors fails the first task, naming the item, and records nothing.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pipelines.orchestration.assets import dag_arguments, inspection_dag_id, loadable_inspection_plans


def build_inspection_dag(plan):
    @dag(dag_id=inspection_dag_id(plan.plan), doc_md=__doc__, schedule=None,
         description=f"{plan.title}: draw, verify from the record, publish the notice",
         params={"seed": Param(type="integer", minimum=0, maximum=2**63 - 1, description="the announced seed"),
                 "replaces": Param(None, type=["null", "string"]), "reason": Param(None, type=["null", "string"])},
         **dag_arguments("inspection", plan.plan, retries=0))
    def inspection_dag():
        @task
        def draw(name: str = plan.plan, **context) -> str:
            """Draw the plan with the run's seed and record it; the draw id."""
            from pipelines.applications.inspection import draw_recorded

            return draw_recorded(name, context["params"], f"airflow:{context['dag_run'].run_id}")

        @task
        def verify(draw_id: str) -> str:
            """Draw again from the record; fail unless the digest is the recorded one."""
            from pipelines.applications.inspection import verified

            return verified(draw_id)

        @task
        def publish_notice(draw_id: str) -> dict:
            """The public notice (公示) of the draw under <lake>/notices/."""
            from pipelines.applications.inspection import publish_notice

            return publish_notice(draw_id)

        publish_notice(verify(draw()))

    return inspection_dag()


for _plan in loadable_inspection_plans():
    globals()[inspection_dag_id(_plan.plan)] = build_inspection_dag(_plan)
