"""Standardisation and validation rules on Arrow arrays (the ingest hot path).

The definition of every contract rule, evaluated with pyarrow.compute
kernels and numpy on the table the CSV reader already parsed: no per-row
Python, no JVM round trip. Entity resolution re-standardises the quarantined
rows it rescues with these same rules (``libraries.resolution.rescued_table``);
the few single steps the libraries need inside Spark joins
(``libraries.columns``) are tested value for value against the functions here.

Why Arrow: ingest must stay within a small factor of pyarrow's own
parse-and-write (issue 2); Spark spends ~8 s per million ID numbers on these
rules alone (docs/benchmarks.md), Arrow well under one.

``standardise_table`` returns, per contract column, the cleaned text, the
typed value (null when invalid) and the first broken rule (null when clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import reference as ref
from pipelines.contracts import Column as ColumnSpec
from pipelines.reference import EXCEL_MANGLED, ID_LEGACY_SHAPE, ID_SHAPE, MAX_DATE, MIN_DATE, TRIM_CHARS, WKT_POLYGON
from pipelines.settings import utc_now

_FULLWIDTH_DIGITS = [chr(c) for c in range(0xFF10, 0xFF1A)]
_FULLWIDTH_ALNUM = _FULLWIDTH_DIGITS + [chr(c) for c in range(0xFF21, 0xFF3B)] + [chr(c) for c in range(0xFF41, 0xFF5B)]
_EPOCH_OFFSET_EXCEL = 25569          # days from 1899-12-30 (Excel's day 0) to 1970-01-01
_MIN_DAYS = (date.fromisoformat(MIN_DATE) - date(1970, 1, 1)).days
_MAX_DAYS = (date.fromisoformat(MAX_DATE) - date(1970, 1, 1)).days
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)

# byte -> value lookups for the check characters (-1: not allowed)
_USCC_VALUE = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(ref.USCC_ALPHABET):
    _USCC_VALUE[ord(_c)] = _i
_ORG_VALUE = np.full(256, -1, dtype=np.int64)
for _c in "0123456789":
    _ORG_VALUE[ord(_c)] = int(_c)
for _c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _ORG_VALUE[ord(_c)] = ord(_c) - 55


@dataclass
class Standardised:
    """One column after its rules: cleaned text, typed value, first broken rule."""

    text: pa.Array
    value: pa.Array
    error: pa.Array
    birth: pa.Array | None = None    # id_number: the embedded birth date (null without one)


# --------------------------------------------------------------------------- helpers

def _str_nulls(size: int) -> pa.Array:
    return pa.nulls(size, pa.string())


def _true(mask) -> pa.Array:
    """A condition as Spark's CASE WHEN reads it: null is false."""
    return pc.fill_null(mask, False)


def _case(size: int, branches: list[tuple], default=None, type_=pa.string()) -> pa.Array:
    """CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... ELSE default END."""
    result = pa.nulls(size, type_) if default is None else default
    for condition, value in reversed(branches):
        if not isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = pa.scalar(value, type_)
        result = pc.if_else(_true(condition), value, result)
    return result


def _matches(text: pa.Array, pattern: str) -> pa.Array:
    return _true(pc.match_substring_regex(text, pattern))


def _replace_chars(text: pa.Array, characters: list[str], replacement_of) -> pa.Array:
    """Spark's ``translate`` for a few non-ASCII characters: only rows that
    hold a non-ASCII character are rewritten (codes are mostly ASCII)."""
    non_ascii = _true(pc.invert(pc.string_is_ascii(text)))
    if not pc.any(non_ascii).as_py():
        return text
    rows = pc.filter(text, non_ascii)
    for character in characters:
        rows = pc.replace_substring(rows, character, replacement_of(character))
    return pc.replace_with_mask(text, non_ascii, rows)


def clean_text(raw: pa.Array) -> pa.Array:
    """Trim ordinary and CJK/no-break spaces; null the missing-value tokens."""
    trimmed = pc.utf8_trim(raw, characters=TRIM_CHARS)
    missing = pc.is_in(trimmed, value_set=pa.array(ref.MISSING_TOKENS))
    return pc.if_else(_true(missing), pa.scalar(None, pa.string()), trimmed)


