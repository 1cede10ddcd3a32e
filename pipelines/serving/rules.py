"""The Trino rules document, compiled from the catalog's decisions."""

from __future__ import annotations

import logging
import re
from datetime import date
from pathlib import Path

from pipelines.serving.access import TableDecision, decide, mask_expression, needs_key, reversible_masks
from pipelines.serving.catalog import Catalog, CatalogError, Resource, load_catalog
from pipelines.serving.governance_access import governance_rules
from pipelines.serving.pseudonyms import ensure_pseudonym_key
from pipelines.serving.tables import publishable_names, view_files
from pipelines.serving.trino import ADMIN_USER, CATALOG, base_rules, ensure_passwords, write_rules
from pipelines.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)
DELTA_HIDDEN_COLUMNS = ("$path", "$file_modified_time", "$file_size", "$partition")
PERSON_LIBRARY = "base.population"      # where a department's right to birth dates and genders is judged


def table_rule(decision: TableDecision, resource: Resource) -> dict:
    """One Trino table rule from one decision: denied columns hidden, masked
    ones replaced by their mask (ID masks read the pseudonym key as the
    administrator), the row filter if any."""
    schema, table = resource.resource_id.split(".", 1)
    columns = []
    for column in resource.columns:
        state = decision.columns[column.name].state
        if state == "denied":
            columns.append({"name": column.name, "allow": False})
        elif state == "masked":
            mask = {"name": column.name, "mask": mask_expression(column, decision.department)}
            if needs_key(column):
                mask["mask_environment"] = {"user": ADMIN_USER}
            columns.append(mask)
    # Lineage columns (_load_id, _source_file, ...) stay visible: they carry no personal data.
    rule = {"user": f"^{decision.user}$", "catalog": CATALOG, "schema": f"^{schema}$", "table": f"^{table}$",
            "privileges": ["SELECT"], "columns": columns}
    if decision.row_filter:
        rule["filter"] = decision.row_filter
    return rule


def base_views(views_dir: Path | None = None) -> dict[str, set[str]]:
    """Each view of ``sql/views/base/`` and the ``schema.table`` names it reads."""
    views_dir = views_dir or PROJECT_ROOT / "sql" / "views"
    return {view: {f"{schema}.{table}".lower() for schema, table in
                   re.findall(rf"\b{CATALOG}\.(\w+)\.(\w+)", path.read_text(encoding="utf-8"), flags=re.IGNORECASE)}
            for schema, view, path in view_files(views_dir) if schema == "base"}


def base_view_rules(user: str, readable: set[str]) -> list[dict]:
    """SELECT on each base view whose tables ``user`` reads, and nothing
    more: the views are ``security invoker``, so the tables' masks and row
    filters apply to the reader inside them; a view of a table the user
    cannot read stays closed."""
    return [{"user": f"^{re.escape(user)}$", "catalog": CATALOG, "schema": "^base$", "table": f"^{view}$",
             "privileges": ["SELECT"], "columns": []}
            for view, reads in sorted(base_views().items()) if reads and reads <= readable]


def build_rules(catalog: Catalog, on: date, owned: list[tuple[str, str]] = ()) -> dict:
    """Trino file-based access-control rules for every user and resource;
    ``owned``: the tables and views the administrator may register or create.
    Raises ``CatalogError`` naming the grants and columns when a grant
    combination would let a user undo a mask (``reversible_masks``)."""
    rules = base_rules(owned)
    tables = rules["tables"]
    problems = []
    for department in catalog.departments.values():
        for user in department.users:
            tables.extend(governance_rules(catalog, department, user))
            population = catalog.resources.get(PERSON_LIBRARY)
            person = decide(user, population, catalog.departments, catalog.grants, on) if population else None
            readable = set()
            for resource in catalog.resources.values():
                decision = decide(user, resource, catalog.departments, catalog.grants, on)
                if decision.readable:
                    problems += reversible_masks(decision, resource, person)
                    tables.append(table_rule(decision, resource))
                    readable.add(resource.resource_id)
            tables.extend(base_view_rules(user, readable))
    if problems:
        raise CatalogError("a mask could be undone:\n  " + "\n  ".join(problems))
    # Trino 476's file-based access control does not check table procedures
    # (ALTER TABLE ... EXECUTE optimize needs only SELECT), but Trino refuses
    # them on a table the user reads through a row filter: every department
    # reads through one, ``true`` where nothing else applies.
    for rule in tables:
        if rule.get("user") != f"^{ADMIN_USER}$" and rule.get("privileges") and "filter" not in rule:
            rule["filter"] = "true"
    # The Delta connector's hidden columns say which file a row is in and when that file was written:
    # an incremental build writes a changed key's row to a new file, so they would tell when a value
    # the user may not read changed (and version times are closed to such users for that reason).
    # Closed wherever a rule hides a column or rows; a user who reads a table whole learns nothing new.
    for rule in tables:
        if rule.get("user") != f"^{ADMIN_USER}$" and rule.get("privileges") and (
                rule.get("columns") or rule.get("filter") not in (None, "true")):
            named = {c["name"] for c in rule.setdefault("columns", [])}
            rule["columns"] += [{"name": name, "allow": False} for name in DELTA_HIDDEN_COLUMNS if name not in named]
    tables.append({"privileges": []})   # anything not granted above: nothing
    return rules


def compile_rules(settings: Settings | None = None, on: date | None = None) -> dict:
    """Validate the catalog and grants, then replace Trino's rules in one step.
    A bad grant raises before anything is written: the running rules stay.
    Grants are judged on ``on`` (default: ``settings.on_date()``)."""

    settings = settings or get_settings()
    on = on or settings.on_date()
    catalog = load_catalog(settings)
    if not settings.lake_is_local or settings.local_lake_path().exists():
        ensure_pseudonym_key(settings)   # before the rules: it is one of the tables they name
    rules = build_rules(catalog, on, publishable_names(settings))

    ensure_passwords(settings)
    path = write_rules(rules, settings)
    return {"rules": str(path), "table_rules": len(rules["tables"]), "grants": len(catalog.grants),
            "live_grants": sum(1 for g in catalog.grants if g.is_live(on)), "on": on.isoformat(),
            "users": sum(len(d.users) for d in catalog.departments.values())}
