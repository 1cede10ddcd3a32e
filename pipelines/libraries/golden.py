"""Golden records from declared sources, kept with history (valid_from / valid_to).

A library spec (``schemas/libraries/<library>.yaml``) names the key, the silver
feed and key column of every source, and per attribute its sources in order of
authority. ``golden_records`` picks, per key and attribute, the first source
that has a value (the authoritative bureau first) and records which feed and
load it came from. ``merge_with_history`` applies the result to the gold table
with one Delta MERGE: unchanged records are left alone, changed ones get their
current version closed (``valid_to``) and a new one opened, new keys are
inserted. "What did we know on date D" is
``valid_from <= D and (valid_to is null or valid_to > D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipelines.settings import Settings, get_settings

HISTORY_COLUMNS = ("record_hash", "valid_from", "valid_to", "is_current")


class LibrarySpecError(ValueError):
    """A library spec is malformed; the message names the file and field."""


@dataclass(frozen=True)
class Attribute:
    name: str
    sources: tuple[tuple[str, str], ...]      # (feed, column), most authoritative first


@dataclass(frozen=True)
class LibrarySpec:
    library: str
    key: str
    grain: str
    sources: dict[str, str]                   # feed -> its key column
    authoritative_sources: tuple[str, ...]
    attributes: tuple[Attribute, ...]


def load_library_spec(library: str, settings: Settings | None = None) -> LibrarySpec:
    settings = settings or get_settings()
    path = Path(settings.schemas_dir) / "libraries" / f"{library}.yaml"
    shown = f"schemas/libraries/{path.name}"
    if not path.is_file():
        raise LibrarySpecError(f"{shown}: no such library spec")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    sources = dict(document.get("sources") or {})
    attributes = []
    for index, item in enumerate(document.get("attributes", [])):
        pairs = []
        for source in item.get("sources", []):
            feed, _, column = source.rpartition(".")
            if feed not in sources:
                raise LibrarySpecError(f"{shown}: attributes[{index}].sources: {feed!r} is not under sources:")
            pairs.append((feed, column))
        attributes.append(Attribute(item["name"], tuple(pairs)))
    return LibrarySpec(library=document["library"], key=document["key"], grain=document.get("grain", ""),
                       sources=sources, authoritative_sources=tuple(document.get("authoritative_sources", [])),
                       attributes=tuple(attributes))


def _latest_per_key(frame, key_column: str, columns: list[str]):
    """One row per key: the most recently ingested record (last row number on ties)."""
    from pyspark.sql import functions as F

    latest = F.max_by(F.struct(*[F.col(c) for c in columns], F.col("_load_id")),
                      F.struct(F.col("_ingested_at"), F.col("_row_number")))
    return (frame.where(F.col(key_column).isNotNull())
            .groupBy(F.col(key_column).alias("_key")).agg(latest.alias("latest"))
            .select("_key", "latest.*"))


def golden_records(spec: LibrarySpec, silver: dict):
    """Golden records (current state) from silver frames by feed. Pure.

    Columns: key, every attribute with ``<attribute>_source`` (feed) and
    ``<attribute>_load_id``, ``known_to`` (feeds that know the key) and
    ``is_known_to_authority``.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    per_feed = {}
    for feed, key_column in spec.sources.items():
        if feed not in silver:
            continue
        columns = sorted({column for attribute in spec.attributes for f, column in attribute.sources if f == feed})
        prefix = feed.replace(".", "__")
        frame = _latest_per_key(silver[feed], key_column, columns)
        per_feed[feed] = frame.select(
            "_key", *[F.col(c).alias(f"{prefix}__{c}") for c in columns],
            F.col("_load_id").alias(f"{prefix}___load_id"), F.lit(True).alias(f"{prefix}___present"))
    if not per_feed:
        raise LibrarySpecError(f"{spec.library}: none of its source tables exist yet")
    joined = reduce(lambda left, right: left.join(right, "_key", "full_outer"), per_feed.values())
    outputs = [F.col("_key").alias(spec.key)]
    for attribute in spec.attributes:
        present = [(feed, column) for feed, column in attribute.sources if feed in per_feed]
        value_columns = [F.col(f"{feed.replace('.', '__')}__{column}") for feed, column in present]
        if not value_columns:
            outputs += [F.lit(None).cast("string").alias(attribute.name),
                        F.lit(None).cast("string").alias(f"{attribute.name}_source"),
                        F.lit(None).cast("string").alias(f"{attribute.name}_load_id")]
            continue
        source = reduce(lambda chain, pair: chain.when(pair[0].isNotNull(), F.lit(pair[1])),
                        [(v, feed) for v, (feed, _) in zip(value_columns[1:], present[1:])],
                        F.when(value_columns[0].isNotNull(), F.lit(present[0][0])))
        load = reduce(lambda chain, pair: chain.when(pair[0].isNotNull(), F.col(pair[1])),
                      [(v, f"{feed.replace('.', '__')}___load_id") for v, (feed, _) in zip(value_columns[1:],
                                                                                            present[1:])],
                      F.when(value_columns[0].isNotNull(), F.col(f"{present[0][0].replace('.', '__')}___load_id")))
        outputs += [F.coalesce(*value_columns).alias(attribute.name), source.alias(f"{attribute.name}_source"),
                    load.alias(f"{attribute.name}_load_id")]
    known = F.array_compact(F.array(*[F.when(F.col(f"{feed.replace('.', '__')}___present"), F.lit(feed))
                                      for feed in per_feed]))
    authority = [f for f in spec.authoritative_sources if f in per_feed]
    is_known = (F.lit(False) if not authority else
                reduce(lambda a, b: a | b, [F.col(f"{f.replace('.', '__')}___present").isNotNull() for f in authority]))
    return joined.select(*outputs, known.alias("known_to"), is_known.alias("is_known_to_authority"))


