"""resource_health rows from tiny inline manifest events and quality results."""

from __future__ import annotations

from datetime import datetime

from pipelines.governance.health import health_rows, last_commit_at, last_data_commit_at

NOW = datetime(2026, 12, 7, 8, 0)


def event(load_id, feed, status, day, hour=1):
    return {"load_id": load_id, "feed": feed, "status": status, "event_at": datetime(2026, 12, day, hour)}


def check(feed, success, day, load_id="x"):
    return {"load_id": load_id, "feed": feed, "success": success, "validated_at": datetime(2026, 12, day, 2)}


EVENTS = [
    event("a1", "psb.hukou", "loaded", 5),
    event("a2", "psb.hukou", "blocked", 6), event("a2", "psb.hukou", "loaded", 6, hour=9),   # approved later
    event("a3", "psb.hukou", "blocked", 7),                                                  # still blocked
    event("b1", "mca.death", "loaded", 2),
    event("old", "mca.death", "loaded", 1, hour=0) | {"event_at": datetime(2026, 10, 1)},  # outside 30 days
]
CHECKS = [check("psb.hukou", True, 5), check("psb.hukou", False, 6), check("psb.hukou", True, 6),
          check("psb.hukou", True, 7), check("mca.death", True, 2),
          check("mca.death", False, 1) | {"validated_at": datetime(2026, 10, 1)}]


def rows_by_id(resources, changed=None):
    return {r["resource_id"]: r for r in health_rows(resources, EVENTS, CHECKS, changed or {}, NOW)}


def test_a_feeds_freshness_deliveries_and_pass_rate():
    row = rows_by_id({"silver.psb_hukou": ["psb.hukou"]},
                     {"silver.psb_hukou": datetime(2026, 12, 7, 1, 5)})["silver.psb_hukou"]
    assert row["last_changed_at"] == datetime(2026, 12, 7, 1, 5)
    assert row["last_delivery_at"] == datetime(2026, 12, 6, 9)      # the approval loaded a2; a3 never loaded
    assert (row["deliveries"], row["blocked"]) == (3, 1)             # a2 counts as loaded: its latest event
    assert (row["checks"], row["checks_passed"], row["pass_rate"]) == (4, 3, 0.75)
    assert row["window_days"] == 30 and row["computed_at"] == NOW


def test_the_window_leaves_out_old_deliveries_and_checks():
    row = rows_by_id({"silver.mca_death": ["mca.death"]})["silver.mca_death"]
    assert (row["deliveries"], row["checks"], row["pass_rate"]) == (1, 1, 1.0)
    assert row["last_delivery_at"] == datetime(2026, 12, 2, 1)      # freshness is not windowed
    assert row["last_changed_at"] is None                           # no table yet


def test_a_library_adds_up_its_feeds_and_a_resource_without_deliveries_says_nothing():
    rows = rows_by_id({"base.population": ["mca.death", "psb.hukou"], "silver.hrss_x": ["hrss.x"]})
    library = rows["base.population"]
    assert library["feeds"] == ["mca.death", "psb.hukou"]
    assert (library["deliveries"], library["checks"], library["checks_passed"]) == (4, 5, 4)
    assert library["last_delivery_at"] == datetime(2026, 12, 6, 9)
    empty = rows["silver.hrss_x"]
    assert (empty["deliveries"], empty["checks"], empty["pass_rate"], empty["last_delivery_at"]) == (0, 0, None, None)


def test_freshness_is_the_last_commit_that_changed_rows():
    def commit(operation, minute):          # Delta's history: milliseconds since the epoch, newest first
        return {"operation": operation, "timestamp": 1_796_612_400_000 + minute * 60_000}

    history = [commit("VACUUM END", 50), commit("VACUUM START", 49), commit("OPTIMIZE", 40),
               commit("SET TBLPROPERTIES", 30), commit("MERGE", 20), commit("WRITE", 10)]
    assert last_data_commit_at(history) == _utc(history[4]["timestamp"])
    assert last_data_commit_at([commit("OPTIMIZE", 1)]) is None


def test_a_compacted_table_keeps_the_time_its_rows_changed(tmp_path):
    """A real table: written, then compacted and vacuumed by delta-rs."""
    import time

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    path = str(tmp_path / "table")
    for value in range(3):
        write_deltalake(path, pa.table({"x": [value]}), mode="append")
    written = last_commit_at(path)
    time.sleep(1.1)
    table = DeltaTable(path)
    table.optimize.compact()
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert [c["operation"] for c in DeltaTable(path).history(2)][0] in ("VACUUM END", "OPTIMIZE")
    assert last_commit_at(path) == written
    assert last_commit_at(str(tmp_path / "none")) is None


def _utc(stamp_ms):
    from datetime import UTC

    return datetime.fromtimestamp(stamp_ms / 1000, UTC).replace(tzinfo=None)
