"""Developer commands: `govlake setup`, `synth` and `demo`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from pipelines.cli.common import console, emit_json, err_console, json_option, spark, table
from pipelines.settings import PROJECT_ROOT, get_settings


@click.command()
def setup() -> None:
    """Resolve the Delta jars once into the project cache (needs the network once)."""
    from pipelines.spark import cached_delta_jars

    settings = get_settings()
    session = spark()
    session.range(1).count()
    jars = cached_delta_jars(settings)
    click.echo(f"Spark {session.version} with {settings.delta_package}: {len(jars or [])} jars cached "
               f"in {settings.cache_dir / 'ivy' / 'jars'}")


@click.command()
@click.option("--scale", default=0.002, show_default=True, type=float, help="1.0 is the real city (10.46M people).")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--out", default=str(PROJECT_ROOT / "data" / "city"), show_default=True,
              type=click.Path(path_type=Path), help="Output folder (deliveries/ and truth/).")
@click.option("--defect-scale", default=1.0, show_default=True, type=float,
              help="Multiply every defect rate (0 for a clean city).")
@click.option("--days", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also write days 1..D of daily change deliveries (days/<k>/) and their truth (truth/day-<k>/).")
@click.option("--hard", is_flag=True,
              help="Add the hard cases for entity resolution: mistyped and missing IDs and codes, name, company-name "
                   "and address variants, changed representatives, namesakes (labelled in truth/).")
@json_option
def synth(scale: float, seed: int, out: Path, defect_scale: float, days: int, hard: bool, as_json: bool) -> None:
    """Generate a synthetic Dongguan-like city: every bureau export plus ground truth."""
    from pipelines.dev.synth.city import HARD_CASES, DefectRates, generate_city
    from pipelines.dev.synth.days import generate_days

    if out.exists() and not out.is_dir():
        raise click.ClickException(f"--out {out}: not a folder")
    rates = (HARD_CASES if hard else DefectRates()).scaled(defect_scale)
    with err_console.status(f"generating scale {scale} city (seed {seed}) into {out}"):
        summary = generate_city(out, scale=scale, seed=seed, rates=rates)
    changes = None
    if days:
        with err_console.status(f"generating days 1..{days} of change deliveries into {out / 'days'}"):
            changes = generate_days(out, days, scale=scale, seed=seed, rates=rates)
    if as_json:
        emit_json(summary.as_dict() | ({"days": changes.as_dict()} if changes else {}))
        return
    rows = [[path, records] for path, records in summary.files.items()]
    console.print(table(f"Synthetic city: {summary.persons:,} persons, {summary.market_entities:,} market entities, "
                        f"{summary.social_orgs:,} social orgs ({summary.seconds:.1f}s)",
                        ["delivery", "records"], rows, {"records"}))
    console.print(f"{summary.defects:,} injected defects labelled in {out / 'truth' / 'defects.csv'}")
    if changes:
        console.print(f"days 1..{days} ({changes.seconds:.1f}s): " + ", ".join(
            f"{count:,} {event}" for event, count in sorted(changes.events.items())))


@click.command()
@click.option("--scale", default=0.002, show_default=True, type=float)
@click.option("--seed", default=7, show_default=True, type=int)
@json_option
def demo(scale: float, seed: int, as_json: bool) -> None:
    """Generate a small city, land its deliveries, run every feed DAG through Airflow, summarise."""
    from pipelines.dev.demo import run_demo

    started = time.monotonic()
    summary = run_demo(spark(), scale=scale, seed=seed, show_progress=not as_json, console=err_console)
    summary["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        emit_json(summary)
    else:
        _print_demo(summary, scale)
    if not summary["ok"]:
        sys.exit(1)


def _print_demo(summary: dict, scale: float) -> None:
    rows = [[f["feed"], f["loads"], f["rows_read"], f["rows_loaded"], f["rows_quarantined"], f["rows_duplicate"],
             "yes" if f["reconciles"] else "NO", f["silver_rows"], f["blocked_loads"], f["open_issues"]]
            for f in summary["feeds"]]
    numbers = {"loads", "read", "loaded", "quarantined", "duplicate", "silver rows", "blocked", "open issues"}
    console.print(table(f"A scale {scale} city through Airflow in {summary['seconds']}s",
                        ["feed", "loads", "read", "loaded", "quarantined", "duplicate", "reconciles",
                         "silver rows", "blocked", "open issues"], rows, numbers))
    runs = summary["dag_runs"]
    failed = [r for r in runs if r["state"] != "success"]
    planted = [r["dag_id"] for r in failed if r.get("planted")]
    unplanted = [r["dag_id"] for r in failed if not r.get("planted")]
    console.print(f"Airflow: {len(runs) - len(failed)} of {len(runs)} DAG runs succeeded"
                  + (f"; failed (visibly, by design: planted bad deliveries): {', '.join(planted)}" if planted else ""))
    if unplanted:
        console.print(f"[red]FAILED, not planted by the generator: {', '.join(unplanted)}[/red]")
    for row in summary["blocked"]:
        console.print(f"[yellow]blocked[/yellow] {row['feed']} {row['file']} ({row['load_id']})")
    issues = summary["open_issues"]
    console.print(f"Governance list: {len(issues)} open issues; largest: " + "; ".join(
        f"{i['feed']} {i['rule']} ({i['affected_rows']} rows)"
        for i in sorted(issues, key=lambda i: -i["affected_rows"])[:5]))
    for note in summary["notes"]:
        console.print(f"- {note}")
    for library in summary["libraries"]:
        console.print(f"base.{library['library']}: {library['current_rows']} current records "
                      f"({library['versions']} versions); through Trino: {library['trino_rows']}")
    profile = summary.get("enterprise_profile")
    if profile:
        records, licences, hazards = profile["records"], profile["licences"], profile["hazards"]
        console.print(f"\nEnterprise profile (企业全景画像) of {profile['uscc']} {profile['registration']['entity_name']}"
                      f" ({profile['place']['town_name'] or '-'}, grid {profile['place']['grid_code'] or '-'}): "
                      f"credit grade {profile['credit']['credit_grade'] or '-'}, {records['penalty_count']} "
                      f"penalties, {records['abnormal_open']} open abnormal-list entries, {licences['licences_valid']} "
                      f"valid licences ({licences['expiring_within_90_days']} expiring within 90 days), "
                      f"{hazards['hazards_open']} open / {hazards['hazards_closed']} closed grid hazards, "
                      f"{profile['employees']['insured_employees'] or 0} insured employees "
                      f"(`govlake show entity {profile['uscc']}` shows every section)", highlight=False)
    risks = summary.get("risk_list")
    if risks:
        console.print(f"\nRisk list (监管对象风险专题库) of {risks['town_name']}: {len(risks['entities'])} entities "
                      f"at high or medium risk (`govlake show risk {risks['town_code']}`)", highlight=False)
        console.print(table("", ["uscc", "name", "level", "points", "reasons"],
                            [[r["uscc"], r["entity_name"], r["risk_level"], r["risk_points"],
                              "; ".join(x.split(":")[0] for x in r["risk_reasons"])]
                             for r in risks["entities"][:10]]))
    inspection = summary.get("inspection")
    if inspection:
        drawn = ", ".join(f"{item['item']} {sum(item['drawn'].values())}" for item in inspection["items"])
        console.print(f"\nDouble random draw {inspection['draw_id']} (plan {inspection['plan']}, seed "
                      f"{inspection['seed']}): {inspection['entities_drawn']} entities ({drawn}), "
                      f"{inspection['assignments']} inspector assignments, "
                      f"{'reproduced' if inspection['reproduced'] else 'NOT reproduced'} from its record "
                      f"(`govlake inspect verify {inspection['draw_id']}`); public notice: "
                      f"{inspection['notice']['html']}", highlight=False)
    for asked in summary.get("verifications") or []:
        console.print(f"Verification {asked['check']} {asked['subject']} for {asked['department']} "
                      f"({asked['purpose']}): {asked['answer']}\n  via {asked['via']}", highlight=False)
    for sample in summary["sample_queries"]:
        console.print(f"\n[bold]{sample['user']}[/bold]: {sample['title']}\n  {sample['sql']}")
        if sample["error"]:
            console.print(f"  [red]{sample['error']}[/red]")
        else:
            console.print(table("", sample["columns"], sample["rows"]))
    trino = summary["trino"]
    console.print("\nWhere to look next:")
    console.print(f"  Trino:       {trino['url']} catalog {trino['catalog']} (left running; `make down` stops it). "
                  f"Certificate {trino['certificate']}, passwords {trino['passwords']}; "
                  "Python: `from pipelines.serving.trino import connect; connect('hrss_officer')`")
    portal = summary.get("portal") or {}
    console.print(f"  Portal:      {portal['url']} (log in as a department user with its Trino password; "
                  "`make down` stops it)" if portal.get("url")
                  else f"  Portal:      not started: {portal.get('error')}")
    console.print(f"  Data Docs:   {summary['data_docs']}")
    console.print(f"  Airflow:     `make airflow`, then http://127.0.0.1:8080 (this demo's DAG run log: "
                  f"{summary['airflow_log']})")
    console.print("  Governance:  `govlake governance list`, `govlake governance scorecard`, `govlake quality report`")
    console.print(f"  Lake:        {summary['lake']}   ground truth: {summary['truth']}")