def fold_code(text: pa.Array) -> pa.Array:
    """Full-width digits and letters to ASCII, ASCII lower case to upper."""
    folded = _replace_chars(text, _FULLWIDTH_ALNUM, lambda c: chr(ord(c) - 0xFEE0))
    return pc.ascii_upper(folded)


def fold_digits(text: pa.Array) -> pa.Array:
    return _replace_chars(text, _FULLWIDTH_DIGITS, lambda c: chr(ord(c) - 0xFEE0))


def _fixed_width_bytes(text: pa.Array, mask: np.ndarray, width: int) -> np.ndarray:
    """The rows of ``text`` selected by ``mask`` (each exactly ``width`` ASCII
    characters) as a (rows, width) uint8 matrix."""
    selected = pc.filter(text, pa.array(mask))
    count = len(selected)
    if count == 0:
        return np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(selected.buffers()[1], dtype=np.int32)[selected.offset: selected.offset + count + 1]
    data = np.frombuffer(selected.buffers()[2], dtype=np.uint8)
    return data[offsets[0]: offsets[0] + count * width].reshape(count, width)


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(_true(array).to_numpy(zero_copy_only=False), dtype=bool)


def civil_days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of proleptic Gregorian dates, and whether each
    (year, month, day) is a real date (Howard Hinnant's days_from_civil)."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    limit = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + ((month == 2) & leap)
    valid = month_ok & (day >= 1) & (day <= limit) & (year >= 1)
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468, valid


def _dates_from_digits(digits: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Days and validity of yyyyMMdd at columns ``start``..``start+7`` of a
    matrix of digit values (0-9)."""
    digits = digits[:, start:start + 8].astype(np.int64)
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month = digits[:, 4] * 10 + digits[:, 5]
    day = digits[:, 6] * 10 + digits[:, 7]
    return civil_days(year, month, day)


def _ymd_dates(text: pa.Array, pattern: str) -> pa.Array:
    """date32 of texts matching ``pattern`` (groups year, month, day), null
    when no match or not a real date."""
    parts = pc.extract_regex(text, pattern)
    year = pc.cast(pc.struct_field(parts, "y"), pa.int64()).to_numpy(zero_copy_only=False)
    month = pc.cast(pc.struct_field(parts, "m"), pa.int64()).to_numpy(zero_copy_only=False)
    day = pc.cast(pc.struct_field(parts, "d"), pa.int64()).to_numpy(zero_copy_only=False)
    matched = ~np.isnan(np.asarray(year, dtype=float))
    y, m, d = (np.nan_to_num(np.asarray(a, dtype=float)).astype(np.int64) for a in (year, month, day))
    days, valid = civil_days(y, m, d)
    ok = matched & valid
    return pa.array(np.where(ok, days, 0).astype(np.int32), type=pa.date32(), mask=~ok)


def _today_days() -> int:
    return (utc_now().date() - date(1970, 1, 1)).days


# --------------------------------------------------------------------------- column rules

_PROVINCE_OK = np.zeros(100, dtype=bool)
_PROVINCE_OK[[int(p) for p in ref.PROVINCE_PREFIXES]] = True
_ID_CHECK_BYTES = np.frombuffer(ref.ID_CHECK_CHARS.encode(), dtype=np.uint8)
_ID_ERRORS = [None, "id_number.excel_mangled", "id_number.format", "id_number.division_code",
              "id_number.birth_date", "id_number.check_character"]


def _codes_to_rules(codes: np.ndarray, rules: list[str | None]) -> pa.Array:
    """Small integer codes (0 = clean) to rule names."""
    return pc.take(pa.array(rules, pa.string()), pa.array(codes.astype(np.int8)))


def _byte_lengths(text: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False))


def _id_number(raw: pa.Array) -> Standardised:
    """GB 11643: excel_mangled, format, division_code, birth_date, check_character.

    Shapes, check characters and embedded dates are computed on the bytes of
    the 15- and 18-character values as numpy digit matrices."""
    text = fold_code(clean_text(raw))
    size = len(text)
    lengths = _byte_lengths(text)
    full, legacy = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    check_bad, birth_days = np.zeros(size, dtype=bool), np.zeros(size, dtype=np.int64)
    birth_ok, province_ok = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    legacy_values = None

    def check_body(rows: np.ndarray, digits: np.ndarray) -> np.ndarray:
        """Fill the per-row results for 17-digit bodies (digit values 0-9, any
        integer type); returns check bytes. Column by column in int32: a
        (rows, 17) int64 matrix product costs ~4x more."""
        total = np.zeros(len(digits), dtype=np.int32)
        for column, weight in enumerate(ref.ID_WEIGHTS):
            total += digits[:, column].astype(np.int32) * weight
        check = _ID_CHECK_BYTES[total % 11]
        birth_days[rows], birth_ok[rows] = _dates_from_digits(digits, 6)
        province_ok[rows] = _PROVINCE_OK[digits[:, 0].astype(np.int32) * 10 + digits[:, 1]]
        return check

    candidates = lengths == 18
    matrix = _fixed_width_bytes(text, candidates, 18)
    digits = matrix[:, :17] - np.uint8(48)   # uint8: a byte below '0' wraps past 9
    shaped = (digits <= 9).all(axis=1) & (
        ((matrix[:, 17] >= 48) & (matrix[:, 17] <= 57)) | (matrix[:, 17] == ord("X")))
    rows = np.flatnonzero(candidates)[shaped]
    full[rows] = True
    check_bad[rows] = check_body(rows, digits[shaped]) != matrix[shaped, 17]

    candidates = lengths == 15
    matrix = _fixed_width_bytes(text, candidates, 15)
    shaped = ((matrix >= 48) & (matrix <= 57)).all(axis=1)
    if shaped.any():
        rows = np.flatnonzero(candidates)[shaped]
        legacy[rows] = True
        body = np.concatenate([matrix[shaped, :6], np.full((len(rows), 2), [ord("1"), ord("9")], dtype=np.uint8),
                               matrix[shaped, 6:15]], axis=1)
        check = check_body(rows, body.astype(np.int64) - 48)
        repaired = np.ascontiguousarray(np.concatenate([body, check[:, None]], axis=1)).view("S18").ravel()
        legacy_values = pa.array(repaired, pa.binary()).cast(pa.string())

    has_body = full | legacy
    present = _mask(pc.is_valid(text))
    unshaped = present & ~has_body
    mangled = np.zeros(size, dtype=bool)
    if unshaped.any():
        mangled[unshaped] = _mask(pc.match_substring_regex(pc.filter(text, pa.array(unshaped)), EXCEL_MANGLED))
    birth_bad = ~birth_ok | (birth_days < _MIN_DAYS) | (birth_days > _today_days())
    codes = np.select(
        [~present, mangled, ~has_body, ~province_ok, birth_bad, check_bad],
        [0, 1, 2, 3, 4, 5], default=0)
    value = text if legacy_values is None else pc.replace_with_mask(text, pa.array(legacy), legacy_values)
    birth_known = has_body & birth_ok
    birth = pa.array(np.where(birth_known, birth_days, 0).astype(np.int32), pa.date32(), mask=~birth_known)
    return Standardised(text, value, _codes_to_rules(codes, _ID_ERRORS), birth)


def _byte_class(characters: str) -> np.ndarray:
    """A 256-entry lookup: is this byte one of ``characters`` (ASCII)?"""
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(characters.encode("ascii"), dtype=np.uint8)] = True
    return table


_DIGITS = _byte_class("0123456789")
_USCC_AUTHORITY = _byte_class("123456789ANY")
_NONZERO_DIGITS = _byte_class("123456789")
_USCC_CHARACTERS = _byte_class(ref.USCC_ALPHABET)


def uscc_shaped(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``USCC_SHAPE`` read from the bytes (the regex, ~5× slower, is the
    definition and a unit test holds them equal): which rows have the shape,
    and those rows' 18 bytes as a matrix."""
    candidates = _byte_lengths(text) == 18
    matrix = _fixed_width_bytes(text, candidates, 18)
    ok = (_USCC_AUTHORITY[matrix[:, 0]] & _NONZERO_DIGITS[matrix[:, 1]] & _DIGITS[matrix[:, 2:8]].all(axis=1)
          & _USCC_CHARACTERS[matrix[:, 8:]].all(axis=1))
    shaped = np.zeros(len(text), dtype=bool)
    shaped[np.flatnonzero(candidates)[ok]] = True
    return shaped, matrix[ok]


def shapes_match(text: pa.Array, shapes: list[list[np.ndarray]]) -> np.ndarray:
    """Rows whose bytes spell one of ``shapes``, each a list of byte classes
    (``_byte_class``), one per position: a fixed-length regex read from the
    bytes, for the hot columns."""
    lengths = _byte_lengths(text)
    found = np.zeros(len(text), dtype=bool)
    for width in sorted({len(shape) for shape in shapes}):
        candidates = lengths == width
        if not candidates.any():
            continue
        matrix = _fixed_width_bytes(text, candidates, width)
        ok = np.zeros(len(matrix), dtype=bool)
        for shape in (shape for shape in shapes if len(shape) == width):
            hit = np.ones(len(matrix), dtype=bool)
            for position, allowed in enumerate(shape):
                hit &= allowed[matrix[:, position]]
            ok |= hit
        found[np.flatnonzero(candidates)[ok]] = True
    return found


# ``reference.PHONE`` spelled out: a mobile number, or a landline with a 2-3
# digit area code after the 0, an optional dash and a 7-8 digit number
PHONE_SHAPES = [[_byte_class("1"), _byte_class("3456789"), *[_DIGITS] * 9]] + [
    [_byte_class("0"), *[_DIGITS] * area, *[_byte_class("-")] * dash, *[_DIGITS] * local]
    for area in (2, 3) for dash in (0, 1) for local in (7, 8)]


def _uscc(raw: pa.Array) -> Standardised:
    """GB 32100 with the GB 11714 organisation-code check inside."""
    text = fold_code(clean_text(raw))
    size = len(text)
    shaped, matrix = uscc_shaped(text)
    values = _USCC_VALUE[matrix[:, :17]]
    total = values @ np.array(ref.USCC_WEIGHTS, dtype=np.int64)
    check_ok = np.frombuffer(ref.USCC_ALPHABET.encode(), dtype=np.uint8)[(31 - total % 31) % 31] == matrix[:, 17]
    org_total = _ORG_VALUE[matrix[:, 8:16]] @ np.array(ref.ORG_CODE_WEIGHTS, dtype=np.int64)
    org_check = 11 - org_total % 11
    org_char = np.where(org_check == 10, ord("X"), np.where(org_check == 11, ord("0"), 48 + org_check))
    org_ok = org_char == matrix[:, 16]
    org_bad = np.zeros(size, dtype=bool)
    org_bad[shaped] = ~org_ok
    check_bad = np.zeros(size, dtype=bool)
    check_bad[shaped] = ~check_ok
    error = _case(size, [
        (pc.is_null(text), None),
        (pa.array(~shaped), "uscc.format"),
        (pa.array(org_bad), "uscc.organisation_code"),
        (pa.array(check_bad), "uscc.check_character"),
    ])
    return Standardised(text, text, error)


def _id_or_uscc(raw: pa.Array) -> Standardised:
    as_id, as_uscc = _id_number(raw), _uscc(raw)
    text = as_id.text
    looks_like_id = pc.or_(
        _true(pc.match_substring_regex(text, EXCEL_MANGLED)),
        pc.and_(pc.or_(_true(pc.match_substring_regex(text, ID_SHAPE)),
                       _true(pc.match_substring_regex(text, ID_LEGACY_SHAPE))),
                _true(pc.is_in(pc.utf8_slice_codeunits(text, 0, 2), value_set=pa.array(ref.PROVINCE_PREFIXES)))))
    id_ok, uscc_ok = pc.is_null(as_id.error), pc.is_null(as_uscc.error)
    size = len(text)
    error = _case(size, [
        (pc.or_(pc.or_(pc.is_null(text), id_ok), uscc_ok), None),
        (looks_like_id, as_id.error),
    ], default=as_uscc.error)
    return Standardised(text, pc.if_else(id_ok, as_id.value, as_uscc.value), error)


_YMD = "^(?P<y>[0-9]{1,4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})$"


_SEPARATED_DATE = "^(?P<y>[0-9]{4})[-/.年](?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})日?$"


def _date(raw: pa.Array) -> Standardised:
    """2021-03-05, 2021/3/5, 2021.3.5, 20210305, 2021年3月5日, Excel serials,
    with or without a trailing time.

    Fast paths, each giving exactly what the general rule would: ``yyyy-MM-dd``
    and ``yyyyMMdd`` read from their bytes, then one regex for a 4-digit year
    with any separators; what is left goes through ``_parse_date_forms``."""
    text = fold_digits(clean_text(raw))
    size = len(text)
    days, ok = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=bool)
    left = _mask(pc.is_valid(text))
    present = left.copy()
    lengths = _byte_lengths(text)

    candidates = lengths == 10
    matrix = _fixed_width_bytes(text, candidates, 10)
    digit_columns = [0, 1, 2, 3, 5, 6, 8, 9]
    iso = ((matrix[:, digit_columns] - np.uint8(48)) <= 9).all(axis=1) & (   # uint8: below '0' wraps past 9
        matrix[:, 4] == ord("-")) & (matrix[:, 7] == ord("-"))
    rows = np.flatnonzero(candidates)[iso]
    d = matrix[iso].astype(np.int32) - 48
    days[rows], ok[rows] = civil_days(d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3],
                                      d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9])
    left[rows] = False

    candidates = lengths == 8
    matrix = _fixed_width_bytes(text, candidates, 8)
    digits = ((matrix - np.uint8(48)) <= 9).all(axis=1)
    rows = np.flatnonzero(candidates)[digits]
    days[rows], ok[rows] = _dates_from_digits(matrix[digits] - np.uint8(48), 0)
    left[rows] = False

    if left.any():
        rows = np.flatnonzero(left)
        parts = pc.extract_regex(pc.filter(text, pa.array(left)), _SEPARATED_DATE)
        matched = _mask(pc.is_valid(parts))
        if matched.any():
            found = pc.filter(parts, pa.array(matched))
            y, m, dd = (np.asarray(pc.cast(pc.struct_field(found, n), pa.int64()).to_numpy(), dtype=np.int64)
                        for n in ("y", "m", "d"))
            days[rows[matched]], ok[rows[matched]] = civil_days(y, m, dd)
            left[rows[matched]] = False

    if left.any():
        parsed = _parse_date_forms(pc.filter(text, pa.array(left)))
        days[left] = np.asarray(pc.fill_null(pc.cast(parsed, pa.int32()), 0).to_numpy(zero_copy_only=False))
        ok[left] = _mask(pc.is_valid(parsed))
    value = pa.array(np.where(ok, days, 0).astype(np.int32), pa.date32(), mask=~ok)
    codes = np.select([~present, ~ok, (days < _MIN_DAYS) | (days > _MAX_DAYS)], [0, 1, 2], default=0)
    return Standardised(text, value, _codes_to_rules(codes, [None, "date.unparseable", "date.out_of_range"]))


