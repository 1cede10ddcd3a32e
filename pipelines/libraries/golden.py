"""Golden records from declared sources, kept with history (valid_from / valid_to).

A library spec (``schemas/libraries/<library>.yaml``) names the key, the silver
feed and key column of every source, and per attribute its sources in order of
authority. ``golden_records`` picks, per key and attribute, the first source
that has a value (the authoritative bureau first) and records which feed and
load it came from. ``merge_with_history`` applies the result to the gold table
with at most three commits: unchanged records are left alone, changed ones get
their current version closed (``valid_to``) and a new one opened, new keys are
inserted. "What did we know on date D" is
``valid_from <= D and (valid_to is null or valid_to > D)``.

Some attributes are facts of the key itself (``key_authority``: a validated ID
number's birth date and gender): they are taken from the key, with
``<attribute>_source = 'id_number'``, and the sources are only checked against it.
"""

from __future__ import annotations

from datetime import datetime

from pipelines.lake.delta import delta_exists
from pipelines.libraries.columns import id_birth_date, id_gender
from pipelines.libraries.matching import normalise_for_matching
from pipelines.library_specs import HISTORY_COLUMNS, Attribute, LibrarySpec, LibrarySpecError
from pipelines.reference import ID_SHAPE
from pipelines.settings import utc_now


def latest_per_key(frame, key_column: str, columns: list[str], latest_by: str | None = None,
                   by_content: bool = False):
    """One row per key: its latest record (by ``latest_by`` if given, then
    ingest time, then row number). ``by_content`` (a snapshot feed: one
    register, delivered whole): rows of a key that ``latest_by`` does not
    order are told apart by their values, not their place in the file, so a
    register that only reorders its rows gives the same record (its change
    rows are empty, and an incremental build agrees with a full one)."""
    from pyspark.sql import functions as F

    tie_break = [F.struct(*[F.col(c) for c in columns])] if by_content else [F.col("_ingested_at"),
                                                                            F.col("_row_number")]
    order = ([F.col(latest_by)] if latest_by else []) + tie_break
    latest = F.max_by(F.struct(*[F.col(c) for c in columns], F.col("_load_id")), F.struct(*order))
    return (frame.where(F.col(key_column).isNotNull())
            .groupBy(F.col(key_column).alias("_key")).agg(latest.alias("latest"))
            .select("_key", "latest.*"))


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
        frame = latest_per_key(frames[alias], source.key, columns, source.latest_by, by_content=source.snapshot)
        per_source[alias] = frame.select(
            "_key", *[F.col(c).alias(f"{source.prefix}__{c}") for c in columns],
            F.col("_load_id").alias(f"{source.prefix}___load_id"), F.lit(True).alias(f"{source.prefix}___present"))
    adding = [a for a in per_source if spec.sources[a].adds_records]
    if not adding:
        raise LibrarySpecError(f"{spec.library}: none of its source tables exist yet")
    joined = reduce(lambda left, right: left.join(right, "_key", "full_outer"), [per_source[a] for a in adding])
    for alias, frame in per_source.items():
        if alias not in adding:
            joined = joined.join(frame, "_key", "left")
    return joined, list(per_source)


def _attribute_value(spec: LibrarySpec, attribute: Attribute, alias: str, column: str):
    from pyspark.sql import functions as F

    value = F.col(f"{spec.sources[alias].prefix}__{column}")
    if attribute.values:
        mapping = F.create_map(*[F.lit(x) for pair in attribute.values.items() for x in pair])
        value = F.coalesce(mapping[value.cast("string")], value.cast("string"))
    return value


KEY_SOURCE = "id_number"


def key_authority(spec: LibrarySpec) -> dict:
    """Attributes the spec takes from its validated key (``from_key``), not
    from a source: attribute -> function of the key column giving the value
    (null when the key does not carry it). Under GB 11643 a validated
    18-character ID number fixes birth date and gender (issue 20), so the
    bureaus' values are checked against it (``attribute_conflicts``), never
    preferred to it."""
    from pyspark.sql import functions as F

    facts = {"id_number.gender": id_gender,
             "id_number.birth_date": lambda key: F.when(key.rlike(ID_SHAPE), id_birth_date(key))}
    return {a.name: facts[a.from_key] for a in spec.attributes if a.from_key}


