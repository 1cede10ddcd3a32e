"""Row outcomes on a tiny delivery: loaded, quarantined (with every failure),
duplicate; and the quarantine rows' original values."""

from __future__ import annotations

from datetime import date, datetime, timezone

from pipelines import reference as ref
from pipelines.contracts import get_contract
from pipelines.ingest.classify import (
    DUPLICATE,
    LOADED,
    QUARANTINED,
    classify_delivery,
    failure_counts,
    gate_table,
    quarantine_table,
    silver_table,
)
from pipelines.ingest.readers import read_csv

HEADER = "身份证号,姓名,性别,民族,出生日期,户籍地址,户号,与户主关系,登记日期,人口状态,备注"
MAN = "44190019900101123"
MAN += ref.id_check_char(MAN)          # 17th digit 3: odd, a man
WOMAN = "44190019850505124"
WOMAN += ref.id_check_char(WOMAN)


def _classified(tmp_path):
    rows = [
        f"{MAN},张三,男,汉族,1990-01-01,鸿福路1号,H1,户主,2010/3/5,正常,x",          # 2 loaded
        f"{MAN},张三,男,汉族,1990-01-01,鸿福路1号,H1,户主,2010/3/5,正常,x",          # 3 duplicate of 2
        f"{WOMAN},李四,男,汉族,1985-05-06,鸿福路2号,H2,户主,2011-01-01,在逃,",       # 4 parity + birth + enum
        HEADER,                                                                       # 5 repeated header
        f"{WOMAN},李四,女",                                                           # 6 malformed (3 fields)
        f"{WOMAN.lower()},李四,女,汉族,1985年5月5日,鸿福路2号,H2,户主,40179,正常,",  # 7 loaded (lower x? none)
    ]
    path = tmp_path / "hukou.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    delivery = read_csv(get_contract("psb.hukou"), path)
    return classify_delivery(delivery.table, get_contract("psb.hukou"), delivery.headers_found, [])


def test_every_row_gets_one_outcome_and_failures_name_column_and_rule(tmp_path):
    classified = _classified(tmp_path)
    numbers = classified.table.column("_row_number").to_pylist()
    outcome = dict(zip(numbers, classified.outcome.tolist()))
    assert outcome == {2: LOADED, 3: DUPLICATE, 4: QUARANTINED, 5: QUARANTINED, 6: QUARANTINED, 7: LOADED}
    by_row = {numbers[i]: items for i, items in classified.failures.items()}
    assert [(f["column_name"], f["rule"]) for f in by_row[4]] == [
        ("id_number", "id_number.gender_parity"), ("population_status", "enum.not_allowed")]
    assert by_row[5][0]["rule"] == "repeated_header"
    assert by_row[6][0]["rule"] == "malformed_row"
    counts = {(column, rule): rows for column, rule, rows, _ in failure_counts(classified, 5)}
    assert counts[("_row", "malformed_row")] == 1 and counts[("id_number", "id_number.gender_parity")] == 1


def test_silver_quarantine_and_gate_shapes(tmp_path):
    classified = _classified(tmp_path)
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    silver = silver_table(classified, "load-1", "hukou.csv", now).to_pylist()
    assert [(r["id_number"], r["birth_date"], r["registered_date"], r["_row_number"]) for r in silver] == [
        (MAN, date(1990, 1, 1), date(2010, 3, 5), 2), (WOMAN, date(1985, 5, 5), date(2010, 1, 1), 7)]
    quarantine = {r["_row_number"]: r for r in quarantine_table(classified, "load-1", "hukou.csv", now).to_pylist()}
    assert set(quarantine) == {4, 5, 6}
    original = dict(quarantine[4]["original_values"])
    assert original["人口状态"] == "在逃" and original["备注"] == ""          # extra columns kept too
    assert quarantine[4]["rule"] == "id_number.gender_parity" and len(quarantine[4]["failures"]) == 2
    assert dict(quarantine[6]["original_values"]) == {"_row": f"{WOMAN},李四,女"}
    gate = gate_table(classified)
    assert gate.num_rows == 5                                              # the duplicate is not validated
    assert gate.column("id_number__birth_date").to_pylist()[0] == date(1990, 1, 1)
