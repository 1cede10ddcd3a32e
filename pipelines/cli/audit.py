"""`govlake audit`: load the audit log of Trino queries and HTTP requests, and verify its hash chain."""

from __future__ import annotations

import sys

import click

from pipelines.cli.common import console, emit_json, json_option, require_lake


@click.group("audit")
def audit_group() -> None:
    """The audit log (governance.query_audit): every Trino query and the audited HTTP requests, hash-chained."""


@audit_group.command("load")
@json_option
def audit_load(as_json: bool) -> None:
    """Append new query events and audited requests of Trino's request log (no Spark); print the counts.

    Exits 1 when Trino has not written anything to load yet."""
    from pipelines.serving.audit import AuditError, audit_dir, load_audit, request_log_files

    settings = require_lake()
    if not audit_dir(settings).is_dir() and not request_log_files(settings):
        raise click.ClickException(f"nothing to load: no audit events in {audit_dir(settings)} and no request log "
                                   "of Trino yet (`govlake trino up` starts Trino and the audit receiver)")
    try:
        outcome = load_audit(settings)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(outcome)
        return
    console.print(f"governance.query_audit: loaded {outcome['loaded']} ({outcome['queries']} queries, "
                  f"{outcome['http_requests']} HTTP requests), {outcome['already_loaded']} already loaded, "
                  f"head seq {outcome['head_seq']}", highlight=False)
    if outcome["skipped_events"] or outcome["duplicate_events"] or outcome["unparsed_request_lines"]:
        console.print(f"  set aside: {outcome['skipped_events']} unusable event(s), {outcome['duplicate_events']} "
                      f"duplicate query id(s) (see {audit_dir(settings)}/events-*.jsonl.rejected), "
                      f"{outcome['unparsed_request_lines']} unparsed request-log line(s)", highlight=False)


@audit_group.command("verify")
@json_option
def audit_verify(as_json: bool) -> None:
    """Recompute the hash chain of governance.query_audit from its data files.

    Exits 1 when a row was altered, deleted, inserted or reordered, or a data file rewritten."""
    from pipelines.serving.audit import verify_audit

    outcome = verify_audit(require_lake())
    if as_json:
        emit_json(outcome)
    elif outcome["ok"]:
        console.print(f"governance.query_audit: chain intact, {outcome['rows']} rows, head seq "
                      f"{outcome['head_seq']} digest {outcome['head_digest']}", highlight=False)
    else:
        broken = outcome["first_broken"]
        where = f" at seq {broken['seq']}" if broken["seq"] is not None else ""
        which = f" (query_id {broken['query_id']})" if broken["query_id"] else ""
        console.print(f"governance.query_audit: chain BROKEN{where}{which}: {broken['reason']}", style="red",
                      markup=False, highlight=False)
    if not outcome["ok"]:
        sys.exit(1)
