"""The contract rules (``pipelines.ingest.rules``, Arrow kernels: the one
definition of every rule) against python-stdnum and the standards' own
examples, and the few Spark column twins the libraries keep
(``pipelines.libraries.columns``) value for value against them."""

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
from pipelines.ingest import rules as arrow_rules
from pipelines.ingest.rules import standardise_table


def _run_arrow(specs: list[Column], rows: list[tuple]) -> list[tuple]:
    """(raw, value, error) per column, flattened per row, via the Arrow rules."""
    table = pa.table({s.name: pa.array([r[i] for r in rows], pa.string()) for i, s in enumerate(specs)})
    out = standardise_table(table, specs)

    def values(array):  # naive UTC datetimes, as Spark collects them
        return (array.cast(pa.timestamp("us")) if pa.types.is_timestamp(array.type) else array).to_pylist()

    columns = [col for s in specs for col in (table.column(s.name).to_pylist(), values(out[s.name].value),
                                               out[s.name].error.to_pylist())]
    return list(zip(*columns)) if rows else []


@pytest.fixture
def engine():
    """Runs a rule test: ``engine(specs, rows)``."""
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




# --------------------------------------------------------------------------- Spark twins

_POOL = (list("0123456789aAxXzZ -/.") + ["\u3000", "\u00a0", "\ufeff", "\u200b", "\t"]
         + [chr(c) for c in range(0xFF10, 0xFF1A)] + ["Ａ", "ｚ", "Ｘ", "ｘ", "鸿", "福", "（", "）", "年", "é"])
_EDGES = [None, "", " ", "NULL", "null", "Null", "无", "/", "-", "—", "N/A", "n/a", " NULL ", "\u3000无\u00a0",
          "x", "ｘ", "4.41900E+17", "４４１９００", "abc", "ÀÉ", "鸿福电子（东莞）有限公司\u3000", "\ufeff441900"]


