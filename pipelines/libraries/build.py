"""Build a base library: current records, gate, merge with history, conflicts and links."""

from __future__ import annotations

from datetime import datetime

from pipelines.lake.delta import delta_version, read_silver
from pipelines.libraries.conflicts import record_conflicts
from pipelines.libraries.golden import attribute_conflicts, golden_records, joined_sources, merge_with_history
from pipelines.libraries.resolution import resolve_records, write_resolution
from pipelines.library_specs import LibrarySpec, library_names, load_library_spec
from pipelines.quality.gate import validate_library
from pipelines.settings import Settings, get_settings, utc_now


def read_silver_sources(spark, spec: LibrarySpec, settings: Settings) -> dict:
    """Silver frames by source alias (the feeds that exist yet)."""
    frames = {alias: read_silver(spark, source.feed, settings) for alias, source in spec.sources.items()}
    return {alias: frame for alias, frame in frames.items() if frame is not None}


def _function(reference: str):
    import importlib

    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def current_records(spark, spec: LibrarySpec, settings: Settings) -> tuple:
    """The library's current records, and what the build found on the way:
    (records, conflicts or None, resolution (links, reviews) or None)."""
    if spec.kind == "derived":
        return _function(spec.build)(spark, settings, spec), None, None
    frames = read_silver_sources(spark, spec, settings)
    resolution = None
    if spec.resolution:

        frames, links, reviews = resolve_records(spark, spec, frames, settings)
        # checkpoints cut the plans short: Spark's cache lookup canonicalises a
        # whole plan, which costs minutes on these many-join plans
        resolution = (links.localCheckpoint(), reviews.localCheckpoint())
    joined_frame, present = joined_sources(spec, frames)
    joined = (joined_frame.localCheckpoint(), present)
    records = golden_records(spec, frames, joined)
    conflicts = attribute_conflicts(spec, joined)
    conflicts = conflicts.localCheckpoint() if conflicts is not None else None
    if spec.enrich:
        records = _function(spec.enrich)(spark, records, frames, settings)
    return records, conflicts, resolution


def build_library(spark, library: str, settings: Settings | None = None, gate: bool = True,
                  now: datetime | None = None) -> dict:
    """Build or refresh one base library; its suite gates the result before it
    is merged (a blocked build leaves the gold table and the governance tables
    as they were). Conflicts, entity links and match reviews are recorded with it."""
    import time

    settings = settings or get_settings()
    now = now or utc_now()
    started = time.monotonic()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = round(time.monotonic() - started - sum(stages.values()), 2)

    spec = load_library_spec(library, settings)
    records, conflicts, resolution = current_records(spark, spec, settings)
    records = records.localCheckpoint()
    path = settings.lake_path("base", library)
    result = {"library": library, "rows": records.count(), "stages": stages}
    lap("records")
    if gate:
        check = validate_library(records, library, f"base.{library}@{now:%Y%m%dT%H%M%S}",
                                 settings, rows=result["rows"])
        result["gate"] = {"blocked": check.blocked,
                          "failures": [o.describe() for o in check.blocking_failures + check.warnings]}
        lap("gate")
        if check.blocked:
            result["status"] = "blocked"
            return result
    result |= merge_with_history(spark, records, path, spec.key, now, spec.unversioned_columns)
    result["status"] = "built"
    result["version"] = delta_version(spark, path)
    lap("merge")
    if spec.kind == "golden":

        result["conflicts"] = record_conflicts(spark, library, conflicts, now, settings)
        lap("conflicts")
    if resolution is not None:

        result |= write_resolution(spark, library, *resolution, settings)
        lap("resolution")
    if spec.report:
        result["report"] = _function(spec.report)(spark, settings)
        lap("report")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def build_libraries(spark, libraries: list[str] | None = None, settings: Settings | None = None,
                    gate: bool = True) -> list[dict]:
    """Build ``libraries`` (default: all) in dependency order."""
    settings = settings or get_settings()
    order = library_names(settings)
    wanted = order if not libraries else [name for name in order if name in libraries]
    return [build_library(spark, name, settings, gate) for name in wanted]
