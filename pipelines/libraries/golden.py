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
class Source:
    """One way a feed names the library's key: ``alias`` is ``feed`` or ``feed@role``
    (e.g. ``mca.marriage@wife``) when one feed carries several keys."""

    alias: str
    feed: str
    key: str
    latest_by: str | None = None      # the column that orders a key's records (else ingest time)
    adds_records: bool = True         # False: only enriches keys other sources know

    @property
    def prefix(self) -> str:
        return self.alias.replace(".", "__").replace("@", "__")


@dataclass(frozen=True)
class Attribute:
    name: str
    sources: tuple[tuple[str, str], ...]      # (source alias, column), most authoritative first
    values: dict | None = None                # source value -> library value (a shared vocabulary)
    conflicts: str | None = None              # exact | normalised: report other sources that disagree


@dataclass(frozen=True)
class Resolution:
    """How records without a valid key are matched (pipelines/libraries/resolution.py)."""

    profile: str                              # person | entity
    rescue: tuple[str, ...]                   # source aliases whose quarantined rows are resolved
    candidates: dict                          # feed -> {key, name, town, representative, birth}


@dataclass(frozen=True)
class LibrarySpec:
    library: str
    key: str
    grain: str
    sources: dict[str, Source]                # alias -> source
    authoritative_sources: tuple[str, ...]
    attributes: tuple[Attribute, ...]
    kind: str = "golden"                      # golden | derived
    build: str | None = None                  # derived: "module:function" returning current records
    enrich: str | None = None                 # golden: "module:function" adding computed columns
    depends_on: tuple[str, ...] = ()
    resolution: Resolution | None = None
    report: str | None = None                 # "module:function(spark, settings)" run after a build
    unversioned_columns: tuple[str, ...] = () # change with every build, not a new version (e.g. rated_on)

    @property
    def feeds(self) -> list[str]:
        """Every feed the library reads, for scheduling."""
        feeds = {s.feed for s in self.sources.values()}
        if self.resolution:
            feeds |= set(self.resolution.candidates)
        return sorted(feeds)


def library_names(settings: Settings | None = None) -> list[str]:
    """Every library spec, in build order (a library after those it depends on)."""
    settings = settings or get_settings()
    specs = {path.stem: load_library_spec(path.stem, settings)
             for path in sorted((Path(settings.schemas_dir) / "libraries").glob("*.yaml"))}
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in trail:
            raise LibrarySpecError(f"schemas/libraries: depends_on cycle {' -> '.join(trail + (name,))}")
        if name not in specs:
            raise LibrarySpecError(f"schemas/libraries/{trail[-1]}.yaml: depends_on: no library {name!r}")
        for dependency in specs[name].depends_on:
            visit(dependency, trail + (name,))
        ordered.append(name)

    for name in specs:
        visit(name, ())
    return ordered


def load_library_spec(library: str, settings: Settings | None = None) -> LibrarySpec:
    settings = settings or get_settings()
    path = Path(settings.schemas_dir) / "libraries" / f"{library}.yaml"
    shown = f"schemas/libraries/{path.name}"
    if not path.is_file():
        raise LibrarySpecError(f"{shown}: no such library spec")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for field in ("library", "key"):
        if not document.get(field):
            raise LibrarySpecError(f"{shown}: {field}: required")
    sources = {}
    for alias, item in (document.get("sources") or {}).items():
        item = {"key": item} if isinstance(item, str) else dict(item or {})
        if "key" not in item:
            raise LibrarySpecError(f"{shown}: sources.{alias}: key: required")
        sources[alias] = Source(alias=alias, feed=item.get("feed", alias.split("@")[0]), key=item["key"],
                                latest_by=item.get("latest_by"), adds_records=item.get("adds_records", True))
    attributes = []
    for index, item in enumerate(document.get("attributes") or []):
        pairs = []
        for source in item.get("sources", []):
            alias, _, column = source.rpartition(".")
            if alias not in sources:
                raise LibrarySpecError(f"{shown}: attributes[{index}].sources: {alias!r} is not under sources:")
            pairs.append((alias, column))
        if item.get("conflicts") not in (None, "exact", "normalised"):
            raise LibrarySpecError(f"{shown}: attributes[{index}].conflicts: exact or normalised")
        attributes.append(Attribute(item["name"], tuple(pairs), item.get("values"), item.get("conflicts")))
    for alias in document.get("authoritative_sources", []):
        if alias not in sources:
            raise LibrarySpecError(f"{shown}: authoritative_sources: {alias!r} is not under sources:")
    resolution = None
    if document.get("resolution"):
        item = document["resolution"]
        if item.get("profile") not in ("person", "entity"):
            raise LibrarySpecError(f"{shown}: resolution.profile: person or entity")
        for alias in item.get("rescue", []):
            if alias not in sources:
                raise LibrarySpecError(f"{shown}: resolution.rescue: {alias!r} is not under sources:")
        resolution = Resolution(item["profile"], tuple(item.get("rescue", [])), dict(item.get("candidates") or {}))
    kind = document.get("kind", "golden")
    if kind == "derived" and not document.get("build"):
        raise LibrarySpecError(f"{shown}: build: required for a derived library (module:function)")
    return LibrarySpec(library=document["library"], key=document["key"], grain=document.get("grain", ""),
                       sources=sources, authoritative_sources=tuple(document.get("authoritative_sources", [])),
                       attributes=tuple(attributes), kind=kind, build=document.get("build"),
                       enrich=document.get("enrich"), depends_on=tuple(document.get("depends_on", [])),
                       resolution=resolution, report=document.get("report"),
                       unversioned_columns=tuple(document.get("unversioned_columns", [])))


