"""Parsing deliveries: encodings, header mapping, spreadsheet cells."""

from __future__ import annotations

import json
from datetime import date, datetime

from pipelines.contracts import get_contract
from pipelines.ingest.readers import cell_text, detect_encoding, read_csv, read_jsonl

HUKOU_HEADER = "身份证号,姓名,性别,民族,出生日期,户籍地址,户号,与户主关系,登记日期,人口状态"
ROW = "441900199001011231,张三,男,汉族,1990-01-01,\"东莞市南城街道鸿福路99号,2栋\",H1,户主,2010/3/5,正常"


def test_encoding_detection_prefers_utf8_then_gb18030(tmp_path):
    text = HUKOU_HEADER + "\n" + ROW + "\n"
    (tmp_path / "gbk.csv").write_bytes(text.encode("gbk"))
    (tmp_path / "bom.csv").write_bytes(text.encode("utf-8-sig"))
    (tmp_path / "utf8.csv").write_bytes(text.encode("utf-8"))
    assert detect_encoding(tmp_path / "gbk.csv") == "gb18030"
    assert detect_encoding(tmp_path / "bom.csv") == "utf-8-sig"
    assert detect_encoding(tmp_path / "utf8.csv") == "utf-8"
    contract = get_contract("psb.hukou")
    for name in ("gbk.csv", "bom.csv", "utf8.csv"):
        delivery = read_csv(contract, tmp_path / name)
        assert delivery.headers_found["id_number"] == "身份证号"
        assert delivery.table.column("hukou_address").to_pylist() == ["东莞市南城街道鸿福路99号,2栋"]


def test_reordered_extra_missing_columns_and_quoted_newlines(tmp_path):
    path = tmp_path / "hukou.csv"
    path.write_text("备注,人口状态,姓名,身份证号,性别,出生日期\r\n"
                    "x,正常,\"张\n三\",441900199001011231,男,1990-01-01\r\n", encoding="utf-8")
    delivery = read_csv(get_contract("psb.hukou"), path)
    assert delivery.extra_headers == ["备注"]
    assert [c.name for c in delivery.missing_columns] == [
        "ethnicity", "hukou_address", "household_number", "relation_to_head", "registered_date"]
    assert delivery.missing_required == []
    row = delivery.table.to_pylist()[0]
    assert row["full_name"] == "张\n三" and row["population_status"] == "正常"
    assert row["_extra"] == [("备注", "x")] and row["_row_number"] == 2


def test_json_lines_values_become_text(tmp_path):
    path = tmp_path / "taxpayer.jsonl"
    records = [{"纳税人识别号": "91441900MA4W00000X", "纳税人名称": "甲", "评价年度": 2025, "纳税信用等级": None,
                "登记状态": "正常"}, {"纳税人识别号": "x", "纳税人名称": "乙", "登记状态": "正常"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n{broken\n", encoding="utf-8")
    delivery = read_jsonl(get_contract("tax.taxpayer"), path)
    rows = delivery.table.to_pylist()
    assert rows[0]["evaluation_year"] == "2025" and rows[0]["tax_credit_grade"] is None
    assert rows[1]["evaluation_year"] is None
    assert rows[2]["_malformed"] == "{broken" and rows[2]["_row_number"] == 3


def test_spreadsheet_cells_read_as_a_person_sees_them():
    assert cell_text(441900199001011234.0) == "4.41900E+17"  # Excel lost the last digits
    assert cell_text(44260) == "44260"
    assert cell_text(113.75) == "113.75"
    assert cell_text(date(2021, 3, 5)) == "2021-03-05"
    assert cell_text(datetime(2021, 3, 5, 8, 30)) == "2021-03-05 08:30:00"
    assert cell_text("") == ""


def test_malformed_rows_keep_their_row_numbers_and_later_rows_theirs(tmp_path):
    path = tmp_path / "hukou.csv"
    good = ROW.replace('"东莞市南城街道鸿福路99号,2栋"', "鸿福路99号")
    path.write_text("\n".join([HUKOU_HEADER, good, "441900199001011231,张三", good, "a,b", good]) + "\n",
                    encoding="utf-8")
    delivery = read_csv(get_contract("psb.hukou"), path)
    numbers = delivery.table.column("_row_number").to_pylist()
    malformed = delivery.table.column("_malformed").to_pylist()
    assert sorted(zip(numbers, [m is not None for m in malformed])) == [
        (2, False), (3, True), (4, False), (5, True), (6, False)]
