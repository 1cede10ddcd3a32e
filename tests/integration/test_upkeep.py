"""Table upkeep (issue 15 item 3): base libraries clustered by key so a point
lookup reads one file, compaction of small files, VACUUM past the retention;
rows never change."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.lake.upkeep import load_policy, run_upkeep
from pipelines.settings import get_settings

SORT = [("person_id", "ascending"), ("payload", "ascending")]


def _rows(table: DeltaTable) -> pa.Table:
    return table.to_pyarrow_dataset().to_table().sort_by(SORT)


def _last_rewrite(table: DeltaTable) -> dict:
    """The newest commit that is not VACUUM's own."""
    return next(c for c in table.history() if not c["operation"].startswith("VACUUM"))


@pytest.fixture
def lake(tmp_path):
    """base.population in 6 appends whose key ranges all overlap (as daily
    merges leave them), and a silver table of 10 one-row loads."""
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    rng = random.Random(5)
    population = settings.lake_path("base", "population")
    for part in range(6):
        ids = [f"4419001990{n:08d}" for n in range(part, 240_000, 6)]
        payload = ["".join(rng.choice("abcdefghij") for _ in range(24)) for _ in ids]
        write_deltalake(population, pa.table({"person_id": ids, "payload": payload}), mode="append")
    silver = settings.lake_path("silver", "psb", "hukou")
    for load in range(10):
        write_deltalake(silver, pa.table({"id_number": [f"id-{load}"], "_load_id": [f"load-{load}"]}), mode="append")
    return settings, population, silver


def test_base_libraries_are_clustered_by_key_so_a_lookup_reads_one_file(lake, spark):
    settings, population, _ = lake
    before = _rows(DeltaTable(population))
    policy = dataclasses.replace(load_policy(), target_file_mb=1)
    done = {r["table"]: r for r in run_upkeep(["base"], settings, policy, spark_of=lambda: spark)}
    assert done[population]["action"] == "cluster by person_id"
    table = DeltaTable(population)
    files = table.get_add_actions(flatten=True)
    ranges = sorted(zip(files.column("min.person_id").to_pylist(), files.column("max.person_id").to_pylist()))
    assert len(ranges) > 1
    assert all(high < low for (_, high), (low, _) in zip(ranges, ranges[1:]))     # disjoint key ranges
    for key in ("441900199000000000", "441900199000123457", "441900199000239999"):
        assert sum(low <= key <= high for low, high in ranges) == 1
    assert _rows(table).equals(before)
    assert _last_rewrite(table)["userMetadata"] == "govlake upkeep: clustered by person_id"
    # nothing added since: the next night leaves it alone (Spark's VACUUM logs its own commits)
    again = {r["table"]: r for r in run_upkeep(["base"], settings, policy, spark_of=lambda: spark)}
    assert again[population]["action"] == "none"
    history = DeltaTable(population).history()
    assert sum(c.get("userMetadata") == "govlake upkeep: clustered by person_id" for c in history) == 1
    assert _last_rewrite(DeltaTable(population))["userMetadata"] == "govlake upkeep: clustered by person_id"


def test_small_files_are_compacted_and_vacuum_keeps_time_travel_within_the_retention(lake):
    settings, _, silver = lake
    before = DeltaTable(silver).to_pyarrow_dataset().to_table().sort_by("_load_id")
    assert before.num_rows == 10
    done = run_upkeep(["silver"], settings, load_policy())[0]
    assert (done["action"], done["files_before"], done["files_after"]) == ("compact 10 small files", 10, 1)
    assert done["vacuumed_files"] == 0                      # within 168 h: every old version still readable
    assert DeltaTable(silver, version=0).to_pyarrow_dataset().to_table().num_rows == 1
    assert DeltaTable(silver).to_pyarrow_dataset().to_table().sort_by("_load_id").equals(before)

    gone = run_upkeep(["silver"], settings, dataclasses.replace(load_policy(), retention_hours=0))[0]
    assert gone["vacuumed_files"] == 10 and gone["action"] == "none"
    assert DeltaTable(silver).to_pyarrow_dataset().to_table().sort_by("_load_id").equals(before)
    with pytest.raises(Exception):
        DeltaTable(silver, version=0).to_pyarrow_dataset().to_table()


