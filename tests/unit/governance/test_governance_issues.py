"""The governance list across deliveries of one feed: opened, updated, closed
(delta-rs appends and MERGEs, read back after each); a governor's close goes
through delta-rs too."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.contracts import get_contract
from pipelines.governance.issues import Finding, close_issue, update_issues
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.settings import get_settings


def test_issues_open_update_and_close_over_four_deliveries(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    contract = get_contract("psb.hukou")
    bad_ids = Finding("id_number.check_character", "id_number", "quarantine", 3, ("a.csv:2",))
    bad_dates = Finding("birth_date.unparseable", "birth_date", "quarantine", 1, ("a.csv:9",))

    first = update_issues(contract, "load-1", [bad_ids], close_others=True, settings=settings)
    second = update_issues(contract, "load-2", [bad_ids, bad_dates], close_others=True, settings=settings)
    third = update_issues(contract, "load-3", [bad_dates], close_others=True, settings=settings)
    fourth = update_issues(contract, "load-4", [], close_others=True, settings=settings)

    assert len(first["opened"]) == 1 and second["updated"] == first["opened"] and len(second["opened"]) == 1
    assert third["closed"] == first["opened"] and third["updated"] == second["opened"]
    assert fourth["closed"] == second["opened"]
    rows = {r["rule"]: r for r in read_delta_rows(governance_path("issues", settings), [("feed", "=", "psb.hukou")])}
    assert {rule: r["status"] for rule, r in rows.items()} == {
        "id_number.check_character": "closed", "birth_date.unparseable": "closed"}
    assert rows["id_number.check_character"]["occurrences"] == 2
    assert rows["id_number.check_character"]["affected_rows"] == 6
    assert rows["birth_date.unparseable"]["closed_reason"] == "passed in delivery load-4"


def test_governor_closes_an_issue_through_delta_rs(lake_settings):
    from deltalake import DeltaTable

    contract = get_contract("psb.hukou")
    finding = Finding("id_number.check_character", "id_number", "quarantine", 3, ("a.csv:2",))
    opened = update_issues(contract, "load-1", [finding], close_others=True, settings=lake_settings)["opened"]
    path = governance_path("issues", lake_settings)
    before = read_delta_rows(path, [("issue_id", "=", opened[0])])[0]

    closed = close_issue(opened[0], "bureau re-keyed the IDs", "governor-li", lake_settings)
    after = read_delta_rows(path, [("issue_id", "=", opened[0])])[0]
    # only the closing columns change: times and counts stay exactly as the loads wrote them
    assert {k: v for k, v in after.items() if not k.startswith("closed_") and k != "status"} == {
        k: v for k, v in before.items() if not k.startswith("closed_") and k != "status"}
    with pytest.raises(ValueError, match="already closed"):
        close_issue(opened[0], "again", "governor-li", lake_settings)

    assert closed["status"] == "closed" and closed["closed_by"] == "governor-li"
    rows = read_delta_rows(governance_path("issues", lake_settings), [("issue_id", "=", opened[0])])
    assert [(r["status"], r["closed_reason"], r["occurrences"]) for r in rows] == [
        ("closed", "bureau re-keyed the IDs", 1)]
    engines = {c.get("clientVersion") or c.get("engineInfo") for c in DeltaTable(
        governance_path("issues", lake_settings)).history()}
    assert all(e and "delta-rs" in e for e in engines), engines
