"""``libraries.resolution.kept_per_load`` on a tiny Delta table: each load's
rows are made once, a load that is no longer wanted is deleted, a load
without rows is known by its marker, and the frame returned is pinned."""

from __future__ import annotations

import pytest

from pipelines.libraries.resolution import kept_per_load

SCHEMA = "feed string, _load_id string, value string"


@pytest.fixture
def table(spark, tmp_path):
    """(path, keep(wanted, fresh=False) -> sorted (load, value) rows, calls: what make_rows was asked for)."""
    path = str(tmp_path / "kept")
    calls: list[dict] = []
    # two rows per load, except load "empty", which has none
    rows_of = {load: [(load, f"{load}-1"), (load, f"{load}-2")] for load in ("a", "b", "c")} | {"empty": []}

    def make_rows(missing):
        calls.append({feed: sorted(loads) for feed, loads in missing.items()})
        data = [("f", load, value) for loads in missing.values() for load in loads for _, value in rows_of[load]]
        markers = [("f", load, None) for loads in missing.values() for load in loads]
        return spark.createDataFrame(data, SCHEMA).unionByName(spark.createDataFrame(markers, SCHEMA))

    def keep(wanted, fresh=False):
        frame = kept_per_load(spark, path, {load: "f" for load in wanted}, make_rows, "value", fresh,
                              "test rows")
        return frame, sorted((r["_load_id"], r["value"]) for r in frame.collect())

    return path, keep, calls


def test_each_load_is_made_once_and_a_load_no_longer_wanted_is_deleted(spark, table):
    path, keep, calls = table
    _, rows = keep(["a", "empty"])
    assert rows == [("a", "a-1"), ("a", "a-2")]
    _, rows = keep(["a", "b", "empty"])
    assert rows == [("a", "a-1"), ("a", "a-2"), ("b", "b-1"), ("b", "b-2")]
    # "empty" had no rows: its marker says it is held, so it was not made again
    assert calls == [{"f": ["a", "empty"]}, {"f": ["b"]}]
    _, rows = keep(["b", "c"])
    assert rows == [("b", "b-1"), ("b", "b-2"), ("c", "c-1"), ("c", "c-2")]
    assert calls[-1] == {"f": ["c"]}
    held = {r[0] for r in spark.read.format("delta").load(path).select("_load_id").distinct().collect()}
    assert held == {"b", "c"}                      # "a" and "empty" are gone, markers and all


def test_nothing_is_written_when_every_load_is_held(spark, table):
    from deltalake import DeltaTable

    path, keep, calls = table
    keep(["a", "b"])
    version = DeltaTable(path).version()
    _, rows = keep(["a", "b"])
    assert DeltaTable(path).version() == version and len(calls) == 1 and len(rows) == 4


def test_fresh_makes_every_load_again_and_replaces_the_table(spark, table):
    path, keep, calls = table
    keep(["a", "b"])
    _, rows = keep(["b", "c"], fresh=True)
    assert calls[-1] == {"f": ["b", "c"]}
    assert rows == [("b", "b-1"), ("b", "b-2"), ("c", "c-1"), ("c", "c-2")]
    assert spark.read.format("delta").load(path).count() == 6    # 4 rows and 2 markers: nothing of "a" left


def test_the_frame_is_pinned_to_the_version_the_call_left(spark, table):
    path, keep, _ = table
    frame, _ = keep(["a"])
    spark.createDataFrame([("f", "a", "late")], SCHEMA).write.format("delta").mode("append").save(path)
    assert sorted(r["value"] for r in frame.collect()) == ["a-1", "a-2"]


def test_the_markers_are_found_after_upkeep_compacts_the_table(spark, table):
    from deltalake import DeltaTable

    path, keep, calls = table
    keep(["a", "b"])
    keep(["a", "b", "c", "empty"])
    DeltaTable(path).optimize.compact()            # the nightly upkeep: markers now share files with rows
    assert len(DeltaTable(path).file_uris()) == 1
    _, rows = keep(["a", "b", "c", "empty"])
    assert len(calls) == 2 and len(rows) == 6      # every load known as held: nothing made again


