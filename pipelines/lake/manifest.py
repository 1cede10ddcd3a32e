"""The load manifest: one row per load status change."""

from __future__ import annotations

from datetime import datetime, timezone

from pipelines.lake.delta import append_rows, delta_exists, read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import MANIFEST_DDL
from pipelines.settings import Settings


def read_manifest(spark, settings: Settings | None = None):
    """The latest event of every load (one row per load_id), as a DataFrame."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    path = governance_path("load_manifest", settings)
    if not delta_exists(spark, path):
        return spark.createDataFrame([], MANIFEST_DDL)
    latest = Window.partitionBy("load_id").orderBy(F.col("event_at").desc())
    return (
        spark.read.format("delta").load(path)
        .withColumn("_rank", F.row_number().over(latest))
        .where("_rank = 1").drop("_rank")
    )


def append_manifest(spark, rows: list[dict], settings: Settings) -> None:
    """Blind appends only (delta-rs, one commit): concurrent loads of other
    feeds never conflict."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    append_rows(governance_path("load_manifest", settings),
                [row | {"event_at": row.get("event_at") or now} for row in rows], MANIFEST_DDL)


def latest_status(spark, load_id: str, settings: Settings) -> dict | None:
    """The latest manifest event of one load, or None."""
    events = read_delta_rows(governance_path("load_manifest", settings), [("load_id", "=", load_id)])
    return max(events, key=lambda row: row["event_at"]) if events else None
