"""Entity resolution: records whose key is missing or unrecoverable are matched
on other attributes, never silently merged.

Keyed records join on their validated key (the 18-character ID number, the
USCC); ingest has already folded and checked those. What is left are the
quarantined rows of a library's sources:

- rows that failed on some other column but carry a valid key join on it
  (method ``key``): the person or firm exists even if, say, a date was bad;
  the failed values stay out (nulled);
- rows whose key failed (Excel-mangled, wrong check character, impossible
  birth date, gender disagreeing with the sequence digit, missing) are
  compared with every validated key the city knows (the library's
  ``resolution.candidates``), blocked on the normalised name (plus the birth
  date for persons) and scored on the town and, for entities, the legal
  representative: +1 per agreeing attribute, -1 per disagreeing one.

A row links to a candidate only when exactly one candidate has the best score
and no attribute contradicts it; otherwise it goes to
``governance.match_review`` with the reason and the candidate keys. Links go
to ``governance.entity_links`` (one row per resolved quarantined row).
A reviewer's decision on a review (``pipelines.governance.reviews``) is
applied by every build (``apply_decisions``): the record leaves the reviews
and gets the decided link.

Why not Splink: probabilistic linkage shines when *every* record lacks a
trusted key. Here 99%+ of records carry a validated national identifier and
the unkeyed remainder is small (0.1-1% of rows), so there is too little
unlabelled data to train m/u probabilities by EM, and a governor must be able
to read why two records were linked. Deterministic blocking plus an agreement
score is the Fellegi-Sunter idea with fixed weights, written as Spark SQL
joins (no Python UDFs); the accuracy is measured against the generator's
ground truth in tests/integration/test_libraries.py.
"""

from __future__ import annotations

from functools import reduce

from pipelines.contracts import get_contract
from pipelines.ingest.rules import standardise_table
from pipelines.lake.delta import arrow_frame, committed_rows, delta_exists, delta_version, read_silver
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import LINKS_DDL, REVIEW_DDL
from pipelines.libraries.columns import clean_text, fold_code, id_birth_date
from pipelines.libraries.golden import KEY_SOURCE, key_authority
from pipelines.libraries.matching import normalise_for_matching, town_code_of
from pipelines.library_specs import LibrarySpec
from pipelines.settings import Settings

SKIPPED_RULES = ("repeated_header", "malformed_row", "missing_required_column")


def live_load_ids(settings: Settings) -> dict[str, list[str]]:
    """Loads per feed whose latest status is ``loaded`` (not replaced, blocked
    or rejected), in load id order. Read from the manifest with delta-rs: it
    is a few rows per delivery, and a Spark job per question cost about half
    a second, asked some twenty times a build."""
    from pipelines.lake.manifest import latest_events

    live: dict[str, list[str]] = {}
    for load_id, event in sorted(latest_events(settings).items()):
        if event["status"] == "loaded":
            live.setdefault(event["feed"], []).append(load_id)
    return live


IDENTIFIER_TYPES = ("id_number", "uscc", "id_or_uscc")
# ID cross-checks (pipelines.ingest.classify): the failure is recorded on the ID
# column, but the value that contradicts the ID is the other column's.
CROSS_CHECKS = {"id_number.gender_parity": "gender_column", "id_number.birth_date_mismatch": "birth_date_column"}


