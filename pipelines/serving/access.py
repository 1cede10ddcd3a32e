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
  under ``unmasked``. Masks cannot be undone: an ID number (or a USCC in an
  ID-or-USCC column) becomes the department's pseudonym of it (``pseudonym``:
  an HMAC under a key that only the administrator can read, the same for one
  department everywhere, different between departments), a phone keeps its
  first 3 and last 4 digits, other text becomes asterisks and other types null;
- a column that gives another away (provenance such as ``death_date_source``,
  ``known_to``, the record hash and version times) is shown no more than the
  strictest of the columns it follows; where a history table's version
  columns are hidden, only current versions are shown;
- ``reversible_masks`` finds grant combinations that would let a masked value
  be worked out from what is shown (a derived column masked while what it is
  derived from is shown in full; a full ID number beside a hidden birth date
  or gender), which ``compile_rules`` refuses;
- a value taken from a bureau's feed is that bureau's (``owner_bureau`` of the
  column): its owner reads it in full in a base library too, the library's
  curator only as the sharing list allows, and not-shared stays not-shared;
- a town government's users see only their town's rows unless every live
  grant they read the table under says ``row_scope: all``, and nothing of a
  table that has no town column to filter on;
- governors (``role: governor``) read the governance schema (``governance_rules``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pipelines.reference import TOWNS
from pipelines.serving.catalog import MASKED_TYPES, Department, Grant, Resource, load_catalog
from pipelines.serving.pseudonyms import PSEUDONYM_KEY_TABLE, VAULT_SCHEMA
from pipelines.serving.trino import ADMIN_USER, CATALOG
from pipelines.settings import Settings, get_settings

STATE_ORDER = ("full", "masked", "denied")
PHONE_MASK = "concat(substr({value}, 1, 3), '****', substr({value}, 8, 4))"     # keeps the first 3 and last 4
# What an 18-character ID number gives away about its holder (GB 11643):
# digits 7-14 are the birth date, the 17th the gender.
ID_NUMBER_REVEALS = ("birth_date", "gender")


@dataclass
class ColumnDecision:
    state: str          # full | masked | denied
    reason: str
    grant: str | None = None        # the grant (file:line) the column is read under, if any
    owned: bool = False             # shown because the reader's bureau owns the value


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


def pseudonym_expression(value_sql: str, department: str) -> str:
    """SQL for ``department``'s pseudonym of the ID in ``value_sql``: 'P' and 24
    hex digits of HMAC-SHA256(HMAC-SHA256(master key, department), value).
    The master key is a scalar subquery on ``vault.pseudonym_key``, read with
    the administrator's rights (the rule's ``mask_environment``): the plan
    shows the table's name, never the key. Null stays null."""
    key = (f"hmac_sha256(to_utf8('{department}'), "
           f"(select k.secret from {CATALOG}.{VAULT_SCHEMA}.{PSEUDONYM_KEY_TABLE} k))")
    return f"concat('P', substr(lower(to_hex(hmac_sha256(to_utf8(cast({value_sql} as varchar)), {key}))), 1, 24))"


def mask_expression(column, department: str | None = None) -> str:
    """The SQL that replaces ``column`` for a user it is masked for; ID numbers
    need the ``department`` whose pseudonym they become."""
    name = f'"{column.name}"'
    kind = MASKED_TYPES.get(column.type)
    if kind == "id_number":
        if not department:
            raise ValueError(f"masking ID column {column.name} needs the reader's department")
        return pseudonym_expression(name, department)
    if kind == "phone":
        return PHONE_MASK.format(value=name)
    if column.type in ("string", "code", "enum", "town_name", "town_code", "uscc"):
        return "'******'"
    return "null"


def needs_key(column) -> bool:
    """Does the mask of ``column`` read the pseudonym key (so its rule needs
    the administrator's ``mask_environment``)?"""
    return MASKED_TYPES.get(column.type) == "id_number"


def _town_filter(resource: Resource, department: Department) -> str | None:
    column = resource.town_column
    if column is None:
        return None
    value = department.town_code if column.type == "town_code" else TOWNS[department.town_code]
    return f"\"{column.name}\" = '{value}'"


def _strictest(*states: str) -> str:
    return max(states, key=STATE_ORDER.index)


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
    if department.bureau and department.bureau == resource.owner_bureau \
            and not any(c.owner_bureau not in (None, department.bureau) for c in resource.columns):
        decision.columns = {c.name: ColumnDecision("full", f"owner bureau {department.bureau}", owned=True)
                            for c in resource.columns}
        decision.reason = f"{department.name} owns {resource.resource_id}"
        return decision
    mine = [g for g in grants if g.department == department.code and g.resource == resource.resource_id]
    live = [g for g in mine if g.is_live(on)]
    expired = [g for g in mine if not g.is_live(on)]
    used: set[str] = set()
    for column in resource.columns:
        owner = column.owner_bureau or resource.owner_bureau
        if column.derived_from:         # computed from others' values: owned only by who owns them all
            owners = {resource.column(name).owner_bureau or resource.owner_bureau for name in column.derived_from}
            owner = owners.pop() if len(owners) == 1 else None
        if department.bureau and department.bureau == owner:
            decision.columns[column.name] = ColumnDecision("full", f"from a feed of {owner}, its owner",
                                                           owned=True)
            continue
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
        source = granting.source if granting else None
        if granting:
            used.add(granting.source)
        unmasked = granting is not None and column.name in granting.unmasked
        if column.sensitivity == "sensitive_personal" and not unmasked:
            decision.columns[column.name] = ColumnDecision("masked", f"{basis}; sensitive personal information",
                                                           source)
        else:
            decision.columns[column.name] = ColumnDecision("full", basis, source)
    for column in resource.columns:          # provenance is shown no more than what it gives away
        if not column.follows:
            continue
        if len(column.follows) == 1:         # X_source, X_load_id: read with X, under X's grant
            followed = decision.columns[column.follows[0]]
            decision.columns[column.name] = ColumnDecision(
                followed.state, f"where {column.follows[0]} came from: {followed.reason}", followed.grant,
                followed.owned)
            continue
        own = decision.columns[column.name]  # known_to, record_hash, ...: its own grant, and all it gives away
        state = _strictest(own.state, *(decision.columns[name].state for name in column.follows))
        if state != own.state:
            stricter = [name for name in column.follows if decision.columns[name].state == state]
            decision.columns[column.name] = ColumnDecision(
                state, f"gives away {', '.join(stricter[:3])}{' and others' if len(stricter) > 3 else ''}: "
                       f"{decision.columns[stricter[0]].reason}", own.grant)
    filters = []
    if department.town_code:
        scopes = {g.scope_for(department) for g in live if g.source in used}
        if not scopes or "own_town" in scopes:
            town = _town_filter(resource, department)
            if town is None:
                for name in decision.columns:
                    decision.columns[name] = ColumnDecision("denied", "town-scoped user; table has no town column")
                decision.reason = f"{department.name} is scoped to town {department.town_code}"
                return decision
            filters.append(town)
            decision.reason = f"rows of town {department.town_code} only"
        else:
            decision.reason = f"all towns' rows (row_scope: all in {', '.join(sorted(used))})"
    history = resource.column("is_current")
    if history is not None and resource.column("valid_from") is not None \
            and decision.columns["valid_from"].state != "full":
        filters.append('"is_current"')      # past versions would show when a hidden attribute changed
    if filters:
        decision.row_filter = filters[0] if len(filters) == 1 else " and ".join(f"({f})" for f in filters)
    if not decision.reason:
        decision.reason = "; ".join(sorted({g.source for g in live})) or "unconditional columns only"
    return decision


def reversible_masks(decision: TableDecision, resource: Resource,
                     person: TableDecision | None = None) -> list[str]:
    """Why a masked or hidden value of ``decision`` could be worked out from
    what it shows, one sentence per problem naming the grant and the columns;
    [] when there is none. ``person``: the same user's decision on the
    population library, which says whether a full ID number in a table
    without a birth date or gender column gives away ones the user is denied."""
    problems = []
    states = decision.columns

    def shown_under(name: str) -> str:
        grant = states[name].grant
        return f"grant {grant}" if grant else "the sharing list (unconditional)"

    for column in resource.columns:
        state = states[column.name].state
        if state != "masked" or not column.derived_from:    # a column not granted is simply not asked for
            continue
        # what the reader's own bureau delivered is its own to know: only what is shared counts
        full = [name for name in column.derived_from if states[name].state == "full" and not states[name].owned]
        if full:
            problems.append(
                f"{shown_under(full[0])} shows {', '.join(full)} of {resource.resource_id} to {decision.user} in full, "
                f"which gives away {column.name} ({state}): list {column.name} under unmasked, or do not "
                f"grant {', '.join(full)}")
    for column in resource.columns:
        if MASKED_TYPES.get(column.type) != "id_number" or column.type == "id_or_uscc" \
                or states[column.name].state != "full" or states[column.name].owned:
            continue
        hidden = {}
        for name in ID_NUMBER_REVEALS:
            if resource.column(name) is not None:
                if states[name].state != "full":
                    hidden[name] = states[name].state
            elif person is not None and name in person.columns and person.columns[name].state != "full":
                hidden[name] = f"{person.columns[name].state} in {person.resource}"
        if hidden:
            problems.append(
                f"{shown_under(column.name)} shows {column.name} of {resource.resource_id} to {decision.user} in "
                f"full, and an ID number gives away {', '.join(hidden)} "
                f"({', '.join(hidden.values())}): grant {', '.join(hidden)} too, or leave "
                f"{column.name} masked")
    return problems


def explain(user: str, resource_id: str, settings: Settings | None = None, on: date | None = None) -> TableDecision:
    catalog = load_catalog(settings)
    if resource_id not in catalog.resources:
        raise LookupError(f"no resource {resource_id}; resources: {', '.join(sorted(catalog.resources))}")
    on = on or (settings or get_settings()).on_date()
    return decide(user, catalog.resources[resource_id], catalog.departments, catalog.grants, on)
