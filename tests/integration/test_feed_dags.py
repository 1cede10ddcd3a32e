"""Feed DAGs run end to end through Airflow's own dag.test() on real deliveries."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from pyspark.sql import functions as F

from pipelines.contracts import get_contract
from pipelines.dev.synth.city import DefectRates, write_hukou_export
from pipelines.ingest.landing import PROCESSED, landing_folder
from pipelines.lake.manifest import read_manifest
from pipelines.lake.paths import table_path
from pipelines.settings import get_settings


@pytest.fixture(scope="module")
def airflow_ready(spark):
    """The session's Airflow home with its SQLite DB migrated; the session lake emptied."""
    from pipelines.orchestration.airflow_local import use_project_airflow

    settings = get_settings()
    shutil.rmtree(settings.home, ignore_errors=True)
    use_project_airflow(settings)
    return settings


def _land(path, contract, settings):
    folder = landing_folder(contract, settings)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, folder / path.name)
    return folder / path.name


def _asset_events(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(AssetEvent).join(
            AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.name == name))


def test_feed_dag_loads_a_delivery_into_silver(spark, airflow_ready, tmp_path):
    from pipelines.orchestration.airflow_local import run_dag

    settings = airflow_ready
    contract = get_contract("psb.hukou")
    clean = DefectRates().scaled(0.0)
    landed = _land(write_hukou_export(tmp_path / "ok", 250, seed=31, rates=clean), contract, settings)
    events_before = _asset_events("silver.psb.hukou") or 0

    run = run_dag("feed__psb_hukou", settings)

    assert run["state"] == "success", run
    assert run["tasks"] == {"ingest_deliveries": "success", "publish_silver": "success",
                            "check_deliveries": "success"}
    silver = spark.read.format("delta").load(table_path("silver", contract, settings))
    assert silver.count() == 250
    assert not landed.exists() and (landed.parent / PROCESSED / landed.name).exists()
    assert _asset_events("silver.psb.hukou") == events_before + 1

    # a rerun with nothing new changes nothing and emits no asset event
    rerun = run_dag("feed__psb_hukou", settings)
    assert rerun["state"] == "success" and rerun["tasks"]["publish_silver"] == "skipped"
    assert spark.read.format("delta").load(table_path("silver", contract, settings)).count() == 250
    assert _asset_events("silver.psb.hukou") == events_before + 1


def test_blocked_delivery_fails_its_dag_visibly_and_not_the_others(spark, airflow_ready, tmp_path):
    from pipelines.orchestration.airflow_local import run_dag

    settings = airflow_ready
    hukou = get_contract("psb.hukou")
    broken = dataclasses.replace(DefectRates().scaled(0.0), id_wrong_check=0.3)
    _land(write_hukou_export(tmp_path / "bad", 200, seed=32, rates=broken), hukou, settings)
    silver_before = spark.read.format("delta").load(table_path("silver", hukou, settings)).count()

    run = run_dag("feed__psb_hukou", settings)

    assert run["state"] == "failed"
    assert run["tasks"]["check_deliveries"] == "failed"
    assert run["tasks"]["publish_silver"] == "skipped"
    assert spark.read.format("delta").load(table_path("silver", hukou, settings)).count() == silver_before
    statuses = [r["status"] for r in read_manifest(spark, settings).where(F.col("feed") == "psb.hukou").collect()]
    assert sorted(statuses) == ["blocked", "loaded"]

    # another feed's DAG is unaffected
    death = get_contract("mca.death")
    other = run_dag("feed__mca_death", settings)   # nothing waiting: a quiet success
    assert other["state"] == "success" and other["tasks"]["publish_silver"] == "skipped"
    assert not (landing_folder(death, settings)).exists() or not any(landing_folder(death, settings).iterdir())