def rescued_table(rows, feed: str, settings: Settings):
    """Quarantined ``rows`` of ``feed`` re-standardised with the ingest
    rules (``pipelines.ingest.rules``, the one definition of every contract
    rule): contract columns typed, the columns that failed nulled,
    ``_failed_columns`` and ``_raw_<column>`` (the delivered text) for the
    identifier columns, plus lineage (``_load_id``, ``_source_file``,
    ``_row_number``, ``_ingested_at``).

    A row never contributes the value it was quarantined for: when an ID
    cross-check failed (gender parity, birth-date mismatch) the gender or
    birth-date column it names is nulled too, since the validated ID number is
    the authority for both (issue 20).

    What the row said against its ID goes to ``_id_disagreements`` (one
    ``{key, column, value}`` per failed cross-check: the ID number as folded,
    the contract column and its delivered value as text), so the build can
    record it as a conflict against the bureau (``id_disagreements``).

    ``rows`` (``quarantined_table``): ``original_values``, ``failures``,
    ``_load_id``, ``_source_file``, ``_row_number``, ``_ingested_at``. Pure:
    quarantined rows are 0.1-1% of a delivery, Arrow in and out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    contract = get_contract(feed, settings.schemas_dir)
    originals = [dict(pairs or []) for pairs in rows.column("original_values").to_pylist()]
    failures = [items or [] for items in rows.column("failures").to_pylist()]
    raw = pa.table({c.name: pa.array([next((o[h] for h in c.headers if o.get(h) is not None), None)
                                      for o in originals], pa.string()) for c in contract.columns})
    standardised = standardise_table(raw, contract.columns, threads=1)
    failed = [[f["column_name"] for f in items] for items in failures]
    nulled = [set(names) for names in failed]
    by_name = {c.name: c for c in contract.columns}
    texts: dict[str, list] = {}

    def text(name: str) -> list:
        if name not in texts:
            texts[name] = pc.cast(standardised[name].value, pa.string()).to_pylist()
        return texts[name]

    disagreements: list[list[dict]] = [[] for _ in failures]
    for row, items in enumerate(failures):
        for item in items:
            attribute, column = CROSS_CHECKS.get(item["rule"]), by_name.get(item["column_name"])
            if attribute and column is not None and getattr(column, attribute):
                contradicted = getattr(column, attribute)
                nulled[row].add(contradicted)
                key, value = text(column.name)[row], text(contradicted)[row]
                if key is not None and value is not None:
                    disagreements[row].append({"key": key, "column": contradicted, "value": value})
    out = {}
    for c in contract.columns:
        keep = pa.array([c.name not in names for names in nulled], pa.bool_())
        value = standardised[c.name].value
        out[c.name] = pc.if_else(keep, value, pa.scalar(None, value.type))
    for c in contract.columns:
        if c.type in IDENTIFIER_TYPES:
            out[f"_raw_{c.name}"] = raw.column(c.name).combine_chunks()
    for name in ("_load_id", "_source_file", "_row_number", "_ingested_at"):
        out[name] = rows.column(name).combine_chunks()
    out["_failed_columns"] = pa.array(failed, pa.list_(pa.string()))
    out["_id_disagreements"] = pa.array(disagreements, pa.list_(pa.struct(
        [("key", pa.string()), ("column", pa.string()), ("value", pa.string())])))
    return pa.table(out)


def rescued_path(library: str, alias: str, settings: Settings, digest: str) -> str:
    """``<lake>/state/rescued/<library>/<digest>/<alias>``: the rows depend on
    the contract and the ingest rules, both in the digest
    (``incremental.maintained_digest``)."""
    return settings.lake_path("state", "rescued", library, digest, alias)


def _drop_other_digests(spark, settings: Settings, kind: str, library: str, digest: str) -> None:
    """Delete ``<lake>/state/<kind>/<library>/<other digest>``: tables of an
    earlier spec or code are dead. Each is renamed first, so none is ever half there."""
    import shutil

    if not settings.lake_is_local:
        return
    folder = settings.local_lake_path("state", kind, library)
    for old in folder.iterdir() if folder.exists() else []:
        if old.name != digest:
            doomed = old if old.name.endswith(".deleted") else old.rename(old.with_name(old.name + ".deleted"))
            shutil.rmtree(doomed, ignore_errors=True)


def kept_per_load(spark, path: str, wanted: dict[str, str], make_rows, marker_column: str, fresh: bool,
                  what: str):
    """Rows made once per load and kept in the Delta table at ``path``, as
    a frame pinned to the version this call leaves: the rows of every
    ``wanted`` load (load id -> feed), marker rows left out.

    ``make_rows(missing)`` (feed -> load ids the table does not hold yet)
    gives those loads' rows plus one marker row per load (``marker_column``
    null on it and only it), so that a load without rows is known as held;
    they are appended. Loads held but no longer wanted (a
    snapshot or a correction replaced them) are deleted. ``fresh`` (``build
    --full``): every wanted load is made again, replacing the table.

    Which loads are held is read from the marker rows alone, with delta-rs
    (``marked_loads``): a Spark job costs about half a second whatever its
    size, and a daily build asks this of nine tables."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    marker = F.col(marker_column).isNull()
    exists = delta_exists(spark, path)
    held = set()
    if exists and not fresh:
        held = marked_loads(path, marker_column)
        if held is None:      # a table delta-rs cannot read through Arrow: Spark can
            held = {row[0] for row in spark.read.format("delta").load(path).where(marker).select("_load_id").collect()}
    missing: dict[str, list[str]] = {}
    for load, feed in sorted(wanted.items()):
        if load not in held:
            missing.setdefault(feed, []).append(load)
    if missing:
        count = sum(len(loads) for loads in missing.values())
        (make_rows(missing).write.format("delta").mode("overwrite" if fresh or not exists else "append")
         .option("userMetadata", f"govlake {what} of {count} loads").save(path))
    gone = sorted(held - wanted.keys())
    if gone:
        DeltaTable.forPath(spark, path).delete(F.col("_load_id").isin(*gone))
    version = delta_version(spark, path)
    return (spark.read.format("delta").option("versionAsOf", version).load(path)
            .where(~marker & F.col("_load_id").isin(*sorted(wanted))))