def latest_per_key(frame, key_column: str, columns: list[str], latest_by: str | None = None):
    """One row per key: its latest record (by ``latest_by`` if given, then
    ingest time, then row number)."""
    from pyspark.sql import functions as F

    order = ([F.col(latest_by)] if latest_by else []) + [F.col("_ingested_at"), F.col("_row_number")]
    latest = F.max_by(F.struct(*[F.col(c) for c in columns], F.col("_load_id")), F.struct(*order))
    return (frame.where(F.col(key_column).isNotNull())
            .groupBy(F.col(key_column).alias("_key")).agg(latest.alias("latest"))
            .select("_key", "latest.*"))


def normalise_for_matching(value):
    """A text's matching form: full-width brackets and digits folded, spaces
    removed. For keys only: names themselves are never rewritten."""
    from pyspark.sql import functions as F

    folded = F.translate(value, "（）【】０１２３４５６７８９", "()[]0123456789")
    return F.regexp_replace(folded, "[\\s\u3000\u00a0]", "")


def joined_sources(spec: LibrarySpec, frames: dict):
    """Every source's latest record per key, side by side (one row per key that
    a record-adding source knows). Columns ``<prefix>__<column>``,
    ``<prefix>___load_id`` and ``<prefix>___present``."""
    from functools import reduce

    from pyspark.sql import functions as F

    per_source = {}
    for alias, source in spec.sources.items():
        if alias not in frames:
            continue
        columns = sorted({column for attribute in spec.attributes for a, column in attribute.sources if a == alias})
        frame = latest_per_key(frames[alias], source.key, columns, source.latest_by)
        per_source[alias] = frame.select(
            "_key", *[F.col(c).alias(f"{source.prefix}__{c}") for c in columns],
            F.col("_load_id").alias(f"{source.prefix}___load_id"), F.lit(True).alias(f"{source.prefix}___present"))
    adding = [a for a in per_source if spec.sources[a].adds_records]
    if not adding:
        raise LibrarySpecError(f"{spec.library}: none of its source tables exist yet")
    joined = reduce(lambda left, right: left.join(right, "_key", "full_outer"), [per_source[a] for a in adding])
    for alias in per_source:
        if alias not in adding:
            joined = joined.join(per_source[alias], "_key", "left")
    return joined, list(per_source)


def _attribute_value(spec: LibrarySpec, attribute: Attribute, alias: str, column: str):
    from pyspark.sql import functions as F

    value = F.col(f"{spec.sources[alias].prefix}__{column}")
    if attribute.values:
        mapping = F.create_map(*[F.lit(x) for pair in attribute.values.items() for x in pair])
        value = F.coalesce(mapping[value.cast("string")], value.cast("string"))
    return value


