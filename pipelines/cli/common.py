"""What every command module shares: the consoles, JSON and table rendering, the
Spark session, and the checks that stop a command before Spark starts."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from pipelines.settings import get_settings

# Wide enough for the tables when output is piped (rich assumes 80 columns then).
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


def emit_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list], justify_right: set[str] = frozenset()) -> Table:
    rendered = Table(title=title, title_justify="left")
    for column in columns:
        rendered.add_column(column, justify="right" if column in justify_right else "left")
    for row in rows:
        rendered.add_row(*["" if v is None else str(v) for v in row])
    return rendered


def spark():
    from pipelines.spark import build_spark_session

    return build_spark_session()


# What creates each governance table, for the message when it is not there yet.
_MADE_BY = {
    "load_manifest": "`govlake ingest` (no delivery was ingested into this lake yet)",
    "issues": "`govlake ingest` (no delivery was ingested into this lake yet)",
    "quality_results": "`govlake ingest` (no delivery was validated in this lake yet)",
    "conflicts": "`govlake build`",
    "match_review": "`govlake build`",
    "demand_list": "`govlake access request` (no request was filed yet)",
}


def lake_spark(*governance_tables: str):
    """The Spark session, once the lake and the governance tables a command
    reads exist; otherwise a one-line error (exit 1) naming what is missing
    and what creates it, before Spark starts."""
    from pathlib import Path

    from pipelines.lake.paths import governance_path

    settings = get_settings()
    if settings.lake_is_local and not Path(settings.home.removeprefix("file://")).is_dir():
        raise click.ClickException(f"no lake at {settings.home} (GOVLAKE_HOME): ingest a delivery first "
                                   "(`govlake ingest --all DIR`, or `make demo`)")
    for name in governance_tables:
        if not table_exists(governance_path(name, settings)):
            raise click.ClickException(f"governance.{name} does not exist yet in {settings.home}: "
                                       f"it is written by {_MADE_BY.get(name, 'the pipeline')}")
    return spark()


def table_exists(path: str) -> bool:
    """Is there a Delta table at ``path`` (read by delta-rs: no JVM)."""
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(path)
