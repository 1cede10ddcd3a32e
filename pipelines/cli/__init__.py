"""The ``govlake`` command line: a human table by default, ``--json`` for machines."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.settings import PROJECT_ROOT, get_settings

log = logging.getLogger("pipelines")
# Wide enough for the tables when output is piped (rich assumes 80 columns then).
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)


def _emit_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _table(title: str, columns: list[str], rows: list[list], justify_right: set[str] = frozenset()) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in justify_right else "left")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def _spark():
    from pipelines.spark import build_spark_session

    return build_spark_session()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """govlake: bureau feeds into a Delta lake, curated into shared base libraries."""
    _setup_logging(verbose)


# ---------------------------------------------------------------------- setup
@main.command()
def setup() -> None:
    """Resolve the Delta jars once into the project cache (needs the network once)."""
    from pipelines.spark import cached_delta_jars

    settings = get_settings()
    spark = _spark()
    spark.range(1).count()
    jars = cached_delta_jars(settings)
    click.echo(f"Spark {spark.version} with {settings.delta_package}: {len(jars or [])} jars cached "
               f"in {settings.cache_dir / 'ivy' / 'jars'}")


# ---------------------------------------------------------------------- contracts
@main.group()
def contracts() -> None:
    """Feed contracts under schemas/feeds/."""


@contracts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def contracts_list(as_json: bool) -> None:
    """List every feed contract (validates them all)."""
    from pipelines.contracts import ContractError, load_contracts

    try:
        loaded = load_contracts()
    except ContractError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [[c.feed, c.owner_bureau_name, c.title, c.cadence, c.file.type, len(c.columns),
             ", ".join(c.key_columns)] for c in loaded.values()]
    if as_json:
        _emit_json([c.model_dump() for c in loaded.values()])
    else:
        console.print(_table("Feed contracts", ["feed", "bureau", "title", "cadence", "file", "columns", "key"],
                             rows, {"columns"}))


@contracts.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def contracts_check(paths: tuple[Path, ...]) -> None:
    """Validate contract files (all of them by default); exit 1 naming file and field."""
    from pipelines.contracts import ContractError, contract_paths, load_contract

    failures = 0
    for path in paths or contract_paths():
        try:
            load_contract(path)
        except ContractError as exc:
            failures += 1
            err_console.print(f"[red]{exc}[/red]")
    if failures:
        sys.exit(1)
    click.echo(f"{len(paths or contract_paths())} contracts valid")


# ---------------------------------------------------------------------- synth
@main.command()
@click.option("--scale", default=0.002, show_default=True, type=float, help="1.0 is the real city (10.46M people).")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--out", default=str(PROJECT_ROOT / "data" / "city"), show_default=True,
              type=click.Path(path_type=Path), help="Output folder (deliveries/ and truth/).")
@click.option("--defect-scale", default=1.0, show_default=True, type=float,
              help="Multiply every defect rate (0 for a clean city).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def synth(scale: float, seed: int, out: Path, defect_scale: float, as_json: bool) -> None:
    """Generate a synthetic Dongguan-like city: every bureau export plus ground truth."""
    from pipelines.dev.synth.city import DefectRates, generate_city

    with err_console.status(f"generating scale {scale} city (seed {seed}) into {out}"):
        summary = generate_city(out, scale=scale, seed=seed, rates=DefectRates().scaled(defect_scale))
    if as_json:
        _emit_json(summary.as_dict())
        return
    rows = [[path, records] for path, records in summary.files.items()]
    console.print(_table(f"Synthetic city: {summary.persons:,} persons, {summary.market_entities:,} market entities, "
                         f"{summary.social_orgs:,} social orgs ({summary.seconds:.1f}s)",
                         ["delivery", "records"], rows, {"records"}))
    console.print(f"{summary.defects:,} injected defects labelled in {out / 'truth' / 'defects.csv'}")


# ---------------------------------------------------------------------- ingest
def _load_rows(results) -> list[list]:
    return [[r.feed, r.source_file, r.status, r.rows_read, r.rows_loaded, r.rows_quarantined, r.rows_duplicate,
             "yes" if r.reconciles else "NO", f"{r.seconds:.1f}", r.message[:120]] for r in results]


LOAD_COLUMNS = ["feed", "file", "status", "read", "loaded", "quarantined", "duplicate", "reconciles", "s", "note"]
LOAD_NUMBERS = {"read", "loaded", "quarantined", "duplicate", "s"}


def ingest_all_with_progress(spark, root: Path, show_progress: bool):
    from pipelines.contracts import load_contracts
    from pipelines.ingest.load import discover_deliveries, ingest_directory

    contracts_by_feed = load_contracts()
    total = len(discover_deliveries(root, contracts_by_feed))
    if not show_progress:
        return ingest_directory(spark, root, contracts_by_feed)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("ingesting", total=total)

        def advance(result) -> None:
            progress.update(task, advance=1, description=f"{result.feed} {result.status}")

        return ingest_directory(spark, root, contracts_by_feed, on_result=advance)


@main.command()
@click.argument("feed", required=False)
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--all", "all_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ingest every delivery under DIR/<bureau>/<feed>/.")
@click.option("--replaces", metavar="LOAD_ID", help="This file is a corrected re-delivery of LOAD_ID.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def ingest(feed: str | None, file: Path | None, all_dir: Path | None, replaces: str | None, as_json: bool) -> None:
    """Ingest FEED FILE (or --all DIR) exactly once: raw, bronze, quality gate, silver, quarantine.

    Exits 1 if any delivery was rejected, blocked by the quality gate, or failed.
    """
    from pipelines.contracts import ContractError, get_contract
    from pipelines.ingest.load import ReconciliationError, ingest_file
    from pipelines.ingest.readers import DeliveryError

    if bool(all_dir) == bool(feed and file):
        raise click.UsageError("give either FEED FILE or --all DIR")
    spark = _spark()
    if all_dir:
        results = ingest_all_with_progress(spark, all_dir, show_progress=not as_json)
    else:
        try:
            if as_json:
                results = [ingest_file(spark, get_contract(feed), file, replaces=replaces)]
            else:
                with err_console.status(f"ingesting {file} into {feed}"):
                    results = [ingest_file(spark, get_contract(feed), file, replaces=replaces)]
        except (ContractError, DeliveryError, ReconciliationError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        _emit_json([r.as_dict() for r in results])
    else:
        console.print(_table("Loads", LOAD_COLUMNS, _load_rows(results), LOAD_NUMBERS))
        for r in results:
            if r.status in ("rejected", "failed", "blocked"):
                err_console.print(f"[red]{r.feed} {r.source_file} ({r.load_id}): {r.status}: {r.message}[/red]")
    if any(r.status in ("rejected", "failed", "blocked") for r in results):
        sys.exit(1)


@main.command()
@click.option("--feed", help="Only this feed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def loads(feed: str | None, as_json: bool) -> None:
    """The load manifest: the latest status of every delivery."""
    from pyspark.sql import functions as F

    from pipelines.lake.manifest import read_manifest

    frame = read_manifest(_spark())
    if feed:
        frame = frame.where(F.col("feed") == feed)
    rows = [r.asDict() for r in frame.orderBy("feed", "event_at").collect()]
    if as_json:
        _emit_json(rows)
        return
    console.print(_table("Load manifest", ["load_id", "feed", "file", "status", "read", "loaded", "quarantined",
                                           "duplicate", "at (UTC)"],
                         [[r["load_id"], r["feed"], r["source_file"], r["status"], r["rows_read"], r["rows_loaded"],
                           r["rows_quarantined"], r["rows_duplicate"], f"{r['event_at']:%Y-%m-%d %H:%M:%S}"]
                          for r in rows], {"read", "loaded", "quarantined", "duplicate"}))


# ---------------------------------------------------------------------- collection list
@main.group()
def collection() -> None:
    """The collection list (归集清单)."""


@collection.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def collection_status_command(as_json: bool) -> None:
    """Per feed: cadence, last delivery, rows, and on time / late / missing."""
    from pipelines.contracts import load_contracts
    from pipelines.governance.collection import collection_status

    statuses = collection_status(_spark(), load_contracts())
    if as_json:
        _emit_json([s.as_dict() for s in statuses])
        return
    colour = {"on_time": "green", "late": "yellow", "missing": "red"}
    rows = [[s.feed, s.bureau, s.title, s.cadence,
             f"{s.last_delivery_at:%Y-%m-%d %H:%M}" if s.last_delivery_at else "-", s.last_file or "-",
             s.last_rows, s.loads, f"[{colour[s.status]}]{s.status}[/{colour[s.status]}]"] for s in statuses]
    console.print(_table("Collection list (归集清单)", ["feed", "bureau", "title", "cadence", "last delivery (UTC)",
                                                      "file", "rows", "loads", "status"], rows, {"rows", "loads"}))


# ---------------------------------------------------------------------- quality
@main.group()
def quality() -> None:
    """Quality gates: expectation suites, validation results, approvals, Data Docs."""


@quality.command("suites")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a suite file is stale or missing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def quality_suites(check: bool, as_json: bool) -> None:
    """Render quality/suites/<feed>.json from the contracts and quality/custom/."""
    from pipelines.contracts import ContractError, load_contracts
    from pipelines.quality.suites import SuiteError, write_suites

    try:
        outcome = write_suites(load_contracts(), check=check)
    except (ContractError, SuiteError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _emit_json(outcome)
    else:
        console.print(_table("Expectation suites", ["feed", "suite file"], [[f, s] for f, s in outcome.items()]))
    if check and any(s != "unchanged" for s in outcome.values()):
        err_console.print("[red]suite files are out of date: run `govlake quality suites`[/red]")
        sys.exit(1)


@quality.command("report")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def quality_report_command(as_json: bool) -> None:
    """Where the Data Docs are, and per feed: pass rate, blocked loads, worst expectations."""
    from pipelines.governance.reports import quality_report

    report = quality_report(_spark())
    if as_json:
        _emit_json(report)
        return
    rows = [[f["feed"], f.get("validated_loads", 0), f"{f.get('pass_rate') or 0:.1%}", f.get("blocking_failures", 0),
             f.get("warnings", 0), len(f["blocked_loads"]),
             "; ".join(f"{w['expectation']} {w['unexpected_percent'] or 0:.1f}%" for w in f["worst"])]
            for f in report["feeds"]]
    console.print(_table("Quality gate results", ["feed", "loads", "pass rate", "blocking fails", "warnings",
                                                  "blocked", "worst expectations"], rows,
                         {"loads", "pass rate", "blocking fails", "warnings", "blocked"}))
    for row in report["blocked"]:
        console.print(f"[yellow]blocked[/yellow] {row['load_id']} ({row['feed']} {row['source_file']}): "
                      f"{row['message']}")
    console.print(f"Data Docs: {report['data_docs'] or 'not built yet (no validation has run)'}")


@quality.command("approve")
@click.argument("load_id")
@click.option("--reason", required=True, help="Why the blocked delivery may be promoted (recorded).")
@click.option("--by", "approved_by", default=None, help="Who approves (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def quality_approve(load_id: str, reason: str, approved_by: str | None, as_json: bool) -> None:
    """Promote a delivery the gate blocked into silver; the approval is recorded."""
    import getpass

    from pipelines.ingest.load import approve_blocked_load

    try:
        approval = approve_blocked_load(_spark(), load_id, reason, approved_by or getpass.getuser())
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _emit_json(approval)
    else:
        console.print(f"approved {load_id} ({approval['feed']}): {approval['rows_promoted']} rows promoted to silver")


# ---------------------------------------------------------------------- governance list
@main.group()
def governance() -> None:
    """The governance list (治理清单) and the bureau scorecard."""


@governance.command("list")
@click.option("--bureau", help="Only this owner bureau (e.g. psb).")
@click.option("--feed", help="Only this feed.")
@click.option("--status", type=click.Choice(["open", "closed", "all"]), default="open", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def governance_list(bureau: str | None, feed: str | None, status: str, as_json: bool) -> None:
    """Governance issues: one per (bureau, feed, rule), with affected rows and sample rows."""
    from pyspark.sql import functions as F

    from pipelines.governance.issues import read_issues

    frame = read_issues(_spark())
    if bureau:
        frame = frame.where(F.col("bureau") == bureau)
    if feed:
        frame = frame.where(F.col("feed") == feed)
    if status != "all":
        frame = frame.where(F.col("status") == status)
    rows = [r.asDict() for r in frame.orderBy("bureau", "feed", F.col("last_affected_rows").desc()).collect()]
    if as_json:
        _emit_json(rows)
        return
    console.print(_table(f"Governance list (治理清单): {status}", [
        "issue", "bureau", "feed", "rule", "status", "first seen", "last seen", "occurrences", "affected rows",
        "samples"], [[r["issue_id"], r["bureau"], r["feed"], r["rule"], r["status"],
                      f"{r['first_seen_at']:%Y-%m-%d %H:%M}", f"{r['last_seen_at']:%Y-%m-%d %H:%M}",
                      r["occurrences"], r["affected_rows"], ", ".join(r["sample_rows"][:3])] for r in rows],
        {"occurrences", "affected rows"}))


@governance.command("close")
@click.argument("issue_id")
@click.option("--reason", required=True, help="Why the issue is closed (recorded).")
@click.option("--by", "closed_by", default=None, help="Who closes it (default: the OS user).")
def governance_close(issue_id: str, reason: str, closed_by: str | None) -> None:
    """Close a governance issue by hand, with a reason."""
    import getpass

    from pipelines.governance.issues import close_issue

    try:
        issue = close_issue(_spark(), issue_id, reason, closed_by or getpass.getuser())
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"closed {issue_id} ({issue['feed']} {issue['rule']}): {reason}")


def _governance_table(name: str):
    from pipelines.lake.delta import delta_exists
    from pipelines.lake.paths import governance_path

    spark = _spark()
    path = governance_path(name)
    if not delta_exists(spark, path):
        raise click.ClickException(f"governance.{name} does not exist yet: run `govlake build`")
    return spark.read.format("delta").load(path)


@governance.command("conflicts")
@click.option("--library", help="Only this base library (e.g. legal_person).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def governance_conflicts(library: str | None, as_json: bool) -> None:
    """Open cross-bureau conflicts: a non-authoritative bureau's value that disagrees with the authority's."""
    from pyspark.sql import functions as F

    frame = _governance_table("conflicts").where(F.col("resolved_at").isNull())
    if library:
        frame = frame.where(F.col("library") == library)
    rows = [r.asDict() for r in frame.orderBy("library", "attribute", "subject").collect()]
    if as_json:
        _emit_json(rows)
        return
    console.print(_table(f"Open conflicts ({len(rows)})", [
        "library", "subject", "attribute", "authority", "authoritative value", "other feed", "other value",
        "first seen"], [[r["library"], r["subject"], r["attribute"], r["authoritative_feed"],
                         r["authoritative_value"], r["other_feed"], r["other_value"],
                         f"{r['first_seen_at']:%Y-%m-%d %H:%M}"] for r in rows[:200]]))


@governance.command("reviews")
@click.option("--library", help="Only this base library (population or legal_person).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def governance_reviews(library: str | None, as_json: bool) -> None:
    """Records entity resolution could not link safely (governance.match_review), with candidates."""
    from pyspark.sql import functions as F

    frame = _governance_table("match_review")
    if library:
        frame = frame.where(F.col("library") == library)
    rows = [r.asDict() for r in frame.orderBy("library", "feed", "_source_file", "_row_number").collect()]
    if as_json:
        _emit_json(rows)
        return
    console.print(_table(f"Match review ({len(rows)} open)", [
        "library", "feed", "file:row", "reason", "name", "birth", "town", "delivered key", "candidates"],
        [[r["library"], r["feed"], f"{r['_source_file']}:{r['_row_number']}", r["reason"],
          r["record"].get("name_key"), r["record"].get("birth"), r["record"].get("town_code"),
          r["record"].get("delivered_key"), ", ".join(r["candidate_keys"][:3])] for r in rows[:200]]))


@governance.command("scorecard")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def governance_scorecard(as_json: bool) -> None:
    """Per bureau and feed: completeness, validity, uniqueness, timeliness, open issues."""
    from pipelines.contracts import load_contracts
    from pipelines.governance.reports import scorecard

    card = scorecard(_spark(), load_contracts())
    if as_json:
        _emit_json([row.as_dict() for row in card])
        return

    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    console.print(_table("Bureau scorecard", ["bureau", "feed", "last load", "status", "completeness", "validity",
                                              "uniqueness", "timeliness", "blocked loads", "open issues"],
                         [[r.bureau, r.feed, r.last_load_id or "-", r.last_status or "-", pct(r.completeness),
                           pct(r.validity), pct(r.uniqueness), r.timeliness, r.blocked_loads, r.open_issues]
                          for r in card],
                         {"completeness", "validity", "uniqueness", "blocked loads", "open issues"}))


# ---------------------------------------------------------------------- airflow
@main.group("airflow")
def airflow_group() -> None:
    """The project's local Airflow 3 (home in ./.airflow, SQLite, 127.0.0.1)."""