def golden_records(spec: LibrarySpec, frames: dict, joined=None):
    """Golden records (current state) from source frames by alias. Pure.

    Columns: key, every attribute with ``<attribute>_source`` (feed) and
    ``<attribute>_load_id``, ``known_to`` (feeds that know the key) and
    ``is_known_to_authority``.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    if joined is None:
        joined, present_aliases = joined_sources(spec, frames)
    else:
        joined, present_aliases = joined
    outputs = [F.col("_key").alias(spec.key)]
    for attribute in spec.attributes:
        present = [(alias, column) for alias, column in attribute.sources if alias in present_aliases]
        if not present:
            outputs += [F.lit(None).cast("string").alias(attribute.name),
                        F.lit(None).cast("string").alias(f"{attribute.name}_source"),
                        F.lit(None).cast("string").alias(f"{attribute.name}_load_id")]
            continue
        values = [_attribute_value(spec, attribute, alias, column) for alias, column in present]
        source = F.lit(None).cast("string")
        load = F.lit(None).cast("string")
        for value, (alias, _) in reversed(list(zip(values, present))):
            source = F.when(value.isNotNull(), F.lit(spec.sources[alias].feed)).otherwise(source)
            load = F.when(value.isNotNull(), F.col(f"{spec.sources[alias].prefix}___load_id")).otherwise(load)
        outputs += [F.coalesce(*values).alias(attribute.name), source.alias(f"{attribute.name}_source"),
                    load.alias(f"{attribute.name}_load_id")]
    known = F.array_distinct(F.array_compact(F.array(*[
        F.when(F.col(f"{spec.sources[a].prefix}___present"), F.lit(spec.sources[a].feed)) for a in present_aliases])))
    authority = [a for a in spec.authoritative_sources if a in present_aliases]
    is_known = (F.lit(False) if not authority else
                reduce(lambda a, b: a | b, [F.col(f"{spec.sources[a].prefix}___present").isNotNull()
                                            for a in authority]))
    return joined.select(*outputs, known.alias("known_to"), is_known.alias("is_known_to_authority"))


def attribute_conflicts(spec: LibrarySpec, joined):
    """Where a later source of an attribute declared ``conflicts:`` disagrees
    with the first (authoritative) one. Pure. One row per (subject, attribute,
    other feed): authoritative value and source, other value and source."""
    from functools import reduce

    from pyspark.sql import functions as F

    joined, present_aliases = joined
    parts = []
    for attribute in spec.attributes:
        if not attribute.conflicts or not attribute.sources or attribute.sources[0][0] not in present_aliases:
            continue
        authority_alias, authority_column = attribute.sources[0]
        authority = _attribute_value(spec, attribute, authority_alias, authority_column)
        for alias, column in attribute.sources[1:]:
            if alias not in present_aliases or spec.sources[alias].feed == spec.sources[authority_alias].feed:
                continue
            other = _attribute_value(spec, attribute, alias, column)
            left, right = ((normalise_for_matching(authority), normalise_for_matching(other))
                           if attribute.conflicts == "normalised" else (authority, other))
            parts.append(joined.where(authority.isNotNull() & other.isNotNull() & (left != right)).select(
                F.col("_key").alias("subject"), F.lit(attribute.name).alias("attribute"),
                F.lit(spec.sources[authority_alias].feed).alias("authoritative_feed"),
                authority.cast("string").alias("authoritative_value"),
                F.col(f"{spec.sources[authority_alias].prefix}___load_id").alias("authoritative_load_id"),
                F.lit(spec.sources[alias].feed).alias("other_feed"), F.lit(column).alias("other_column"),
                other.cast("string").alias("other_value"),
                F.col(f"{spec.sources[alias].prefix}___load_id").alias("other_load_id")))
    if not parts:
        return None
    return reduce(lambda a, b: a.unionByName(b), parts)


def read_silver_sources(spark, spec: LibrarySpec, settings: Settings) -> dict:
    """Silver frames by source alias (the feeds that exist yet)."""
    from pipelines.contracts import get_contract
    from pipelines.lake import delta_exists, table_path

    frames = {}
    for alias, source in spec.sources.items():
        path = table_path("silver", get_contract(source.feed, settings.schemas_dir), settings)
        if delta_exists(spark, path):
            frames[alias] = spark.read.format("delta").load(path)
    return frames


def merge_with_history(spark, records, path: str, key: str, now: datetime | None = None,
                       unversioned: tuple[str, ...] = ()) -> dict:
    """Apply current-state ``records`` to the gold table at ``path`` with history.
    Returns how many keys were inserted, changed and left unchanged.

    Only what changed is written: one MERGE closes the current version of a
    changed key (``valid_to``) and inserts its new version, inserts new keys,
    and leaves every unchanged row alone. Provenance (``*_load_id``) and
    ``unversioned`` columns are not part of a record's content: a new delivery
    with the same values does not make a new version."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from pipelines.lake import delta_exists

    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    attributes = [c for c in records.columns if c != key and not c.endswith("_load_id") and c not in unversioned]
    hashed = records.withColumn("record_hash", F.sha2(F.to_json(F.struct(*[F.col(c) for c in attributes])), 256))
    if not delta_exists(spark, path):
        first = hashed.select("*", F.lit(now).cast("timestamp").alias("valid_from"),
                              F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"))
        first.write.format("delta").save(path)
        inserted = spark.read.format("delta").load(path).count()
        return {"inserted": inserted, "changed": 0, "unchanged": 0, "removed": 0}
    current = spark.read.format("delta").load(path).where("is_current").select(key, "record_hash")
    changed = (hashed.alias("n").join(current.alias("c"), key)
               .where(F.col("n.record_hash") != F.col("c.record_hash")).select("n.*"))
    # rows with a merge key close the current version; rows without one insert the new version
    staged = (hashed.select(F.col(key).alias("_merge_key"), "*")
              .unionByName(changed.select(F.lit(None).cast("string").alias("_merge_key"), "*")))
    table = DeltaTable.forPath(spark, path)
    values = {c: f"s.{c}" for c in hashed.columns}
    closed = {"valid_to": F.lit(now).cast("timestamp"), "is_current": F.lit(False)}
    (table.alias("t").merge(staged.alias("s"), f"t.{key} = s._merge_key AND t.is_current")
     .whenMatchedUpdate(condition="t.record_hash <> s.record_hash", set=closed)
     .whenNotMatchedInsert(values=values | {"valid_from": F.lit(now).cast("timestamp"),
                                            "valid_to": F.lit(None).cast("timestamp"),
                                            "is_current": F.lit(True)})
     # a key no source knows any more (e.g. its delivery was replaced) is closed, not deleted
     .whenNotMatchedBySourceUpdate(condition="t.is_current", set=closed)
     .execute())
    metrics = table.history(1).select("operationMetrics").first()[0]
    updated = int(metrics.get("numTargetRowsMatchedUpdated", metrics.get("numTargetRowsUpdated", 0)))
    removed = int(metrics.get("numTargetRowsNotMatchedBySourceUpdated", 0))
    inserted = int(metrics.get("numTargetRowsInserted", 0))
    return {"inserted": inserted - updated, "changed": updated, "removed": removed,
            "unchanged": hashed.count() - inserted}


def _function(reference: str):
    import importlib

    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def current_records(spark, spec: LibrarySpec, settings: Settings) -> tuple:
    """The library's current records, and what the build found on the way:
    (records, conflicts or None, resolution (links, reviews) or None)."""
    if spec.kind == "derived":
        return _function(spec.build)(spark, settings, spec), None, None
    frames = read_silver_sources(spark, spec, settings)
    resolution = None
    if spec.resolution:
        from pipelines.libraries.resolution import resolve_records

        frames, links, reviews = resolve_records(spark, spec, frames, settings)
        # checkpoints cut the plans short: Spark's cache lookup canonicalises a
        # whole plan, which costs minutes on these many-join plans
        resolution = (links.localCheckpoint(), reviews.localCheckpoint())
    joined_frame, present = joined_sources(spec, frames)
    joined = (joined_frame.localCheckpoint(), present)
    records = golden_records(spec, frames, joined)
    conflicts = attribute_conflicts(spec, joined)
    conflicts = conflicts.localCheckpoint() if conflicts is not None else None
    if spec.enrich:
        records = _function(spec.enrich)(spark, records, frames, settings)
    return records, conflicts, resolution


def build_library(spark, library: str, settings: Settings | None = None, gate: bool = True,
                  now: datetime | None = None) -> dict:
    """Build or refresh one base library; its suite gates the result before it
    is merged (a blocked build leaves the gold table and the governance tables
    as they were). Conflicts, entity links and match reviews are recorded with it."""
    import time

    from pipelines.lake import delta_version
    from pipelines.quality import validate_library

    settings = settings or get_settings()
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    started = time.monotonic()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = round(time.monotonic() - started - sum(stages.values()), 2)

    spec = load_library_spec(library, settings)
    records, conflicts, resolution = current_records(spark, spec, settings)
    records = records.localCheckpoint()
    path = settings.lake_path("base", library)
    result = {"library": library, "rows": records.count(), "stages": stages}
    lap("records")
    if gate:
        check = validate_library(records, library, f"base.{library}@{now:%Y%m%dT%H%M%S}",
                                 settings, rows=result["rows"])
        result["gate"] = {"blocked": check.blocked,
                          "failures": [o.describe() for o in check.blocking_failures + check.warnings]}
        lap("gate")
        if check.blocked:
            result["status"] = "blocked"
            return result
    result |= merge_with_history(spark, records, path, spec.key, now, spec.unversioned_columns)
    result["status"] = "built"
    result["version"] = delta_version(spark, path)
    lap("merge")
    if spec.kind == "golden":
        from pipelines.libraries.conflicts import record_conflicts

        result["conflicts"] = record_conflicts(spark, library, conflicts, now, settings)
        lap("conflicts")
    if resolution is not None:
        from pipelines.libraries.resolution import write_resolution

        result |= write_resolution(spark, library, *resolution, settings)
        lap("resolution")
    if spec.report:
        result["report"] = _function(spec.report)(spark, settings)
        lap("report")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def build_libraries(spark, libraries: list[str] | None = None, settings: Settings | None = None,
                    gate: bool = True) -> list[dict]:
    """Build ``libraries`` (default: all) in dependency order."""
    settings = settings or get_settings()
    order = library_names(settings)
    wanted = order if not libraries else [name for name in order if name in libraries]
    return [build_library(spark, name, settings, gate) for name in wanted]