def _parse_date_forms(text: pa.Array) -> pa.Array:
    """date32 of every date form (null when unparseable): the general rule,
    the forms the contracts' date columns arrive in."""
    size = len(text)
    has_time = pc.or_(_true(pc.match_substring(text, " ")), _true(pc.match_substring(text, "T")))
    day = pc.if_else(has_time, pc.replace_substring_regex(text, "[ T][0-9:.]+$", ""), text)
    serial = _mask(pc.match_substring_regex(day, "^[0-9]{5}(\\.0+)?$"))
    serial_days = np.zeros(size, dtype=np.int64)
    if serial.any():
        numbers = pc.cast(pc.filter(day, pa.array(serial)), pa.float64()).to_numpy()
        serial_days[serial] = numbers.astype(np.int64) - _EPOCH_OFFSET_EXCEL
    eight = _mask(pc.match_substring_regex(day, "^[0-9]{8}$"))
    eight_days, eight_ok = _dates_from_digits(_fixed_width_bytes(day, eight, 8).astype(np.int64) - 48, 0)
    eight_full = np.zeros(size, dtype=np.int64)
    eight_full[eight] = eight_days
    eight_valid = np.zeros(size, dtype=bool)
    eight_valid[eight] = eight_ok
    dashed = day
    for character in ("年", "月", "/", "."):
        dashed = pc.replace_substring(dashed, character, "-")
    dashed = pc.replace_substring(dashed, "日", "")
    other = _ymd_dates(dashed, _YMD)
    return pc.if_else(pa.array(serial), pa.array(serial_days.astype(np.int32), pa.date32()),
                      pc.if_else(pa.array(eight), pa.array(eight_full.astype(np.int32), pa.date32(),
                                                           mask=~eight_valid), other))


