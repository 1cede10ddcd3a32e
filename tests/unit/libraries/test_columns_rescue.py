"""Entity resolution re-standardises quarantined rows with the ingest (Arrow)
rules: typed contract columns, failed columns nulled, and (issue 20) the
gender or birth date an ID cross-check contradicted nulled too."""

from __future__ import annotations

from datetime import date, datetime

from pipelines import reference as ref
from pipelines.lake.tables import QUARANTINE_DDL
from pipelines.libraries.resolution import rescued_table
from pipelines.settings import get_settings

BODY = "44190019900101123"          # sequence digit 3: male
VALID = BODY + ref.id_check_char(BODY)


def _row(number: int, values: dict, failures: list[tuple[str, str]]):
    return ("psb.hukou", "load-1", "hukou.csv", number, failures[0][0] if failures else None, None,
            failures[0][1] if failures else None,
            [(column, None, rule, None) for column, rule in failures], values, datetime(2026, 1, 2, 3, 4, 5))


def _rescued(spark, rows):
    """``rescued_table`` on quarantined rows as ``quarantined_table`` hands them over, back as a frame."""
    from pyspark.sql import functions as F

    quarantined = spark.createDataFrame(rows, QUARANTINE_DDL).select(
        "original_values", "failures", "_load_id", "_source_file", "_row_number",
        F.col("quarantined_at").alias("_ingested_at"))
    return spark.createDataFrame(rescued_table(quarantined.toArrow(), "psb.hukou", get_settings()))


def test_rescued_rows_type_values_and_null_what_was_quarantined(spark):
    rows = [
        _row(2, {"身份证号": VALID, "姓名": " 张三 ", "性别": "女", "出生日期": "1990/1/1"},
             [("id_number", "id_number.gender_parity")]),
        _row(3, {"身份证号": VALID, "姓名": "李四", "性别": "男", "出生日期": "1991-01-01"},
             [("id_number", "id_number.birth_date_mismatch")]),
        _row(4, {"公民身份号码": VALID.lower(), "姓名": "王五", "性别": "男", "出生日期": "待定"},
             [("birth_date", "date.unparseable")]),
        _row(5, {"身份证号": "4.41900E+17", "姓名": "赵六", "性别": "男", "出生日期": "19900101"},
             [("id_number", "id_number.excel_mangled")]),
    ]
    got = {r["_row_number"]: r.asDict() for r in _rescued(spark, rows).collect()}
    assert got[2]["id_number"] is None and got[2]["gender"] is None          # the contradicting gender is out
    assert got[2]["birth_date"] == date(1990, 1, 1) and got[2]["full_name"] == "张三"
    assert got[2]["_raw_id_number"] == VALID and got[2]["_failed_columns"] == ["id_number"]
    assert got[3]["birth_date"] is None and got[3]["gender"] == "男"          # the contradicting birth date is out
    assert got[4]["id_number"] == VALID and got[4]["birth_date"] is None      # a synonym header, folded
    assert got[5]["id_number"] is None and got[5]["_raw_id_number"] == "4.41900E+17"
    assert got[5]["birth_date"] == date(1990, 1, 1)
    assert {r["_load_id"] for r in got.values()} == {"load-1"}
    assert got[2]["_ingested_at"] == datetime(2026, 1, 2, 3, 4, 5)


def test_rescued_rows_hand_over_what_they_said_against_their_id_as_conflicts(spark):
    """Issue 20: the nulled gender / birth date is not lost: it becomes a
    conflict against the delivering feed, the ID number the authority."""
    from pipelines.libraries.resolution import id_disagreements
    from pipelines.library_specs import load_library_spec

    rows = [
        _row(2, {"身份证号": VALID, "姓名": "张三", "性别": "女", "出生日期": "1990/1/1"},
             [("id_number", "id_number.gender_parity")]),
        _row(3, {"身份证号": VALID, "姓名": "李四", "性别": "男", "出生日期": "1991-01-01"},
             [("id_number", "id_number.birth_date_mismatch")]),
        _row(4, {"身份证号": VALID, "姓名": "王五", "性别": "男", "出生日期": "待定"},
             [("birth_date", "date.unparseable")]),
    ]
    rescued = _rescued(spark, rows)
    said = {r["_row_number"]: [d.asDict() for d in r["_id_disagreements"]] for r in rescued.collect()}
    assert said == {2: [{"key": VALID, "column": "gender", "value": "女"}],
                    3: [{"key": VALID, "column": "birth_date", "value": "1991-01-01"}], 4: []}
    found = sorted((r["subject"], r["attribute"], r["authoritative_feed"], r["authoritative_value"], r["other_feed"],
                    r["other_column"], r["other_value"], r["other_load_id"])
                   for r in id_disagreements(load_library_spec("population"), "psb.hukou", rescued).collect())
    assert found == [(VALID, "birth_date", "id_number", "1990-01-01", "psb.hukou", "birth_date", "1991-01-01", "load-1"),
                     (VALID, "gender", "id_number", "男", "psb.hukou", "gender", "女", "load-1")]
