"""Entity resolution: records whose key is missing or unrecoverable are matched
on other attributes, never silently merged.

Keyed records join on their validated key (the 18-character ID number, the
USCC); ingest has already folded and checked those. What is left are the
quarantined rows of a library's sources:

- rows that failed on some other column but carry a valid key join on it
  (method ``key``): the person or firm exists even if, say, a date was bad;
  the failed values stay out (nulled);
- rows whose key failed (Excel-mangled, mistyped, wrong check character,
  impossible birth date, gender disagreeing with the sequence digit,
  missing) are compared with every validated key the city knows (the
  library's ``resolution.candidates``): blocked on the birth date with the
  surname or the town, the name with the ID's division, the birth date with
  the ID's sequence digits (persons), the name's core (entities), and the
  valid keys one edit from the delivered one; scored on name (exact, rare,
  pinyin, variant, one character apart), birth date, the delivered key
  (exact, one or two edits, the digits it still has), town, road and house
  number, and legal representative, with fixed weights (``WEIGHTS``).

A row links to a candidate only when its score reaches the threshold, beats
every other candidate key by the margin and nothing contradicts it (another
name, another house, somebody else's ID); otherwise it goes to
``governance.match_review`` with the reason, the candidate keys and the
evidence. Links go to ``governance.entity_links`` (one row per resolved
quarantined row), each with its evidence (which attributes agreed and how).
A reviewer's decision on a review (``pipelines.governance.reviews``) is
applied by every build (``apply_decisions``): the record leaves the reviews
and gets the decided link.

Fixed weights rather than a trained model: 99%+ of records carry a
validated national identifier and the unkeyed remainder is small (0.1-1% of
rows), so there is little unlabelled data to train m/u probabilities on, and
a governor must be able to read why two records were linked. It is the
Fellegi-Sunter idea with the weights written down, as Spark SQL joins (no
Python UDFs); ``make bench-er`` measures it against Splink (trained on the
same records) on the hard-case city, and tests/integration/test_libraries.py
and test_hard_cases.py against the generator's ground truth.
"""

from __future__ import annotations

from functools import reduce

