"""The load manifest (``governance.load_manifest``): one row per load status change.

Written only by delta-rs, as blind appends (``append_manifest``): concurrent
loads of other feeds never conflict. Read with Spark (``read_manifest``) or,
on the JVM-free ingest path, with delta-rs (``latest_status``, ``latest_events``).
"""

from __future__ import annotations

from pipelines.lake.delta import append_rows, read_delta_rows, read_table
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import MANIFEST_DDL
from pipelines.settings import Settings, utc_now


def read_manifest(spark, settings: Settings | None = None):
    """The latest event of every load (one row per load_id), as a DataFrame."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("load_id").orderBy(F.col("event_at").desc())
    return (
        read_table(spark, "load_manifest", settings)
        .withColumn("_rank", F.row_number().over(latest))
        .where("_rank = 1").drop("_rank")
    )


def append_manifest(rows: list[dict], settings: Settings) -> None:
    """Append manifest events (delta-rs, one commit); ``event_at`` defaults to now."""
    now = utc_now()
    append_rows(governance_path("load_manifest", settings),
                [row | {"event_at": row.get("event_at") or now} for row in rows], MANIFEST_DDL)


def latest_events(settings: Settings, feed: str | None = None) -> dict[str, dict]:
    """The latest event of every load (of ``feed``), by load id, read by delta-rs."""
    latest: dict[str, dict] = {}
    for row in read_delta_rows(governance_path("load_manifest", settings), [("feed", "=", feed)] if feed else None):
        if row["load_id"] not in latest or row["event_at"] > latest[row["load_id"]]["event_at"]:
            latest[row["load_id"]] = row
    return latest


def latest_status(load_id: str, settings: Settings) -> dict | None:
    """The latest manifest event of one load, or None."""
    events = read_delta_rows(governance_path("load_manifest", settings), [("load_id", "=", load_id)])
    return max(events, key=lambda row: row["event_at"]) if events else None
