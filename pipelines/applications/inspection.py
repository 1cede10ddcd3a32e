"""The "double random, one public" inspection draw (双随机一公开) on "one list,
two rosters" (一单两库).

- **The list** (随机抽查事项清单): an inspection plan,
  ``schemas/inspections/<plan>.yaml`` (``load_plan``): items with their legal
  basis, the entities in scope, a sampling ratio per credit grade and the
  number of inspectors per entity.
- **The rosters**: market entities and social organisations in operation
  from ``base.legal_person`` with their ``base.credit_rating`` grade
  (市场主体名录库); inspectors from ``amr.inspector`` (执法检查人员名录库, the
  latest snapshot in silver).
- **Sampling**: per item and grade, the entities in scope are ranked by
  ``sha256("<seed>|<plan>|<item>|<uscc>")`` and the first
  ``ceil(N × ratio)`` are drawn: the ratio exactly as written (a decimal, so
  3% of 100 is 3, not 4), rounded up so that a grade with entities in scope
  and a ratio above 0 is never skipped ("不少于"). A hash rank, not a
  pseudo-random stream: anyone can recompute a draw from its record with any
  tool (SQL included), and Python does not promise ``random``'s streams
  across versions.
- **Assignment**: item by item, entity by entity in drawn order, each gets
  ``inspectors_per_entity`` inspectors: the least loaded so far in this
  draw, and among the equally loaded the first by
  ``sha256("<seed>|<plan>|<item>|<uscc>|<certificate>")``, of those
  qualified: on duty (在岗), of the plan's department or one of its branches
  (a department whose name starts with the plan's), of the item's
  enforcement category or 综合; not recused for the entity; not one of the
  entity's inspectors in its previous draw or its last inspection on record
  (``amr.inspection_result``), nor already assigned to it in this one
  ("nobody inspects the same entity twice in a row"); below the plan's cap
  of inspections per inspector.
- **Recusal** (回避): an inspector is never assigned an entity whose legal
  representative is the inspector or a member of their household (the same
  户号 in ``base.population``), nor their employer (``employer_uscc``, from
  social insurance). ``recusals_of`` says which and why.
- A shortfall anywhere (an entity left with fewer qualified, unconflicted
  inspectors than the item needs) fails the whole draw naming the item and
  the shortfall; nothing is written.
- **The record** (``governance.inspection_draws``, one row per draw): the
  plan's text, the seed, the Delta version of every input and the digest of
  the result; ``governance.inspection_assignments`` holds the result, one row
  per entity and inspector. ``verify_draw`` re-reads the inputs at the
  recorded versions, draws again and compares the digest.

The draw itself (``draw_plan``) is pure: it takes the rosters as plain values
and returns the result, so it is tested on a few inline rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipelines import reference as ref
from pipelines.contracts import Strict, display_path, format_validation_error, get_contract
from pipelines.lake.delta import append_rows, read_arrow_at, read_delta_rows
from pipelines.lake.paths import governance_path, state_lock, table_path
from pipelines.lake.tables import INSPECTION_ASSIGNMENTS_DDL, INSPECTION_DRAWS_DDL
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)

GRADES = ("A", "B", "C", "D")
DEPARTMENT_ENDINGS = ("局", "委员会", "办公室", "中心")
SEED_MAX = 2**63 - 1                # the record's seed is a Delta long
# the draw's rules as this code implements them; recorded with every draw, and a
# draw made under another is not re-drawn by this code (bump it with any change
# to draw_plan, in_scope, recusals_of, last_inspectors or the inputs read)
ALGORITHM = "2026.12"
CITY_TIME = ZoneInfo("Asia/Shanghai")   # dates people read (the notice's) are the city's
GENERAL_CATEGORY = "综合"          # an inspector of every enforcement category
ON_DUTY = "在岗"
# registration statuses of an entity that is not inspected: gone, or moved out of the city
NOT_OPERATING = (*ref.DEREGISTERED, "迁出")


class PlanError(ValueError):
    """An inspection plan that does not load; the message names the file and field."""


class DrawShortfall(RuntimeError):
    """Too few qualified, unconflicted inspectors for some item: nothing was drawn."""


class DrawNotReproduced(RuntimeError):
    """Drawing again from a draw's record gave another result."""


class DrawNotReproducible(RuntimeError):
    """A draw's recorded inputs can no longer be read (VACUUM removed their versions)."""


class DrawRefused(RuntimeError):
    """A draw that may not be made as asked (the plan has a draw in force)."""


class RosterError(ValueError):
    """The inspectors' roster contradicts itself: no draw until it is corrected."""


def _contract_values(feed: str, column: str) -> tuple[str, ...]:
    return get_contract(feed).column(column).values


