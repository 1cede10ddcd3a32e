"""The main job end to end, through Airflow.

Generate a small city (once per scale and seed), drop its deliveries into the
landing folders, run every feed DAG through Airflow's ``dag.test()``, and
summarise. The summary is read back from the lake (manifest, silver tables,
governance list), not from what this run did, so a rerun on the same lake
prints the same figures.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path

from pipelines.applications.inspection import (DrawRefused, DrawShortfall, PlanError, draw, standing_draw,
                                                verify_draw, write_public_notice)
from pipelines.applications.verification import VerificationRefused, verify
from pipelines.contracts import load_contracts
from pipelines.dev.synth.city import generate_city
from pipelines.ingest.landing import drop_deliveries
from pipelines.lake.delta import delta_exists, read_silver, read_table
from pipelines.lake.manifest import read_manifest
from pipelines.library_specs import library_names, library_spec_paths
from pipelines.orchestration.airflow_local import run_dag, use_project_airflow
from pipelines.quality.gate import data_docs_index
from pipelines.serving.audit import load_audit, read_audit_events, verify_audit
from pipelines.serving.catalog import load_departments
from pipelines.serving.trino import certificate_path, connect, query
from pipelines.settings import Settings, get_settings


@contextlib.contextmanager
def _quiet(log_path: Path):
    """Send this process's stdout/stderr (Airflow's task logs) to ``log_path``;
    yields a writable stream on the real stderr for progress lines."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved_out, saved_err = os.dup(1), os.dup(2)
    progress = os.fdopen(os.dup(saved_err), "w", buffering=1)
    with log_path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield progress
        finally:
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            progress.close()


def run_feed_dags(settings: Settings, show_progress: bool = True) -> list[dict]:
    """Run every feed DAG once through Airflow; Airflow's output goes to a log file."""

    use_project_airflow(settings)
    contracts = load_contracts(settings.schemas_dir)
    log_path = Path(settings.airflow_home) / "demo-dag-runs.log"
    runs = []
    with _quiet(log_path) as progress:
        for index, contract in enumerate(sorted(contracts.values(), key=lambda c: c.feed), start=1):
            run = run_dag(f"feed__{contract.slug}", settings)
            runs.append(run)
            if show_progress:
                progress.write(f"[{index:2}/{len(contracts)}] feed__{contract.slug}: {run['state']} "
                               f"({run['seconds']}s)\n")
    return runs


SAMPLE_QUERIES = [
    ("psb_analyst", "公安局 (grant, IDs unmasked): golden person records from the population library",
     "select person_id, full_name, town_code, birth_date_source from lake.base.population where is_current "
     "order by person_id limit 3"),
    ("hrss_officer", "人社局 (grant): is the insured person alive? ID numbers as 人社局's own pseudonyms",
     "select person_id, full_name, is_deceased, employer_uscc from lake.base.population "
     "where is_current and employer_uscc is not null order by person_id limit 3"),
    ("nancheng_officer", "南城街道 (town-scoped): only its own town's residents",
     "select town_code, count(*) as residents, count(phone) as with_phone from lake.base.population "
     "where is_current group by town_code"),
    ("amr_inspector", "市场监管局: credit-risk grades for the double-random inspection draw (unconditional)",
     "select risk_grade, count(*) as entities from lake.base.credit_rating where is_current "
     "group by risk_grade order by risk_grade"),
]


def run_sample_queries(settings: Settings) -> list[dict]:
    """Three department users, three queries: masks and a town row filter at work."""

    results = []
    for user, title, sql in SAMPLE_QUERIES:
        cursor = connect(user, settings=settings).cursor()
        try:
            cursor.execute(sql)
            rows = cursor.fetchall()
            results.append({"user": user, "title": title, "sql": sql, "query_id": cursor.query_id,
                            "columns": [column[0] for column in cursor.description or []],
                            "rows": [[str(v) for v in row] for row in rows], "error": None})
        except Exception as exc:  # noqa: BLE001 - shown to the newcomer, not hidden
            results.append({"user": user, "title": title, "sql": sql, "query_id": cursor.query_id, "columns": [],
                            "rows": [], "error": str(exc)})
    return results


def load_demo_audit(settings: Settings, query_ids: set[str], wait_seconds: float = 30) -> dict:
    """Load the audit until the demo's own queries are in it (Trino posts each
    event just after the query ends; the rules keeper would load them within
    a minute, the demo does not wait for it), then verify the chain."""
    import time

    deadline = time.monotonic() + wait_seconds
    while True:
        loaded = load_audit(settings)
        present = {row["query_id"] for row in read_audit_events(settings).rows.values()}
        if query_ids <= present or time.monotonic() > deadline:
            break
        time.sleep(1)
    if not query_ids <= present:
        return {"loaded": loaded["loaded"], "head_seq": loaded["head_seq"], "verified": False,
                "missing": sorted(query_ids - present)}
    loaded = load_audit(settings)
    return {"loaded": loaded["loaded"], "head_seq": loaded["head_seq"], "verified": verify_audit(settings)["ok"]}


