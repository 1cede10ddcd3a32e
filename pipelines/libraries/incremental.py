"""Incremental builds: recompute only the keys the loads since the last build touched.

A golden library's record for a key depends only on the source rows with that
key (``golden.latest_per_key``), so a build after day k's deliveries needs
the keys those deliveries carry, plus the keys whose record changes for
other reasons:

- entity resolution: resolution runs over every quarantined row as before
  (a new key can make an old unkeyed row linkable, or ambiguous); the keys
  of every link that differs from the last build's are touched;
- the date alone (``incremental.dated`` in the spec): e.g. a residence
  permit that lapsed since the last build changes ``is_deceased``;
- a library of ``depends_on`` (``incremental.references``): the keys that
  appeared in or left ``base.population`` touch the entities whose legal
  representative they are.

Everything else is a full rebuild (``build --full`` does the same): the first
build, a spec changed since the last build, a delivery live at the last build
that is no longer (a correction replaced it, a governor withdrew it), or an
upstream library read for computed columns that changed without a declared
reference (``base.address``). Derived libraries are rebuilt in full.

What a build knew is kept in ``<lake>/state/builds/<library>.json``: the live
loads per feed, the upstream tables' versions, the spec's digest and the
build date. It is written after the merge: a build that dies before it is
redone from the older state, which touches more keys than needed and gives
the same records.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from pipelines.lake.delta import delta_version
from pipelines.library_specs import LibrarySpec, load_library_spec
from pipelines.settings import Settings

# computed columns of the golden libraries read these base tables besides depends_on
ALSO_READS = ("address",)


@dataclass
class BuildState:
    """What one library's last build was made from."""

    library: str
    built_at: str
    as_of: str                                            # the build date (ISO)
    spec_digest: str
    loads: dict[str, list[str]] = field(default_factory=dict)      # feed -> live load ids
    upstream: dict[str, int | None] = field(default_factory=dict)  # library -> Delta version read


@dataclass
class BuildPlan:
    """Full or incremental, and why."""

    mode: str                                             # full | incremental
    reason: str
    new_loads: list[str] = field(default_factory=list)
    previous: BuildState | None = None

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"


def _state_path(library: str, settings: Settings):
    return settings.local_lake_path("state", "builds") / f"{library}.json"


def read_state(library: str, settings: Settings) -> BuildState | None:
    path = _state_path(library, settings)
    if not path.exists():
        return None
    return BuildState(**json.loads(path.read_text(encoding="utf-8")))


def write_state(state: BuildState, settings: Settings) -> None:
    """Atomically (write, then rename): a reader sees the old state or the new."""
    path = _state_path(state.library, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(state), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, path)


def spec_feeds(spec: LibrarySpec) -> list[str]:
    """Every feed whose loads can change the library: its sources' and its
    resolution candidates' feeds."""
    feeds = {source.feed for source in spec.sources.values()}
    if spec.resolution:
        feeds |= set(spec.resolution.candidates)
    return sorted(feeds)


def upstream_versions(spark, spec: LibrarySpec, settings: Settings) -> dict[str, int | None]:
    names = sorted(set(spec.depends_on) | (set(ALSO_READS) - {spec.library}))
    return {name: delta_version(spark, settings.lake_path("base", name)) for name in names}


def current_state(spark, spec: LibrarySpec, live: dict[str, list[str]], now: datetime,
                  settings: Settings) -> BuildState:
    return BuildState(library=spec.library, built_at=now.isoformat(), as_of=now.date().isoformat(),
                      spec_digest=spec.digest,
                      loads={feed: sorted(live.get(feed, [])) for feed in spec_feeds(spec)},
                      upstream=upstream_versions(spark, spec, settings))


def data_changed_since(spark, path: str, version: int | None) -> bool:
    """Did any commit after ``version`` of the Delta table at ``path`` change
    rows? A MERGE that inserted, updated and deleted nothing (a rebuild that
    found nothing new) does not count."""
    from delta.tables import DeltaTable

    if version is None:
        return True
    quiet = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")
    for commit in DeltaTable.forPath(spark, path).history().where(f"version > {version}").collect():
        metrics = commit["operationMetrics"] or {}
        if commit["operation"] != "MERGE" or any(int(metrics.get(name, 0)) for name in quiet):
            return True
    return False


def changed_upstream(spark, spec: LibrarySpec, state: BuildState, previous: BuildState | None,
                     settings: Settings) -> set[str]:
    """The upstream libraries (not declared as references) whose rows changed since ``previous``."""
    if previous is None:
        return set()
    referenced = dict(spec.references)
    return {name for name, version in state.upstream.items()
            if name not in referenced and previous.upstream.get(name) != version
            and (version is None or data_changed_since(spark, settings.lake_path("base", name),
                                                       previous.upstream.get(name)))}


