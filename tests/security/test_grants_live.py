"""Grants that are live exactly while they are valid: the rules keeper next to
Trino expires a grant and applies a new one within its refresh period, with no
delivery and no manual compile; row_scope is honoured (issue 13, item 3)."""

from __future__ import annotations

import dataclasses
import time
from datetime import date, timedelta

import pytest
import trino

from pipelines.serving.catalog import load_catalog
from pipelines.serving.keeper import start_keeper, stop_keeper
from tests.security.conftest import run_as


def _eventually(check, seconds: float) -> float:
    """Seconds until ``check()`` holds (fails the test after ``seconds``)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"not within {seconds}s")


def _can_read(settings, user: str, sql: str) -> bool:
    try:
        run_as(settings, user, sql)
        return True
    except trino.exceptions.TrinoUserError as exc:
        assert "Access Denied" in exc.message, exc.message
        return False


@pytest.fixture
def keeper_at(secured_lake):
    """Restart the keeper with its clock set to a given day; the real clock after."""
    def restart(day: date | None):
        stop_keeper(secured_lake)
        start_keeper(dataclasses.replace(secured_lake, today=day))
    yield restart
    restart(None)
    time.sleep(8)      # its first pass rewrites the rules at once; Trino re-reads them within 5 s


def test_an_expired_grant_stops_working_within_the_refresh_period(secured_lake, keeper_at):
    grant = next(g for g in load_catalog(secured_lake).grants
                 if g.department == "nancheng" and g.resource == "silver.psb_residence_permit")
    sql = "select phone from lake.silver.psb_residence_permit"
    assert _can_read(secured_lake, "nancheng_officer", sql)
    keeper_at(grant.expires)                       # the last valid day: still live
    time.sleep(secured_lake.rules_refresh_seconds + 7)
    assert _can_read(secured_lake, "nancheng_officer", sql)
    keeper_at(grant.expires + timedelta(days=1))   # the day after: gone, with nobody doing anything
    _eventually(lambda: not _can_read(secured_lake, "nancheng_officer", sql), secured_lake.rules_refresh_seconds + 15)
    # unconditional columns stay
    assert _can_read(secured_lake, "nancheng_officer", "select town_name from lake.silver.psb_residence_permit")


def test_a_bad_grant_file_is_not_applied_and_the_running_rules_stay(secured_lake):
    bad = secured_lake.catalog_dir / "grants" / "zz-typo.yaml"
    bad.write_text("grants:\n  - department: edu\n    resource: silver.psb_hukou\n    columns: [full_name, shoe_size]\n"
                   "    purpose: x\n    legal_basis: y\n    expires: 2030-01-01\n    approver: z\n", encoding="utf-8")
    log = secured_lake.trino_home / "keeper.log"
    try:
        _eventually(lambda: "zz-typo.yaml:4" in log.read_text(encoding="utf-8"), secured_lake.rules_refresh_seconds + 15)
        assert "shoe_size" in log.read_text(encoding="utf-8")
        assert not _can_read(secured_lake, "edu_officer", "select full_name from lake.silver.psb_hukou")
        assert _can_read(secured_lake, "hrss_officer", "select full_name from lake.silver.psb_residence_permit")
    finally:
        bad.unlink()


def test_an_approved_request_becomes_live_by_itself(secured_lake):
    from pipelines.serving.requests import consent_request, decide_request, file_request

    sql = "select full_name from lake.silver.psb_hukou"
    assert not _can_read(secured_lake, "court_clerk", sql)
    request = file_request("court", "silver.psb_hukou", ["full_name"], "执行案件当事人身份核实",
                           "《民事诉讼法》第二百五十五条", date(2030, 1, 1), "clerk-zhao", settings=secured_lake)
    consent_request(request["request_id"], "psb_analyst", secured_lake)
    decide_request(request["request_id"], True, "governor_li", "依法核验", secured_lake)
    _eventually(lambda: _can_read(secured_lake, "court_clerk", sql), secured_lake.rules_refresh_seconds + 15)


def test_row_scope_is_honoured(secured_lake):
    """A town sees nothing of a table with no town column; a grant with
    ``row_scope: all`` lets it read every row, ``own_town`` keeps it scoped."""
    sql = "select count(full_name) from lake.silver.psb_hukou"
    assert not _can_read(secured_lake, "humen_officer", sql)
    path = secured_lake.catalog_dir / "grants" / "humen-hukou.yaml"
    path.write_text("grants:\n  - department: humen\n    resource: silver.psb_hukou\n"
                    "    columns: [full_name]\n    purpose: 跨镇街流动人口协查\n    legal_basis: x\n"
                    "    row_scope: all\n    expires: 2030-01-01\n    approver: 数据共享科\n", encoding="utf-8")
    try:
        _eventually(lambda: _can_read(secured_lake, "humen_officer", sql), secured_lake.rules_refresh_seconds + 15)
        assert run_as(secured_lake, "humen_officer", sql) == [[4]]
        path.write_text(path.read_text(encoding="utf-8").replace("row_scope: all", "row_scope: own_town"),
                        encoding="utf-8")
        _eventually(lambda: not _can_read(secured_lake, "humen_officer", sql), secured_lake.rules_refresh_seconds + 15)
    finally:
        path.unlink()
