"""The ``govlake`` command line: a human table by default, ``--json`` for machines.

One module per command group; this one holds the root group, its error
handling and the registration. The commands parse and render only: the work
is one call into ``pipelines``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import click
from rich.markup import escape

from pipelines.cli import (audit, catalog, contracts, dev, governance, ingest, inspections, lake, libraries, quality,
                           services)
from pipelines.cli.common import err_console

log = logging.getLogger("pipelines")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)


def error_line(exc: BaseException) -> str:
    """One line for an unexpected error: its type and the first line of its
    message (Spark's messages name the path or table; the JVM trace follows),
    then its notes (e.g. what a build of several libraries committed before it)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
    return f"{type(exc).__name__}: {lines[0] if lines else repr(exc)}{notes}"


class GovlakeGroup(click.Group):
    """The root group: an error a user can cause ends in one line and exit 1;
    ``--debug`` shows the stack trace instead."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit,
                KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            command = " ".join(filter(None, ["govlake", ctx.invoked_subcommand]))
            err_console.print(f"[red]{escape(command)}: {escape(error_line(exc))}[/red]", highlight=False,
                              soft_wrap=True)
            err_console.print("(run `govlake --debug ...` for the stack trace)", highlight=False)
            sys.exit(1)


@click.group(cls=GovlakeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show the full stack trace of an unexpected error.")
def main(verbose: int, debug: bool) -> None:
    """govlake: bureau feeds into a Delta lake, curated into shared base libraries."""
    _setup_logging(verbose)


for _command in (
    dev.setup, contracts.contracts, dev.synth, ingest.ingest, ingest.loads, governance.collection,
    quality.quality, governance.governance, services.airflow_group, services.trino_group, services.builder_group,
    services.portal_group, services.cluster_group, catalog.publish_command,
    catalog.catalog_group, catalog.access_group, audit.audit_group, libraries.build_command, libraries.show_group,
    lake.upkeep_command, inspections.inspect_group, inspections.verify_fact_command, dev.demo,
):
    main.add_command(_command)


def _json_only_on_stdout() -> None:
    """With ``--json``, stdout carries the JSON and nothing else.

    Why: a JVM started by the command (Spark) inherits file descriptor 1, and
    Delta's VACUUM prints "Deleted N files and directories ..." on it with
    ``println``, which no Python setting can silence; Airflow's task logs go
    to ``sys.stdout``. So the real stdout is kept on a new descriptor that
    only ``emit_json`` writes to, and descriptor 1 (``sys.stdout`` too) is
    pointed at stderr before anything starts: whatever else is printed lands
    with the logs.
    """
    from pipelines.cli import common

    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    common.json_stream = os.fdopen(json_fd, "w", encoding="utf-8")


def run() -> None:
    """The ``govlake`` program: ``main``, then an exit without the
    interpreter's teardown.

    Why: tearing down a process that has imported Great Expectations (scipy,
    pandas, sqlalchemy, altair: thousands of modules) takes ~0.45 s, an eighth
    of a small delivery's whole ``govlake ingest``, and does nothing anyone can
    observe: every Delta commit and GX store write is finished and its file
    closed before a command returns. What an exit must do still runs: the
    ``atexit`` handlers (logging's flush and close, Spark's stop) and the
    flush of stdout and stderr. In-process callers (tests, ``CliRunner``)
    call ``main`` and keep the normal exit.
    """
    if "--json" in sys.argv[1:]:
        _json_only_on_stdout()
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:                      # sys.exit("message"): printed, status 1, as the interpreter does
            print(exc.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a reader that went away (``| head``): nothing more reaches it
            pass
    os._exit(code)
