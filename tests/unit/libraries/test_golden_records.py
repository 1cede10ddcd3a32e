"""``libraries.golden.golden_records`` on tiny inline frames: authority order,
first non-null value wins, provenance per attribute, a shared vocabulary."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipelines.libraries.golden import golden_records
from pipelines.library_specs import Attribute, LibrarySpec, LibrarySpecError, Source

HUKOU, PERMIT, MARRIAGE = "psb.hukou", "psb.residence_permit", "mca.marriage@wife"

SPEC = LibrarySpec(
    library="people", key="person_id", grain="one row per person",
    sources={HUKOU: Source(HUKOU, "psb.hukou", "id_number"),
             PERMIT: Source(PERMIT, "psb.residence_permit", "id_number"),
             MARRIAGE: Source(MARRIAGE, "mca.marriage", "wife_id", adds_records=False)},
    authoritative_sources=(HUKOU,),
    attributes=(
        Attribute("full_name", ((HUKOU, "full_name"), (PERMIT, "full_name"))),
        Attribute("gender", ((HUKOU, "gender"), (PERMIT, "sex")), values={"1": "男", "2": "女"}),
        Attribute("marital_status", ((MARRIAGE, "status"),), values={"married": "已婚", "divorced": "离婚"}),
        Attribute("education", ()),
    ))

T1, T2 = datetime(2026, 11, 27, 8), datetime(2026, 11, 28, 8)
LINEAGE = "_load_id string, _ingested_at timestamp, _row_number long"


@pytest.fixture(scope="module")
def frames(spark):
    hukou = spark.createDataFrame([
        ("P1", "张三", "男", "h1", T1, 1),
        ("P1", "张叁", "男", "h2", T2, 1),          # a later delivery of P1: the latest record counts
        ("P2", None, "女", "h1", T1, 2),            # the authority has no name for P2
        (None, "无名", "男", "h1", T1, 3),          # no key: not a record
    ], f"id_number string, full_name string, gender string, {LINEAGE}")
    permit = spark.createDataFrame([
        ("P1", "张三丰", "1", "r1", T1, 1),
        ("P2", "李四", "2", "r1", T1, 2),
        ("P3", "王五", "2", "r1", T1, 3),           # known to the permit feed only
        ("P4", None, "9", "r1", T1, 4),             # a code outside the vocabulary passes through
    ], f"id_number string, full_name string, sex string, {LINEAGE}")
    marriage = spark.createDataFrame([
        ("P1", "married", "m1", T1, 1),
        ("P9", "divorced", "m1", T1, 2),            # enriches only: P9 is no record of its own
    ], f"wife_id string, status string, {LINEAGE}")
    return {HUKOU: hukou, PERMIT: permit, MARRIAGE: marriage}


@pytest.fixture(scope="module")
def golden(frames):
    return {r["person_id"]: r.asDict() for r in golden_records(SPEC, frames).collect()}


def test_one_record_per_key_a_record_adding_source_knows(golden):
    assert set(golden) == {"P1", "P2", "P3", "P4"}


def test_the_authoritative_source_wins_with_its_latest_record(golden):
    p1 = golden["P1"]
    assert (p1["full_name"], p1["full_name_source"], p1["full_name_load_id"]) == ("张叁", "psb.hukou", "h2")
    assert (p1["gender"], p1["gender_source"], p1["gender_load_id"]) == ("男", "psb.hukou", "h2")


def test_the_first_non_null_source_wins_and_says_where_it_came_from(golden):
    p2 = golden["P2"]
    assert (p2["full_name"], p2["full_name_source"], p2["full_name_load_id"]) == ("李四", "psb.residence_permit", "r1")
    assert (p2["gender"], p2["gender_source"], p2["gender_load_id"]) == ("女", "psb.hukou", "h1")


def test_values_are_mapped_to_the_library_vocabulary(golden):
    assert (golden["P3"]["gender"], golden["P3"]["gender_source"]) == ("女", "psb.residence_permit")
    assert golden["P4"]["gender"] == "9"
    assert (golden["P1"]["marital_status"], golden["P1"]["marital_status_source"],
            golden["P1"]["marital_status_load_id"]) == ("已婚", "mca.marriage", "m1")


def test_no_value_anywhere_leaves_value_and_provenance_null(golden):
    p4 = golden["P4"]
    assert (p4["full_name"], p4["full_name_source"], p4["full_name_load_id"]) == (None, None, None)
    assert (p4["marital_status"], p4["marital_status_source"]) == (None, None)
    assert all((r["education"], r["education_source"], r["education_load_id"]) == (None, None, None)
               for r in golden.values())


def test_known_to_and_is_known_to_authority(golden):
    assert golden["P1"]["known_to"] == ["psb.hukou", "psb.residence_permit", "mca.marriage"]
    assert golden["P2"]["known_to"] == ["psb.hukou", "psb.residence_permit"]
    assert golden["P3"]["known_to"] == ["psb.residence_permit"]
    assert {k: r["is_known_to_authority"] for k, r in golden.items()} == {
        "P1": True, "P2": True, "P3": False, "P4": False}


def test_output_columns_follow_the_spec(frames):
    records = golden_records(SPEC, frames)
    assert records.columns == [
        "person_id", "full_name", "full_name_source", "full_name_load_id", "gender", "gender_source",
        "gender_load_id", "marital_status", "marital_status_source", "marital_status_load_id", "education",
        "education_source", "education_load_id", "known_to", "is_known_to_authority"]


def test_a_missing_source_is_skipped_and_a_missing_authority_knows_nobody(frames):
    without_authority = {PERMIT: frames[PERMIT]}
    rows = {r["person_id"]: r for r in golden_records(SPEC, without_authority).collect()}
    assert set(rows) == {"P1", "P2", "P3", "P4"}
    assert (rows["P1"]["full_name"], rows["P1"]["full_name_source"]) == ("张三丰", "psb.residence_permit")
    assert rows["P1"]["marital_status"] is None
    assert not any(r["is_known_to_authority"] for r in rows.values())


def test_no_record_adding_source_is_an_error(frames):
    with pytest.raises(LibrarySpecError, match="none of its source tables exist"):
        golden_records(SPEC, {MARRIAGE: frames[MARRIAGE]})
