"""The synthetic city is deterministic and its identifiers are valid."""

from __future__ import annotations

import csv
import hashlib

from stdnum.cn import ric

from pipelines.dev.synth.city import DefectRates, generate_city
from pipelines.reference import TOWNS, uscc_check_char


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted((root / "deliveries").rglob("*.csv")) + sorted((root / "truth").glob("*.csv")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_city_and_valid_identifiers(tmp_path):
    a = generate_city(tmp_path / "a", scale=0.0003, seed=3)
    b = generate_city(tmp_path / "b", scale=0.0003, seed=3)
    assert a.files == b.files and _digest(tmp_path / "a") == _digest(tmp_path / "b")
    c = generate_city(tmp_path / "c", scale=0.0003, seed=4, rates=DefectRates().scaled(0))
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")
    with (tmp_path / "a" / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        persons = list(csv.DictReader(handle))
    ids = [p["person_id"] for p in persons]
    assert len(ids) == len(set(ids)) == a.persons
    assert all(ric.calc_check_digit(i) == i[-1] for i in ids)  # python-stdnum as second opinion
    assert {p["town_code"] for p in persons} <= set(TOWNS)
    with (tmp_path / "a" / "truth" / "entities.csv").open(encoding="utf-8") as handle:
        entities = list(csv.DictReader(handle))
    codes = [e["uscc"] for e in entities]
    assert len(codes) == len(set(codes)) and all(uscc_check_char(u[:17]) == u[-1] for u in codes)
    assert len({e["name"] for e in entities}) == len(entities)
    assert c.defects == 0