def run_downstream_dags(settings: Settings, show_progress: bool = True) -> list[dict]:
    """The base-library DAGs, the day's scorecard snapshot (governance_daily,
    which the portal's ranking reads), then the publish DAG (lists, audit,
    Trino up, registration, access rules), through Airflow."""

    libraries = library_names(settings)   # in dependency order
    runs = []
    with _quiet(Path(settings.airflow_home) / "demo-dag-runs.log") as progress:
        for dag_id in [f"library__{name}" for name in libraries] + ["governance_daily", "publish"]:
            run = run_dag(dag_id, settings)
            runs.append(run)
            if show_progress:
                progress.write(f"{dag_id}: {run['state']} ({run['seconds']}s)\n")
    return runs


def summarise_libraries(spark, settings: Settings) -> list[dict]:
    """Rows per base library (current records and all versions) and what Trino sees."""

    found = []
    for path in library_spec_paths(settings):
        table = settings.lake_path("base", path.stem)
        if not delta_exists(spark, table):
            found.append({"library": path.stem, "current_rows": 0, "versions": 0, "trino_rows": None})
            continue
        frame = spark.read.format("delta").load(table)
        try:
            trino_rows = query(f"select count(*) from lake.base.{path.stem} where is_current", settings=settings)[1][0][0]
        except Exception:  # noqa: BLE001 - reported, not hidden
            trino_rows = None
        found.append({"library": path.stem, "current_rows": frame.where("is_current").count(),
                      "versions": frame.count(), "trino_rows": trino_rows})
    return found


def summarise_lake(spark, settings: Settings, city: Path | None = None) -> dict:
    """Per feed: rows read / loaded / quarantined / duplicate from the manifest,
    silver rows from the table, blocked loads and open governance issues."""
    from pyspark.sql import functions as F

    contracts = load_contracts(settings.schemas_dir)
    manifest_rows = read_manifest(spark, settings).where(
        F.col("status").isin("loaded", "replaced", "rejected", "blocked")).collect()
    issues = read_table(spark, "issues", settings).where(F.col("status") == "open").collect()
    feeds = []
    for feed in sorted(contracts):
        rows = [r for r in manifest_rows if r["feed"] == feed]
        live = [r for r in rows if r["status"] == "loaded"]
        silver = read_silver(spark, feed, settings)
        silver_rows = silver.count() if silver is not None else 0
        read = sum(r["rows_read"] or 0 for r in rows)
        loaded = sum(r["rows_loaded"] or 0 for r in rows)
        quarantined = sum(r["rows_quarantined"] or 0 for r in rows)
        duplicate = sum(r["rows_duplicate"] or 0 for r in rows)
        feeds.append({
            "feed": feed, "loads": len(rows), "rows_read": read, "rows_loaded": loaded,
            "rows_quarantined": quarantined, "rows_duplicate": duplicate,
            "reconciles": read == loaded + quarantined + duplicate,
            "silver_rows": silver_rows, "silver_rows_expected": sum(r["rows_loaded"] or 0 for r in live),
            "blocked_loads": sum(1 for r in rows if r["status"] == "blocked"),
            "open_issues": sum(1 for i in issues if i["feed"] == feed),
        })
    blocked = [{"load_id": r["load_id"], "feed": r["feed"], "file": r["source_file"], "message": r["message"]}
               for r in manifest_rows if r["status"] == "blocked"]
    notes, ok = [], all(f["reconciles"] and f["silver_rows"] == f["silver_rows_expected"] for f in feeds)
    if city is not None:
        status_of = {(r["feed"], r["source_file"]): r for r in manifest_rows}
        for row in csv.DictReader((city / "truth" / "files.csv").open(encoding="utf-8")):
            name = Path(row["file"]).name
            event = status_of.get((row["feed"], name))
            actual = event["status"] if event else "not in the lake"
            if row["expected_status"] == "already_loaded":
                # same content as a file loaded before: it has no manifest row of its own
                if event is None:
                    continue
            if actual == row["expected_status"]:
                if actual != "loaded":
                    notes.append(f"{row['feed']} {name}: {actual} as expected. {event['message'] or ''}".strip())
            elif actual == "blocked" and row["expected_status"] == "loaded":
                notes.append(f"{row['feed']} {name}: blocked by the quality gate (see `govlake governance list`)")
            else:
                ok = False
                notes.append(f"UNEXPECTED: {row['feed']} {name} is {actual}, expected {row['expected_status']}")
    open_issues = sorted(({"issue_id": i["issue_id"], "feed": i["feed"], "rule": i["rule"],
                           "affected_rows": i["affected_rows"]} for i in issues),
                         key=lambda i: (i["feed"], -i["affected_rows"]))
    return {"ok": ok, "feeds": feeds, "blocked": blocked, "open_issues": open_issues, "notes": notes}