def test_a_table_with_deletion_vectors_is_read_through_spark(spark, table):
    from delta.tables import DeltaTable as SparkTable
    from deltalake import DeltaTable

    path, keep, calls = table
    keep(["a", "b"])
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    SparkTable.forPath(spark, path).delete("value = 'a-1'")
    assert "deletionVectors" in (DeltaTable(path).protocol().reader_features or [])
    _, rows = keep(["a", "b"])
    assert len(calls) == 1 and rows == [("a", "a-2"), ("b", "b-1"), ("b", "b-2")]


# ``kept_table_per_load``: the same contract with delta-rs and Arrow (no Spark job), as rescued rows are kept

@pytest.fixture
def arrow_table(tmp_path):
    """(path, keep(wanted, fresh=False) -> sorted (load, value) rows, calls)."""
    import pyarrow as pa

    from pipelines.libraries.resolution import kept_table_per_load

    path = str(tmp_path / "kept-arrow")
    calls: list[dict] = []
    rows_of = {load: [f"{load}-1", f"{load}-2"] for load in ("a", "b", "c")} | {"empty": []}

    def make_rows(missing):
        calls.append({feed: sorted(loads) for feed, loads in missing.items()})
        loads = [load for loads in missing.values() for load in loads]
        data = [(load, value) for load in loads for value in rows_of[load]] + [(load, None) for load in loads]
        return pa.table({"_load_id": [d[0] for d in data], "value": pa.array([d[1] for d in data], pa.string())})

    def keep(wanted, fresh=False):
        got = kept_table_per_load(path, {load: "f" for load in wanted}, make_rows, "value", fresh)
        return sorted(zip(got["_load_id"].to_pylist(), got["value"].to_pylist()))

    return path, keep, calls


def test_arrow_each_load_is_made_once_and_a_load_no_longer_wanted_is_deleted(arrow_table):
    from deltalake import DeltaTable

    path, keep, calls = arrow_table
    assert keep(["a", "empty"]) == [("a", "a-1"), ("a", "a-2")]
    assert keep(["a", "b", "empty"]) == [("a", "a-1"), ("a", "a-2"), ("b", "b-1"), ("b", "b-2")]
    assert calls == [{"f": ["a", "empty"]}, {"f": ["b"]}]       # "empty" known as held by its marker
    version = DeltaTable(path).version()
    assert len(keep(["a", "b", "empty"])) == 4 and DeltaTable(path).version() == version   # nothing written
    assert keep(["b", "c"]) == [("b", "b-1"), ("b", "b-2"), ("c", "c-1"), ("c", "c-2")]
    assert calls[-1] == {"f": ["c"]}
    held = set(DeltaTable(path).to_pyarrow_table()["_load_id"].to_pylist())
    assert held == {"b", "c"}                                    # "a" and "empty" are gone, markers and all


def test_arrow_fresh_makes_every_load_again_and_deletion_vectors_are_applied(spark, arrow_table):
    from delta.tables import DeltaTable as SparkTable
    from deltalake import DeltaTable

    path, keep, calls = arrow_table
    keep(["a", "b"])
    assert keep(["b", "c"], fresh=True) == [("b", "b-1"), ("b", "b-2"), ("c", "c-1"), ("c", "c-2")]
    assert calls[-1] == {"f": ["b", "c"]} and DeltaTable(path).to_pyarrow_table().num_rows == 6
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    SparkTable.forPath(spark, path).delete("value = 'b-1'")
    assert "deletionVectors" in (DeltaTable(path).protocol().reader_features or [])
    # delta-rs's Arrow reader refuses the table; its DataFusion engine reads it, the deleted row left out
    assert keep(["b", "c", "a"]) == [("a", "a-1"), ("a", "a-2"), ("b", "b-2"), ("c", "c-1"), ("c", "c-2")]
    assert calls[-1] == {"f": ["a"]}
    made = len(calls)
    assert keep(["c", "a"]) == [("a", "a-1"), ("a", "a-2"), ("c", "c-1"), ("c", "c-2")]
    assert len(calls) == made                                    # every load held: none made again
    # "b" deleted by delta-rs from a table with deletion vectors: Spark sees what delta-rs does
    assert sorted((r["_load_id"], r["value"] or "") for r in spark.read.format("delta").load(path).collect()) == [
        ("a", ""), ("a", "a-1"), ("a", "a-2"), ("c", ""), ("c", "c-1"), ("c", "c-2")]      # "": the markers
