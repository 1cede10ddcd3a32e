"""Verification instead of documents on a built city, against the generator's
truth: the answers, that the asker learns nothing else, and the log."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

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
    # the same people asked about another town by another department: no
    yes = [p for p in persons if answers[p["person_id"]] == "yes"][:20]
    other_town = {p["person_id"]: "441900402" if p["town_code"] != "441900402" else "441900403" for p in yes}
    elsewhere = [verify("person-alive-in-town", p["person_id"], {"town": other_town[p["person_id"]]}, "amr",
                        "经营者身份核验", "tester", DEPARTMENTS, settings)["answer"] for p in yes]
    assert yes and set(elsewhere) == {"no"}
    # the department that asked about them in their town may not go on to ask about another: that would
    # locate them across the city, one yes/no at a time
    from pipelines.applications.verification import VerificationRefused

    with pytest.raises(VerificationRefused, match="asked about this person in another town"):
        verify("person-alive-in-town", yes[0]["person_id"], {"town": other_town[yes[0]["person_id"]]}, "hrss",
               "养老金领取资格认证", "tester", DEPARTMENTS, settings)


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


# ------------------------------------------------------------------ the Trino-callable form (the verify catalog)

VERIFY_PORT = 18449


@pytest.fixture(scope="module")
def verify_trino(lake):
    """A Trino over the copied lake (own home and port) with the base rules only: the verify catalog's
    functions need no grant on any table; the service behind them reads the libraries itself."""
    import dataclasses

    from pipelines.serving.trino import trino_down, trino_up

    root, settings = lake
    settings = dataclasses.replace(settings, trino_home=Path(settings.home).parent / "verify-trino",
                                   trino_port=VERIFY_PORT, trino_heap="2G")
    trino_up(settings)
    yield root, settings
    trino_down(settings)


def _ask(settings, user: str, function: str, **arguments):
    """(rows, column names, query id) of one verify function called as ``user``."""
    from pipelines.serving.trino import connect

    named = ", ".join(f"{name} => '{value}'" for name, value in arguments.items())
    connection = connect(user, settings=settings, max_attempts=1)
    try:
        cursor = connection.cursor()
        cursor.execute(f"select * from table(verify.system.{function}({named}))")
        rows = cursor.fetchall()
        return rows, [c[0] for c in cursor.description], cursor.query_id
    finally:
        connection.close()


def test_trino_answers_as_the_command_line_and_the_truth_and_logs_the_asker(verify_trino):
    root, settings = verify_trino
    persons = [p for p in random.Random(9).sample(truth_rows(root, "persons.csv"), 40)
               if p["town_code"] == "441900004"][:4] + random.Random(10).sample(truth_rows(root, "persons.csv"), 4)
    before = len(read_delta_rows(governance_path("verification_log", settings)))
    asked = []
    for person in persons:
        rows, columns, query_id = _ask(settings, "hrss_officer", "person_alive_in_town", subject=person["person_id"],
                                       town=person["town_code"], purpose="养老金领取资格认证")
        assert columns == ["check_name", "answer", "question", "asked_at"]
        assert len(rows) == 1 and rows[0][0] == "person-alive-in-town" and rows[0][2] == "该人员是否在世且居住在指定镇街"
        direct = verify("person-alive-in-town", person["person_id"], {"town": person["town_code"]}, "hrss",
                        "养老金领取资格认证", "tester", DEPARTMENTS, settings)["answer"]
        assert rows[0][1] == direct
        if rows[0][1] == "yes":       # yes only for the living and registered (no is also the answer for the unknown)
            assert _alive_and_registered(person, date.today()), person
        asked.append(query_id)
    logged = sorted(read_delta_rows(governance_path("verification_log", settings)), key=lambda r: r["asked_at"])
    assert len(logged) == before + 2 * len(persons)
    through_trino = [r for r in logged[before:] if r["asked_by"] == "hrss_officer"]
    assert [json.loads(r["params"])["trino_query_id"] for r in through_trino] == asked
    assert {(r["department"], r["purpose"]) for r in through_trino} == {("hrss", "养老金领取资格认证")}
    # an entity check with no parameter: the same answer as the package
    uscc = truth_rows(root, "entities.csv")[0]["uscc"]
    rows, _, _ = _ask(settings, "amr_inspector", "entity_good_standing", subject=uscc, purpose="企业变更登记免提交材料")
    assert rows[0][1] == verify("entity-good-standing", uscc, {}, "amr", "企业变更登记免提交材料", "tester",
                                DEPARTMENTS, settings)["answer"]


@pytest.mark.parametrize("user, function, arguments, reason", [
    ("hrss_officer", "person_alive_in_town", {"subject": "441900199001011231", "town": "南城街道"},
     "a verification needs its purpose"),
    ("nancheng_officer", "person_alive_in_town", {"subject": "441900199001011231", "town": "虎门镇", "purpose": "低保申请核验"},
     "department nancheng governs town 441900004"),
    ("govlake", "entity_good_standing", {"subject": "91441900MA4W1234X3", "purpose": "企业变更登记"},
     "'govlake' belongs to no department"),
    ("amr_inspector", "holds_valid_licence", {"subject": "91441900MA4W1234X3", "purpose": "招投标资格审查"},
     "holds-valid-licence needs licence_type"),
])
def test_trino_refuses_with_the_reason_and_logs_the_refusal(verify_trino, user, function, arguments, reason):
    import trino

    _, settings = verify_trino
    before = len(read_delta_rows(governance_path("verification_log", settings)))
    with pytest.raises(trino.exceptions.TrinoQueryError) as refused:
        _ask(settings, user, function, **arguments)
    assert "verification refused" in str(refused.value) and reason in str(refused.value)
    logged = read_delta_rows(governance_path("verification_log", settings))
    assert len(logged) == before + 1
    last = max(logged, key=lambda r: r["asked_at"])
    assert last["asked_by"] == user and last["answer"] is None and reason in last["refused_reason"]
