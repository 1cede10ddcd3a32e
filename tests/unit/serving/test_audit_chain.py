"""governance.query_audit is append-only and hash-chained (delta-rs, no Spark):
loading twice adds nothing, a loaded row never changes, and ``verify_audit``
finds a row altered through Delta, a deleted row, reordered rows and a data
file rewritten on disk."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.lake.delta import read_delta_rows, rows_table
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import AUDIT_DDL
from pipelines.serving.audit import (
    GENESIS_DIGEST,
    AuditError,
    audit_dir,
    ensure_audit_table,
    load_audit,
    request_log_dir,
    row_digest,
    verify_audit,
)
from pipelines.settings import get_settings
from tests.unit.serving.test_audit_events import GOOD, _event
from tests.unit.serving.test_audit_requests import FAILED_LOGIN, NODE_FORBIDDEN, NOT_AUDITED, QUERY_LIST

IMPERSONATION = _event("20261129_080002_00003_aaaaa", user="govlake", principal="psb_analyst",
                       failureInfo={"errorCode": {"name": "PERMISSION_DENIED"},
                                    "failureMessage": "Access Denied: User psb_analyst cannot impersonate user govlake"},
                       createTime="2026-11-29T08:00:02.000Z", endTime="2026-11-29T08:00:02.100Z")


@pytest.fixture
def lake(tmp_path):
    """A lake and Trino home under tmp_path with three query events (one an
    impersonation attempt) and a request log (two refused calls, one REST
    call, some polling); the project's catalog maps users to departments."""
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    audit_dir(settings).mkdir(parents=True)
    (audit_dir(settings) / "events-20261129.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in [*GOOD, IMPERSONATION]), encoding="utf-8")
    request_log_dir(settings).mkdir(parents=True)
    (request_log_dir(settings) / "http-request.log").write_text(
        "\n".join([FAILED_LOGIN, *NOT_AUDITED, NODE_FORBIDDEN, QUERY_LIST]) + "\n", encoding="utf-8")
    return settings


def _rows(settings) -> list[dict]:
    return sorted(read_delta_rows(governance_path("query_audit", settings)), key=lambda row: row["seq"])


def test_the_table_exists_empty_before_anything_is_loaded(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    path = ensure_audit_table(settings)
    assert ensure_audit_table(settings) == path and DeltaTable(path).version() == 0
    assert read_delta_rows(path) == []
    assert verify_audit(settings) | {"table": None} == {
        "ok": True, "table": None, "rows": 0, "head_seq": 0, "head_digest": GENESIS_DIGEST, "changed_files": [],
        "first_broken": None}


def test_load_appends_queries_and_requests_in_one_chained_commit(lake):
    outcome = load_audit(lake)
    assert {k: outcome[k] for k in ("loaded", "queries", "http_requests", "already_loaded", "head_seq")} == {
        "loaded": 6, "queries": 3, "http_requests": 3, "already_loaded": 0, "head_seq": 6}
    path = governance_path("query_audit", lake)
    assert [c["operation"] for c in DeltaTable(path).history()] == ["WRITE", "CREATE TABLE"]

    rows = _rows(lake)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["event_kind"] for r in rows] == ["query", "query", "query", "http_request", "http_request",
                                               "http_request"]   # created_at order: the events are from 29 Nov
    assert rows[0]["prev_digest"] == GENESIS_DIGEST
    assert all(r["prev_digest"] == p["digest"] for p, r in itertools.pairwise(rows))
    assert all(r["digest"] == row_digest(r, r["prev_digest"]) for r in rows)
    assert len({r["loaded_at"] for r in rows}) == 1

    impersonation = next(r for r in rows if r["query_id"] == IMPERSONATION["metadata"]["queryId"])
    assert (impersonation["principal"], impersonation["user"], impersonation["department"]) == (
        "psb_analyst", "govlake", "psb")
    assert impersonation["access_denied"]
    login = next(r for r in rows if r["http_uri"] == "/v1/statement")
    assert login["http_status"] == 401 and login["access_denied"] and login["user"] is None
    assert {r["http_uri"] for r in rows if r["event_kind"] == "http_request"} == {
        "/v1/statement", "/v1/node", "/v1/query?state=RUNNING"}
    assert verify_audit(lake)["ok"]


def test_loading_twice_adds_nothing_and_a_loaded_row_never_changes(lake):
    load_audit(lake)
    before = _rows(lake)
    version = DeltaTable(governance_path("query_audit", lake)).version()
    again = load_audit(lake)
    assert again["loaded"] == 0 and again["already_loaded"] == 6 and again["head_seq"] == 6
    assert DeltaTable(governance_path("query_audit", lake)).version() == version   # no empty commit

    # a later event with a loaded query id, and a new one: only the new one is appended
    forged = _event(GOOD[0]["metadata"]["queryId"], user="psb_analyst", statistics={"outputRows": 0})
    fresh = _event("20261130_090000_00009_aaaaa", createTime="2026-11-30T09:00:00Z")
    (audit_dir(lake) / "events-20261130.jsonl").write_text(json.dumps(forged) + "\n" + json.dumps(fresh) + "\n",
                                                           encoding="utf-8")
    third = load_audit(lake)
    assert third["loaded"] == 1 and third["duplicate_events"] == 1 and third["head_seq"] == 7
    after = _rows(lake)
    assert after[:6] == before
    assert after[6]["query_id"] == "20261130_090000_00009_aaaaa" and after[6]["prev_digest"] == before[5]["digest"]
    assert verify_audit(lake)["ok"]


def test_two_loaders_at_once_never_interleave(lake):
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(load_audit(lake))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o["loaded"] for o in outcomes) == [0, 0, 6]
    assert [r["seq"] for r in _rows(lake)] == [1, 2, 3, 4, 5, 6] and verify_audit(lake)["ok"]


