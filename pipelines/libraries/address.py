"""The geospatial library (空间地理库): standard addresses, grid cells, and
matching other bureaus' free-text addresses to standard address codes.

Matching is a join, not a fuzzy search: a free-text address is reduced to a
matching key (province and city prefixes dropped, full-width digits folded,
spaces removed, anything after the first comma or bracket -- building,
phase, notes -- cut off, a trailing building after the house number cut
off), and the standard addresses offer two keys each: town + community +
road + number, and town + road + number (a road and house number identify an
address within a town; communities are often left out). A key that two
standard addresses share matches neither. Per feed, the match rate goes to
``governance.address_match_rates`` and the unmatched texts to
``governance.unmatched_addresses`` at every build of ``base.address`` and
whenever a matched feed gets a delivery; each delivery is measured once
(``report_after_build``).
"""

from __future__ import annotations

import threading
from functools import reduce

from pipelines.contracts import get_contract
from pipelines.lake.delta import (append_table, arrow_schema, delta_exists, live_loads_of, read_arrow, read_silver,
                                  replace_table, rows_table, table_exists)
from pipelines.lake.paths import governance_path, state_lock, table_path
from pipelines.lake.tables import ADDRESS_MATCH_RATES_DDL, UNMATCHED_ADDRESSES_DDL
from pipelines.libraries.columns import fold_digits
from pipelines.libraries.golden import latest_per_key
from pipelines.settings import Settings

# (feed, column) pairs whose free text is matched to standard addresses
MATCHED_ADDRESS_COLUMNS = (
    ("psb.hukou", "hukou_address"),
    ("psb.residence_permit", "residence_address"),
    ("amr.business_registration", "domicile_address"),
    ("mca.social_org", "domicile_address"),
    ("amr.food_licence", "premises_address"),
    ("hud.construction_permit", "construction_address"),
    ("grid.hazard_report", "address"),
)


def _town_names() -> dict[str, str]:
    """Every way an address begins with a town -> the town's full name:
    the full name, and the name without 镇 / 街道 (长安 for 长安镇)."""
    from pipelines.reference import TOWNS

    names = {}
    for name in TOWNS.values():
        names[name] = name
        short = name.removesuffix("街道").removesuffix("镇")
        if len(short) >= 2:
            names.setdefault(short, name)
    return names


def address_match_key(text):
    """The matching key of a free-text address (a Column): the province and
    city dropped (东莞 without 市 too), the town written in full (长安 →
    长安镇), what follows a comma or bracket cut off, and the house number
    as 12号 however the building is written (12号楼, 12栋, 12号之一, 12号3栋)."""
    from pyspark.sql import functions as F

    key = F.regexp_replace(fold_digits(text), "[\\s\\u3000\\u00a0]", "")
    # 东莞 alone too, but not the 东莞 of the towns 东莞港 and 东莞生态园 or of 东莞大道
    key = F.regexp_replace(key, "^(广东省)?(东莞市|东莞(?!港|生态园|大道))?", "")
    key = F.regexp_replace(key, "[，,；;（(].*$", "")
    towns = _town_names()
    # a town's name, not a road's (东城路 is no 东城街道)
    pattern = "^(" + "|".join(sorted(towns, key=len, reverse=True)) + ")(?!路|大道|大街|街|巷)"
    leading = F.regexp_extract(key, pattern, 1)
    full = F.create_map(*[F.lit(x) for pair in towns.items() for x in pair])[leading]
    key = F.when(leading != "", F.concat(full, F.regexp_replace(key, pattern, ""))).otherwise(key)
    key = F.regexp_replace(key, "(号)[0-9A-Za-z]+(栋|座|幢).*$", "$1")
    return F.regexp_replace(key, "([0-9]+)(号楼|号之[一二三四五六七八九十]|栋|幢|座)$", "$1号")


def standard_address_keys(addresses):
    """``match_key -> address_code`` for keys that name exactly one standard address. Pure."""
    from pyspark.sql import functions as F

    full = F.concat_ws("", "town_name", "community", "street", "house_number")
    short = F.concat_ws("", "town_name", "street", "house_number")
    keys = addresses.select(F.explode(F.array_distinct(F.array(address_match_key(full), address_match_key(short))))
                            .alias("match_key"), "address_code")
    return (keys.groupBy("match_key").agg(F.count_distinct("address_code").alias("_n"),
                                          F.first("address_code").alias("address_code"))
            .where("_n = 1").drop("_n"))


