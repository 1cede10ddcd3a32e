"""What every command module shares: the consoles, JSON and table rendering, the
Spark session, and the checks that stop a command before Spark starts."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from pipelines.lake.delta import table_exists
from pipelines.settings import get_settings

# Wide enough for the tables when output is piped (rich assumes 80 columns then).
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


# With ``--json``, the real stdout, kept by ``pipelines.cli.run`` for the JSON
# alone (descriptor 1 then points at stderr); None in-process (``CliRunner``).
json_stream = None


def emit_json(data) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if json_stream is None:
        click.echo(text)
        return
    json_stream.write(text + "\n")
    json_stream.flush()


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
    "issues": "`govlake ingest` when a delivery breaks a rule",
    "quality_results": "`govlake ingest` (no delivery was validated in this lake yet)",
    "conflicts": "`govlake build`",
    "match_review": "`govlake build`",
    "demand_list": "`govlake access request` (no request was filed yet)",
}


def known_feed(feed: str | None) -> str | None:
    """``feed`` when a contract names it (or None); otherwise a one-line error."""
    from pipelines.contracts import ContractError, get_contract

    if feed is not None:
        try:
            get_contract(feed)
        except ContractError as exc:
            raise click.ClickException(str(exc)) from None
    return feed


def require_lake():
    """The settings, once the lake exists; otherwise a one-line error (exit 1)."""
    from pathlib import Path

    settings = get_settings()
    if settings.lake_is_local and not Path(settings.home.removeprefix("file://")).is_dir():
        raise click.ClickException(f"no lake at {settings.home} (GOVLAKE_HOME): ingest a delivery first "
                                   "(`govlake ingest --all DIR`, or `make demo`)")
    return settings


def lake_spark(*governance_tables: str):
    """The Spark session, once the lake and the governance tables a command
    reads exist; otherwise a one-line error (exit 1) naming what is missing
    and what creates it, before Spark starts."""
    from pipelines.lake.paths import governance_path

    settings = require_lake()
    for name in governance_tables:
        if not table_exists(governance_path(name, settings)):
            raise click.ClickException(f"governance.{name} does not exist yet in {settings.home}: "
                                       f"it is written by {_MADE_BY.get(name, 'the pipeline')}")
    return spark()


def spark_if_written(name: str):
    """The Spark session when ``governance.<name>`` has been written, else None:
    in a lake where nothing has written that table yet (e.g. every delivery was
    clean, so no issue was opened), a listing shows an empty result, says why
    on stderr and starts no Spark. No lake at all is an error (``lake_spark``)."""
    return spark() if written(name) else None


def written(name: str) -> bool:
    """Whether ``governance.<name>`` has been written; when not, says so (and
    what writes it) on stderr. No lake at all is an error (``require_lake``)."""
    from pipelines.lake.paths import governance_path

    if table_exists(governance_path(name, require_lake())):
        return True
    err_console.print(f"governance.{name} is empty: it is written by {_MADE_BY.get(name, 'the pipeline')}",
                      highlight=False)
    return False


