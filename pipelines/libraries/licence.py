"""The e-licence library (电子证照库): one row per licence.

- business licences (营业执照) derived from the market-entity registrations in
  base.legal_person (number = USCC, issued on the approval date);
- food business licences (食品经营许可证) from 市场监管局;
- construction permits (施工许可证) from 住建局, held by the builder.

Status: ``revoked`` when the issuer cancelled it or its holder is deregistered
or had its licence revoked (注销 / 吊销 / 撤销 in base.legal_person), else
``expired`` after its expiry date, else ``valid``.
"""

from __future__ import annotations

from functools import reduce

from pipelines.lake.delta import live_loads_of, read_silver
from pipelines.reference import DEREGISTERED
from pipelines.libraries.golden import latest_per_key
from pipelines.libraries.incremental import joinable_keys
from pipelines.settings import Settings

AMR = "东莞市市场监督管理局"


def licences_from(entities, food, construction, as_of):
    """Licences from current legal persons and the two licence feeds (either may
    be None). Pure. ``as_of`` is a date Column."""
    from pyspark.sql import functions as F

    columns = ["licence_key", "licence_type", "licence_number", "holder_type", "holder_id", "holder_name",
               "issuer", "issued_on", "expires_on", "issuer_status", "source_feed", "source_load_id"]
    parts = [entities.where(F.col("registration_status_source") == "amr.business_registration").select(
        F.concat(F.lit("business_licence:"), "uscc").alias("licence_key"), F.lit("business_licence").alias("licence_type"),
        F.col("uscc").alias("licence_number"), F.lit("legal_person").alias("holder_type"),
        F.col("uscc").alias("holder_id"), F.col("entity_name").alias("holder_name"), F.lit(AMR).alias("issuer"),
        F.coalesce("approved_date", "established_date").cast("date").alias("issued_on"),
        F.lit(None).cast("date").alias("expires_on"), F.lit(None).cast("string").alias("issuer_status"),
        F.lit("amr.business_registration").alias("source_feed"),
        F.col("registration_status_load_id").alias("source_load_id"))]
    if food is not None:
        latest = latest_per_key(food, "licence_number", ["operator_name", "uscc", "issued_date", "valid_until",
                                                         "issuing_authority", "licence_status"])
        parts.append(latest.select(
            F.concat(F.lit("food_business_licence:"), "_key").alias("licence_key"),
            F.lit("food_business_licence").alias("licence_type"), F.col("_key").alias("licence_number"),
            F.lit("legal_person").alias("holder_type"), F.col("uscc").alias("holder_id"),
            F.col("operator_name").alias("holder_name"), F.col("issuing_authority").alias("issuer"),
            F.col("issued_date").alias("issued_on"), F.col("valid_until").alias("expires_on"),
            F.col("licence_status").alias("issuer_status"), F.lit("amr.food_licence").alias("source_feed"),
            F.col("_load_id").alias("source_load_id")))
    if construction is not None:
        latest = latest_per_key(construction, "permit_number", ["builder_name", "builder_uscc", "issued_date"])
        parts.append(latest.select(
            F.concat(F.lit("construction_permit:"), "_key").alias("licence_key"),
            F.lit("construction_permit").alias("licence_type"), F.col("_key").alias("licence_number"),
            F.lit("legal_person").alias("holder_type"), F.col("builder_uscc").alias("holder_id"),
            F.col("builder_name").alias("holder_name"), F.lit("东莞市住房和城乡建设局").alias("issuer"),
            F.col("issued_date").alias("issued_on"), F.lit(None).cast("date").alias("expires_on"),
            F.lit(None).cast("string").alias("issuer_status"), F.lit("hud.construction_permit").alias("source_feed"),
            F.col("_load_id").alias("source_load_id")))
    licences = reduce(lambda a, b: a.unionByName(b), [p.select(*columns) for p in parts])
    holders = entities.select(F.col("uscc").alias("_holder"), F.col("registration_status").alias("holder_status"))
    joined = licences.join(holders, licences["holder_id"] == holders["_holder"], "left")
    status = (F.when(F.col("issuer_status").isin("注销", "撤销") | F.col("holder_status").isin(*DEREGISTERED),
                     F.lit("revoked"))
              .when(F.col("expires_on") < as_of, F.lit("expired"))
              .otherwise(F.lit("valid")))
    return joined.select(*[c for c in columns if c != "issuer_status"], "holder_status", status.alias("status"),
                         F.col("_holder").isNotNull().alias("holder_found"))


# licence feed -> (its licence number column, the licence type its key starts with)
LICENCE_FEEDS = {"amr.food_licence": ("licence_number", "food_business_licence"),
                 "hud.construction_permit": ("permit_number", "construction_permit")}


def e_licences(spark, settings: Settings, _spec=None, today=None, live: dict | None = None, touched=None):
    """base.e_licence from base.legal_person (built first) and the live loads
    (``live``: feed -> load ids; default all of silver) of the licence feeds,
    expired or not as of ``today`` (the build's date; default: the session's).
    ``touched`` (``_key``: licence keys): only those licences (``e_licence_touched``)."""
    from pyspark.sql import functions as F

    entities = spark.read.format("delta").load(settings.lake_path("base", "legal_person")).where("is_current")
    feeds = [read_silver(spark, feed, settings, live_loads_of(live, feed)) for feed in LICENCE_FEEDS]
    if touched is not None:
        keys = joinable_keys(touched)
        feeds = [None if frame is None else frame.join(
            keys, F.concat(F.lit(kind + ":"), F.col(column)) == keys["_key"], "left_semi")
            for frame, (column, kind) in zip(feeds, LICENCE_FEEDS.values())]
    licences = licences_from(entities, *feeds, F.lit(today).cast("date") if today is not None else F.current_date())
    if touched is not None:           # the business licences of the touched entities only
        licences = licences.join(keys, licences["licence_key"] == keys["_key"], "left_semi")
    return licences


def e_licence_touched(spark, settings: Settings, _spec, plan, state):
    """The licence keys an incremental build of base.e_licence recomputes
    (``_key``): the business licence of every entity whose base.legal_person
    record appeared, changed or left, and every current licence it holds
    (holder status); the licences of the new loads' rows (and a replacing
    snapshot's change rows); and, when the date moved, the current licences
    that expired in between (``expires_on`` from the last build's date up to
    today's: valid then, expired now)."""
    from datetime import date

    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import changed_upstream_keys, new_rows

    before = plan.previous.upstream.get("legal_person") if plan.previous is not None else None
    entities = changed_upstream_keys(spark, "legal_person", "uscc", before, settings).localCheckpoint()
    current = spark.read.format("delta").load(settings.lake_path("base", "e_licence")).where("is_current")
    parts = [entities.select(F.concat(F.lit("business_licence:"), "_key").alias("_key")),
             current.join(entities, current["holder_id"] == entities["_key"], "left_semi")
             .select(F.col("licence_key").alias("_key"))]
    for feed, (column, kind) in LICENCE_FEEDS.items():
        rows = new_rows(spark, feed, plan, state, settings)
        if rows is not None:
            parts.append(rows.select(F.concat(F.lit(kind + ":"), F.col(column)).alias("_key")))
    since, today = date.fromisoformat(plan.previous.as_of), date.fromisoformat(state.as_of)
    if since != today:
        parts.append(current.where((F.col("expires_on") >= F.lit(since)) & (F.col("expires_on") < F.lit(today)))
                     .select(F.col("licence_key").alias("_key")))
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull())
