"""Each published resource's freshness and quality pass rate (``governance.resource_health``).

A department deciding whether to rely on a resource asks two things before its
columns: how fresh is it, and how often do its deliveries pass their checks.
One row per resource (``silver.<feed>`` and ``base.<library>``):

- ``last_changed_at``: the latest commit of the resource's Delta table that
  changed rows (whatever wrote them; upkeep's compaction, VACUUM and table
  properties do not make stale rows look fresh);
- ``last_delivery_at``: the latest delivery of its feeds that was loaded
  (for a library, of the feeds it is built from);
- ``deliveries`` / ``blocked``: its feeds' deliveries in the window and how
  many the quality gate blocked (their latest status still ``blocked``);
- ``checks`` / ``checks_passed`` / ``pass_rate``: the GX expectations
  evaluated on those deliveries in the window and how many passed.

The table holds counts and times only, no value of any delivery, so every
department reads all of it (``governance_access``); the portal's resource
page shows it. It is recomputed whole (delta-rs, no Spark) by the
governance_daily DAG and after every publish, and says when
(``computed_at``): a delivery between two runs shows at the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pipelines.contracts import Contract
from pipelines.settings import Settings, get_settings, utc_now

WINDOW_DAYS = 30


def health_rows(resources: dict[str, list[str]], load_events: Iterable[dict], checks: Iterable[dict],
                changed_at: dict[str, datetime | None], now: datetime,
                window_days: int = WINDOW_DAYS) -> list[dict]:
    """The ``resource_health`` rows. Pure.

    ``resources``: resource id -> the feeds its rows come from; ``load_events``:
    manifest events (load_id, feed, status, event_at); ``checks``: quality
    results (load_id, feed, success, validated_at); ``changed_at``: resource id
    -> its table's latest commit (None: no table yet)."""
    since = now - timedelta(days=window_days)
    latest: dict[str, dict] = {}        # load id -> its latest event
    first_at: dict[str, datetime] = {}  # load id -> when it arrived
    loaded_at: dict[str, datetime] = {} # feed -> its latest loaded delivery
    for event in load_events:
        load_id, at = event["load_id"], event["event_at"]
        if load_id not in latest or at > latest[load_id]["event_at"]:
            latest[load_id] = event
        first_at[load_id] = min(first_at.get(load_id, at), at)
        if event["status"] == "loaded":
            loaded_at[event["feed"]] = max(loaded_at.get(event["feed"], at), at)
    deliveries: dict[str, int] = {}
    blocked: dict[str, int] = {}
    for load_id, event in latest.items():
        if first_at[load_id] < since:
            continue
        deliveries[event["feed"]] = deliveries.get(event["feed"], 0) + 1
        if event["status"] == "blocked":
            blocked[event["feed"]] = blocked.get(event["feed"], 0) + 1
    evaluated: dict[str, list[int]] = {}
    for check in checks:
        if check["validated_at"] is None or check["validated_at"] < since:
            continue
        counts = evaluated.setdefault(check["feed"], [0, 0])
        counts[0] += 1
        counts[1] += bool(check["success"])
    rows = []
    for resource_id, feeds in sorted(resources.items()):
        total = sum(evaluated.get(f, [0, 0])[0] for f in feeds)
        passed = sum(evaluated.get(f, [0, 0])[1] for f in feeds)
        last = [loaded_at[f] for f in feeds if f in loaded_at]
        rows.append({
            "resource_id": resource_id, "feeds": sorted(feeds), "last_changed_at": changed_at.get(resource_id),
            "last_delivery_at": max(last) if last else None,
            "deliveries": sum(deliveries.get(f, 0) for f in feeds), "blocked": sum(blocked.get(f, 0) for f in feeds),
            "checks": total, "checks_passed": passed, "pass_rate": round(passed / total, 4) if total else None,
            "window_days": window_days, "computed_at": now})
    return rows


def resource_feeds(contracts: dict[str, Contract], settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """Resource id -> (its Delta table's path, the feeds its rows come from):
    every feed's silver table and every base library (its sources' feeds)."""
    from pipelines.lake.paths import table_path
    from pipelines.library_specs import library_spec_paths, load_library_spec

    found = {f"silver.{c.slug}": (table_path("silver", c, settings), [c.feed]) for c in contracts.values()}
    for path in library_spec_paths(settings):
        spec = load_library_spec(path.stem, settings)
        found[f"base.{path.stem}"] = (settings.lake_path("base", path.stem),
                                      sorted({s.feed for s in spec.sources.values()}))
    return found


# Commits that rewrite or tidy files without changing a row: upkeep's
# compaction and clustering, VACUUM, table properties and protocol changes.
MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES",
                          "REORG", "UPGRADE PROTOCOL", "ADD CONSTRAINT", "DROP CONSTRAINT", "CLUSTER BY")


def last_data_commit_at(history: list[dict]) -> datetime | None:
    """When rows last changed, from a Delta history (newest first): the newest
    commit that is not maintenance (naive UTC). Pure."""
    for commit in history:
        operation = str(commit.get("operation") or "").upper()
        if operation in MAINTENANCE_OPERATIONS or operation.startswith("VACUUM"):
            continue
        stamp = commit.get("timestamp")
        return datetime.fromtimestamp(stamp / 1000, UTC).replace(tzinfo=None) if stamp is not None else None
    return None


def last_commit_at(path: str, look_back: int = 100) -> datetime | None:
    """When the rows of the Delta table at ``path`` last changed (naive UTC):
    its newest data commit among the last ``look_back``; None when there is
    no table (or only maintenance that far back)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        history = DeltaTable(path).history(look_back)
    except TableNotFoundError:
        return None
    return last_data_commit_at(history)


def snapshot_resource_health(contracts: dict[str, Contract], settings: Settings | None = None,
                             now: datetime | None = None) -> list[dict]:
    """Recompute ``governance.resource_health`` whole (one delta-rs overwrite)
    and return its rows."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from pipelines.lake.delta import arrow_dataset, replace_table, rows_table
    from pipelines.lake.paths import governance_path
    from pipelines.lake.tables import RESOURCE_HEALTH_DDL

    settings = settings or get_settings()
    now = now or utc_now()

    def columns_of(table: str, names: list[str]) -> list[dict]:
        try:
            dataset = arrow_dataset(DeltaTable(governance_path(table, settings)))
        except TableNotFoundError:
            return []
        rows = dataset.to_table(columns=names)
        return [{k: (v.replace(tzinfo=None) if isinstance(v, datetime) else v) for k, v in row.items()}
                for row in rows.to_pylist()]

    resources = resource_feeds(contracts, settings)
    rows = health_rows({rid: feeds for rid, (_, feeds) in resources.items()},
                       columns_of("load_manifest", ["load_id", "feed", "status", "event_at"]),
                       columns_of("quality_results", ["load_id", "feed", "success", "validated_at"]),
                       {rid: last_commit_at(path) for rid, (path, _) in resources.items()}, now)
    replace_table(governance_path("resource_health", settings), rows_table(rows, RESOURCE_HEALTH_DDL))
    return rows