_DATETIME = ("^(?P<y>[0-9]{1,4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2}) "
             "(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2})(?::(?P<s>[0-9]{1,2}))?$")


def _timestamp(raw: pa.Array, source_time_zone: str = "Asia/Shanghai") -> Standardised:
    """Local (China Standard Time) date-times to UTC timestamps."""
    text = fold_digits(clean_text(raw))
    size = len(text)
    normalised = pc.replace_substring(pc.replace_substring(text, "/", "-"), "T", " ")
    parts = pc.extract_regex(normalised, _DATETIME)

    def field(name):
        group = pc.struct_field(parts, name)   # an optional group that did not take part is ""
        group = pc.if_else(_true(pc.equal(group, "")), pa.scalar(None, pa.string()), group)
        values = pc.cast(group, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=float)

    year, month, day, hour, minute, second = (field(n) for n in ("y", "m", "d", "h", "mi", "s"))
    matched = ~np.isnan(year)
    second = np.where(np.isnan(second), 0, second)
    y, m, d, h, mi, s = (np.nan_to_num(a).astype(np.int64) for a in (year, month, day, hour, minute, second))
    days, valid = civil_days(y, m, d)
    ok = matched & valid & (h < 24) & (mi < 60) & (s < 60)
    micros = ((days * 86400 + h * 3600 + mi * 60 + s) * 1_000_000)
    local = pa.array(np.where(ok, micros, 0), type=pa.timestamp("us"), mask=~ok)
    utc = pc.cast(pc.assume_timezone(local, source_time_zone, ambiguous="earliest", nonexistent="earliest"),
                  pa.timestamp("us", tz="UTC"))
    error = _case(size, [(pc.is_null(text), None), (pa.array(~ok), "timestamp.unparseable")])
    return Standardised(text, utc, error)


