"""The quality gate with real GX and real Delta tables: pass, block, approve,
governance issues opening and closing, Data Docs and quality_results."""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql import functions as F

from pipelines.contracts import get_contract, load_contracts
from pipelines.dev.synth.city import DefectRates, write_hukou_export
from pipelines.governance.reports import scorecard
from pipelines.ingest.load import approve_blocked_load, ingest_file
from pipelines.lake.delta import delta_version, read_delta_rows, read_table
from pipelines.lake.manifest import read_manifest
from pipelines.lake.paths import governance_path, table_path
from pipelines.quality.gate import build_data_docs, data_docs_index

CLEAN = DefectRates().scaled(0.0)
# 30% of ID numbers carry a wrong check character: far above the 5% threshold.
BROKEN_IDS = dataclasses.replace(CLEAN, id_wrong_check=0.3)


@pytest.fixture(scope="module")
def gate_story(spark, tmp_path_factory):
    """clean delivery -> delivery with 30% bad IDs (blocked) -> clean delivery.

    The middle delivery runs on GX's pandas engine (the reference), the
    others on the default DuckDB engine; Data Docs are built once at the end,
    for the three validations, as ``govlake ingest`` does for its run.
    """
    root = tmp_path_factory.mktemp("gate")
    settings = dataclasses.replace(
        __import__("pipelines.settings", fromlist=["get_settings"]).get_settings(), home=str(root / "lake"))
    contract = get_contract("psb.hukou")
    files = {
        "clean": write_hukou_export(root / "d1", 400, seed=21, rates=CLEAN),
        "broken": write_hukou_export(root / "d2", 400, seed=22, rates=BROKEN_IDS),
        "clean_again": write_hukou_export(root / "d3", 420, seed=23, rates=CLEAN),
    }
    silver = table_path("silver", contract, settings)
    story = {"settings": settings, "contract": contract, "files": files, "silver": silver}
    story["clean"] = ingest_file(contract, files["clean"], settings=settings)
    story["version_after_clean"] = delta_version(spark, silver)
    story["issues_after_clean"] = [r.asDict() for r in read_table(spark, "issues", settings).collect()]
    pandas_engine = dataclasses.replace(settings, gate_engine="pandas")
    story["broken"] = ingest_file(contract, files["broken"], settings=pandas_engine)
    story["version_after_broken"] = delta_version(spark, silver)
    story["issues_after_broken"] = [r.asDict() for r in read_table(spark, "issues", settings).collect()]
    story["scorecard_after_broken"] = {r.feed: r for r in scorecard(spark, load_contracts(), settings)}
    story["clean_again"] = ingest_file(contract, files["clean_again"], settings=settings)
    story["issues_after_clean_again"] = [r.asDict() for r in read_table(spark, "issues", settings).collect()]
    story["docs_before_build"] = data_docs_index(settings).exists()
    build_data_docs(settings, [story[name].gate for name in ("clean", "broken", "clean_again")])
    return story


def test_clean_delivery_passes_the_gate(gate_story):
    result = gate_story["clean"]
    assert result.status == "loaded"
    assert result.gate.success and not result.gate.blocked
    assert result.gate.engine == "duckdb"
    assert gate_story["issues_after_clean"] == []


def test_delivery_with_30pct_bad_ids_is_blocked_and_silver_unchanged(spark, gate_story):
    result = gate_story["broken"]
    assert result.status == "blocked"
    assert result.gate.engine == "pandas"
    failed = {o.rule for o in result.gate.blocking_failures}
    assert {"quarantine_share", "id_number.present_and_valid"} <= failed
    share = next(o for o in result.gate.outcomes if o.rule == "quarantine_share")
    assert 0.2 < share.unexpected_count / share.element_count < 0.4
    assert gate_story["version_after_broken"] == gate_story["version_after_clean"]
    assert "blocked by the quality gate" in result.message and "GI-" in result.message
    statuses = {r["load_id"]: r["status"] for r in read_manifest(spark, gate_story["settings"]).collect()}
    assert statuses[result.load_id] == "blocked"
    # re-delivering the same blocked file is recognised and stays blocked
    again = ingest_file(gate_story["contract"], gate_story["files"]["broken"],
                        settings=gate_story["settings"])
    assert again.status == "blocked" and "nothing changed" in again.message


def test_governance_issue_opens_with_feed_rule_and_sample_rows(gate_story):
    result = gate_story["broken"]
    issues = {i["rule"]: i for i in gate_story["issues_after_broken"] if i["status"] == "open"}
    assert {"quarantine_share", "id_number.present_and_valid", "id_number.check_character"} <= set(issues)
    issue = issues["id_number.check_character"]
    assert issue["feed"] == "psb.hukou" and issue["bureau"] == "psb"
    assert issue["first_load_id"] == result.load_id
    assert 0.2 * 400 < issue["affected_rows"] < 0.4 * 400
    assert issue["sample_rows"] and all(s.startswith(result.source_file + ":") for s in issue["sample_rows"])
    assert issues["quarantine_share"]["sample_rows"]


