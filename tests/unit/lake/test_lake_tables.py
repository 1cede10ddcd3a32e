"""One way to read a lake table: ``read_table`` (governance tables, declared
schema while missing) and ``read_silver`` (a feed's silver table, None while
missing)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from pipelines.contracts import ContractError
from pipelines.lake.delta import (append_rows, append_table, read_arrow, read_silver, read_table, replace_table,
                                  rows_table, write_arrow_replacing)
from pipelines.lake.manifest import append_manifest, latest_events, latest_status, read_manifest
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import GOVERNANCE_TABLES, ISSUES_DDL
from pipelines.settings import utc_now

ROOT = Path(__file__).resolve().parents[3]


def _columns(spark, ddl: str) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in spark.createDataFrame([], ddl).schema.fields]


def test_every_governance_table_written_by_the_code_has_a_declared_schema():
    """Every ``governance_path("<name>"...)`` in the package names a table of GOVERNANCE_TABLES."""
    found = subprocess.run(["grep", "-rhoE", r"governance_path\(\"[a-z_]+\"", "pipelines"],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    names = {item.split('"')[1] for item in found}
    assert names and names <= set(GOVERNANCE_TABLES), names - set(GOVERNANCE_TABLES)
    assert {"load_manifest", "quality_results", "quality_approvals", "issues", "demand_list", "sharing_list",
            "collection_list", "conflicts", "entity_links", "match_review", "query_audit"} <= set(GOVERNANCE_TABLES)


def test_read_table_of_a_missing_table_is_empty_with_the_declared_columns(spark, lake_settings):
    for name, ddl in GOVERNANCE_TABLES.items():
        frame = read_table(spark, name, lake_settings)
        assert frame.count() == 0, name
        assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == _columns(spark, ddl), name


def test_read_table_reads_an_existing_table_back(spark, lake_settings):
    opened = datetime(2026, 11, 28, 9, 30)
    row = {"issue_id": "GI-1", "bureau": "psb", "feed": "psb.hukou", "rule": "id_number.check_character",
           "status": "open", "first_seen_at": opened, "occurrences": 2, "sample_rows": ["a.csv:2"]}
    append_rows(governance_path("issues", lake_settings), [row], ISSUES_DDL, partition_by="feed")

    rows = [r.asDict() for r in read_table(spark, "issues", lake_settings).collect()]

    assert len(rows) == 1
    assert {k: rows[0][k] for k in row} == row
    assert rows[0]["closed_at"] is None


def test_arrow_tables_append_to_and_replace_a_table_spark_wrote(spark, tmp_path):
    """The address report keeps its measurements with delta-rs in tables
    Spark wrote before: an Arrow append lands in the table's schema, a
    replace takes the new one, and read_arrow gives the DDL's columns back."""
    from pyspark.sql import functions as F

    ddl = "feed string, rows long"
    path = str(tmp_path / "measured")
    spark.createDataFrame([("a",), ("a",), ("b",)], "feed string").groupBy("feed").agg(
        F.count("*").alias("rows")).write.format("delta").save(path)

    append_table(path, rows_table([{"feed": "c", "rows": 5}], ddl))
    assert sorted(read_arrow(path, ddl).to_pylist(), key=lambda r: r["feed"]) == [
        {"feed": "a", "rows": 2}, {"feed": "b", "rows": 1}, {"feed": "c", "rows": 5}]
    assert sorted(map(tuple, spark.read.format("delta").load(path).collect())) == [("a", 2), ("b", 1), ("c", 5)]

    replace_table(path, rows_table([{"feed": "d", "rows": None}], ddl))
    assert read_arrow(path, ddl).to_pylist() == [{"feed": "d", "rows": None}]
    assert read_arrow(str(tmp_path / "none"), ddl) is None


def test_delta_rs_reads_go_through_pyarrows_filesystem_and_a_partition_is_one(tmp_path):
    """``arrow_dataset``: pyarrow's own filesystem reads a local table's files
    (delta-rs's default handler calls into Python per read: 18 times slower
    on a table of rescued rows); ``read_arrow_rows`` reads one partition,
    its column included, and a missing table is None."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    from deltalake import DeltaTable, write_deltalake

    from pipelines.lake.delta import arrow_dataset, read_arrow_rows

    path = str(tmp_path / "links")
    write_deltalake(path, pa.table({"library": ["population", "population", "legal_person"],
                                    "key": pa.array(["A", "B", "C"], pa.string_view())}), partition_by=["library"])
    assert isinstance(arrow_dataset(DeltaTable(path)).filesystem, pafs.SubTreeFileSystem)
    rows = read_arrow_rows(path, ("library", "population"))
    assert sorted(rows["key"].to_pylist()) == ["A", "B"] and set(rows["library"].to_pylist()) == {"population"}
    assert rows.schema.field("key").type == pa.string()          # views made plain, as Spark takes them
    assert read_arrow_rows(str(tmp_path / "none")) is None


def test_a_delete_by_load_ids_takes_exactly_the_listed_loads_quotes_and_all(tmp_path):
    """``sql_strings``: load ids (any text, a quote too) become string
    literals of an ``IN`` list that delta-rs's delete matches exactly."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from pipelines.lake.delta import delete_rows, read_arrow_rows, sql_strings

    path = str(tmp_path / "kept")
    loads = ["a-1", "o'brien-2", "c-3"]
    write_deltalake(path, pa.table({"_load_id": loads, "n": [1, 2, 3]}))
    assert sql_strings(["x", "o'b"]) == "'x', 'o''b'"
    delete_rows(path, f"_load_id IN ({sql_strings(loads[:2])})")
    assert read_arrow_rows(path)["_load_id"].to_pylist() == ["c-3"]