def marked_loads(path: str, marker_column: str) -> set[str] | None:
    """The ``_load_id`` of the marker rows (``marker_column`` null) of the
    Delta table at ``path`` (``kept_per_load``), or None for a table with
    deletion vectors (delta-rs cannot hand those to Arrow; these tables are
    written without them, unless Spark's defaults say otherwise).

    delta-rs hands the log's file statistics (null counts) to Arrow, which
    opens only the files that can hold a marker: as written, the markers
    are the last part of the union appended and land in files of their
    own; once upkeep has compacted the table they share files with rows,
    and those files' two columns are read."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable as LogTable

    from pipelines.lake.delta import arrow_dataset, arrow_readable

    table = LogTable(path)
    if not arrow_readable(table):
        return None
    markers = arrow_dataset(table).to_table(columns=["_load_id"], filter=pc.field(marker_column).is_null())
    return set(markers.column("_load_id").to_pylist())


def maintained_rescued(spark, spec: LibrarySpec, alias: str, settings: Settings,
                       live: dict[str, list[str]] | None = None, fresh: bool = False, digest: str | None = None):
    """The rescued quarantined rows (``rescued_table``, with ``_record_id``)
    of every live load of source ``alias``'s feed, kept per load
    (``kept_table_per_load``; a load's marker row has ``_row_number``
    null), as a Spark frame of rows already in memory; None when the feed
    has no live load.

    Re-standardising every live load's quarantined rows through Arrow on
    every build was the largest part of a day's resolution at city scale
    (about 33 s of base.population's daily build at scale 1.0, for a few
    dozen new rows): each load's rows are rescued once, when a build first
    sees it live. The quarantine is read, the rows rescued and kept with
    delta-rs and Arrow, with no Spark job: the table is a few thousand to a
    few hundred thousand rows, and the three Spark jobs a source took (read
    the quarantine, write, read back) were 2 to 7 s of base.population's
    daily build at scale 1.0 in a profile."""
    from pipelines.libraries.incremental import maintained_digest

    feed = spec.sources[alias].feed
    live = live if live is not None else live_load_ids(settings)
    wanted = {load: feed for load in live.get(feed, [])}
    if not wanted:
        return None

    def rescue(missing: dict[str, list[str]]):
        import pyarrow as pa
        import pyarrow.compute as pc

        loads = missing[feed]
        rows = rescued_table(quarantined_table(feed, loads, settings), feed, settings)
        rows = rows.append_column("_record_id", pc.binary_join_element_wise(
            pa.scalar(alias), rows["_load_id"], pc.cast(rows["_row_number"], pa.string()), ":"))
        markers = pa.table({"_load_id": pa.array(loads, pa.string())})
        return pa.concat_tables([rows, markers], promote_options="default")

    digest = digest or maintained_digest(spec, settings)
    rescued = kept_table_per_load(rescued_path(spec.library, alias, settings, digest), wanted, rescue,
                                  "_row_number", fresh)
    _drop_other_digests(spark, settings, "rescued", spec.library, digest)
    return arrow_frame(spark, rescued)


def quarantined_table(feed: str, loads: list[str], settings: Settings):
    """The quarantined rows of ``feed``'s ``loads`` that a resolution can
    use (not repeated headers, malformed rows or rejected files), as Arrow
    with the columns ``rescued_table`` reads; read with delta-rs, only the
    feed's partition."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.lake.delta import read_arrow_rows

    columns = ["original_values", "failures", "_load_id", "_source_file", "_row_number"]
    path = governance_path("quarantine", settings)
    # the quarantine is written by delta-rs's appends and overwrites (no string views): the loads are
    # picked in the scan
    table = read_arrow_rows(path, ("feed", feed), pc.field("_load_id").isin(loads))
    if table is None:          # nothing was ever quarantined
        text = pa.string()
        return pa.table({"original_values": pa.array([], pa.map_(text, text)),
                         "failures": pa.array([], pa.list_(pa.struct([(name, text) for name in (
                             "column_name", "header", "rule", "value")]))),
                         "_load_id": pa.array([], text), "_source_file": pa.array([], text),
                         "_row_number": pa.array([], pa.int64()),
                         "_ingested_at": pa.array([], pa.timestamp("us", tz="UTC"))})
    # a row without a rule is left out, as Spark's ``NOT rule IN (...)`` left it
    usable = pc.and_(pc.is_valid(table["rule"]),
                     pc.invert(pc.is_in(table["rule"], pa.array(SKIPPED_RULES, pa.string()))))
    table = table.filter(pc.fill_null(usable, False))
    return table.select(columns).append_column("_ingested_at", table["quarantined_at"])