from pipelines import reference as ref
from pipelines.contracts import get_contract
from pipelines.ingest.rules import standardise_table
from pipelines.lake.delta import arrow_frame, committed_rows, delta_exists, delta_version, read_silver
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import LINKS_DDL, REVIEW_DDL
from pipelines.libraries.columns import clean_text, fold_code, id_birth_date
from pipelines.libraries.golden import KEY_SOURCE, key_authority
from pipelines.libraries.matching import address_key_of, normalise_for_matching, town_code_of
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
        # mergeSchema: a table kept across an accepted code change may lack a column the code now adds
        (make_rows(missing).write.format("delta").mode("overwrite" if fresh or not exists else "append")
         .option("mergeSchema", "true").option("userMetadata", f"govlake {what} of {count} loads").save(path))
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
    """The candidate rows (``CANDIDATE_ATTRIBUTES``) that may differ from
    those the last build matched against, for an incremental ``plan``: the
    candidate feeds' rows it has to look at (as ``incremental.new_rows`` has
    them: new loads' rows and both sides of a replacing load's changes). A
    record is only compared with candidates sharing one of its blocks, and
    only a name's bearers change its count (``match_unkeyed``), so an
    earlier record that shares none of these with them keeps its last
    result (``records_in_blocks``).

    New loads' rows are read from ``candidates`` (``maintained_candidates``,
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
        parts.append(candidates.where(F.col("_load_id").isin(*new_loads)).select(*CANDIDATE_ATTRIBUTES))
    for feed in sorted(feeds) if plan.change_loads else ():
        rows = change_rows(spark, get_contract(feed, settings.schemas_dir), plan.change_loads, settings)
        if rows is not None:
            parts.append(candidate_attributes(spec, feed, rows))
    if not parts:
        return spark.createDataFrame([], "candidate_key string, name_key string, birth date, town_code string, "
                                         "rep_key string, address_key string, phone_key string")
    return reduce(lambda a, b: a.unionByName(b), parts).distinct()


def records_in_blocks(unkeyed, changed, profile: str):
    """The ``_record_id`` of the ``unkeyed`` records that share a block of
    ``match_unkeyed`` with a ``changed`` candidate row (``PERSON_BLOCKS``,
    ``ENTITY_BLOCKS``, or a key one edit from the record's delivered key):
    the only records whose result can change."""
    from pyspark.sql import functions as F

    columns_in = ["_record_id", "name_key", "birth", "town_code", "id_key"] + (
        ["delivered_key"] if "delivered_key" in unkeyed.columns else [])
    blocks = PERSON_BLOCKS if profile == "person" else ENTITY_BLOCKS
    records = _derived(unkeyed.select(*columns_in), "id_key", profile == "person")
    rows = _derived(changed, "candidate_key", profile == "person", candidates=True)
    # a record's values: its blocks; its delivered key and the keys one edit from it (the candidate may be
    # one of them, or delivered validly since); its name when it has no ID division (the count of keys
    # with the name, a unique name weighing more, may have changed, in any block or none)
    mine = records.select("_record_id", F.explode(_block_values(blocks)).alias("_block"))
    delivered = [r[0] for r in records.where(F.col("id_key").isNotNull()).select("id_key").distinct().collect()]
    keys = [(key, NEAR_KEY + key) for key in delivered] + [
        (key, NEAR_KEY + other) for key, other in key_neighbours(delivered, profile)]
    if keys:
        near = unkeyed.sparkSession.createDataFrame(keys, "id_key string, _block string")
        mine = mine.unionByName(records.join(F.broadcast(near), "id_key").select("_record_id", "_block"))
    mine = mine.unionByName(records.where(F.col("_division").isNull() & F.col("name_key").isNotNull())
                            .select("_record_id", F.concat(F.lit(NAME), "name_key").alias("_block")))
    theirs = rows.select(F.explode(_block_values(blocks, with_key=True, with_name=True)).alias("_block")).distinct()
    # no broadcast hint: a month's new load of a candidate feed can be large
    return mine.join(theirs, "_block", "left_semi").select("_record_id")


def plausible_birth(day):
    """``day`` when a person alive can have been born on it (1900 to
    today), else null: an ID's 20991231 is a date, but no birth date."""
    from pyspark.sql import functions as F

    return F.when((day >= F.lit("1900-01-01").cast("date")) & (day <= F.current_date()), day)


def _fields(frame, mapping: dict, profile: str, key_expr):
    """The attributes records are compared on: ``name_key``, ``birth``,
    ``town_code``, ``rep_key``, ``address_key`` (``matching.address_key_of``),
    ``phone_key`` (the phone number's digits, without a leading 86),
    and ``_birth_from_key``: the birth date was read from the delivered ID
    (the row has no birth-date column), so a mistyped ID may have changed it."""
    from pyspark.sql import functions as F

    def text(column):
        return F.col(mapping[column]).cast("string") if mapping.get(column) else F.lit(None).cast("string")

    if profile == "person":
        # the delivered birth date, else the one in the delivered ID number (a
        # row quarantined for a birth-date mismatch has its birth date nulled)
        folded = fold_code(clean_text(key_expr.cast("string")))
        birth = F.when(F.length(folded) == 18, plausible_birth(id_birth_date(folded)))
        delivered = F.col(mapping["birth"]).cast("date") if mapping.get("birth") else F.lit(None).cast("date")
        birth_from_key = delivered.isNull() & birth.isNotNull()
        birth = F.coalesce(delivered, birth)
    else:
        birth, birth_from_key = F.lit(None).cast("date"), F.lit(False)
    return frame.select(
        "*", normalise_for_matching(text("name")).alias("name_key"), birth.alias("birth"),
        birth_from_key.alias("_birth_from_key"),
        town_code_of(text("town")).alias("town_code"), normalise_for_matching(text("representative")).alias("rep_key"),
        address_key_of(text("address")).alias("address_key"), _phone_key(text("phone")).alias("phone_key"))


def _phone_key(phone):
    """A phone number's digits (full-width folded, separators dropped, a
    leading 86 country code removed); null with fewer than 7 digits."""
    from pyspark.sql import functions as F

    digits = F.regexp_replace(fold_code(clean_text(phone)), "[^0-9]", "")
    digits = F.when(digits.startswith("86") & (F.length(digits) == 13), F.substring(digits, 3, 11)).otherwise(digits)
    return F.when(F.length(digits) >= 7, digits)


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

    return candidate_attributes(spec, feed, frame, ["_load_id"]).select(
        F.lit(feed).alias("feed"), "_load_id", *CANDIDATE_ATTRIBUTES).distinct()


CANDIDATE_ATTRIBUTES = ("candidate_key", "name_key", "birth", "town_code", "rep_key", "address_key", "phone_key")


def candidate_attributes(spec: LibrarySpec, feed: str, frame, keep: tuple | list = ()):
    """``CANDIDATE_ATTRIBUTES`` (and the columns ``keep``) of the keyed rows
    of ``frame``, ``feed``'s silver rows or change rows. Pure."""
    from pyspark.sql import functions as F

    mapping = spec.resolution.candidates[feed]
    key = F.col(mapping["key"])
    fields = _fields(frame.where(key.isNotNull()), mapping | {"birth": None}, "entity", key)
    birth = id_birth_date(key) if spec.resolution.profile == "person" else F.lit(None).cast("date")
    return fields.select(*keep, key.alias("candidate_key"), "name_key", birth.alias("birth"), "town_code", "rep_key",
                         "address_key", "phone_key")


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
            ("rep_key", "string"), ("address_key", "string"), ("phone_key", "string"))]))
        return reduce(lambda a, b: a.unionByName(b), parts)

    digest = digest or maintained_digest(spec, settings)
    path = candidates_path(spec.library, settings, digest)
    if not fresh and delta_exists(spark, path):
        # kept across an accepted code change by code that compared fewer attributes (phones): made again,
        # or the loads it holds would never carry them and incremental builds would differ from full ones
        fresh = not set(CANDIDATE_ATTRIBUTES) <= set(spark.read.format("delta").load(path).columns)
    rows = kept_per_load(spark, path, wanted, normalise, "candidate_key", fresh, "candidates")
    _drop_other_digests(spark, settings, "candidates", spec.library, digest)
    return rows.where(F.col("name_key").isNotNull())


def candidate_keys(rows):
    """Every validated key the city knows for this library, with its
    comparison attributes (``CANDIDATE_ATTRIBUTES``; a key may have several
    rows), from the maintained candidate ``rows`` (``maintained_candidates``).
    Pure. Not made distinct: ``match_unkeyed`` keeps only the rows its
    blocks name, with one broadcast semi-join, before anything is shuffled (the
    candidates are every row of the candidate feeds, 10M+ at city scale)."""
    from pyspark.sql import functions as F

    if "phone_key" not in rows.columns:     # kept by code before phones were compared (an accepted code change)
        rows = rows.withColumn("phone_key", F.lit(None).cast("string"))
    return rows.select(*CANDIDATE_ATTRIBUTES)


