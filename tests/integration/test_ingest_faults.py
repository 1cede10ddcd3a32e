"""A load killed between its commits leaves the published tables as they were; a rerun completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from pipelines.contracts import get_contract
from pipelines.dev.synth.city import write_hukou_export
from pipelines.ingest.load import ingest_file
from pipelines.lake.delta import delta_version
from pipelines.lake.manifest import read_manifest
from pipelines.lake.paths import table_path


def _data_files(table: Path) -> set[Path]:
    return {p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}


def test_killed_load_leaves_previous_state_and_rerun_completes(spark, lake_settings, tmp_path):
    contract = get_contract("psb.hukou")
    small = write_hukou_export(tmp_path / "small", 300, seed=1)
    big = write_hukou_export(tmp_path / "big", 20_000, seed=2)
    first = ingest_file(contract, small, settings=lake_settings)
    assert first.status == "loaded"
    silver = Path(table_path("silver", contract, lake_settings))
    version_before = delta_version(spark, str(silver))

    # killed (SIGKILL, no clean-up) after bronze committed, before quarantine and silver
    env = dict(os.environ, GOVLAKE_HOME=lake_settings.home, GOVLAKE_CRASH_AT="after_bronze")
    process = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ingest", "psb.hukou", str(big)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    assert process.returncode == -signal.SIGKILL
    assert _data_files(Path(table_path("bronze", contract, lake_settings))), "bronze was written before the kill"

    spark.catalog.clearCache()
    assert delta_version(spark, str(silver)) == version_before
    published = spark.read.format("delta").load(str(silver))
    assert published.count() == first.rows_loaded
    assert {r[0] for r in published.select("_load_id").distinct().collect()} == {first.load_id}
    statuses = {r["load_id"]: r["status"] for r in read_manifest(spark, lake_settings).collect()}
    assert statuses == {first.load_id: "loaded"}

    rerun = ingest_file(contract, big, settings=lake_settings)
    assert rerun.status == "loaded" and rerun.reconciles
    published = spark.read.format("delta").load(str(silver))
    assert published.count() == first.rows_loaded + rerun.rows_loaded
    assert published.where(F.col("_load_id") == rerun.load_id).count() == rerun.rows_loaded
    bronze = spark.read.format("delta").load(table_path("bronze", contract, lake_settings))
    assert bronze.where(F.col("_load_id") == rerun.load_id).count() == rerun.rows_read


def test_bad_file_is_rejected_with_file_row_and_column_and_publishes_nothing(spark, lake_settings, tmp_path):
    contract = get_contract("psb.hukou")
    good = write_hukou_export(tmp_path / "good", 200, seed=5)
    ingest_file(contract, good, settings=lake_settings)
    silver = table_path("silver", contract, lake_settings)
    version = delta_version(spark, silver)
    broken = tmp_path / "hukou_broken.csv"
    broken.write_text("姓名,性别,出生日期\n张三,男,1990-01-01\n", encoding="utf-8")
    result = ingest_file(contract, broken, settings=lake_settings)
    assert result.status == "rejected"
    assert "hukou_broken.csv" in result.message and "身份证号 (id_number)" in result.message
    assert delta_version(spark, silver) == version
    not_xlsx = tmp_path / "residence.xlsx"
    not_xlsx.write_bytes(b"this is not a workbook")
    from pipelines.ingest.readers import DeliveryError

    with pytest.raises(DeliveryError, match="residence.xlsx: not a readable XLSX"):
        ingest_file(get_contract("psb.residence_permit"), not_xlsx, settings=lake_settings)


def test_a_rejected_delivery_that_then_fails_is_recorded_as_failed(tmp_path):
    """A delivery missing a required column is rejected, but its run goes on
    to write quarantine and governance; when one of those writes fails, the
    manifest says the run failed (before, it said nothing at all)."""
    import dataclasses

    from pipelines.lake.manifest import latest_status
    from pipelines.lake.paths import governance_path
    from pipelines.settings import get_settings

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    contract = get_contract("psb.hukou")
    required = next(c for c in contract.columns if c.required)
    path = write_hukou_export(tmp_path / "export", 50, seed=3)
    text = path.read_bytes().decode("gb18030")
    header, rest = text.split("\r\n", 1)
    path.write_bytes((header.replace(required.header, "别的列", 1) + "\r\n" + rest).encode("gb18030"))
    # the governance issues table cannot be written: a file stands where its folder would be
    issues = Path(governance_path("issues", settings))
    issues.parent.mkdir(parents=True, exist_ok=True)
    issues.write_text("not a Delta table")
    with pytest.raises(Exception):   # noqa: B017 - whatever delta-rs raises; the manifest is the point
        ingest_file(contract, path, settings=settings)
    from pipelines.ingest.load import make_load_id, sha256_of

    event = latest_status(make_load_id(contract, sha256_of(path)), settings)
    assert event is not None and event["status"] == "failed", event