def match_addresses(frame, text_column: str, keys, output: str):
    """``frame`` with ``output`` = the standard address code its free text names (or null). Pure.

    The keys are first cut to those the frame's texts can match (a semi-join
    on its distinct match keys), so a day's few thousand records join a few
    thousand keys, not the millions of a city's standard addresses."""
    from pyspark.sql import functions as F

    keyed = frame.withColumn("_match_key", address_match_key(F.col(text_column)))
    wanted = keys.join(keyed.select(F.col("_match_key").alias("match_key")).distinct(), "match_key", "left_semi")
    # ``wanted`` is at most the whole key table, which was always broadcast.
    # Left to adaptive execution (a sort-merge join on a first build) the
    # two address columns of 10.4M population records took 141.6 s against
    # 106.9 s broadcast (scale 1.0, same rows), so the hint stays.
    return (keyed.join(F.broadcast(wanted.select(F.col("match_key").alias("_mk"),
                                                 F.col("address_code").alias(output))),
                       F.col("_match_key") == F.col("_mk"), "left").drop("_mk", "_match_key"))


def wkt_points(wkt):
    """A WKT polygon's outer ring as ``array<struct<x, y>>``."""
    from pyspark.sql import functions as F

    ring = F.regexp_extract(wkt, "\\(\\(([^)]*)\\)", 1)
    return F.transform(F.split(ring, "\\s*,\\s*"), lambda p: F.struct(
        F.split(F.trim(p), "\\s+")[0].cast("double").alias("x"), F.split(F.trim(p), "\\s+")[1].cast("double").alias("y")))


def point_in_ring(x, y, points):
    """Ray casting over a ring (Spark SQL higher-order functions; no UDF)."""
    from pyspark.sql import functions as F

    def step(inside, i):
        a, b = points[i], points[i + 1]
        crosses = ((a["y"] > y) != (b["y"] > y)) & (x < (b["x"] - a["x"]) * (y - a["y"]) / (b["y"] - a["y"]) + a["x"])
        return F.when(crosses, ~inside).otherwise(inside)

    return F.aggregate(F.sequence(F.lit(0), F.size(points) - 2), F.lit(False), step)


def grid_cells(spark, settings: Settings, _spec=None, _today=None, live: dict | None = None):
    """base.grid: the latest record of every grid cell, with its bounding box.
    ``live``: feed -> the load ids to read (default: all of silver)."""
    from pyspark.sql import functions as F

    cells = _required_silver(spark, "grid.cell", settings, live)
    latest = latest_per_key(cells, "grid_code", ["grid_name", "town_code", "boundary_wkt", "grid_worker"])
    points = wkt_points(F.col("boundary_wkt"))
    return latest.select(
        F.col("_key").alias("grid_code"), "grid_name", "town_code", "boundary_wkt", "grid_worker",
        F.array_min(F.transform(points, lambda p: p["x"])).alias("min_longitude"),
        F.array_max(F.transform(points, lambda p: p["x"])).alias("max_longitude"),
        F.array_min(F.transform(points, lambda p: p["y"])).alias("min_latitude"),
        F.array_max(F.transform(points, lambda p: p["y"])).alias("max_latitude"),
        F.lit("grid.cell").alias("source"), F.col("_load_id").alias("source_load_id"))


def assign_grid_cells(addresses, cells):
    """``addresses`` with ``grid_code``: the cell whose polygon contains the
    point (bounding box first, then ray casting; the lowest code on a shared edge). Pure."""
    from pyspark.sql import functions as F

    c = cells.select("grid_code", F.col("town_code").alias("_cell_town"), "min_longitude", "max_longitude",
                     "min_latitude", "max_latitude", wkt_points(F.col("boundary_wkt")).alias("_ring"))
    a = addresses.select("address_code", "town_code", "longitude", "latitude")
    in_box = ((a["town_code"] == c["_cell_town"]) & a["longitude"].between(c["min_longitude"], c["max_longitude"])
              & a["latitude"].between(c["min_latitude"], c["max_latitude"]))
    # The ray casting is the join condition's last term, so it runs only for
    # the one or two cells whose box holds the point. As a filter after the
    # join, Spark pushed it into the condition ahead of the box test, and the
    # interpreted higher-order functions ran for every cell of the town: 190
    # of base.address's 208 s of records at scale 1.0 (3.1M addresses).
    inside = (a.join(c, in_box & point_in_ring(F.col("longitude"), F.col("latitude"), F.col("_ring")))
              .groupBy("address_code").agg(F.min("grid_code").alias("grid_code")))
    return addresses.join(inside, "address_code", "left")