def kept_table_per_load(path: str, wanted: dict[str, str], make_rows, marker_column: str, fresh: bool):
    """``kept_per_load`` with delta-rs and Arrow, for rows made in Arrow:
    the rows of every ``wanted`` load (load id -> feed), marker rows left
    out, as an Arrow table in the Delta table's types. ``make_rows(missing)``
    gives the missing loads' rows and their marker rows (``marker_column``
    null) as Arrow; the rows held are read first, the new ones appended,
    loads no longer wanted deleted, in one commit each. ``fresh``: every
    wanted load is made again, replacing the table. ``wanted`` is not empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.lake.delta import (as_table_schema, append_table, delete_rows, read_arrow_rows, replace_table,
                                      sql_strings)

    held_rows = None if fresh else read_arrow_rows(path)
    held = (set() if held_rows is None else
            set(held_rows.filter(pc.is_null(held_rows[marker_column]))["_load_id"].to_pylist()))
    missing: dict[str, list[str]] = {}
    for load, feed in sorted(wanted.items()):
        if load not in held:
            missing.setdefault(feed, []).append(load)
    made = make_rows(missing) if missing else None
    if held_rows is None:
        replace_table(path, made)
        every = as_table_schema(path, made)     # as later builds will read it back
    else:
        if made is not None:
            made = made.select(held_rows.schema.names).cast(held_rows.schema)
            append_table(path, made)
        gone = sorted(held - wanted.keys())
        if gone:
            delete_rows(path, f"_load_id IN ({sql_strings(gone)})")
        every = pa.concat_tables([held_rows, made]) if made is not None else held_rows
    keep = pc.and_(pc.is_valid(every[marker_column]),
                   pc.is_in(every["_load_id"], pa.array(sorted(wanted), pa.string())))
    return every.filter(pc.fill_null(keep, False))


def changed_blocks(spark, spec: LibrarySpec, plan, state, settings: Settings, candidates):
    """The name keys (``name_key``) whose candidates may differ from those the
    last build matched against, for an incremental ``plan``: the names of
    the candidate feeds' rows it has to look at (as ``incremental.new_rows``
    has them: new loads' rows and both sides of a replacing load's changes).
    A record is only compared with candidates of its own name
    (``match_unkeyed``), so an earlier record whose name is not among these
    keeps its last result.

    New loads' names are read from ``candidates`` (``maintained_candidates``,
    where they are normalised already) rather than from silver, one read for
    every feed; only change rows (replacing loads, a few a month) are
    normalised here."""
    from pyspark.sql import functions as F

    from pipelines.lake.changes import change_rows

    feeds = spec.resolution.candidates
    new_loads = sorted(load for feed in feeds for load in state.loads.get(feed, [])
                       if load in plan.new_loads and load not in plan.diffed_loads)
    parts = []
    if new_loads and candidates is not None:
        parts.append(candidates.where(F.col("_load_id").isin(*new_loads)).select("name_key"))
    for feed, mapping in sorted(feeds.items()) if plan.change_loads else ():
        rows = change_rows(spark, get_contract(feed, settings.schemas_dir), plan.change_loads, settings)
        if rows is not None:
            parts.append(rows.where(F.col(mapping["key"]).isNotNull()).select(
                normalise_for_matching(F.col(mapping["name"]).cast("string")).alias("name_key")))
    if not parts:
        return spark.createDataFrame([], "name_key string")
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("name_key").isNotNull()).distinct()


def _fields(frame, mapping: dict, profile: str, key_expr):
    """The attributes records are compared on: ``name_key``, ``birth``,
    ``town_code``, ``rep_key``."""
    from pyspark.sql import functions as F

    def text(column):
        return F.col(mapping[column]).cast("string") if mapping.get(column) else F.lit(None).cast("string")

    if profile == "person":
        # the delivered birth date, else the one in the delivered ID number (a
        # row quarantined for a birth-date mismatch has its birth date nulled)
        folded = fold_code(clean_text(key_expr.cast("string")))
        birth = F.when(F.length(folded) == 18, id_birth_date(folded))
        if mapping.get("birth"):
            birth = F.coalesce(F.col(mapping["birth"]).cast("date"), birth)
    else:
        birth = F.lit(None).cast("date")
    return frame.select(
        "*", normalise_for_matching(text("name")).alias("name_key"), birth.alias("birth"),
        town_code_of(text("town")).alias("town_code"), normalise_for_matching(text("representative")).alias("rep_key"))


def candidate_rows(spec: LibrarySpec, feed: str, frame):
    """The comparison attributes of the keyed rows of ``frame`` (``feed``'s
    silver rows), as ``feed, _load_id, candidate_key, name_key, birth,
    town_code, rep_key``, one row per load and distinct combination. Pure:
    the rows the maintained table holds.

    Distinct because matching only ever looks at distinct candidates
    (``candidate_keys``) and a feed may name one key many times: social
    insurance has a row per person and insurance type, 18.3M rows at scale
    1.0 that hold about 6M persons and 1.5M employers, and every daily
    match scanned them all."""
    from pyspark.sql import functions as F

    mapping = spec.resolution.candidates[feed]
    key = F.col(mapping["key"])
    fields = _fields(frame.where(key.isNotNull()), mapping | {"birth": None}, "entity", key)
    birth = id_birth_date(key) if spec.resolution.profile == "person" else F.lit(None).cast("date")
    return fields.select(F.lit(feed).alias("feed"), "_load_id", key.alias("candidate_key"), "name_key",
                         birth.alias("birth"), "town_code", "rep_key").distinct()


def candidates_path(library: str, settings: Settings, digest: str) -> str:
    """``<lake>/state/candidates/<library>/<digest>``: the rows depend on the
    spec and the matching code, so a change of either starts a new table
    (``incremental.maintained_digest``: not a change an operator accepted)."""
    return settings.lake_path("state", "candidates", library, digest)


def maintained_candidates(spark, spec: LibrarySpec, settings: Settings,
                          live: dict[str, list[str]] | None = None, fresh: bool = False, digest: str | None = None):
    """The candidate rows (``candidate_rows``) of every live load of the
    library's candidate feeds, kept per load (``kept_per_load``; a load's
    marker row has ``candidate_key`` null); None when no candidate feed has
    a live load.

    Normalising every row of the candidate feeds (10M+ at city scale) for a
    day's few thousand unkeyed records was the largest step of a daily
    build that grew with the city: each load's rows are normalised once,
    when a build first sees it live."""
    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import maintained_digest

    live = live if live is not None else live_load_ids(settings)
    wanted = {load: feed for feed in spec.resolution.candidates for load in live.get(feed, [])}
    if not wanted:
        return None

    def normalise(missing: dict[str, list[str]]):
        parts = []
        for feed, loads in sorted(missing.items()):
            frame = read_silver(spark, feed, settings, loads)
            if frame is not None:
                parts.append(candidate_rows(spec, feed, frame))
        markers = spark.createDataFrame([(feed, load) for feed, loads in sorted(missing.items()) for load in loads],
                                        "feed string, _load_id string")
        parts.append(markers.select("feed", "_load_id", *[F.lit(None).cast(kind).alias(name) for name, kind in (
            ("candidate_key", "string"), ("name_key", "string"), ("birth", "date"), ("town_code", "string"),
            ("rep_key", "string"))]))
        return reduce(lambda a, b: a.unionByName(b), parts)

    digest = digest or maintained_digest(spec, settings)
    rows = kept_per_load(spark, candidates_path(spec.library, settings, digest), wanted, normalise,
                         "candidate_key", fresh, "candidates")
    _drop_other_digests(spark, settings, "candidates", spec.library, digest)
    return rows.where(F.col("name_key").isNotNull())


def candidate_keys(rows, blocks):
    """Every validated key the city knows for this library, with its
    comparison attributes (one row per key and distinct attribute
    combination), from the maintained candidate ``rows``
    (``maintained_candidates``). Pure.

    ``blocks`` (column ``name_key``): the names the records to match carry;
    only candidates with one of them are kept, before the distinct. A record
    is only ever compared with candidates of its own name, so the result of
    matching is the same, and the shuffle is of a few thousand rows instead
    of every row of the candidate feeds (10M+ at city scale)."""
    from pyspark.sql import functions as F

    return (rows.join(F.broadcast(blocks), "name_key", "left_semi")
            .select("candidate_key", "name_key", "birth", "town_code", "rep_key").distinct())


def match_unkeyed(unkeyed, candidates, profile: str, materialise=None):
    """Link each unkeyed record to at most one candidate key. Pure.

    ``unkeyed``: ``_record_id`` plus the comparison attributes. Returns
    (links: ``_record_id, key, method, score``; reviews: ``_record_id, reason,
    candidate_keys``). Both come from one comparison of every record with its
    block's candidates; ``materialise`` (e.g. a checkpoint) is applied to it,
    so a caller that uses both does not compare twice."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    block = ["name_key", "birth"] if profile == "person" else ["name_key"]
    usable = unkeyed.where(reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in block]))
    c = candidates.select(F.col("candidate_key"), *[F.col(x).alias(f"c_{x}") for x in
                                                    ("name_key", "birth", "town_code", "rep_key")])

    def agreement(mine, theirs):
        return (F.when(F.col(mine).isNull() | F.col(theirs).isNull(), 0)
                .when(F.col(mine) == F.col(theirs), 1).otherwise(-1))

    town, representative = agreement("town_code", "c_town_code"), agreement("rep_key", "c_rep_key")
    # a key can have several attribute combinations (a hukou town and another
    # residence-permit town): the pair scores as its best combination, and
    # among equally good ones a combination without a contradiction wins
    best = F.max(F.struct((town + representative).alias("score"),
                          (~((town < 0) | (representative < 0))).alias("consistent")))
    pairs = (usable.join(c, reduce(lambda a, b: a & b, [usable[x] == c[f"c_{x}"] for x in block]))
             .groupBy("_record_id", "candidate_key").agg(best.alias("_best"))
             .select("_record_id", "candidate_key", F.col("_best.score").alias("score"),
                     (~F.col("_best.consistent")).alias("contradicts")))
    ranked = pairs.withColumn("_rank", F.dense_rank().over(Window.partitionBy("_record_id").orderBy(F.desc("score"))))
    summary = ranked.groupBy("_record_id").agg(
        F.count("*").alias("candidates"), F.sum((F.col("_rank") == 1).cast("int")).alias("best"),
        F.max("score").alias("score"),
        F.max_by("candidate_key", "score").alias("key"),
        F.max_by("contradicts", "score").alias("best_contradicts"),
        F.slice(F.sort_array(F.collect_list("candidate_key")), 1, 10).alias("candidate_keys"))
    summary = materialise(summary) if materialise is not None else summary
    method = F.lit(f"{profile}:" + "+".join(block + ["score"]))
    # one best candidate that no compared attribute contradicts: an agreeing
    # town does not outweigh a disagreeing representative
    linkable = (F.col("best") == 1) & ~F.col("best_contradicts")
    links = summary.where(linkable).select(
        "_record_id", "key", method.alias("method"), F.col("score").cast("int").alias("score"))
    reviewed = summary.where(~linkable).select(
        "_record_id",
        F.when(F.col("best") > 1, F.lit("ambiguous: several candidates score the same"))
        .when(F.col("score") < 0, F.lit("the only candidates disagree on town or representative"))
        .otherwise(F.lit("the best candidate disagrees on town or representative")).alias("reason"),
        "candidate_keys")
    unmatched = unkeyed.join(summary.select("_record_id"), "_record_id", "left_anti").select(
        "_record_id",
        F.when(reduce(lambda a, b: a & b, [F.col(x).isNotNull() for x in block]),
               F.lit("no candidate with the same " + " and ".join(block)))
        .otherwise(F.lit("too little to match on: " + " or ".join(block) + " missing")).alias("reason"),
        F.array().cast("array<string>").alias("candidate_keys"))
    return links, reviewed.unionByName(unmatched)


