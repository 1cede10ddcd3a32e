"""Audit events from the receiver's file: bad lines are skipped, counted and
kept aside, never fatal (issue 21, item 4); the first event of a query id
wins; the department is the authenticated principal's."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from pipelines.serving.audit import BadAuditEvent, audit_dir, audit_row, read_audit_events, rejected_path
from pipelines.settings import get_settings


def _event(query_id: str, user: str = "hrss_officer", principal: str | None = None, **extra) -> dict:
    """A QueryCompletedEvent shaped like the ones Trino's http listener posts
    (``context.principal`` is who logged in, ``context.user`` whom they act as)."""
    event = {
        "metadata": {"queryId": query_id, "query": "select full_name from lake.silver.psb_residence_permit",
                     "queryState": "FINISHED"},
        "context": {"user": user, "principal": principal or user, "source": "trino-cli",
                    "remoteClientAddress": "127.0.0.1"},
        "statistics": {"outputRows": 3},
        "ioMetadata": {"inputs": [{"catalogName": "lake", "schema": "silver", "table": "psb_residence_permit",
                                   "columns": [{"column": "full_name", "type": "varchar"}]}]},
        "createTime": "2026-11-29T08:00:00.000Z", "endTime": "2026-11-29T08:00:01.500Z",
    }
    event.update(extra)
    return event


GOOD = [
    _event("20261129_080000_00001_aaaaa"),
    _event("20261129_080001_00002_aaaaa", user="amr_inspector",
           failureInfo={"errorCode": {"code": 4, "name": "PERMISSION_DENIED", "type": "USER_ERROR"},
                        "failureMessage": "Access Denied: Cannot select from columns [id_number]"}),
]
BAD = [
    ('[{"metadata": {"queryId": "q-in-an-array"}}]', "not an object"),   # a JSON array
    ("this is not json", "not JSON"),
    ('{"metadata": {"queryId": "x"', "not JSON"),                          # cut off
    (json.dumps({"context": {"user": "u"}, "metadata": {"queryState": "FINISHED"}}), "missing metadata.queryId"),
    (json.dumps(_event("q-no-user", context={})), "missing context.user"),
    (json.dumps(_event("q-bad-metadata", metadata="select 1")), "metadata is a str"),
    (json.dumps(_event("q-bad-rows", statistics={"outputRows": "many"})), "outputRows is not a row count"),
    (json.dumps(_event("q-huge-rows", statistics={"outputRows": 2 ** 64})), "outputRows is not a row count"),
    ("42", "not an object"),
    ("null", "not an object"),
]


@pytest.fixture
def event_file(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    folder = audit_dir(settings)
    folder.mkdir(parents=True)
    path = folder / "events-20261129.jsonl"
    lines = [json.dumps(GOOD[0])] + [line for line, _ in BAD[:4]] + ["", json.dumps(GOOD[1])] + \
        [line for line, _ in BAD[4:]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return settings, path


def test_bad_lines_are_skipped_counted_and_kept_aside(event_file, caplog):
    settings, path = event_file
    with caplog.at_level(logging.WARNING, logger="pipelines.serving.audit"):
        events = read_audit_events(settings, {"hrss_officer": "hrss", "amr_inspector": "amr"})

    assert sorted(events.rows) == sorted(e["metadata"]["queryId"] for e in GOOD)
    assert events.skipped == len(BAD) == 10
    assert "skipped 10 event line(s)" in caplog.text

    rejected = rejected_path(path)
    assert rejected.parent == path.parent and events.rejected_files == [str(rejected)]
    kept = [json.loads(line) for line in rejected.read_text(encoding="utf-8").splitlines()]
    assert [item["text"] for item in kept] == [line for line, _ in BAD]
    for item, (_, reason) in zip(kept, BAD):
        assert reason in item["reason"], item
    assert [item["line"] for item in kept] == [2, 3, 4, 5, 8, 9, 10, 11, 12, 13]

    denied = events.rows[GOOD[1]["metadata"]["queryId"]]
    assert denied["access_denied"] is True and denied["department"] == "amr"
    read = events.rows[GOOD[0]["metadata"]["queryId"]]
    assert read["tables_read"] == ["lake.silver.psb_residence_permit"]
    assert read["columns_read"] == ["lake.silver.psb_residence_permit.full_name"]
    assert read["rows_returned"] == 3 and read["access_denied"] is False


def test_reading_twice_keeps_one_copy_of_the_bad_lines_and_the_event_file_untouched(event_file):
    settings, path = event_file
    before = path.read_bytes()
    first = read_audit_events(settings, {})
    second = read_audit_events(settings, {})
    assert second.skipped == first.skipped == len(BAD)
    assert len(rejected_path(path).read_text(encoding="utf-8").splitlines()) == len(BAD)
    assert path.read_bytes() == before
    # the kept-aside file is not read as an event file
    assert not rejected_path(path).match("events-*.jsonl")


def test_a_file_of_good_events_leaves_nothing_aside(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    audit_dir(settings).mkdir(parents=True)
    path = audit_dir(settings) / "events-20261130.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in GOOD), encoding="utf-8")
    events = read_audit_events(settings, {})
    assert len(events.rows) == 2 and events.skipped == 0 and events.rejected_files == []
    assert not rejected_path(path).exists()


@pytest.mark.parametrize("event", [[GOOD[0]], "text", 7, None, {}, _event("q-surrogate", user="hrss\ud800")])
def test_audit_row_raises_bad_event_rather_than_anything_else(event):
    with pytest.raises(BadAuditEvent):
        audit_row(event, {})


def test_the_first_event_of_a_query_id_wins_and_later_ones_are_kept_aside(tmp_path, caplog):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    audit_dir(settings).mkdir(parents=True)
    first = _event("20261201_090000_00001_aaaaa", user="hrss_officer")
    forged = _event("20261201_090000_00001_aaaaa", user="psb_analyst", statistics={"outputRows": 0})
    (audit_dir(settings) / "events-20261201.jsonl").write_text(json.dumps(first) + "\n", encoding="utf-8")
    later = audit_dir(settings) / "events-20261202.jsonl"
    later.write_text(json.dumps(forged) + "\n" + json.dumps(GOOD[0]) + "\n", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="pipelines.serving.audit"):
        events = read_audit_events(settings, {"hrss_officer": "hrss", "psb_analyst": "psb"})

    row = events.rows["20261201_090000_00001_aaaaa"]
    assert row["user"] == "hrss_officer" and row["department"] == "hrss" and row["rows_returned"] == 3
    assert events.duplicates == 1 and events.skipped == 0 and len(events.rows) == 2
    kept = [json.loads(line) for line in rejected_path(later).read_text(encoding="utf-8").splitlines()]
    assert kept == [{"line": 1, "reason": "duplicate query id", "text": json.dumps(forged)}]
    assert "1 duplicate query id(s)" in caplog.text


def test_an_impersonation_attempt_is_recorded_under_the_principal_and_its_department():
    # psb_analyst logs in with their own password and sends X-Trino-User: govlake
    event = _event("20261201_100000_00003_aaaaa", user="govlake", principal="psb_analyst",
                   failureInfo={"errorCode": {"name": "PERMISSION_DENIED"},
                                "failureMessage": "Access Denied: User psb_analyst cannot impersonate user govlake"})
    row = audit_row(event, {"psb_analyst": "psb", "hrss_officer": "hrss"})
    assert row["principal"] == "psb_analyst" and row["user"] == "govlake"
    assert row["department"] == "psb" and row["access_denied"] is True
    assert row["event_kind"] == "query" and row["client_address"] == "127.0.0.1"
    # no principal (never the case with password logins): no department rather than the claimed user's
    anonymous = _event("20261201_100000_00004_aaaaa", user="hrss_officer")
    del anonymous["context"]["principal"]
    assert audit_row(anonymous, {"hrss_officer": "hrss"})["department"] is None


def test_a_last_line_still_being_written_is_left_for_the_next_read(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    audit_dir(settings).mkdir(parents=True)
    path = audit_dir(settings) / "events-20261203.jsonl"
    whole = json.dumps(GOOD[1])
    path.write_text(json.dumps(GOOD[0]) + "\n" + whole[:40], encoding="utf-8")
    events = read_audit_events(settings, {})
    assert list(events.rows) == [GOOD[0]["metadata"]["queryId"]] and events.skipped == 0
    path.write_text(json.dumps(GOOD[0]) + "\n" + whole + "\n", encoding="utf-8")
    assert len(read_audit_events(settings, {}).rows) == 2