def mark_planted_failures(runs: list[dict], summary: dict, city: Path, settings: Settings) -> None:
    """Mark each failed DAG run ``planted`` when the generator planted its cause:
    a feed DAG fails visibly for a delivery the truth expects to be rejected,
    or one the quality gate blocked. Any other failure (a library or publish
    DAG, a feed DAG with no such delivery) makes the demo not ok."""
    slug_of = {feed: contract.slug for feed, contract in load_contracts(settings.schemas_dir).items()}
    with (city / "truth" / "files.csv").open(encoding="utf-8") as handle:
        expected_problems = {row["feed"] for row in csv.DictReader(handle) if row["expected_status"] == "rejected"}
    problem_feeds = expected_problems | {row["feed"] for row in summary["blocked"]}
    planted = {f"feed__{slug_of[feed]}" for feed in problem_feeds if feed in slug_of}
    for run in runs:
        run["planted"] = run["state"] != "success" and run["dag_id"] in planted
        if run["state"] != "success" and not run["planted"]:
            summary["ok"] = False
            summary["notes"].append(f"UNEXPECTED: DAG {run['dag_id']} ended {run['state']}")


def draw_demo_inspections(settings: Settings, seed: int, summary: dict) -> dict | None:
    """The "double random, one public" draw of the cited plan (schemas/inspections/amr-2026-12.yaml) with
    the demo's seed, verified from its record, and its public notice under <lake>/notices/. A draw that
    fails is a note, and the demo is not ok."""
    standing = standing_draw("amr-2026-12", settings)
    try:
        record = draw("amr-2026-12", seed, settings, "govlake-demo", standing and standing["draw_id"],
                      standing and "make demo ran again on this lake")
    except (DrawShortfall, DrawRefused, PlanError) as exc:
        summary["ok"] = False
        summary["notes"].append(f"UNEXPECTED: the inspection draw failed: {exc}")
        return None
    notice = write_public_notice(record["draw_id"], settings, settings.local_lake_path("notices"))
    return {"draw_id": record["draw_id"], "plan": record["plan"], "seed": seed, "items": json.loads(record["items"]),
            "entities_drawn": record["entities_drawn"], "assignments": record["assignments"],
            "result_digest": record["result_digest"],
            "reproduced": verify_draw(record["draw_id"], settings)["reproduced"], "notice": notice}


def demo_enterprise_profile(spark, settings: Settings, summary: dict) -> dict | None:
    """One enterprise profile (企业全景画像, ``govlake show entity``): of the
    entity with the most open hazards, penalties and valid licences, so the
    sections are not empty. A profile that cannot be read is a note."""
    from pyspark.sql import functions as F

    from pipelines.libraries.show import enterprise_profile

    try:
        chosen = (spark.read.format("delta").load(settings.lake_path("base", "enterprise_profile"))
                  .where("is_current").orderBy((F.col("hazards_open") + F.col("penalty_count")
                                                + F.col("licences_valid")).desc(), "uscc").first())
        return enterprise_profile(spark, chosen["uscc"], settings) if chosen else None
    except Exception as exc:            # noqa: BLE001 - the demo reports what failed and goes on
        summary["ok"] = False
        summary["notes"].append(f"UNEXPECTED: no enterprise profile to show: {exc}")
        return None


def demo_town_risk_list(spark, settings: Settings, summary: dict) -> dict | None:
    """The risk list (base.supervision_risk, high and medium) of the town with
    the most entities on it: what its supervision office would work from."""
    from pyspark.sql import functions as F

    from pipelines.libraries.risk import town_risk_list
    from pipelines.reference import TOWNS

    try:
        busiest = (spark.read.format("delta").load(settings.lake_path("base", "supervision_risk"))
                   .where("is_current and risk_level in ('high', 'medium') and town_code is not null")
                   .groupBy("town_code").count().orderBy(F.col("count").desc(), "town_code").first())
        if busiest is None:
            return None
        rows = town_risk_list(spark, settings, busiest["town_code"])
        return {"town_code": busiest["town_code"], "town_name": TOWNS[busiest["town_code"]], "entities": rows}
    except Exception as exc:            # noqa: BLE001 - the demo reports what failed and goes on
        summary["ok"] = False
        summary["notes"].append(f"UNEXPECTED: no risk list to show: {exc}")
        return None


