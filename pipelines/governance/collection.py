"""The collection list (归集清单): is every feed delivered on time?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from pipelines.contracts import Contract
from pipelines.lake.manifest import read_manifest
from pipelines.settings import Settings, utc_now

# How long after the previous delivery the next one is due, and the grace
# after which a due delivery counts as late rather than just due.
CADENCE_PERIOD = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
}
GRACE = 0.5  # of a period


@dataclass
class CollectionStatus:
    feed: str
    bureau: str
    title: str
    cadence: str
    last_delivery_at: datetime | None
    last_file: str | None
    last_rows: int | None
    loads: int
    status: str  # on_time | late | missing

    def as_dict(self) -> dict:
        data = asdict(self)
        data["last_delivery_at"] = self.last_delivery_at.isoformat() if self.last_delivery_at else None
        return data


def judge_timeliness(cadence: str, last: datetime | None, now: datetime) -> str:
    """on_time if the last delivery is within one period plus grace, late
    after that, missing if the feed never delivered."""
    if last is None:
        return "missing"
    period = CADENCE_PERIOD[cadence]
    return "on_time" if now - last <= period * (1 + GRACE) else "late"


def collection_status(spark, contracts: dict[str, Contract], settings: Settings | None = None,
                      now: datetime | None = None) -> list[CollectionStatus]:
    from pyspark.sql import functions as F

    now = now or utc_now()
    loaded = read_manifest(spark, settings).where(F.col("status").isin("loaded", "replaced", "blocked"))
    rows = loaded.groupBy("feed").agg(
        F.count("*").alias("loads"),
        F.max_by(F.struct("event_at", "source_file", "rows_read"), "event_at").alias("last"),
    ).collect()
    by_feed = {row["feed"]: row for row in rows}
    statuses = []
    for feed, contract in sorted(contracts.items()):
        row = by_feed.get(feed)
        last = row["last"] if row else None
        statuses.append(CollectionStatus(
            feed=feed, bureau=contract.owner_bureau_name, title=contract.title, cadence=contract.cadence,
            last_delivery_at=last["event_at"] if last else None,
            last_file=last["source_file"] if last else None,
            last_rows=last["rows_read"] if last else None,
            loads=row["loads"] if row else 0,
            status=judge_timeliness(contract.cadence, last["event_at"] if last else None, now),
        ))
    return statuses