def test_a_table_with_deletion_vectors_is_read_by_datafusion_in_the_tables_own_order(spark, tmp_path):
    """``read_arrow_rows`` on a table delta-rs's Arrow reader refuses: the
    deleted row left out, one partition, ``where`` applied, the columns in
    the table's order (DataFusion puts partition columns last), nested
    string views made plain."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from delta.tables import DeltaTable as SparkTable

    from pipelines.lake.delta import read_arrow_rows

    path = str(tmp_path / "reviews")
    (spark.createDataFrame([("population", "A", {"name": "张三"}, ["P1"]), ("population", "B", {}, ["P2", "P3"]),
                            ("population", "C", None, None), ("legal_person", "D", {}, [])],
                           "library string, key string, record map<string,string>, candidate_keys array<string>")
     .write.format("delta").partitionBy("library").option("delta.enableDeletionVectors", "true").save(path))
    SparkTable.forPath(spark, path).delete("key = 'B'")
    rows = read_arrow_rows(path, ("library", "population"), pc.field("key") != "C")
    assert rows.column_names == ["library", "key", "record", "candidate_keys"]
    assert rows.to_pylist() == [{"library": "population", "key": "A", "record": [("name", "张三")],
                                 "candidate_keys": ["P1"]}]
    assert pa.types.is_string(rows.schema.field("record").type.item_type)
    assert pa.types.is_string(rows.schema.field("candidate_keys").type.value_type)


def test_an_empty_arrow_table_becomes_an_empty_frame_of_its_types(spark):
    """``arrow_frame``: a load without rescued rows, a library without links."""
    import pyarrow as pa

    from pipelines.lake.delta import arrow_frame

    table = pa.table({"key": pa.array([], pa.string()), "at": pa.array([], pa.timestamp("us", tz="UTC")),
                      "said": pa.array([], pa.list_(pa.struct([("column", pa.string())]))),
                      "record": pa.array([], pa.map_(pa.string(), pa.string()))})
    frame = arrow_frame(spark, table)
    assert frame.count() == 0
    assert frame.dtypes == [("key", "string"), ("at", "timestamp"), ("said", "array<struct<column:string>>"),
                            ("record", "map<string,string>")]
    assert arrow_frame(spark, table.append_column("n", pa.array([], pa.int64())).slice(0, 0)).columns[-1] == "n"


def test_the_address_report_rounds_match_rates_as_spark_does(spark):
    """governance.address_match_rates is written from Python now; its rates
    must be the doubles Spark's round(matched / rows, 6) gave (the full
    report, ``address_match_report``, still computes them in Spark)."""
    from pyspark.sql import functions as F

    from pipelines.libraries.address import _rounded_rate

    pairs = [(1, 3), (2, 3), (1, 2_000_000), (3, 2_000_000), (123_457, 1_000_000_0), (999_999_5, 10_000_000),
             (7_752_879, 7_752_879), (0, 5), (1_449_649, 1_449_650)]
    expected = spark.createDataFrame(pairs, "matched long, rows long").select(
        "matched", "rows", F.round(F.col("matched") / F.col("rows"), 6)).collect()
    assert [(m, r, _rounded_rate(m, r)) for m, r in pairs] == [tuple(row) for row in expected]
    assert _rounded_rate(0, 0) is None


def test_read_table_refuses_an_unknown_table(spark, lake_settings):
    with pytest.raises(LookupError, match="no governance table 'issue'"):
        read_table(spark, "issue", lake_settings)


def test_read_manifest_keeps_the_latest_event_of_each_load(spark, lake_settings):
    assert read_manifest(spark, lake_settings).count() == 0
    base = {"load_id": "L1", "feed": "psb.hukou", "bureau": "psb", "source_file": "a.csv"}
    append_manifest([base | {"status": "blocked", "event_at": datetime(2026, 1, 1, 8)},
                     {**base, "load_id": "L2", "status": "loaded", "event_at": datetime(2026, 1, 1, 9)}],
                    lake_settings)
    append_manifest([base | {"status": "loaded"}], lake_settings)   # event_at defaults to now

    latest = {r["load_id"]: r["status"] for r in read_manifest(spark, lake_settings).collect()}

    assert latest == {"L1": "loaded", "L2": "loaded"}
    assert latest_status("L1", lake_settings)["status"] == "loaded"
    assert latest_status("L3", lake_settings) is None
    assert {k: v["status"] for k, v in latest_events(lake_settings, "psb.hukou").items()} == latest
    assert latest_events(lake_settings, "amr.penalty") == {}


def test_read_silver_is_none_until_the_feed_has_a_table(spark, lake_settings):
    import pyarrow as pa

    assert read_silver(spark, "psb.hukou", lake_settings) is None
    path = lake_settings.lake_path("silver", "psb", "hukou")
    write_arrow_replacing(pa.table({"_load_id": ["L1", "L1"], "person_id": ["a", "b"]}), path,
                          "_load_id = 'L1'", "L1")

    frame = read_silver(spark, "psb.hukou", lake_settings)

    assert sorted(r["person_id"] for r in frame.collect()) == ["a", "b"]


def test_read_silver_refuses_an_unknown_feed(spark, lake_settings):
    with pytest.raises(ContractError, match="unknown feed"):
        read_silver(spark, "psb.hukuo", lake_settings)


def test_utc_now_is_naive_utc():
    now = utc_now()
    assert now.tzinfo is None
    reference = datetime.now().astimezone().utcoffset()
    assert abs((datetime.now() - now) - reference).total_seconds() < 5


def test_settings_carry_the_crash_point():
    code = "from pipelines.settings import get_settings; print(get_settings().crash_at)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={"GOVLAKE_CRASH_AT": "after_bronze", "PATH": ""})
    assert done.stdout.strip() == "after_bronze"
