"""Read-only views of the base libraries for people, as plain data the CLI renders:

- ``golden_record``: one current record, each attribute's value with the feed
  and load it came from, the computed columns, and its open conflicts;
- ``source_readiness``: before a build, whether a library's sources are in
  the lake, and for each missing feed what became of its deliveries (from the
  load manifest). Read with delta-rs: no Spark session is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.contracts import get_contract
from pipelines.lake.delta import read_delta_rows, read_table
from pipelines.lake.paths import governance_path, table_path
from pipelines.library_specs import HISTORY_COLUMNS, LibrarySpec, library_names, load_library_spec
from pipelines.settings import Settings, get_settings

# Columns of every golden record that are neither an attribute nor computed.
_RECORD_COLUMNS = frozenset({"known_to", "is_known_to_authority", *HISTORY_COLUMNS})


def computed_columns(spec: LibrarySpec, columns) -> list[str]:
    """The columns of a record that no attribute of ``spec`` provides (added
    by the library's ``enrich`` step), in record order."""
    provided = {spec.key, *_RECORD_COLUMNS}
    for attribute in spec.attributes:
        provided |= {attribute.name, f"{attribute.name}_source", f"{attribute.name}_load_id"}
    return [c for c in columns if c not in provided]


def golden_record(spark, library: str, value: str, settings: Settings | None = None) -> dict:
    """The current record of ``library`` whose key is ``value``:
    ``{"record", "attributes": [{name, value, source, load_id}], "computed":
    [{column, value}], "conflicts": [open conflict rows]}``. LookupError when
    the library is not built or has no such record."""
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    spec = load_library_spec(library, settings)
    path = settings.lake_path("base", library)
    if not table_exists(path):
        raise LookupError(f"base.{library} is not built yet: run `govlake build`")
    row = spark.read.format("delta").load(path).where((F.col(spec.key) == value) & F.col("is_current")).first()
    if row is None:
        raise LookupError(f"no {spec.key} {value} in base.{library}")
    record = row.asDict()
    conflicts = [c.asDict() for c in read_table(spark, "conflicts", settings)
                 .where((F.col("library") == library) & (F.col("subject") == value) & F.col("resolved_at").isNull())
                 .collect()]
    return {
        "record": record,
        "attributes": [{"name": a.name, "value": record[a.name], "source": record[f"{a.name}_source"],
                        "load_id": record[f"{a.name}_load_id"]} for a in spec.attributes],
        "computed": [{"column": c, "value": record[c]} for c in computed_columns(spec, record)],
        "conflicts": conflicts,
    }


def table_exists(path: str) -> bool:
    """Is there a Delta table at ``path`` (delta-rs: no JVM)."""
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(path)


@dataclass
class Readiness:
    """Whether a library can be built from what the lake holds now."""

    library: str
    missing_feeds: dict[str, str] = field(default_factory=dict)    # feed -> what became of its deliveries
    missing_libraries: list[str] = field(default_factory=list)     # depends_on libraries not built

    @property
    def ready(self) -> bool:
        return not self.missing_feeds and not self.missing_libraries

    def describe(self) -> str:
        """One line: why the library is skipped."""
        parts = [f"{feed} has no silver table ({fate})" for feed, fate in self.missing_feeds.items()]
        parts += [f"base.{name} is not built" for name in self.missing_libraries]
        return f"base.{self.library} skipped: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"library": self.library, "ready": self.ready, "missing_feeds": self.missing_feeds,
                "missing_libraries": self.missing_libraries}


def authoritative_feeds(spec: LibrarySpec) -> list[str]:
    """The feeds a build of ``spec`` cannot do without: those of its
    ``authoritative_sources``; a derived library that declares none needs its
    first source if it depends on no other library (the specs list sources
    most authoritative first: address needs nr.standard_address, grid needs
    grid.cell). A derived library built on other libraries needs those."""
    if spec.authoritative_sources:
        return sorted({spec.sources[alias].feed for alias in spec.authoritative_sources})
    if spec.kind == "derived" and not spec.depends_on and spec.sources:
        return [next(iter(spec.sources.values())).feed]
    return []


def delivery_fates(feed: str, settings: Settings) -> str:
    """What the load manifest says about ``feed``'s deliveries, in a few words:
    "never delivered", or the latest status of each load, counted
    ("2 deliveries: 1 blocked, 1 rejected")."""
    latest: dict[str, dict] = {}
    for row in read_delta_rows(governance_path("load_manifest", settings), [("feed", "=", feed)]):
        if row["load_id"] not in latest or row["event_at"] > latest[row["load_id"]]["event_at"]:
            latest[row["load_id"]] = row
    if not latest:
        return "never delivered"
    counts: dict[str, int] = {}
    for row in latest.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(latest)} deliver{'y' if len(latest) == 1 else 'ies'}: {shown}"


def source_readiness(libraries: list[str] | None = None, settings: Settings | None = None) -> list[Readiness]:
    """For ``libraries`` (default: all) in build order: which of their
    authoritative feeds have no silver table, and which libraries they depend
    on are neither built nor buildable in this run (a library whose
    dependency is skipped is skipped too)."""
    settings = settings or get_settings()
    order = library_names(settings)
    wanted = order if not libraries else [name for name in order if name in libraries]
    buildable: set[str] = set()
    readiness = []
    for name in wanted:
        spec = load_library_spec(name, settings)
        check = Readiness(name)
        for feed in authoritative_feeds(spec):
            if not table_exists(table_path("silver", get_contract(feed, settings.schemas_dir), settings)):
                check.missing_feeds[feed] = delivery_fates(feed, settings)
        check.missing_libraries = [dependency for dependency in spec.depends_on if dependency not in buildable
                                   and not table_exists(settings.lake_path("base", dependency))]
        if check.ready:
            buildable.add(name)
        readiness.append(check)
    return readiness