def _key_load_id(spec: LibrarySpec, present_aliases: list[str]):
    """The delivery the key came from: the first source (in spec order) that knows it."""
    from pyspark.sql import functions as F

    loads = [F.col(f"{spec.sources[a].prefix}___load_id") for a in spec.sources if a in present_aliases]
    return F.coalesce(*loads) if loads else F.lit(None).cast("string")


def _provenance(spec: LibrarySpec, values: list, present: list[tuple[str, str]]):
    """(feed, load id) of the first of ``values`` that is not null, in
    authority order: which source an attribute's golden value came from."""
    from pyspark.sql import functions as F

    source = F.lit(None).cast("string")
    load = F.lit(None).cast("string")
    for value, (alias, _) in reversed(list(zip(values, present))):
        source = F.when(value.isNotNull(), F.lit(spec.sources[alias].feed)).otherwise(source)
        load = F.when(value.isNotNull(), F.col(f"{spec.sources[alias].prefix}___load_id")).otherwise(load)
    return source, load


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
    derived = key_authority(spec)
    for attribute in spec.attributes:
        present = [(alias, column) for alias, column in attribute.sources if alias in present_aliases]
        if attribute.name in derived:
            from_key = derived[attribute.name](F.col("_key"))
            values = [_attribute_value(spec, attribute, alias, column) for alias, column in present]
            source, load = _provenance(spec, values, present)
            outputs += [F.coalesce(from_key, *values).alias(attribute.name),
                        F.when(from_key.isNotNull(), F.lit(KEY_SOURCE)).otherwise(source)
                        .alias(f"{attribute.name}_source"),
                        F.when(from_key.isNotNull(), _key_load_id(spec, present_aliases)).otherwise(load)
                        .alias(f"{attribute.name}_load_id")]
            continue
        if not present:
            outputs += [F.lit(None).cast("string").alias(attribute.name),
                        F.lit(None).cast("string").alias(f"{attribute.name}_source"),
                        F.lit(None).cast("string").alias(f"{attribute.name}_load_id")]
            continue
        values = [_attribute_value(spec, attribute, alias, column) for alias, column in present]
        source, load = _provenance(spec, values, present)
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
    derived = key_authority(spec)
    for attribute in spec.attributes:
        if attribute.conflicts and attribute.name in derived:
            # the key is the authority: every source that disagrees with it is a finding for that bureau
            authority = derived[attribute.name](F.col("_key"))
            for alias, column in attribute.sources:
                if alias not in present_aliases:
                    continue
                other = _attribute_value(spec, attribute, alias, column)
                parts.append(joined.where(authority.isNotNull() & other.isNotNull()
                                          & (authority.cast("string") != other.cast("string"))).select(
                    F.col("_key").alias("subject"), F.lit(attribute.name).alias("attribute"),
                    F.lit(KEY_SOURCE).alias("authoritative_feed"),
                    authority.cast("string").alias("authoritative_value"),
                    _key_load_id(spec, present_aliases).alias("authoritative_load_id"),
                    F.lit(spec.sources[alias].feed).alias("other_feed"), F.lit(column).alias("other_column"),
                    other.cast("string").alias("other_value"),
                    F.col(f"{spec.sources[alias].prefix}___load_id").alias("other_load_id")))
            continue
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


# Base libraries carry deletion vectors: the daily MERGE marks a changed key's
# old row closed by writing a small bitmap beside its file and one new file of
# rewritten rows, instead of rewriting every file that holds a touched key
# (touched keys are spread over all files, so without them each increment
# rewrote the whole table). Spark and Trino read them; delta-rs lists, vacuums
# and reports history of such tables but cannot scan them, and nothing of
# govlake scans a base library with delta-rs. Upkeep's clustering rewrites the
# files and so drops the vectors again.
DELETION_VECTORS = "delta.enableDeletionVectors"


def _enable_deletion_vectors(spark, path: str) -> None:
    """Turn deletion vectors on for a base table written before they were
    used (read from the Delta log with delta-rs: no Spark job per build)."""
    from deltalake import DeltaTable as LogTable

    if LogTable(path).metadata().configuration.get(DELETION_VECTORS) != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{DELETION_VECTORS}' = 'true')")


