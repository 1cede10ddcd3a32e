"""A complete, tamper-evident audit (issue 13, item 5), against the real server:
every query, denied and impersonating ones included, with its authenticated
principal; failed logins and REST calls; forged events refused; the hash
chain finds a row altered on disk."""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
import requests
import trino
from deltalake import DeltaTable
from trino.auth import BasicAuthentication

from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.serving.audit import audit_dir, receiver_port, verify_audit
from pipelines.serving.trino import ADMIN_USER, CATALOG, certificate_path, connect, password_for
from tests.security.conftest import run_as


def _run(settings, user: str, sql: str, login: str | None = None) -> str:
    """Run ``sql`` (refusals are expected here); returns the query id. ``login``:
    authenticate as this user while asking to run as ``user``."""
    if login is None:
        cursor = connect(user, settings=settings, max_attempts=1).cursor()
    else:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(certificate_path(settings))
        cursor = trino.dbapi.connect(
            host="127.0.0.1", port=settings.trino_port, user=user, catalog=CATALOG, http_scheme="https",
            auth=BasicAuthentication(login, password_for(login, settings)), http_session=session,
            max_attempts=1).cursor()
    try:
        cursor.execute(sql)
        cursor.fetchall()
    except trino.exceptions.TrinoUserError:
        pass
    return cursor.query_id


def _audit_rows(settings) -> dict[str, dict]:
    return {row["query_id"]: row for row in read_delta_rows(governance_path("query_audit", settings))}


def _until_loaded(settings, ids: set[str], seconds: float = 60) -> dict[str, dict]:
    """The audit rows, once the rules keeper has loaded every id in ``ids``."""
    deadline = time.monotonic() + seconds
    while True:
        rows = _audit_rows(settings)
        if ids <= set(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def test_every_query_is_audited_with_its_principal_within_a_minute(secured_lake):
    assert run_as(secured_lake, ADMIN_USER, "select count(*) from lake.governance.query_audit")   # exists from trino up
    read = _run(secured_lake, "hrss_officer", "select full_name from lake.silver.psb_residence_permit")
    denied = _run(secured_lake, "amr_inspector", "select id_number from lake.silver.psb_residence_permit")
    failed = _run(secured_lake, "hrss_officer", "select 1/0")
    impersonating = _run(secured_lake, ADMIN_USER, "select * from lake.vault.pseudonym_key", login="psb_analyst")
    started = time.monotonic()
    rows = _until_loaded(secured_lake, {read, denied, failed, impersonating})
    assert {read, denied, failed, impersonating} <= set(rows), "not loaded by the rules keeper within 60 s"
    assert time.monotonic() - started < 60
    assert rows[read]["state"] == "FINISHED" and rows[read]["rows_returned"] == 3 and not rows[read]["access_denied"]
    assert rows[read]["principal"] == "hrss_officer" and rows[read]["department"] == "hrss"
    assert "lake.silver.psb_residence_permit.full_name" in rows[read]["columns_read"]
    assert rows[denied]["access_denied"] and rows[denied]["error_message"].startswith("Access Denied")
    assert rows[failed]["state"] == "FAILED" and not rows[failed]["access_denied"]
    # the impersonation attempt is on record under who logged in, not under the victim
    assert rows[impersonating]["user"] == ADMIN_USER and rows[impersonating]["principal"] == "psb_analyst"
    assert rows[impersonating]["department"] == "psb" and rows[impersonating]["access_denied"]


def test_failed_logins_and_rest_calls_are_audited(secured_lake):
    session = requests.Session()
    session.trust_env = False
    base = f"https://127.0.0.1:{secured_lake.trino_port}"
    verify = str(certificate_path(secured_lake))
    assert session.post(f"{base}/v1/statement", data=b"select 1", auth=("hrss_officer", "wrong"),
                        verify=verify, headers={"User-Agent": "attacker-bruteforce"}).status_code == 401
    assert session.get(f"{base}/v1/query", auth=("hrss_officer", password_for("hrss_officer", secured_lake)),
                       verify=verify, headers={"User-Agent": "attacker-listing"}).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        http = [r for r in _audit_rows(secured_lake).values() if r["event_kind"] == "http_request"]
        login = [r for r in http if r["http_status"] == 401 and r["http_uri"].startswith("/v1/statement")]
        listing = [r for r in http if r["http_uri"] == "/v1/query" and r["http_method"] == "GET"]
        if login and listing:
            break
        time.sleep(2)
    assert login and listing and login[0]["client_address"] == "127.0.0.1"


def test_a_forged_event_is_refused_and_never_overwrites_a_real_one(secured_lake):
    real = _run(secured_lake, "hrss_officer", "select count(*) from lake.silver.psb_residence_permit")
    rows = _until_loaded(secured_lake, {real})
    forged = {"metadata": {"queryId": real, "queryState": "FINISHED", "query": "select 'nothing to see'"},
              "context": {"user": "hrss_officer", "principal": "hrss_officer"}}
    url = f"http://127.0.0.1:{receiver_port(secured_lake)}/events"
    session = requests.Session()
    session.trust_env = False
    for headers in ({}, {"X-Govlake-Audit-Token": "guessed"}):
        assert session.post(url, json=forged, headers=headers, timeout=10).status_code == 401
    rejected = (audit_dir(secured_lake) / "rejected-events.jsonl").read_text(encoding="utf-8")
    assert rejected.count("nothing to see") >= 2
    time.sleep(secured_lake.rules_refresh_seconds + 3)
    assert _audit_rows(secured_lake)[real]["query"] == rows[real]["query"] != forged["metadata"]["query"]


def test_verify_finds_a_row_altered_on_disk(secured_lake, tmp_path):
    assert verify_audit(secured_lake)["ok"], verify_audit(secured_lake)["first_broken"]
    copy = dataclasses.replace(secured_lake, home=str(tmp_path / "lake"))
    shutil.copytree(governance_path("query_audit", secured_lake), governance_path("query_audit", copy))
    assert verify_audit(copy)["ok"]
    victim = sorted(_audit_rows(copy).values(), key=lambda r: r["seq"])[1]
    DeltaTable(governance_path("query_audit", copy)).update(
        predicate=f"seq = {victim['seq']}", updates={"query": "'select 1'"})
    outcome = verify_audit(copy)
    assert not outcome["ok"] and outcome["first_broken"]["seq"] == victim["seq"]


@pytest.mark.parametrize("user", ["hrss_officer", "amr_inspector"])
def test_a_department_reads_only_its_own_audit_rows(secured_lake, user):
    departments = {r[0] for r in run_as(secured_lake, user, "select distinct department from lake.governance.query_audit")}
    assert departments == {user.split("_")[0]}       # its earlier queries are there, nobody else's
