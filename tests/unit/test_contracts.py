from pathlib import Path

import pytest
import yaml

from pipelines.contracts import ContractError, contract_paths, load_contract, load_contracts

BUREAU_FEEDS = {
    "psb.hukou", "psb.residence_permit", "mca.marriage", "mca.death", "mca.social_org",
    "hrss.social_insurance", "amr.business_registration", "amr.abnormal_list", "amr.penalty",
    "amr.food_licence", "tax.taxpayer", "court.dishonest_debtor", "hud.construction_permit",
    "nr.standard_address", "grid.cell", "grid.hazard_report", "amr.inspector", "amr.inspection_result",
}


def test_every_bureau_feed_has_one_valid_contract():
    contracts = load_contracts()
    assert set(contracts) == BUREAU_FEEDS
    assert len(contract_paths()) == len(BUREAU_FEEDS)


def test_hukou_headers_are_the_bureaus_in_order():
    hukou = load_contracts()["psb.hukou"]
    assert [c.header for c in hukou.columns] == [
        "身份证号", "姓名", "性别", "民族", "出生日期", "户籍地址", "户号", "与户主关系", "登记日期", "人口状态"]
    assert hukou.key_columns == ("id_number",)
    assert hukou.column("id_number").sensitivity == "sensitive_personal"


def test_the_two_rosters_feeds_have_the_bureaus_headers_in_order():
    contracts = load_contracts()
    assert [c.header for c in contracts["amr.inspector"].columns] == [
        "执法证号", "姓名", "身份证号", "所属部门", "所属镇街", "执法类别", "在岗状态"]
    categories = contracts["amr.inspector"].column("enforcement_category").values
    assert categories == ("食品", "特种设备", "价格", "广告", "综合")
    assert [c.header for c in contracts["amr.inspection_result"].columns] == [
        "抽查任务编号", "抽查事项", "统一社会信用代码", "检查对象名称", "检查日期", "检查结果", "执法证号", "公示日期"]
    assert len(contracts["amr.inspection_result"].column("result").values) == 6


def _broken_copy(tmp_path: Path, mutate) -> Path:
    source = Path("schemas/feeds/psb/hukou.yaml")
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    mutate(data)
    target = tmp_path / "psb" / "hukou.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def test_unknown_type_names_file_and_field(tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["columns"][3].update(type="strng"))
    with pytest.raises(ContractError) as error:
        load_contract(path)
    message = str(error.value)
    assert str(path) in message or "psb/hukou.yaml" in message
    assert "columns[3].type: unknown type 'strng'" in message


def test_unknown_field_and_missing_field_are_named(tmp_path):
    def mutate(d):
        d["columns"][0]["colour"] = "red"
        del d["cadence"]

    with pytest.raises(ContractError) as error:
        load_contract(_broken_copy(tmp_path, mutate))
    assert "columns[0].colour: unknown field" in str(error.value)
    assert "cadence: field required" in str(error.value)


def test_reference_to_unknown_column_fails(tmp_path):
    path = _broken_copy(tmp_path, lambda d: d["columns"][0].update(gender_column="sex"))
    with pytest.raises(ContractError, match="unknown column 'sex'"):
        load_contract(path)


def test_feed_name_must_match_path(tmp_path):
    path = _broken_copy(tmp_path, lambda d: d.update(feed="psb.households"))
    with pytest.raises(ContractError, match="does not match its path"):
        load_contract(path)