def standard_addresses(spark, settings: Settings, _spec=None, _today=None, live: dict | None = None):
    """base.address: the latest record of every standard address, with its
    grid cell. ``live``: feed -> the load ids to read (default: all of silver)."""
    from pyspark.sql import functions as F

    columns = ["town_code", "town_name", "community", "street", "house_number", "building", "standard_address",
               "longitude", "latitude"]
    latest = latest_per_key(_required_silver(spark, "nr.standard_address", settings, live), "address_code", columns)
    addresses = latest.select(F.col("_key").alias("address_code"), *columns,
                              F.lit("nr.standard_address").alias("source"), F.col("_load_id").alias("source_load_id"))
    if read_silver(spark, "grid.cell", settings) is not None and (live is None or live["grid.cell"]):
        return assign_grid_cells(addresses, grid_cells(spark, settings, live=live))
    return addresses.withColumn("grid_code", F.lit(None).cast("string"))


def address_match_report(spark, keys, settings: Settings):
    """(rates, unmatched): per matched feed column, rows / matched / rate, and
    the unmatched texts with their rows, measured over all of silver at once:
    what the incremental ``report_after_build`` must equal (its test)."""
    from pyspark.sql import functions as F

    rates, unmatched = [], []
    for feed, column in MATCHED_ADDRESS_COLUMNS:
        silver = read_silver(spark, feed, settings)
        if silver is None:
            continue
        texts = silver.where(F.col(column).isNotNull()).select(column)
        matched = match_addresses(texts, column, keys, "address_code")
        rates.append(matched.groupBy().agg(
            F.lit(feed).alias("feed"), F.lit(column).alias("column_name"), F.count("*").alias("rows"),
            F.count("address_code").alias("matched")))
        unmatched.append(matched.where(F.col("address_code").isNull()).groupBy(F.col(column).alias("address_text"))
                         .count().select(F.lit(feed).alias("feed"), F.lit(column).alias("column_name"),
                                         "address_text", F.col("count").alias("rows")))
    if not rates:
        return None, None
    rate_frame = reduce(lambda a, b: a.unionByName(b), rates).withColumn(
        "match_rate", F.round(F.col("matched") / F.col("rows"), 6))
    return rate_frame, reduce(lambda a, b: a.unionByName(b), unmatched)


def _write_report(rates, unmatched, settings: Settings) -> list[dict]:
    """Replace governance.address_match_rates and governance.unmatched_addresses
    (delta-rs, one commit each) with ``rates`` and ``unmatched`` (Arrow
    tables: the measurements per delivery, see ``report_after_build``)
    summed per feed column and per text; returns the rates as rows, by feed."""
    from pipelines.settings import utc_now

    per_column = rates.group_by(["feed", "column_name"], use_threads=False).aggregate(
        [("rows", "sum"), ("matched", "sum")])
    measured_at = utc_now()
    rows = sorted(({"feed": r["feed"], "column_name": r["column_name"], "rows": r["rows_sum"],
                    "matched": r["matched_sum"], "match_rate": _rounded_rate(r["matched_sum"], r["rows_sum"]),
                    "measured_at": measured_at} for r in per_column.to_pylist()),
                  key=lambda r: (r["feed"], r["column_name"]))
    per_text = (unmatched.group_by(["feed", "column_name", "address_text"], use_threads=False)
                .aggregate([("rows", "sum")]).select(["feed", "column_name", "address_text", "rows_sum"])
                .rename_columns(["feed", "column_name", "address_text", "rows"]))
    replace_table(governance_path("address_match_rates", settings), rows_table(rows, ADDRESS_MATCH_RATES_DDL))
    replace_table(governance_path("unmatched_addresses", settings),
                  per_text.cast(arrow_schema(UNMATCHED_ADDRESSES_DDL)))
    return [row | {"measured_at": measured_at.replace(tzinfo=None)} for row in rows]