# The record hash is 64 bits (xxhash64) of the record's attributes as JSON,
# names sorted (``to_json`` keeps the names, so a value moved to another
# column is a change, and skips nulls). It is only ever compared with the
# same key's previous version, so a change goes unseen with odds of 2^-64
# per change. It was SHA-256 in hex: 64 random characters a row that no
# codec compresses, half of base.population's bytes, which every MERGE reads.
RECORD_HASH = "record_hash"
# the userMetadata of a rehash commit: no attribute changes, so readers of the
# table's changes skip it (``incremental.versions_changing_rows``)
REHASHED = "govlake: record_hash recomputed as xxhash64"


def record_hash(attributes: list[str]):
    """The record hash column (bigint) of ``attributes``."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.to_json(F.struct(*[F.col(c) for c in sorted(attributes)])))


def versioned_attributes(columns: list[str], key: str, unversioned: tuple[str, ...] = ()) -> list[str]:
    """The columns whose values make a record's version: all but the key,
    provenance (``*_load_id``), ``unversioned`` ones and the history columns."""
    return [c for c in columns if c != key and not c.endswith("_load_id") and c not in unversioned
            and c not in HISTORY_COLUMNS]


def rehash_older_table(spark, path: str, key: str, unversioned: tuple[str, ...] = ()) -> bool:
    """Give a table written with the SHA-256 hex record hash (a string
    column) the current hash, every row (history too) recomputed from its
    stored attributes in one overwrite, so the next comparison sees no
    change where there is none. True when it rewrote the table."""
    from deltalake import DeltaTable as LogTable

    field = next((f for f in LogTable(path).schema().fields if f.name == RECORD_HASH), None)
    if field is None or getattr(field.type, "type", None) != "string":
        return False
    table = spark.read.format("delta").load(path)
    (table.withColumn(RECORD_HASH, record_hash(versioned_attributes(table.columns, key, unversioned)))
     .write.format("delta").mode("overwrite").option("overwriteSchema", "true")
     .option("userMetadata", REHASHED).save(path))
    return True


# a day's changed keys (a few thousand at city scale) are broadcast to the
# table's scan; a full rebuild that changes millions is joined as Spark plans it
BROADCAST_ROWS = 1_000_000


class MergeMismatchError(RuntimeError):
    """A merge's commit wrote other counts than the comparison before it found."""


