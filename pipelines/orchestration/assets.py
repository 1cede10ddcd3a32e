"""What the DAG files share: one Airflow Asset per feed's silver table and per
base library, the specs and contracts DAGs are generated from, and the common
``@dag`` arguments.

Imported by DAG files only (it imports ``airflow.sdk``); parse time reads YAML
only, never Spark, GX or pandas."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import yaml
from airflow.sdk import Asset

from pipelines.applications.inspection import InspectionPlan, PlanError, load_plan, plan_paths
from pipelines.contracts import Contract, ContractError, contract_paths, load_contract
from pipelines.library_specs import LibrarySpec, LibrarySpecError, library_spec_paths, load_library_spec
from pipelines.settings import get_settings

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def dag_arguments(*tags: str, retries: int = 2, retry_delay: timedelta = timedelta(minutes=2),
                  execution_timeout: timedelta = timedelta(hours=2)) -> dict:
    """The ``@dag`` arguments every govlake DAG shares: a fixed start date, no
    catch-up, one run at a time, and the retry policy of its tasks."""
    return {"start_date": START_DATE, "catchup": False, "max_active_runs": 1, "tags": list(tags),
            "default_args": {"retries": retries, "retry_delay": retry_delay, "execution_timeout": execution_timeout}}


def silver_asset(contract: Contract) -> Asset:
    return silver_asset_for_feed(contract.feed)


def silver_asset_for_feed(feed: str) -> Asset:
    bureau, _, name = feed.partition(".")
    return Asset(name=f"silver.{feed}", uri=f"govlake://silver/{bureau}/{name}", group="silver")


def library_asset(library: str) -> Asset:
    return Asset(name=f"base.{library}", uri=f"govlake://base/{library}", group="base")


def all_library_assets() -> list[Asset]:
    return [library_asset(path.stem) for path in library_spec_paths()]


def loadable_contracts() -> list[Contract]:
    """Every contract that loads. A broken contract file must not take the
    other feeds' DAGs down with it: it is logged (naming the file and field)
    and skipped; `govlake contracts check` and the test suite fail on it."""
    loaded = []
    for path in contract_paths():
        try:
            loaded.append(load_contract(path))
        except ContractError as exc:
            log.error("no DAG for %s: %s", path, exc)
    return loaded


def loadable_library_specs() -> list[LibrarySpec]:
    """Every library spec that loads; a broken one is logged and skipped."""
    specs = []
    for path in library_spec_paths():
        try:
            specs.append(load_library_spec(path.stem))
        except (LibrarySpecError, KeyError, yaml.YAMLError) as exc:
            log.error("no DAG for %s: %s", path, exc)
    return specs


def inspection_dag_id(plan: str) -> str:
    return f"inspect__{plan.replace('-', '_')}"


def loadable_inspection_plans() -> list[InspectionPlan]:
    """Every inspection plan that loads; a broken one is logged (file and field) and skipped."""
    plans = []
    for path in plan_paths(get_settings()):
        try:
            plans.append(load_plan(str(path), get_settings()))
        except PlanError as exc:
            log.error("no DAG for %s: %s", path, exc)
    return plans


def all_silver_assets() -> list[Asset]:
    """One asset per loadable contract (broken contracts are skipped: they have no DAG)."""
    return [silver_asset(contract) for contract in loadable_contracts()]


def any_of(assets: list[Asset]):
    """A schedule that fires when any of ``assets`` is updated."""
    schedule = assets[0]
    for asset in assets[1:]:
        schedule = schedule | asset
    return schedule


def governance_schedule() -> str:
    """The governance_daily DAG's schedule (``catalog/governance.yaml``)."""
    import yaml

    from pipelines.settings import get_settings

    path = get_settings().catalog_dir / "governance.yaml"
    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["schedule"])
