"""The governance list across deliveries of one feed: opened, updated, closed
(delta-rs appends and MERGEs, read back after each)."""

from __future__ import annotations

import dataclasses

from pipelines.contracts import get_contract
from pipelines.governance.issues import Finding, update_issues
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.settings import get_settings


def test_issues_open_update_and_close_over_four_deliveries(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    contract = get_contract("psb.hukou")
    bad_ids = Finding("id_number.check_character", "id_number", "quarantine", 3, ("a.csv:2",))
    bad_dates = Finding("birth_date.unparseable", "birth_date", "quarantine", 1, ("a.csv:9",))

    first = update_issues(None, contract, "load-1", [bad_ids], close_others=True, settings=settings)
    second = update_issues(None, contract, "load-2", [bad_ids, bad_dates], close_others=True, settings=settings)
    third = update_issues(None, contract, "load-3", [bad_dates], close_others=True, settings=settings)
    fourth = update_issues(None, contract, "load-4", [], close_others=True, settings=settings)

    assert len(first["opened"]) == 1 and second["updated"] == first["opened"] and len(second["opened"]) == 1
    assert third["closed"] == first["opened"] and third["updated"] == second["opened"]
    assert fourth["closed"] == second["opened"]
    rows = {r["rule"]: r for r in read_delta_rows(governance_path("issues", settings), [("feed", "=", "psb.hukou")])}
    assert {rule: r["status"] for rule, r in rows.items()} == {
        "id_number.check_character": "closed", "birth_date.unparseable": "closed"}
    assert rows["id_number.check_character"]["occurrences"] == 2
    assert rows["id_number.check_character"]["affected_rows"] == 6
    assert rows["birth_date.unparseable"]["closed_reason"] == "passed in delivery load-4"
