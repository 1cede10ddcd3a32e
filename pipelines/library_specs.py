"""Library specs: schemas/libraries/*.yaml as typed models."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.settings import Settings, get_settings

HISTORY_COLUMNS = ("record_hash", "valid_from", "valid_to", "is_current")


class LibrarySpecError(ValueError):
    """A library spec is malformed; the message names the file and field."""


@dataclass(frozen=True)
class Source:
    """One way a feed names the library's key: ``alias`` is ``feed`` or ``feed@role``
    (e.g. ``mca.marriage@wife``) when one feed carries several keys."""

    alias: str
    feed: str
    key: str
    latest_by: str | None = None      # the column that orders a key's records (else ingest time)
    adds_records: bool = True         # False: only enriches keys other sources know
    snapshot: bool = False            # the feed delivers whole registers (contract ``delivery: snapshot``)

    @property
    def prefix(self) -> str:
        return self.alias.replace(".", "__").replace("@", "__")


# Facts a validated key carries itself (GB 11643: an 18-character ID number
# fixes its holder's birth date and gender). An attribute with ``from_key``
# takes its value from the key, ``<attribute>_source = 'id_number'``; the
# sources only fill in where the key does not carry it, and a source value
# that disagrees with the key is a conflict against that bureau.
KEY_FACTS = ("id_number.birth_date", "id_number.gender")


@dataclass(frozen=True)
class Attribute:
    name: str
    sources: tuple[tuple[str, str], ...]      # (source alias, column), most authoritative first
    values: dict | None = None                # source value -> library value (a shared vocabulary)
    conflicts: str | None = None              # exact | normalised: report other sources that disagree
    from_key: str | None = None               # a fact of the key itself (KEY_FACTS), preferred to every source
    rule: str | None = None                   # the value's rule in words, for the catalog (else generated)


@dataclass(frozen=True)
class Resolution:
    """How records without a valid key are matched (pipelines/libraries/resolution.py)."""

    profile: str                              # person | entity
    rescue: tuple[str, ...]                   # source aliases whose quarantined rows are resolved
    candidates: dict                          # feed -> {key, name, town, address, representative, birth, phone}


@dataclass(frozen=True)
class LibrarySpec:
    library: str
    key: str
    grain: str
    sources: dict[str, Source]                # alias -> source
    authoritative_sources: tuple[str, ...]
    attributes: tuple[Attribute, ...]
    kind: str = "golden"                      # golden | derived
    build: str | None = None                  # derived: "module:function" returning current records
    enrich: str | None = None                 # golden: "module:function" adding computed columns
    depends_on: tuple[str, ...] = ()
    resolution: Resolution | None = None
    report: str | None = None                 # "module:function(spark, settings)" run after a build
    unversioned_columns: tuple[str, ...] = () # change with every build, not a new version (e.g. rated_on)
    # incremental builds (pipelines/libraries/incremental.py): keys whose computed
    # columns change with the build date alone ("module:function(frames, since, as_of)"),
    # and the column that refers to each library of depends_on (its keys' changes touch ours)
    dated_keys: str | None = None
    references: tuple[tuple[str, str], ...] = ()
    # derived: "module:function(spark, settings, spec, plan, state)" giving the
    # keys an incremental build recomputes (column _key); without it, every build is full
    touched_keys: str | None = None
    # whether the records depend on the build date (a derived library's
    # current_date(), a golden one's dated keys): else a build with nothing
    # new to read leaves the table as it is
    reads_date: bool = True
    report_reads: tuple[str, ...] = ()        # feeds the report reads besides the sources
    rule_sets: tuple[str, ...] = ()           # schemas/rules/<name>.yaml the build reads (part of its digest)
    digest: str = ""                          # of the spec file's text: a changed spec rebuilds in full

    @property
    def feeds(self) -> list[str]:
        """Every feed the library reads, for scheduling."""
        feeds = {s.feed for s in self.sources.values()}
        if self.resolution:
            feeds |= set(self.resolution.candidates)
        return sorted(feeds)


def spec_function(reference: str):
    """The function a spec names as ``"module:function"`` (build, enrich,
    report, incremental.dated)."""
    import importlib

    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _delivers_snapshots(feed: str, settings: Settings) -> bool:
    from pipelines.contracts import ContractError, get_contract

    try:
        return get_contract(feed, settings.schemas_dir).delivery == "snapshot"
    except ContractError:            # an unknown feed is reported where the spec is checked against contracts
        return False


def library_spec_paths(settings: Settings | None = None) -> list[Path]:
    """Every ``schemas/libraries/<library>.yaml``, by name (the only place that lists them)."""
    settings = settings or get_settings()
    return sorted((Path(settings.schemas_dir) / "libraries").glob("*.yaml"))


def library_names(settings: Settings | None = None) -> list[str]:
    """Every library spec, in build order (a library after those it depends on)."""
    settings = settings or get_settings()
    specs = {path.stem: load_library_spec(path.stem, settings) for path in library_spec_paths(settings)}
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in trail:
            raise LibrarySpecError(f"schemas/libraries: depends_on cycle {' -> '.join(trail + (name,))}")
        if name not in specs:
            raise LibrarySpecError(f"schemas/libraries/{trail[-1]}.yaml: depends_on: no library {name!r}")
        for dependency in specs[name].depends_on:
            visit(dependency, trail + (name,))
        ordered.append(name)

    for name in specs:
        visit(name, ())
    return ordered


def _rule_sets(document: dict, shown: str, settings: Settings) -> tuple[str, ...]:
    names = tuple(document.get("rule_sets") or [])
    for name in names:
        if not (Path(settings.schemas_dir) / "rules" / f"{name}.yaml").is_file():
            raise LibrarySpecError(f"{shown}: rule_sets: no schemas/rules/{name}.yaml")
    return names


def load_library_spec(library: str, settings: Settings | None = None) -> LibrarySpec:
    settings = settings or get_settings()
    path = Path(settings.schemas_dir) / "libraries" / f"{library}.yaml"
    shown = f"schemas/libraries/{path.name}"
    if not path.is_file():
        raise LibrarySpecError(f"{shown}: no such library spec")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for field in ("library", "key"):
        if not document.get(field):
            raise LibrarySpecError(f"{shown}: {field}: required")
    sources = {}
    for alias, item in (document.get("sources") or {}).items():
        item = {"key": item} if isinstance(item, str) else dict(item or {})
        if "key" not in item:
            raise LibrarySpecError(f"{shown}: sources.{alias}: key: required")
        feed = item.get("feed", alias.split("@")[0])
        sources[alias] = Source(alias=alias, feed=feed, key=item["key"], latest_by=item.get("latest_by"),
                                adds_records=item.get("adds_records", True),
                                snapshot=_delivers_snapshots(feed, settings))
    attributes = []
    for index, item in enumerate(document.get("attributes") or []):
        pairs = []
        for source in item.get("sources", []):
            alias, _, column = source.rpartition(".")
            if alias not in sources:
                raise LibrarySpecError(f"{shown}: attributes[{index}].sources: {alias!r} is not under sources:")
            pairs.append((alias, column))
        if item.get("conflicts") not in (None, "exact", "normalised"):
            raise LibrarySpecError(f"{shown}: attributes[{index}].conflicts: exact or normalised")
        if item.get("from_key") not in (None, *KEY_FACTS):
            raise LibrarySpecError(f"{shown}: attributes[{index}].from_key: one of {', '.join(KEY_FACTS)}")
        attributes.append(Attribute(item["name"], tuple(pairs), item.get("values"), item.get("conflicts"),
                                    item.get("from_key"), item.get("rule")))
    for alias in document.get("authoritative_sources", []):
        if alias not in sources:
            raise LibrarySpecError(f"{shown}: authoritative_sources: {alias!r} is not under sources:")
    resolution = None
    if document.get("resolution"):
        item = document["resolution"]
        if item.get("profile") not in ("person", "entity"):
            raise LibrarySpecError(f"{shown}: resolution.profile: person or entity")
        for alias in item.get("rescue", []):
            if alias not in sources:
                raise LibrarySpecError(f"{shown}: resolution.rescue: {alias!r} is not under sources:")
        resolution = Resolution(item["profile"], tuple(item.get("rescue", [])), dict(item.get("candidates") or {}))
    incremental = document.get("incremental") or {}
    references = tuple((incremental.get("references") or {}).items())
    for library_name, _ in references:
        if library_name not in document.get("depends_on", []):
            raise LibrarySpecError(f"{shown}: incremental.references: {library_name!r} is not in depends_on")
    kind = document.get("kind", "golden")
    if kind == "derived" and not document.get("build"):
        raise LibrarySpecError(f"{shown}: build: required for a derived library (module:function)")
    if incremental.get("touched") and kind != "derived":
        raise LibrarySpecError(f"{shown}: incremental.touched: only for a derived library (a golden one's "
                               "touched keys follow from its sources)")
    if incremental.get("touched") and set(document.get("depends_on", [])) - {name for name, _ in references}:
        raise LibrarySpecError(f"{shown}: incremental.references: every library of depends_on needs one "
                               "(an incremental build reads what changed in it from its key-change log)")
    return LibrarySpec(library=document["library"], key=document["key"], grain=document.get("grain", ""),
                       sources=sources, authoritative_sources=tuple(document.get("authoritative_sources", [])),
                       attributes=tuple(attributes), kind=kind, build=document.get("build"),
                       enrich=document.get("enrich"), depends_on=tuple(document.get("depends_on", [])),
                       resolution=resolution, report=document.get("report"),
                       unversioned_columns=tuple(document.get("unversioned_columns", [])),
                       dated_keys=incremental.get("dated"), references=references,
                       touched_keys=incremental.get("touched"),
                       reads_date=bool(incremental.get("reads_date", kind == "derived" or incremental.get("dated"))),
                       report_reads=tuple(document.get("report_reads", [])),
                       rule_sets=_rule_sets(document, shown, settings),
                       digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16])
