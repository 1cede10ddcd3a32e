"""The Spark rules against python-stdnum and the standards' own examples."""

from __future__ import annotations

import random
from datetime import date, timedelta

from stdnum.cn import ric, uscc as stdnum_uscc
from stdnum.exceptions import ValidationError

from pipelines import reference as ref
from pipelines.contracts import Column
from pipelines.rules import standardise_columns
from pipelines.synth.city import make_uscc


def _run(spark, spec: Column, values: list) -> list[tuple]:
    frame = spark.createDataFrame([(v,) for v in values], f"{spec.name} string")
    out = standardise_columns(frame, [spec]).select(spec.name, f"{spec.name}__value", f"{spec.name}__error")
    return [tuple(row) for row in out.collect()]


ID = Column(name="id_number", header="身份证号", type="id_number")
USCC = Column(name="uscc", header="统一社会信用代码", type="uscc")
DATE = Column(name="some_date", header="日期", type="date")


def _random_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    values = []
    for _ in range(count):
        division = rng.choice(("441900", "442527", "442502", "430521", "110105", "650102"))
        birth = date(1920, 1, 1) + timedelta(days=rng.randrange(36000))
        body = f"{division}{birth:%Y%m%d}{rng.randrange(1000):03d}"
        value = body + ref.id_check_char(body)
        kind = rng.random()
        if kind < 0.3:  # wrong check character
            value = body + rng.choice([c for c in ref.ID_CHECK_CHARS if c != value[-1]])
        elif kind < 0.4:  # impossible date with a correct check character
            bad = f"{division}{birth.year}{rng.choice(('1301', '0230', '0432', '0000'))}{rng.randrange(1000):03d}"
            value = bad + ref.id_check_char(bad)
        values.append(value)
    return values


def _stdnum_id_valid(value: str) -> bool:
    """stdnum's checksum and birth-date checks (its birth-place table does not
    know retired codes such as 442527, which GB 11643 IDs still carry)."""
    try:
        return ric.calc_check_digit(value) == value[-1] and bool(ric.get_birth_date(value))
    except ValidationError:
        return False


def test_id_numbers_agree_with_python_stdnum(spark):
    values = _random_ids(3000, seed=1)
    results = _run(spark, ID, values)
    disagreements = [(raw, error) for raw, _, error in results if (error is None) != _stdnum_id_valid(raw)]
    assert not disagreements, disagreements[:5]
    assert sum(error is None for _, _, error in results) > 1500  # both kinds well represented


def test_id_number_repairs_and_rejections(spark):
    body = "44190019900101124"
    valid = body + ref.id_check_char(body)  # ends in X
    legacy_body = "44190019650315123"
    legacy_full = legacy_body + ref.id_check_char(legacy_body)
    cases = {
        valid.lower(): (valid, None),
        "\u3000" + valid + "\u00a0": (valid, None),
        valid[:10].translate(str.maketrans("0123456789", "０１２３４５６７８９")) + valid[10:]: (valid, None),
        legacy_full[:6] + legacy_full[8:17]: (legacy_full, None),
        "4.41900E+17": (None, "id_number.excel_mangled"),
        valid[:17] + "1": (None, "id_number.check_character"),
        "44190019901301123" + ref.id_check_char("44190019901301123"): (None, "id_number.birth_date"),
        "99190019900101123" + ref.id_check_char("99190019900101123"): (None, "id_number.division_code"),
        "4419001990": (None, "id_number.format"),
        "NULL": (None, None),
        "": (None, None),
    }
    results = {raw: (value, error) for raw, value, error in _run(spark, ID, list(cases))}
    assert results == cases


def test_uscc_agrees_with_python_stdnum_and_accepts_authorities_a_n_y(spark):
    rng = random.Random(2)
    digit_codes, other_codes = [], []
    for _ in range(1500):
        org8 = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
        code = make_uscc(rng.choice(("91", "92", "93", "51", "52", "12")), org8)
        if rng.random() < 0.3:
            code = code[:17] + rng.choice([c for c in ref.USCC_ALPHABET if c != code[-1]])
        digit_codes.append(code)
        other_codes.append(make_uscc(rng.choice(("A1", "N2", "Y1")), org8))
    results = _run(spark, USCC, digit_codes + other_codes)
    for raw, _, error in results[: len(digit_codes)]:
        assert (error is None) == stdnum_uscc.is_valid(raw), (raw, error)
    # stdnum rejects these (first 8 characters not all digits); GB 32100 allows them
    assert all(error is None for _, _, error in results[len(digit_codes):])
    assert not any(stdnum_uscc.is_valid(code) for code in other_codes)


def test_uscc_checks_the_organisation_code_inside(spark):
    good = make_uscc("91", "MA4W1234")
    first16 = good[:16] + ("0" if good[16] != "0" else "1")
    broken = first16 + ref.uscc_check_char(first16)  # overall check right, org check wrong
    results = {raw: (value, error) for raw, value, error in _run(spark, USCC, [good, good.lower(), broken])}
    assert results[good] == (good, None)
    assert results[good.lower()] == (good, None)
    assert results[broken] == (None, "uscc.organisation_code")


def test_every_date_form_parses(spark):
    forms = ["2021-03-05", "2021/3/5", "2021.3.5", "20210305", "2021年3月5日", "44260", "2021-03-05 00:00:00",
             "２０２１-03-05"]
    results = _run(spark, DATE, forms + ["2021-13-45", "2021年2月30日", "待定", "无", "-"])
    parsed = {raw: (value, error) for raw, value, error in results}
    for form in forms:
        assert parsed[form] == (date(2021, 3, 5), None), form
    assert parsed["2021-13-45"] == (None, "date.unparseable")
    assert parsed["2021年2月30日"] == (None, "date.unparseable")
    assert parsed["待定"] == (None, "date.unparseable")
    assert parsed["无"] == (None, None) and parsed["-"] == (None, None)


def test_required_and_enum_and_names_are_not_folded(spark):
    name = Column(name="enterprise_name", header="企业名称", type="string", required=True)
    gender = Column(name="gender", header="性别", type="enum", values=("男", "女"))
    frame = spark.createDataFrame(
        [("鸿福电子（东莞）有限公司\u3000", "男"), ("NULL", "M"), ("华盛(东莞)有限公司", None)],
        "enterprise_name string, gender string")
    rows = standardise_columns(frame, [name, gender]).select(
        "enterprise_name__value", "enterprise_name__error", "gender__value", "gender__error").collect()
    assert [tuple(r) for r in rows] == [
        ("鸿福电子（东莞）有限公司", None, "男", None),
        (None, "required", None, "enum.not_allowed"),
        ("华盛(东莞)有限公司", None, None, None),
    ]