def plan_build(spec: LibrarySpec, state: BuildState, previous: BuildState | None, path_exists: bool,
               full: bool, upstream_changed: set[str] = frozenset()) -> BuildPlan:
    """Incremental when the last build's state says exactly what changed
    since. Pure. ``upstream_changed``: ``changed_upstream``'s answer."""
    if full:
        return BuildPlan("full", "asked for (--full)", previous=previous)
    if spec.kind != "golden":
        return BuildPlan("full", "derived libraries are rebuilt in full", previous=previous)
    if previous is None or not path_exists:
        return BuildPlan("full", "first build", previous=previous)
    if previous.spec_digest != spec.digest:
        return BuildPlan("full", "the library spec changed since the last build", previous=previous)
    if date.fromisoformat(state.as_of) < date.fromisoformat(previous.as_of):
        return BuildPlan("full", "the build date is before the last build's", previous=previous)
    gone = sorted({load for feed, loads in previous.loads.items() for load in loads}
                  - {load for loads in state.loads.values() for load in loads})
    if gone:
        counted = "1 delivery of the last build is" if len(gone) == 1 else f"{len(gone)} deliveries of the last build are"
        return BuildPlan("full", f"{counted} no longer live (replaced or withdrawn), e.g. {gone[0]}",
                         previous=previous)
    for name in sorted(upstream_changed):
        return BuildPlan("full", f"base.{name} changed since the last build", previous=previous)
    new = sorted({load for loads in state.loads.values() for load in loads}
                 - {load for loads in previous.loads.values() for load in loads})
    return BuildPlan("incremental", f"{len(new)} new deliveries since the last build", new, previous)


def upstream_changed_keys(spark, name: str, key: str, before: int | None, settings: Settings):
    """Keys current in ``base.<name>`` at version ``before`` or now, not both
    (appeared or left), as ``_key``."""
    from pyspark.sql import functions as F

    path = settings.lake_path("base", name)
    now = spark.read.format("delta").load(path).where("is_current").select(F.col(key).alias("_key"))
    if before is None:
        return now
    then = (spark.read.format("delta").option("versionAsOf", before).load(path).where("is_current")
            .select(F.col(key).alias("_key")))
    return now.join(then, "_key", "left_anti").unionByName(then.join(now, "_key", "left_anti"))


def _function(reference: str):
    import importlib

    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def touched_keys(spark, spec: LibrarySpec, frames: dict, plan: BuildPlan, state: BuildState,
                 links_before, links_after, settings: Settings):
    """The keys an incremental build recomputes (column ``_key``, distinct):
    see the module docstring. ``frames``: the source frames after
    resolution (rescued rows included); ``links_before``/``after``: the
    library's entity links before and after this build's resolution."""
    from functools import reduce

    from pyspark.sql import functions as F

    new_loads = plan.new_loads
    parts = []
    for alias, frame in frames.items():
        key = spec.sources[alias].key
        if new_loads:
            parts.append(frame.where(F.col("_load_id").isin(*new_loads) & F.col(key).isNotNull())
                         .select(F.col(key).alias("_key")))
    if links_after is not None:
        lineage = ["source_alias", "_load_id", "_row_number"]
        before = (links_before if links_before is not None else links_after.limit(0)).select(
            *lineage, F.col("key").alias("_before"))
        after = links_after.select(*lineage, F.col("key").alias("_after"))
        moved = before.join(after, lineage, "full_outer").where(~F.col("_before").eqNullSafe(F.col("_after")))
        parts += [moved.where(F.col(side).isNotNull()).select(F.col(side).alias("_key"))
                  for side in ("_before", "_after")]
    if spec.dated_keys:
        dated = _function(spec.dated_keys)(frames, date.fromisoformat(plan.previous.as_of),
                                           date.fromisoformat(state.as_of))
        if dated is not None:
            parts.append(dated)
    path = settings.lake_path("base", spec.library)
    for name, column in spec.references:
        upstream = load_library_spec(name, settings).key
        changed = upstream_changed_keys(spark, name, upstream, plan.previous.upstream.get(name), settings)
        mine = spark.read.format("delta").load(path).where("is_current")
        parts.append(mine.join(changed, mine[column] == changed["_key"], "left_semi")
                     .select(F.col(spec.key).alias("_key")))
    if not parts:
        return spark.createDataFrame([], "_key string")
    return reduce(lambda a, b: a.unionByName(b), parts).where(F.col("_key").isNotNull()).distinct()


def restrict(spec: LibrarySpec, frames: dict, touched) -> dict:
    """Each source frame cut to the rows of the touched keys (on its own key
    column: a marriage's husband and wife are two sources)."""
    from pyspark.sql import functions as F

    keys = F.broadcast(touched) if touched is not None else None
    return {alias: frame.join(keys, frame[spec.sources[alias].key] == keys["_key"], "left_semi")
            for alias, frame in frames.items()}
