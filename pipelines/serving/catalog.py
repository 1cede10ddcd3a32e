"""The data resource catalog (数据资源目录), departments and the sharing list (共享清单).

- **Resources**: one per published table. Core metadata after GB/T 21063 (name,
  code, provider, description, update cadence, format) and, per column, its
  classification (personal / sensitive personal / general), security grade after
  GB/T 43697 (core / important / general) and share type (无条件 unconditional /
  有条件 conditional / 不予共享 not shared), all defaulting from the feed contracts.
- **Departments** (``catalog/departments.yaml``): code, name, the bureau whose
  feeds it owns, its Trino users, and for town governments the town they serve.
- **Grants** (``catalog/grants/*.yaml``): department, resource, columns, purpose,
  legal basis, row scope, expiry, approver. A grant that names an unknown
  department, resource or column fails with the file and line.
"""

from __future__ import annotations

import dataclasses

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import yaml

from pipelines.contracts import Contract, load_contracts
from pipelines.library_specs import library_spec_paths, load_library_spec
from pipelines.settings import Settings, get_settings

SHARE_TYPE_LABEL = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}
CLASSIFICATION = {"sensitive_personal": "敏感个人信息", "personal": "个人信息", "general": "一般数据"}
# GB/T 43697-2024 grades; a city-wide register of sensitive personal
# information is "important data", other personal and general data "general".
SECURITY_GRADE = {"sensitive_personal": "important", "personal": "general", "general": "general"}
CADENCE_LABEL = {"hourly": "实时/每小时", "daily": "每日", "weekly": "每周", "monthly": "每月"}
SENSITIVITY_ORDER = ("general", "personal", "sensitive_personal")
MASKED_TYPES = {"id_number": "id_number", "id_or_uscc": "id_number", "phone": "phone"}


class CatalogError(ValueError):
    """A catalog or grant file is wrong; the message names the file and line."""


@dataclass
class ResourceColumn:
    name: str
    header: str
    type: str
    classification: str
    sensitivity: str
    security_grade: str
    share_type: str
    town_column: bool = False
    description: str = ""           # what the value is, where it comes from, when it is null
    # Columns whose values this one gives away, so it is shown no more than the
    # strictest of them: provenance (``death_date_source`` follows
    # ``death_date``; ``known_to``, ``record_hash`` and the version times follow
    # every attribute) and derived values (``is_deceased`` from ``death_date``).
    follows: list[str] = field(default_factory=list)
    # Columns this one is computed from (``catalog.columns.<name>.derived_from``
    # in a library spec): masking it while one of them is shown in full is a
    # mask that can be undone, and ``access compile`` refuses it.
    derived_from: list[str] = field(default_factory=list)
    # The bureau whose feed the value comes from, where that is not the
    # resource's owner (a base library's attributes): that bureau reads it in
    # full; the library's curator reads it only as the sharing list allows.
    owner_bureau: str | None = None


@dataclass
class Resource:
    resource_id: str            # <schema>.<table> as published in Trino
    code: str                   # resource code (GB/T 21063 style)
    name: str
    provider: str               # owner bureau name
    owner_bureau: str
    description: str
    update_cadence: str
    format: str
    columns: list[ResourceColumn] = field(default_factory=list)

    def column(self, name: str) -> ResourceColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    def value_owners(self, name: str) -> set[str]:
        """The bureaus whose data column ``name`` holds or gives away: its own
        feed's bureau, or for a derived or provenance column those of the
        columns it is computed from or follows."""
        column = self.column(name)
        basis = column.derived_from or column.follows
        if basis and name not in basis:
            return set().union(*(self.value_owners(other) for other in basis))
        return {column.owner_bureau or self.owner_bureau}

    @property
    def town_column(self) -> ResourceColumn | None:
        return next((c for c in self.columns if c.town_column), None)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Department:
    code: str
    name: str
    bureau: str | None
    town_code: str | None
    users: list[str]
    role: str = "department"        # department | governor