def verify_demo_facts(settings: Settings, city: Path) -> list[dict]:
    """Two verifications instead of documents (核验), as the social insurance bureau and the market
    regulator would ask them: a registered resident alive in their town (the truth says yes), asked with
    the package as ``govlake verify`` does, and an operating firm's standing, asked in SQL through
    Trino as the market regulator's user (the verify catalog's table function). Each is logged in
    governance.verification_log."""
    # an inspector: a living hukou resident whose rows the generator delivers clean (its town: the truth's)
    with (city / "truth" / "inspectors.csv").open(encoding="utf-8") as handle:
        inspector = next(csv.DictReader(handle))["person_id"]
    with (city / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        person = next(p for p in csv.DictReader(handle) if p["person_id"] == inspector)
    with (city / "truth" / "entities.csv").open(encoding="utf-8") as handle:
        entity = next(e for e in csv.DictReader(handle) if e["registration_status"] == "存续")
    departments = {code: d.town_code for code, d in load_departments(settings).items()}
    answers = []
    check, subject, purpose = "person-alive-in-town", person["person_id"], "养老金领取资格认证"
    try:
        answer = verify(check, subject, {"town": person["town_code"]}, "hrss", purpose, "govlake-demo", departments,
                        settings)["answer"]
    except VerificationRefused as exc:
        answer = f"refused: {exc}"
    answers.append({"check": check, "subject": subject[:6] + "*" * 8 + subject[-4:], "department": "hrss",
                    "purpose": purpose, "answer": answer, "via": "govlake verify"})
    check, subject, purpose = "entity-good-standing", entity["uscc"], "企业变更登记免提交证明"
    sql = (f"SELECT answer FROM TABLE(verify.system.entity_good_standing(subject => '{subject}', "
           f"purpose => '{purpose}'))")
    try:
        cursor = connect("amr_inspector", settings=settings).cursor()
        cursor.execute(sql)
        answer = cursor.fetchall()[0][0]
    except Exception as exc:            # noqa: BLE001 - shown to the newcomer, not hidden
        answer = f"refused: {exc}"
    answers.append({"check": check, "subject": subject[:6] + "*" * 8 + subject[-4:], "department": "amr",
                    "purpose": purpose, "answer": answer, "via": f"Trino as amr_inspector: {sql}"})
    return answers


def start_portal(settings: Settings) -> dict:
    """The governance portal, left running like Trino: its URL, or why it did not start."""
    from pipelines.portal.service import PortalError, portal_up

    try:
        return portal_up(settings)
    except PortalError as exc:
        return {"url": None, "error": str(exc)}


def run_demo(spark, scale: float = 0.002, seed: int = 7, show_progress: bool = True, console=None,
             settings: Settings | None = None) -> dict:
    """Generate, land, run every feed DAG through Airflow, summarise from the lake."""

    settings = settings or get_settings()
    city = settings.local_lake_path("_synth", f"city-scale{scale}-seed{seed}")
    if not (city / "truth" / "files.csv").exists():
        if console and show_progress:
            console.print(f"generating a scale {scale} city into {city}")
        generate_city(city, scale=scale, seed=seed)
    landed = drop_deliveries(city / "deliveries", load_contracts(settings.schemas_dir), settings)
    if console and show_progress:
        console.print(f"dropped {landed} deliveries into {settings.local_lake_path('landing')}; "
                      "running every feed DAG through Airflow")
    runs = run_feed_dags(settings, show_progress)
    runs += run_downstream_dags(settings, show_progress)
    summary = summarise_lake(spark, settings, city)
    mark_planted_failures(runs, summary, city, settings)
    summary["libraries"] = summarise_libraries(spark, settings)
    summary["enterprise_profile"] = demo_enterprise_profile(spark, settings, summary)
    summary["risk_list"] = demo_town_risk_list(spark, settings, summary)
    summary["inspection"] = draw_demo_inspections(settings, seed, summary)
    summary["verifications"] = verify_demo_facts(settings, city)
    samples = run_sample_queries(settings)
    # the rules keeper does this every minute; the demo does not wait. Its log
    # line goes with Airflow's: after dag.test() this process logs to stdout.
    with _quiet(Path(settings.airflow_home) / "demo-dag-runs.log"):
        audit = load_demo_audit(settings, {s["query_id"] for s in samples if s["query_id"]})
    docs = data_docs_index(settings)
    return {
        "portal": start_portal(settings),
        "scale": scale, "seed": seed, "lake": settings.home, "truth": str(city / "truth"),
        "dag_runs": runs, **summary, "sample_queries": samples,
        "audit": audit,
        "trino": {"url": f"https://127.0.0.1:{settings.trino_port}", "catalog": "lake",
                  "certificate": str(certificate_path(settings)),
                  "passwords": str(Path(settings.trino_home) / "passwords.json")},
        "data_docs": str(docs) if docs.exists() else None,
        "airflow_home": str(settings.airflow_home),
        "airflow_log": str(Path(settings.airflow_home) / "demo-dag-runs.log"),
    }
