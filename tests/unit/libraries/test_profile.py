"""The enterprise profile's transforms on tiny inline frames: every figure
counted from known records, hazards both named and at the domicile counted
once, zeros (not nulls) where nothing is known, and the reader's date
helpers."""

from __future__ import annotations

from datetime import date, datetime

from pipelines.libraries.profile import PROFILE_COLUMNS, entity_hazards, profiles_from
from pipelines.libraries.show import month_ends, value_on

ENTITY = ("uscc string, entity_name string, entity_type string, registration_status string, established_date date, "
          "industry_code string, industry_section string, registered_capital_wan_cny decimal(18,2), "
          "domicile_address string, domicile_address_code string, town_code string, town_name string, "
          "legal_representative string, legal_representative_person_id string, legal_representative_found boolean, "
          "tax_credit_grade string, tax_evaluation_year int, insured_employees bigint")


def _entity(uscc, address_code):
    return (uscc, f"{uscc}公司", "有限责任公司", "存续", date(2020, 1, 1), "H6210", "H", None, "某地址", address_code,
            "441900004", "南城街道", "张三", None, False, "A", 2025, 3)


def test_profile_counts_each_kind_of_record_for_its_entity(spark):
    entities = spark.createDataFrame([_entity("E1", "A1"), _entity("E2", "A2"), _entity("E3", None)], ENTITY)
    addresses = spark.createDataFrame([("A1", "G1"), ("A2", None)], "address_code string, grid_code string")
    ratings = spark.createDataFrame([("E1", "C", 55, ["penalty_recent"], "2026.1")],
                                    "uscc string, risk_grade string, risk_score int, reasons array<string>, "
                                    "rule_set_version string")
    records = spark.createDataFrame([
        ("administrative_penalty", "legal_person", "E1", date(2025, 3, 1), "decided"),
        ("administrative_penalty", "legal_person", "E1", date(2026, 5, 1), "decided"),
        ("abnormal_operation", "legal_person", "E1", date(2024, 1, 1), "removed"),
        ("abnormal_operation", "legal_person", "E1", date(2026, 1, 1), "listed"),
        ("dishonest_debtor", "legal_person", "E2", date(2025, 7, 1), "全部履行"),
        ("dishonest_debtor", "legal_person", "E2", date(2025, 9, 1), None),
        ("tax_credit_grade", "legal_person", "E1", date(2025, 1, 1), "evaluated"),
        ("dishonest_debtor", "person", "E3", date(2025, 9, 1), "部分履行")],     # a person's: not E3's
        "record_type string, subject_type string, subject_id string, started_on date, status string")
    licences = spark.createDataFrame([
        ("E1", "valid", None), ("E1", "valid", date(2027, 1, 10)), ("E1", "valid", date(2026, 12, 20)),
        ("E1", "expired", date(2026, 1, 1)), ("E2", "revoked", date(2028, 1, 1))],
        "holder_id string, status string, expires_on date")
    hazards = spark.createDataFrame([
        ("H1", datetime(2026, 11, 1, 8), "消防", "东莞市某地址", "E1", "已办结", "A1"),     # names E1, at E1's: once
        ("H2", datetime(2026, 11, 5, 8), "消防", "东莞市某地址", None, "待处置", "A1"),     # at E1's domicile
        ("H3", datetime(2026, 11, 9, 8), "环境", "东莞市别处", "E1", "处置中", "A9"),       # names E1, elsewhere
        ("H4", datetime(2026, 11, 9, 8), "治安", "东莞市别处", "E2", "已办结", None)],
        "event_number string, reported_at timestamp, hazard_category string, address string, subject_code string, "
        "handling_status string, address_code string")
    inspections = spark.createDataFrame([
        ("T1", "食品安全", "E1", date(2026, 3, 1), "未发现问题"),
        ("T2", "价格", "E1", date(2026, 9, 1), "发现问题已责令改正"),
        ("T2", "价格", "E1", date(2026, 9, 1), "发现问题已责令改正")],      # the same task, a second inspector
        "task_number string, inspection_item string, uscc string, inspected_date date, result string")
    pairs = entity_hazards(hazards, entities)
    rows = {r["uscc"]: r.asDict(recursive=True) for r in
            profiles_from(entities, addresses, ratings, records, licences, pairs, inspections).collect()}
    assert set(rows) == {"E1", "E2", "E3"} and list(rows["E1"]) == list(PROFILE_COLUMNS)
    e1, e2, e3 = rows["E1"], rows["E2"], rows["E3"]
    assert (e1["grid_code"], e1["credit_grade"], e1["credit_score"], e1["credit_reasons"]) == (
        "G1", "C", 55, ["penalty_recent"])
    assert (e1["penalty_count"], e1["penalty_latest_on"]) == (2, date(2026, 5, 1))
    assert (e1["abnormal_count"], e1["abnormal_open"], e1["abnormal_latest_on"]) == (2, 1, date(2026, 1, 1))
    # a case without a stated performance counts as open
    assert (e2["dishonest_count"], e2["dishonest_open"], e2["dishonest_latest_on"]) == (2, 1, date(2025, 9, 1))
    assert (e1["licences_valid"], e1["licences_expired"], e1["licences_revoked"]) == (3, 1, 0)
    assert e1["valid_licence_expiries"] == [date(2026, 12, 20), date(2027, 1, 10)]
    assert (e1["hazards_open"], e1["hazards_closed"]) == (2, 1)
    assert e1["hazard_latest_reported_at"] == datetime(2026, 11, 9, 8)
    by_category = {c["category"]: (c["open"], c["closed"]) for c in e1["hazards_by_category"]}
    assert by_category == {"消防": (1, 1), "食品安全": (0, 0), "安全生产": (0, 0), "治安": (0, 0), "环境": (1, 0)}
    assert (e2["hazards_open"], e2["hazards_closed"], e2["licences_revoked"]) == (0, 1, 1)
    assert (e1["last_inspected_on"], e1["last_inspection_result"], e1["last_inspection_item"]) == (
        date(2026, 9, 1), "发现问题已责令改正", "价格")
    # nothing known: zeros and empty lists, not nulls; no grade where the entity is not rated
    assert (e3["penalty_count"], e3["dishonest_count"], e3["licences_valid"], e3["hazards_open"]) == (0, 0, 0, 0)
    assert e3["valid_licence_expiries"] == [] and e3["credit_grade"] is None and e3["last_inspected_on"] is None
    assert {c["open"] + c["closed"] for c in e3["hazards_by_category"]} == {0}


def test_profile_without_any_optional_source_has_every_column(spark):
    entities = spark.createDataFrame([_entity("E1", "A1")], ENTITY)
    row = profiles_from(entities, None, None, None, None, None, None).collect()[0].asDict()
    assert list(row) == list(PROFILE_COLUMNS)
    assert (row["grid_code"], row["credit_grade"], row["penalty_count"], row["hazards_closed"]) == (None, None, 0, 0)


def test_month_ends_and_the_value_known_at_a_moment():
    assert month_ends(date(2026, 12, 7), 3) == [date(2026, 9, 30), date(2026, 10, 31), date(2026, 11, 30)]
    assert month_ends(date(2026, 3, 1), 2) == [date(2026, 1, 31), date(2026, 2, 28)]
    versions = [{"valid_from": datetime(2026, 10, 15), "valid_to": datetime(2026, 11, 20), "n": 4},
                {"valid_from": datetime(2026, 11, 20), "valid_to": None, "n": 6}]
    assert [value_on(versions, "n", datetime(2026, m, d)) for m, d in ((10, 1), (11, 1), (12, 1))] == [None, 4, 6]
