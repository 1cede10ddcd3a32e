"""The social credit library (社会信用库): ``base.credit_record`` (one row per
record about a subject) and ``base.credit_rating`` (one A/B/C/D grade per
supervised entity from the versioned rule set ``schemas/rules/credit_rating.yaml``;
see docs/credit-rating.md)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import yaml

from pipelines.lake.delta import delta_exists, live_loads_of, read_silver
from pipelines.libraries.columns import id_check_char, threshold_ladder
from pipelines.libraries.golden import latest_per_key
from pipelines.libraries.incremental import joinable_keys
from pipelines.settings import Settings

RECORD_TYPES = ("abnormal_operation", "administrative_penalty", "dishonest_debtor", "tax_credit_grade",
                "inspection_result")
RECORD_FEEDS = ("amr.abnormal_list", "amr.penalty", "court.dishonest_debtor", "tax.taxpayer", "amr.inspection_result")
INSPECTION_AUTHORITY = "市场监督管理局"     # the 双随机 results feed is amr's; its rows name no authority


def record_keys() -> dict:
    """feed -> (record type, the expression of a row's record key): a record
    is the latest row of its key, and its id is ``<type>:<key>``."""
    from pyspark.sql import functions as F

    return {
        "amr.abnormal_list": ("abnormal_operation", F.concat_ws(":", "uscc", F.col("listed_date").cast("string"))),
        "amr.penalty": ("administrative_penalty", F.col("decision_number")),
        "court.dishonest_debtor": ("dishonest_debtor", F.concat_ws(":", "case_number", "debtor_id")),
        "tax.taxpayer": ("tax_credit_grade", F.concat_ws(":", "uscc", F.col("evaluation_year").cast("string"))),
        # one row per inspector of a task and entity: one record per task and entity
        "amr.inspection_result": ("inspection_result", F.concat_ws(":", "task_number", "uscc")),
    }


def record_id(feed: str):
    """The record id a row of ``feed`` contributes to (a Column)."""
    from pyspark.sql import functions as F

    record_type, key = record_keys()[feed]
    return F.concat(F.lit(record_type + ":"), key)


class RuleSetError(ValueError):
    """The rating rule set is malformed; the message names the file and field."""


@dataclass(frozen=True)
class RuleSet:
    version: str
    start_score: int
    rules: tuple[dict, ...]
    overrides: tuple[dict, ...]
    grades: tuple[dict, ...]
    not_rated_statuses: tuple[str, ...]


def load_rule_set(settings: Settings) -> RuleSet:
    path = Path(settings.schemas_dir) / "rules" / "credit_rating.yaml"
    shown = f"schemas/rules/{path.name}"
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for field in ("version", "start_score", "rules", "grades"):
        if field not in document:
            raise RuleSetError(f"{shown}: {field}: required")
    for index, rule in enumerate(document["rules"]):
        for field in ("id", "when", "points"):
            if field not in rule:
                raise RuleSetError(f"{shown}: rules[{index}].{field}: required")
    if document["grades"][-1].get("min_score") is not None:
        raise RuleSetError(f"{shown}: grades: the last grade must have min_score: null (the floor)")
    return RuleSet(str(document["version"]), int(document["start_score"]), tuple(document["rules"]),
                   tuple(document.get("overrides") or []), tuple(document["grades"]),
                   tuple(document.get("not_rated_statuses") or []))


def credit_records_from(abnormal, penalty, debtor, taxpayer, inspections=None):
    """Credit records from the five silver feeds (any may be None). Pure.
    A "double random" inspection (amr.inspection_result, one row per
    inspector) becomes one record per task and entity: its result is the
    record's status, its item the detail (双随机抽查结果纳入信用记录).

    Columns: record_id, record_type, subject_type (legal_person | person),
    subject_id, subject_name, started_on, ended_on, status, grade, detail,
    authority, source_feed, source_load_id."""
    from pyspark.sql import functions as F

    keys = record_keys()

    def shaped(frame, feed, columns):
        record_type, key = keys[feed]
        shaped_frame = frame.select("_load_id", "_ingested_at", "_row_number", key.alias("_record_key"),
                                    *[expr.alias(f"_o_{name}") for name, expr in columns.items()])
        # the taxpayer register is a snapshot: duplicates of a key are told apart by content, not row order
        latest = latest_per_key(shaped_frame, "_record_key", [f"_o_{name}" for name in columns],
                                by_content=feed == "tax.taxpayer")
        return latest.select(
            F.concat(F.lit(record_type + ":"), F.col("_key")).alias("record_id"),
            F.lit(record_type).alias("record_type"),
            *[F.col(f"_o_{name}").alias(name) for name in columns],
            F.col("_load_id").alias("source_load_id"))

    parts = []
    if abnormal is not None:
        parts.append(shaped(abnormal, "amr.abnormal_list", {
                                "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"),
                                "subject_name": F.col("enterprise_name"), "started_on": F.col("listed_date"),
                                "ended_on": F.col("removed_date"),
                                "status": F.when(F.col("removed_date").isNull(), F.lit("listed"))
                                .otherwise(F.lit("removed")),
                                "grade": F.lit(None).cast("string"), "detail": F.col("listing_reason"),
                                "authority": F.col("deciding_authority"),
                                "source_feed": F.lit("amr.abnormal_list")}))
    if penalty is not None:
        parts.append(shaped(penalty, "amr.penalty", {
            "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"), "subject_name": F.col("party_name"),
            "started_on": F.col("decision_date"), "ended_on": F.lit(None).cast("date"),
            "status": F.lit("decided"), "grade": F.lit(None).cast("string"),
            "detail": F.concat_ws("；", "violation_type", "penalty_content"), "authority": F.col("penalty_authority"),
            "source_feed": F.lit("amr.penalty")}))
    if debtor is not None:
        is_person = (F.length("debtor_id") == 18) & F.col("debtor_id").rlike("^[1-9][0-9]{16}[0-9X]$") & (
            id_check_char(F.substring("debtor_id", 1, 17)) == F.substring("debtor_id", 18, 1))
        parts.append(shaped(debtor, "court.dishonest_debtor", {
            "subject_type": F.when(is_person, F.lit("person")).otherwise(F.lit("legal_person")),
            "subject_id": F.col("debtor_id"), "subject_name": F.col("debtor_name"),
            "started_on": F.col("filed_date"), "ended_on": F.lit(None).cast("date"),
            "status": F.col("performance_status"), "grade": F.lit(None).cast("string"),
            "detail": F.col("case_number"), "authority": F.col("executing_court"),
            "source_feed": F.lit("court.dishonest_debtor")}))
    if taxpayer is not None:
        graded = taxpayer.where(F.col("tax_credit_grade").isNotNull())
        parts.append(shaped(graded, "tax.taxpayer", {
                                "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"),
                                "subject_name": F.col("taxpayer_name"),
                                "started_on": F.to_date(F.concat(F.col("evaluation_year").cast("string"),
                                                                 F.lit("-01-01"))),
                                "ended_on": F.to_date(F.concat(F.col("evaluation_year").cast("string"),
                                                               F.lit("-12-31"))),
                                "status": F.lit("evaluated"), "grade": F.col("tax_credit_grade"),
                                "detail": F.concat(F.lit("纳税信用等级 "), F.col("tax_credit_grade")),
                                "authority": F.col("tax_authority"), "source_feed": F.lit("tax.taxpayer")}))
    if inspections is not None:
        parts.append(shaped(inspections, "amr.inspection_result", {
            "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"), "subject_name": F.col("entity_name"),
            "started_on": F.col("inspected_date"), "ended_on": F.lit(None).cast("date"), "status": F.col("result"),
            "grade": F.lit(None).cast("string"), "detail": F.col("inspection_item"),
            "authority": F.lit(INSPECTION_AUTHORITY), "source_feed": F.lit("amr.inspection_result")}))
    if not parts:
        return None
    return reduce(lambda a, b: a.unionByName(b), parts)


def credit_records(spark, settings: Settings, _spec=None, _today=None, live: dict | None = None, touched=None):
    """base.credit_record, with ``subject_found`` (the subject resolves to
    base.legal_person or base.population). ``live``: feed -> the load ids
    to read (default: all of silver). ``touched`` (``_key``: record ids):
    only those records (an incremental build, ``credit_record_touched``)."""
    from pyspark.sql import functions as F

    frames = [read_silver(spark, feed, settings, live_loads_of(live, feed)) for feed in RECORD_FEEDS]
    if touched is not None:
        keys = joinable_keys(touched)
        frames = [None if frame is None else frame.join(keys, record_id(feed) == keys["_key"], "left_semi")
                  for feed, frame in zip(RECORD_FEEDS, frames)]
    records = credit_records_from(*frames)
    if records is None:
        raise ValueError("base.credit_record: none of its source tables exist yet")
    if touched is not None:
        records = records.localCheckpoint()
    known = []
    for library, key, kind in (("legal_person", "uscc", "legal_person"), ("population", "person_id", "person")):
        path = settings.lake_path("base", library)
        if delta_exists(spark, path):
            known.append(spark.read.format("delta").load(path).where("is_current")
                         .select(F.lit(kind).alias("_kind"), F.col(key).alias("_id")))
    if known:
        found = reduce(lambda a, b: a.unionByName(b), known).withColumn("_found", F.lit(True))
        if touched is not None:          # the few subjects of the touched records, not the whole city
            found = found.join(F.broadcast(records.select(F.col("subject_id").alias("_id")).distinct()), "_id",
                               "left_semi")
        records = (records.join(found, (records["subject_type"] == found["_kind"])
                                & (records["subject_id"] == found["_id"]), "left")
                   .withColumn("subject_found", F.coalesce("_found", F.lit(False))).drop("_kind", "_id", "_found"))
    else:
        records = records.withColumn("subject_found", F.lit(False))
    return records


def _previous_upstream(plan, name: str):
    return plan.previous.upstream.get(name) if plan.previous is not None else None


def credit_record_touched(spark, settings: Settings, _spec, plan, state):
    """The record ids an incremental build of base.credit_record recomputes
    (``_key``): those the new loads' rows (and a replacing snapshot's change
    rows, both sides) contribute to, and the current records whose subject
    appeared in or left base.legal_person or base.population (``subject_found``).
    The records do not depend on the date."""
    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import new_rows, upstream_changed_keys

    parts = []
    for feed in RECORD_FEEDS:
        rows = new_rows(spark, feed, plan, state, settings)
        if rows is not None:
            parts.append(rows.select(record_id(feed).alias("_key")))
    current = spark.read.format("delta").load(settings.lake_path("base", "credit_record")).where("is_current")
    for name, key in (("legal_person", "uscc"), ("population", "person_id")):
        changed = upstream_changed_keys(spark, name, key, _previous_upstream(plan, name), settings)
        parts.append(current.join(changed, current["subject_id"] == changed["_key"], "left_semi")
                     .select(F.col("record_id").alias("_key")))
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull())


def rate_entities(entities, records, rule_set: RuleSet, as_of):
    """One row per supervised entity: score, grade, the rules that fired. Pure.

    ``entities``: uscc, entity_name, registration_status. ``records``:
    base.credit_record rows. ``as_of``: a date Column or literal."""
    from pyspark.sql import functions as F

    subjects = records.where(F.col("subject_type") == "legal_person").withColumn("as_of", as_of)
    hits = []
    for rule in rule_set.rules:
        matched = subjects.where(F.expr(rule["when"])).groupBy("subject_id").agg(F.count("*").alias("n"))
        limit = rule.get("max_records")
        counted = F.least(F.col("n"), F.lit(limit)) if limit else F.col("n")
        hits.append(matched.select(F.col("subject_id").alias("uscc"), (counted * rule["points"]).alias("points"),
                                   F.concat(F.lit(f"{rule['id']} ("), (counted * rule["points"]).cast("string"),
                                            F.lit(")")).alias("reason")))
    fired = (reduce(lambda a, b: a.unionByName(b), hits).groupBy("uscc")
             .agg(F.sum("points").alias("points"), F.sort_array(F.collect_list("reason")).alias("reasons")))
    rated = (entities.where(~F.col("registration_status").isin(*rule_set.not_rated_statuses)
                            | F.col("registration_status").isNull())
             .join(fired, "uscc", "left")
             .withColumn("risk_score", (F.lit(rule_set.start_score) + F.coalesce("points", F.lit(0))).cast("int"))
             .withColumn("reasons", F.coalesce("reasons", F.array().cast("array<string>"))))
    grade = threshold_ladder(F.col("risk_score"), rule_set.grades, "grade", "min_score")
    override_reason = F.lit(None).cast("string")
    for override in reversed(rule_set.overrides):
        condition = F.expr(override["when"])
        grade = F.when(condition, F.lit(override["grade"])).otherwise(grade)
        override_reason = F.when(condition, F.lit(f"override {override['id']}")).otherwise(override_reason)
    return rated.select(
        "uscc", "entity_name", "registration_status", "risk_score", grade.alias("risk_grade"),
        F.when(override_reason.isNotNull(), F.concat("reasons", F.array(override_reason)))
        .otherwise(F.col("reasons")).alias("reasons"),
        F.lit(rule_set.version).alias("rule_set_version"), as_of.cast("date").alias("rated_on"))


def credit_ratings(spark, settings: Settings, _spec=None, today=None, _live=None, touched=None):
    """base.credit_rating from base.legal_person and base.credit_record (built
    first), rated as of ``today`` (the build's date; default: the session's).
    ``touched`` (``_key``: USCCs): only those entities (``credit_rating_touched``)."""
    from pyspark.sql import functions as F

    entities = (spark.read.format("delta").load(settings.lake_path("base", "legal_person")).where("is_current")
                .select("uscc", "entity_name", "registration_status"))
    records = spark.read.format("delta").load(settings.lake_path("base", "credit_record")).where("is_current")
    if touched is not None:
        keys = joinable_keys(touched)
        entities = entities.join(keys, entities["uscc"] == keys["_key"], "left_semi")
        records = records.join(keys, records["subject_id"] == keys["_key"], "left_semi")
    as_of = F.lit(today).cast("date") if today is not None else F.current_date()
    rated = rate_entities(entities, records, load_rule_set(settings), as_of)
    return rated.withColumn("uscc_found", F.lit(True))


def credit_rating_touched(spark, settings: Settings, _spec, plan, state):
    """The entities (``_key``: USCC) an incremental build of base.credit_rating
    rates again: those whose base.legal_person record appeared, changed or
    left; the subjects of every credit record that appeared, changed or left
    (read from all versions: a closed record's subject too); and, when the
    date moved, the subjects of records on which a rule that reads ``as_of``
    gives another answer today than on the last build's date (a penalty
    ageing out of its 36 months). An override that reads ``as_of`` would
    make every entity's grade depend on the date: then all are rated."""
    from datetime import date

    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import changed_upstream_keys

    rule_set = load_rule_set(settings)
    entities = changed_upstream_keys(spark, "legal_person", "uscc", _previous_upstream(plan, "legal_person"),
                                     settings)
    changed_records = changed_upstream_keys(spark, "credit_record", "record_id",
                                            _previous_upstream(plan, "credit_record"), settings)
    history = spark.read.format("delta").load(settings.lake_path("base", "credit_record"))
    parts = [entities, history.join(changed_records, history["record_id"] == changed_records["_key"], "left_semi")
             .where(F.col("subject_type") == "legal_person").select(F.col("subject_id").alias("_key"))]
    since, today = date.fromisoformat(plan.previous.as_of), date.fromisoformat(state.as_of)
    if since != today:
        if any("as_of" in override["when"] for override in rule_set.overrides):
            parts.append(spark.read.format("delta").load(settings.lake_path("base", "legal_person"))
                         .where("is_current").select(F.col("uscc").alias("_key")))
        dated = [rule for rule in rule_set.rules if "as_of" in rule["when"]]
        if dated:
            current = history.where("is_current").where(F.col("subject_type") == "legal_person")

            def fired(on: date, name: str):
                return current.withColumn("as_of", F.lit(on).cast("date")).select(
                    "record_id", F.array(*[F.coalesce(F.expr(rule["when"]), F.lit(False)) for rule in dated])
                    .alias(name), "subject_id")

            then, now = fired(since, "_then"), fired(today, "_now").drop("subject_id")
            parts.append(then.join(now, "record_id").where(F.col("_then") != F.col("_now"))
                         .select(F.col("subject_id").alias("_key")))
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull())
