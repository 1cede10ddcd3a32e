"""Normalised keys that records are matched on, and what tells two spellings
of one name apart from two names (issue 17)."""

from __future__ import annotations

from functools import cache

from pipelines.reference import TOWNS

# Spaces, and the dots and middle dots that separate the parts of a minority
# name (阿卜杜·热合曼, 阿卜杜.热合曼): not part of the name.
SEPARATORS = "[\\s\u3000\u00a0·•・．.]"
# 有限责任公司 and 有限公司 are one legal form as bureaus write it; the city in
# brackets after the brand (鸿福（东莞）有限公司) is 东莞市鸿福有限公司; a branch or
# shop suffix names the firm it belongs to.
LEGAL_FORM = ("有限责任公司", "有限公司")
CITY_MARKS = ("^广东省东莞市", "^东莞市", "\\(东莞\\)")
# A branch: an optional place (东莞, a town, its short form) or ordinal (第一), then the branch word.
BRANCH_SUFFIX = ("(东莞|" + "|".join(sorted({n for name in TOWNS.values() for n in (
    name, name.removesuffix("街道").removesuffix("镇"))}, key=len, reverse=True))
    + "|第[一二三四五六七八九十0-9]+)?(分公司|分店|分厂|门市部|\\(?分部\\)?)$")


@cache
def simplified_forms() -> tuple[str, str]:
    """(traditional characters, their simplified forms), for ``F.translate``:
    the one-to-one entries of OpenCC's TSCharacters table (what Chinese
    converters use; OpenCC is the reference implementation, read from the
    ``opencc-python-reimplemented`` package's copy of its dictionaries)."""
    from importlib.resources import files

    source, target = [], []
    text = files("opencc").joinpath("dictionary/TSCharacters.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        traditional, _, simplified = line.partition("\t")
        choices = simplified.split()
        if len(traditional) == 1 and len(choices) == 1 and len(choices[0]) == 1 and choices[0] != traditional:
            source.append(traditional)
            target.append(choices[0])
    return "".join(source), "".join(target)


def normalise_for_matching(value):
    """A text's matching form: full-width brackets and digits folded,
    traditional characters read as simplified, spaces and name dots
    removed, Latin letters lower-cased (a name in pinyin). For keys only:
    names themselves are never rewritten."""
    from pyspark.sql import functions as F

    traditional, simplified = simplified_forms()
    folded = F.translate(value, "（）【】０１２３４５６７８９" + traditional, "()[]0123456789" + simplified)
    return F.lower(F.regexp_replace(folded, SEPARATORS, ""))


def entity_core_name(name_key):
    """The part of a normalised entity name (``normalise_for_matching``) that
    variants share: the legal form folded (有限责任公司 → 有限公司), the city
    marks removed. Two names with one core are a variant of one name, not
    an exact agreement."""
    from pyspark.sql import functions as F

    core = F.regexp_replace(name_key, LEGAL_FORM[0], LEGAL_FORM[1])
    for mark in CITY_MARKS:
        core = F.regexp_replace(core, mark, "")
    return core


def entity_trunk_name(core):
    """An entity name's core (``entity_core_name``) without a branch suffix
    (长安分公司, 第一分店): what blocks entity names. A branch is a firm of its
    own with its own code, so sharing a trunk is no evidence by itself."""
    from pyspark.sql import functions as F

    return F.regexp_replace(core, BRANCH_SUFFIX, "")


def is_latin_name(name_key):
    """A normalised name written in Latin letters (pinyin)."""
    return name_key.rlike("^[a-z]+$")


def pinyin_key(name: str) -> str:
    """The toneless pinyin of a Chinese name, run together and lower-cased
    (张晓明 → zhangxiaoming): the form ``normalise_for_matching`` gives a
    name delivered in pinyin. pypinyin's phrase dictionary picks the reading
    of a character with several."""
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(name)).lower()


# A road and house number: the part of a free-text address that bureaus
# write alike (the city, town and community before it, and 号楼, 栋, 之一
# after it, vary): the two characters before the road suffix, and the house
# number (not a lane's: 鸿福路1巷3号 names no house on 鸿福路).
ROAD_AND_NUMBER = "(\\p{IsHan}{2}(?:大道|大街|路|街|巷))([0-9]+)(?=号|栋|幢|座|$)"


def address_key_of(text):
    """The road and house number of a free-text address (``鸿福路12``), or
    null when it names none: compared between a record and a candidate, a
    different house tells two persons of one name and birth date apart."""
    from pyspark.sql import functions as F

    folded = F.translate(text, "０１２３４５６７８９", "0123456789")
    road, number = F.regexp_extract(folded, ROAD_AND_NUMBER, 1), F.regexp_extract(folded, ROAD_AND_NUMBER, 2)
    return F.when(road != "", F.concat(road, number))


def town_code_of(text):
    """The 9-digit town code named in a free-text address or town name (null
    if none): the first town name in the text, whole (长安镇, 南城街道) or
    without its 镇/街道 (长安, 南城), as addresses are often abbreviated."""
    from pyspark.sql import functions as F

    by_name = {}
    for code, name in TOWNS.items():
        by_name[name] = code
        short = name.removesuffix("街道").removesuffix("镇")
        if len(short) >= 2 and short != name:
            by_name.setdefault(short, code)
    names = sorted(by_name, key=len, reverse=True)
    found = F.regexp_extract(text, "(" + "|".join(names) + ")", 1)
    lookup = F.create_map(*[F.lit(x) for name, code in by_name.items() for x in (name, code)])
    return F.when(text.rlike("^44190[0-9]{4}$"), text).otherwise(lookup[found])
