"""Sharing rules compiled into Trino's file-based access control.

One decision function (``decide``) says, for a user and a resource, which
columns the user sees in full, sees masked or cannot see, which row filter
applies, and why. ``compile_rules`` turns every decision into Trino rules;
``explain`` prints it for one user and table (``govlake access check``).

The rules, from the sharing list:
- the owner bureau's users see their own tables in full; the platform
  administrator sees everything; nobody writes data through Trino;
- unconditional (无条件) columns are readable by every department;
- conditional (有条件) columns only with a live grant that lists them (an
  expired grant counts as none);
- not-shared (不予共享) columns by nobody but the owner and administrators;
- sensitive personal information is masked unless the grant lists the column
  under ``unmasked``: ID numbers as first 6 + last 4, phones as first 3 + last 4,
  other text as asterisks; masks keep the column's type;
- a town government's users see only their town's rows, and nothing of a table
  that has no town column to filter on;
- governors (``role: governor``) read the governance schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pipelines.reference import TOWNS
from pipelines.serving.catalog import MASKED_TYPES, Department, Grant, Resource, load_catalog
from pipelines.serving.trino import ADMIN_USER
from pipelines.settings import Settings


@dataclass
class ColumnDecision:
    state: str          # full | masked | denied
    reason: str


@dataclass
class TableDecision:
    user: str
    department: str | None
    resource: str
    columns: dict[str, ColumnDecision] = field(default_factory=dict)
    row_filter: str | None = None
    reason: str = ""

    @property
    def readable(self) -> bool:
        return any(c.state != "denied" for c in self.columns.values())


def mask_expression(column) -> str:
    name = f'"{column.name}"'
    kind = MASKED_TYPES.get(column.type)
    if kind == "id_number":
        return f"concat(substr({name}, 1, 6), '********', substr({name}, 15, 4))"
    if kind == "phone":
        return f"concat(substr({name}, 1, 3), '****', substr({name}, 8, 4))"
    if column.type in ("string", "code", "enum", "town_name", "town_code", "uscc"):
        return "'******'"
    return "null"


def _row_filter(resource: Resource, department: Department) -> str | None:
    column = resource.town_column
    if column is None:
        return None
    value = department.town_code if column.type == "town_code" else TOWNS[department.town_code]
    return f"\"{column.name}\" = '{value}'"


def decide(user: str, resource: Resource, departments: dict[str, Department], grants: list[Grant],
           on: date) -> TableDecision:
    """What ``user`` may see of ``resource`` on date ``on``, column by column, and why."""
    department = next((d for d in departments.values() if user in d.users), None)
    decision = TableDecision(user, department.code if department else None, resource.resource_id)
    if user == ADMIN_USER:
        decision.columns = {c.name: ColumnDecision("full", "platform administrator") for c in resource.columns}
        decision.reason = "platform administrator"
        return decision
    if department is None:
        decision.columns = {c.name: ColumnDecision("denied", "user belongs to no department")
                            for c in resource.columns}
        decision.reason = "unknown user"
        return decision
    if department.bureau and department.bureau == resource.owner_bureau:
        decision.columns = {c.name: ColumnDecision("full", f"owner bureau {department.bureau}")
                            for c in resource.columns}
        decision.reason = f"{department.name} owns {resource.resource_id}"
        return decision
    mine = [g for g in grants if g.department == department.code and g.resource == resource.resource_id]
    live = [g for g in mine if g.is_live(on)]
    expired = [g for g in mine if not g.is_live(on)]
    for column in resource.columns:
        granting = next((g for g in live if column.name in g.columns), None)
        if column.share_type == "not_shared":
            decision.columns[column.name] = ColumnDecision("denied", "不予共享: not shared outside the owner bureau")
            continue
        if column.share_type == "conditional" and granting is None:
            lapsed = next((g for g in expired if column.name in g.columns), None)
            why = (f"有条件共享: grant {lapsed.source} expired on {lapsed.expires}" if lapsed
                   else "有条件共享: no live grant lists this column")
            decision.columns[column.name] = ColumnDecision("denied", why)
            continue
        basis = (f"grant {granting.source} (expires {granting.expires})" if granting
                 else "无条件共享: unconditional")
        unmasked = granting is not None and column.name in granting.unmasked
        if column.sensitivity == "sensitive_personal" and not unmasked:
            decision.columns[column.name] = ColumnDecision("masked", f"{basis}; sensitive personal information")
        else:
            decision.columns[column.name] = ColumnDecision("full", basis)
    if department.town_code:
        row_filter = _row_filter(resource, department)
        if row_filter is None:
            for name in decision.columns:
                decision.columns[name] = ColumnDecision("denied", "town-scoped user; table has no town column")
            decision.reason = f"{department.name} is scoped to town {department.town_code}"
        else:
            decision.row_filter = row_filter
            decision.reason = f"rows of town {department.town_code} only"
    if not decision.reason:
        decision.reason = "; ".join(sorted({g.source for g in live})) or "unconditional columns only"
    return decision


def explain(user: str, resource_id: str, settings: Settings | None = None, on: date | None = None) -> TableDecision:
    catalog = load_catalog(settings)
    if resource_id not in catalog.resources:
        raise LookupError(f"no resource {resource_id}; resources: {', '.join(sorted(catalog.resources))}")
    return decide(user, catalog.resources[resource_id], catalog.departments, catalog.grants, on or date.today())
