"""`govlake contracts`: the feed contracts under schemas/feeds/."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import console, emit_json, err_console, table


@click.group()
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
        emit_json([c.model_dump() for c in loaded.values()])
    else:
        console.print(table("Feed contracts", ["feed", "bureau", "title", "cadence", "file", "columns", "key"],
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