_NUMBER = "^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?$"
# what fits decimal(38,16) exactly: up to 20 integer digits, or 12 with a
# one-digit positive exponent (Spark accepts 1e2); longer texts are unparseable
_DECIMAL = ("^[+-]?(([0-9]{1,20}(\\.[0-9]{0,16})?|\\.[0-9]{1,16})"
            "|([0-9]{1,12}(\\.[0-9]{0,16})?|\\.[0-9]{1,16})[eE]\\+?[0-9])$")


def _parse_where(text: pa.Array, pattern: str, type_) -> pa.Array:
    """Cast the texts that match ``pattern`` to ``type_``; null the others."""
    ok = pc.match_substring_regex(text, pattern)
    return pc.cast(pc.if_else(_true(ok), text, pa.scalar(None, pa.string())), type_)


def _checked(text: pa.Array, value: pa.Array, ok, rule: str) -> Standardised:
    error = _case(len(text), [(pc.is_null(text), None), (pc.invert(_true(ok)), rule)])
    return Standardised(text, value, error)


def _decimal(raw: pa.Array, precision: int, scale: int) -> Standardised:
    text = pc.replace_substring_regex(fold_digits(clean_text(raw)), "[,，¥￥\\s]", "")
    wide = _parse_where(text, _DECIMAL, pa.decimal128(38, 16))
    rounded = pc.round(wide, ndigits=scale, round_mode="half_up")
    fits = pc.less(pc.abs(rounded), pa.scalar(10 ** (precision - scale), pa.int64()).cast(rounded.type))
    value = pc.cast(pc.if_else(_true(fits), rounded, pa.scalar(None, rounded.type)),
                    pa.decimal128(precision, scale), safe=False)
    return _checked(text, value, pc.is_valid(value), "decimal.unparseable")