def _print_airflow(status: dict) -> None:
    state = "running" if status["healthy"] else "starting" if status["running"] else "stopped"
    console.print(f"Airflow {state}: UI {status['url']} (pid {status['pid'] or '-'}), home {status['home']}")
    if status["running"]:
        console.print(f"Log in as admin; the password is in {status['password_file']}")


@airflow_group.command("up")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def airflow_up_command(as_json: bool) -> None:
    """Start `airflow standalone` in the background and wait until it answers."""
    from pipelines.orchestration.airflow_local import airflow_up

    with err_console.status("starting Airflow (API server, scheduler, DAG processor, triggerer)"):
        try:
            status = airflow_up()
        except (RuntimeError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None
    _emit_json(status) if as_json else _print_airflow(status)


@airflow_group.command("down")
def airflow_down_command() -> None:
    """Stop the Airflow started by `govlake airflow up`."""
    from pipelines.orchestration.airflow_local import airflow_down

    console.print("Airflow stopped" if airflow_down() else "Airflow was not running")


@airflow_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def airflow_status_command(as_json: bool) -> None:
    """Is the local Airflow running, and where is its UI."""
    from pipelines.orchestration.airflow_local import airflow_status

    status = airflow_status()
    _emit_json(status) if as_json else _print_airflow(status)


@airflow_group.command("run")
@click.argument("dag_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def airflow_run_command(dag_ids: tuple[str, ...], as_json: bool) -> None:
    """Run DAGs now through Airflow's dag.test() (in this process, recorded in Airflow)."""
    from pipelines.orchestration.airflow_local import run_dag

    runs = [run_dag(dag_id) for dag_id in dag_ids]
    if as_json:
        _emit_json(runs)
    else:
        console.print(_table("DAG runs", ["dag", "state", "tasks", "s"],
                             [[r["dag_id"], r["state"], ", ".join(f"{k}={v}" for k, v in r["tasks"].items()),
                               r["seconds"]] for r in runs], {"s"}))
    if any(r["state"] != "success" for r in runs):
        sys.exit(1)


# ---------------------------------------------------------------------- trino
@main.group("trino")
def trino_group() -> None:
    """The project's Trino server (HTTPS with passwords on 127.0.0.1, catalog `lake`)."""


def _print_trino(status: dict) -> None:
    state = "answering" if status["answering"] else "starting" if status["running"] else "stopped"
    console.print(f"Trino {state}: {status['url']} catalog {status['catalog']} (pid {status['pid'] or '-'})")
    if status["running"]:
        console.print(f"  certificate: {status['certificate']}   passwords: {status['passwords']}")


@trino_group.command("up")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def trino_up_command(as_json: bool) -> None:
    """Fetch (first time), configure and start Trino; wait until it answers queries."""
    from pipelines.serving.trino import TrinoSetupError, trino_up

    with err_console.status("starting Trino (fetches the server on first use)"):
        try:
            status = trino_up()
        except TrinoSetupError as exc:
            raise click.ClickException(str(exc)) from None
    _emit_json(status) if as_json else _print_trino(status)


@trino_group.command("down")
def trino_down_command() -> None:
    """Stop the Trino started by `govlake trino up`."""
    from pipelines.serving.trino import trino_down

    console.print("Trino stopped" if trino_down() else "Trino was not running")


@trino_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def trino_status_command(as_json: bool) -> None:
    """Is Trino running and answering, and how to connect."""
    from pipelines.serving.trino import trino_status

    status = trino_status()
    _emit_json(status) if as_json else _print_trino(status)


@main.command("publish")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def publish_command(as_json: bool) -> None:
    """Register every silver, base and governance Delta table in Trino and create the views."""
    from pipelines.serving.publish import publish

    outcome = publish()
    if as_json:
        _emit_json(outcome)
        return
    console.print(f"registered {len(outcome['registered'])}, unchanged {len(outcome['unchanged'])}, "
                  f"unregistered {len(outcome['unregistered'])}, views {len(outcome['views'])}")
    for name in outcome["registered"]:
        console.print(f"  + lake.{name}")


# ---------------------------------------------------------------------- catalog and access
@main.group("catalog")
def catalog_group() -> None:
    """The data resource catalog (数据资源目录): resources, columns, share types."""


@catalog_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="The whole catalog as JSON (the export).")
def catalog_list(as_json: bool) -> None:
    """Every data resource with its provider, cadence and share types."""
    from pipelines.serving.catalog import CatalogError, load_catalog

    try:
        catalog = load_catalog()
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _emit_json({"resources": [r.as_dict() for r in catalog.resources.values()],
                    "departments": [vars(d) for d in catalog.departments.values()],
                    "grants": [vars(g) for g in catalog.grants]})
        return
    rows = []
    for r in catalog.resources.values():
        counts = {t: sum(1 for c in r.columns if c.share_type == t) for t in ("unconditional", "conditional",
                                                                             "not_shared")}
        rows.append([r.resource_id, r.code, r.name, r.provider, r.update_cadence, counts["unconditional"],
                     counts["conditional"], counts["not_shared"]])
    console.print(_table("Data resource catalog", ["resource", "code", "name", "provider", "cadence",
                                                   "无条件", "有条件", "不予共享"], rows,
                         {"无条件", "有条件", "不予共享"}))


@catalog_group.command("show")
@click.argument("resource_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def catalog_show(resource_id: str, as_json: bool) -> None:
    """One resource: metadata and every column's classification, grade and share type."""
    from pipelines.serving.catalog import SHARE_TYPE_LABEL, load_catalog

    resource = load_catalog().resources.get(resource_id)
    if resource is None:
        raise click.ClickException(f"no resource {resource_id} (see `govlake catalog list`)")
    if as_json:
        _emit_json(resource.as_dict())
        return
    console.print(f"{resource.resource_id} {resource.code} {resource.name}: provider {resource.provider}, "
                  f"{resource.update_cadence}, {resource.format}\n{resource.description}")
    console.print(_table("Columns", ["column", "header", "type", "classification", "security grade", "share type"],
                         [[c.name, c.header, c.type, c.classification, c.security_grade,
                           SHARE_TYPE_LABEL[c.share_type]] for c in resource.columns]))


@main.group("access")
def access_group() -> None:
    """The sharing list compiled into Trino access rules."""


@access_group.command("compile")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def access_compile(as_json: bool) -> None:
    """Turn catalog + grants into Trino rules (reloaded within seconds, no restart)."""
    from pipelines.serving.catalog import CatalogError
    from pipelines.serving.rules import compile_rules

    try:
        outcome = compile_rules()
    except CatalogError as exc:
        raise click.ClickException(f"{exc} (the running rules are unchanged)") from None
    if as_json:
        _emit_json(outcome)
    else:
        console.print(f"compiled {outcome['table_rules']} table rules for {outcome['users']} users from "
                      f"{outcome['live_grants']} live of {outcome['grants']} grants into {outcome['rules']}")


@access_group.command("check")
@click.option("--user", "user", required=True)
@click.option("--table", "table", required=True, help="<schema>.<table>, e.g. silver.psb_hukou")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def access_check(user: str, table: str, as_json: bool) -> None:
    """Explain what USER can see of TABLE, column by column, and why."""
    from dataclasses import asdict

    from pipelines.serving.access import explain

    try:
        decision = explain(user, table)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _emit_json(asdict(decision))
        return
    console.print(f"{user} ({decision.department or 'no department'}) on {table}: {decision.reason}"
                  + (f"; row filter {decision.row_filter}" if decision.row_filter else ""))
    console.print(_table("Columns", ["column", "sees", "why"],
                         [[name, c.state, c.reason] for name, c in decision.columns.items()]))


@access_group.command("request")
@click.option("--department", required=True)
@click.option("--resource", required=True, help="<schema>.<table>")
@click.option("--columns", required=True, help="Comma-separated column names.")
@click.option("--purpose", required=True)
@click.option("--legal-basis", required=True)
@click.option("--expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--row-scope", type=click.Choice(["all", "own_town"]), default="all", show_default=True)
@click.option("--by", "requested_by", default=None, help="Who files it (default: the OS user).")
def access_request(department, resource, columns, purpose, legal_basis, expires, row_scope, requested_by) -> None:
    """File a sharing request: a pending entry on the demand list (需求清单)."""
    import getpass

    from pipelines.serving.catalog import CatalogError
    from pipelines.serving.requests import file_request

    try:
        row = file_request(_spark(), department, resource, [c.strip() for c in columns.split(",") if c.strip()],
                           purpose, legal_basis, expires.date(), requested_by or getpass.getuser(), row_scope)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"filed {row['request_id']}: {department} asks for {resource} ({columns}); pending")


def _decide(request_id: str, approve: bool, reason: str, decided_by: str | None) -> None:
    import getpass

    from pipelines.serving.requests import decide_request

    try:
        row = decide_request(_spark(), request_id, approve, decided_by or getpass.getuser(), reason)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{request_id} {row['status']}" + (f": grant written to {row['grant_file']}; run "
                                                      "`govlake access compile` to apply it" if approve else ""))


