"""Normalised keys that records are matched on."""

from __future__ import annotations

from pipelines.reference import TOWNS


def normalise_for_matching(value):
    """A text's matching form: full-width brackets and digits folded, spaces
    removed. For keys only: names themselves are never rewritten."""
    from pyspark.sql import functions as F

    folded = F.translate(value, "（）【】０１２３４５６７８９", "()[]0123456789")
    return F.regexp_replace(folded, "[\\s\u3000\u00a0]", "")


def town_code_of(text):
    """The 9-digit town code named in a free-text address or town name (null if none)."""
    from pyspark.sql import functions as F

    names = sorted(TOWNS.values(), key=len, reverse=True)
    found = F.regexp_extract(text, "(" + "|".join(names) + ")", 1)
    by_name = F.create_map(*[F.lit(x) for code, name in TOWNS.items() for x in (name, code)])
    return F.when(text.rlike("^44190[0-9]{4}$"), text).otherwise(by_name[found])