# a plan's or an item's name: lowercase words and digits joined by hyphens (it goes into draw ids and DAG ids)
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class InspectionScope(Strict):
    """Which entities an item applies to; every list given must match (an
    empty or missing list does not restrict). Industry codes match as
    prefixes (``C39`` takes C3911)."""

    industry_sections: tuple[str, ...] = ()
    industry_codes: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()
    towns: tuple[str, ...] = ()
    licence_types: tuple[str, ...] = ()

    @field_validator("industry_sections")
    @classmethod
    def _sections(cls, values):
        return _known(values, ref.INDUSTRY_SECTIONS, "industry section",
                      f"GB/T 4754: {', '.join(ref.INDUSTRY_SECTIONS)}")

    @field_validator("industry_codes")
    @classmethod
    def _codes(cls, values):
        for value in values:
            if not re.fullmatch(r"[A-T][0-9]{2,4}", value) or value[0] not in ref.INDUSTRY_SECTIONS:
                raise ValueError(f"unknown industry code {value!r} (a GB/T 4754 section letter and 2 to 4 digits: "
                                 "a division, group or class)")
        return values

    @field_validator("entity_types")
    @classmethod
    def _entity_types(cls, values):
        known = (_contract_values("amr.business_registration", "entity_type")
                 + _contract_values("mca.social_org", "organisation_type"))
        return _known(values, known, "entity type", ", ".join(known))

    @field_validator("towns")
    @classmethod
    def _towns(cls, values):
        return _known(values, ref.TOWN_CODE_BY_NAME, "town", f"one of the city's {len(ref.TOWNS)} town names")

    @field_validator("licence_types")
    @classmethod
    def _licence_types(cls, values):
        return _known(values, ref.LICENCE_TYPES, "licence type", ", ".join(ref.LICENCE_TYPES))


def _known(values: tuple[str, ...], known, what: str, hint: str) -> tuple[str, ...]:
    """``values`` when each is one of ``known``; else the field's error naming the first that is not."""
    for value in values:
        if value not in known:
            raise ValueError(f"unknown {what} {value!r} ({hint})")
    return values


class InspectionItem(Strict):
    """One item of the list (抽查事项)."""

    item: Slug
    title: str
    legal_basis: str
    enforcement_category: str
    scope: InspectionScope = InspectionScope()
    sampling_ratio: dict[str, Decimal]
    # 行政处罚法 第四十二条: no fewer than two enforcement officers at an inspection
    inspectors_per_entity: Annotated[int, Field(ge=2, le=5)] = 2

    @field_validator("enforcement_category")
    @classmethod
    def _category(cls, value):
        known = _contract_values("amr.inspector", "enforcement_category")
        return _known((value,), known, "enforcement category", ", ".join(known))[0]

    @field_validator("sampling_ratio", mode="before")
    @classmethod
    def _exact_ratios(cls, value):
        # through str: the YAML float 0.03 is the decimal 0.03, not 0.0299999...
        if not isinstance(value, dict):
            return value
        ratios = {}
        for grade, ratio in value.items():
            if isinstance(ratio, bool) or not isinstance(ratio, int | float | str):
                raise ValueError(f"grade {grade}: ratio {ratio!r} is not a number")
            try:
                ratios[grade] = Decimal(str(ratio))
            except InvalidOperation:
                raise ValueError(f"grade {grade}: ratio {ratio!r} is not a number") from None
            if not ratios[grade].is_finite():
                raise ValueError(f"grade {grade}: ratio {ratio!r} is not a number")
        return ratios

    @field_validator("sampling_ratio")
    @classmethod
    def _ratios(cls, value):
        for grade, ratio in value.items():
            if grade not in GRADES:
                raise ValueError(f"unknown grade {grade!r} ({', '.join(GRADES)})")
            if not 0 <= ratio <= 1:
                raise ValueError(f"grade {grade}: ratio {ratio} is not between 0 and 1")
        missing = [grade for grade in GRADES if grade not in value]
        if missing:
            raise ValueError(f"no ratio for grade {', '.join(missing)} (give every grade one; 0 draws none)")
        return value


class InspectionPlan(Strict):
    """An inspection plan (抽查计划): the list for one period."""

    plan: Slug
    title: str
    department: str
    period: dict[str, date]
    max_inspections_per_inspector: Annotated[int, Field(ge=1)]
    items: Annotated[tuple[InspectionItem, ...], Field(min_length=1)]
    text: str = ""               # the file's text, as recorded with every draw

    @field_validator("department")
    @classmethod
    def _department(cls, value):
        # inspectors qualify by department name prefix (branches included): a vague name would admit any
        if len(value) < 4 or not value.endswith(DEPARTMENT_ENDINGS):
            raise ValueError(f"department {value!r}: give the department's full name (ending in "
                             f"{'/'.join(DEPARTMENT_ENDINGS)}); its branches' inspectors qualify too")
        return value

    @field_validator("period")
    @classmethod
    def _period(cls, value):
        if set(value) != {"start", "end"}:
            raise ValueError("give start and end")
        if value["end"] < value["start"]:
            raise ValueError(f"ends ({value['end']}) before it starts ({value['start']})")
        return value

    @model_validator(mode="after")
    def _unique_items(self):
        seen: set[str] = set()
        for item in self.items:
            if item.item in seen:
                raise ValueError(f"item {item.item!r} appears twice")
            seen.add(item.item)
        return self


