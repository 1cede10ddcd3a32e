"""The "double random, one public" draw on a built city, against the
generator's truth: every planted relation between an inspector and an
entity is found and recused over 100 seeds; per-grade sizes follow the
ratios; a draw is recorded, verified from its record, never repeats an
entity's inspectors, and its public notice carries no personal data; a
shortfall or a broken plan is refused and writes nothing."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from pyspark.sql import functions as F

from pipelines.applications.inspection import (
    NOT_OPERATING, DrawNotReproduced, DrawRefused, PlanError, draw, draw_plan, load_plan, parse_plan, qualified,
    read_draw_inputs, sample_size, standing_draw, verify_draw, write_public_notice)
from pipelines.contracts import get_contract
from pipelines.ingest.load import ingest_file
from pipelines.lake.delta import append_rows, read_delta_rows
from pipelines.lake.paths import governance_path, table_path
from pipelines.lake.tables import INSPECTION_ASSIGNMENTS_DDL, INSPECTION_DRAWS_DDL
from pipelines.settings import get_settings
from tests.integration.cities import copy_built_lake, truth_rows

EVERYONE = """
plan: everyone
title: 全量测试计划
department: 东莞市市场监督管理局
period: {start: 2026-12-01, end: 2026-12-31}
max_inspections_per_inspector: 100000
items:
  - item: all-food
    title: 全部主体（食品类执法人员）
    legal_basis: 测试
    enforcement_category: 食品
    sampling_ratio: {A: 1, B: 1, C: 1, D: 1}
    inspectors_per_entity: 2
"""


@pytest.fixture(scope="module")
def lake(built_city, tmp_path_factory):
    """A copy of the session's built city as built (draws write to governance)."""
    return copy_built_lake(built_city, tmp_path_factory, "inspection")


def _govlake(settings, *args):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, GOVLAKE_HOME=settings.home), timeout=600)


def test_the_roster_reaches_silver_as_delivered(spark, lake):
    root, settings = lake
    silver = spark.read.format("delta").load(table_path("silver", get_contract("amr.inspector"), settings))
    got = {(r.certificate_number, r.id_number, r.enforcement_category, r.duty_status) for r in silver.collect()}
    want = {(t["certificate_number"], t["person_id"], t["enforcement_category"], t["duty_status"])
            for t in truth_rows(root, "inspectors.csv")}
    assert got == want and len(want) >= 30


def test_the_lake_finds_exactly_the_planted_relations(lake):
    root, settings = lake
    inputs = read_draw_inputs(parse_plan(EVERYONE, "everyone.yaml"), settings)
    found = {(cert, uscc, reason) for cert, barred in inputs.recusals.items() for uscc, reason in barred.items()}
    truth = {(t["certificate_number"], t["uscc"], t["relation"]) for t in truth_rows(root, "inspector_conflicts.csv")}
    assert found == truth
    assert {reason for _, _, reason in truth} == {"legal_representative", "household_legal_representative",
                                                  "employer"}


def test_no_planted_conflict_of_interest_is_drawn_over_100_seeds(lake):
    root, settings = lake
    plan = parse_plan(EVERYONE, "everyone.yaml")
    inputs = read_draw_inputs(plan, settings)
    conflicts = {(t["certificate_number"], t["uscc"]) for t in truth_rows(root, "inspector_conflicts.csv")}
    pool = {i.certificate_number for i in inputs.inspectors if qualified(plan, plan.items[0], i)}
    graded = {e.uscc for e in inputs.entities}
    # every entity is drawn: each conflict of a qualified inspector with a graded entity is a chance to fail
    exposed = {(cert, uscc) for cert, uscc in conflicts if cert in pool and uscc in graded}
    assert len(exposed) >= 10 and len(pool) >= 8
    violations = 0
    for seed in range(100):
        result = draw_plan(plan, inputs, seed)
        assert len(result.assignments) == len(graded)
        violations += sum((cert, a.uscc) in conflicts for a in result.assignments for cert in a.certificates)
    assert violations == 0
    # nor an entity's inspectors of its last inspection (amr.inspection_result)
    last = {t["uscc"]: set(t["certificate_numbers"].split(";")) for t in truth_rows(root, "last_inspections.csv")}
    assert len({uscc for uscc in last if uscc in graded}) >= 20
    for seed in range(20):
        for a in draw_plan(plan, inputs, seed).assignments:
            assert not last.get(a.uscc, set()) & set(a.certificates), (seed, a)
    assert {u: c for u, c in inputs.previous.items() if u in last} == {u: frozenset(c) for u, c in last.items()}
    # without the recusals the same draws do assign conflicted inspectors: the check above can fail
    unguarded = dataclasses.replace(inputs, recusals={})
    assert sum((cert, a.uscc) in conflicts for seed in range(20)
               for a in draw_plan(plan, unguarded, seed).assignments for cert in a.certificates) > 0