def test_dry_run_changes_nothing_and_unknown_layers_are_refused(lake, spark):
    settings, population, silver = lake
    versions = (DeltaTable(population).version(), DeltaTable(silver).version())
    planned = {r["table"]: r["action"] for r in run_upkeep(None, settings, load_policy(), dry_run=True,
                                                           spark_of=lambda: spark)}
    assert planned[population] == "cluster by person_id" and planned[silver] == "compact 10 small files"
    assert (DeltaTable(population).version(), DeltaTable(silver).version()) == versions
    with pytest.raises(ValueError, match="no upkeep for layer 'gold'"):
        run_upkeep(["gold"], settings, load_policy())


def test_deletion_vectors_of_the_daily_merge_are_clustered_away_and_vacuumed(tmp_path, spark):
    """A base library's daily MERGE closes changed rows with deletion vectors;
    the nightly clustering rewrites the files without them, and VACUUM (on
    Spark: delta-rs's leaves deletion-vector files behind) deletes the old
    files and the vectors. The rows, current and closed, are the same."""
    from pyspark.sql import functions as F

    from pipelines.libraries.golden import merge_with_history

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    population = settings.lake_path("base", "population")
    ids = [f"4419001990{n:08d}" for n in range(2_000)]
    merge_with_history(spark, spark.createDataFrame([(i, "南城") for i in ids], "person_id string, town string")
                       .repartition(4), population, "person_id")
    moved = spark.createDataFrame([(i, "东城") for i in ids[::100]], "person_id string, town string")
    merge_with_history(spark, moved, population, "person_id", touched=moved.select(F.col("person_id").alias("_key")))
    assert list(Path(population).glob("deletion_vector_*.bin"))

    def rows():
        return sorted(map(tuple, spark.read.format("delta").load(population)
                          .select("person_id", "town", "is_current").collect()))

    before = rows()
    assert len(before) == 2_020 and sum(not current for *_, current in before) == 20
    done = run_upkeep(["base"], settings, dataclasses.replace(load_policy(), retention_hours=0),
                      spark_of=lambda: spark)[0]
    assert done["action"] == "cluster by person_id" and done["vacuumed_files"] > 0
    assert not list(Path(population).glob("deletion_vector_*.bin"))
    assert rows() == before


def test_govlake_upkeep_json_is_parseable_although_vacuum_prints_on_stdout(tmp_path, spark):
    """The whole command as the lake_upkeep DAG and bench-city run it: Delta's
    VACUUM prints "Deleted N files ..." on the JVM's stdout, which must land on
    stderr so that ``--json`` stdout is the JSON alone."""
    from pipelines.libraries.golden import merge_with_history

    home = tmp_path / "lake"
    population = dataclasses.replace(get_settings(), home=str(home)).lake_path("base", "population")
    merge_with_history(spark, spark.createDataFrame([(f"4419001990{n:08d}", "南城") for n in range(500)],
                                                    "person_id string, town string"), population, "person_id")
    process = subprocess.run([sys.executable, "-m", "pipelines.cli", "upkeep", "--layer", "base", "--json"],
                             env=dict(os.environ, GOVLAKE_HOME=str(home)), capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "Deleted 0 files and directories" in process.stderr        # VACUUM's println, moved off stdout
    done = json.loads(process.stdout)
    assert [(r["layer"], r["table"], r["action"]) for r in done] == [("base", population, "cluster by person_id")]


def test_the_policy_file_is_checked(tmp_path):
    bad = tmp_path / "upkeep.yaml"
    bad.write_text("schedule: '@daily'\nretention_hours: seven\n", encoding="utf-8")
    with pytest.raises(ValueError, match="catalog/upkeep.yaml: retention_hours: required, a int"):
        load_policy(bad)