def test_scorecard_shows_the_blocked_delivery(gate_story):
    row = gate_story["scorecard_after_broken"]["psb.hukou"]
    assert row.last_status == "blocked" and row.blocked_loads == 1
    assert 0.6 < row.validity < 0.8
    assert row.open_issues >= 3
    assert gate_story["scorecard_after_broken"]["mca.death"].timeliness == "missing"


def test_next_clean_delivery_closes_the_issues(gate_story):
    result = gate_story["clean_again"]
    assert result.status == "loaded"
    after = {i["issue_id"]: i for i in gate_story["issues_after_clean_again"]}
    opened = [i for i in gate_story["issues_after_broken"] if i["status"] == "open"]
    assert opened
    for issue in opened:
        closed = after[issue["issue_id"]]
        assert closed["status"] == "closed", issue["rule"]
        assert closed["closed_reason"] == f"passed in delivery {result.load_id}"
    assert not [i for i in after.values() if i["status"] == "open"]


def test_quality_results_match_the_checkpoint(spark, gate_story):
    result = gate_story["broken"]
    rows = {r["rule"]: r for r in read_table(spark, "quality_results", gate_story["settings"])
            .where(F.col("load_id") == result.load_id).collect()}
    assert len(rows) == len(result.gate.outcomes)
    for outcome in result.gate.outcomes:
        row = rows[outcome.rule]
        assert row["run_id"] == result.gate.run_id and row["feed"] == "psb.hukou"
        assert (row["success"], row["blocking"]) == (outcome.success, outcome.blocking)
        assert row["unexpected_count"] == outcome.unexpected_count
        assert row["element_count"] == outcome.element_count


def test_data_docs_are_built_once_per_run_and_name_the_suite(gate_story):
    assert not gate_story["docs_before_build"], "a validation rendered Data Docs by itself"
    index = data_docs_index(gate_story["settings"])
    assert index.is_file()
    html = index.read_text(encoding="utf-8")
    assert "psb_hukou" in html
    pages = list(index.parent.glob("validations/psb_hukou/**/*.html"))
    assert len(pages) >= 3


def test_governor_approves_a_blocked_load(spark, gate_story):
    """Runs last in this module: promotes the blocked delivery."""
    settings, silver = gate_story["settings"], gate_story["silver"]
    blocked = gate_story["broken"]
    before = delta_version(spark, silver)
    with pytest.raises(ValueError, match="reason"):
        approve_blocked_load(blocked.load_id, " ", "governor-li", settings)
    approval = approve_blocked_load(blocked.load_id, "bureau confirmed IDs are being re-keyed",
                                    "governor-li", settings)
    assert approval["rows_promoted"] == blocked.rows_loaded
    assert delta_version(spark, silver) == before + 1
    promoted = spark.read.format("delta").load(silver).where(F.col("_load_id") == blocked.load_id).count()
    assert promoted == blocked.rows_loaded
    pending = table_path("pending", gate_story["contract"], settings)
    assert spark.read.format("delta").load(pending).where(F.col("_load_id") == blocked.load_id).count() == 0
    recorded = spark.read.format("delta").load(governance_path("quality_approvals", settings)).collect()
    assert [(r["load_id"], r["approved_by"]) for r in recorded] == [(blocked.load_id, "governor-li")]
    statuses = {r["load_id"]: r for r in read_manifest(spark, settings).collect()}
    assert statuses[blocked.load_id]["status"] == "loaded"
    assert "approved by governor-li" in statuses[blocked.load_id]["message"]
    with pytest.raises(ValueError, match="not blocked"):
        approve_blocked_load(blocked.load_id, "again", "governor-li", settings)