def merge_with_history(spark, records, path: str, key: str, now: datetime | None = None,
                       unversioned: tuple[str, ...] = (), touched=None, key_changes: str | None = None,
                       current_before: int | None = None) -> dict:
    """Apply current-state ``records`` to the gold table at ``path`` with history.
    Returns how many keys were inserted, changed, removed and left unchanged.

    Only what changed is written. The records' hashes are compared with the
    current versions' once, and only the difference (new, changed and gone
    keys, a small frame on a usual day) is written, in one commit for up to
    ``REPLACE_KEYS`` keys (``_replace_keys``), else in three
    (``_apply_diff``): the current version of a changed or gone key is
    closed (``valid_to``) and the new versions are opened; every unchanged
    row is left alone, and a build that changed nothing commits nothing. Provenance (``*_load_id``) and
    ``unversioned`` columns are not part of a record's content: a new
    delivery with the same values does not make a new version.

    ``touched`` (column ``_key``): an incremental build's keys; ``records``
    holds only theirs, and only they are compared: a touched key with a
    current version and no record is closed, every other key is left alone.
    Without it, ``records`` is every key and a current key without a record
    is closed (e.g. its delivery was replaced). Each commit's own counts are
    checked against the comparison's.

    ``key_changes``: a Delta table that gets, after the commits, each one's
    version and every key it opened (``appeared``), changed or closed
    (``left``) (one entry without a key for the closed copies), so
    a library that references this one reads a day's changed keys instead
    of comparing two versions of the table (``incremental.logged_key_changes``;
    a merge that dies before its entry leaves a gap, and the reader compares).

    ``current_before``: how many current rows the table has, when the caller
    knows (the last build counted them and no commit since changed rows);
    else they are counted (a scan of ``is_current``)."""
    from uuid import uuid4

    from deltalake import DeltaTable as LogTable
    from pyspark.sql import functions as F

    now = now or utc_now()
    hashed = records.withColumn(RECORD_HASH, record_hash(versioned_attributes(records.columns, key, unversioned)))
    if not delta_exists(spark, path):
        first = hashed.select("*", F.lit(now).cast("timestamp").alias("valid_from"),
                              F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"))
        first.write.format("delta").option(DELETION_VECTORS, "true").save(path)
        inserted = spark.read.format("delta").load(path).count()
        return {"inserted": inserted, "changed": 0, "unchanged": 0, "removed": 0}
    rehash_older_table(spark, path, key, unversioned)
    _enable_deletion_vectors(spark, path)
    _remove_unfinished_copies(spark, path)
    current_rows = spark.read.format("delta").load(path).where("is_current")
    # the current rows the closed copies come from: with ``touched``, only the compared keys', every
    # column, read once for both the comparison and the copies (at scale 1.0 a scan of base.population
    # costs 4 to 9 s, and it took two)
    copied_from = current_rows
    if touched is not None:
        # the records' own keys too: a record outside ``touched`` must still find its current version
        compared = touched.select(F.col("_key").alias(key)).unionByName(hashed.select(key))
        copied_from = current_rows.join(F.broadcast(compared), key, "left_semi").localCheckpoint()
    current = copied_from.select(key, F.col("record_hash").alias("_old_hash"))
    # the keys whose current version changes: new (no old hash), changed, gone (no new hash)
    diff = (hashed.select(key, F.col("record_hash").alias("_new_hash")).join(current, key, "full_outer")
            .where(~F.col("_new_hash").eqNullSafe(F.col("_old_hash"))).localCheckpoint())
    counts = diff.agg(
        F.count(F.when(F.col("_old_hash").isNull(), 1)).alias("inserted"),
        F.count(F.when(F.col("_old_hash").isNotNull() & F.col("_new_hash").isNotNull(), 1)).alias("changed"),
        F.count(F.when(F.col("_new_hash").isNull(), 1)).alias("removed"),
        F.count(F.when(F.col(key).isNull(), 1)).alias("_null_keys"), F.count("*").alias("_rows"),
        F.count_distinct(key).alias("_keys")).first().asDict()
    if counts.pop("_null_keys"):
        raise ValueError(f"{path}: records without a {key} cannot be merged (the library's gate should have "
                         "blocked them)")
    if counts.pop("_rows") != counts.pop("_keys"):
        raise MergeMismatchError(f"{path}: records with a {key} twice cannot be merged (the library's gate should "
                                 "have blocked them)")
    if current_before is None:
        current_before = current_rows.count()     # only is_current is read
    counts["unchanged"] = current_before - counts["changed"] - counts["removed"]
    if not counts["inserted"] + counts["changed"] + counts["removed"]:
        return counts
    # the build time as Spark stores it (µs since the epoch): a repair matches it, whatever its time zone
    micros = spark.range(1).select(F.unix_micros(F.lit(now).cast("timestamp"))).first()[0]
    tag = f"{MERGE_TAG}{uuid4()} at {micros}"
    if counts["inserted"] + counts["changed"] + counts["removed"] <= REPLACE_KEYS:
        written = _replace_keys(spark, path, key, diff, hashed, copied_from, counts, now, micros, tag)
    else:
        written = _apply_diff(spark, path, key, diff, hashed, copied_from, counts, now, tag)
    if key_changes is not None:
        # entries name the table (its Delta id) as well as the version: a table created anew restarts its
        # versions. Each commit's own keys (the closed copies change no current record: one entry, no key)
        change = (F.when(F.col("_old_hash").isNull(), F.lit("appeared"))
                  .when(F.col("_new_hash").isNull(), F.lit("left")).otherwise(F.lit("changed")))
        version = F.when(F.col("_old_hash").isNull(), F.lit(written.get("new keys"))).otherwise(
            F.lit(written.get("in place")))
        entries = diff.select(version.cast("long").alias("version"), F.col(key).cast("string").alias("key"),
                              change.alias("change"))
        if "closed copies" in written:
            entries = entries.unionByName(spark.createDataFrame(
                [(written["closed copies"], None, "copies")], "version long, key string, change string"))
        entries.select(F.lit(LogTable(path).metadata().id).alias("table_id"), "version", "key", "change").write.format(
            "delta").mode("append").save(key_changes)
    return counts


# the userMetadata of a merge's commits: MERGE_TAG, an id, "at" the build time (µs), ": " and the part
MERGE_TAG = "govlake merge "


def _remove_unfinished_copies(spark, path: str) -> bool:
    """Delete the closed copies a merge appended when its next commit (the
    changes in place, ``_apply_diff``) never came, e.g. the process died in
    between: each such key has its old version twice, closed and current,
    and the next build would copy it again. The copies are the closed rows
    with that merge's time as ``valid_to`` (its changes in place, which would
    close rows at that time too, were not committed): the merge's tag holds
    that time as microseconds since the epoch, as Spark stored it, so the
    match does not depend on the time zone of the process that repairs.
    True when it deleted."""
    from deltalake import DeltaTable as LogTable
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    # newest first; a library that rarely changes gathers upkeep commits between its merges
    for commit in LogTable(path).history(1000):
        written = str(commit.get("userMetadata") or "")
        if not written.startswith(MERGE_TAG):
            continue
        if not written.endswith(": closed copies"):
            return False
        micros = int(written[len(MERGE_TAG):].split(" at ", 1)[1].rsplit(": ", 1)[0])
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata",
                       f"{MERGE_TAG}repair: closed copies of an unfinished merge ({micros} µs) deleted")
        try:
            DeltaTable.forPath(spark, path).delete(~F.col("is_current") & (F.unix_micros("valid_to") == micros))
        finally:
            spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        deleted = int((LogTable(path).history(1)[0].get("operationMetrics") or {}).get("numDeletedRows", -1))
        copied = int((commit.get("operationMetrics") or {}).get("numOutputRows", -2))
        if deleted != copied:
            raise MergeMismatchError(f"{path}: removing the closed copies of an unfinished merge deleted {deleted} "
                                     f"rows, the merge had appended {copied}")
        return True
    return False