def parse_plan(text: str, shown: str) -> InspectionPlan:
    """A plan from its YAML ``text``; ``PlanError`` naming ``shown`` and the field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError(f"{shown}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise PlanError(f"{shown}: expected a mapping at the top level")
    if "text" in document:
        raise PlanError(f"{shown}: text: unknown field")
    try:
        return InspectionPlan.model_validate({**document, "text": text})
    except ValidationError as exc:
        raise PlanError(format_validation_error(shown, exc)) from None


def plan_path(plan: str, settings: Settings) -> Path:
    """A plan's file: ``plan`` as a path to a YAML file, or the name of one
    under ``schemas/inspections/``."""
    given = Path(plan)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    path = Path(settings.schemas_dir) / "inspections" / f"{plan}.yaml"
    if not path.is_file():
        known = [p.stem for p in plan_paths(settings)]
        raise PlanError(f"no inspection plan {plan!r}: known are {', '.join(known) or 'none'} "
                        f"(schemas/inspections/), or give a YAML file")
    return path


def plan_paths(settings: Settings) -> list[Path]:
    """Every plan file under ``schemas/inspections/``."""
    return sorted((Path(settings.schemas_dir) / "inspections").glob("*.yaml"))


def load_plan(plan: str, settings: Settings) -> InspectionPlan:
    """The plan ``plan`` names (a registered name or a file). A file outside
    ``schemas/inspections/`` may not carry the name of a registered plan
    unless its text is that plan's: a draw recorded under a plan's name is a
    draw of that plan."""
    path = plan_path(plan, settings)
    text = path.read_text(encoding="utf-8")
    plan_obj = parse_plan(text, display_path(path))
    registered = Path(settings.schemas_dir) / "inspections" / f"{plan_obj.plan}.yaml"
    if path.resolve().parent == registered.parent.resolve():
        if plan_obj.plan != path.stem:
            raise PlanError(f"{display_path(path)}: plan: {plan_obj.plan!r} does not match its file name "
                            f"({path.stem!r})")
    elif registered.is_file() and registered.read_text(encoding="utf-8") != text:
        raise PlanError(f"{display_path(path)}: plan: {plan_obj.plan!r} is the name of a registered plan "
                        f"({display_path(registered)}) and this file is not its text: rename the plan")
    return plan_obj


# ---------------------------------------------------------------- the rosters, as plain values

@dataclass(frozen=True)
class RosterEntity:
    """A market entity or social organisation in operation, with its grade."""

    uscc: str
    entity_name: str
    entity_type: str | None
    industry_code: str | None
    industry_section: str | None
    town_code: str | None
    grade: str
    licence_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Inspector:
    certificate_number: str
    person_id: str | None
    department: str
    enforcement_category: str
    on_duty: bool

    @property
    def person(self) -> str:
        """Who the inspector is: the person (ID number), or the certificate
        when the roster gives no ID. Caps, repeats and "twice in a row" count
        persons, so a second certificate of the same person changes nothing."""
        return self.person_id or f"certificate:{self.certificate_number}"


@dataclass
class DrawInputs:
    """What a draw reads, and the Delta version each input was read at."""

    entities: list[RosterEntity]
    inspectors: list[Inspector]
    recusals: dict[str, dict[str, str]]          # certificate -> {uscc: reason}
    previous: dict[str, frozenset[str]]          # uscc -> certificates of its last draw and last inspection
    versions: dict[str, int | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)    # entities not drawn, and why; inspectors unknown


@dataclass(frozen=True)
class Assignment:
    item: str
    uscc: str
    entity_name: str
    grade: str
    certificates: tuple[str, ...]


@dataclass
class DrawResult:
    plan: str
    seed: int
    items: list[dict]                 # per item: in scope and drawn per grade
    assignments: list[Assignment]

    @property
    def digest(self) -> str:
        return result_digest(self.plan, self.seed, self.assignments)


def recusals_of(inspectors: list[Inspector], persons: dict[str, dict], representatives: dict[str, list[str]]
                ) -> dict[str, dict[str, str]]:
    """Per inspector (certificate), the entities they must not inspect and
    why (回避): those whose legal representative is the inspector
    (``legal_representative``) or a member of their household, the persons of
    ``persons`` with the same ``household_number``
    (``household_legal_representative``), and their ``employer_uscc``
    (``employer``). ``persons``: person_id -> {household_number,
    employer_uscc}; ``representatives``: person_id -> the USCCs they
    represent. One reason per entity, the first in that order."""
    members: dict[str, list[str]] = {}
    for person_id, person in persons.items():
        if person.get("household_number"):
            members.setdefault(person["household_number"], []).append(person_id)
    recused: dict[str, dict[str, str]] = {}
    for inspector in inspectors:
        barred: dict[str, str] = {}
        me = inspector.person_id
        if me:
            for uscc in representatives.get(me, ()):
                barred.setdefault(uscc, "legal_representative")
            household = (persons.get(me) or {}).get("household_number")
            for relative in members.get(household, []) if household else []:
                if relative != me:
                    for uscc in representatives.get(relative, ()):
                        barred.setdefault(uscc, "household_legal_representative")
            employer = (persons.get(me) or {}).get("employer_uscc")
            if employer:
                barred.setdefault(employer, "employer")
        recused[inspector.certificate_number] = barred
    return recused


def in_scope(scope: InspectionScope, entity: RosterEntity) -> bool:
    """Does ``entity`` fall under ``scope``? Every list given must match.
    Sections and towns are the library's computed ``industry_section`` and
    ``town_code`` (a social organisation has a section, S, without an
    industry code, and a town from its domicile)."""
    code = entity.industry_code or ""
    return ((not scope.industry_sections or entity.industry_section in scope.industry_sections)
            and (not scope.industry_codes or any(code.startswith(prefix) for prefix in scope.industry_codes))
            and (not scope.entity_types or entity.entity_type in scope.entity_types)
            and (not scope.towns or entity.town_code in {ref.TOWN_CODE_BY_NAME[t] for t in scope.towns})
            and (not scope.licence_types or bool(entity.licence_types & set(scope.licence_types))))


def sample_size(in_scope_count: int, ratio: Decimal) -> int:
    """How many of ``in_scope_count`` entities a ratio draws: rounded up
    (不少于), exactly, so 3% of 100 is 3 and 3% of 101 is 4."""
    return math.ceil(Decimal(in_scope_count) * ratio)


def _rank(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def qualified(plan: InspectionPlan, item: InspectionItem, inspector: Inspector) -> bool:
    return (inspector.on_duty and inspector.department.startswith(plan.department)
            and inspector.enforcement_category in (item.enforcement_category, GENERAL_CATEGORY))


def draw_plan(plan: InspectionPlan, inputs: DrawInputs, seed: int) -> DrawResult:
    """The draw (see the module's docstring): pure, the same for the same
    plan, inputs and seed, whatever their order. ``DrawShortfall`` naming
    each item short of inspectors and by how many."""
    person_of = {i.certificate_number: i.person for i in inputs.inspectors}
    load: dict[str, int] = {}                         # person -> entities assigned in this draw
    assigned: dict[str, set[str]] = {}               # uscc -> persons assigned to it in this draw
    items: list[dict] = []
    assignments: list[Assignment] = []
    shortfalls: list[str] = []
    for item in plan.items:
        by_grade: dict[str, list[RosterEntity]] = {grade: [] for grade in GRADES}
        for entity in inputs.entities:
            if entity.grade in by_grade and in_scope(item.scope, entity):
                by_grade[entity.grade].append(entity)
        drawn: list[RosterEntity] = []
        summary = {"item": item.item, "title": item.title, "in_scope": {}, "drawn": {}}
        for grade, entities in by_grade.items():
            size = sample_size(len(entities), item.sampling_ratio[grade])
            ranked = sorted(entities, key=lambda e: (_rank(seed, plan.plan, item.item, e.uscc), e.uscc))
            drawn += ranked[:size]
            summary["in_scope"][grade], summary["drawn"][grade] = len(entities), size
        items.append(summary)
        pool = sorted({i.certificate_number: i for i in inputs.inspectors
                       if qualified(plan, item, i)}.values(), key=lambda i: i.certificate_number)
        short = 0
        for entity in drawn:
            barred = ({person_of.get(cert, f"certificate:{cert}") for cert in inputs.previous.get(entity.uscc, ())}
                      | assigned.get(entity.uscc, set()))
            recused = {cert for cert in (i.certificate_number for i in pool)
                       if entity.uscc in inputs.recusals.get(cert, {})}
            chosen: list[Inspector] = []
            # the least loaded first (work spread evenly, and no shortfall a greedy pick would make at a cap
            # that leaves no slack), then by rank: random among the equally loaded
            for inspector in sorted(pool, key=lambda i: (load.get(i.person, 0),
                                                         _rank(seed, plan.plan, item.item, entity.uscc,
                                                               i.certificate_number), i.certificate_number)):
                if len(chosen) == item.inspectors_per_entity:
                    break
                person = inspector.person
                if (person in barred or inspector.certificate_number in recused
                        or load.get(person, 0) >= plan.max_inspections_per_inspector):
                    continue
                chosen.append(inspector)
                barred.add(person)          # one person once per entity, whatever their certificates
            if len(chosen) < item.inspectors_per_entity:
                short += 1
            for inspector in chosen:
                load[inspector.person] = load.get(inspector.person, 0) + 1
                assigned.setdefault(entity.uscc, set()).add(inspector.person)
            assignments.append(Assignment(item.item, entity.uscc, entity.entity_name, entity.grade,
                                          tuple(i.certificate_number for i in chosen)))
        if short:
            shortfalls.append(f"{item.item} ({item.title}): {short} of {len(drawn)} drawn entities lack "
                              f"{item.inspectors_per_entity} qualified, unconflicted inspectors under the cap of "
                              f"{plan.max_inspections_per_inspector} ({len(pool)} inspectors qualify for "
                              f"{item.enforcement_category})")
    if shortfalls:
        raise DrawShortfall(f"plan {plan.plan}, seed {seed}: too few inspectors; nothing was drawn: "
                            + "; ".join(shortfalls))
    return DrawResult(plan.plan, seed, items, assignments)


def result_digest(plan: str, seed: int, assignments: list[Assignment]) -> str:
    """sha256 of the draw's result in a canonical JSON form: the plan, the
    seed and every (item, uscc, grade, inspectors) in drawn order."""
    canonical = json.dumps({"plan": plan, "seed": seed,
                            "assignments": [[a.item, a.uscc, a.grade, list(a.certificates)] for a in assignments]},
                           ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- reading the rosters from the lake

def _read(path: str, columns: list[str], name: str, versions: dict, pinned: dict | None):
    """The current rows (``is_current`` where the table has it) of ``columns``
    of the table at ``path``, as Arrow: at the version ``pinned`` records for
    ``name`` (none recorded: the table did not exist, so nothing), or the
    latest, whose version goes into ``versions``. None for no rows."""
    import pyarrow.compute as pc
    from deltalake.exceptions import DeltaError

    if pinned is not None and pinned.get(name) is None:
        versions[name] = None
        return None
    try:
        table, version = read_arrow_at(path, columns, None if pinned is None else pinned[name])
    except (OSError, DeltaError) as exc:
        if pinned is None:
            raise
        # a version VACUUM removed the files of: the record outlived the lake's time-travel window
        raise DrawNotReproducible(f"{name} version {pinned[name]} can no longer be read ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]}); the lake keeps versions for its VACUUM "
                                  "retention (catalog/upkeep.yaml)") from None
    versions[name] = version
    if table is not None and "is_current" in columns:
        table = table.filter(pc.fill_null(table.column("is_current"), False))
    return table


def _rows(table) -> list[dict]:
    return [] if table is None else table.to_pylist()


def last_inspectors(rows: list[dict], order: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Per entity (``uscc``), the ``certificate_number``s of its latest
    inspection or draw: the rows sharing the greatest ``order`` (a draw's time
    and id; an inspection's date alone, so that every inspection of the
    entity's last day counts)."""
    latest: dict[str, tuple] = {}
    found: dict[str, set[str]] = {}
    for row in rows:
        if not row["uscc"] or not row["certificate_number"] or row[order[0]] is None:
            continue
        mark = tuple(row[name] for name in order)
        if row["uscc"] not in latest or mark > latest[row["uscc"]]:
            latest[row["uscc"]], found[row["uscc"]] = mark, set()
        if mark == latest[row["uscc"]]:
            found[row["uscc"]].add(row["certificate_number"])
    return {uscc: frozenset(certs) for uscc, certs in found.items()}


def _merge_last(*lasts: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    merged: dict[str, frozenset[str]] = {}
    for last in lasts:
        for uscc, certs in last.items():
            merged[uscc] = merged.get(uscc, frozenset()) | certs
    return merged


def _live_rows(feed: str, columns: list[str], settings: Settings, versions: dict, pinned: dict | None,
               manifest: list[dict]) -> list[dict]:
    """The silver rows of ``feed`` from its live (``loaded``) deliveries by
    the manifest read with the draw: a snapshot's rows sit beside those it
    supersedes until the old ones are deleted, and a load that died between
    the two leaves both."""
    latest: dict[str, dict] = {}
    for event in manifest:
        if event["feed"] == feed and (event["load_id"] not in latest
                                      or event["event_at"] > latest[event["load_id"]]["event_at"]):
            latest[event["load_id"]] = event
    live = {load for load, event in latest.items() if event["status"] == "loaded"}
    rows = _rows(_read(table_path("silver", get_contract(feed), settings), [*columns, "_load_id"],
                       f"silver.{feed.replace('.', '_')}", versions, pinned))
    return [row for row in rows if row["_load_id"] in live]


def _roster(rows: list[dict]) -> list[Inspector]:
    """The inspectors of the roster's rows, one per certificate; a certificate
    delivered twice with different values is a ``RosterError`` naming it and
    the fields that differ (not their values: one is an ID number)."""
    by_certificate: dict[str, Inspector] = {}
    for row in rows:
        inspector = Inspector(row["certificate_number"], row["id_number"], row["department"],
                              row["enforcement_category"], row["duty_status"] == ON_DUTY)
        known = by_certificate.setdefault(inspector.certificate_number, inspector)
        if known != inspector:
            differ = [name for name in ("person_id", "department", "enforcement_category", "on_duty")
                      if getattr(known, name) != getattr(inspector, name)]
            raise RosterError(f"amr.inspector: certificate {inspector.certificate_number} appears twice in the live "
                              f"roster with different {', '.join(differ)}: correct the roster first")
    return sorted(by_certificate.values(), key=lambda i: i.certificate_number)


def read_draw_inputs(plan: InspectionPlan, settings: Settings, pinned: dict | None = None,
                     voiding: str | None = None) -> DrawInputs:
    """The rosters, recusals and previous inspections from the lake, each at
    its latest version (recorded), or at the versions ``pinned`` gives
    (verification). Previous draws are the recorded ones that no later draw
    replaced, less ``voiding`` (the draw the new one replaces)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    versions: dict[str, int | None] = {}
    counts = {"not_registered": 0, "unrated": 0, "inspectors_unknown_to_population": 0}
    people = _rows(_read(settings.lake_path("base", "legal_person"),
                         ["uscc", "entity_name", "entity_type", "registration_status", "industry_code",
                          "industry_section", "town_code", "legal_representative_id", "is_current"],
                         "base.legal_person", versions, pinned))
    rated = _read(settings.lake_path("base", "credit_rating"), ["uscc", "risk_grade", "is_current"],
                  "base.credit_rating", versions, pinned)
    grades = {} if rated is None else dict(zip(rated.column("uscc").to_pylist(),
                                               rated.column("risk_grade").to_pylist()))
    licences: dict[str, set[str]] = {}
    if any(item.scope.licence_types for item in plan.items):
        for row in _rows(_read(settings.lake_path("base", "e_licence"),
                               ["holder_id", "licence_type", "status", "is_current"], "base.e_licence", versions,
                               pinned)):
            if row["status"] == "valid" and row["holder_id"]:
                licences.setdefault(row["holder_id"], set()).add(row["licence_type"])
    entities, representatives = [], {}
    for row in people:
        if row["legal_representative_id"]:
            representatives.setdefault(row["legal_representative_id"], []).append(row["uscc"])
        # no registration status: known to other bureaus only (the registry's row was never loaded)
        if row["registration_status"] is None or row["registration_status"] in NOT_OPERATING:
            counts["not_registered"] += row["registration_status"] is None
            continue
        grade = grades.get(row["uscc"])
        if grade is None:
            counts["unrated"] += 1
            continue
        entities.append(RosterEntity(row["uscc"], row["entity_name"], row["entity_type"], row["industry_code"],
                                     row["industry_section"], row["town_code"], grade,
                                     frozenset(licences.get(row["uscc"], ()))))
    manifest = _rows(_read(governance_path("load_manifest", settings), ["load_id", "feed", "status", "event_at"],
                           "governance.load_manifest", versions, pinned))
    inspectors = _roster(_live_rows("amr.inspector", ["certificate_number", "id_number", "department",
                                                      "enforcement_category", "duty_status"],
                                    settings, versions, pinned, manifest))
    population = _read(settings.lake_path("base", "population"),
                       ["person_id", "household_number", "employer_uscc", "is_current"], "base.population",
                       versions, pinned)
    persons: dict[str, dict] = {}
    if population is not None:
        mine = pa.array(sorted({i.person_id for i in inspectors if i.person_id}), pa.string())
        own = population.filter(pc.is_in(population.column("person_id"), value_set=mine))
        households = pa.array(sorted({h for h in own.column("household_number").to_pylist() if h}), pa.string())
        related = population.filter(pc.or_(pc.is_in(population.column("person_id"), value_set=mine),
                                           pc.is_in(population.column("household_number"), value_set=households)))
        persons = {row["person_id"]: row for row in related.to_pylist()}
    counts["inspectors_unknown_to_population"] = sum(1 for i in inspectors if i.person_id not in persons)
    draws = _rows(_read(governance_path("inspection_draws", settings), ["draw_id", "replaces_draw_id", "registered"],
                        "governance.inspection_draws", versions, pinned))
    # a draw of a plan file outside schemas/inspections/ (a trial) bars nobody from the real draws
    standing = ({d["draw_id"] for d in draws if d["registered"]} - {d["replaces_draw_id"] for d in draws}
                - {voiding})
    drawn = [row for row in _rows(_read(governance_path("inspection_assignments", settings),
                                        ["draw_id", "uscc", "certificate_number", "drawn_at"],
                                        "governance.inspection_assignments", versions, pinned))
             if row["draw_id"] in standing]
    inspected = _live_rows("amr.inspection_result", ["task_number", "uscc", "certificate_number", "inspected_date"],
                           settings, versions, pinned, manifest)
    previous = _merge_last(last_inspectors(drawn, ("drawn_at", "draw_id")),
                           last_inspectors(inspected, ("inspected_date",)))
    if not inspectors:
        raise DrawShortfall("amr.inspector has no inspectors in the lake: ingest the roster first")
    if not entities:
        raise DrawShortfall("no graded entity in operation: build base.legal_person and base.credit_rating first")
    if counts["inspectors_unknown_to_population"]:
        log.warning("%d inspectors of amr.inspector are not in base.population: no household or employer "
                    "recusal can be checked for them", counts["inspectors_unknown_to_population"])
    return DrawInputs(entities, inspectors, recusals_of(inspectors, persons, representatives), previous,
                      versions, counts)


# ---------------------------------------------------------------- drawing, recording, verifying

def standing_draw(plan: str, settings: Settings) -> dict | None:
    """The plan's draw in force: recorded, and not replaced by a later one."""
    draws = read_delta_rows(governance_path("inspection_draws", settings))
    replaced = {d["replaces_draw_id"] for d in draws}
    standing = [d for d in draws if d["plan"] == plan and d["draw_id"] not in replaced]
    return max(standing, key=lambda d: d["drawn_at"]) if standing else None


def draw(plan_name: str, seed: int, settings: Settings, drawn_by: str, replaces: str | None = None,
         reason: str | None = None) -> dict:
    """Draw ``plan_name`` with ``seed`` from the lake as it is, and record the
    draw and its result in governance; the record as a dict.

    A plan has one draw in force: drawing it again (another seed, or the same
    seed after the lake changed) must name the draw it ``replaces`` and a
    ``reason``, both recorded, so that redrawing until a draw suits someone
    leaves a trace of every attempt. The replaced draw's assignments no
    longer count as anyone's previous inspection."""
    if not 0 <= seed <= SEED_MAX:
        raise PlanError(f"seed {seed}: give a whole number from 0 to {SEED_MAX}")
    if reason is not None and replaces is None:
        raise DrawRefused("--reason goes with --replaces (the reason a draw in force is replaced)")
    plan = load_plan(plan_name, settings)
    registered = Path(settings.schemas_dir) / "inspections" / f"{plan.plan}.yaml"
    # one check-then-write at a time per plan: two draws at once cannot both be "the first"
    with state_lock(f"inspection-draw-{plan.plan}", settings):
        standing = standing_draw(plan.plan, settings)
        if standing is not None and replaces != standing["draw_id"]:
            raise DrawRefused(f"plan {plan.plan} was drawn already: {standing['draw_id']} (seed {standing['seed']}, "
                              f"by {standing['drawn_by']} at {standing['drawn_at']:%Y-%m-%d %H:%M} UTC). A new draw "
                              f"replaces it: give --replaces {standing['draw_id']} --reason '...' (both recorded)")
        if replaces is not None and (standing is None or not reason or not reason.strip()):
            raise DrawRefused(f"--replaces {replaces}: " + (f"no draw of plan {plan.plan} is in force by that id"
                                                            if standing is None else "give the --reason"))
        inputs = read_draw_inputs(plan, settings, voiding=replaces)
        result = draw_plan(plan, inputs, seed)
        drawn_at = utc_now()
        draw_id = f"{plan.plan}-{drawn_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        record = {
            "draw_id": draw_id, "plan": plan.plan, "plan_title": plan.title,
            "plan_sha256": hashlib.sha256(plan.text.encode("utf-8")).hexdigest(), "plan_text": plan.text,
            "registered": registered.is_file() and registered.read_text(encoding="utf-8") == plan.text,
            "algorithm": ALGORITHM, "seed": seed, "input_versions": json.dumps(inputs.versions, sort_keys=True),
            "items": json.dumps(result.items, ensure_ascii=False), "entities_drawn": len(result.assignments),
            "assignments": sum(len(a.certificates) for a in result.assignments),
            "not_drawn": json.dumps(inputs.counts, sort_keys=True), "result_digest": result.digest,
            "replaces_draw_id": replaces, "reason": reason, "drawn_by": drawn_by, "drawn_at": drawn_at,
        }
        rows = [{"draw_id": draw_id, "plan": plan.plan, "position": position, "item": a.item, "uscc": a.uscc,
                 "entity_name": a.entity_name, "risk_grade": a.grade, "inspector_slot": slot,
                 "certificate_number": cert, "drawn_at": drawn_at}
                for position, a in enumerate(result.assignments) for slot, cert in enumerate(a.certificates)]
        # the result first, then the record: a later draw counts only assignments whose draw is recorded
        append_rows(governance_path("inspection_assignments", settings), rows, INSPECTION_ASSIGNMENTS_DDL)
        append_rows(governance_path("inspection_draws", settings), [record], INSPECTION_DRAWS_DDL)
    log.info("inspection draw %s: plan %s seed %d by %s, %d entities, digest %s%s", draw_id, plan.plan, seed,
             drawn_by, record["entities_drawn"], record["result_digest"],
             f", replacing {replaces}: {reason}" if replaces else "")
    return record


def draw_recorded(plan_name: str, params: dict, drawn_by: str) -> str:
    """``draw`` in the lake of the settings with the DAG run's params (seed,
    replaces, reason); the draw id (the inspection DAG's first task)."""
    return draw(plan_name, int(params["seed"]), get_settings(), drawn_by, params.get("replaces") or None,
                params.get("reason") or None)["draw_id"]


def verified(draw_id: str) -> str:
    """``draw_id`` once ``verify_draw`` reproduces it; ``DrawNotReproduced`` otherwise."""
    checked = verify_draw(draw_id, get_settings())
    if not checked["reproduced"]:
        raise DrawNotReproduced(f"draw {draw_id} is not reproduced from its record: {checked['problems']}")
    return draw_id


def draw_record(draw_id: str, settings: Settings) -> dict:
    rows = read_delta_rows(governance_path("inspection_draws", settings), [("draw_id", "=", draw_id)])
    if not rows:
        raise LookupError(f"no inspection draw {draw_id!r} in governance.inspection_draws")
    return rows[0]


def stored_assignments(draw_id: str, settings: Settings) -> tuple[list[Assignment], list[str]]:
    """The result of ``draw_id`` as governance.inspection_assignments holds
    it, in drawn order, and what is wrong with the rows: every row of a
    position must name the same item, entity and grade, and its slots run
    0, 1, ..."""
    rows = read_delta_rows(governance_path("inspection_assignments", settings), [("draw_id", "=", draw_id)])
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["position"], []).append(row)
    result, problems = [], []
    for position in sorted(grouped):
        slots = sorted(grouped[position], key=lambda r: r["inspector_slot"])
        first = slots[0]
        if {(r["item"], r["uscc"], r["entity_name"], r["risk_grade"]) for r in slots} != {
                (first["item"], first["uscc"], first["entity_name"], first["risk_grade"])} or \
                [r["inspector_slot"] for r in slots] != list(range(len(slots))):
            problems.append(f"the stored rows of position {position} disagree")
        result.append(Assignment(first["item"], first["uscc"], first["entity_name"], first["risk_grade"],
                                 tuple(r["certificate_number"] for r in slots)))
    if sorted(grouped) != list(range(len(grouped))):
        problems.append("positions are missing from the stored assignments")
    return result, problems