def id_disagreements(spec: LibrarySpec, alias: str, rescued):
    """What ``alias``'s rescued rows said against their own ID number, as
    conflicts (the columns of ``governance.conflicts`` less library and
    timestamps), or None. Pure.

    A row quarantined for ``id_number.gender_parity`` or
    ``id_number.birth_date_mismatch`` is nulled before golden records see it
    (``rescued_table``), so ``golden.attribute_conflicts`` cannot find the
    disagreement: it is taken here from ``_id_disagreements``, for every
    attribute the spec takes ``from_key`` and checks (``conflicts:``), against
    the delivering feed. The subject is the ID number the bureau delivered,
    whether or not the row could be linked."""
    from pyspark.sql import functions as F

    derived = key_authority(spec)
    feed = spec.sources[alias].feed
    by_column = {column: attribute.name for attribute in spec.attributes
                 if attribute.name in derived and attribute.conflicts
                 for source, column in attribute.sources if source == alias}
    if not by_column or "_id_disagreements" not in rescued.columns:
        return None
    found = rescued.select("_load_id", F.explode("_id_disagreements").alias("d"))
    parts = []
    for column, attribute in by_column.items():
        authority = derived[attribute](F.col("d.key")).cast("string")
        parts.append(found.where((F.col("d.column") == column) & authority.isNotNull()
                                 & (authority != F.col("d.value"))).select(
            F.col("d.key").alias("subject"), F.lit(attribute).alias("attribute"),
            F.lit(KEY_SOURCE).alias("authoritative_feed"), authority.alias("authoritative_value"),
            F.col("_load_id").alias("authoritative_load_id"), F.lit(feed).alias("other_feed"),
            F.lit(column).alias("other_column"), F.col("d.value").alias("other_value"),
            F.col("_load_id").alias("other_load_id")))
    return reduce(lambda a, b: a.unionByName(b), parts)