@dataclass
class Grant:
    department: str
    resource: str
    columns: list[str]
    purpose: str
    legal_basis: str
    expires: date
    approver: str
    row_scope: str | None = None    # all | own_town | None: the department's default (own_town for a town)
    unmasked: list[str] = field(default_factory=list)
    source: str = ""                # file:line
    consent: list[str] = field(default_factory=list)    # the owning bureaus' consents, from an approved request

    def is_live(self, on: date) -> bool:
        return self.expires >= on

    def scope_for(self, department: Department) -> str:
        """The row scope this grant gives ``department``: as written, else own
        town for a town government and all rows for anyone else."""
        return self.row_scope or ("own_town" if department.town_code else "all")


def resource_code(provider: str, name: str) -> str:
    """A resource's code, from its provider and name only, so adding a feed or
    a library never renumbers the others (``DG-PSB-RESIDENCE-PERMIT``)."""
    return f"DG-{provider}-{name}".upper().replace("_", "-")


def resources_from_contracts(contracts: dict[str, Contract] | None = None) -> dict[str, Resource]:
    """One resource per feed's silver table, its metadata from the contract."""
    contracts = contracts or load_contracts()
    found = {}
    for feed, contract in sorted(contracts.items()):
        resource_id = f"silver.{contract.slug}"
        found[resource_id] = Resource(
            resource_id=resource_id, code=resource_code(contract.bureau, contract.feed_name),
            name=contract.title, provider=contract.owner_bureau_name, owner_bureau=contract.bureau,
            description=contract.grain, update_cadence=CADENCE_LABEL.get(contract.cadence, contract.cadence),
            format="Delta Lake table via Trino (catalog lake)",
            columns=[ResourceColumn(
                name=c.name, header=c.header, type=c.type, classification=CLASSIFICATION[c.sensitivity],
                sensitivity=c.sensitivity, security_grade=SECURITY_GRADE[c.sensitivity],
                share_type=c.default_share_type, town_column=c.type in ("town_code", "town_name"))
                for c in contract.columns])
    return found


PLATFORM_BUREAU = "dsj"            # 市政务服务数据管理局 curates the base libraries
HISTORY_COLUMNS = (
    ("record_hash", "integer", "64-bit hash (xxhash64) of the record's attributes (not provenance): a new version "
                               "only when it changes"),
    ("valid_from", "timestamp", "the build that opened this version"),
    ("valid_to", "timestamp", "the build that closed this version; null while current"),
    ("is_current", "boolean", "true for the current version of the record"))


def _words(text) -> str:
    """A spec's rule text on one line."""
    return " ".join(str(text or "").split())


def attribute_rule(spec, attribute) -> str:
    """What a golden attribute is, where it comes from and when it is null:
    the spec's ``rule:`` if it states one, else said from its sources."""
    if attribute.rule:
        return _words(attribute.rule)
    sources = [f"{alias}.{column}" for alias, column in attribute.sources]
    if not sources:
        return "null: no source declared"
    mapped = f", mapped {', '.join(f'{k} -> {v}' for k, v in attribute.values.items())}" if attribute.values else ""
    if len(sources) == 1:
        return f"{sources[0]}{mapped} (the latest record per key); null when it has no value"
    return (f"the first of {', '.join(sources)} (in order of authority, the latest record of each) that has a "
            f"value{mapped}; null when none has one")


def _golden_descriptions(spec) -> dict[str, str]:
    authority = ", ".join(spec.sources[a].feed for a in spec.authoritative_sources) or "none"
    found = {spec.key: f"the validated key; one current row per {spec.key}",
             "known_to": "the feeds with a record of this key",
             "is_known_to_authority": f"true when an authoritative source ({authority}) has a record of this key"}
    for attribute in spec.attributes:
        found[attribute.name] = attribute_rule(spec, attribute)
        found[f"{attribute.name}_source"] = (
            f"the feed {attribute.name} came from" + (" (id_number: the key itself)" if attribute.from_key else "")
            + "; null when it is null")
        found[f"{attribute.name}_load_id"] = f"the delivery (load_id) {attribute.name} came from"
    return found


