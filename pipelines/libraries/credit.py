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
from pipelines.libraries.columns import id_check_char
from pipelines.libraries.golden import latest_per_key
from pipelines.settings import Settings

RECORD_TYPES = ("abnormal_operation", "administrative_penalty", "dishonest_debtor", "tax_credit_grade")


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


def credit_records_from(abnormal, penalty, debtor, taxpayer):
    """Credit records from the four silver feeds (any may be None). Pure.

    Columns: record_id, record_type, subject_type (legal_person | person),
    subject_id, subject_name, started_on, ended_on, status, grade, detail,
    authority, source_feed, source_load_id."""
    from pyspark.sql import functions as F

    def shaped(frame, key, record_type, columns):
        shaped_frame = frame.select("_load_id", "_ingested_at", "_row_number", key.alias("_record_key"),
                                    *[expr.alias(f"_o_{name}") for name, expr in columns.items()])
        latest = latest_per_key(shaped_frame, "_record_key", [f"_o_{name}" for name in columns])
        return latest.select(
            F.concat(F.lit(record_type + ":"), F.col("_key")).alias("record_id"),
            F.lit(record_type).alias("record_type"),
            *[F.col(f"_o_{name}").alias(name) for name in columns],
            F.col("_load_id").alias("source_load_id"))

    parts = []
    if abnormal is not None:
        parts.append(shaped(abnormal, F.concat_ws(":", "uscc", F.col("listed_date").cast("string")),
                            "abnormal_operation", {
                                "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"),
                                "subject_name": F.col("enterprise_name"), "started_on": F.col("listed_date"),
                                "ended_on": F.col("removed_date"),
                                "status": F.when(F.col("removed_date").isNull(), F.lit("listed"))
                                .otherwise(F.lit("removed")),
                                "grade": F.lit(None).cast("string"), "detail": F.col("listing_reason"),
                                "authority": F.col("deciding_authority"),
                                "source_feed": F.lit("amr.abnormal_list")}))
    if penalty is not None:
        parts.append(shaped(penalty, F.col("decision_number"), "administrative_penalty", {
            "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"), "subject_name": F.col("party_name"),
            "started_on": F.col("decision_date"), "ended_on": F.lit(None).cast("date"),
            "status": F.lit("decided"), "grade": F.lit(None).cast("string"),
            "detail": F.concat_ws("；", "violation_type", "penalty_content"), "authority": F.col("penalty_authority"),
            "source_feed": F.lit("amr.penalty")}))
    if debtor is not None:
        is_person = (F.length("debtor_id") == 18) & F.col("debtor_id").rlike("^[1-9][0-9]{16}[0-9X]$") & (
            id_check_char(F.substring("debtor_id", 1, 17)) == F.substring("debtor_id", 18, 1))
        parts.append(shaped(debtor, F.concat_ws(":", "case_number", "debtor_id"), "dishonest_debtor", {
            "subject_type": F.when(is_person, F.lit("person")).otherwise(F.lit("legal_person")),
            "subject_id": F.col("debtor_id"), "subject_name": F.col("debtor_name"),
            "started_on": F.col("filed_date"), "ended_on": F.lit(None).cast("date"),
            "status": F.col("performance_status"), "grade": F.lit(None).cast("string"),
            "detail": F.col("case_number"), "authority": F.col("executing_court"),
            "source_feed": F.lit("court.dishonest_debtor")}))
    if taxpayer is not None:
        graded = taxpayer.where(F.col("tax_credit_grade").isNotNull())
        parts.append(shaped(graded, F.concat_ws(":", "uscc", F.col("evaluation_year").cast("string")),
                            "tax_credit_grade", {
                                "subject_type": F.lit("legal_person"), "subject_id": F.col("uscc"),
                                "subject_name": F.col("taxpayer_name"),
                                "started_on": F.to_date(F.concat(F.col("evaluation_year").cast("string"),
                                                                 F.lit("-01-01"))),
                                "ended_on": F.to_date(F.concat(F.col("evaluation_year").cast("string"),
                                                               F.lit("-12-31"))),
                                "status": F.lit("evaluated"), "grade": F.col("tax_credit_grade"),
                                "detail": F.concat(F.lit("纳税信用等级 "), F.col("tax_credit_grade")),
                                "authority": F.col("tax_authority"), "source_feed": F.lit("tax.taxpayer")}))
    if not parts:
        return None
    return reduce(lambda a, b: a.unionByName(b), parts)


def credit_records(spark, settings: Settings, _spec=None, _today=None, live: dict | None = None):
    """base.credit_record, with ``subject_found`` (the subject resolves to
    base.legal_person or base.population). ``live``: feed -> the load ids
    to read (default: all of silver)."""
    from pyspark.sql import functions as F

    records = credit_records_from(*[read_silver(spark, f, settings, live_loads_of(live, f))
                                    for f in
                                    ("amr.abnormal_list", "amr.penalty", "court.dishonest_debtor", "tax.taxpayer")])
    if records is None:
        raise ValueError("base.credit_record: none of its source tables exist yet")
    known = []
    for library, key, kind in (("legal_person", "uscc", "legal_person"), ("population", "person_id", "person")):
        path = settings.lake_path("base", library)
        if delta_exists(spark, path):
            known.append(spark.read.format("delta").load(path).where("is_current")
                         .select(F.lit(kind).alias("_kind"), F.col(key).alias("_id")))
    if known:
        found = reduce(lambda a, b: a.unionByName(b), known).withColumn("_found", F.lit(True))
        records = (records.join(found, (records["subject_type"] == found["_kind"])
                                & (records["subject_id"] == found["_id"]), "left")
                   .withColumn("subject_found", F.coalesce("_found", F.lit(False))).drop("_kind", "_id", "_found"))
    else:
        records = records.withColumn("subject_found", F.lit(False))
    return records


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
    grade = None
    for step in rule_set.grades:
        if step.get("min_score") is None:
            grade = grade.otherwise(F.lit(step["grade"])) if grade is not None else F.lit(step["grade"])
        else:
            condition = F.col("risk_score") >= step["min_score"]
            grade = (grade.when(condition, F.lit(step["grade"])) if grade is not None
                     else F.when(condition, F.lit(step["grade"])))
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


def credit_ratings(spark, settings: Settings, _spec=None, today=None, _live=None):
    """base.credit_rating from base.legal_person and base.credit_record (built
    first), rated as of ``today`` (the build's date; default: the session's)."""
    from pyspark.sql import functions as F

    entities = (spark.read.format("delta").load(settings.lake_path("base", "legal_person")).where("is_current")
                .select("uscc", "entity_name", "registration_status"))
    records = spark.read.format("delta").load(settings.lake_path("base", "credit_record")).where("is_current")
    as_of = F.lit(today).cast("date") if today is not None else F.current_date()
    rated = rate_entities(entities, records, load_rule_set(settings), as_of)
    return rated.withColumn("uscc_found", F.lit(True))
