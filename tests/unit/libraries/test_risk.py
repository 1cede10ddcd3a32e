"""The supervision risk model on tiny profiles: each rule's points once,
levels off the thresholds, reasons named, deregistered entities left out,
rules that read the date answering for the date given; a broken model is
refused naming the file and field."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime

import pytest
from pyspark.sql import functions as F

from pipelines.libraries.risk import RiskModelError, assess_profiles, load_risk_model
from pipelines.settings import PROJECT_ROOT, get_settings

PROFILE = ("uscc string, entity_name string, registration_status string, town_code string, grid_code string, "
           "hazards_by_category array<struct<category:string,open:bigint,closed:bigint>>, "
           "hazard_latest_reported_at timestamp, hazards_open bigint, hazards_closed bigint, "
           "penalty_latest_on date, penalty_count bigint, abnormal_open bigint, dishonest_open bigint, "
           "licences_expired bigint, credit_grade string")


def _hazards(**open_by_category):
    return [{"category": c, "open": open_by_category.get(c, 0), "closed": 0}
            for c in ("消防", "食品安全", "安全生产", "治安", "环境")]


def test_points_levels_and_reasons(spark):
    model = load_risk_model(get_settings())
    profiles = spark.createDataFrame([
        # an open fire hazard (30) reported within 90 days (10), a penalty this year (20): high
        ("E1", "甲", "存续", "441900004", "G1", _hazards(消防=1), datetime(2026, 11, 20), 1, 0, date(2026, 5, 1), 1,
         0, 0, 0, "B"),
        # on the abnormal list (25) and grade C (15): medium
        ("E2", "乙", "在业", "441900004", "G1", _hazards(), None, 0, 0, None, 0, 1, 0, 0, "C"),
        # nothing: low, no reasons
        ("E3", "丙", "存续", "441900121", None, _hazards(), None, 0, 0, None, 0, 0, 0, 0, "A"),
        # deregistered: not assessed
        ("E4", "丁", "注销", "441900121", None, _hazards(消防=3), None, 3, 0, None, 0, 0, 1, 0, "D")], PROFILE)
    rows = {r["uscc"]: r.asDict() for r in assess_profiles(profiles, model, F.lit(date(2026, 12, 7))).collect()}
    assert set(rows) == {"E1", "E2", "E3"}
    assert (rows["E1"]["risk_points"], rows["E1"]["risk_level"]) == (60, "high")
    assert [r.split(" ")[0] for r in rows["E1"]["risk_reasons"]] == [
        "fire_hazard_open", "hazard_reported_recently", "penalty_within_a_year"]
    assert rows["E1"]["risk_reasons"][0] == "fire_hazard_open (30): 有未办结的消防隐患"
    assert (rows["E2"]["risk_points"], rows["E2"]["risk_level"]) == (40, "medium")
    assert (rows["E3"]["risk_points"], rows["E3"]["risk_level"], rows["E3"]["risk_reasons"]) == (0, "low", [])
    assert {r["model_version"] for r in rows.values()} == {model.version}
    # the same profile a year later: the penalty and the hazard's recency no longer count
    later = {r["uscc"]: r for r in assess_profiles(profiles, model, F.lit(date(2027, 12, 7))).collect()}
    assert (later["E1"]["risk_points"], later["E1"]["risk_level"]) == (30, "medium")


@pytest.mark.parametrize("broken, message", [
    ("  - id: fire_hazard_open\n    description: 有未办结的消防隐患\n", "rules[0].when: required"),
    ("    points: 30\n", "rules[0].points: a whole number of points"),
    ("  - {level: low, min_points: null}\n", "levels: the last level, and only it"),
])
def test_a_broken_model_is_refused_naming_the_field(tmp_path, broken, message):
    shutil.copytree(PROJECT_ROOT / "schemas", tmp_path / "schemas")
    path = tmp_path / "schemas" / "rules" / "supervision_risk.yaml"
    text = path.read_text(encoding="utf-8")
    replacement = {"rules[0].when: required": "  - id: fire_hazard_open\n    description: 有未办结的消防隐患\n",
                   "rules[0].points: a whole number of points": "    points: -30\n",
                   "levels: the last level, and only it": "  - {level: low, min_points: 5}\n"}[message]
    if message.startswith("rules[0].when"):
        text = text.replace('    when: "exists(hazards_by_category, h -> h.category = \'消防\' AND h.open > 0)"\n',
                            "", 1)
    else:
        text = text.replace(broken, replacement, 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RiskModelError, match=r"schemas/rules/supervision_risk.yaml: " + message.replace("[", r"\[")
                       .replace("]", r"\]")):
        load_risk_model(dataclasses.replace(get_settings(), schemas_dir=tmp_path / "schemas"))