def resources_from_libraries(settings: Settings | None = None,
                             contracts: dict[str, Contract] | None = None) -> dict[str, Resource]:
    """One resource per base library. A golden library's columns take their
    classification from the contract column of their authoritative source;
    computed and derived columns declare theirs under ``catalog.columns`` in
    the library spec (a bare sensitivity, or ``{sensitivity, type, rule}``).
    Every column carries a description: the ``rule:`` text of a computed
    column, an attribute's rule (``attribute_rule``), or what a provenance or
    history column means."""

    settings = settings or get_settings()
    contracts = contracts or load_contracts(settings.schemas_dir)
    found = {}
    same: dict[str, dict[str, str]] = {}            # resource -> column -> "library.column" it is the same as
    for path in library_spec_paths(settings):
        spec = load_library_spec(path.stem, settings)
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        meta = document.get("catalog") or {}
        columns: list[tuple[str, str, str, list[str]]] = []          # name, type, sensitivity, follows
        derived: dict[str, list[str]] = {}
        # a value taken from a bureau's feed stays that bureau's: its owner reads it
        # in full, and a column it does not share (不予共享) is not shared here either
        origins: dict[str, tuple[str, str]] = {}                       # name -> (bureau, share type)
        descriptions = _golden_descriptions(spec) if spec.kind == "golden" else {}

        def source_column(alias: str, column: str):
            contract = contracts.get(spec.sources[alias].feed)
            return contract.column(column) if contract else None

        attributes: list[str] = []
        if spec.kind == "golden":
            first = next(iter(spec.sources))
            key_column = source_column(first, spec.sources[first].key)
            columns.append((spec.key, key_column.type if key_column else "code",
                            key_column.sensitivity if key_column else "general", []))
            if key_column:
                origins[spec.key] = (contracts[spec.sources[first].feed].bureau, key_column.default_share_type)
            attributes = [attribute.name for attribute in spec.attributes]
            authoritative = {spec.sources[a].feed for a in spec.authoritative_sources}
            for attribute in spec.attributes:
                origin = source_column(*attribute.sources[0]) if attribute.sources else None
                sensitivity = origin.sensitivity if origin else "general"
                # Where a value came from says whether there is one, and names a
                # feed that holds the person: beyond the authority's feeds, that is
                # what known_to says (a name taken from mca.death says who died).
                feeds = {spec.sources[alias].feed for alias, _ in attribute.sources}
                follows = [attribute.name] if len(feeds) <= 1 or feeds <= authoritative else list(attributes)
                columns += [(attribute.name, origin.type if origin else "string", sensitivity, []),
                            (f"{attribute.name}_source", "code", sensitivity, follows),
                            (f"{attribute.name}_load_id", "code", sensitivity, follows)]
                if origin:
                    feed = spec.sources[attribute.sources[0][0]].feed
                    for name in (attribute.name, f"{attribute.name}_source", f"{attribute.name}_load_id"):
                        origins[name] = (contracts[feed].bureau, origin.default_share_type)
            strictest = max((c[2] for c in columns), key=SENSITIVITY_ORDER.index)
            # which feeds know a person says who died or married: as strict as every attribute
            columns += [("known_to", "array", strictest, list(attributes)),
                        ("is_known_to_authority", "boolean", "general", [])]
        for name, declared in (meta.get("columns") or {}).items():
            declared = {"sensitivity": declared} if isinstance(declared, str) else dict(declared)
            if declared.get("same_as"):
                same.setdefault(f"base.{spec.library}", {})[name] = str(declared["same_as"])
            derived[name] = list(declared.get("derived_from") or [])
            columns.append((name, declared.get("type", "string"), declared.get("sensitivity", "general"), []))
            descriptions[name] = _words(declared.get("rule"))
        if spec.kind == "golden":
            strictest = max((c[2] for c in columns), key=SENSITIVITY_ORDER.index)
            everything = attributes + list(derived)      # the attributes and the computed columns
            # the record hash is a hash of every attribute, and a new version (its
            # valid_from) says one of them changed: as strict as all of them
            columns += [(name, kind, strictest if name != "is_current" else "general",
                         list(everything) if name != "is_current" else [])
                        for name, kind, _ in HISTORY_COLUMNS]
        else:
            # a derived record's hash covers every column: as strict as the strictest (a hash of a masked
            # ID is a brute-force away from it); its version times say when any of them changed
            strictest = max((c[2] for c in columns), key=SENSITIVITY_ORDER.index, default="general")
            declared_names = list(derived)
            columns += [(name, kind, strictest if name != "is_current" else "general",
                         declared_names if name != "is_current" and strictest != "general" else [])
                        for name, kind, _ in HISTORY_COLUMNS]
        descriptions |= {name: text for name, _, text in HISTORY_COLUMNS}
        town_column = meta.get("town_column")
        resource_id = f"base.{spec.library}"
        known = {c[0] for c in columns}
        for name, derived_from in derived.items():
            unknown = [f for f in derived_from if f not in known]
            if unknown:
                raise CatalogError(f"schemas/libraries/{path.name}: catalog.columns.{name}.derived_from names "
                                   f"no column of {resource_id}: {', '.join(unknown)}")
        found[resource_id] = Resource(
            resource_id=resource_id, code=resource_code("BASE", spec.library), name=meta.get("title", spec.library),
            provider="市政务服务数据管理局", owner_bureau=PLATFORM_BUREAU, description=spec.grain,
            update_cadence=CADENCE_LABEL.get(meta.get("cadence", "daily"), "每日"),
            format="Delta Lake table via Trino (catalog lake)",
            columns=[ResourceColumn(
                name=name, header=name, type=kind, classification=CLASSIFICATION[sensitivity],
                sensitivity=sensitivity, security_grade=SECURITY_GRADE[sensitivity],
                share_type=origins[name][1] if name in origins else
                ("conditional" if sensitivity != "general" else "unconditional"),
                owner_bureau=origins[name][0] if name in origins else None,
                town_column=name == town_column, description=descriptions.get(name, ""), follows=follows,
                derived_from=derived.get(name, []))
                for name, kind, sensitivity, follows in columns])
    return _same_as(found, same)