def test_per_grade_sizes_follow_the_ratios_of_the_cited_plan(spark, lake):
    _, settings = lake
    plan = load_plan("amr-2026-12", settings)
    result = draw_plan(plan, read_draw_inputs(plan, settings), seed=2026)
    price = plan.items[1]
    assert price.item == "price-conduct"
    # the same scope counted by Spark over the libraries
    people = spark.read.format("delta").load(settings.lake_path("base", "legal_person")).where("is_current")
    grades = spark.read.format("delta").load(settings.lake_path("base", "credit_rating")).where("is_current")
    counted = (people.where(~F.col("registration_status").isin(*NOT_OPERATING)
                            & F.substring("industry_code", 1, 1).isin(*price.scope.industry_sections)
                            & F.col("entity_type").isin(*price.scope.entity_types))
               .join(grades.select("uscc", "risk_grade"), "uscc").groupBy("risk_grade").count().collect())
    in_scope = {g: 0 for g in "ABCD"} | {r.risk_grade: r["count"] for r in counted}
    summary = result.items[1]
    assert summary["in_scope"] == in_scope and sum(in_scope.values()) > 100
    assert summary["drawn"] == {g: sample_size(n, price.sampling_ratio[g]) for g, n in in_scope.items()}
    drawn = Counter(a.grade for a in result.assignments if a.item == "price-conduct")
    assert {g: drawn.get(g, 0) for g in "ABCD"} == summary["drawn"]


def _plan_named(settings, tmp_path, name: str, **replace: str):
    """The cited plan under another name (a plan file of its own), with text replacements."""
    text = (settings.schemas_dir / "inspections" / "amr-2026-12.yaml").read_text(encoding="utf-8")
    text = text.replace("plan: amr-2026-12", f"plan: {name}")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _assignments(settings, draw_id):
    return {(r["uscc"], r["certificate_number"])
            for r in read_delta_rows(governance_path("inspection_assignments", settings), [("draw_id", "=", draw_id)])}


