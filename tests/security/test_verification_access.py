"""Attacks on the Trino-callable verification (the verify catalog's table
functions) as a department user would try them: ask many questions in one
call, reach another catalog's table functions, read tables through the verify
catalog, or talk to the service behind the functions directly."""

from __future__ import annotations

import pytest
import requests
import trino

from pipelines import reference as ref
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.serving.audit import TOKEN_HEADER, VERIFY_PATH, receiver_port
from tests.security.conftest import run_as

UNKNOWN_ID = "44190019900101123" + ref.id_check_char("44190019900101123")     # valid, in no library


def _logged(settings) -> list[dict]:
    return read_delta_rows(governance_path("verification_log", settings))     # [] before any question


def test_a_question_is_answered_with_yes_or_no_and_nothing_of_the_record(secured_lake):
    rows = run_as(secured_lake, "nancheng_officer", "select * from table(verify.system.person_alive_in_town("
                  f"subject => '{UNKNOWN_ID}', town => '南城街道', purpose => '低保申请核验'))")
    assert [row[:2] for row in rows] == [["person-alive-in-town", "no"]]
    last = max(_logged(secured_lake), key=lambda r: r["asked_at"])
    assert (last["asked_by"], last["department"], last["subject"], last["answer"]) == (
        "nancheng_officer", "nancheng", UNKNOWN_ID, "no")


@pytest.mark.parametrize("sql", [
    # a list of ID numbers joined into the function: its arguments must be constants
    "select v.answer from (values ('{id}')) t(id) cross join table(verify.system.person_alive_in_town("
    "subject => t.id, town => '南城街道', purpose => '低保申请核验')) v",
    # a subquery over a library as the argument
    "select * from table(verify.system.person_alive_in_town(subject => (select max(person_id) from "
    "lake.base.population), town => '南城街道', purpose => '低保申请核验'))",
    # a lateral call per row
    "select v.answer from (values ('{id}')) t(id), lateral (select * from table(verify.system.person_alive_in_town("
    "subject => t.id, town => '南城街道', purpose => '低保申请核验'))) v",
])
def test_one_call_asks_one_question_no_list_can_be_joined_in(secured_lake, sql):
    before = len(_logged(secured_lake))
    with pytest.raises(trino.exceptions.TrinoQueryError):
        run_as(secured_lake, "nancheng_officer", sql.format(id=UNKNOWN_ID))
    assert len(_logged(secured_lake)) == before        # nothing was asked, nothing answered


def test_no_other_catalogs_table_functions_and_no_tables_in_the_verify_catalog(secured_lake):
    # table_changes would read base.population's change rows around its masks and row filters
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        run_as(secured_lake, "nancheng_officer",
               "select * from table(lake.system.table_changes('base', 'population', 0))")
    # the built-in functions still run
    assert run_as(secured_lake, "nancheng_officer", "select lower('A'), length('abc')") == [["a", 3]]
    assert run_as(secured_lake, "nancheng_officer", "select table_schema, table_name from "
                  "verify.information_schema.tables where table_schema <> 'information_schema'") == []


def test_the_service_behind_the_functions_answers_only_the_plugin(secured_lake):
    url = f"http://127.0.0.1:{receiver_port(secured_lake)}{VERIFY_PATH}"
    form = {"user": "nancheng_officer", "check": "person-alive-in-town", "subject": UNKNOWN_ID, "town": "南城街道",
            "purpose": "低保申请核验"}
    before = len(_logged(secured_lake))
    for headers in ({}, {TOKEN_HEADER: "not-the-token"}):
        session = requests.Session()
        session.trust_env = False
        assert session.post(url, data=form, headers=headers, timeout=10).status_code == 401
    assert len(_logged(secured_lake)) == before


def test_many_calls_in_one_query_are_refused_and_a_person_is_not_located_town_by_town(secured_lake):
    """UNION ALL of calls asks many questions in one query: refused (one question per query). A
    city-wide department that got an answer about a person in one town is refused another town."""
    other = "44190019850505123" + ref.id_check_char("44190019850505123")
    call = ("select answer from table(verify.system.person_alive_in_town(subject => '{id}', town => '{town}', "
            "purpose => '就业登记核验'))")
    first, second = ("44190019850505124" + ref.id_check_char("44190019850505124"),
                     "44190019850505125" + ref.id_check_char("44190019850505125"))
    with pytest.raises(trino.exceptions.TrinoQueryError, match="one question per query"):
        run_as(secured_lake, "hrss_officer", call.format(id=first, town="南城街道") + " union all "
               + call.format(id=second, town="南城街道"))
    assert run_as(secured_lake, "hrss_officer", call.format(id=other, town="东城街道")) == [["no"]]
    for town in ("南城街道", "虎门镇"):
        with pytest.raises(trino.exceptions.TrinoQueryError, match="asked about this person in another town"):
            run_as(secured_lake, "hrss_officer", call.format(id=other, town=town))
