"""The supervised-object risk library (监管对象风险专题库): one risk level per
supervised entity, with the rules that produced it, from its enterprise
profile (``base.enterprise_profile``) and the versioned risk model
``schemas/rules/supervision_risk.yaml`` (docs/supervision-risk.md).

The model is the credit rule set's shape on the profile's columns: each
rule that holds adds its points once (hazards by category and recency,
penalties, the abnormal list, dishonesty, lapsed licences, the credit
grade); the level is read off the thresholds. Deregistered entities are not
assessed. Per grid cell and town, the hazards themselves are counted by the
view ``base.grid_hazard_summary`` for the 智网 dispatch centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import yaml

from pipelines.libraries.columns import threshold_ladder
from pipelines.libraries.incremental import joinable_keys
from pipelines.settings import Settings


class RiskModelError(ValueError):
    """The risk model is malformed; the message names the file and field."""


@dataclass(frozen=True)
class RiskModel:
    version: str
    rules: tuple[dict, ...]
    levels: tuple[dict, ...]
    not_assessed_statuses: tuple[str, ...]


def load_risk_model(settings: Settings) -> RiskModel:
    """``schemas/rules/supervision_risk.yaml``, checked: every rule an id, a
    condition and whole points; the levels from the highest threshold down
    to a floor (``min_points: null``); rule ids unique."""
    path = Path(settings.schemas_dir) / "rules" / "supervision_risk.yaml"
    shown = f"schemas/rules/{path.name}"
    if not path.is_file():
        raise RiskModelError(f"{shown}: no such risk model")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for field in ("version", "rules", "levels"):
        if not document.get(field):
            raise RiskModelError(f"{shown}: {field}: required")
    seen = set()
    for index, rule in enumerate(document["rules"]):
        for field in ("id", "when", "points", "description"):
            if field not in rule:
                raise RiskModelError(f"{shown}: rules[{index}].{field}: required")
        if not isinstance(rule["points"], int) or rule["points"] < 0:
            raise RiskModelError(f"{shown}: rules[{index}].points: a whole number of points, not below 0")
        if rule["id"] in seen:
            raise RiskModelError(f"{shown}: rules[{index}].id: {rule['id']!r} is used twice")
        seen.add(rule["id"])
    levels = document["levels"]
    if levels[-1].get("min_points") is not None or any(level.get("min_points") is None for level in levels[:-1]):
        raise RiskModelError(f"{shown}: levels: the last level, and only it, must have min_points: null (the floor)")
    thresholds = [level["min_points"] for level in levels[:-1]]
    if thresholds != sorted(thresholds, reverse=True):
        raise RiskModelError(f"{shown}: levels: from the highest min_points down")
    return RiskModel(str(document["version"]), tuple(document["rules"]), tuple(levels),
                     tuple(document.get("not_assessed_statuses") or []))


def assess_profiles(profiles, model: RiskModel, as_of):
    """One row per assessed entity of ``profiles`` (base.enterprise_profile
    rows): its points, level and the rules that held. Pure. ``as_of``: a
    date Column or literal."""
    from pyspark.sql import functions as F

    assessed = profiles.where(~F.col("registration_status").isin(*model.not_assessed_statuses)
                              | F.col("registration_status").isNull()).withColumn("as_of", as_of)
    held = [F.when(F.coalesce(F.expr(rule["when"]), F.lit(False)),
                   F.struct(F.lit(rule["id"]).alias("id"), F.lit(rule["points"]).alias("points"),
                            F.lit(f"{rule['id']} ({rule['points']}): {rule['description']}").alias("reason")))
            for rule in model.rules]
    scored = assessed.withColumn("_held", F.filter(F.array(*held), lambda h: h.isNotNull()))
    points = F.aggregate("_held", F.lit(0), lambda total, h: total + h["points"])
    scored = scored.withColumn("risk_points", points.cast("int"))
    level = threshold_ladder(F.col("risk_points"), model.levels, "level", "min_points")
    return scored.select("uscc", "entity_name", "town_code", "grid_code", "risk_points", level.alias("risk_level"),
                         F.transform(F.array_sort(F.transform("_held", lambda h: F.struct(h["id"], h["reason"]))),
                                     lambda h: h["reason"]).alias("risk_reasons"),
                         F.lit(model.version).alias("model_version"))


def supervision_risks(spark, settings: Settings, _spec=None, today=None, _live=None, touched=None):
    """base.supervision_risk from base.enterprise_profile (built first), as of
    ``today`` (the build's date; default: the session's). ``touched``
    (``_key``: USCCs): only those entities (``supervision_risk_touched``)."""
    from pyspark.sql import functions as F

    profiles = spark.read.format("delta").load(settings.lake_path("base", "enterprise_profile")).where("is_current")
    if touched is not None:
        keys = joinable_keys(touched)
        profiles = profiles.join(keys, profiles["uscc"] == keys["_key"], "left_semi")
    as_of = F.lit(today).cast("date") if today is not None else F.current_date()
    return assess_profiles(profiles, load_risk_model(settings), as_of)


def supervision_risk_touched(spark, settings: Settings, _spec, plan, state):
    """The entities (``_key``) an incremental build of base.supervision_risk
    assesses again: those whose profile appeared, changed or left, and, when
    the date moved, those for which a rule that reads ``as_of`` gives another
    answer today than on the last build's date."""
    from datetime import date

    from pyspark.sql import functions as F

    from pipelines.libraries.incremental import changed_upstream_keys

    before = plan.previous.upstream.get("enterprise_profile") if plan.previous is not None else None
    parts = [changed_upstream_keys(spark, "enterprise_profile", "uscc", before, settings)]
    since, today = date.fromisoformat(plan.previous.as_of), date.fromisoformat(state.as_of)
    dated = [rule for rule in load_risk_model(settings).rules if "as_of" in rule["when"]]
    if since != today and dated:
        current = spark.read.format("delta").load(settings.lake_path("base", "enterprise_profile")).where("is_current")

        def answers():
            return F.array(*[F.coalesce(F.expr(rule["when"]), F.lit(False)) for rule in dated]).alias("_answers")

        then = current.withColumn("as_of", F.lit(since).cast("date")).select("uscc", answers())
        now = (current.withColumn("as_of", F.lit(today).cast("date"))
               .select(F.col("uscc").alias("_now_uscc"), answers().alias("_now")))
        parts.append(then.join(now, then["uscc"] == now["_now_uscc"]).where(F.col("_answers") != F.col("_now"))
                     .select(F.col("uscc").alias("_key")))
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull())


def town_risk_list(spark, settings: Settings, town: str, levels: tuple[str, ...] = ("high", "medium")) -> list[dict]:
    """The current assessments of one town (its code or name) at ``levels``,
    highest points first: the list a town's supervision office works from."""
    from pyspark.sql import functions as F

    from pipelines.reference import TOWN_CODE_BY_NAME, TOWNS

    code = TOWN_CODE_BY_NAME.get(town, town)
    if code not in TOWNS:
        raise LookupError(f"no town {town!r} in the city (a town code or name of pipelines/reference.py)")
    risks = spark.read.format("delta").load(settings.lake_path("base", "supervision_risk")).where("is_current")
    rows = (risks.where((F.col("town_code") == code) & F.col("risk_level").isin(*levels))
            .orderBy(F.col("risk_points").desc(), "uscc").collect())
    return [r.asDict(recursive=True) for r in rows]
