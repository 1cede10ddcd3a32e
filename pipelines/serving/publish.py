"""Register the lake's Delta tables in Trino (catalog ``lake``) and create the views.

Schemas: ``silver`` (one table per feed, ``<bureau>_<feed>``), ``base`` (the
base libraries), ``governance`` (manifest, quarantine, quality results, issues,
...). Registration points Trino's file metastore at the Delta table's folder
(``system.register_table``); Trino reads the Delta log on every query, so new
versions written by Spark are visible without publishing again. Publishing is
idempotent: registered tables are left alone, tables whose folder disappeared
are unregistered, views in ``sql/views/<schema>/<view>.sql`` are (re)created
(a view whose tables do not exist yet waits for a later publish).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from trino.exceptions import TrinoUserError

from pipelines.serving.audit import ensure_audit_table
from pipelines.serving.catalog import CatalogError, load_catalog
from pipelines.serving.keeper import start_keeper, stop_keeper
from pipelines.serving.pseudonyms import ensure_pseudonym_key
from pipelines.serving.rules import build_rules, compile_rules
from pipelines.serving.tables import SCHEMAS, discover_tables, publishable_names, view_files
from pipelines.serving.trino import ADMIN_USER, CATALOG, base_rules, connect, rules_path, trino_up, write_rules
from pipelines.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


class ViewError(ValueError):
    """A view file does not compile in Trino; the message names the file."""


def _ensure_ownership(names: list[tuple[str, str]], settings: Settings, wait_seconds: float = 20) -> None:
    """Recompile the access rules when they do not yet let the administrator
    register these names, and wait until Trino has reloaded them."""
    def owned() -> set[tuple[str, str]]:
        path = rules_path(settings)
        rules = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"tables": []}
        return {(r["schema"].strip("^$"), r["table"].strip("^$")) for r in rules["tables"]
                if r.get("user") == f"^{ADMIN_USER}$" and "OWNERSHIP" in r.get("privileges", []) and "table" in r}

    if not set(names) <= owned():
        compile_rules(settings)
    # Trino re-reads the rules file at most every 5 s: rules written just now (here, or by a
    # caller that compiled them before publishing) may not be in force yet
    path = rules_path(settings)
    if path.exists():
        time.sleep(max(0.0, min(wait_seconds, 6 - (time.time() - path.stat().st_mtime))))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def publish(settings: Settings | None = None, views_dir: Path | None = None) -> dict:
    """Register new tables, unregister vanished ones, (re)create views; first
    recompute ``governance.resource_health`` so the catalog's freshness is as
    of this publish."""
    from pipelines.contracts import load_contracts
    from pipelines.governance.health import snapshot_resource_health

    settings = settings or get_settings()
    views_dir = views_dir or PROJECT_ROOT / "sql" / "views"
    ensure_pseudonym_key(settings)         # the department masks read it: registered with the rest
    snapshot_resource_health(load_contracts(settings.schemas_dir), settings)
    tables = discover_tables(settings)
    _ensure_ownership(publishable_names(settings, views_dir), settings)
    connection = connect(settings=settings)
    cursor = connection.cursor()

    def run(sql: str):
        cursor.execute(sql)
        return cursor.fetchall()

    outcome = {"registered": [], "unchanged": [], "unregistered": [], "views": [], "views_waiting": []}
    try:
        for schema in SCHEMAS:
            run(f"create schema if not exists {CATALOG}.{schema}")
        existing = {(schema, table) for schema, table, kind in run(
            f"select table_schema, table_name, table_type from {CATALOG}.information_schema.tables "
            f"where table_schema in ({', '.join(repr(s) for s in SCHEMAS)})") if kind == "BASE TABLE"}
        wanted = {(t.schema, t.table) for t in tables}
        for table in tables:
            name = f"{table.schema}.{table.table}"
            if (table.schema, table.table) in existing:
                outcome["unchanged"].append(name)
                continue
            run(f"call {CATALOG}.system.register_table(schema_name => '{table.schema}', "
                f"table_name => '{table.table}', table_location => '{table.location}')")
            outcome["registered"].append(name)
        for schema, table in sorted(existing - wanted):
            run(f"call {CATALOG}.system.unregister_table(schema_name => '{schema}', table_name => '{table}')")
            outcome["unregistered"].append(f"{schema}.{table}")
        for schema, view, path in view_files(views_dir):
            lines = path.read_text(encoding="utf-8").strip().rstrip(";").splitlines()
            comment = " ".join(line[2:].strip() for line in lines if line.startswith("--"))
            body = "\n".join(line for line in lines if not line.startswith("--"))
            name = f"{CATALOG}.{schema}.{_quote(view)}"
            try:
                run(f"create or replace view {name} security invoker as {body}")
            except TrinoUserError as exc:
                if exc.error_name != "TABLE_NOT_FOUND":
                    raise ViewError(f"sql/views/{schema}/{path.name}: {exc.message}") from None
                outcome["views_waiting"].append(f"{schema}.{view}: {exc.message}")
                continue
            if comment:
                run(f"comment on view {name} is '{comment.replace(chr(39), chr(39) * 2)}'")
            outcome["views"].append(f"{schema}.{view}")
    finally:
        connection.close()
    log.info("published: %d registered, %d unchanged, %d unregistered, %d views",
             len(outcome["registered"]), len(outcome["unchanged"]), len(outcome["unregistered"]),
             len(outcome["views"]))
    return outcome | {"tables": [asdict(t) for t in tables]}


def _published(outcome: dict) -> dict:
    return {k: len(v) for k, v in outcome.items() if k != "tables"}


def trino_up_with_rules(settings: Settings | None = None) -> dict:
    """What ``govlake trino up`` does: start Trino (``trino.trino_up``), create
    the audit table and the pseudonym key, publish (so ``governance.query_audit``
    is readable from the first start), compile the sharing list's rules, and
    start the rules keeper that recompiles them and loads the audit log every
    ``rules_refresh_seconds``.

    A catalog that does not compile must not leave older, possibly wider rules
    in force: the administrator-only rules replace them (nobody else reads
    anything until the catalog is fixed), and the reason is reported under
    ``rules_error`` rather than stopping the server."""
    settings = settings or get_settings()
    status = trino_up(settings)
    # a keeper from before would remember a catalog that compiled then: this start decides afresh
    stop_keeper(settings)
    try:
        _rules_and_tables(settings, status)
    finally:
        status["keeper_pid"] = start_keeper(settings)
    return status


def _rules_and_tables(settings: Settings, status: dict) -> None:
    ensure_audit_table(settings)
    ensure_pseudonym_key(settings)
    try:
        build_rules(load_catalog(settings), settings.on_date())      # does the sharing list compile at all?
    except CatalogError as exc:
        log.warning("sharing rules not compiled (%s): only the administrator can read", exc)
        status["rules_error"] = f"{type(exc).__name__}: {exc}"
        # register what exists with the administrator's rights only, then narrow again
        write_rules(base_rules(publishable_names(settings)), settings)
        time.sleep(6)             # Trino re-reads the rules file every 5 s
        try:
            status["published"] = _published(publish(settings))
        finally:
            write_rules(base_rules(), settings)
    else:
        status["published"] = _published(publish(settings))      # compiles the rules first if it must
        status["rules"] = compile_rules(settings)