def _same_as(found: dict[str, Resource], same: dict[str, dict[str, str]]) -> dict[str, Resource]:
    """Columns declared ``same_as: <library>.<column>`` (an application
    library carrying another library's value, e.g. the enterprise profile's
    legal representative): the type, classification, share type and owning
    bureau of that column, so the value is shared exactly as it is there,
    and its description; what it is computed from stays within its own
    table (its ``derived_from`` and ``follows`` as declared here)."""
    def resolve(resource_id: str, name: str, trail: tuple[str, ...]) -> ResourceColumn:
        shown = f"schemas/libraries/{resource_id.removeprefix('base.')}.yaml: catalog.columns.{name}.same_as"
        resource = found[resource_id]
        mine = resource.column(name)
        target = same.get(resource_id, {}).get(name)
        if target is None:
            return mine
        if f"{resource_id}.{name}" in trail:
            raise CatalogError(f"{shown}: a cycle ({' -> '.join(trail + (f'{resource_id}.{name}',))})")
        library, _, column = target.partition(".")
        other = found.get(f"base.{library}")
        if other is None or other.column(column) is None:
            raise CatalogError(f"{shown}: base.{library} has no column {column!r}")
        origin = resolve(other.resource_id, column, trail + (f"{resource_id}.{name}",))   # that one may be a same_as
        chained = column in same.get(other.resource_id, {})
        owners = {origin.owner_bureau or other.owner_bureau} if chained else other.value_owners(column)
        if len(owners) != 1:
            raise CatalogError(f"{shown}: base.{library}.{column} holds several bureaus' values ({sorted(owners)}); "
                               "declare the column's classification instead")
        # owned as there, whether it came from its own feed or from what it is derived from
        owner = next(iter(owners))
        return dataclasses.replace(
            origin, name=name, header=name, town_column=mine.town_column, follows=mine.follows,
            derived_from=mine.derived_from, owner_bureau=None if owner == resource.owner_bureau else owner,
            description=mine.description or f"As base.{library}.{column}"
            + (f": {origin.description}" if origin.description else "."))

    resolved = {resource_id: {name: resolve(resource_id, name, ()) for name in columns}
                for resource_id, columns in same.items()}
    for resource_id, columns in resolved.items():
        resource = found[resource_id]
        resource.columns = [columns.get(c.name, c) for c in resource.columns]
        # the record hash and version times follow every column: as strict as the strictest now resolved
        history = {name for name, _, _ in HISTORY_COLUMNS} - {"is_current"}
        strictest = max((c.sensitivity for c in resource.columns if c.name not in history),
                        key=SENSITIVITY_ORDER.index)
        if strictest != "general":
            everything = [c.name for c in resource.columns if c.name not in history | {"is_current"}]
            resource.columns = [dataclasses.replace(
                c, sensitivity=strictest, classification=CLASSIFICATION[strictest],
                security_grade=SECURITY_GRADE[strictest], share_type="conditional", follows=everything)
                if c.name in history and SENSITIVITY_ORDER.index(c.sensitivity) < SENSITIVITY_ORDER.index(strictest)
                else c for c in resource.columns]
    return found