def read_silver_sources(spark, spec: LibrarySpec, settings: Settings) -> dict:
    from pipelines.contracts import get_contract
    from pipelines.lake import delta_exists, table_path

    frames = {}
    for feed in spec.sources:
        path = table_path("silver", get_contract(feed, settings.schemas_dir), settings)
        if delta_exists(spark, path):
            frames[feed] = spark.read.format("delta").load(path)
    return frames


def merge_with_history(spark, records, path: str, key: str, now: datetime | None = None) -> dict:
    """Apply current-state ``records`` to the gold table at ``path`` with history.
    Returns how many keys were inserted, changed and left unchanged."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from pipelines.lake import delta_exists

    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    # provenance loads are not part of a record's content: a new delivery with
    # the same values does not make a new version
    attributes = [c for c in records.columns if c != key and not c.endswith("_load_id")]
    hashed = records.withColumn("record_hash", F.sha2(F.to_json(F.struct(*[F.col(c) for c in attributes])), 256))
    if not delta_exists(spark, path):
        first = hashed.select("*", F.lit(now).cast("timestamp").alias("valid_from"),
                              F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"))
        first.write.format("delta").save(path)
        inserted = spark.read.format("delta").load(path).count()
        return {"inserted": inserted, "changed": 0, "unchanged": 0}
    current = spark.read.format("delta").load(path).where("is_current").select(key, "record_hash")
    changed = (hashed.alias("n").join(current.alias("c"), key)
               .where(F.col("n.record_hash") != F.col("c.record_hash")).select("n.*"))
    # rows with a merge key close the current version; rows without one insert the new version
    staged = (hashed.select(F.col(key).alias("_merge_key"), "*")
              .unionByName(changed.select(F.lit(None).cast("string").alias("_merge_key"), "*")))
    table = DeltaTable.forPath(spark, path)
    values = {c: f"s.{c}" for c in hashed.columns}
    (table.alias("t").merge(staged.alias("s"), f"t.{key} = s._merge_key AND t.is_current")
     .whenMatchedUpdate(condition="t.record_hash <> s.record_hash",
                        set={"valid_to": F.lit(now).cast("timestamp"), "is_current": F.lit(False)})
     .whenNotMatchedInsert(values=values | {"valid_from": F.lit(now).cast("timestamp"),
                                            "valid_to": F.lit(None).cast("timestamp"),
                                            "is_current": F.lit(True)})
     .execute())
    metrics = table.history(1).select("operationMetrics").first()[0]
    updated = int(metrics.get("numTargetRowsUpdated", 0))
    inserted = int(metrics.get("numTargetRowsInserted", 0))
    return {"inserted": inserted - updated, "changed": updated,
            "unchanged": hashed.count() - inserted}


def build_library(spark, library: str, settings: Settings | None = None, gate: bool = True) -> dict:
    """Build or refresh one base library from silver; its suite gates the result
    before it is merged (a blocked build leaves the gold table as it was)."""
    from pipelines.lake import delta_version
    from pipelines.quality import validate_library

    settings = settings or get_settings()
    spec = load_library_spec(library, settings)
    records = golden_records(spec, read_silver_sources(spark, spec, settings)).cache()
    path = settings.lake_path("base", library)
    try:
        result = {"library": library, "rows": records.count()}
        if gate:
            check = validate_library(records, library, f"base.{library}@{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
                                     settings, rows=result["rows"])
            result["gate"] = {"blocked": check.blocked,
                              "failures": [o.describe() for o in check.blocking_failures + check.warnings]}
            if check.blocked:
                result["status"] = "blocked"
                return result
        result |= merge_with_history(spark, records, path, spec.key)
        result["status"] = "built"
        result["version"] = delta_version(spark, path)
        return result
    finally:
        records.unpersist()