def _rounded_rate(matched: int, rows: int) -> float | None:
    """matched / rows rounded to 6 places half up, as Spark's ``round`` does
    (``address_match_report``): the same double for the same counts."""
    from decimal import ROUND_HALF_UP, Decimal

    if not rows:
        return None
    return float(Decimal(repr(matched / rows)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def address_keys_from_lake(spark, settings: Settings, live: list[str] | None = None):
    """Matching keys of the standard addresses of the live nr.standard_address
    loads (``live``, default: as the manifest says now), the ones base.address
    is built from; None before the first delivery.

    The keys are a maintained table (``<lake>/state/address_keys``), computed
    once per set of live standard-address deliveries and matching code (its
    signature is the commit's userMetadata, written with the rows in one
    commit) and read by every build and report until the next snapshot:
    normalising millions of standard addresses for a few thousand new
    records was most of a daily build's matching."""
    from pipelines.libraries.resolution import live_load_ids

    if live is None:
        live = live_load_ids(settings).get("nr.standard_address", [])
    addresses = read_silver(spark, "nr.standard_address", settings, live)
    if addresses is None:
        return None
    signature = _standard_signature(settings, live)
    path = settings.lake_path("state", "address_keys")
    # libraries built at once (threads of one build, or Airflow's tasks) need the keys at once: one writes them
    with state_lock("state.address_keys", settings) if settings.lake_is_local else _KEYS_WRITTEN:
        version = _version_written_with(path, signature) if delta_exists(spark, path) else None
        if version is None:
            latest = latest_per_key(addresses, "address_code", ["town_name", "community", "street", "house_number"])
            (standard_address_keys(latest.withColumnRenamed("_key", "address_code")).write.format("delta")
             .mode("overwrite").option("overwriteSchema", "true").option("userMetadata", signature).save(path))
            version = _version_written_with(path, signature)
    # that version, pinned: a build beside this one may write other keys meanwhile
    return spark.read.format("delta").option("versionAsOf", version).load(path)


_KEYS_WRITTEN = threading.Lock()      # a lake on an object store: no lock file; one process's threads take turns


def _version_written_with(path: str, signature: str) -> int | None:
    """The table's current version if its rows were last written with
    ``signature`` (upkeep's compaction and vacuum commits after that do not
    change the rows), else None."""
    from deltalake import DeltaTable as LogTable

    table = LogTable(path)
    for commit in table.history():                     # newest first
        if commit.get("operation") in ("OPTIMIZE", "VACUUM START", "VACUUM END"):
            continue
        return table.version() if commit.get("userMetadata") == signature else None
    return None


def _standard_signature(settings: Settings, standard: list[str]) -> str:
    """What matching against the standard addresses depends on: the address
    library's build digest (its spec, contracts and the matching code; as
    ``incremental.maintained_digest`` has it, so a code change an operator
    accepted measures nothing again) and the live nr.standard_address loads."""
    from pipelines.libraries.incremental import maintained_digest
    from pipelines.library_specs import load_library_spec

    return "+".join([maintained_digest(load_library_spec("address", settings), settings)] + sorted(standard))


def _required_silver(spark, feed: str, settings: Settings, live: dict | None = None):
    """The silver table of ``feed`` (``live[feed]``'s loads of it, if given); a
    library built from it cannot do without it, so no live delivery is an
    error (a build from nothing would close every row)."""
    if live is not None and not live[feed]:
        raise LookupError(f"{feed} has no live delivery (none loaded, or all replaced): nothing to build from")
    frame = read_silver(spark, feed, settings, live_loads_of(live, feed))
    if frame is None:
        raise LookupError(f"silver {feed} does not exist yet: ingest a delivery of {feed} first")
    return frame


def report_after_build(spark, settings: Settings) -> list[dict]:
    """The match-rate report, run after every build of base.address and on
    its own when only the feeds it reads got deliveries (the build's
    ``report`` mode). Incremental: each live delivery of a matched feed is
    measured once, against the standard addresses of the moment, and kept
    per delivery under ``<lake>/state/address_report``; the governance
    tables sum the live deliveries' counts, which is what measuring all of
    silver at once gives. Deliveries no longer live drop out; other
    standard addresses (another live nr.standard_address delivery) or other
    matching code (the address library's build digest) measure every
    delivery again."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from pipelines.libraries.resolution import live_load_ids

    live = live_load_ids(settings)
    standard = sorted(live.get("nr.standard_address", []))
    if not standard or not table_exists(table_path("silver", get_contract("nr.standard_address", settings.schemas_dir),
                                                   settings)):
        return []
    # what a measurement depends on: the standard addresses and the matching code
    signature = _standard_signature(settings, standard)
    # the unmatched texts first: a delivery's rates row says it was measured, so it comes last
    paths = {name: settings.lake_path("state", "address_report", name) for name in ("unmatched", "rates")}
    ddls = {"rates": REPORT_RATES_DDL, "unmatched": REPORT_UNMATCHED_DDL}
    live_pairs = {(feed, load) for feed, _ in MATCHED_ADDRESS_COLUMNS for load in live.get(feed, [])}
    # the measurements kept (small: a row per delivery, a row per unmatched text), read once with delta-rs;
    # a row is current if measured with this signature of a delivery still live
    kept, dropped = {}, False
    for name, path in paths.items():
        table = read_arrow(path, ddls[name])
        if table is not None:
            pairs = pc.binary_join_element_wise(table["feed"], table["load_id"], "\x1f")
            current = pc.and_(pc.equal(table["signature"], signature),
                              pc.is_in(pairs, pa.array(sorted(f"{f}\x1f{l}" for f, l in live_pairs), pa.string())))
            current = pc.fill_null(current, False)
            kept[name] = table.filter(current)
            dropped = dropped or kept[name].num_rows != table.num_rows
    measured = set(zip(*kept["rates"].select(["feed", "load_id"]).to_pydict().values())) if "rates" in kept else set()
    # every feed's new deliveries matched in one join and counted in one Spark job: on a usual day a few
    # hundred texts, for which a Spark job per feed (or per step) cost more than the matching
    new_rates, texts = [], []
    for feed, column in MATCHED_ADDRESS_COLUMNS:
        loads = [load for load in live.get(feed, []) if (feed, load) not in measured]
        silver = read_silver(spark, feed, settings) if loads else None
        if silver is None:
            continue
        texts.append(silver.where(F.col("_load_id").isin(*loads) & F.col(column).isNotNull()).select(
            F.lit(feed).alias("feed"), F.lit(column).alias("column_name"), "_load_id",
            F.col(column).alias("address_text")))
        # a delivery without one address is measured too (0 of 0), so it is not measured again
        new_rates += [(feed, column, load) for load in loads]
    new = {"rates": pa.Table.from_pylist([], arrow_schema(REPORT_RATES_DDL)),
           "unmatched": pa.Table.from_pylist([], arrow_schema(REPORT_UNMATCHED_DDL))}
    if texts:
        keys = address_keys_from_lake(spark, settings, standard)
        matched = match_addresses(reduce(lambda a, b: a.unionByName(b), texts), "address_text", keys,
                                  "address_code")
        # per delivery and text, the text kept only where it matched nothing: the rates and the unmatched texts
        counted = (matched.groupBy("feed", "column_name", F.col("_load_id").alias("load_id"),
                                   F.when(F.col("address_code").isNull(), F.col("address_text")).alias("address_text"))
                   .agg(F.count("*").alias("rows"), F.count("address_code").alias("matched")).toArrow())
        per_load = {(r["feed"], r["column_name"], r["load_id"]): (r["rows_sum"], r["matched_sum"])
                    for r in counted.group_by(["feed", "column_name", "load_id"], use_threads=False).aggregate(
                        [("rows", "sum"), ("matched", "sum")]).to_pylist()}
        unmatched = counted.filter(pc.is_valid(counted["address_text"]))
        new["unmatched"] = pa.table({
            "feed": unmatched["feed"], "column_name": unmatched["column_name"], "load_id": unmatched["load_id"],
            "address_text": unmatched["address_text"], "rows": unmatched["rows"],
            "signature": pa.array([signature] * unmatched.num_rows, pa.string())}).cast(
                arrow_schema(REPORT_UNMATCHED_DDL))
    else:
        per_load = {}
    if new_rates:
        new["rates"] = rows_table([{"feed": feed, "column_name": column, "load_id": load,
                                    "rows": per_load.get((feed, column, load), (0, 0))[0],
                                    "matched": per_load.get((feed, column, load), (0, 0))[1],
                                    "signature": signature} for feed, column, load in new_rates], REPORT_RATES_DDL)
    every = {}
    for name, path in paths.items():
        every[name] = pa.concat_tables([kept[name], new[name]]) if name in kept else new[name]
        if dropped or name not in kept:
            # a delivery went or everything was measured again: the cache is what is kept plus what is new
            replace_table(path, every[name])
        elif new[name].num_rows:
            # the usual day: the new deliveries' counts are appended, the cache is not rewritten
            append_table(path, new[name])
    return _write_report(every["rates"], every["unmatched"], settings)


# the report's measurements per delivery (``report_after_build``)
REPORT_RATES_DDL = "feed string, column_name string, load_id string, rows long, matched long, signature string"
REPORT_UNMATCHED_DDL = ("feed string, column_name string, load_id string, address_text string, rows long, "
                        "signature string")
