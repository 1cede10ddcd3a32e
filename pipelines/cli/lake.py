"""`govlake upkeep`: compaction, clustering by key and VACUUM of the lake's tables."""

from __future__ import annotations

import click

from pipelines.cli.common import console, emit_json, json_option, table


@click.command("upkeep")
@click.option("--layer", "layers", multiple=True, help="A layer to keep up (repeatable; default: those of "
                                                       "catalog/upkeep.yaml): base, silver, bronze, governance, pending.")
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@json_option
def upkeep_command(layers: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Z-order the base libraries by key, compact small files, VACUUM past the retention (catalog/upkeep.yaml).

    Rows are never changed: every rewrite commits as a layout change. Run it
    when no build writes the same tables (the lake_upkeep DAG runs nightly).
    """
    from pipelines.lake.upkeep import load_policy, run_upkeep

    policy = load_policy()
    results = run_upkeep(list(layers) or None, policy=policy, dry_run=dry_run)
    if as_json:
        emit_json(results)
        return
    rows = [[r["layer"], r["table"].rsplit("/", 2)[-2] + "/" + r["table"].rsplit("/", 1)[-1], r["action"],
             r["files_before"], r["files_after"], r["vacuumed_files"]] for r in results]
    console.print(table(f"Upkeep{' (dry run)' if dry_run else ''}: retention {policy.retention_hours} h",
                        ["layer", "table", "action", "files before", "files after", "vacuumed"], rows,
                        {"files before", "files after", "vacuumed"}))