# The comparison, Fellegi-Sunter with fixed weights a governor can read: each
# attribute's agreement level adds its weight (log-odds in spirit, rounded
# to small integers; tuned on the hard-case city, ``make bench-er``). A
# record links to its best candidate when the score reaches the profile's
# threshold, beats every other candidate key by ``MARGIN`` and the names do
# not differ; anything else goes to review with the reason and the
# evidence. Unknown (null) on either side adds nothing.
WEIGHTS = {
    # exact: the normalised names agree (traditional characters, spaces and
    # dots folded); unique: and no other candidate key has the name (the
    # term-frequency idea: a rare name says more than 张伟; within the ID's
    # division when the record's key gives one), but a name alone never
    # links: the only bearer the candidates know may be the namesake of a
    # person they do not (a planted namesake whose own rows all lost their
    # ID), and such a record waits for a governor with the evidence;
    # homophone: one character apart and read the same (a pinyin input
    # method's typo, 王晓明 / 王小明), as good as the name; pinyin: a name in
    # pinyin reads as the other (pinyin loses the tones and the characters:
    # weak evidence); variant: an entity name's core agrees (legal form, city
    # marks, branch suffix); branch: only once a branch suffix is dropped (a
    # branch is a firm of its own: no evidence either way); core one apart
    # (entities): the cores one character apart, four characters or more;
    # close (persons): one character apart and read otherwise (赵彤娥 /
    # 赵军娥): no evidence either way, the key must carry it
    "name": {"unique": 4, "exact": 3, "homophone": 3, "variant": 2, "core one apart": 1, "pinyin": 1, "close": 0,
             "branch": 0, "different": -3},
    "birth": {"agree": 2, "differ": -2},
    # the delivered key against the candidate's: the same (a row quarantined
    # for another column's contradiction), all but the check character, one
    # character mistyped or two swapped, two mistyped; an ID whose birth date
    # is unreadable but whose division and sequence digits agree and, with the
    # birth date the row delivered beside it, spell the key; or whose
    # division and sequence digits (and birth year) agree, or not; a mangled
    # one (Excel's 4.41900E+17) whose division differs; a well-formed key
    # three or more edits away: somebody else's
    "key": {"exact": 4, "check character": 4, "division and sequence agree, the birth date delivered beside": 4,
            "1 edit": 3, "2 edits": 2, "division, birth year and sequence agree": 4,
            "division and sequence agree": 1, "division or sequence differs": -3, "division differs": -3,
            "different": -3},
    "town": {"agree": 1, "differ": -1},
    # road and house number: a namesake in the same town lives elsewhere
    "address": {"agree": 1, "differ": -3},
    # a phone number is a person's own, but it changes (no veto): only
    # residence permits carry one, so it mostly tells a namesake's permit
    # from this one
    "phone": {"agree": 2, "differ": -2},
    # representatives change between bureaus' delivery dates: a weak signal, no veto
    "representative": {"agree": 1, "differ": -1},
}
LINK_THRESHOLD = {"person": 5, "entity": 3}
MARGIN = 2
# levels that forbid a link whatever the score: the pair contradicts itself.
# Two registrations of one person name one house (a hukou holder has no
# residence permit), and a well-formed ID three edits away is somebody else's.
VETOES = {"name": ("different",), "address": ("differ",),
          "key": ("different", "division differs", "division or sequence differs")}
# the blocking passes: a record is compared with every candidate sharing one of these
PERSON_BLOCKS = {"birth date and surname": ("birth", "_surname"), "birth date and town": ("birth", "town_code"),
                 "name and ID division": ("name_key", "_division"),
                 "birth date and ID sequence": ("birth", "_sequence"),
                 "ID division, birth year and sequence": ("_division", "_year", "_sequence"),
                 # a name in pinyin has no surname character to block on: its
                 # birth date alone (some 25 candidate rows a date at scale
                 # 0.05, several hundred at 1.0; such records are few)
                 "birth date, for a name in pinyin": ("birth", "_in_pinyin")}
ENTITY_BLOCKS = {"name core": ("_trunk",)}
# the first six digits of an ID that Excel turned into a number (4.41900E+17)
MANGLED_DIVISION = "^([1-9])\\.([0-9]{5})[0-9]*E\\+?17$"


def _derived(frame, key_column: str, person: bool = True, candidates: bool = False):
    """``frame`` with the block columns: ``_surname`` (a Chinese name's
    first character), ``_core`` and ``_trunk`` (``entity_core_name``,
    ``entity_trunk_name``; entities only), ``_division`` (an
    ID's first six digits; from a mangled one's mantissa too),
    ``_sequence`` (an ID's sequence digits, 15-17), ``_year`` (its
    digits 7-10, the birth year: an impossible birth date often keeps it)
    and ``_in_pinyin`` (on the records' side, set for a name in pinyin; on the
    ``candidates``' side, for every person: any of them may be the one)."""
    from pyspark.sql import functions as F

    from pipelines.libraries.matching import entity_core_name, entity_trunk_name, is_latin_name

    name = F.col("name_key")
    key = F.col(key_column)
    division = F.when(F.length(key) == 18, F.substring(key, 1, 6))
    if "delivered_key" in frame.columns:
        raw = fold_code(clean_text(F.col("delivered_key")))
        mangled = F.concat(F.regexp_extract(raw, MANGLED_DIVISION, 1), F.regexp_extract(raw, MANGLED_DIVISION, 2))
        division = F.coalesce(division, F.when(F.length(mangled) == 6, mangled))
    in_pinyin = F.lit(person) if candidates else (F.lit(person) & is_latin_name(name))
    return (frame.withColumn("_surname", F.when(~is_latin_name(name), F.substring(name, 1, 1)))
            .withColumn("_in_pinyin", F.when(in_pinyin, F.lit("pinyin")))
            .withColumn("_core", F.lit(None).cast("string") if person else entity_core_name(name))
            .withColumn("_trunk", F.lit(None).cast("string") if person else entity_trunk_name(F.col("_core")))
            .withColumn("_division", division)
            .withColumn("_sequence", F.when(F.length(key) == 18, F.substring(key, 15, 3)))
            .withColumn("_year", F.when(F.length(key) == 18, F.substring(key, 7, 4))))


