"""base.population (first version): golden records on validated keys, each value
from its most authoritative source, history kept, gated by its suite."""

from __future__ import annotations


import pytest
from pyspark.sql import functions as F

from pipelines.lake import delta_version
from pipelines.libraries.golden import build_library


@pytest.fixture(scope="module")
def population(spark, ingested_city):
    settings = ingested_city.settings
    first = build_library(spark, "population", settings)
    table = spark.read.format("delta").load(settings.lake_path("base", "population"))
    return first, table, settings


def test_one_current_record_per_validated_id(population):
    first, table, _ = population
    assert first["status"] == "built" and not first["gate"]["blocked"]
    current = table.where("is_current")
    assert current.count() == current.select("person_id").distinct().count() == first["rows"] == first["inserted"]


def test_every_true_person_in_an_authoritative_silver_table_is_there_with_its_values(spark, population,
                                                                                   ingested_city):
    _, table, settings = population
    truth = {row["person_id"]: row for row in ingested_city.truth_rows("persons.csv")}
    current = {r["person_id"]: r for r in table.where("is_current").collect()}
    silver_ids = set()
    for feed in ("psb/hukou", "psb/residence_permit"):
        silver_ids |= {r[0] for r in spark.read.format("delta").load(settings.lake_path("silver", *feed.split("/")))
                       .select("id_number").collect()}
    assert silver_ids <= set(current)
    assert set(current) <= set(truth)   # no invented person: every golden key is a true person
    hukou = [p for p in silver_ids if truth[p]["registration"] == "hukou"]
    assert hukou
    for person_id in hukou:
        record = current[person_id]
        assert record["full_name_source"] == "psb.hukou"
        assert record["full_name"] == truth[person_id]["full_name"]
        assert str(record["birth_date"]) == truth[person_id]["birth_date"]
        assert record["is_known_to_authority"]


def test_people_known_only_to_other_bureaus_are_flagged(population):
    _, table, _ = population
    others = table.where("is_current and not is_known_to_authority").collect()
    assert all(r["full_name_source"] in ("hrss.social_insurance", "mca.death", None) for r in others)


def test_rebuilding_unchanged_sources_changes_no_record(spark, population):
    first, _, settings = population
    again = build_library(spark, "population", settings)
    assert again["inserted"] == again["changed"] == 0 and again["unchanged"] == first["rows"]
    table = spark.read.format("delta").load(settings.lake_path("base", "population"))
    assert table.count() == first["rows"] and table.where("not is_current").count() == 0
    assert delta_version(spark, settings.lake_path("base", "population")) is not None


def test_history_keeps_what_we_knew_on_a_date(spark, tmp_path):
    from datetime import datetime

    from pipelines.libraries.golden import merge_with_history

    path = str(tmp_path / "gold")
    schema = "person_id string, full_name string, full_name_source string, full_name_load_id string"
    day1, day2 = datetime(2026, 11, 27), datetime(2026, 11, 28)
    first = merge_with_history(spark, spark.createDataFrame(
        [("A", "张三", "psb.hukou", "l1"), ("B", "李四", "psb.hukou", "l1")], schema), path, "person_id", day1)
    assert first == {"inserted": 2, "changed": 0, "unchanged": 0}
    second = merge_with_history(spark, spark.createDataFrame(
        [("A", "张叁", "psb.hukou", "l2"), ("B", "李四", "psb.hukou", "l2"), ("C", "王五", "mca.death", "l2")],
        schema), path, "person_id", day2)
    assert second == {"inserted": 1, "changed": 1, "unchanged": 1}
    table = spark.read.format("delta").load(path)

    def known_on(moment):
        return {r["person_id"]: r["full_name"] for r in table.where(
            (F.col("valid_from") <= moment) & (F.col("valid_to").isNull() | (F.col("valid_to") > moment))).collect()}

    assert known_on(day1) == {"A": "张三", "B": "李四"}
    assert known_on(day2) == {"A": "张叁", "B": "李四", "C": "王五"}
