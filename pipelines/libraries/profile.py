"""The enterprise panoramic profile (企业全景画像): one row per market entity
or social organisation, everything the base libraries and the grid know
about it in one place (``base.enterprise_profile``).

- registration, status, industry, address, grid cell and town, the legal
  representative and the tax credit grade: ``base.legal_person`` (the grid
  cell of its domicile's standard address: ``base.address``);
- the A/B/C/D credit grade, score, the rules that fired and their rule set:
  ``base.credit_rating``;
- penalties, abnormal-list entries and dishonest-debtor cases (how many, the
  latest, how many open): ``base.credit_record``;
- licences held, by status, and the expiry dates of the valid ones (a
  reader counts those expiring within 90 days of *its* date, so the table
  does not change with the calendar): ``base.e_licence``;
- grid hazards (智网) naming it (涉事主体代码) or reported at its domicile's
  standard address: open, closed, by category, the latest: silver
  ``grid.hazard_report``, its free-text addresses matched like every other
  feed's (``address.match_addresses``);
- the last "double random" inspection and its result: silver
  ``amr.inspection_result``.

The records do not depend on the build date; an incremental build
recomputes the entities whose upstream records or hazard and inspection rows
changed (``enterprise_profile_touched``).
"""

from __future__ import annotations

from functools import reduce

from pipelines.lake.delta import live_loads_of, read_silver
from pipelines.libraries.golden import latest_per_key
from pipelines.libraries.incremental import joinable_keys
from pipelines.settings import Settings

HAZARD_CATEGORIES = ("消防", "食品安全", "安全生产", "治安", "环境")      # the grid.hazard_report contract's enum
HAZARD_CLOSED = "已办结"
# credit_record.record_type -> the profile's column prefix, and what "open" means for it
CREDIT_RECORD_KINDS = {"administrative_penalty": "penalty", "abnormal_operation": "abnormal",
                       "dishonest_debtor": "dishonest"}
LEGAL_PERSON_COLUMNS = ("entity_name", "entity_type", "registration_status", "established_date", "industry_code",
                        "industry_section", "registered_capital_wan_cny", "domicile_address",
                        "domicile_address_code", "town_code", "town_name", "legal_representative",
                        "legal_representative_person_id", "legal_representative_found", "tax_credit_grade",
                        "tax_evaluation_year", "insured_employees")


def hazards_latest(reports):
    """One row per hazard event (its latest report: a status update comes as
    a new row of the same event number). Pure."""
    columns = ["reported_at", "hazard_category", "address", "subject_code", "handling_status", "closed_at"]
    latest = latest_per_key(reports, "event_number", columns)
    from pyspark.sql import functions as F

    return latest.select(F.col("_key").alias("event_number"), *columns)


def entity_hazards(hazards, entities):
    """(uscc, event) pairs: each hazard (with ``address_code``, its matched
    standard address) against the entities it names or whose domicile is at
    its address; an event both names an entity and lies at its domicile
    once. Pure."""
    from pyspark.sql import functions as F

    named = hazards.where(F.col("subject_code").isNotNull()).select(F.col("subject_code").alias("uscc"), "*")
    at = (hazards.where(F.col("address_code").isNotNull())
          .join(entities.where(F.col("domicile_address_code").isNotNull())
                .select("uscc", F.col("domicile_address_code").alias("address_code")), "address_code"))
    columns = ["uscc", "event_number", "reported_at", "hazard_category", "handling_status"]
    return named.select(*columns).unionByName(at.select(*columns)).dropDuplicates(["uscc", "event_number"])


