"""The Trino rules document, compiled from the catalog's decisions."""

from __future__ import annotations

import logging
from datetime import date

from pipelines.serving.access import TableDecision, decide, mask_expression
from pipelines.serving.catalog import Catalog, Resource, load_catalog
from pipelines.serving.tables import publishable_names
from pipelines.serving.trino import CATALOG, base_rules, ensure_passwords, trino_up, write_rules
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _table_rule(decision: TableDecision, resource: Resource) -> dict:
    schema, table = resource.resource_id.split(".", 1)
    columns = []
    for column in resource.columns:
        state = decision.columns[column.name].state
        if state == "denied":
            columns.append({"name": column.name, "allow": False})
        elif state == "masked":
            columns.append({"name": column.name, "mask": mask_expression(column)})
    # Lineage columns (_load_id, _source_file, ...) stay visible: they carry no personal data.
    rule = {"user": f"^{decision.user}$", "catalog": CATALOG, "schema": f"^{schema}$", "table": f"^{table}$",
            "privileges": ["SELECT"], "columns": columns}
    if decision.row_filter:
        rule["filter"] = decision.row_filter
    return rule


def build_rules(catalog: Catalog, on: date, owned: list[tuple[str, str]] = ()) -> dict:
    """Trino file-based access-control rules for every user and resource;
    ``owned``: the tables and views the administrator may register or create."""
    rules = base_rules(owned)
    tables = rules["tables"]
    for department in catalog.departments.values():
        for user in department.users:
            if department.role == "governor":
                tables.append({"user": f"^{user}$", "catalog": CATALOG, "schema": "^governance$",
                               "privileges": ["SELECT"]})
            for resource in catalog.resources.values():
                decision = decide(user, resource, catalog.departments, catalog.grants, on)
                if decision.readable:
                    tables.append(_table_rule(decision, resource))
    tables.append({"privileges": []})   # anything not granted above: nothing
    return rules


def compile_rules(settings: Settings | None = None, on: date | None = None) -> dict:
    """Validate the catalog and grants, then replace Trino's rules in one step.
    A bad grant raises before anything is written: the running rules stay."""

    settings = settings or get_settings()
    catalog = load_catalog(settings)
    rules = build_rules(catalog, on or date.today(), publishable_names(settings))

    ensure_passwords(settings)
    path = write_rules(rules, settings)
    return {"rules": str(path), "table_rules": len(rules["tables"]), "grants": len(catalog.grants),
            "live_grants": sum(1 for g in catalog.grants if g.is_live(on or date.today())),
            "users": sum(len(d.users) for d in catalog.departments.values())}


def trino_up_with_rules(settings: Settings | None = None) -> dict:
    """Start Trino (``trino.trino_up``), then compile the sharing list's rules.

    A catalog that does not compile must not leave older, possibly wider rules
    in force: the administrator-only rules replace them (nobody else reads
    anything until the catalog is fixed), and the reason is reported under
    ``rules_error`` rather than stopping the server."""
    status = trino_up(settings)
    try:
        status["rules"] = compile_rules(settings)
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the narrowest rules, and says why
        write_rules(base_rules(), settings)
        log.warning("sharing rules not compiled (%s): only the administrator can read", exc)
        status["rules_error"] = f"{type(exc).__name__}: {exc}"
    return status