def test_a_draw_is_recorded_verified_and_published_without_personal_data(spark, lake, tmp_path):
    root, settings = lake
    first = draw("amr-2026-12", 11, settings, "tester")
    assert len(_assignments(settings, first["draw_id"])) == first["assignments"] > 0
    # another plan's draw reads the first: nobody inspects an entity drawn in both twice in a row
    second = draw(_plan_named(settings, tmp_path, "amr-2027-01"), 11, settings, "tester")
    assert not _assignments(settings, first["draw_id"]) & _assignments(settings, second["draw_id"])
    assert {u for u, _ in _assignments(settings, first["draw_id"])} & {u for u, _ in _assignments(
        settings, second["draw_id"])}                                  # some entities are drawn in both
    # a plan has one draw in force: drawing it again is refused unless it names what it replaces and why
    with pytest.raises(DrawRefused, match=f"plan amr-2026-12 was drawn already: {first['draw_id']}"):
        draw("amr-2026-12", 12, settings, "tester")
    with pytest.raises(DrawRefused, match="give the --reason"):
        draw("amr-2026-12", 12, settings, "tester", replaces=first["draw_id"])
    # a file may not draw under a registered plan's name with other text
    with pytest.raises(PlanError, match="is the name of a registered plan"):
        draw(_plan_named(settings, tmp_path, "amr-2026-12", **{"D: 1.0}": "D: 0.5}"}), 1, settings, "tester")
    redraw = draw("amr-2026-12", 12, settings, "tester", replaces=first["draw_id"], reason="seed misannounced")
    assert (redraw["replaces_draw_id"], redraw["reason"]) == (first["draw_id"], "seed misannounced")
    # every draw verifies from its record, each at its own recorded versions
    for record in (first, second, redraw):
        assert verify_draw(record["draw_id"], settings) == {
            "draw_id": record["draw_id"], "recorded_digest": record["result_digest"],
            "stored_digest": record["result_digest"], "digest": record["result_digest"], "reproduced": True,
            "problems": []}
    # a record whose digest its inputs do not give is caught, and so is a tampered result
    forged = dict(first, draw_id="forged", result_digest="0" * 64)
    append_rows(governance_path("inspection_draws", settings), [forged], INSPECTION_DRAWS_DDL)
    assert verify_draw("forged", settings)["problems"] == [
        "the stored assignments are not the recorded result",
        "drawing again from the recorded inputs gives another result"]
    row = read_delta_rows(governance_path("inspection_assignments", settings), [("draw_id", "=", second["draw_id"])])[0]
    append_rows(governance_path("inspection_assignments", settings),
                [dict(row, inspector_slot=9, certificate_number="44190021999999")], INSPECTION_ASSIGNMENTS_DDL)
    assert verify_draw(second["draw_id"], settings)["problems"] == [
        "the stored rows of position 0 disagree", "the stored assignments are not the recorded result"]
    with pytest.raises(DrawNotReproduced, match="position 0 disagree"):
        write_public_notice(second["draw_id"], settings, tmp_path)
    # the notice: every entity drawn, per item, and nothing about persons
    written = write_public_notice(first["draw_id"], settings, tmp_path)
    drawn = {(r["item"], r["uscc"]) for r in read_delta_rows(governance_path("inspection_assignments", settings),
                                                             [("draw_id", "=", first["draw_id"])])}
    with open(written["csv"], encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert written["entities"] == len(rows) == len(drawn) == first["entities_drawn"]
    assert {r["统一社会信用代码"] for r in rows} == {uscc for _, uscc in drawn}
    text = open(written["html"], encoding="utf-8").read() + open(written["csv"], encoding="utf-8-sig").read()
    assert not re.search(r"(src|href)\s*=|@import|url\(", text)            # nothing fetched from elsewhere
    persons = [t["person_id"] for t in truth_rows(root, "persons.csv")]
    inspectors = truth_rows(root, "inspectors.csv")
    assert not [p for p in persons if p in text]
    assert not [t for t in inspectors if t["certificate_number"] in text or t["full_name"] in text]
    assert not re.search(r"[1-8]\d{5}(19|20)\d{9}[\dX]", text)            # no ID number of anyone


def test_the_cli_refuses_a_broken_plan_a_shortfall_and_a_second_draw_and_writes_nothing(lake, tmp_path):
    _, settings = lake

    def written():
        return (len(read_delta_rows(governance_path("inspection_draws", settings))),
                len(read_delta_rows(governance_path("inspection_assignments", settings))))

    before = written()
    broken = _plan_named(settings, tmp_path, "broken", **{"towns: [南城街道,": "towns: [南城,"})
    refused = _govlake(settings, "inspect", "draw", "--plan", broken, "--seed", "1")
    assert refused.returncode == 1
    assert f"{broken}: items[2].scope.towns: unknown town '南城'" in refused.stderr
    short = _plan_named(settings, tmp_path, "short", **{"max_inspections_per_inspector: 40":
                                                        "max_inspections_per_inspector: 1"})
    refused = _govlake(settings, "inspect", "draw", "--plan", short, "--seed", "1")
    assert refused.returncode == 1
    assert re.search(r"too few inspectors; nothing was drawn: [a-z-]+ \(.*\): \d+ of \d+ drawn entities lack 2",
                     refused.stderr), refused.stderr
    assert written() == before
    done = _govlake(settings, "inspect", "draw", "--plan", _plan_named(settings, tmp_path, "cli"), "--seed", "5",
                    "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    again = _govlake(settings, "inspect", "draw", "--plan", _plan_named(settings, tmp_path, "cli"), "--seed", "6")
    assert again.returncode == 1 and f"plan cli was drawn already: {record['draw_id']}" in again.stderr
    verified = _govlake(settings, "inspect", "verify", record["draw_id"], "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["reproduced"] is True
    assert written()[0] == before[0] + 1


def test_the_plan_dag_draws_verifies_and_publishes_through_airflow(lake, monkeypatch):
    from pipelines.orchestration.airflow_local import run_dag

    _, settings = lake
    before = {r["draw_id"] for r in read_delta_rows(governance_path("inspection_draws", settings))}
    monkeypatch.setenv("GOVLAKE_HOME", settings.home)
    get_settings.cache_clear()
    try:
        standing = standing_draw("amr-2026-12", get_settings())
        conf = {"seed": 9} | ({"replaces": standing["draw_id"], "reason": "DAG test"} if standing else {})
        run = run_dag("inspect__amr_2026_12", get_settings(), run_conf=conf)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert run["state"] == "success", run
    assert run["tasks"] == {"draw": "success", "verify": "success", "publish_notice": "success"}
    [new] = [r for r in read_delta_rows(governance_path("inspection_draws", settings)) if r["draw_id"] not in before]
    assert new["seed"] == 9 and new["drawn_by"].startswith("airflow:")
    assert (settings.local_lake_path("notices") / f"{new['draw_id']}.html").is_file()


def test_a_draw_verifies_at_its_versions_after_the_roster_changes(lake, tmp_path):
    """Last in this module: it puts inspectors off duty."""
    root, settings = lake
    record = draw(_plan_named(settings, tmp_path, "roster-change"), 3, settings, "tester")
    # next month's roster: everyone the draw assigned is off duty
    assigned = {cert for _, cert in _assignments(settings, record["draw_id"])}
    [delivered] = (root / "deliveries" / "amr" / "inspector").glob("*.csv")
    lines = delivered.read_text(encoding="utf-8").splitlines()
    changed = [lines[0]] + [line.replace(",在岗", ",离岗") if line.split(",")[0] in assigned else line
                            for line in lines[1:]]
    newer = tmp_path / "inspector_20261228.csv"
    newer.write_text("\n".join(changed) + "\n", encoding="utf-8")
    assert ingest_file(get_contract("amr.inspector"), newer, settings=settings, run_gate=False).status == "loaded"
    inputs = read_draw_inputs(load_plan(_plan_named(settings, tmp_path, "roster-change"), settings), settings)
    assert not {i.certificate_number for i in inputs.inspectors if i.on_duty} & assigned
    assert verify_draw(record["draw_id"], settings)["reproduced"] is True
