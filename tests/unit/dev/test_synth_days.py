"""Day-by-day change deliveries and their truth (issue 15 item 1)."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from pipelines.dev.synth.city import DefectRates, generate_city
from pipelines.dev.synth.days import DAILY_EVENTS, daily_count, generate_days
from pipelines.reference import id_check_char


# events.csv's event -> its entry in DAILY_EVENTS
EVENT_OF_DAILY = {"birth": "births", "death": "deaths", "move": "moves", "moved_out": "moved_out",
                  "new_permit": "new_permits", "new_firm": "new_firms", "dissolved_firm": "dissolved_firms",
                  "penalty": "penalties", "hazard_reported": "hazards_reported"}


@pytest.fixture(scope="module")
def city_days(tmp_path_factory):
    root = tmp_path_factory.mktemp("days")
    generate_city(root, scale=0.0006, seed=5, rates=DefectRates().scaled(0.0))
    return root, generate_days(root, 2, scale=0.0006, seed=5, rates=DefectRates().scaled(0.0))


def _events(root, day):
    with (root / "truth" / f"day-{day}" / "events.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_day_has_its_deliveries_and_events_in_daily_proportions(city_days):
    root, summary = city_days
    for day in (1, 2):
        counts = Counter(e["event"] for e in _events(root, day))
        for event, daily in EVENT_OF_DAILY.items():
            assert counts[event] == daily_count(daily, 0.0006), event
        with (root / "truth" / f"day-{day}" / "files.csv").open(encoding="utf-8") as handle:
            files = {row["feed"]: int(row["records"]) for row in csv.DictReader(handle)}
        assert set(files) == {"psb.hukou", "psb.residence_permit", "mca.death", "amr.business_registration",
                              "amr.penalty", "grid.hazard_report"}
        # a hukou row per birth, move, move out and hukou death
        hukou_deaths = files["psb.hukou"] - counts["birth"] - counts["move"] - counts["moved_out"]
        assert 0 <= hukou_deaths <= counts["death"]
        assert (root / "days" / str(day) / "psb" / "hukou" / f"hukou_202611{28 + day}.csv").exists()
    assert summary.events["hazard_reported"] == 2 * daily_count("hazards_reported", 0.0006)
    assert set(EVENT_OF_DAILY.values()) == set(DAILY_EVENTS)


def test_new_people_and_firms_have_valid_unique_identifiers(city_days):
    root, _ = city_days
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        known = {row["person_id"] for row in csv.DictReader(handle)}
    new = [e["subject"] for day in (1, 2) for e in _events(root, day) if e["event"] in ("birth", "new_permit")]
    assert len(set(new)) == len(new) and not set(new) & known
    assert all(id_check_char(p[:17]) == p[17] for p in new)
    births = [e for e in _events(root, 1) if e["event"] == "birth"]
    assert all(e["subject"][6:14] == "20261129" for e in births)
    firms = [e["subject"] for day in (1, 2) for e in _events(root, day) if e["event"] == "new_firm"]
    assert len(set(firms)) == len(firms) and all(len(u) == 18 for u in firms)


def test_days_are_deterministic_for_a_seed(city_days, tmp_path):
    root, _ = city_days
    again = tmp_path / "again"
    generate_city(again, scale=0.0006, seed=5, rates=DefectRates().scaled(0.0))
    generate_days(again, 1, scale=0.0006, seed=5, rates=DefectRates().scaled(0.0))
    assert (again / "truth" / "day-1" / "events.csv").read_bytes() == (root / "truth" / "day-1" / "events.csv").read_bytes()


def test_days_need_day_zero(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate day 0 first"):
        generate_days(tmp_path, 1, scale=0.0006)