def profiles_from(entities, addresses, ratings, records, licences, hazards, inspections):
    """The profile of every entity in ``entities`` (current base.legal_person
    rows). Pure: ``addresses`` (address_code, grid_code), ``ratings``
    (current credit_rating), ``records`` (current credit_record), ``licences``
    (current e_licence), ``hazards`` (``entity_hazards`` pairs) and
    ``inspections`` (amr.inspection_result rows) may each be None."""
    from pyspark.sql import functions as F

    profile = entities.select("uscc", *LEGAL_PERSON_COLUMNS)
    if addresses is not None:
        profile = profile.join(addresses.select(F.col("address_code").alias("_address"), "grid_code"),
                               F.col("domicile_address_code") == F.col("_address"), "left").drop("_address")
    else:
        profile = profile.withColumn("grid_code", F.lit(None).cast("string"))
    if ratings is not None:
        profile = profile.join(ratings.select("uscc", F.col("risk_grade").alias("credit_grade"),
                                              F.col("risk_score").alias("credit_score"),
                                              F.col("reasons").alias("credit_reasons"),
                                              F.col("rule_set_version").alias("credit_rule_set_version")),
                               "uscc", "left")
    else:
        profile = profile.select("*", F.lit(None).cast("string").alias("credit_grade"),
                                 F.lit(None).cast("int").alias("credit_score"),
                                 F.lit(None).cast("array<string>").alias("credit_reasons"),
                                 F.lit(None).cast("string").alias("credit_rule_set_version"))

    counted = []
    if records is not None:
        kinds = records.where(F.col("subject_type") == "legal_person")
        aggregates = []
        for record_type, prefix in CREDIT_RECORD_KINDS.items():
            this = F.col("record_type") == record_type
            is_open = {"abnormal": F.col("status") == "listed",            # not yet removed from the list
                       "dishonest": F.col("status") != "全部履行"}.get(prefix)  # not fully performed
            aggregates += [F.count(F.when(this, True)).alias(f"{prefix}_count"),
                           F.max(F.when(this, F.col("started_on"))).alias(f"{prefix}_latest_on")]
            if is_open is not None:
                aggregates.append(F.count(F.when(this & F.coalesce(is_open, F.lit(True)), True))
                                  .alias(f"{prefix}_open"))
        counted.append(kinds.groupBy(F.col("subject_id").alias("uscc")).agg(*aggregates))
    if licences is not None:
        held = licences.where(F.col("holder_id").isNotNull())
        counted.append(held.groupBy(F.col("holder_id").alias("uscc")).agg(
            F.count(F.when(F.col("status") == "valid", True)).alias("licences_valid"),
            F.count(F.when(F.col("status") == "expired", True)).alias("licences_expired"),
            F.count(F.when(F.col("status") == "revoked", True)).alias("licences_revoked"),
            F.array_sort(F.collect_list(F.when((F.col("status") == "valid") & F.col("expires_on").isNotNull(),
                                               F.col("expires_on")))).alias("valid_licence_expiries")))
    if hazards is not None:
        closed = F.col("handling_status") == HAZARD_CLOSED
        counted.append(hazards.groupBy("uscc").agg(
            F.count(F.when(~closed, True)).alias("hazards_open"),
            F.count(F.when(closed, True)).alias("hazards_closed"),
            F.max("reported_at").alias("hazard_latest_reported_at"),
            F.array(*[F.struct(F.lit(category).alias("category"),
                               F.count(F.when((F.col("hazard_category") == category) & ~closed, True)).alias("open"),
                               F.count(F.when((F.col("hazard_category") == category) & closed, True))
                               .alias("closed"))
                      for category in HAZARD_CATEGORIES]).alias("hazards_by_category")))
    if inspections is not None:
        if "_ingested_at" in inspections.columns:     # silver: the latest row of each (task, entity, inspector)
            keyed = inspections.withColumn("_inspection", F.concat_ws("|", "task_number", "uscc",
                                                                       "certificate_number"))
            inspections = latest_per_key(keyed, "_inspection", ["task_number", "uscc", "inspected_date", "result",
                                                                "inspection_item"])
        latest = F.max_by(F.struct("inspected_date", "result", "inspection_item", "task_number"),
                          F.struct("inspected_date", "task_number", "result", "inspection_item"))
        counted.append(inspections.groupBy("uscc").agg(latest.alias("_last")).select(
            "uscc", F.col("_last.inspected_date").alias("last_inspected_on"),
            F.col("_last.result").alias("last_inspection_result"),
            F.col("_last.inspection_item").alias("last_inspection_item")))
    for frame in counted:
        profile = profile.join(frame, "uscc", "left")
    return _fill(profile)