def resolve_records(spark, spec: LibrarySpec, frames: dict, settings: Settings,
                    live: dict[str, list[str]] | None = None, fresh_candidates: bool = False,
                    plan=None, state=None, links_before=None):
    """Add the resolvable quarantined rows of the ``rescue`` sources to
    ``frames`` (by source alias). Returns (frames, links, reviews,
    disagreements): ``disagreements`` are the rescued rows' values that
    contradicted their own ID number (``id_disagreements``), or None.
    ``fresh_candidates`` (``build --full``): the candidates and rescued rows
    are made again from every live load, not read from their maintained tables.

    With an incremental ``plan`` (and its ``state`` and ``links_before``, the
    library's entity links as the last build left them), only the unkeyed
    records that can have a new result are matched: those of the plan's new
    loads, those whose name is in a changed block (``changed_blocks``) and
    any without a result from the last build. Every other one keeps its
    link or open review (with the review's ``found_at``); the result is the
    same as matching them all, since a record is only compared with the
    candidates of its own name.

    Checkpointed at the few points that are reused: on small deliveries a
    Spark action costs seconds whatever its size, so there are few of them."""
    from pyspark.sql import functions as F

    resolution = spec.resolution
    out = dict(frames)
    # the digest this build keeps its rescued rows and candidates under (``incremental.maintained_after``)
    kept_under = state.maintained_digest if state is not None and state.maintained_digest else None
    rescued_by_alias = {}
    for alias in resolution.rescue:
        rescued = maintained_rescued(spark, spec, alias, settings, live, fresh_candidates, kept_under)
        if rescued is not None:
            rescued_by_alias[alias] = rescued.localCheckpoint()
    if not rescued_by_alias:
        return out, spark.createDataFrame([], LINKS_DDL), spark.createDataFrame([], REVIEW_DDL), None
    unkeyed_parts, links_parts, disagreement_parts = [], [], []
    for alias, rescued in rescued_by_alias.items():
        source = spec.sources[alias]
        found = id_disagreements(spec, alias, rescued)
        if found is not None:
            disagreement_parts.append(found)
        key = F.col(source.key)
        links_parts.append(rescued.where(key.isNotNull()).select(
            F.lit(spec.library).alias("library"), F.lit(source.feed).alias("feed"), F.lit(alias).alias("source_alias"),
            "_load_id", "_source_file", "_row_number", key.alias("key"), F.lit("key").alias("method"),
            F.lit(None).cast("int").alias("score")))
        mapping = resolution.candidates.get(source.feed, {})
        raw_key = F.col(f"_raw_{source.key}") if f"_raw_{source.key}" in rescued.columns else F.lit(None)
        unkeyed_parts.append(_fields(rescued.where(key.isNull()), mapping, resolution.profile, raw_key).select(
            "_record_id", F.lit(spec.library).alias("library"), F.lit(source.feed).alias("feed"),
            F.lit(alias).alias("source_alias"), "_load_id", "_source_file", "_row_number",
            "name_key", "birth", "town_code", "rep_key", raw_key.cast("string").alias("delivered_key")))
    # several per (subject, attribute, other feed) are reduced in order by the build (build.current_records)
    disagreements = reduce(lambda a, b: a.unionByName(b), disagreement_parts) if disagreement_parts else None
    unkeyed = reduce(lambda a, b: a.unionByName(b), unkeyed_parts).localCheckpoint()
    lineage = ["library", "feed", "source_alias", "_load_id", "_source_file", "_row_number"]
    # the candidate table is kept up to date on every build, whether or not a record is matched now
    candidates = maintained_candidates(spark, spec, settings, live, fresh_candidates, kept_under)
    kept_links = kept_reviews = None
    to_match = unkeyed
    if plan is not None:
        to_match, kept_links, kept_reviews = _split_by_last_result(
            spark, spec, unkeyed, plan, state, links_before, settings, candidates)
    matched_now = review_now = None
    if to_match.limit(1).count():
        blocks = to_match.where(F.col("name_key").isNotNull()).select("name_key").distinct().localCheckpoint()
        candidates = (candidate_keys(candidates, blocks) if candidates is not None
                      else spark.createDataFrame([], "candidate_key string, name_key string, birth date, "
                                                      "town_code string, rep_key string"))
        links, reviews = match_unkeyed(to_match, candidates.localCheckpoint(), resolution.profile,
                                       materialise=lambda frame: frame.localCheckpoint())
        matched_now = to_match.join(links, "_record_id").select("_record_id", *lineage, "key", "method", "score")
        record = F.create_map(*[x for name in ("name_key", "birth", "town_code", "rep_key", "delivered_key")
                                for x in (F.lit(name), F.col(name).cast("string"))])
        review_now = to_match.join(reviews, "_record_id").select(
            *lineage, "reason", record.alias("record"), "candidate_keys", F.lit("open").alias("status"),
            F.current_timestamp().alias("found_at"))
    matched_parts = [frame for frame in (matched_now, kept_links) if frame is not None]
    review_parts = [frame for frame in (review_now, kept_reviews) if frame is not None]
    matched = (reduce(lambda a, b: a.unionByName(b), matched_parts) if matched_parts else
               spark.createDataFrame([], "_record_id string, " + LINKS_DDL)).localCheckpoint()
    review_rows = (reduce(lambda a, b: a.unionByName(b), review_parts) if review_parts
                   else spark.createDataFrame([], REVIEW_DDL))
    matched, review_rows = apply_decisions(spark, spec.library, unkeyed, matched, review_rows, settings)
    for alias, rescued in rescued_by_alias.items():
        source = spec.sources[alias]
        mine = matched.where(F.col("source_alias") == alias).select("_record_id", F.col("key").alias("_matched_key"))
        resolved = (rescued.join(mine, "_record_id", "left")
                    .withColumn(source.key, F.coalesce(F.col(source.key), F.col("_matched_key")))
                    .where(F.col(source.key).isNotNull()))
        columns = frames[alias].columns if alias in frames else [
            c for c in rescued.columns if not c.startswith("_raw_") and c not in ("_id_disagreements", "_record_id")]
        resolved = resolved.select(*[F.col(c) if c in resolved.columns else F.lit(None).alias(c) for c in columns])
        out[alias] = out[alias].unionByName(resolved) if alias in out else resolved
    links = reduce(lambda a, b: a.unionByName(b), links_parts + [matched.drop("_record_id")])
    return out, links, review_rows, disagreements