# prefixes of the block values: a key one edit from a record's, a name (for the count of its bearers)
NEAR_KEY, NAME = "key\u0001", "name\u0001"


def _block_values(blocks: dict, prefix: str = "", with_key: bool = False, with_name: bool = False):
    """An array column of a ``_derived`` row's block values, one per block
    of ``blocks`` whose columns (``prefix`` + name) are all known, each
    tagged with its block's position; on the candidates' side ``with_key``
    adds the row's key (``NEAR_KEY``, matched against the records' near
    keys) and ``with_name`` its name (``NAME``). One explode and one join pair a
    record with every candidate sharing a block, where a pass per block
    would scan the candidates once each."""
    from pyspark.sql import functions as F

    values = []
    for position, columns in enumerate(blocks.values()):
        parts = [F.col(prefix + c).cast("string") for c in columns]
        known = reduce(lambda a, b: a & b, [part.isNotNull() for part in parts])
        values.append(F.when(known, F.concat_ws("\u0001", F.lit(str(position)), *parts)))
    if with_key:
        values.append(F.concat(F.lit(NEAR_KEY), F.col("candidate_key")))
    if with_name:
        values.append(F.concat(F.lit(NAME), F.col(prefix + "name_key")))
    return F.filter(F.array(*values), lambda value: value.isNotNull())


def key_neighbours(keys: list[str], profile: str) -> list[tuple[str, str]]:
    """(delivered key, neighbour) for every key one edit away from a
    delivered one (a character replaced, or two neighbours swapped) whose
    check character is right: GB 11643 for ID numbers, GB 32100 for codes,
    with the weights of ``pipelines.reference`` (tested against
    python-stdnum). A character no key can hold (an X among an ID's digits,
    an O for a 0 in a code) is the one replaced; a check character no key
    can end in is replaced by the right one. Computed on the records' side,
    a few thousand keys with some 15 neighbours each, by updating the
    weighted sum, so the candidates are looked up, never expanded. Pure."""
    if profile == "person":
        alphabet, weights, checks = "0123456789", ref.ID_WEIGHTS, "0123456789X"

        def check(total: int) -> str:
            return ref.ID_CHECK_CHARS[total % 11]
    else:
        alphabet, weights, checks = ref.USCC_ALPHABET, ref.USCC_WEIGHTS, ref.USCC_ALPHABET

        def check(total: int) -> str:
            return ref.USCC_ALPHABET[(31 - total % 31) % 31]
    value = {c: i for i, c in enumerate(alphabet)}
    width = len(weights) + 1
    found = []
    for key in sorted({k for k in keys if k and len(k) == width}):
        body, last = key[:-1], key[-1]
        strange = [i for i, c in enumerate(body) if c not in value]
        near: set[str] = set()
        if len(strange) > 1:
            continue
        if strange:                                     # the one character no key holds is the typo
            i = strange[0]
            rest = sum(value[c] * w for j, (c, w) in enumerate(zip(body, weights)) if j != i)
            near.update(body[:i] + c + body[i + 1:] + last for c, v in value.items()
                        if check(rest + weights[i] * v) == last)
            if i == len(body) - 1 and last in value and body[i] in checks:     # the last two swapped
                swapped = body[:i] + last
                if check(rest + weights[i] * value[last]) == body[i]:
                    near.add(swapped + body[i])
            found += [(key, other) for other in sorted(near)]
            continue
        digits = [value[c] for c in body]
        total = sum(d * w for d, w in zip(digits, weights))
        if last not in checks:                          # only the check character is wrong
            found.append((key, body + check(total)))
            continue
        for i, (d, w) in enumerate(zip(digits, weights)):
            for c, v in value.items():
                if v != d and check(total + w * (v - d)) == last:
                    near.add(body[:i] + c + body[i + 1:] + last)
            if i + 1 < len(digits) and digits[i + 1] != d:
                swapped = total + (w - weights[i + 1]) * (digits[i + 1] - d)
                if check(swapped) == last:
                    near.add(body[:i] + body[i + 1] + body[i] + body[i + 2:] + last)
        if check(total) != last:                                   # the check character mistyped
            near.add(body + check(total))
        if last in value and last != body[-1]:                     # the last two swapped
            total_swapped = total + weights[-1] * (value[last] - digits[-1])
            if check(total_swapped) == body[-1]:
                near.add(body[:-1] + last + body[-1])
        found += [(key, other) for other in sorted(near)]
    return found