# up to this many new, changed and gone keys (a day's, at city scale a few thousand) a merge is one
# commit that replaces those keys' rows (``_replace_keys``); more (a full rebuild's millions) go
# through ``_apply_diff``, whose MERGE joins them instead of listing them in a predicate (Delta
# checks every row written against the predicate, a list compared value by value)
REPLACE_KEYS = 10_000


def _replace_keys(spark, path: str, key: str, diff, hashed, current_rows, counts: dict, now: datetime,
                  micros: int, tag: str) -> dict[str, int]:
    """Write ``diff`` (``merge_with_history``'s changed keys) to the table
    at ``path`` in one commit tagged ``tag: replaced keys``, and return its
    version for each part ``_apply_diff`` would have written.

    The commit is an overwrite with ``replaceWhere``: it deletes the rows
    the predicate matches (with deletion vectors: no data file is rewritten)
    and adds the given rows, atomically. The predicate lists the hashes of
    (key, record hash) of the diff's old and new versions, and takes rows
    that are current or closed at this build's time: it matches the current
    rows of the changed and gone keys (a build time after the last merge's,
    checked, leaves no row closed at it yet); the rows added, the changed
    and gone keys' current versions closed (``valid_to``, not current) and
    the changed and new keys' new versions, match it too, as
    ``replaceWhere`` checks. Against the three commits of ``_apply_diff``:
    one scan of the table (key, record hash, ``is_current``, ``valid_to``)
    instead of a MERGE's three, and no moment at which a reader sees a
    key's old version twice (base.population's merge of a day at scale 1.0:
    14-16 s against 18-21, docs/benchmarks.md). The commit's own counts are
    checked against the comparison's."""
    from deltalake import DeltaTable as LogTable
    from pyspark.sql import functions as F

    columns = _table_columns(path, hashed, current_rows)
    at = F.lit(now).cast("timestamp")
    closing = diff.where(F.col("_old_hash").isNotNull()).select(key)
    opening = diff.where(F.col("_new_hash").isNotNull()).select(key)
    closed = (current_rows.join(F.broadcast(closing), key, "left_semi")
              .withColumn("valid_to", at).withColumn("is_current", F.lit(False)).select(*columns))
    opened = hashed.join(F.broadcast(opening), key, "left_semi").select(
        "*", at.alias("valid_from"), F.lit(None).cast("timestamp").alias("valid_to"), F.lit(True).alias("is_current"))
    # a column the records no longer have is null in the new version, as a MERGE's insert leaves it
    types = dict(current_rows.dtypes)
    opened = opened.select(*[F.col(c) if c in opened.columns else F.lit(None).cast(types[c]).alias(c) for c in columns])
    _refuse_an_earlier_time(path, micros)
    # the rows are named by a hash of key and record hash, not by key: the predicate is kept in the
    # commit's log entry, and an ID number there would outlive the row (VACUUM, erasure)
    pairs = sorted({row[0] for side in ("_old_hash", "_new_hash") for row in diff.where(F.col(side).isNotNull())
                    .select(F.xxhash64(F.col(key), F.col(side))).collect()})
    predicate = (f"(is_current OR valid_to = timestamp_micros({micros})) AND "
                 f"xxhash64({key}, {RECORD_HASH}) IN ({', '.join(map(str, pairs))})")
    (closed.unionByName(opened).write.format("delta").mode("overwrite").option("replaceWhere", predicate)
     .option("userMetadata", f"{tag}: replaced keys").save(path))
    [commit] = [c for c in LogTable(path).history(20) if c.get("userMetadata") == f"{tag}: replaced keys"][:1] or [{}]
    metrics = commit.get("operationMetrics") or {}
    deleted, added = int(metrics.get("numDeletedRows", -1)), (int(metrics.get("numOutputRows", -1))
                                                             - int(metrics.get("numCopiedRows", 0)))
    expected = (counts["changed"] + counts["removed"], 2 * counts["changed"] + counts["removed"] + counts["inserted"])
    if (deleted, added) != expected:
        keys = counts["inserted"] + counts["changed"] + counts["removed"]
        raise MergeMismatchError(f"{path}: replacing the rows of {keys} keys deleted {deleted} and "
                                 f"added {added} rows, the comparison before it expected {expected[0]} and "
                                 f"{expected[1]} (was the table written by another process meanwhile?)")
    return {part: commit["version"] for part, rows in (("in place", counts["changed"] + counts["removed"]),
                                                     ("new keys", counts["inserted"])) if rows}