def apply_decisions(spark, library: str, unkeyed, matched, reviews, settings: Settings):
    """(links, reviews) with the reviewers' live decisions applied
    (pipelines.governance.reviews): a decided record leaves the reviews and
    gets the decided link instead of any the matcher made: the accepted
    key (``review_accepted``), or no key (``review_new_person``,
    ``review_rejected``: it stays out of the library). Records are found by
    ``review_id`` (the values compared, not the load), so a decision holds for
    the same record delivered again."""
    from pyspark.sql import functions as F

    from pipelines.governance.reviews import EVIDENCE, LINK_METHODS, live_decisions

    decided = [(rid, LINK_METHODS[r["decision"]], r["candidate_key"])
               for rid, r in live_decisions(settings, library).items()]
    if not decided:
        return matched, reviews
    decisions = F.broadcast(spark.createDataFrame(decided, "_review_id string, method string, key string"))
    evidence = [F.coalesce(F.col(name).cast("string"), F.lit("")) for name in EVIDENCE]
    review_id = F.substring(F.sha2(F.concat_ws("|", F.lit(library), "source_alias", *evidence), 256), 1, 12)
    lineage = ["library", "feed", "source_alias", "_load_id", "_source_file", "_row_number"]
    chosen = unkeyed.withColumn("_review_id", review_id).join(decisions, "_review_id").select(
        "_record_id", *lineage, "key", "method", F.lit(None).cast("int").alias("score")).localCheckpoint()
    record_id = F.concat_ws(":", "source_alias", "_load_id", F.col("_row_number").cast("string"))
    links = matched.join(chosen.select("_record_id"), "_record_id", "left_anti").unionByName(chosen)
    kept = reviews.withColumn("_record_id", record_id).join(chosen.select("_record_id"), "_record_id", "left_anti")
    return links.localCheckpoint(), kept.drop("_record_id")


