"""The project's Trino server over real Delta tables: HTTPS with passwords,
publishing, new Delta versions visible, nobody writes through Trino."""

from __future__ import annotations

import dataclasses

import pytest
import requests
import trino

from pipelines.contracts import get_contract
from pipelines.dev.synth.city import DefectRates, write_hukou_export
from pipelines.ingest.load import ingest_file
from pipelines.lake.paths import table_path
from pipelines.serving.publish import publish
from pipelines.serving.trino import query, trino_down, trino_up
from pipelines.settings import get_settings

CLEAN = DefectRates().scaled(0.0)


@pytest.fixture(scope="module")
def trino_lake(spark, tmp_path_factory):
    """A lake with one silver table, and a Trino server over it (own home and port)."""
    root = tmp_path_factory.mktemp("trino")
    settings = dataclasses.replace(get_settings(), home=str(root / "lake"), trino_home=root / "trino",
                                   trino_port=18443, trino_heap="2G")
    contract = get_contract("psb.hukou")
    first = ingest_file(contract, write_hukou_export(root / "d1", 300, seed=41, rates=CLEAN),
                        settings=settings)
    assert first.status == "loaded"
    trino_up(settings)
    yield settings, contract, root
    trino_down(settings)


def test_trino_answers_over_https_with_passwords_only(trino_lake):
    settings, _, _ = trino_lake
    assert query("select 1", settings=settings)[1] == [[1]]
    with pytest.raises(trino.exceptions.HttpError, match="401"):
        query("select 1", password="not-the-password", settings=settings, max_attempts=1)
    config = (settings.trino_home / "etc" / "config.properties").read_text()
    assert "http-server.http.enabled=false" in config
    # the one port speaks TLS only: plain HTTP gets no Trino answer
    try:
        response = requests.get(f"http://127.0.0.1:{settings.trino_port}/v1/info", timeout=5)
        assert response.status_code != 200
    except requests.exceptions.ConnectionError:
        pass


def test_publish_registers_delta_tables_and_new_versions_show_without_republishing(spark, trino_lake):
    settings, contract, root = trino_lake
    outcome = publish(settings)
    assert "silver.psb_hukou" in outcome["registered"] + outcome["unchanged"]
    assert {"governance.load_manifest", "governance.quality_results"} <= set(
        outcome["registered"] + outcome["unchanged"])
    assert query("select count(*) from lake.silver.psb_hukou", settings=settings)[1] == [[300]]
    again = publish(settings)
    assert again["registered"] == [] and "silver.psb_hukou" in again["unchanged"]
    assert "governance.load_status" in again["views"]
    status = query("select status, rows_loaded from lake.governance.load_status", settings=settings)[1]
    assert status == [["loaded", 300]]

    second = ingest_file(contract, write_hukou_export(root / "d2", 200, seed=42, rates=CLEAN),
                         settings=settings)
    assert second.status == "loaded"
    spark_rows = spark.read.format("delta").load(table_path("silver", contract, settings)).count()
    assert query("select count(*) from lake.silver.psb_hukou", settings=settings)[1] == [[spark_rows]] == [[500]]


def test_nobody_writes_table_data_through_trino(trino_lake):
    """Not even the administrator account that publish uses."""
    settings, _, _ = trino_lake
    publish(settings)
    for statement in ("insert into lake.silver.psb_hukou (id_number) values ('x')",
                      "delete from lake.silver.psb_hukou",
                      "update lake.silver.psb_hukou set full_name = 'x'",
                      "create table lake.silver.scratch as select 1 as x",
                      "create table lake.governance.scratch (x integer)"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            query(statement, settings=settings)