def test_base_library_suites_gate_golden_records(spark, tmp_path):
    """One golden record per person, valid identifiers, referential integrity (by the
    build's *_found columns): on small tables standing in for the base libraries."""
    from datetime import date

    from pipelines.quality.gate import validate_library
    from pipelines.settings import get_settings

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    people = [("441900199001011234", "甲", "男", date(1990, 1, 1)),
              ("441900199202022345", "乙", "女", date(1992, 2, 2))]
    schema = "person_id string, full_name string, gender string, birth_date date"
    clean = validate_library(spark.createDataFrame(people, schema), "population", "test-clean", settings)
    assert clean.success and not clean.blocked
    merged_twice = people + [("441900199001011234", "甲", "男", date(1990, 1, 1)),
                             ("44190019900101123", "丙", "男", date(1990, 1, 1))]
    broken = validate_library(spark.createDataFrame(merged_twice, schema), "population", "test-broken", settings)
    assert broken.blocked
    failed = {o.rule: o for o in broken.blocking_failures}
    assert set(failed) == {"person_id.unique", "person_id.id_number_format"}
    assert "441900199001011234" in failed["person_id.unique"].sample_rows

    entities = [("91441900MA4UX0001X", "东莞甲公司", True), ("91441900MA4UX0002X", "东莞乙公司", False)]
    legal = validate_library(spark.createDataFrame(entities, "uscc string, entity_name string, "
                                                             "legal_representative_found boolean"),
                             "legal_person", "test-legal", settings)
    assert not legal.blocked and [o.rule for o in legal.warnings] == ["legal_representative.found_in_population"]
    # an incremental build gates its few records as an Arrow table (GX on DuckDB): the same outcomes
    for result, frame, library in ((clean, people, "population"), (broken, merged_twice, "population")):
        arrow = validate_library(spark.createDataFrame(frame, schema).toArrow(), library, "test-arrow", settings)
        assert arrow.engine != "spark" and _outcomes(arrow) == _outcomes(result)


def _outcomes(gate) -> list[tuple]:
    return sorted((o.rule, o.success, o.element_count, o.unexpected_count, sorted(map(str, o.sample_rows)))
                  for o in gate.outcomes)


def test_a_correction_is_not_approved_once_another_replaced_its_target(lake_settings, tmp_path):
    """r2 corrects r1 and is blocked; r3 corrects r1 and loads. Approving r2
    would put a second correction of r1 into silver: refused, naming r1."""
    contract = get_contract("psb.hukou")
    first = ingest_file(contract, write_hukou_export(tmp_path / "r1", 300, seed=51, rates=CLEAN),
                        settings=lake_settings)
    blocked = ingest_file(contract, write_hukou_export(tmp_path / "r2", 300, seed=52, rates=BROKEN_IDS),
                          replaces=first.load_id, settings=lake_settings)
    corrected = ingest_file(contract, write_hukou_export(tmp_path / "r3", 300, seed=53, rates=CLEAN),
                            replaces=first.load_id, settings=lake_settings)
    assert (first.status, blocked.status, corrected.status) == ("loaded", "blocked", "loaded")
    with pytest.raises(ValueError, match=f"corrects {first.load_id}, which is no longer loaded .replaced"):
        approve_blocked_load(blocked.load_id, "looks fine", "governor-li", lake_settings)
    silver = read_delta_rows(table_path("silver", contract, lake_settings))
    assert {row["_load_id"] for row in silver} == {corrected.load_id}


def test_an_edited_suite_is_used_at_the_next_gate_and_an_unchanged_one_is_reused(tmp_path):
    """The gate keeps its GX checkpoint between runs while the suite is the
    same, and stores it again once the suite file changes: an edit to a
    suite takes effect at the very next delivery."""
    import json
    import shutil

    from pipelines.settings import get_settings

    base = get_settings()
    quality = tmp_path / "quality"
    shutil.copytree(base.quality_dir, quality)
    settings = dataclasses.replace(base, home=str(tmp_path / "lake"), quality_dir=quality)
    contract = get_contract("psb.hukou")
    first = ingest_file(contract, write_hukou_export(tmp_path / "d1", 300, seed=31, rates=CLEAN), settings=settings)
    marker = settings.local_lake_path("quality", "gx", "uncommitted", "govlake_checkpoints", "psb_hukou.duckdb")
    stored = marker.read_text()
    second = ingest_file(contract, write_hukou_export(tmp_path / "d2", 300, seed=32, rates=CLEAN), settings=settings)
    assert first.status == second.status == "loaded" and marker.read_text() == stored
    # a governor tightens the gender rule to a set no row can meet
    suite_file = quality / "suites" / "psb.hukou.json"
    suite = json.loads(suite_file.read_text(encoding="utf-8"))
    rule = next(e for e in suite["expectations"] if e["meta"]["rule"] == "gender.enum")
    rule["kwargs"]["value_set"] = ["男"]
    suite_file.write_text(json.dumps(suite, ensure_ascii=False), encoding="utf-8")
    third = ingest_file(contract, write_hukou_export(tmp_path / "d3", 300, seed=33, rates=CLEAN), settings=settings)
    assert third.status == "blocked" and marker.read_text() != stored
    failed = [o for o in third.gate.outcomes if not o.success]
    assert [o.rule for o in failed] == ["gender.enum"] and failed[0].kwargs["value_set"] == ["男"]
