"""`govlake ingest` and `govlake loads`: deliveries into the lake, and the load manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import console, emit_json, err_console, json_option, known_feed, spark_if_written, table

LOAD_COLUMNS = ["feed", "file", "status", "read", "loaded", "quarantined", "duplicate", "reconciles", "s", "note"]
LOAD_NUMBERS = {"read", "loaded", "quarantined", "duplicate", "s"}


def _load_rows(results) -> list[list]:
    return [[r.feed, r.source_file, r.status, r.rows_read, r.rows_loaded, r.rows_quarantined, r.rows_duplicate,
             "yes" if r.reconciles else "NO", f"{r.seconds:.1f}", r.message[:120]] for r in results]


def ingest_all_with_progress(root: Path, show_progress: bool, contracts_by_feed: dict, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.ingest.load import ingest_directory

    if not show_progress:
        return ingest_directory(root, contracts_by_feed)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("ingesting", total=total)

        def advance(result) -> None:
            progress.update(task, advance=1, description=f"{result.feed} {result.status}")

        return ingest_directory(root, contracts_by_feed, on_result=advance)


@click.command()
@click.argument("feed", required=False)
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--all", "all_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ingest every delivery under DIR/<bureau>/<feed>/.")
@click.option("--replaces", metavar="LOAD_ID", help="This file is a corrected re-delivery of LOAD_ID.")
@json_option
def ingest(feed: str | None, file: Path | None, all_dir: Path | None, replaces: str | None, as_json: bool) -> None:
    """Ingest FEED FILE (or --all DIR) exactly once: raw, bronze, quality gate, silver, quarantine.

    Exits 1 if any delivery was rejected, blocked by the quality gate, or failed,
    or if DIR holds no <bureau>/<feed>/ delivery folders (the message names the
    nearest folder that does). Folders that are not a known feed are reported.
    """
    from pipelines.contracts import ContractError, get_contract, load_contracts
    from pipelines.ingest.load import DeliveryFolderError, ReconciliationError, check_delivery_folder, ingest_file
    from pipelines.ingest.readers import DeliveryError
    from pipelines.quality.gate import build_data_docs

    if bool(all_dir) == bool(feed and file):
        raise click.UsageError("give either FEED FILE or --all DIR")
    try:
        if all_dir:
            contracts_by_feed = load_contracts()
            total, warnings = check_delivery_folder(all_dir, contracts_by_feed)
            for warning in warnings:
                err_console.print(f"[yellow]{warning}[/yellow]", highlight=False)
            results = ingest_all_with_progress(all_dir, not as_json, contracts_by_feed, total)
        else:
            contract = get_contract(feed)
            if not file.is_file():
                raise click.ClickException(f"{file}: no such file")
            if as_json:
                results = [ingest_file(contract, file, replaces=replaces)]
            else:
                with err_console.status(f"ingesting {file} into {feed}"):
                    results = [ingest_file(contract, file, replaces=replaces)]
            build_data_docs(gates=[r.gate for r in results])   # once per run, for this run's validation
    except (ContractError, DeliveryError, DeliveryFolderError, ReconciliationError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json([r.as_dict() for r in results])
    else:
        console.print(table("Loads", LOAD_COLUMNS, _load_rows(results), LOAD_NUMBERS))
        for r in results:
            if r.status in ("rejected", "failed", "blocked"):
                err_console.print(f"[red]{r.feed} {r.source_file} ({r.load_id}): {r.status}: {r.message}[/red]")
    if any(r.status in ("rejected", "failed", "blocked") for r in results):
        sys.exit(1)


@click.command()
@click.option("--feed", help="Only this feed.")
@json_option
def loads(feed: str | None, as_json: bool) -> None:
    """The load manifest: the latest status of every delivery."""
    from pyspark.sql import functions as F

    from pipelines.lake.manifest import read_manifest

    known_feed(feed)
    rows = []
    if session := spark_if_written("load_manifest"):
        frame = read_manifest(session)
        if feed:
            frame = frame.where(F.col("feed") == feed)
        rows = [r.asDict() for r in frame.orderBy("feed", "event_at").collect()]
    if as_json:
        emit_json(rows)
        return
    console.print(table("Load manifest", ["load_id", "feed", "file", "status", "read", "loaded", "quarantined",
                                          "duplicate", "at (UTC)"],
                        [[r["load_id"], r["feed"], r["source_file"], r["status"], r["rows_read"], r["rows_loaded"],
                          r["rows_quarantined"], r["rows_duplicate"], f"{r['event_at']:%Y-%m-%d %H:%M:%S}"]
                         for r in rows], {"read", "loaded", "quarantined", "duplicate"}))
