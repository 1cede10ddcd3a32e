"""Snapshot feeds and change tables (issue 15 item 1): a snapshot supersedes
the feed's earlier deliveries, and what differs goes to the change table.
delta-rs and DuckDB only, like the ingest path."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.contracts import get_contract
from pipelines.dev.synth.city import make_uscc
from pipelines.ingest.load import ingest_file
from pipelines.lake.changes import (
    ADDED, REMOVED, REPLACED_LOAD, read_replacements, record_changes, snapshot_diff,
)
from pipelines.lake.manifest import latest_events
from pipelines.lake.paths import governance_path, table_path
from pipelines.settings import get_settings

TAX = get_contract("tax.taxpayer")
USCC = [make_uscc("91", f"MA{n:06d}") for n in range(5)]


def test_snapshot_diff_keeps_only_rows_that_differ_and_marks_what_was_replaced():
    new = pa.table({"uscc": ["A", "B", "C", None], "grade": ["A", "B", None, "M"], "_load_id": ["new"] * 4})
    old = pa.table({"uscc": ["A", "B", "C", None, "Z"], "grade": ["A", "C", None, "M", "D"], "_load_id": ["old"] * 5})
    changed = snapshot_diff(new, old, ["uscc", "grade"], "new", ["old"]).to_pylist()
    rows = sorted((r["_change"], r["uscc"], r["grade"], r["_load_id"])
                  for r in changed if r["_change"] != REPLACED_LOAD)
    # nulls compare equal: C with no grade and the row with no USCC are unchanged
    assert rows == [(ADDED, "B", "B", "new"), (REMOVED, "B", "C", "old"), (REMOVED, "Z", "D", "old")]
    markers = [(r["_change_load_id"], r["_replaced_load_id"]) for r in changed if r["_change"] == REPLACED_LOAD]
    assert markers == [("new", "old")]
    assert {r["_change_load_id"] for r in changed} == {"new"}


def _snapshot(path, rows) -> None:
    path.write_text("".join(json.dumps({"纳税人识别号": uscc, "纳税人名称": f"企业{n}", "法定代表人": "张三",
                                        "登记状态": status, "纳税信用等级": grade, "评价年度": 2025,
                                        "主管税务机关": "国家税务总局东莞市税务局"}, ensure_ascii=False) + "\n"
                                for n, (uscc, status, grade) in enumerate(rows)), encoding="utf-8")


@pytest.fixture
def lake(tmp_path):
    return dataclasses.replace(get_settings(), home=str(tmp_path / "home"))


def test_a_snapshot_supersedes_the_earlier_one_and_records_its_changes(lake, tmp_path):
    first, second = tmp_path / "taxpayer_20261101.jsonl", tmp_path / "taxpayer_20261201.jsonl"
    _snapshot(first, [(USCC[0], "正常", "A"), (USCC[1], "正常", "B"), (USCC[2], "正常", "C"),
                      ("91441900BADCODE000", "正常", "A")])                     # quarantined: bad USCC
    # USCC 0 unchanged, 1 re-graded, 2 moved out, 3 new
    _snapshot(second, [(USCC[0], "正常", "A"), (USCC[1], "正常", "D"), (USCC[3], "正常", "M")])
    one = ingest_file(TAX, first, settings=lake, run_gate=False)
    assert (one.status, one.superseded_load_ids, one.rows_quarantined) == ("loaded", [], 1)
    two = ingest_file(TAX, second, settings=lake, run_gate=False)
    assert (two.status, two.superseded_load_ids) == ("loaded", [one.load_id])
    assert two.changes == {"added": 2, "removed": 2}

    silver = DeltaTable(table_path("silver", TAX, lake)).to_pyarrow_table()
    assert set(silver["_load_id"].to_pylist()) == {two.load_id}
    assert sorted(silver["uscc"].to_pylist()) == sorted([USCC[0], USCC[1], USCC[3]])
    quarantine = DeltaTable(governance_path("quarantine", lake)).to_pyarrow_table()
    assert one.load_id not in quarantine["_load_id"].to_pylist()       # its rows went with it
    events = latest_events(lake, "tax.taxpayer")
    assert events[one.load_id]["status"] == "replaced"
    assert events[one.load_id]["message"] == f"superseded by the snapshot {two.load_id} ({second.name})"

    changes = DeltaTable(table_path("changes", TAX, lake)).to_pyarrow_table().to_pylist()
    found = sorted((r["_change"], r["uscc"], r["tax_credit_grade"]) for r in changes if r["_change"] != REPLACED_LOAD)
    assert found == [(ADDED, USCC[1], "D"), (ADDED, USCC[3], "M"), (REMOVED, USCC[1], "B"), (REMOVED, USCC[2], "C")]
    assert read_replacements(TAX, lake) == {one.load_id: two.load_id}
    # a rerun of the load after a crash past the silver swap keeps the changes it recorded
    assert record_changes(TAX, two.load_id, pa.table({"uscc": []}), [one.load_id], lake) == {
        "added": None, "removed": None}
    assert ingest_file(TAX, second, settings=lake, run_gate=False).status == "already_loaded"


def test_a_changes_feed_supersedes_nothing(lake, tmp_path):
    penalty = get_contract("amr.penalty")
    header = "处罚决定书文号,统一社会信用代码,当事人名称,违法行为类型,处罚内容,罚款金额(元),处罚决定日期,处罚机关\n"
    loads = []
    for n in range(2):
        path = tmp_path / f"penalty_2026112{n}.csv"
        path.write_text(header + f"罚{n},{USCC[n]},企业{n},虚假宣传,罚款,500.00,2026-11-2{n},东莞市市场监督管理局\n",
                        encoding="utf-8")
        loads.append(ingest_file(penalty, path, settings=lake, run_gate=False))
    assert [(r.status, r.superseded_load_ids) for r in loads] == [("loaded", []), ("loaded", [])]
    silver = DeltaTable(table_path("silver", penalty, lake)).to_pyarrow_table()
    assert set(silver["_load_id"].to_pylist()) == {r.load_id for r in loads}


def test_a_blocked_snapshot_supersedes_only_once_a_governor_approves_it(lake, tmp_path):
    from pipelines.ingest.load import approve_blocked_load

    first, second = tmp_path / "taxpayer_20261101.jsonl", tmp_path / "taxpayer_20261201.jsonl"
    _snapshot(first, [(USCC[0], "正常", "A"), (USCC[1], "正常", "B")])
    _snapshot(second, [(USCC[0], "正常", "C"), ("91441900BADCODE000", "正常", "A")])   # half quarantined
    one = ingest_file(TAX, first, settings=lake, run_gate=False)
    two = ingest_file(TAX, second, settings=lake)
    assert (two.status, two.superseded_load_ids) == ("blocked", [])
    silver = DeltaTable(table_path("silver", TAX, lake)).to_pyarrow_table()
    assert set(silver["_load_id"].to_pylist()) == {one.load_id}         # the register in force is untouched
    assert read_replacements(TAX, lake) == {}

    approve_blocked_load(two.load_id, "checked with the tax bureau", "governor", lake)
    silver = DeltaTable(table_path("silver", TAX, lake)).to_pyarrow_table()
    assert silver.select(["uscc", "tax_credit_grade", "_load_id"]).to_pylist() == [
        {"uscc": USCC[0], "tax_credit_grade": "C", "_load_id": two.load_id}]
    assert read_replacements(TAX, lake) == {one.load_id: two.load_id}
    assert latest_events(lake, "tax.taxpayer")[one.load_id]["status"] == "replaced"
    changes = DeltaTable(table_path("changes", TAX, lake)).to_pyarrow_table().to_pylist()
    assert sorted((r["_change"], r["uscc"]) for r in changes if r["_change"] != REPLACED_LOAD) == [
        (ADDED, USCC[0]), (REMOVED, USCC[0]), (REMOVED, USCC[1])]


def test_an_older_snapshot_is_refused_and_a_repeated_register_still_supersedes(lake, tmp_path):
    """Out of order: November's register arriving after December's would roll
    the register back, so it is rejected, and so is its approval. January's
    file may repeat November's byte for byte: it is a new delivery (the file
    name is part of a snapshot's load id) and supersedes December's."""
    from pipelines.ingest.load import OutdatedSnapshotError

    november, december = tmp_path / "taxpayer_20261101.jsonl", tmp_path / "taxpayer_20261201.jsonl"
    _snapshot(november, [(USCC[0], "正常", "A"), (USCC[1], "正常", "B")])
    _snapshot(december, [(USCC[0], "正常", "B"), (USCC[1], "正常", "B")])
    assert ingest_file(TAX, december, settings=lake, run_gate=False).status == "loaded"
    with pytest.raises(OutdatedSnapshotError, match="older than taxpayer_20261201.jsonl"):
        ingest_file(TAX, november, settings=lake, run_gate=False)
    assert {e["status"] for e in latest_events(lake, "tax.taxpayer").values()} == {"loaded", "rejected"}

    january = tmp_path / "taxpayer_20270101.jsonl"
    january.write_bytes(november.read_bytes())
    third = ingest_file(TAX, january, settings=lake, run_gate=False)
    assert (third.status, third.changes) == ("loaded", {"added": 1, "removed": 1})
    silver = DeltaTable(table_path("silver", TAX, lake)).to_pyarrow_table()
    assert sorted(zip(silver["uscc"].to_pylist(), silver["tax_credit_grade"].to_pylist())) == [
        (USCC[0], "A"), (USCC[1], "B")]
    assert set(silver["_load_id"].to_pylist()) == {third.load_id}


def test_rows_a_dead_load_left_in_silver_go_with_the_next_snapshot(lake, tmp_path):
    """A snapshot's rows go in beside the ones it supersedes and those are
    deleted after the manifest says so; whatever a load that died left in
    silver (rows of a load the manifest never called loaded) goes then too."""
    from pipelines.lake.delta import write_arrow_replacing

    first, second = tmp_path / "taxpayer_20261101.jsonl", tmp_path / "taxpayer_20261201.jsonl"
    _snapshot(first, [(USCC[0], "正常", "A")])
    _snapshot(second, [(USCC[0], "正常", "A"), (USCC[1], "正常", "B")])
    one = ingest_file(TAX, first, settings=lake, run_gate=False)
    path = table_path("silver", TAX, lake)
    ghost = DeltaTable(path).to_pyarrow_table()
    ghost = ghost.set_column(ghost.schema.get_field_index("_load_id"), "_load_id", pa.array(["died"], pa.string()))
    write_arrow_replacing(ghost, path, "_load_id = 'died'", "died")
    two = ingest_file(TAX, second, settings=lake, run_gate=False)
    assert two.changes == {"added": 1, "removed": 0}            # compared with the live snapshot only
    assert set(DeltaTable(path).to_pyarrow_table()["_load_id"].to_pylist()) == {two.load_id}
    assert one.load_id in read_replacements(TAX, lake)


def test_two_snapshots_loaded_at_once_leave_one_register(lake, tmp_path):
    """Two loads of one snapshot feed at the same moment (two Airflow
    workers) take turns: exactly one delivery is live and silver holds its rows."""
    import threading

    files = [tmp_path / f"taxpayer_2026120{n}.jsonl" for n in (1, 2)]
    for n, path in enumerate(files):
        _snapshot(path, [(USCC[n], "正常", "A"), (USCC[4], "正常", "B")])
    start, results = threading.Barrier(2), {}

    def load(path) -> None:
        start.wait()
        try:
            results[path.name] = ingest_file(TAX, path, settings=lake, run_gate=False).status
        except Exception as exc:           # the older one, when it comes second
            results[path.name] = type(exc).__name__

    threads = [threading.Thread(target=load, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    live = [load for load, e in latest_events(lake, "tax.taxpayer").items() if e["status"] == "loaded"]
    assert len(live) == 1, results
    assert set(DeltaTable(table_path("silver", TAX, lake)).to_pyarrow_table()["_load_id"].to_pylist()) == set(live)
    assert results[files[1].name] == "loaded"                  # the newer register is the one in force


def test_a_blocked_snapshot_older_than_the_register_in_force_cannot_be_approved(lake, tmp_path):
    from pipelines.ingest.load import approve_blocked_load

    blocked, newer = tmp_path / "taxpayer_20261201.jsonl", tmp_path / "taxpayer_20261202.jsonl"
    _snapshot(blocked, [(USCC[0], "正常", "C"), ("91441900BADCODE000", "正常", "A")])
    _snapshot(newer, [(USCC[0], "正常", "A")])
    first = ingest_file(TAX, blocked, settings=lake)
    assert first.status == "blocked"
    assert ingest_file(TAX, newer, settings=lake, run_gate=False).status == "loaded"
    with pytest.raises(ValueError, match="older than taxpayer_20261202.jsonl"):
        approve_blocked_load(first.load_id, "looked fine", "governor", lake)
    assert latest_events(lake, "tax.taxpayer")[first.load_id]["status"] == "blocked"