def verify_draw(draw_id: str, settings: Settings) -> dict:
    """Draw again from the record of ``draw_id``: its plan text and seed, the
    inputs at the versions it recorded (less the draw it replaced), and check
    the three agree: the recorded digest, the digest of the stored
    assignments, and the digest drawn again; and that the plan text is the
    one whose hash was recorded. ``{"draw_id", "recorded_digest",
    "stored_digest", "digest", "reproduced", "problems"}``."""
    record = draw_record(draw_id, settings)
    if record["algorithm"] != ALGORITHM:
        raise DrawNotReproducible(f"draw {draw_id} was made by the draw algorithm {record['algorithm']}; this code "
                                  f"implements {ALGORITHM}: verify it with the code of that version")
    plan = parse_plan(record["plan_text"], f"governance.inspection_draws {draw_id} plan_text")
    inputs = read_draw_inputs(plan, settings, pinned=json.loads(record["input_versions"]),
                              voiding=record["replaces_draw_id"])
    digest = draw_plan(plan, inputs, int(record["seed"])).digest
    assignments, problems = stored_assignments(draw_id, settings)
    stored = result_digest(record["plan"], int(record["seed"]), assignments)
    if hashlib.sha256(record["plan_text"].encode("utf-8")).hexdigest() != record["plan_sha256"]:
        problems.append("the plan text is not the one whose sha256 was recorded")
    if stored != record["result_digest"]:
        problems.append("the stored assignments are not the recorded result")
    if digest != record["result_digest"]:
        problems.append("drawing again from the recorded inputs gives another result")
    return {"draw_id": draw_id, "recorded_digest": record["result_digest"], "stored_digest": stored,
            "digest": digest, "reproduced": not problems, "problems": problems}