def _refuse_an_earlier_time(path: str, micros: int) -> None:
    """Refuse a merge whose build time is not after the last merge's (its
    tag holds that time): ``_replace_keys`` also replaces the rows closed at
    its own time, and two merges at one time could take each other's."""
    import re

    from deltalake import DeltaTable as LogTable

    for commit in LogTable(path).history(1000):         # newest first
        tagged = re.match(re.escape(MERGE_TAG) + r"\S+ at (\d+): ", str(commit.get("userMetadata") or ""))
        if tagged:
            last = int(tagged.group(1))
            if micros <= last:
                raise ValueError(f"{path}: a merge at {micros} µs since the epoch is not after the last one, at "
                                 f"{last}: history must go forward (is the clock, or a given build time, behind?)")
            return


def _table_columns(path: str, hashed, current_rows) -> list[str]:
    """The table's columns (``current_rows``'), refusing records with a column it has not."""
    columns = current_rows.columns
    unknown = sorted(set(hashed.columns) - set(columns))
    if unknown:
        raise ValueError(f"{path}: the records have columns the table has not ({', '.join(unknown)}): a library "
                         "whose columns changed needs its table written anew")
    return columns


def _apply_diff(spark, path: str, key: str, diff, hashed, current_rows, counts: dict, now: datetime,
                tag: str) -> dict[str, int]:
    """Write ``diff`` (``merge_with_history``'s changed keys) to the table at
    ``path`` in up to three commits, each tagged ``tag: <part>``, and return
    the version of each part written:

    - ``closed copies``: the current versions of the changed keys, appended
      closed (``valid_to``, not current), as history rows;
    - ``in place``: one MERGE that gives each changed key's current row its
      new version and closes each gone key's;
    - ``new keys``: the new keys' rows, appended.

    Why not one MERGE that closes and inserts: a MERGE with insert clauses
    joins its source to the target with an outer join, which shuffles every
    column of every row of every file it touches, and a day's changed keys
    are spread over all files (49 of the 61 s of base.population's daily
    MERGE at scale 1.0). A MERGE with only update clauses is an inner join
    of the small source, broadcast, with a scan of the table. Every commit
    leaves each key exactly one current row; between the first two, a
    question about an earlier date sees a changed key's old version twice
    (the copy and the row not updated yet), for the seconds the MERGE takes.

    ``current_rows``: the table's current rows, at least the changed keys'
    (the closed copies are made from them). Each part's own counts (rows
    appended, rows updated) are checked against the comparison's."""
    from deltalake import DeltaTable as LogTable
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    columns = _table_columns(path, hashed, current_rows)
    changed = diff.where(F.col("_old_hash").isNotNull() & F.col("_new_hash").isNotNull()).select(key)
    gone = diff.where(F.col("_new_hash").isNull()).select(key)
    new = diff.where(F.col("_old_hash").isNull()).select(key)
    at = F.lit(now).cast("timestamp")
    expected: dict[str, tuple[str, int]] = {}
    if counts["changed"]:
        few = counts["changed"] <= BROADCAST_ROWS
        copies = (current_rows.join(F.broadcast(changed) if few else changed, key, "left_semi")
                  .withColumn("valid_to", at).withColumn("is_current", F.lit(False)).select(*columns))
        copies.write.format("delta").mode("append").option("userMetadata", f"{tag}: closed copies").save(path)
        expected["closed copies"] = ("numOutputRows", counts["changed"])
    if counts["changed"] or counts["removed"]:
        # limited to its known row count, so that Spark's estimate of its size is that count's: a
        # day's changed rows are under autoBroadcastJoinThreshold and are broadcast to the table's
        # scan. Estimated from the records' lineage (43 TB for 2,499 rows) they were not, and the join
        # shuffled every row of the table (32 of a 45 s MERGE on 10.4M rows). Raising the threshold
        # instead made Spark broadcast the table (its file size looked small): 17 s at scale 0.2.
        # the gone keys' rows are staged whole, as the table has them, so that both clauses below set
        # every column: the MERGE then reads only the key and is_current of the table's rows (the rest
        # of a touched file's columns are never referenced), where leaving a column as it was made it
        # read every column of every file a day's changed keys touch, i.e. the whole table
        closing = current_rows.join(F.broadcast(gone) if counts["removed"] <= BROADCAST_ROWS else gone, key,
                                    "left_semi").select(*columns)
        staged = (hashed.join(changed, key, "left_semi").withColumn("_close", F.lit(False))
                  .unionByName(closing.withColumn("_close", F.lit(True)), allowMissingColumns=True)).localCheckpoint()
        rows = staged.count()
        if rows != counts["changed"] + counts["removed"]:
            raise MergeMismatchError(f"{path}: {rows} rows staged for {counts['changed'] + counts['removed']} "
                                     f"changed and gone keys (records with a {key} twice?)")
        staged = staged.limit(rows)
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", f"{tag}: in place")
        # a column the records no longer have is null in the new version, as a MERGE's insert leaves it
        dropped = {c: F.lit(None) for c in columns if c not in hashed.columns and c not in HISTORY_COLUMNS}
        try:
            (DeltaTable.forPath(spark, path).alias("t")
             .merge(staged.alias("s"), f"t.{key} = s.{key} AND t.is_current")
             .whenMatchedUpdate(condition="NOT s._close",
                                set={c: f"s.{c}" for c in hashed.columns} | dropped | {
                                    "valid_from": at, "valid_to": F.lit(None).cast("timestamp"),
                                    "is_current": F.lit(True)})
             .whenMatchedUpdate(condition="s._close",
                                set={c: f"s.{c}" for c in columns if c not in ("valid_to", "is_current")} | {
                                    "valid_to": at, "is_current": F.lit(False)})
             .execute())
        finally:
            spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        expected["in place"] = ("numTargetRowsUpdated", counts["changed"] + counts["removed"])
    if counts["inserted"]:
        opened = hashed.join(new, key, "left_semi").select(
            "*", at.alias("valid_from"), F.lit(None).cast("timestamp").alias("valid_to"),
            F.lit(True).alias("is_current"))
        # a column the records no longer have stays null, as a MERGE's insert leaves it
        types = dict(current_rows.dtypes)
        (opened.select(*[F.col(c) if c in opened.columns else F.lit(None).cast(types[c]).alias(c) for c in columns])
         .write.format("delta").mode("append").option("userMetadata", f"{tag}: new keys").save(path))
        expected["new keys"] = ("numOutputRows", counts["inserted"])
    commits = {str(c.get("userMetadata"))[len(tag) + 2:]: c for c in LogTable(path).history(20)
               if str(c.get("userMetadata") or "").startswith(tag + ": ")}
    for part, (metric, rows) in expected.items():
        wrote = int(((commits.get(part) or {}).get("operationMetrics") or {}).get(metric, -1))
        if wrote != rows:
            raise MergeMismatchError(f"{path}: the {part} commit wrote {wrote} rows, the comparison before it "
                                     f"expected {rows} (was the table written by another process meanwhile?)")
    return {part: commits[part]["version"] for part in expected}
