"""Verification instead of documents on a built city, against the generator's
truth: the answers, that the asker learns nothing else, and the log."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import date

import pytest

from pipelines.applications.verification import verify
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from tests.integration.cities import copy_built_lake, truth_rows

DEPARTMENTS = {"hrss": None, "amr": None, "nancheng": "441900004"}


@pytest.fixture(scope="module")
def lake(built_city, tmp_path_factory):
    """A copy of the session's built city as built (verifications are logged in governance)."""
    return copy_built_lake(built_city, tmp_path_factory, "verification")


def _alive_and_registered(person: dict, today: date) -> bool:
    """The truth of base.population's is_deceased = false (test_libraries.py holds the library to it):
    no death, and a live registration: hukou 正常, or a residence permit without a readable expiry or
    valid today (a permit holder's 人口状态 is never delivered)."""
    if person["death_date"] or person["population_status"] == "死亡":
        return False
    if person["registration"] == "hukou":
        return person["population_status"] == "正常"
    until = person["permit_valid_until"]
    return not until or date.fromisoformat(until) >= today


def test_person_alive_in_town_answers_as_thetruth_rows(spark, lake):
    root, settings = lake
    known = {r.person_id for r in spark.read.format("delta").load(settings.lake_path("base", "population"))
             .where("is_current").select("person_id").collect()}
    # the persons the library resolved (recall is 0.995+, test_libraries.py): a missing one would answer no
    persons = [p for p in random.Random(5).sample(truth_rows(root, "persons.csv"), 200) if p["person_id"] in known]
    assert len(persons) >= 190
    answers = {p["person_id"]: verify("person-alive-in-town", p["person_id"], {"town": p["town_code"]}, "hrss",
                                      "养老金领取资格认证", "tester", DEPARTMENTS, settings)["answer"]
               for p in persons}
    expected = {p["person_id"]: "yes" if _alive_and_registered(p, date.today()) else "no" for p in persons}
    wrong = {k: (answers[k], expected[k]) for k in answers if answers[k] != expected[k]}
    assert not wrong, wrong
    assert set(answers.values()) == {"yes", "no"}
    # the same people asked about another town: no
    yes = [p for p in persons if answers[p["person_id"]] == "yes"][:20]
    elsewhere = [verify("person-alive-in-town", p["person_id"], {"town": "441900402" if p["town_code"] != "441900402"
                                                                 else "441900403"}, "hrss", "养老金领取资格认证",
                        "tester", DEPARTMENTS, settings)["answer"] for p in yes]
    assert yes and set(elsewhere) == {"no"}


def test_good_standing_and_licences_answer_as_the_libraries_hold(spark, lake):
    root, settings = lake
    people = {r.uscc: r for r in spark.read.format("delta").load(settings.lake_path("base", "legal_person"))
              .where("is_current").select("uscc", "registration_status", "registration_status_source").collect()}
    entities = [e for e in random.Random(6).sample(truth_rows(root, "entities.csv"), 120) if e["uscc"] in people]
    assert len(entities) >= 110
    records = (spark.read.format("delta").load(settings.lake_path("base", "credit_record")).where("is_current")
               .where("(record_type = 'abnormal_operation' and ended_on is null) or "
                      "(record_type = 'dishonest_debtor' and coalesce(status, '') <> '全部履行')")
               .select("subject_id").distinct().collect())
    blemished = {r.subject_id for r in records}
    valid = {r.holder_id for r in spark.read.format("delta").load(settings.lake_path("base", "e_licence"))
             .where("is_current and licence_type = 'business_licence' and status = 'valid'").collect()}
    answers = []
    for entity in entities:
        answer = verify("entity-good-standing", entity["uscc"], {}, "amr", "企业变更登记免提交材料", "tester",
                        DEPARTMENTS, settings)["answer"]
        record = people[entity["uscc"]]
        operating = record.registration_status in ("存续", "在业", "正常")
        social = record.registration_status_source == "mca.social_org"
        expected = operating and entity["uscc"] not in blemished and (social or entity["uscc"] in valid)
        assert answer == ("yes" if expected else "no"), entity
        answers.append((answer, operating, entity["uscc"] in blemished))
    assert {a for a, _, _ in answers} == {"yes", "no"}
    assert ("no", False, False) in answers                    # no for being deregistered alone
    holders = sorted(valid)[:10]
    assert all(verify("holds-valid-licence", h, {"licence_type": "business_licence"}, "amr", "招投标资格审查",
                      "tester", DEPARTMENTS, settings)["answer"] == "yes" for h in holders)
    blemished_operating = sorted(u for u in blemished if u in people and people[u].registration_status == "存续")[:5]
    assert blemished_operating and {verify("entity-good-standing", u, {}, "amr", "招投标资格审查", "tester",
                                           DEPARTMENTS, settings)["answer"] for u in blemished_operating} == {"no"}


def test_the_asker_learns_the_answer_not_the_record_and_every_question_is_logged(lake):
    root, settings = lake
    # an inspector: a living hukou resident whose rows the generator delivers clean
    inspector = truth_rows(root, "inspectors.csv")[0]["person_id"]
    person = next(p for p in truth_rows(root, "persons.csv") if p["person_id"] == inspector)
    before = len(read_delta_rows(governance_path("verification_log", settings)))
    asked = subprocess.run([sys.executable, "-m", "pipelines.cli", "verify", "person-alive-in-town",
                            person["person_id"], "--town", person["town_code"], "--department", "hrss",
                            "--purpose", "养老金领取资格认证", "--json"], capture_output=True, text=True,
                           env=dict(os.environ, GOVLAKE_HOME=settings.home), timeout=300)
    assert asked.returncode == 0, asked.stderr
    for value in (person["full_name"], person["address_code"], person["phone"], person["birth_date"]):
        assert value not in asked.stdout
    refused = subprocess.run([sys.executable, "-m", "pipelines.cli", "verify", "person-alive-in-town",
                              person["person_id"], "--town", person["town_code"], "--department", "hrss"],
                             capture_output=True, text=True, env=dict(os.environ, GOVLAKE_HOME=settings.home),
                             timeout=300)
    assert refused.returncode == 1 and "refused: a verification needs its purpose" in refused.stderr
    logged = sorted(read_delta_rows(governance_path("verification_log", settings)), key=lambda r: r["asked_at"])
    last_two = logged[-2:]
    assert [(r["department"], r["purpose"], r["answer"]) for r in last_two] == [
        ("hrss", "养老金领取资格认证", "yes"), ("hrss", None, None)]
    assert last_two[1]["refused_reason"].startswith("a verification needs its purpose")
    assert len(logged) == before + 2