def _fill(profile):
    """Every profile column present, counts 0 (not null) where nothing was found."""
    from pyspark.sql import functions as F

    counts = [f"{p}_count" for p in CREDIT_RECORD_KINDS.values()] + ["abnormal_open", "dishonest_open",
                                                                     "licences_valid", "licences_expired",
                                                                     "licences_revoked", "hazards_open",
                                                                     "hazards_closed"]
    typed = {"penalty_latest_on": "date", "abnormal_latest_on": "date", "dishonest_latest_on": "date",
             "valid_licence_expiries": "array<date>", "hazard_latest_reported_at": "timestamp",
             "hazards_by_category": "array<struct<category:string,open:bigint,closed:bigint>>",
             "last_inspected_on": "date", "last_inspection_result": "string", "last_inspection_item": "string"}
    for name in counts:
        profile = (profile.withColumn(name, F.coalesce(F.col(name), F.lit(0).cast("bigint")))
                   if name in profile.columns else profile.withColumn(name, F.lit(0).cast("bigint")))
    for name, kind in typed.items():
        if name not in profile.columns:
            profile = profile.withColumn(name, F.lit(None).cast(kind))
    empty = F.array(*[F.struct(F.lit(c).alias("category"), F.lit(0).cast("bigint").alias("open"),
                               F.lit(0).cast("bigint").alias("closed")) for c in HAZARD_CATEGORIES])
    profile = (profile.withColumn("hazards_by_category", F.coalesce("hazards_by_category", empty))
               .withColumn("valid_licence_expiries",
                           F.coalesce("valid_licence_expiries", F.array().cast("array<date>"))))
    return profile.select(*PROFILE_COLUMNS)


PROFILE_COLUMNS = ("uscc", *LEGAL_PERSON_COLUMNS, "grid_code",
                   "credit_grade", "credit_score", "credit_reasons", "credit_rule_set_version",
                   "penalty_count", "penalty_latest_on", "abnormal_count", "abnormal_latest_on", "abnormal_open",
                   "dishonest_count", "dishonest_latest_on", "dishonest_open",
                   "licences_valid", "licences_expired", "licences_revoked", "valid_licence_expiries",
                   "hazards_open", "hazards_closed", "hazard_latest_reported_at", "hazards_by_category",
                   "last_inspected_on", "last_inspection_result", "last_inspection_item")


def _current(spark, settings: Settings, library: str):
    from pipelines.lake.delta import table_exists

    path = settings.lake_path("base", library)
    return spark.read.format("delta").load(path).where("is_current") if table_exists(path) else None


def _matched(spark, settings: Settings, live: dict | None, frame, output: str):
    """``frame`` with ``output``: the standard address its ``address`` text
    names, by the keys of the standard addresses base.address is built from
    (``address_keys_from_lake``: kept between builds); null when it names
    none or there are no standard addresses yet."""
    from pyspark.sql import functions as F

    from pipelines.libraries.address import address_keys_from_lake, match_addresses

    # the build's ``live`` holds the profile's own feeds only: the standard addresses' live loads are the
    # manifest's (what base.address, built before, was built from)
    standard = live.get("nr.standard_address") if live and "nr.standard_address" in live else None
    keys = address_keys_from_lake(spark, settings, standard)
    if keys is None:
        return frame.withColumn(output, F.lit(None).cast("string"))
    return match_addresses(frame, "address", keys, output)


def matched_hazards(spark, settings: Settings, live: dict | None):
    """The latest report of every live hazard event, with ``address_code``:
    the standard address its free-text address names (or null)."""
    reports = read_silver(spark, "grid.hazard_report", settings, live_loads_of(live, "grid.hazard_report"))
    return None if reports is None else _matched(spark, settings, live, hazards_latest(reports), "address_code")