def test_verify_names_the_row_altered_through_delta(lake):
    load_audit(lake)
    target = _rows(lake)[2]
    DeltaTable(governance_path("query_audit", lake)).update(
        predicate=f"seq = {target['seq']}", new_values={"department": "hrss"})

    result = verify_audit(lake)
    assert result["ok"] is False
    assert result["first_broken"] == {"seq": 3, "query_id": target["query_id"],
                                      "reason": "the digest does not match the row's fields: the row was altered"}


def test_verify_finds_a_deleted_row(lake):
    load_audit(lake)
    rows = _rows(lake)
    DeltaTable(governance_path("query_audit", lake)).delete("seq = 4")
    broken = verify_audit(lake)["first_broken"]
    assert broken == {"seq": 5, "query_id": rows[4]["query_id"], "reason": "seq 4 missing: deleted before seq 5"}


def test_verify_finds_rows_deleted_from_the_end(lake):
    load_audit(lake)
    DeltaTable(governance_path("query_audit", lake)).delete("seq >= 5")
    result = verify_audit(lake)
    assert result["ok"] is False and result["rows"] == 4
    assert result["first_broken"]["seq"] == 5 and result["first_broken"]["reason"] == (
        "seq 5..6 missing: the last load (version 1) ended at seq 6; deleted from the end")


def test_verify_finds_reordered_rows(lake):
    load_audit(lake)
    table = DeltaTable(governance_path("query_audit", lake))
    table.update(predicate="seq = 2", new_values={"seq": 0})
    table.update(predicate="seq = 3", new_values={"seq": 2})
    table.update(predicate="seq = 0", new_values={"seq": 3})
    result = verify_audit(lake)
    assert result["ok"] is False and result["first_broken"]["seq"] == 2
    assert result["first_broken"]["query_id"] == _rows(lake)[1]["query_id"]


def test_verify_finds_a_data_file_rewritten_on_disk(lake):
    load_audit(lake)
    path = governance_path("query_audit", lake)
    (data_file,) = DeltaTable(path).file_uris()
    table = pq.read_table(data_file)
    users = table.column("user").to_pylist()
    users[1] = "someone_else"
    pq.write_table(table.set_column(table.schema.get_field_index("user"), "user",
                                    pa.array(users, table.schema.field("user").type)), data_file)

    result = verify_audit(lake)
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == 2 and "the row was altered" in result["first_broken"]["reason"]
    assert len(result["changed_files"]) == 1 and "bytes in the Delta log" in result["changed_files"][0]
    with pytest.raises(AuditError, match="cannot be read"):   # the loader refuses to append to it
        load_audit(lake)


def test_a_table_from_before_the_chain_is_chained_once(lake):
    legacy_ddl = ("query_id string, user string, department string, created_at timestamp, ended_at timestamp, "
                  "query string, state string, access_denied boolean, error_code string, error_message string, "
                  "tables_read array<string>, columns_read array<string>, rows_returned long, source string, "
                  "loaded_at timestamp")
    path = governance_path("query_audit", lake)
    old = {"query_id": GOOD[0]["metadata"]["queryId"], "user": "hrss_officer", "department": "hrss",
           "state": "FINISHED", "access_denied": False, "tables_read": [], "columns_read": [],
           "created_at": datetime(2026, 11, 29, 8), "loaded_at": datetime(2026, 11, 29, 9)}
    older = {"query_id": "20261128_000000_00001_aaaaa", "user": "amr_inspector", "state": "FAILED"}
    write_deltalake(path, rows_table([old, older], legacy_ddl), mode="append")

    outcome = load_audit(lake)
    assert outcome["already_loaded"] == 1 and outcome["loaded"] == 5 and outcome["head_seq"] == 7
    rows = _rows(lake)
    assert [r["query_id"] for r in rows[:2]] == [older["query_id"], old["query_id"]]   # no time first
    assert rows[1]["loaded_at"] == old["loaded_at"] and rows[1]["principal"] is None
    assert rows[1]["event_kind"] == "query" and rows[1]["department"] == "hrss"
    assert verify_audit(lake)["ok"]


def test_verify_finds_a_chain_recomputed_after_an_edit(lake):
    """Rewriting the whole table with fresh digests keeps the chain consistent,
    but not the head the last load committed."""
    load_audit(lake)
    rows = _rows(lake)
    rows[0]["user"] = "nobody"
    head = GENESIS_DIGEST
    for row in rows:
        row["prev_digest"] = head
        row["digest"] = head = row_digest(row, head)
    path = governance_path("query_audit", lake)
    write_deltalake(path, rows_table(rows, AUDIT_DDL), mode="overwrite")

    result = verify_audit(lake)
    assert result["ok"] is False and result["first_broken"] == {
        "seq": 6, "query_id": rows[5]["query_id"],
        "reason": "the last row's digest is not the one the last load committed: the chain was recomputed"}