def load_departments(settings: Settings | None = None) -> dict[str, Department]:
    settings = settings or get_settings()
    path = Path(settings.catalog_dir) / "departments.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    departments = {}
    for item in document.get("departments", []):
        departments[item["code"]] = Department(
            code=item["code"], name=item["name"], bureau=item.get("bureau"), town_code=item.get("town_code"),
            users=[u["name"] for u in item.get("users", [])], role=item.get("role", "department"))
    return departments


def _line_of(node, key: str) -> int:
    for key_node, value_node in node.value:
        if key_node.value == key:
            return value_node.start_mark.line + 1
    return node.start_mark.line + 1


def load_grants(resources: dict[str, Resource], departments: dict[str, Department],
                settings: Settings | None = None) -> list[Grant]:
    """Every grant, validated against the catalog; errors name file and line."""
    settings = settings or get_settings()
    grants = []
    for path in sorted((Path(settings.catalog_dir) / "grants").glob("*.yaml")):
        shown = f"catalog/grants/{path.name}"
        text = path.read_text(encoding="utf-8")
        try:
            root = yaml.compose(text)
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise CatalogError(f"{shown}: not valid YAML: {exc}") from None
        items = document.get("grants", [])
        nodes = next((v for k, v in root.value if k.value == "grants"), None).value if items else []
        for item, node in zip(items, nodes):
            where = f"{shown}:{node.start_mark.line + 1}"
            missing = [k for k in ("department", "resource", "columns", "purpose", "legal_basis", "expires",
                                   "approver") if k not in item]
            if missing:
                raise CatalogError(f"{where}: grant is missing {', '.join(missing)}")
            if item["department"] not in departments:
                raise CatalogError(f"{shown}:{_line_of(node, 'department')}: unknown department "
                                   f"{item['department']!r} (known: {', '.join(sorted(departments))})")
            resource = resources.get(item["resource"])
            if resource is None:
                raise CatalogError(f"{shown}:{_line_of(node, 'resource')}: unknown resource {item['resource']!r}")
            for column in list(item["columns"]) + list(item.get("unmasked", [])):
                if resource.column(column) is None:
                    raise CatalogError(f"{shown}:{_line_of(node, 'columns')}: {item['resource']} has no column "
                                       f"{column!r}")
            scope = item.get("row_scope")
            if scope not in (None, "all", "own_town"):
                raise CatalogError(f"{shown}:{_line_of(node, 'row_scope')}: row_scope must be all or own_town")
            if scope == "own_town" and not departments[item["department"]].town_code:
                raise CatalogError(f"{shown}:{_line_of(node, 'row_scope')}: row_scope own_town, but department "
                                   f"{item['department']} serves no town (it has no town_code)")
            if not isinstance(item["expires"], date):
                raise CatalogError(f"{shown}:{_line_of(node, 'expires')}: expires must be a date (YYYY-MM-DD)")
            grants.append(Grant(
                department=item["department"], resource=item["resource"], columns=list(item["columns"]),
                purpose=item["purpose"], legal_basis=item["legal_basis"], expires=item["expires"],
                approver=item["approver"], row_scope=scope, unmasked=list(item.get("unmasked", [])),
                source=where, consent=list(item.get("consent") or [])))
    return grants


@dataclass
class Catalog:
    resources: dict[str, Resource]
    departments: dict[str, Department]
    grants: list[Grant]


def load_catalog(settings: Settings | None = None) -> Catalog:
    """Resources, departments and grants, validated together (raises CatalogError)."""
    settings = settings or get_settings()

    contracts = load_contracts(settings.schemas_dir)
    resources = resources_from_contracts(contracts) | resources_from_libraries(settings, contracts)
    departments = load_departments(settings)
    grants = load_grants(resources, departments, settings)
    return Catalog(resources, departments, grants)
