"""Verification instead of documents: the answers on inline records, and the
refusals, each logged with its reason."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.applications.verification import (
    VerificationRefused, alive_in_town, holds_valid_licence, in_good_standing, verify)
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path

DEPARTMENTS = {"hrss": None, "amr": None, "nancheng": "441900004"}
TODAY = date(2026, 12, 7)
OPERATING = {"registration_status": "存续", "registration_status_source": "amr.business_registration"}
LICENCE = [{"licence_type": "business_licence", "status": "valid", "expires_on": None, "holder_found": True}]


def test_alive_in_town_needs_a_known_life_in_that_town():
    assert alive_in_town({"is_deceased": False, "town_code": "441900004"}, "441900004")
    assert not alive_in_town({"is_deceased": False, "town_code": "441900121"}, "441900004")
    assert not alive_in_town({"is_deceased": True, "town_code": "441900004"}, "441900004")
    assert not alive_in_town({"is_deceased": None, "town_code": "441900004"}, "441900004")     # nothing known
    assert not alive_in_town(None, "441900004")


@pytest.mark.parametrize("entity, records, licences, answer", [
    (OPERATING, [], LICENCE, True),
    (OPERATING, [{"record_type": "abnormal_operation", "ended_on": None, "status": None}], LICENCE, False),
    (OPERATING, [{"record_type": "abnormal_operation", "ended_on": "2025-01-01", "status": None}], LICENCE, True),
    (OPERATING, [{"record_type": "dishonest_debtor", "ended_on": None, "status": "全部未履行"}], LICENCE, False),
    (OPERATING, [{"record_type": "dishonest_debtor", "ended_on": None, "status": None}], LICENCE, False),
    (OPERATING, [{"record_type": "dishonest_debtor", "ended_on": None, "status": "全部履行"}], LICENCE, True),
    (OPERATING, [{"record_type": "administrative_penalty", "ended_on": None, "status": None}], LICENCE, True),
    (OPERATING, [], [dict(LICENCE[0], status="revoked")], False),
    (OPERATING, [], [dict(LICENCE[0], expires_on=date(2026, 12, 6))], False),      # lapsed since the build
    (OPERATING, [], [dict(LICENCE[0], holder_found=False)], False),
    (OPERATING, [], [], False),
    ({"registration_status": "正常", "registration_status_source": "mca.social_org"}, [], [], True),
    ({"registration_status": "注销", "registration_status_source": "amr.business_registration"}, [], LICENCE, False),
    (None, [], LICENCE, False),
])
def test_good_standing(entity, records, licences, answer):
    assert in_good_standing(entity, records, licences, TODAY) is answer


def test_a_licence_counts_only_of_its_type_valid_and_unexpired():
    food = dict(LICENCE[0], licence_type="food_business_licence", expires_on=date(2026, 12, 7))
    assert holds_valid_licence([food] + LICENCE, "business_licence", TODAY)
    assert holds_valid_licence([food], "food_business_licence", TODAY)                # its last day
    assert not holds_valid_licence([food], "food_business_licence", date(2026, 12, 8))
    assert not holds_valid_licence([dict(food, status="expired")], "food_business_licence", TODAY)


@pytest.mark.parametrize("check, subject, params, department, purpose, reason", [
    ("person-alive-in-town", "441900199001011231", {"town": "南城街道"}, "hrss", None, "needs its purpose"),
    ("person-alive-in-town", "441900199001011231", {"town": "南城街道"}, "hrss", " 核验 ", "needs its purpose"),
    ("person-alive-in-town", "441900199001011231", {"town": "南城街道"}, "nobody", "社保待遇资格认证",
     "department 'nobody' is not in the catalog"),
    ("person-alive-in-town", "441900199001011234", {"town": "南城街道"}, "hrss", "社保待遇资格认证",
     "is not one (18 characters"),
    ("person-alive-in-town", "441900199001011231", {}, "hrss", "社保待遇资格认证", "needs town (--town"),
    ("person-alive-in-town", "441900199001011231", {"town": "南城"}, "hrss", "社保待遇资格认证", "unknown town"),
    ("who-is-rich", "441900199001011231", {}, "hrss", "社保待遇资格认证", "no check 'who-is-rich'"),
    ("person-alive-in-town", "441900199001011231", {"town": "虎门镇"}, "nancheng", "低保申请核验",
     "department nancheng governs town 441900004: it may ask about its own town only"),
    ("person-alive-in-town", "441900199001011231", {"town": "南城街道"}, None, "低保申请核验",
     "belongs to no department of the catalog"),
    ("holds-valid-licence", "91441900MA4W1234X3", {"licence_type": "driving"}, "amr", "招投标资格审查",
     "unknown licence type 'driving'"),
    ("entity-good-standing", "91441900MA4W1234XY", {}, "amr", "招投标资格审查", "is about a USCC"),
    # asked in full: only the library is missing, and that refusal is logged too
    ("person-alive-in-town", "441900199001011231", {"town": "南城街道"}, "nancheng", "低保申请核验",
     "base.population is not built in this lake"),
])
def test_a_question_is_refused_with_its_reason_and_the_refusal_logged(lake_settings, check, subject, params,
                                                                      department, purpose, reason):
    with pytest.raises(VerificationRefused, match=reason.replace("(", r"\(")):
        verify(check, subject, params, department, purpose, "tester", DEPARTMENTS, lake_settings)
    [logged] = read_delta_rows(governance_path("verification_log", lake_settings))
    assert reason in logged["refused_reason"] and logged["answer"] is None
    assert (logged["department"], logged["check_name"], logged["asked_by"]) == (department, check, "tester")


def test_an_answer_is_logged_with_the_version_it_was_read_at_and_only_the_subjects_current_row_counts(
        lake_settings):
    import pyarrow as pa
    from deltalake import write_deltalake

    person = "441900199001011231"
    rows = pa.table({"person_id": [person, person, "441900198001011237"], "is_deceased": [True, False, False],
                     "town_code": ["441900004", "441900004", "441900004"], "is_current": [False, True, True]})
    write_deltalake(lake_settings.lake_path("base", "population"), rows)
    answer = verify("person-alive-in-town", person, {"town": "南城街道"}, "nancheng", "低保申请核验", "tester",
                    DEPARTMENTS, lake_settings)
    assert answer["answer"] == "yes" and set(answer) == {"check", "question", "answer", "asked_at"}
    [logged] = read_delta_rows(governance_path("verification_log", lake_settings))
    assert (logged["answer"], logged["refused_reason"], logged["library_versions"]) == (
        "yes", None, '{"base.population": 0}')
    unknown = verify("person-alive-in-town", "441900197001011232", {"town": "441900004"}, "nancheng",
                     "低保申请核验", "tester", DEPARTMENTS, lake_settings)
    assert unknown["answer"] == "no"


def test_a_department_cannot_locate_a_person_town_by_town_nor_ask_twice_in_one_query(lake_settings):
    """A yes/no oracle asked about one person in every town finds where they live: after an answer
    about one town, the same department's question about another town within 30 days is refused
    (another department's is not). One Trino query asks one question (UNION ALL would ask many)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    person = "441900199001011231"
    write_deltalake(lake_settings.lake_path("base", "population"), pa.table(
        {"person_id": [person], "is_deceased": [False], "town_code": ["441900004"], "is_current": [True]}))
    asked = {"town": "虎门镇"}
    assert verify("person-alive-in-town", person, asked, "hrss", "养老金领取资格认证", "t", DEPARTMENTS,
                  lake_settings)["answer"] == "no"
    with pytest.raises(VerificationRefused, match=r"asked about this person in another town \(441900121\)"):
        verify("person-alive-in-town", person, {"town": "南城街道"}, "hrss", "养老金领取资格认证", "t", DEPARTMENTS,
               lake_settings)
    assert verify("person-alive-in-town", person, asked, "hrss", "养老金领取资格认证", "t", DEPARTMENTS,
                  lake_settings)["answer"] == "no"                      # the same town again: answered
    assert verify("person-alive-in-town", person, {"town": "南城街道"}, "amr", "经营者身份核验", "t", DEPARTMENTS,
                  lake_settings)["answer"] == "yes"
    in_query = {"town": "南城街道", "trino_query_id": "20261207_000001_00002_xyz"}
    verify("person-alive-in-town", "441900197001011232", in_query, "nancheng", "低保申请核验", "t", DEPARTMENTS,
           lake_settings)
    with pytest.raises(VerificationRefused, match="one question per query"):
        verify("person-alive-in-town", person, in_query, "nancheng", "低保申请核验", "t", DEPARTMENTS, lake_settings)
    with pytest.raises(VerificationRefused, match="at most 200 characters"):
        verify("entity-good-standing", "91441900MA4W1234X3", {}, "amr", "核验" * 101, "t", DEPARTMENTS, lake_settings)