def _split_by_last_result(spark, spec: LibrarySpec, unkeyed, plan, state, links_before, settings: Settings,
                          candidates):
    """For an incremental build: (the unkeyed records to match now, the
    others' links and their open reviews as the last build left them). See
    ``resolve_records``; ``candidates``: ``maintained_candidates``'s rows."""
    from pyspark.sql import functions as F

    lineage = ["library", "feed", "source_alias", "_load_id", "_source_file", "_row_number"]
    record_id = F.concat_ws(":", "source_alias", "_load_id", F.col("_row_number").cast("string")).alias("_record_id")
    # a reviewer's link is not kept as a result: the record is matched again and its decision, if still
    # live, applied again (an undone decision puts it back in review)
    links = (links_before.where((F.col("method") != "key") & ~F.col("method").startswith("review_"))
             .select(record_id, "key", "method", "score")
             if links_before is not None else spark.createDataFrame([], "_record_id string, key string, "
                                                                        "method string, score int"))
    reviews = read_reviews(spark, spec.library, settings)
    reviews = (reviews.select(record_id, "reason", "record", "candidate_keys", "status", "found_at")
               if reviews is not None else None)
    known = links.select("_record_id")
    if reviews is not None:
        known = known.unionByName(reviews.select("_record_id"))
    blocks = changed_blocks(spark, spec, plan, state, settings, candidates)
    new = F.col("_load_id").isin(*plan.new_loads) if plan.new_loads else F.lit(False)
    again = (unkeyed.where(new).select("_record_id")
             .unionByName(unkeyed.join(blocks, "name_key", "left_semi").select("_record_id"))
             .unionByName(unkeyed.join(known, "_record_id", "left_anti").select("_record_id"))
             .distinct().localCheckpoint())
    to_match = unkeyed.join(again, "_record_id", "left_semi").localCheckpoint()
    rest = unkeyed.join(again, "_record_id", "left_anti").select("_record_id", *lineage)
    kept_links = rest.join(links, "_record_id").select("_record_id", *lineage, "key", "method", "score")
    kept_reviews = (rest.join(reviews, "_record_id").select(*lineage, "reason", "record", "candidate_keys",
                                                             "status", "found_at")
                    if reviews is not None else None)
    return to_match, kept_links, kept_reviews


def write_resolution(spark, library: str, links, reviews, settings: Settings) -> dict:
    """Replace the library's rows in governance.entity_links and
    governance.match_review (open reviews) with this build's; returns how
    many each now has. Counted from the commit's own metrics (the rows it
    wrote are the library's rows: it replaced all of them), not by reading
    the table again: two Spark jobs less per build."""
    from uuid import uuid4

    counts = {}
    for name, frame in (("entity_links", links), ("match_review", reviews)):
        path = governance_path(name, settings)
        tag = f"govlake resolution {library} {uuid4()}"
        (frame.write.format("delta").mode("overwrite").partitionBy("library")
         .option("replaceWhere", f"library = '{library}'").option("userMetadata", tag).save(path))
        counts[name] = committed_rows(path, tag)
    return counts


def read_reviews(spark, library: str, settings: Settings):
    """The library's open reviews in governance.match_review as its last
    build wrote them (rows in memory: this build replaces them), or None before any."""
    return _library_rows(spark, "match_review", library, settings)


def read_links(spark, library: str, settings: Settings):
    """The library's rows of governance.entity_links as its last build wrote
    them (rows in memory: this build replaces them), or None before any."""
    return _library_rows(spark, "entity_links", library, settings)


def _library_rows(spark, name: str, library: str, settings: Settings):
    """The ``library`` partition of the governance table ``name`` as a frame
    of rows in memory, or None when there is no table. Read with delta-rs:
    a Spark read and checkpoint was the first job of base.population's
    daily build, 4 to 7 s at scale 1.0 (much of it a cold JVM's)."""
    from pipelines.lake.delta import read_arrow_rows

    rows = read_arrow_rows(governance_path(name, settings), ("library", library))
    return arrow_frame(spark, rows) if rows is not None else None