def _texts(count: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    return _EDGES + ["".join(rng.choice(_POOL) for _ in range(rng.randrange(0, 12))) for _ in range(count)]


def _spark_values(spark, values: list, expression) -> list:
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    return [row[0] for row in frame.select(expression(frame["v"])).collect()]


def test_spark_text_helpers_equal_the_arrow_rules(spark):
    """clean_text, fold_code and fold_digits give the same value on both
    engines (the libraries build blocking keys with the Spark ones)."""
    from pipelines.libraries import columns

    values = _texts(3000, seed=3)
    array = pa.array(values, pa.string())
    for name, spark_rule, arrow_rule in [
        ("clean_text", columns.clean_text, arrow_rules.clean_text),
        ("fold_code", columns.fold_code, arrow_rules.fold_code),
        ("fold_digits", columns.fold_digits, arrow_rules.fold_digits),
        ("fold_code(clean_text)", lambda c: columns.fold_code(columns.clean_text(c)),
         lambda a: arrow_rules.fold_code(arrow_rules.clean_text(a))),
    ]:
        got, want = _spark_values(spark, values, spark_rule), arrow_rule(array).to_pylist()
        wrong = [(v, g, w) for v, g, w in zip(values, got, want) if g != w]
        assert not wrong, (name, wrong[:5])


def test_spark_id_check_char_equals_the_reference(spark):
    from pipelines.libraries.columns import id_check_char

    rng = random.Random(4)
    bodies = ["0" * 17, "9" * 17, "44190019900101124"] + [
        "".join(rng.choice("0123456789") for _ in range(17)) for _ in range(3000)]
    got = _spark_values(spark, bodies, id_check_char)
    wrong = [(b, g) for b, g in zip(bodies, got) if g != ref.id_check_char(b)]
    assert not wrong, wrong[:5]
    assert set(got) == set(ref.ID_CHECK_CHARS)  # every check character was exercised


def test_spark_id_birth_date_and_gender_equal_the_arrow_rules(spark):
    """The birth date and gender the libraries read from an ID number in
    Spark (resolution's candidate birth dates, golden gender and birth_date)
    are the Arrow rule's: ``Standardised.birth`` and ``id_gender``."""
    from pyspark.sql import functions as F

    from pipelines.libraries.columns import clean_text, fold_code, id_birth_date, id_gender

    rng = random.Random(5)
    raws = _random_ids(3000, seed=6) + [
        "44190019000101123X", "441900189912311234", "441900200002291234", "441900190002291234",
        "441900199002301234", "441900000001011234", "441900999912311234", "441900199000001234"]
    raws += [r.lower() if rng.random() < 0.2 else r for r in raws[:200]]
    raws += ["\u3000" + r.translate(str.maketrans("0123456789", "０１２３４５６７８９")) for r in raws[:100]]
    raws += _EDGES + ["4419001990010112", "44190019900101123", "4419001990010112345"]
    spec = Column(name="id_number", header="身份证号", type="id_number")
    standardised = arrow_rules.standardise_column(spec, pa.array(raws, pa.string()))
    shaped = pa.compute.fill_null(pa.compute.match_substring_regex(standardised.text, ref.ID_SHAPE), False)
    want_birth = pa.compute.if_else(shaped, standardised.birth, pa.scalar(None, pa.date32())).to_pylist()
    genders = iter(arrow_rules.id_gender(pa.compute.filter(standardised.text, shaped)).to_pylist())
    want_gender = [next(genders) if ok else None for ok in shaped.to_pylist()]
    frame = spark.createDataFrame([(v,) for v in raws], "v string")
    folded = fold_code(clean_text(F.col("v")))
    rows = frame.select(F.when(F.length(folded) == 18, id_birth_date(folded)), id_gender(folded)).collect()
    wrong = [(raw, tuple(row), (b, g)) for raw, row, b, g in zip(raws, rows, want_birth, want_gender)
             if (row[0], row[1]) != (b, g)]
    assert not wrong, wrong[:5]
    assert sum(b is not None for b in want_birth) > 2000 and "女" in want_gender and "男" in want_gender


def test_uscc_shape_from_bytes_equals_the_regex():
    """The byte kernel and ``reference.USCC_SHAPE`` (the definition) agree on
    near-misses: every authority and class character, forbidden letters
    (I O S V Z), lower case, full-width and CJK characters, 16-20 long."""
    import pyarrow.compute as pc

    rng = random.Random(14)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "az-．１Ａ中"
    valid = [make_uscc(rng.choice(("91", "92", "A1", "N2", "Y1", "51")), f"{rng.randrange(10**8):08d}")
             for _ in range(300)]
    values = list(valid)
    for _ in range(5_000):
        base = list(rng.choice(valid))
        for _ in range(rng.choice((0, 1, 1, 2))):
            base[rng.randrange(18)] = rng.choice(alphabet)
        length = rng.choice((16, 17, 18, 18, 18, 18, 19, 20))
        values.append("".join(base)[:length] + "0" * max(0, length - 18))
    values += [None, ""]
    text = pa.array(values, pa.string())
    shaped, matrix = arrow_rules.uscc_shaped(text)
    by_regex = pc.fill_null(pc.match_substring_regex(text, ref.USCC_SHAPE), False).to_pylist()
    assert shaped.tolist() == by_regex
    assert 1_000 < sum(by_regex) < len(values) - 1_000    # both kinds are well represented
    assert [bytes(row).decode() for row in matrix] == [v for v, ok in zip(values, by_regex) if ok]


def test_phone_shapes_from_bytes_equal_the_regex():
    """``rules.PHONE_SHAPES`` and ``reference.PHONE`` (the definition) agree on
    mobile and landline numbers and their near misses."""
    import pyarrow.compute as pc

    rng = random.Random(15)
    alphabet = "0123456789" * 3 + "-+ 1a．１"
    values = []
    for _ in range(8_000):
        kind = rng.random()
        if kind < 0.3:
            value = "1" + rng.choice("0123456789") + "".join(rng.choice("0123456789") for _ in range(9))
        elif kind < 0.6:
            value = ("0" + "".join(rng.choice("0123456789") for _ in range(rng.choice((2, 3))))
                     + rng.choice(("", "-")) + "".join(rng.choice("0123456789") for _ in range(rng.choice((7, 8)))))
        else:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(8, 15)))
        if rng.random() < 0.2:
            position = rng.randrange(len(value))
            value = value[:position] + rng.choice(alphabet) + value[position + 1:]
        values.append(value)
    text = pa.array(values + [None, ""], pa.string())
    by_regex = pc.fill_null(pc.match_substring_regex(text, ref.PHONE), False).to_pylist()
    assert arrow_rules.shapes_match(text, arrow_rules.PHONE_SHAPES).tolist() == by_regex
    assert 2_000 < sum(by_regex) < len(values) - 2_000
