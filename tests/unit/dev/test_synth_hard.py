"""The hard cases of ``govlake synth --hard`` (issue 17): each kind is
planted and labelled, mistyped codes fail their check character (a typo
the check does not catch would be another valid code), namesakes are real
namesakes, and a city without the hard rates carries none of them."""

from __future__ import annotations

import csv
import dataclasses
import random
from collections import Counter

import pytest

from pipelines import reference as ref
from pipelines.dev.synth.city import (HARD_CASES, HARD_RATE_NAMES, HOMOPHONES, DefectRates, _company_name_variant,
                                      _mistyped, _name_variant, generate_city)
from pipelines.libraries.matching import pinyin_key

# high enough that a city of a few thousand persons carries every kind
RATES = dataclasses.replace(HARD_CASES, id_typo_one=0.02, id_typo_two=0.02, id_missing=0.02, uscc_typo_one=0.03,
                            uscc_typo_two=0.03, namesake=0.02, rep_changed=0.8, company_name_variant=0.8)


def _rows(root, name):
    with (root / "truth" / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def hard_city(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard-city")
    generate_city(root, scale=0.0005, seed=5, rates=RATES)
    return root


def test_every_hard_case_is_planted_and_labelled(hard_city):
    kinds = Counter(row["defect"] for row in _rows(hard_city, "defects.csv"))
    for kind in ("id_typo_one", "id_typo_two", "id_missing", "uscc_typo_one", "uscc_typo_two", "name_variant",
                 "company_name_variant", "rep_changed", "address_variant"):
        assert kinds[kind] > 0, kind
    by_kind = {row["defect"]: row for row in _rows(hard_city, "defects.csv")}
    assert by_kind["id_typo_one"]["expected"] == "quarantine"
    assert by_kind["id_typo_one"]["rule"] == "id_number.check_character"
    assert by_kind["id_missing"]["rule"] == "required"
    assert by_kind["name_variant"]["expected"] == "resolved"


def test_namesakes_share_name_birth_date_and_town_and_nothing_else(hard_city):
    persons = {row["person_id"]: row for row in _rows(hard_city, "persons.csv")}
    namesakes = _rows(hard_city, "namesakes.csv")
    assert len(namesakes) > 5
    for row in namesakes:
        one, other = persons[row["person_id"]], persons[row["namesake_of"]]
        assert row["person_id"] != row["namesake_of"]
        assert (one["full_name"], one["birth_date"], one["town_code"]) == (
            other["full_name"], other["birth_date"], other["town_code"]) == (
            row["full_name"], row["birth_date"], row["town_code"])


def test_a_city_without_hard_rates_has_none(tmp_path):
    assert all(getattr(DefectRates(), name) == 0 for name in HARD_RATE_NAMES)
    generate_city(tmp_path, scale=0.0003, seed=5)
    assert _rows(tmp_path, "namesakes.csv") == []
    kinds = {row["defect"] for row in _rows(tmp_path, "defects.csv")}
    assert not kinds & {"id_typo_one", "id_typo_two", "id_missing", "uscc_typo_one", "uscc_typo_two",
                        "name_variant", "company_name_variant", "rep_changed", "address_variant"}


@pytest.mark.parametrize("edits", [1, 2])
def test_mistyped_ids_and_codes_fail_their_check(edits):
    rng = random.Random(edits)
    body = "44190019900101001"
    true_id = body + ref.id_check_char(body)
    code = "91441900MA4W0000" + "3"
    code = code[:17] + ref.uscc_check_char(code[:17])
    for _ in range(200):
        value = _mistyped(rng, true_id, (2, 3, 4, 5, 14, 15), edits, lambda v: ref.id_check_char(v[:17]) != v[17])
        differs = [i for i in range(18) if value[i] != true_id[i]]
        assert ref.id_check_char(value[:17]) != value[17]
        assert len(differs) == 2 if edits == 2 else (len(differs) == 1 or (
            len(differs) == 2 and differs[1] == differs[0] + 1 and sorted(value) == sorted(true_id)))
        assert value[:2] == "44" and value[6:14] == "19900101"     # province and birth date untouched
        mistyped = _mistyped(rng, code, tuple(range(2, 16)), edits, lambda v: ref.uscc_check_char(v[:17]) != v[17])
        assert ref.uscc_check_char(mistyped[:17]) != mistyped[17]


def test_name_variants_are_the_kinds_clerks_make():
    rng = random.Random(3)
    seen = Counter()
    for _ in range(300):
        variant = _name_variant(rng, "张晓明")
        if variant.isascii():
            assert variant.replace(" ", "").lower() == pinyin_key("张晓明")
            seen["pinyin"] += 1
        elif variant[1] in "·•. ":
            assert variant[0] + variant[2:] == "张晓明"
            seen["separator"] += 1
        elif variant == "張曉明":
            seen["traditional"] += 1
        else:
            assert variant[0] == "张" and len(variant) == 3 and sum(a != b for a, b in zip(variant, "张晓明")) == 1
            assert any(HOMOPHONES.get(c) == v for c, v in zip("张晓明", variant) if c != v)
            seen["homophone"] += 1
    assert set(seen) == {"pinyin", "separator", "traditional", "homophone"}


def test_company_name_variants():
    rng = random.Random(4)
    variants = {_company_name_variant(rng, "东莞市鸿福电子科技有限公司") for _ in range(60)}
    assert "东莞市鸿福电子科技有限责任公司" in variants
    assert "鸿福电子科技（东莞）有限公司" in variants
    assert any(v.startswith("东莞市鸿福电子科技有限公司") and v != "东莞市鸿福电子科技有限公司" for v in variants)
