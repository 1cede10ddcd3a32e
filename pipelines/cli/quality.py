"""`govlake quality`: expectation suites, gate results, approvals of blocked loads."""

from __future__ import annotations

import sys

import click

from pipelines.cli.common import console, emit_json, err_console, json_option, lake_spark, table


@click.group()
def quality() -> None:
    """Quality gates: expectation suites, validation results, approvals, Data Docs."""


@quality.command("suites")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a suite file is stale or missing.")
@json_option
def quality_suites(check: bool, as_json: bool) -> None:
    """Render quality/suites/<feed>.json from the contracts and quality/custom/."""
    from pipelines.contracts import ContractError, load_contracts
    from pipelines.quality.suites import SuiteError, write_suites

    try:
        outcome = write_suites(load_contracts(), check=check)
    except (ContractError, SuiteError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(outcome)
    else:
        console.print(table("Expectation suites", ["feed", "suite file"], [[f, s] for f, s in outcome.items()]))
    if check and any(s != "unchanged" for s in outcome.values()):
        err_console.print("[red]suite files are out of date: run `govlake quality suites`[/red]")
        sys.exit(1)


@quality.command("report")
@json_option
def quality_report_command(as_json: bool) -> None:
    """Rebuild the Data Docs; per feed: pass rate, blocked loads, worst expectations."""
    from pipelines.governance.reports import quality_report
    from pipelines.quality.gate import build_data_docs

    build_data_docs()
    report = quality_report(lake_spark("load_manifest"))
    if as_json:
        emit_json(report)
        return
    rows = [[f["feed"], f.get("validated_loads", 0), f"{f.get('pass_rate') or 0:.1%}", f.get("blocking_failures", 0),
             f.get("warnings", 0), len(f["blocked_loads"]),
             "; ".join(f"{w['expectation']} {w['unexpected_percent'] or 0:.1f}%" for w in f["worst"])]
            for f in report["feeds"]]
    console.print(table("Quality gate results", ["feed", "loads", "pass rate", "blocking fails", "warnings",
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
@json_option
def quality_approve(load_id: str, reason: str, approved_by: str | None, as_json: bool) -> None:
    """Promote a delivery the gate blocked into silver; the approval is recorded."""
    import getpass

    from pipelines.ingest.load import approve_blocked_load

    try:
        approval = approve_blocked_load(load_id, reason, approved_by or getpass.getuser())
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(approval)
    else:
        console.print(f"approved {load_id} ({approval['feed']}): {approval['rows_promoted']} rows promoted to silver")
