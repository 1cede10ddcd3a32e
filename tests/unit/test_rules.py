"""The rules (both engines: Spark expressions and Arrow kernels) against
python-stdnum and the standards' own examples, and against each other."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pyarrow as pa
import pytest
from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc
from stdnum.exceptions import ValidationError

from pipelines import reference as ref
from pipelines.contracts import Column
from pipelines.dev.synth.city import make_uscc
from pipelines.ingest.rules import standardise_table
from pipelines.libraries.columns import standardise_columns


def _run_spark(spark, specs: list[Column], rows: list[tuple]) -> list[tuple]:
    """(raw, value, error) per column, flattened per row, via the Spark rules."""
    frame = spark.createDataFrame(rows, ", ".join(f"{s.name} string" for s in specs))
    columns = [c for s in specs for c in (s.name, f"{s.name}__value", f"{s.name}__error")]
    return [tuple(row) for row in standardise_columns(frame, specs).select(*columns).collect()]


def _run_arrow(specs: list[Column], rows: list[tuple]) -> list[tuple]:
    table = pa.table({s.name: pa.array([r[i] for r in rows], pa.string()) for i, s in enumerate(specs)})
    out = standardise_table(table, specs)

    def values(array):  # Spark collects UTC timestamps as naive datetimes (session time zone UTC)
        return (array.cast(pa.timestamp("us")) if pa.types.is_timestamp(array.type) else array).to_pylist()

    columns = [col for s in specs for col in (table.column(s.name).to_pylist(), values(out[s.name].value),
                                               out[s.name].error.to_pylist())]
    return list(zip(*columns)) if rows else []


@pytest.fixture(params=["spark", "arrow"])
def engine(request, spark):
    """Runs a rule test on both engines: ``engine(specs, rows)``."""
    if request.param == "spark":
        return lambda specs, rows: _run_spark(spark, specs, rows)
    return _run_arrow


def _run(engine, spec: Column, values: list) -> list[tuple]:
    return engine([spec], [(v,) for v in values])


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


def test_id_numbers_agree_with_python_stdnum(engine):
    values = _random_ids(3000, seed=1)
    results = _run(engine, ID, values)
    disagreements = [(raw, error) for raw, _, error in results if (error is None) != _stdnum_id_valid(raw)]
    assert not disagreements, disagreements[:5]
    assert sum(error is None for _, _, error in results) > 1500  # both kinds well represented


def test_id_number_repairs_and_rejections(engine):
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
    results = {raw: (value, error) for raw, value, error in _run(engine, ID, list(cases))}
    assert results == cases


def test_uscc_agrees_with_python_stdnum_and_accepts_authorities_a_n_y(engine):
    rng = random.Random(2)
    digit_codes, other_codes = [], []
    for _ in range(1500):
        org8 = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
        code = make_uscc(rng.choice(("91", "92", "93", "51", "52", "12")), org8)
        if rng.random() < 0.3:
            code = code[:17] + rng.choice([c for c in ref.USCC_ALPHABET if c != code[-1]])
        digit_codes.append(code)
        other_codes.append(make_uscc(rng.choice(("A1", "N2", "Y1")), org8))
    results = _run(engine, USCC, digit_codes + other_codes)
    for raw, _, error in results[: len(digit_codes)]:
        assert (error is None) == stdnum_uscc.is_valid(raw), (raw, error)
    # stdnum rejects these (first 8 characters not all digits); GB 32100 allows them
    assert all(error is None for _, _, error in results[len(digit_codes):])
    assert not any(stdnum_uscc.is_valid(code) for code in other_codes)


def test_uscc_checks_the_organisation_code_inside(engine):
    good = make_uscc("91", "MA4W1234")
    first16 = good[:16] + ("0" if good[16] != "0" else "1")
    broken = first16 + ref.uscc_check_char(first16)  # overall check right, org check wrong
    results = {raw: (value, error) for raw, value, error in _run(engine, USCC, [good, good.lower(), broken])}
    assert results[good] == (good, None)
    assert results[good.lower()] == (good, None)
    assert results[broken] == (None, "uscc.organisation_code")


def test_every_date_form_parses(engine):
    forms = ["2021-03-05", "2021/3/5", "2021.3.5", "20210305", "2021年3月5日", "44260", "2021-03-05 00:00:00",
             "２０２１-03-05"]
    results = _run(engine, DATE, forms + ["2021-13-45", "2021年2月30日", "待定", "无", "-"])
    parsed = {raw: (value, error) for raw, value, error in results}
    for form in forms:
        assert parsed[form] == (date(2021, 3, 5), None), form
    assert parsed["2021-13-45"] == (None, "date.unparseable")
    assert parsed["2021年2月30日"] == (None, "date.unparseable")
    assert parsed["待定"] == (None, "date.unparseable")
    assert parsed["无"] == (None, None) and parsed["-"] == (None, None)


def test_required_and_enum_and_names_are_not_folded(engine):
    name = Column(name="enterprise_name", header="企业名称", type="string", required=True)
    gender = Column(name="gender", header="性别", type="enum", values=("男", "女"))
    rows = engine([name, gender], [("鸿福电子（东莞）有限公司\u3000", "男"), ("NULL", "M"), ("华盛(东莞)有限公司", None)])
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [
        ("鸿福电子（东莞）有限公司", None, "男", None),
        (None, "required", None, "enum.not_allowed"),
        ("华盛(东莞)有限公司", None, None, None),
    ]


def test_both_engines_agree_on_every_column_of_a_generated_city(spark, tmp_path):
    """Every raw value of every feed of a small city with 3x the default defect
    rates (plus hand-made edge cases) gets the same value and the same rule
    from the Arrow engine (ingest) and the Spark engine (resolution)."""
    from pipelines.contracts import load_contracts
    from pipelines.dev.synth.city import DefectRates, generate_city
    from pipelines.ingest.load import discover_deliveries
    from pipelines.ingest.readers import read_delivery
    from pipelines.settings import get_settings

    generate_city(tmp_path / "city", scale=0.0003, seed=5, rates=DefectRates().scaled(3))
    contracts = load_contracts(get_settings().schemas_dir)
    extra = ["", " ", "NULL", "２０２１年３月５日", "2021-3-5 8:05", "2021/03/05T08:05:09", "44260.0", "1.5",
             "１２,３４５.６７", "￥12.345", "12.355", "-0.5", "99999999999", "4.41900E+17", "x", "0769-2288 1234",
             "113.7", "1e2", "2021-02-29", "2020-02-29", "19000101", "18991231", "2101-01-01", "1990-1-1 25:00"]
    checked = 0
    for contract, path in discover_deliveries(tmp_path / "city" / "deliveries", contracts):
        table = read_delivery(contract, path).table
        specs = list(contract.columns)
        rows = [tuple(r[s.name] for s in specs) for r in table.select([s.name for s in specs]).to_pylist()]
        rows += [tuple(value for _ in specs) for value in extra]
        arrow, spark_rows = _run_arrow(specs, rows), _run_spark(spark, specs, rows)
        for got, want in zip(arrow, spark_rows):
            assert got == want, (contract.feed, [(s.name, g, w) for s, g, w in zip(
                [s for s in specs for _ in range(3)], got, want) if g != w][:3])
        checked += len(rows) * len(specs)
    assert checked > 50_000
