"""`govlake demo --json` end to end (through Airflow, Trino left running), and
its printed figures checked against the lake."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from pipelines.contracts import load_contracts
from pipelines.lake.delta import delta_exists, read_delta_rows, read_table
from pipelines.lake.paths import governance_path, table_path
from pipelines.library_specs import library_names
from pipelines.portal.service import portal_down
from pipelines.serving.trino import trino_down
from pipelines.settings import get_settings


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    settings = dataclasses.replace(get_settings(), home=str(root / "lake"), airflow_home=root / "airflow",
                                   trino_home=root / "trino", trino_port=18460, trino_heap="2G", portal_port=18462)
    environment = dict(os.environ, GOVLAKE_HOME=settings.home, GOVLAKE_AIRFLOW_HOME=str(settings.airflow_home),
                       GOVLAKE_TRINO_HOME=str(settings.trino_home), GOVLAKE_TRINO_PORT="18460",
                       GOVLAKE_TRINO_HEAP="2G", GOVLAKE_PORTAL_PORT="18462")
    try:
        completed = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--scale", "0.0006",
                                    "--seed", "5", "--json"], env=environment, capture_output=True, text=True,
                                   timeout=1500)
        assert completed.returncode == 0, completed.stderr[-3000:]
        yield json.loads(completed.stdout), settings
    finally:
        portal_down(settings)
        trino_down(settings)


def test_demo_figures_agree_with_the_lake(spark, demo_run):
    summary, settings = demo_run
    assert summary["ok"], summary["notes"]
    contracts = load_contracts()
    assert {f["feed"] for f in summary["feeds"]} == set(contracts)
    for feed in summary["feeds"]:
        assert feed["reconciles"], feed
        silver = table_path("silver", contracts[feed["feed"]], settings)
        rows = spark.read.format("delta").load(silver).count() if delta_exists(spark, silver) else 0
        assert feed["silver_rows"] == rows, feed["feed"]
    open_issues = read_table(spark, "issues", settings).where(F.col("status") == "open").count()
    assert len(summary["open_issues"]) == open_issues
    states = {run["dag_id"]: run["state"] for run in summary["dag_runs"]}
    assert states["publish"] == states["governance_daily"] == "success"
    # the day's scorecard, stored by its DAG: one row per feed
    assert {r["feed"] for r in read_delta_rows(governance_path("scorecard_history", settings))} == set(contracts)
    assert all(states[f"library__{name}"] == "success" for name in library_names(settings))
    # the chain feed DAGs -> library DAG -> publish DAG ends in Trino
    assert {library["library"] for library in summary["libraries"]} == set(library_names(settings))
    for library in summary["libraries"]:
        path = settings.lake_path("base", library["library"])
        current = spark.read.format("delta").load(path).where("is_current").count()
        assert library["current_rows"] == library["trino_rows"] == current > 0, library
    assert states["feed__court_dishonest_debtor"] == "failed"   # its 补充 file is rejected, visibly
    # the portal is left running like Trino, on the configured port
    assert summary["portal"]["answering"] and summary["portal"]["url"] == "https://127.0.0.1:18462"
    assert sum(1 for s in states.values() if s == "success") == len(states) - 1


def test_demo_sample_queries_show_masks_and_a_town_filter(demo_run):
    summary, _ = demo_run
    samples = {s["user"]: s for s in summary["sample_queries"]}
    assert set(samples) == {"psb_analyst", "hrss_officer", "nancheng_officer", "amr_inspector"}
    assert all(s["error"] is None for s in samples.values()), samples
    owner = samples["psb_analyst"]["rows"]
    assert owner and all(len(r[0]) == 18 and "*" not in r[0] for r in owner)
    masked = samples["hrss_officer"]["rows"]
    assert masked and all(r[0].startswith("P") and len(r[0]) == 25 for r in masked)
    # the query groups by town_code: the row filter leaves exactly Nancheng's group, and it has residents
    town = samples["nancheng_officer"]["rows"]
    assert town and all(r[0] == "441900004" for r in town), town
    assert len(town) == 1 and int(town[0][1]) > 0, town
    grades = samples["amr_inspector"]["rows"]
    assert grades and {r[0] for r in grades} <= {"A", "B", "C", "D"}


def test_every_demo_query_is_in_the_audit_with_its_principal(demo_run):
    """After the demo, its department queries are in governance.query_audit
    under the users who logged in, and the hash chain verifies."""
    from pipelines.dev.demo import SAMPLE_QUERIES
    from pipelines.lake.delta import read_delta_rows
    from pipelines.lake.paths import governance_path
    from pipelines.serving.audit import verify_audit

    summary, settings = demo_run
    assert summary["audit"]["verified"] and summary["audit"]["head_seq"] > 0, summary["audit"]
    rows = {r["query_id"]: r for r in read_delta_rows(governance_path("query_audit", settings))}
    samples = summary["sample_queries"]
    assert len(samples) == len(SAMPLE_QUERIES)
    for sample in samples:
        row = rows[sample["query_id"]]
        assert (row["principal"], row["query"], row["state"]) == (sample["user"], sample["sql"], "FINISHED")
    assert any(r["principal"] == "govlake" and "register_table" in (r["query"] or "") for r in rows.values())
    assert verify_audit(settings)["ok"]


def test_demo_draws_inspections_verifies_and_publishes_the_notice(demo_run):
    summary, _ = demo_run
    inspection = summary["inspection"]
    assert inspection["reproduced"] is True
    assert inspection["entities_drawn"] == sum(sum(item["drawn"].values()) for item in inspection["items"]) > 0
    assert inspection["notice"]["entities"] == inspection["entities_drawn"]
    assert Path(inspection["notice"]["html"]).is_file() and Path(inspection["notice"]["csv"]).is_file()


def test_demo_shows_an_enterprise_profile_with_something_in_it(demo_run):
    summary, settings = demo_run
    profile = summary["enterprise_profile"]
    assert profile and profile["uscc"] and len(profile["employees"]["trend"]) == 12
    figures = (profile["hazards"]["hazards_open"] + profile["records"]["penalty_count"]
               + profile["licences"]["licences_valid"])
    assert figures > 0


def test_demo_lists_a_towns_risks_and_its_views_answer_through_trino(spark, demo_run):
    """The risk list printed is the town's high and medium assessments; the
    grid view's figures equal the hazards in silver (each event by its latest
    report), its medians the middle closing times; the profile view counts
    the reader's 90 days."""
    import statistics
    from collections import defaultdict

    from pipelines.serving.trino import query

    summary, settings = demo_run
    risks = summary["risk_list"]
    assert risks and risks["entities"]
    table_rows = (spark.read.format("delta").load(settings.lake_path("base", "supervision_risk"))
                  .where(f"is_current and town_code = '{risks['town_code']}' and risk_level in ('high', 'medium')"))
    assert sorted(r["uscc"] for r in risks["entities"]) == sorted(r["uscc"] for r in table_rows.collect())
    assert all(r["risk_points"] == sum(int(x.split("(")[1].split(")")[0]) for x in r["risk_reasons"])
               for r in risks["entities"])

    reports = spark.read.format("delta").load(table_path("silver", load_contracts()["grid.hazard_report"], settings))
    latest = {}
    for r in reports.orderBy("_ingested_at", "_row_number").collect():
        latest[r["event_number"]] = r
    expected = defaultdict(lambda: [0, 0, []])
    for r in latest.values():
        cell = expected[(r["grid_code"], r["hazard_category"])]
        if r["handling_status"] == "已办结":
            cell[1] += 1
            if r["closed_at"] is not None:
                cell[2].append((r["closed_at"] - r["reported_at"]).total_seconds() / 3600)
        else:
            cell[0] += 1
    rows = query("select grid_code, hazard_category, open, closed, median_hours_to_close "
                 "from lake.base.grid_hazard_summary", user="grid_officer", settings=settings)[1]
    assert {(g, c): (o, k) for g, c, o, k, _ in rows} == {key: (v[0], v[1]) for key, v in expected.items()}
    for g, c, _, _, median in rows:
        hours = expected[(g, c)][2]
        assert (median is None and not hours) or abs(median - statistics.median(hours)) < 1e-6
    profiles = query("select count(*), sum(licences_expiring_90_days) from lake.base.enterprise_profile_today",
                     user="edu_officer", settings=settings)[1]
    current = spark.read.format("delta").load(settings.lake_path("base", "enterprise_profile")).where("is_current")
    assert profiles[0][0] == current.count() > 0
    from datetime import date, timedelta

    soon = date.today() + timedelta(days=90)
    assert profiles[0][1] == sum(1 for r in current.select("valid_licence_expiries").collect()
                                 for d in r[0] if d < soon)


def test_demo_verifies_two_facts_and_logs_them(demo_run):
    summary, settings = demo_run
    asked = summary["verifications"]
    assert [(a["check"], a["department"]) for a in asked] == [("person-alive-in-town", "hrss"),
                                                              ("entity-good-standing", "amr")]
    assert asked[0]["answer"] == "yes"                   # a registered, living resident of that town
    assert asked[1]["answer"] in ("yes", "no") and asked[1]["via"].startswith("Trino as amr_inspector")
    logged = sorted(read_delta_rows(governance_path("verification_log", settings)), key=lambda r: r["asked_at"])
    assert [(r["check_name"], r["answer"]) for r in logged] == [(a["check"], a["answer"]) for a in asked]
