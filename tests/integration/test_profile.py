"""The enterprise profile (企业全景画像) of a built city against the
generator's truth (``truth/entity_records.csv``, ``entities.csv``,
``last_inspections.csv``): for every entity whose records of a kind were
all delivered clean, the profile's figures of that kind equal the truth;
the entities with a planted defect in such a record are counted and few.
Then ``govlake show entity`` prints the profile's sections, and the
profile's catalog resource shares its columns as their sources do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta

import pytest

from pipelines.libraries.address import address_keys_from_lake, match_addresses
from pipelines.reference import DEREGISTERED
from pipelines.lake.delta import read_silver
from tests.integration.cities import copy_built_lake, truth_rows


@pytest.fixture(scope="module")
def lake(built_city, tmp_path_factory):
    return copy_built_lake(built_city, tmp_path_factory, "profile")


@pytest.fixture(scope="module")
def profiles(spark, lake):
    _, settings = lake
    rows = (spark.read.format("delta").load(settings.lake_path("base", "enterprise_profile")).where("is_current")
            .collect())
    return {r["uscc"]: r.asDict(recursive=True) for r in rows}


@pytest.fixture(scope="module")
def truth(lake):
    root, _ = lake
    records = defaultdict(lambda: defaultdict(list))
    for row in truth_rows(root, "entity_records.csv"):
        records[row["kind"]][row["uscc"]].append(row)
    return {"records": records, "entities": {e["uscc"]: e for e in truth_rows(root, "entities.csv")},
            "last_inspections": {r["uscc"]: r for r in truth_rows(root, "last_inspections.csv")}}


def _compared(profiles, by_entity, expected_of, actual_of):
    """(entities compared, entities left out for a planted defect, mismatches):
    the figures of every profiled entity whose records of this kind are all clean."""
    compared, defective, wrong = 0, 0, []
    for uscc, profile in profiles.items():
        rows = by_entity.get(uscc, [])
        if any(r["clean"] != "True" for r in rows):
            defective += 1
            continue
        compared += 1
        expected, actual = expected_of(rows), actual_of(profile)
        if expected != actual:
            wrong.append((uscc, expected, actual))
    return compared, defective, wrong


def test_every_true_entity_has_one_profile(profiles, truth):
    market = set(truth["entities"])
    assert len(set(profiles) & market) >= 0.99 * len(market)
    assert len(profiles) == len(set(profiles))


def test_credit_records_equal_the_truth(profiles, truth):
    penalties = truth["records"]["penalty"]
    compared, defective, wrong = _compared(
        profiles, penalties, lambda rows: (len(rows), max((r["on"] for r in rows), default=None)),
        lambda p: (p["penalty_count"], p["penalty_latest_on"].isoformat() if p["penalty_latest_on"] else None))
    assert not wrong, wrong[:5]
    assert sum(1 for p in profiles.values() if p["penalty_count"]) >= 10
    compared, defective, wrong = _compared(
        profiles, truth["records"]["abnormal"],
        lambda rows: (len(rows), sum(r["status"] == "listed" for r in rows),
                      max((r["on"] for r in rows), default=None)),
        lambda p: (p["abnormal_count"], p["abnormal_open"],
                   p["abnormal_latest_on"].isoformat() if p["abnormal_latest_on"] else None))
    assert not wrong, wrong[:5]
    assert defective <= 0.1 * compared
    compared, defective, wrong = _compared(
        profiles, truth["records"]["dishonest"],
        lambda rows: (len(rows), sum(r["status"] != "全部履行" for r in rows)),
        lambda p: (p["dishonest_count"], p["dishonest_open"]))
    assert not wrong, wrong[:5]
    assert defective <= 0.1 * compared


def _built_on(lake):
    """The date base.e_licence's statuses were computed for: its last build's (its build state)."""
    from pipelines.libraries.incremental import read_state

    _, settings = lake
    return date.fromisoformat(read_state("e_licence", settings).as_of)


def test_licences_equal_the_truth_on_the_build_date(lake, profiles, truth):
    entities = truth["entities"]
    licences = defaultdict(list)
    for kind in ("food_licence", "construction_permit"):
        for uscc, rows in truth["records"][kind].items():
            licences[uscc] += rows
    built_on = _built_on(lake)

    def expected(rows, uscc):
        holder = entities.get(uscc, {})
        gone = holder.get("registration_status") in DEREGISTERED
        statuses = []
        if holder.get("source_feed") == "amr.business_registration":
            statuses.append("revoked" if gone else "valid")            # the business licence
        for r in rows:
            if r["status"] in ("注销", "撤销") or gone:
                statuses.append("revoked")
            elif r["until"] and date.fromisoformat(r["until"]) < built_on:
                statuses.append("expired")
            else:
                statuses.append("valid")
        return tuple(statuses.count(s) for s in ("valid", "expired", "revoked"))

    compared, defective, wrong = 0, 0, []
    for uscc, profile in profiles.items():
        rows = licences.get(uscc, [])
        if any(r["clean"] != "True" for r in rows) or uscc not in entities:
            defective += 1
            continue
        compared += 1
        actual = (profile["licences_valid"], profile["licences_expired"], profile["licences_revoked"])
        if actual != expected(rows, uscc):
            wrong.append((uscc, expected(rows, uscc), actual))
    assert not wrong, wrong[:5]
    assert compared >= 0.8 * len(profiles)
    # the valid ones' expiry dates, for a reader's "expiring within 90 days"
    food = {uscc: rows for uscc, rows in truth["records"]["food_licence"].items()}
    checked = 0
    for uscc, profile in profiles.items():
        rows = food.get(uscc, [])
        if rows and all(r["clean"] == "True" for r in rows) and entities.get(uscc, {}).get(
                "registration_status") not in DEREGISTERED:
            valid = sorted(date.fromisoformat(r["until"]) for r in rows
                           if r["status"] == "有效" and date.fromisoformat(r["until"]) >= built_on)
            assert profile["valid_licence_expiries"] == valid, uscc
            checked += 1
    assert checked >= 10


def test_hazards_named_or_at_the_domicile_equal_the_truth(spark, lake, profiles, truth):
    """A hazard counts for an entity it names, or whose domicile is the
    standard address the hazard's text matches; the test matches the texts
    with the lake's own keys and checks each match against the true
    address, so a wrong match fails here as well as a wrong count."""
    _, settings = lake
    entities = truth["entities"]
    hazards = {r["key"]: r for rows in truth["records"]["hazard"].values() for r in rows}
    texts = read_silver(spark, "grid.hazard_report", settings).select("event_number", "address")
    matched = {r["event_number"]: r["code"] for r in
               match_addresses(texts, "address", address_keys_from_lake(spark, settings), "code").collect()}
    assert all(code == hazards[event]["address_code"] for event, code in matched.items() if code)
    at_premises = [e for e, h in hazards.items()
                   if h["uscc"] and h["address_code"] == entities[h["uscc"]]["address_code"]]
    assert sum(1 for e in at_premises if matched.get(e)) >= 0.9 * len(at_premises) > 0

    counted = defaultdict(set)
    for event, h in hazards.items():
        if h["uscc"]:
            counted[h["uscc"]].add(event)
        if matched.get(event):
            for uscc, profile in profiles.items():
                if profile["domicile_address_code"] == matched[event]:
                    counted[uscc].add(event)
    compared, left_out, wrong = 0, 0, []
    for uscc, profile in profiles.items():
        events = counted.get(uscc, set())
        if any(hazards[e]["clean"] != "True" for e in events) or (
                profile["domicile_address_code"] or "") != entities.get(uscc, {}).get("address_code", ""):
            left_out += 1
            continue
        compared += 1
        closed = sum(hazards[e]["status"] == "已办结" for e in events)
        by_category = defaultdict(lambda: [0, 0])
        for e in events:
            by_category[hazards[e]["category"]][hazards[e]["status"] == "已办结"] += 1
        expected = (len(events) - closed, closed,
                    {c: tuple(v) for c, v in by_category.items()})
        actual = (profile["hazards_open"], profile["hazards_closed"],
                  {c["category"]: (c["open"], c["closed"]) for c in profile["hazards_by_category"]
                   if c["open"] or c["closed"]})
        if expected != actual:
            wrong.append((uscc, expected, actual))
    assert not wrong, wrong[:5]
    assert compared >= 0.8 * len(profiles)
    assert sum(1 for p in profiles.values() if p["hazards_open"] + p["hazards_closed"]) >= 20
    # hazards reported at a firm's premises without naming it count for the firm
    unnamed = [e for e, h in hazards.items() if not h["uscc"] and matched.get(e)]
    at_firms = {e for e in unnamed for p in profiles.values() if p["domicile_address_code"] == matched[e]}
    assert len(at_firms) >= 10


def test_insured_employees_grade_and_last_inspection_equal_the_truth(spark, lake, profiles, truth):
    compared, defective, wrong = _compared(
        profiles, truth["records"]["insured"],
        lambda rows: len({r["key"] for r in rows if r["status"] == "参保缴费"}),
        lambda p: p["insured_employees"] or 0)
    assert not wrong, wrong[:5]
    assert compared >= 0.5 * len(profiles) and defective > 0
    graded = [(truth["entities"][u]["tax_credit_grade"], p["tax_credit_grade"]) for u, p in profiles.items()
              if u in truth["entities"] and truth["entities"][u]["tax_credit_grade"]]
    assert len(graded) >= 100 and sum(a == b for a, b in graded) >= 0.98 * len(graded)
    _, settings = lake
    ratings = {r["uscc"]: r["risk_grade"] for r in spark.read.format("delta")
               .load(settings.lake_path("base", "credit_rating")).where("is_current").collect()}
    assert all(p["credit_grade"] == ratings.get(u) for u, p in profiles.items())
    last = truth["last_inspections"]
    assert last and all(profiles[u]["last_inspected_on"].isoformat() == r["inspected_date"]
                        for u, r in last.items() if u in profiles)
    assert sum(1 for p in profiles.values() if p["last_inspected_on"]) == len(set(last) & set(profiles))


def test_show_entity_prints_the_profile_in_sections(lake, profiles):
    _, settings = lake
    uscc = max(profiles, key=lambda u: (profiles[u]["hazards_open"] + profiles[u]["penalty_count"]
                                        + profiles[u]["licences_valid"], u))
    env = dict(os.environ, GOVLAKE_HOME=settings.home)
    shown = subprocess.run([sys.executable, "-m", "pipelines.cli", "show", "entity", uscc, "--json"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert shown.returncode == 0, shown.stderr[-2000:]
    profile = json.loads(shown.stdout)
    assert set(profile) >= {"registration", "place", "legal_representative", "credit", "records", "licences",
                            "employees", "hazards", "inspections"}
    row = profiles[uscc]
    assert profile["hazards"]["hazards_open"] == row["hazards_open"]
    assert profile["records"]["penalty_count"] == row["penalty_count"]
    today = date.fromisoformat(profile["as_of"])
    assert profile["licences"]["expiring_within_90_days"] == sum(
        1 for d in row["valid_licence_expiries"] if d < today + timedelta(days=90))
    trend = profile["employees"]["trend"]
    assert len(trend) == 12 and trend[-1]["month_end"] < today.isoformat()
    text = subprocess.run([sys.executable, "-m", "pipelines.cli", "show", "entity", uscc],
                          capture_output=True, text=True, env=env, timeout=600)
    assert text.returncode == 0 and "网格隐患" in text.stdout and "证照" in text.stdout
    missing = subprocess.run([sys.executable, "-m", "pipelines.cli", "show", "entity", "91441900MA00000000"],
                             capture_output=True, text=True, env=env, timeout=600)
    assert missing.returncode != 0 and "no uscc 91441900MA00000000 in base.enterprise_profile" in missing.stderr


def test_the_profile_is_a_catalog_resource_shared_like_its_sources(lake):
    from pipelines.serving.catalog import resources_from_libraries

    _, settings = lake
    resources = resources_from_libraries(settings)
    profile, legal_person = resources["base.enterprise_profile"], resources["base.legal_person"]
    for name in ("legal_representative", "legal_representative_person_id", "tax_credit_grade", "entity_name"):
        mine, theirs = profile.column(name), legal_person.column(name)
        assert (mine.sensitivity, mine.share_type, profile.value_owners(name)) == (
            theirs.sensitivity, theirs.share_type, legal_person.value_owners(name)), name
    # the ID is 市场监管局's in both (legal_person derives it from the registration's ID)
    assert profile.value_owners("legal_representative_person_id") == {"amr"}
    # the record hash covers the representative: as strict as it, in the profile and the risk library alike
    assert profile.column("record_hash").sensitivity == "sensitive_personal"
    assert profile.column("legal_representative_person_id").sensitivity == "sensitive_personal"
    assert profile.town_column.name == "town_code"
    assert all(c.description for c in profile.columns), [c.name for c in profile.columns if not c.description]