def enterprise_profiles(spark, settings: Settings, _spec=None, _today=None, live: dict | None = None, touched=None):
    """base.enterprise_profile from the base libraries (built first) and the
    live loads of grid.hazard_report and amr.inspection_result. ``touched``
    (``_key``: USCCs): only those entities (``enterprise_profile_touched``)."""
    from pyspark.sql import functions as F

    entities = _current(spark, settings, "legal_person")
    addresses, ratings, records, licences = (_current(spark, settings, name) for name in
                                             ("address", "credit_rating", "credit_record", "e_licence"))
    inspections = read_silver(spark, "amr.inspection_result", settings, live_loads_of(live, "amr.inspection_result"))
    hazards = matched_hazards(spark, settings, live)
    if touched is not None:
        keys = joinable_keys(touched)
        entities = entities.join(keys, entities["uscc"] == keys["_key"], "left_semi")
        ratings = None if ratings is None else ratings.join(keys, ratings["uscc"] == keys["_key"], "left_semi")
        records = None if records is None else records.join(keys, records["subject_id"] == keys["_key"], "left_semi")
        licences = None if licences is None else licences.join(keys, licences["holder_id"] == keys["_key"],
                                                               "left_semi")
        inspections = None if inspections is None else inspections.join(keys, inspections["uscc"] == keys["_key"],
                                                                         "left_semi")
    pairs = None if hazards is None else entity_hazards(hazards, entities)
    if pairs is not None and touched is not None:
        pairs = pairs.join(keys, pairs["uscc"] == keys["_key"], "left_semi")
    addresses = None if addresses is None else addresses.select("address_code", "grid_code")
    return profiles_from(entities, addresses, ratings, records, licences, pairs, inspections).where(
        F.col("uscc").isNotNull())


def _previous(plan, name: str):
    return plan.previous.upstream.get(name) if plan.previous is not None else None


def enterprise_profile_touched(spark, settings: Settings, _spec, plan, state):
    """The entities (``_key``: USCC) an incremental build of
    base.enterprise_profile recomputes: those whose base.legal_person or
    base.credit_rating record appeared, changed or left; the subjects of
    every credit record and the holders of every licence that appeared,
    changed or left (read from all versions: a closed one's too); the
    subjects of the new hazard and inspection rows, and the entities at the
    addresses of those hazard events (every report of them: an event whose
    subject or address changed touches the old one's too). A change of the
    standard addresses can move any hazard's match: then every entity."""
    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import changed_upstream_keys, new_rows

    def changed(name: str, key: str):
        return changed_upstream_keys(spark, name, key, _previous(plan, name), settings)

    entities = _current(spark, settings, "legal_person")
    if changed("address", "address_code").limit(1).count():
        return entities.select(F.col("uscc").alias("_key"))
    parts = [changed("legal_person", "uscc"), changed("credit_rating", "uscc")]
    for name, key, holder in (("credit_record", "record_id", "subject_id"), ("e_licence", "licence_key", "holder_id")):
        keys = changed(name, key).localCheckpoint()
        history = spark.read.format("delta").load(settings.lake_path("base", name))
        parts.append(history.join(keys, history[key] == keys["_key"], "left_semi").select(F.col(holder).alias("_key")))
    inspections = new_rows(spark, "amr.inspection_result", plan, state, settings)
    if inspections is not None:
        parts.append(inspections.select(F.col("uscc").alias("_key")))
    reports = new_rows(spark, "grid.hazard_report", plan, state, settings)
    if reports is not None:
        events = reports.select(F.col("event_number").alias("_event")).distinct().localCheckpoint()
        # every live report of those events (an older one named another subject or address), and the new
        # rows themselves (a replaced delivery's change rows: both sides)
        every_report = read_silver(spark, "grid.hazard_report", settings,
                                   live_loads_of(state.loads, "grid.hazard_report"))
        every_report = (every_report.join(events, every_report["event_number"] == events["_event"], "left_semi")
                        .select("subject_code", "address").unionByName(reports.select("subject_code", "address")))
        parts.append(every_report.select(F.col("subject_code").alias("_key")))
        matched = (_matched(spark, settings, state.loads, every_report.select("address"), "_code")
                   .where(F.col("_code").isNotNull()).select("_code").distinct())
        parts.append(entities.join(matched, entities["domicile_address_code"] == matched["_code"], "left_semi")
                     .select(F.col("uscc").alias("_key")))
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull())