@access_group.command("approve")
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--by", "decided_by", default=None)
def access_approve(request_id: str, reason: str, decided_by: str | None) -> None:
    """Approve a pending request: it becomes a grant file under catalog/grants/."""
    _decide(request_id, True, reason, decided_by)


@access_group.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--by", "decided_by", default=None)
def access_reject(request_id: str, reason: str, decided_by: str | None) -> None:
    """Reject a pending request (recorded on the demand list)."""
    _decide(request_id, False, reason, decided_by)


@access_group.command("requests")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="all")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def access_requests(status: str, as_json: bool) -> None:
    """The demand list (需求清单)."""
    from pyspark.sql import functions as F

    from pipelines.serving.requests import read_demand_list

    frame = read_demand_list(_spark())
    if status != "all":
        frame = frame.where(F.col("status") == status)
    rows = [r.asDict() for r in frame.orderBy("requested_at").collect()]
    if as_json:
        _emit_json(rows)
        return
    console.print(_table("Demand list (需求清单)", ["request", "department", "resource", "columns", "status",
                                                  "decided by", "grant"],
                         [[r["request_id"], r["department"], r["resource"], ",".join(r["columns"]), r["status"],
                           r["decided_by"] or "-", r["grant_file"] or "-"] for r in rows]))


# ---------------------------------------------------------------------- base libraries
def _library_choices() -> list[str]:
    return sorted(p.stem for p in (Path(get_settings().schemas_dir) / "libraries").glob("*.yaml"))