def _integer(raw: pa.Array) -> Standardised:
    text = fold_digits(clean_text(raw))
    number = _parse_where(pc.replace_substring_regex(text, "\\.0+$", ""), "^[+-]?[0-9]{1,10}$", pa.int64())
    in_range = pc.and_(pc.greater_equal(number, -(2 ** 31)), pc.less(number, 2 ** 31))
    value = pc.cast(pc.if_else(_true(in_range), number, pa.scalar(None, pa.int64())), pa.int32())
    return _checked(text, value, pc.is_valid(value), "integer.unparseable")


def _coordinate(raw: pa.Array, low: float, high: float) -> Standardised:
    text = fold_digits(clean_text(raw))
    number = _parse_where(text, _NUMBER, pa.float64())
    error = _case(len(text), [
        (pc.is_null(text), None),
        (pc.is_null(number), "coordinate.unparseable"),
        (pc.or_(pc.less(number, low), pc.greater(number, high)), "coordinate.out_of_city"),
    ])
    return Standardised(text, number, error)


def standardise_column(spec: ColumnSpec, raw: pa.Array) -> Standardised:
    """One contract column's rules (type rules, then pattern, then required)."""
    kind = spec.type
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    if kind == "id_number":
        out = _id_number(raw)
    elif kind == "uscc":
        out = _uscc(raw)
    elif kind == "id_or_uscc":
        out = _id_or_uscc(raw)
    elif kind == "date":
        out = _date(raw)
    elif kind == "timestamp":
        out = _timestamp(raw)
    elif kind in ("string", "code"):
        text = clean_text(raw) if kind == "string" else fold_code(clean_text(raw))
        out = Standardised(text, text, _str_nulls(len(text)))
    elif kind in ("enum", "town_name"):
        text = clean_text(raw)
        allowed = spec.values if kind == "enum" else tuple(ref.TOWNS.values())
        out = _checked(text, text, pc.is_in(text, value_set=pa.array(allowed)),
                       "enum.not_allowed" if kind == "enum" else "town.unknown_name")
    elif kind == "town_code":
        text = fold_code(clean_text(raw))
        out = _checked(text, text, pc.is_in(text, value_set=pa.array(list(ref.TOWNS))), "town.unknown_code")
    elif kind == "decimal":
        out = _decimal(raw, spec.precision, spec.scale)
    elif kind == "integer":
        out = _integer(raw)
    elif kind in ("longitude", "latitude"):
        out = _coordinate(raw, *(ref.CITY_LONGITUDE if kind == "longitude" else ref.CITY_LATITUDE))
    elif kind == "wkt_polygon":
        text = clean_text(raw)
        out = _checked(text, text, pc.match_substring_regex(pc.utf8_upper(text), WKT_POLYGON), "wkt.invalid_polygon")
    elif kind == "phone":
        text = pc.replace_substring_regex(fold_code(clean_text(raw)), "\\s", "")
        out = _checked(text, text, pa.array(shapes_match(text, PHONE_SHAPES)), "phone.format")
    elif kind == "industry_code":
        text = fold_code(clean_text(raw))
        out = _checked(text, text, pc.match_substring_regex(text, "^[A-T][0-9]{2,4}$"), "industry_code.format")
    else:  # pragma: no cover - the contract model forbids it
        raise ValueError(f"no rule for column type {kind!r}")
    error = out.error
    if spec.pattern:
        as_text = out.value if pa.types.is_string(out.value.type) else pc.cast(out.value, pa.string())
        mismatch = pc.and_(pc.is_valid(out.value), pc.invert(_true(pc.match_substring_regex(as_text, spec.pattern))))
        error = pc.coalesce(error, pc.if_else(mismatch, pa.scalar("pattern.mismatch"), _str_nulls(len(error))))
    if spec.required:
        error = pc.coalesce(error, pc.if_else(pc.is_null(out.value), pa.scalar("required"), _str_nulls(len(error))))
    value = pc.if_else(pc.is_null(error), out.value, pa.scalar(None, out.value.type))
    return Standardised(out.text, value, error, out.birth)


def id_gender(id_number: pa.Array) -> pa.Array:
    """男 for an odd sequence digit (17th character), 女 for even."""
    digit = pc.cast(pc.utf8_slice_codeunits(id_number, 16, 17), pa.int64(), safe=False)
    return pc.if_else(_true(pc.equal(pc.bit_wise_and(digit, 1), 1)), pa.scalar("男"), pa.scalar("女"))


def standardise_table(table: pa.Table, specs, threads: int | None = None) -> dict[str, Standardised]:
    """Every contract column of ``table`` (raw strings) through its rules,
    columns in parallel (the kernels release the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    specs = list(specs)
    workers = max(1, min(len(specs), threads or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda spec: standardise_column(spec, table.column(spec.name)), specs)
        return {spec.name: result for spec, result in zip(specs, results)}