def match_unkeyed(unkeyed, candidates, profile: str, materialise=None):
    """Link each unkeyed record to at most one candidate key. Pure.

    ``unkeyed``: ``_record_id`` plus the comparison attributes (``name_key,
    birth, town_code, rep_key``, and where known ``address_key``, ``phone_key``,
    ``delivered_key`` and ``id_key``, the delivered key folded when it has a
    key's length). ``candidates``: ``candidate_key`` plus the same
    attributes (a key may have several rows). Blocks (``PERSON_BLOCKS``,
    ``ENTITY_BLOCKS``), and for both profiles the valid keys one edit from
    the delivered one (``key_neighbours``). Every pair is scored
    (``WEIGHTS``); a key not contradicted scores the best known level of
    each attribute over its rows.

    Returns (links: ``_record_id, key, method, score, evidence``; reviews:
    ``_record_id, reason, candidate_keys, evidence``; candidate keys best
    first). Both come from one comparison; ``materialise`` (e.g. a
    checkpoint) is applied to it, so a caller that uses both does not
    compare twice."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.libraries.matching import is_latin_name, pinyin_key

    spark = unkeyed.sparkSession
    person = profile == "person"
    for name in ("id_key", "delivered_key", "address_key", "phone_key"):
        if name not in unkeyed.columns:
            unkeyed = unkeyed.withColumn(name, F.lit(None).cast("string"))
    if "_birth_from_key" not in unkeyed.columns:
        unkeyed = unkeyed.withColumn("_birth_from_key", F.lit(False))
    for name in ("address_key", "phone_key"):
        if name not in candidates.columns:
            candidates = candidates.withColumn(name, F.lit(None).cast("string"))
    attributes = ("name_key", "birth", "town_code", "rep_key", "address_key", "phone_key")
    # what the record's own key says, computed once per record, not per pair (parsing an impossible birth
    # date fails with an exception inside Spark, tens of microseconds, and such a record has many pairs)
    key = F.col("id_key")
    readable = (F.length(key) == 18) & (plausible_birth(id_birth_date(key)).isNotNull() if person else F.lit(True))
    records = _derived(unkeyed.select("_record_id", *attributes, "delivered_key", "id_key", "_birth_from_key",
                                      F.coalesce(readable, F.lit(False)).alias("_key_readable"),
                                      F.coalesce(key.rlike("^[0-9]{17}[0-9X]$"), F.lit(False))
                                      .alias("_key_well_formed"),
                                      F.coalesce(is_latin_name(F.col("name_key")), F.lit(False))
                                      .alias("_name_in_pinyin")),
                       "id_key", person)
    theirs = _derived(candidates.select(*CANDIDATE_ATTRIBUTES), "candidate_key", person, candidates=True).select(
        "candidate_key", *[F.col(x).alias(f"c_{x}") for x in (*attributes, "_surname", "_core", "_trunk",
                                                               "_division", "_sequence", "_year", "_in_pinyin")])
    blocks = PERSON_BLOCKS if person else ENTITY_BLOCKS
    # one action on the (checkpointed, small) records: their readable keys and whether any name is in pinyin
    seen = records.agg(F.collect_set(F.when(F.length("id_key") == 18, F.col("id_key"))).alias("keys"),
                       F.max(is_latin_name(F.col("name_key"))).alias("latin")).first()
    neighbours = key_neighbours(list(seen["keys"] or []), profile)
    # every (record, block value) pair, the keys one edit away among them
    mine = records.select("_record_id", F.explode(_block_values(blocks)).alias("_block"))
    if neighbours:
        near = spark.createDataFrame([(key, NEAR_KEY + other) for key, other in neighbours],
                                     "id_key string, _block string")
        mine = mine.unionByName(records.select("_record_id", "id_key").join(F.broadcast(near), "id_key")
                                .select("_record_id", "_block"))
    names = records.where(F.col("name_key").isNotNull()).select(F.col("name_key").alias("c_name_key")).distinct()
    # one scan of the candidates keeps the rows that share a block value or a near key with a record (a
    # broadcast semi-join, map-side: no candidate row is shuffled unless kept); distinct, since the
    # maintained candidates hold a row per load that delivered it
    wanted = F.broadcast(mine.select("_block").distinct())
    kept = (theirs.select("*", F.explode(_block_values(blocks, "c_", with_key=True)).alias("_block"))
            .join(wanted, "_block", "left_semi").distinct().localCheckpoint())
    pairs = records.join(
        mine.join(kept, "_block")
        .select("_record_id", *theirs.columns, F.col("_block").startswith(NEAR_KEY).alias("_via_key")),
        "_record_id")
    # how many candidate keys carry each of the records' names (a name only
    # one key has is strong evidence): a second, narrow scan of the
    # candidates (three columns; a common name such as 张伟 has thousands of
    # bearers, whose whole rows the first scan need not carry)
    bearing = theirs.select("c_name_key", "c__division", "candidate_key").join(F.broadcast(names), "c_name_key")
    # a key has one division: the city's count is the divisions' sum
    in_division = (bearing.groupBy("c_name_key", "c__division")
                   .agg(F.countDistinct("candidate_key").alias("_bearers_in_division")))
    in_city = in_division.groupBy("c_name_key").agg(F.sum("_bearers_in_division").alias("_bearers_in_city"))
    pairs = pairs.join(in_city, "c_name_key", "left").join(in_division, ["c_name_key", "c__division"], "left")
    # the readings (toneless pinyin, pypinyin on the driver) of the few names
    # concerned: a candidate's name against a record's name in pinyin, and
    # both names of a pair one character apart (a homophone typo, as a
    # pinyin input method makes it, reads the same: 王晓明 / 王小明)
    n, cn = F.col("name_key"), F.col("c_name_key")
    close = _one_apart(n, cn) & (F.substring(n, 1, 1) == F.substring(cn, 1, 1)) if person else F.lit(False)
    in_pinyin = (F.col("_name_in_pinyin") & cn.isNotNull()) if seen["latin"] else F.lit(False)
    read = [] if not (person or seen["latin"]) else pairs.where(in_pinyin | close).select(
        F.when(close, n).alias("mine"), "c_name_key").distinct().collect()
    names = sorted({r["c_name_key"] for r in read} | {r["mine"] for r in read if r["mine"]})
    if names:
        readings = spark.createDataFrame([(name, pinyin_key(name)) for name in names], "name string, reading string")
        pairs = (pairs.join(F.broadcast(readings.toDF("c_name_key", "_c_pinyin")), "c_name_key", "left")
                 .join(F.broadcast(readings.toDF("name_key", "_pinyin")), "name_key", "left"))
    else:
        pairs = (pairs.withColumn("_c_pinyin", F.lit(None).cast("string"))
                 .withColumn("_pinyin", F.lit(None).cast("string")))
    # each attribute's level computed once, as a column (inlined everywhere it
    # is used, the stage's generated code outgrew the JVM's 64 KB per method)
    pairs = pairs.select("_record_id", "candidate_key",
                         *[level.alias(f"_level_{a}") for a, level in _levels(profile).items()])
    levels = {a: F.col(f"_level_{a}") for a in WEIGHTS if f"_level_{a}" in pairs.columns}
    score = reduce(lambda a, b: a + b, [_weight(attribute, level) for attribute, level in levels.items()])
    evidence = F.concat_ws("; ", *[F.concat(F.lit(f"{a} "), e) for a, e in levels.items()])
    # one pair row per candidate row and pass. A key contradicts the record
    # when one of its rows does and none of its rows says the opposite: a
    # namesake's insurance row says nothing either way, the namesake's
    # registration names another house (a veto), so the key is vetoed and
    # ranks by that row; a person with a stale address in one row and this
    # house in another is not. Otherwise a key scores the best known level
    # of each attribute over its rows: a row that does not know an attribute
    # (an insurance row has no phone) neither outweighs nor hides one that
    # does (a namesake's permit with another phone).
    flags = {
        "name_vetoes": F.coalesce(levels["name"] == "different", F.lit(False)),
        "name_holds": F.coalesce(levels["name"] != "different", F.lit(False)),
        "house_vetoes": F.coalesce(levels["address"] == "differ", F.lit(False)),
        "house_holds": F.coalesce(levels["address"] == "agree", F.lit(False)),
        "key_vetoes": F.coalesce(levels["key"].isin(*VETOES["key"]), F.lit(False)),
    }
    row_vetoes = flags["name_vetoes"] | flags["house_vetoes"] | flags["key_vetoes"]
    # of two levels of one weight, the one WEIGHTS lists first (an exact name over a homophone) is shown
    known = {a: F.when(level.isNotNull(), F.struct(_weight(a, level).alias("weight"), _rank(a, level).alias("rank"),
                                                   level.alias("level"))) for a, level in levels.items()}
    per_key = (pairs.select("_record_id", "candidate_key", score.alias("score"), evidence.alias("evidence"),
                            row_vetoes.alias("row_vetoes"), *[flag.alias(name) for name, flag in flags.items()],
                            *[value.alias(f"_known_{a}") for a, value in known.items()])
               .groupBy("_record_id", "candidate_key")
               .agg(*[F.max(name).alias(name) for name in flags],
                    *[F.max(f"_known_{a}").alias(f"_best_{a}") for a in known],
                    F.max(F.struct("row_vetoes", "score", "evidence")).alias("_vetoing")))
    best_score = reduce(lambda a, b: a + b, [F.coalesce(F.col(f"_best_{a}.weight"), F.lit(0)) for a in known])
    best_evidence = F.concat_ws("; ", *[F.when(F.col(f"_best_{a}").isNotNull(),
                                               F.concat(F.lit(f"{a} "), F.col(f"_best_{a}.level"))) for a in known])
    contradicts = ((F.col("name_vetoes") & ~F.col("name_holds")) | (F.col("house_vetoes") & ~F.col("house_holds"))
                   | F.col("key_vetoes"))
    def shown(field: str):
        best = best_score if field == "score" else best_evidence
        return F.when(contradicts, F.col(f"_vetoing.{field}")).otherwise(best)

    scored = per_key.select("_record_id", "candidate_key", contradicts.alias("contradicts"),
                            shown("score").alias("score"), shown("evidence").alias("evidence"))
    ranked = scored.withColumn("_rank", F.row_number().over(
        Window.partitionBy("_record_id").orderBy(F.desc("score"), "candidate_key")))
    first = F.col("_rank") == 1
    summary = ranked.groupBy("_record_id").agg(
        F.max("score").alias("score"),
        F.max(F.when(F.col("_rank") == 2, F.col("score"))).alias("next_score"),
        F.max(F.when(first, F.col("candidate_key"))).alias("key"),
        F.max(F.when(first, F.col("contradicts"))).alias("contradicts"),
        F.max(F.when(first, F.col("evidence"))).alias("evidence"),
        F.slice(F.transform(F.sort_array(F.collect_list(F.struct("_rank", "candidate_key"))),
                            lambda x: x["candidate_key"]), 1, 10).alias("candidate_keys"))
    summary = materialise(summary) if materialise is not None else summary
    threshold = LINK_THRESHOLD[profile]
    margin = F.col("score") - F.coalesce(F.col("next_score"), F.lit(-1000))
    next_one = F.when(F.col("next_score").isNotNull(), F.concat(F.lit(", next "), F.col("next_score").cast("string")))
    full_evidence = F.concat(F.col("evidence"), F.lit("; score "), F.col("score").cast("string"),
                             F.coalesce(next_one, F.lit("")))
    linkable = (F.col("score") >= threshold) & (margin >= MARGIN) & ~F.col("contradicts")
    links = summary.where(linkable).select(
        "_record_id", "key", F.lit(f"{profile}:scored").alias("method"), F.col("score").cast("int").alias("score"),
        full_evidence.alias("evidence"))
    reviewed = summary.where(~linkable).select(
        "_record_id",
        F.when(F.col("contradicts"), F.lit("the best candidate contradicts it (its name, house or ID)"))
        .when(F.col("score") < threshold, F.lit(f"no candidate scores the {threshold} a link needs"))
        .when(F.col("next_score") == F.col("score"), F.lit("ambiguous: several candidates score the same"))
        .otherwise(F.lit(f"ambiguous: another candidate scores within {MARGIN}")).alias("reason"),
        "candidate_keys", full_evidence.alias("evidence"))
    needs = ["birth"] if person else ["name_key"]
    blockable = reduce(lambda a, b: a & b, [F.col(x).isNotNull() for x in needs]) | (F.length("id_key") == 18)
    if person:
        blockable = blockable | (F.col("name_key").isNotNull() & F.col("_division").isNotNull())
    unmatched = records.join(summary.select("_record_id"), "_record_id", "left_anti").select(
        "_record_id",
        F.when(blockable, F.lit(f"no candidate shares a block ({', '.join(blocks)}, or a key one edit away)"))
        .otherwise(F.lit("too little to match on: " + " or ".join(needs) + " and a readable key missing"))
        .alias("reason"),
        F.array().cast("array<string>").alias("candidate_keys"), F.lit(None).cast("string").alias("evidence"))
    return links, reviewed.unionByName(unmatched)


def _levels(profile: str) -> dict:
    """The agreement level of each attribute of a pair row, as Spark
    columns over ``match_unkeyed``'s pair columns (``WEIGHTS`` names them);
    null when either side is unknown."""
    from pyspark.sql import functions as F

    def level(condition_levels, mine, theirs):
        expr = F.when(F.col(mine).isNull() | F.col(theirs).isNull(), F.lit(None).cast("string"))
        for condition, name in condition_levels:
            expr = expr.when(condition, F.lit(name))
        return expr

    def agreement(mine, theirs):
        return level([(F.col(mine) == F.col(theirs), "agree"), (F.lit(True), "differ")], mine, theirs)

    n, cn = F.col("name_key"), F.col("c_name_key")
    one_apart = _one_apart(n, cn)
    person = profile == "person"
    # the only key with the name: in the city, or in the division the record's key names; of
    # three characters or more (a misspelt two-character name is often somebody else's)
    alone = (F.length(n) >= 3) & F.when(F.col("_division").isNull(), F.col("_bearers_in_city") == 1).otherwise(
        (F.col("_division") == F.col("c__division")) & (F.col("_bearers_in_division") == 1))
    name_levels = ([((n == cn) & alone, "unique")] if person else []) + [
        (n == cn, "exact"), (F.col("_name_in_pinyin") & (n == F.col("_c_pinyin")), "pinyin")]
    if person:
        same_surname = one_apart & (F.substring(n, 1, 1) == F.substring(cn, 1, 1))
        name_levels += [(same_surname & (F.col("_pinyin") == F.col("_c_pinyin")), "homophone"),
                        (same_surname, "close")]
    else:
        name_levels += [(F.col("_core") == F.col("c__core"), "variant"),
                        ((F.length("_core") >= 4) & (F.levenshtein(F.col("_core"), F.col("c__core")) == 1),
                         "core one apart"),
                        (F.col("_trunk") == F.col("c__trunk"), "branch")]
    name_levels += [(F.lit(True), "different")]
    key, theirs = F.col("id_key"), F.col("candidate_key")
    edits = F.when(F.col("_via_key"), F.lit(1)).otherwise(F.levenshtein(key, theirs))
    readable, well_formed = F.col("_key_readable"), F.col("_key_well_formed")      # of the record, once
    # the strongest level that holds comes first: an unreadable ID's agreeing
    # parts (+4) outrank one edit (+3)
    key_level = F.when(key.isNull(), F.when(F.col("_division") != F.col("c__division"), F.lit("division differs"))
                       ).when(edits == 0, F.lit("exact"))
    # only the check character differs: the 17 digits that say who it is agree
    # (a namesake of the same birth date differs in its sequence digits)
    key_level = key_level.when(F.substring(key, 1, 17) == F.substring(theirs, 1, 17), F.lit("check character"))
    parts_agree = F.lit(False)
    if person:
        # an ID whose birth date cannot be read: its other digits still speak;
        # with the birth date the row delivered in a column of its own they
        # spell the whole key
        parts_agree = ~readable & (F.substring(key, 1, 6) == F.substring(theirs, 1, 6)) & (
            F.substring(key, 15, 3) == F.substring(theirs, 15, 3))
        delivered_birth = ~F.col("_birth_from_key") & (F.col("birth") == F.col("c_birth"))
        key_level = key_level.when(parts_agree & delivered_birth, F.lit("division and sequence agree, "
                                                                        "the birth date delivered beside"))
        key_level = key_level.when(parts_agree & (F.substring(key, 7, 4) == F.substring(theirs, 7, 4)),
                                   F.lit("division, birth year and sequence agree"))
    key_level = key_level.when(edits == 1, F.lit("1 edit")).when(edits == 2, F.lit("2 edits"))
    if person:
        key_level = (key_level.when(parts_agree, F.lit("division and sequence agree"))
                     .when(~readable & well_formed, F.lit("division or sequence differs")))
    key_level = key_level.when(readable, F.lit("different"))
    birth = agreement("birth", "c_birth")
    if person:
        # a birth date read from a mistyped ID whose typo is in the birth digits: the key's edits already
        # count it, and the date read is the typo's
        in_birth = F.substring(key, 7, 8) != F.substring(theirs, 7, 8)
        birth = F.when(F.col("_birth_from_key") & edits.between(1, 2) & in_birth,
                       F.lit(None).cast("string")).otherwise(birth)
    return {
        "name": level(name_levels, "name_key", "c_name_key"),
        "birth": birth,
        "key": key_level,
        "town": agreement("town_code", "c_town_code"),
        "address": agreement("address_key", "c_address_key"),
        "phone": agreement("phone_key", "c_phone_key"),
        "representative": agreement("rep_key", "c_rep_key"),
    }


def _rank(attribute: str, level):
    """Minus the position of ``level`` in ``WEIGHTS[attribute]`` (listed strongest first)."""
    from pyspark.sql import functions as F

    out = F.lit(-len(WEIGHTS[attribute]))
    for position, name in enumerate(WEIGHTS[attribute]):
        out = F.when(level == name, F.lit(-position)).otherwise(out)
    return out


def _one_apart(name, other):
    """Two names of one length, two characters or more, one character apart."""
    from pyspark.sql import functions as F

    return (F.length(name) == F.length(other)) & (F.levenshtein(name, other) == 1) & (F.length(name) >= 2)


def _weight(attribute: str, level):
    from pyspark.sql import functions as F

    out = F.lit(0)
    for name, value in WEIGHTS[attribute].items():
        out = F.when(level == name, F.lit(value)).otherwise(out)
    return out


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


def unkeyed_records(spec: LibrarySpec, alias: str, rescued):
    """The rescued rows of source ``alias`` without a valid key, as the
    records ``match_unkeyed`` compares: ``_record_id``, lineage, the
    comparison attributes, the key as delivered (``delivered_key``) and,
    folded, when it has a key's length (``id_key``). Pure."""
    from pyspark.sql import functions as F

    source = spec.sources[alias]
    mapping = spec.resolution.candidates.get(source.feed, {})
    raw_key = F.col(f"_raw_{source.key}") if f"_raw_{source.key}" in rescued.columns else F.lit(None)
    folded = fold_code(clean_text(raw_key.cast("string")))
    return _fields(rescued.where(F.col(source.key).isNull()), mapping, spec.resolution.profile, raw_key).select(
        "_record_id", F.lit(spec.library).alias("library"), F.lit(source.feed).alias("feed"),
        F.lit(alias).alias("source_alias"), "_load_id", "_source_file", "_row_number",
        "name_key", "birth", "town_code", "rep_key", raw_key.cast("string").alias("delivered_key"),
        F.when(F.length(folded) == 18, folded).alias("id_key"), "address_key", "phone_key", "_birth_from_key")


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
    loads, those sharing a block or a name with a changed candidate row
    (``changed_blocks``, ``records_in_blocks``) and any without a result
    from the last build. Every other one keeps its link or open review (with
    the review's ``found_at``); the result is the same as matching them all,
    since a record is only compared with the candidates of its blocks.

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
            F.lit(None).cast("int").alias("score"), F.lit(None).cast("string").alias("evidence")))
        unkeyed_parts.append(unkeyed_records(spec, alias, rescued))
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
        candidates = (candidate_keys(candidates) if candidates is not None
                      else spark.createDataFrame([], "candidate_key string, name_key string, birth date, "
                                                      "town_code string, rep_key string, address_key string, "
                                                      "phone_key string"))
        links, reviews = match_unkeyed(to_match, candidates, resolution.profile,
                                       materialise=lambda frame: frame.localCheckpoint())
        matched_now = to_match.join(links, "_record_id").select("_record_id", *lineage, "key", "method", "score",
                                                                "evidence")
        record = F.create_map(*[x for name in ("name_key", "birth", "town_code", "rep_key", "delivered_key")
                                for x in (F.lit(name), F.col(name).cast("string"))])
        review_now = to_match.join(reviews, "_record_id").select(
            *lineage, "reason", record.alias("record"), "candidate_keys", F.lit("open").alias("status"),
            F.current_timestamp().alias("found_at"), "evidence")
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
        "_record_id", *lineage, "key", "method", F.lit(None).cast("int").alias("score"),
        F.lit("a reviewer's decision (governance.review_decisions)").alias("evidence")).localCheckpoint()
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
             .select(record_id, "key", "method", "score", _column_or_null(links_before, "evidence"))
             if links_before is not None else spark.createDataFrame([], "_record_id string, key string, "
                                                                        "method string, score int, evidence string"))
    reviews = read_reviews(spark, spec.library, settings)
    reviews = (reviews.select(record_id, "reason", "record", "candidate_keys", "status", "found_at",
                              _column_or_null(reviews, "evidence"))
               if reviews is not None else None)
    known = links.select("_record_id")
    if reviews is not None:
        known = known.unionByName(reviews.select("_record_id"))
    changed = changed_blocks(spark, spec, plan, state, settings, candidates)
    new = F.col("_load_id").isin(*plan.new_loads) if plan.new_loads else F.lit(False)
    again = (unkeyed.where(new).select("_record_id")
             .unionByName(records_in_blocks(unkeyed, changed, spec.resolution.profile))
             .unionByName(unkeyed.join(known, "_record_id", "left_anti").select("_record_id"))
             .distinct().localCheckpoint())
    to_match = unkeyed.join(again, "_record_id", "left_semi").localCheckpoint()
    rest = unkeyed.join(again, "_record_id", "left_anti").select("_record_id", *lineage)
    kept_links = rest.join(links, "_record_id").select("_record_id", *lineage, "key", "method", "score", "evidence")
    kept_reviews = (rest.join(reviews, "_record_id").select(*lineage, "reason", "record", "candidate_keys",
                                                             "status", "found_at", "evidence")
                    if reviews is not None else None)
    return to_match, kept_links, kept_reviews


def _column_or_null(frame, name: str):
    """``frame``'s column ``name``, or a null string named so when a table
    written before the column existed lacks it."""
    from pyspark.sql import functions as F

    return F.col(name) if name in frame.columns else F.lit(None).cast("string").alias(name)


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
        # mergeSchema: tables written before the evidence column (issue 17) gain it
        (frame.write.format("delta").mode("overwrite").partitionBy("library").option("mergeSchema", "true")
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