# ---------------------------------------------------------------- the public notice (公示)

# What the notice shows of a drawn entity: its registered name and code, as the
# enterprise credit information publicity system (企业信用信息公示系统) does.
# Not its credit grade (信用风险分类 results are for supervision, not
# published), not its legal representative, not the inspectors.
NOTICE_HEADERS = ("抽查计划", "抽查事项", "统一社会信用代码", "检查对象名称", "实施部门", "检查期间")

_NOTICE_TEMPLATE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{{ plan.title }} 抽查结果公示</title>
<style>
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #999; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
.meta { color: #555; }
</style>
</head>
<body>
<h1>{{ plan.title }}</h1>
<p class="meta">实施部门：{{ plan.department }}　检查期间：{{ period }}　抽取日期：{{ drawn_on }}
　随机种子：{{ record.seed }}　抽取记录：{{ record.draw_id }}（结果摘要 sha256 {{ record.result_digest }}）</p>
<h2>抽查事项</h2>
<table id="items">
<tr><th>抽查事项</th><th>检查依据</th><th>抽查对象数</th></tr>
{% for item in items %}<tr><td>{{ item.title }}</td><td>{{ item.legal_basis }}</td><td>{{ item.drawn }}</td></tr>
{% endfor %}</table>
<h2>抽查对象名单</h2>
<table id="entities">
<tr>{% for header in headers %}<th>{{ header }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for value in row %}<td>{{ value }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="meta">依据《国务院办公厅关于推广随机抽查规范事中事后监管的通知》（国办发〔2015〕58号）公示。
在数据湖保留输入版本期间，可凭抽取记录、随机种子与输入版本复核本次抽取
（govlake inspect verify {{ record.draw_id }}）。</p>
</body>
</html>
"""


def notice_rows(plan: InspectionPlan, assignments: list[dict]) -> list[tuple]:
    """One row per (item, entity) drawn, in drawn order, with ``NOTICE_HEADERS``."""
    titles = {item.item: item.title for item in plan.items}
    period = f"{plan.period['start']:%Y-%m-%d}至{plan.period['end']:%Y-%m-%d}"
    seen: set[tuple[str, str]] = set()
    rows = []
    for row in assignments:
        if (row["item"], row["uscc"]) not in seen:
            seen.add((row["item"], row["uscc"]))
            rows.append((plan.title, titles.get(row["item"], row["item"]), row["uscc"], row["entity_name"],
                         plan.department, period))
    return rows


def write_public_notice(draw_id: str, settings: Settings, out: Path) -> dict:
    """The public notice of a draw as ``<out>/<draw_id>.csv`` (UTF-8 with a
    BOM, for spreadsheet programs) and ``<out>/<draw_id>.html`` (self-contained:
    no script, font or style from elsewhere, readable offline).
    ``{"csv", "html", "entities"}``."""
    import csv

    from jinja2 import Environment  # GX's own dependency: templated pages with HTML escaping on

    record = draw_record(draw_id, settings)
    plan = parse_plan(record["plan_text"], f"governance.inspection_draws {draw_id} plan_text")
    stored, problems = stored_assignments(draw_id, settings)
    if problems:
        raise DrawNotReproduced(f"draw {draw_id}: {'; '.join(problems)}: no notice of a result that does not hold")
    order = {item.item: k for k, item in enumerate(plan.items)}
    # the drawn order within an item is the rank; a notice lists by item, then code
    assignments = sorted(({"item": a.item, "uscc": a.uscc, "entity_name": a.entity_name} for a in stored),
                         key=lambda row: (order.get(row["item"], len(order)), row["uscc"]))
    rows = notice_rows(plan, assignments)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / f"{draw_id}.csv", out / f"{draw_id}.html"
    with csv_path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NOTICE_HEADERS)
        # a cell a spreadsheet would take for a formula is quoted as text (CSV injection)
        writer.writerows([["'" + v if isinstance(v, str) and v[:1] and v[0] in "=+-@\t\r" else v for v in row]
                          for row in rows])
    drawn = {summary["item"]: sum(summary["drawn"].values()) for summary in json.loads(record["items"])}
    html = Environment(autoescape=True).from_string(_NOTICE_TEMPLATE).render(
        plan=plan, record=record, headers=NOTICE_HEADERS, rows=rows,
        items=[{"title": item.title, "legal_basis": item.legal_basis, "drawn": drawn.get(item.item, 0)}
               for item in plan.items],
        period=f"{plan.period['start']:%Y-%m-%d}至{plan.period['end']:%Y-%m-%d}",
        drawn_on=f"{record['drawn_at'].replace(tzinfo=UTC).astimezone(CITY_TIME):%Y-%m-%d}")
    html_path.write_text(html, encoding="utf-8")
    return {"csv": str(csv_path), "html": str(html_path), "entities": len(rows)}


def publish_notice(draw_id: str) -> dict:
    """``write_public_notice`` into ``<lake>/notices/`` (the inspection DAG's last task)."""
    settings = get_settings()
    return write_public_notice(draw_id, settings, settings.local_lake_path("notices"))
