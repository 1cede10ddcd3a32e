"""The few contract rules the libraries need inside their Spark joins.

The rules themselves are defined once, on Arrow arrays, in
``pipelines.ingest.rules`` (ingest standardises every delivery with them and
entity resolution re-standardises quarantined rows with them). What is left
here are Spark column twins of single steps that the libraries apply to
columns already in Spark (blocking keys, candidate birth dates, the credit
library's ID check, address digits). Each is a pure column expression (no
UDFs) and ``tests/unit/ingest/test_rules.py`` checks it value for value against its
Arrow or pure-Python counterpart.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

from pipelines import reference as ref
from pipelines.reference import ID_SHAPE, TRIM_CHARS

_FULLWIDTH = "".join(chr(c) for c in range(0xFF10, 0xFF1A)) + "".join(
    chr(c) for c in range(0xFF21, 0xFF3B)) + "".join(chr(c) for c in range(0xFF41, 0xFF5B))
_ASCII = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
# full-width digits and letters, and ASCII lower case, to ASCII upper case
_FOLD_FROM = _FULLWIDTH + _LOWER
_FOLD_TO = _ASCII[:36] + _ASCII[10:36] + _LOWER.upper()


def clean_text(raw: Column) -> Column:
    """Trim ordinary and CJK/no-break spaces; null the missing-value tokens
    (twin of ``pipelines.ingest.rules.clean_text``).

    ``trim`` with an explicit character set works on UTF-8 bytes; a regex
    would cost ~6x more per value (measured: 1.9 s vs 0.3 s per million)."""
    trimmed = F.trim(raw, F.lit(TRIM_CHARS))
    return F.when(trimmed.isin(*ref.MISSING_TOKENS), F.lit(None)).otherwise(trimmed)


def fold_code(value: Column) -> Column:
    """Fold full-width digits and letters and upper-case ASCII: for codes,
    never names (twin of ``pipelines.ingest.rules.fold_code``). One
    ``translate`` does both (``upper`` alone costs more than the fold)."""
    return F.translate(value, _FOLD_FROM, _FOLD_TO)


def fold_digits(value: Column) -> Column:
    """Full-width digits to ASCII (twin of ``pipelines.ingest.rules.fold_digits``)."""
    return F.translate(value, _FULLWIDTH[:10], _ASCII[:10])


def id_check_char(first17: Column) -> Column:
    """GB 11643 check character of 17 digits (twin of
    ``pipelines.reference.id_check_char``). ``first17`` should be a column
    reference: it is read 17 times."""
    digits = [F.substring(first17, i + 1, 1).cast("int") for i in range(17)]
    total = reduce(lambda a, b: a + b, [d * w for d, w in zip(digits, ref.ID_WEIGHTS)])
    return F.substring(F.lit(ref.ID_CHECK_CHARS), (total % 11 + 1).cast("int"), 1)


def id_birth_date(id_number: Column) -> Column:
    """The birth date embedded in an ID number (characters 7-14), null when
    that is no real date. Meant for folded 18-character numbers; the Arrow
    rule (``Standardised.birth`` of an id_number column) is its twin there.
    Year 0000 is no date (Spark would read it as 1 BC)."""
    digits = F.substring(id_number, 7, 8)
    return F.when(F.substring(digits, 1, 4) != "0000", F.try_to_date(digits, "yyyyMMdd"))


def id_gender(id_number: Column) -> Column:
    """男 for an odd sequence digit (17th character), 女 for even; null unless
    the value has the 18-character ID shape (twin of
    ``pipelines.ingest.rules.id_gender`` on such values)."""
    digit = F.substring(id_number, 17, 1).cast("int")
    return F.when(id_number.rlike(ID_SHAPE), F.when(digit % 2 == 1, F.lit("男")).otherwise(F.lit("女")))


def threshold_ladder(value: Column, steps, label: str, minimum: str) -> Column:
    """The ``label`` of the first of ``steps`` (dicts, highest ``minimum``
    first, the last one's ``minimum`` None: the floor) whose ``minimum``
    ``value`` reaches: a credit grade off its score, a risk level off its
    points."""
    ladder = None
    for step in steps:
        if step.get(minimum) is None:
            return ladder.otherwise(F.lit(step[label])) if ladder is not None else F.lit(step[label])
        condition = value >= step[minimum]
        ladder = (ladder.when(condition, F.lit(step[label])) if ladder is not None
                  else F.when(condition, F.lit(step[label])))
    return ladder