@main.command("build")
@click.option("--library", "libraries", multiple=True, type=click.Choice(_library_choices()),
              help="A base library to build (repeatable). Default: all, in dependency order.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def build_command(libraries: tuple[str, ...], as_json: bool) -> None:
    """Build or refresh base libraries from silver (gated; history kept; only changes written)."""
    from pipelines.libraries.build import build_libraries

    results = build_libraries(_spark(), list(libraries) or None)
    if as_json:
        _emit_json(results)
    else:
        rows = [[r["library"], r["status"], r["rows"], r.get("inserted", "-"), r.get("changed", "-"),
                 r.get("removed", "-"), r.get("unchanged", "-"), r.get("seconds", "-")] for r in results]
        console.print(_table("Base libraries", ["library", "status", "records", "new", "changed", "closed",
                                                "unchanged", "seconds"], rows,
                             {"records", "new", "changed", "closed", "unchanged", "seconds"}))
        for r in results:
            for failure in r.get("gate", {}).get("failures", []):
                console.print(f"  base.{r['library']}: {failure}")
            if r.get("conflicts"):
                console.print(f"  base.{r['library']} conflicts: "
                              + ", ".join(f"{k} ({v})" for k, v in sorted(r["conflicts"].items())))
            if "match_review" in r:
                console.print(f"  base.{r['library']}: {r['entity_links']} quarantined records resolved, "
                              f"{r['match_review']} waiting in governance.match_review")
            for rate in r.get("report", []):
                console.print(f"  address match {rate['feed']}.{rate['column_name']}: "
                              f"{rate['matched']}/{rate['rows']} ({rate['match_rate']:.2%})")
    if any(r["status"] != "built" for r in results):
        sys.exit(1)


@main.group("show")
def show_group() -> None:
    """One golden record with each attribute's source (a governor's debugging view)."""


def _show_record(library: str, key: str, value: str, as_json: bool) -> None:
    from pyspark.sql import functions as F

    from pipelines.lake.delta import delta_exists
    from pipelines.library_specs import load_library_spec

    settings = get_settings()
    spark = _spark()
    path = settings.lake_path("base", library)
    if not delta_exists(spark, path):
        raise click.ClickException(f"base.{library} is not built yet: run `govlake build`")
    row = spark.read.format("delta").load(path).where((F.col(key) == value) & F.col("is_current")).first()
    if row is None:
        raise click.ClickException(f"no {key} {value} in base.{library}")
    record = row.asDict()
    conflicts_path = settings.lake_path("governance", "conflicts")
    conflicts = ([c.asDict() for c in spark.read.format("delta").load(conflicts_path)
                  .where((F.col("library") == library) & (F.col("subject") == value) & F.col("resolved_at").isNull())
                  .collect()] if delta_exists(spark, conflicts_path) else [])
    if as_json:
        _emit_json(record | {"conflicts": conflicts})
        return
    spec = load_library_spec(library, settings)
    console.print(f"{value}: known to {', '.join(record['known_to'])}; valid from {record['valid_from']}"
                  + ("" if record["is_known_to_authority"] else " (not known to the authoritative bureau)"))
    console.print(_table("Attributes", ["attribute", "value", "source", "load"],
                         [[a.name, record[a.name], record[f"{a.name}_source"] or "-", record[f"{a.name}_load_id"] or "-"]
                          for a in spec.attributes]))
    computed = [c for c in record if c not in {spec.key, "known_to", "is_known_to_authority", "record_hash",
                                                "valid_from", "valid_to", "is_current"}
                and not any(c in (a.name, f"{a.name}_source", f"{a.name}_load_id") for a in spec.attributes)]
    if computed:
        console.print(_table("Computed", ["column", "value"], [[c, record[c]] for c in computed]))
    for c in conflicts:
        console.print(f"[yellow]conflict[/yellow] {c['attribute']}: {c['authoritative_feed']} says "
                      f"{c['authoritative_value']!r}, {c['other_feed']} says {c['other_value']!r} "
                      f"(since {c['first_seen_at']})")


@show_group.command("person")
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def show_person(person_id: str, as_json: bool) -> None:
    """The current base.population record of PERSON_ID and where each value came from."""
    _show_record("population", "person_id", person_id, as_json)


@show_group.command("entity")
@click.argument("uscc")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def show_entity(uscc: str, as_json: bool) -> None:
    """The current base.legal_person record of USCC, each value's source, and its conflicts."""
    _show_record("legal_person", "uscc", uscc, as_json)


# ---------------------------------------------------------------------- demo
@main.command()
@click.option("--scale", default=0.002, show_default=True, type=float)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def demo(scale: float, seed: int, as_json: bool) -> None:
    """Generate a small city, land its deliveries, run every feed DAG through Airflow, summarise."""
    from pipelines.dev.demo import run_demo

    started = time.monotonic()
    summary = run_demo(_spark(), scale=scale, seed=seed, show_progress=not as_json, console=err_console)
    summary["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        _emit_json(summary)
    else:
        _print_demo(summary, scale)
    if not summary["ok"]:
        sys.exit(1)


def _print_demo(summary: dict, scale: float) -> None:
    rows = [[f["feed"], f["loads"], f["rows_read"], f["rows_loaded"], f["rows_quarantined"], f["rows_duplicate"],
             "yes" if f["reconciles"] else "NO", f["silver_rows"], f["blocked_loads"], f["open_issues"]]
            for f in summary["feeds"]]
    numbers = {"loads", "read", "loaded", "quarantined", "duplicate", "silver rows", "blocked", "open issues"}
    console.print(_table(f"A scale {scale} city through Airflow in {summary['seconds']}s",
                         ["feed", "loads", "read", "loaded", "quarantined", "duplicate", "reconciles",
                          "silver rows", "blocked", "open issues"], rows, numbers))
    runs = summary["dag_runs"]
    failed = [r for r in runs if r["state"] != "success"]
    console.print(f"Airflow: {len(runs) - len(failed)} of {len(runs)} DAG runs succeeded"
                  + (f"; failed (visibly, by design): {', '.join(r['dag_id'] for r in failed)}" if failed else ""))
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
    for sample in summary["sample_queries"]:
        console.print(f"\n[bold]{sample['user']}[/bold]: {sample['title']}\n  {sample['sql']}")
        if sample["error"]:
            console.print(f"  [red]{sample['error']}[/red]")
        else:
            console.print(_table("", sample["columns"], sample["rows"]))
    trino = summary["trino"]
    console.print("\nWhere to look next:")
    console.print(f"  Trino:       {trino['url']} catalog {trino['catalog']} (left running; `make down` stops it). "
                  f"Certificate {trino['certificate']}, passwords {trino['passwords']}; "
                  "Python: `from pipelines.trino import connect; connect('hrss_officer')`")
    console.print(f"  Data Docs:   {summary['data_docs']}")
    console.print(f"  Airflow:     `make airflow`, then http://127.0.0.1:8080 (this demo's DAG run log: "
                  f"{summary['airflow_log']})")
    console.print("  Governance:  `govlake governance list`, `govlake governance scorecard`, `govlake quality report`")
    console.print(f"  Lake:        {summary['lake']}   ground truth: {summary['truth']}")

