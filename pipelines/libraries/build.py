"""Build a base library: current records, gate, merge with history, conflicts and links."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from pipelines.contracts import get_contract
from pipelines.lake.changes import read_replacements
from pipelines.lake.delta import append_rows, delta_exists, delta_version, live_loads_of, read_silver, table_exists
from pipelines.lake.manifest import latest_events
from pipelines.lake.paths import state_lock, table_path
from pipelines.lake.tables import BUILD_OVERRIDES_DDL
from pipelines.libraries.conflicts import record_conflicts
from pipelines.libraries.golden import attribute_conflicts, golden_records, joined_sources, merge_with_history
from pipelines.libraries.incremental import (
    BuildPlan, BuildState, code_change_acceptance, current_state, digest_parts, key_changes_path, maintained_after,
    maintained_digest, overrides_path, parts_digest, plan_build, read_state, restrict, touched_keys, unfinished,
    upstream_changed, upstream_problems, versions_changing_rows, write_state,
)
from pipelines.libraries.resolution import live_load_ids, read_links, resolve_records, write_resolution
from pipelines.library_specs import LibrarySpec, library_names, load_library_spec, spec_function
from pipelines.quality.gate import build_data_docs, start_gx_import, validate_library
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)


def read_silver_sources(spark, spec: LibrarySpec, settings: Settings, live: dict | None = None) -> dict:
    """Silver frames by source alias (the feeds that exist yet). With
    ``live`` (feed -> load ids), only the rows of those loads: silver is
    written before the manifest says a load is loaded, and a build reads
    what the manifest vouches for."""
    frames = {alias: read_silver(spark, source.feed, settings,
                                 live_loads_of(live, source.feed))
              for alias, source in spec.sources.items()}
    return {alias: frame for alias, frame in frames.items() if frame is not None}


def current_records(spark, spec: LibrarySpec, settings: Settings, now: datetime | None = None,
                    plan: BuildPlan | None = None, state: BuildState | None = None, full: bool = False) -> tuple:
    """The library's current records as of ``now`` (the build time; computed
    columns such as ``is_deceased`` may depend on the date), and what the
    build found on the way: (records, conflicts or None, resolution (links,
    reviews) or None, touched keys or None).

    With an incremental ``plan`` (``pipelines.libraries.incremental``) only
    the touched keys' records and conflicts are computed, and the touched
    keys (column ``_key``) are returned for the merge; otherwise every key's.

    Conflicts are the sources' disagreements with the authoritative value
    (``golden.attribute_conflicts``) plus what rescued quarantined rows said
    against their own ID number (``resolution.id_disagreements``): those rows
    are nulled before golden records see them, so only resolution knows.
    ``full`` (``build --full``): resolution's maintained candidates are made afresh too."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    now = now or utc_now()
    if spec.kind == "derived":
        # a derived build reads the live loads of its feeds and dates what it computes by the build's date;
        # incrementally, its spec's function names the touched keys and the build computes only theirs
        live = state.loads if state is not None else None
        if plan is not None and plan.incremental:
            touched = spec_function(spec.touched_keys)(spark, settings, spec, plan, state).distinct().localCheckpoint()
            records = spec_function(spec.build)(spark, settings, spec, now.date(), live, touched=touched)
            return records, None, None, touched
        return spec_function(spec.build)(spark, settings, spec, now.date(), live), None, None, None
    frames = read_silver_sources(spark, spec, settings, state.loads if state is not None else None)
    resolution = disagreements = touched = None
    incremental = plan is not None and plan.incremental
    links_before = read_links(spark, spec.library, settings) if incremental and spec.resolution else None
    if spec.resolution:
        frames, links, reviews, disagreements = resolve_records(
            spark, spec, frames, settings, state.loads if state is not None else None, full,
            plan if incremental else None, state, links_before)
        # checkpoints cut the plans short: Spark's cache lookup canonicalises a
        # whole plan, which costs minutes on these many-join plans
        resolution = (links.localCheckpoint(), reviews.localCheckpoint())
    if incremental:
        touched = touched_keys(spark, spec, frames, plan, state, links_before,
                               resolution[0] if resolution else None, settings, disagreements).localCheckpoint()
        frames = restrict(spec, frames, touched)
        if disagreements is not None:
            disagreements = disagreements.join(F.broadcast(touched), F.col("subject") == F.col("_key"),
                                               "left_semi")
    joined_frame, present = joined_sources(spec, frames)
    joined = (joined_frame.localCheckpoint(), present)
    records = golden_records(spec, frames, joined)
    conflicts = attribute_conflicts(spec, joined)
    if disagreements is not None:
        conflicts = disagreements if conflicts is None else conflicts.unionByName(disagreements)
        # one row per (subject, attribute, other feed): the MERGE key of governance.conflicts
        window = Window.partitionBy("subject", "attribute", "other_feed").orderBy(
            F.col("other_load_id").desc_nulls_last(), F.col("other_value"))
        conflicts = (conflicts.withColumn("_rank", F.row_number().over(window))
                     .where(F.col("_rank") == 1).drop("_rank"))
    conflicts = conflicts.localCheckpoint() if conflicts is not None else None
    if spec.enrich:
        records = spec_function(spec.enrich)(spark, records, frames, settings, now.date())
    return records, conflicts, resolution, touched


def rows_still_counted(path: str, previous: BuildState | None, upto: int | None = None) -> int | None:
    """The last build's count of the current rows of the library table at
    ``path`` (``BuildState.rows``) if it still holds at version ``upto``
    (default: the latest), else None. It holds for the same table (its
    Delta id: a table written anew restarts its versions) whose log still
    reaches back to the version the count was taken at, with no commit
    since that changed rows (``incremental.versions_changing_rows``:
    upkeep, the rehash and empty MERGEs change none). Builds of a library
    take turns (``state_lock``), so no other build commits in between."""
    from deltalake import DeltaTable as LogTable

    if previous is None or previous.rows is None or previous.version is None or not previous.table_id:
        return None
    table = LogTable(path)
    if table.metadata().id != previous.table_id:
        return None
    if table.version() != previous.version and not any(
            commit.get("version") == previous.version
            for commit in table.history(max(table.version() - previous.version + 1, 1))):
        return None                      # the log was cleaned up past it: what happened since is unknown
    changing = [v for v in versions_changing_rows(path, previous.version) if upto is None or v <= upto]
    return None if changing else previous.rows


def current_rows(spark, path: str, previous: BuildState | None, version: int) -> int:
    """How many current rows the library table at ``path`` has at
    ``version``: the last build's count while it holds
    (``rows_still_counted``), else counted (the first Spark job of a day's
    build, about 7 s on the address library at scale 1.0)."""
    known = rows_still_counted(path, previous, version)
    if known is not None:
        return known
    return spark.read.format("delta").option("versionAsOf", version).load(path).where("is_current").count()


def table_id(path: str) -> str:
    """The Delta table id of the table at ``path`` (a table written anew gets another)."""
    from deltalake import DeltaTable as LogTable

    return LogTable(path).metadata().id


def build_library(spark, library: str, settings: Settings | None = None, gate: bool = True,
                  now: datetime | None = None, full: bool = False, accepted_digest: str | None = None,
                  share: DriverShare | None = None, committed=lambda: None, gates: list | None = None) -> dict:
    """Build or refresh one base library; its suite gates the result before it
    is merged (a blocked build leaves the gold table and the governance tables
    as they were). Conflicts, entity links and match reviews are recorded with it.

    A golden library is built incrementally when its last build's state
    allows (``pipelines.libraries.incremental``): only the keys the loads
    since touched are recomputed, gated and merged; ``full`` recomputes
    every key. Both give the same records.

    One build of a library at a time (``state_lock`` on ``base.<library>``):
    a second waits, then finds what the first left (a build's merge spans
    several commits, ``golden._apply_diff``, and its state file is rewritten).

    ``accepted_digest``: an operator accepted a change of build code alone,
    to this digest (``accept_code_change``), so it does not force a full build.

    ``share``: the run's ``DriverShare`` when several libraries are built
    at once (``build_ready``): once its plan is known, a full build waits
    to have the Spark driver to itself; ``committed()`` is called once the
    library's table is as this build leaves it (merged, or left alone), so
    that the libraries built from it may start while its conflicts, entity
    links, report and state are written.

    ``gates``: when given, the build's gate result is appended to it and
    Data Docs are left to the caller (``build_ready`` renders them once per
    run; rendering the index is about half a second); else they are rendered here."""
    from contextlib import ExitStack

    settings = settings or get_settings()
    with ExitStack() as turn:
        def take_turn(plan: BuildPlan) -> None:
            if share is not None:
                turn.enter_context(share.turn(alone=plan.mode == "full"))

        if not settings.lake_is_local:
            return _build_library(spark, library, settings, gate, now, full, accepted_digest, take_turn, committed,
                                  gates)
        with state_lock(f"base.{library}", settings):
            return _build_library(spark, library, settings, gate, now, full, accepted_digest, take_turn, committed,
                                  gates)


def _build_library(spark, library: str, settings: Settings, gate: bool, now: datetime | None,
                   full: bool, accepted_digest: str | None = None, take_turn=lambda plan: None,
                   committed=lambda: None, gates: list | None = None) -> dict:
    import time

    now = now or utc_now()
    started = time.monotonic()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = round(time.monotonic() - started - sum(stages.values()), 2)

    spec = load_library_spec(library, settings)
    path = settings.lake_path("base", library)
    state = current_state(spark, spec, live_load_ids(settings), now, settings)
    previous = read_state(library, settings)
    exists = delta_exists(spark, path)
    plan = plan_build(spec, state, previous, exists, full,
                      upstream_problems(spec, state, previous, settings) if not full else [],
                      {old: new for feed in state.loads
                       for old, new in read_replacements(get_contract(feed, settings.schemas_dir), settings).items()},
                      upstream_changed(spec, state, previous, settings) if exists and not full else None,
                      accepted_digest)
    lap("plan")
    state.maintained_digest = maintained_after(plan, state, previous)
    if plan.mode == "full" and state.maintained_digest != maintained_digest(spec, settings):
        # other libraries' builds read the address keys by what the state says they are kept under
        write_state(unfinished(state, previous), settings)
    take_turn(plan)
    if time.monotonic() - started - sum(stages.values()) >= 0.5:
        lap("waiting for the driver")       # another library's full build had it (several built at once)
    if plan.mode in ("unchanged", "report"):
        # nothing the records are made of changed: the table stays as it is
        version = delta_version(spark, path)
        result = {"library": library, "status": "built", "mode": plan.mode, "mode_reason": plan.reason,
                  "rows": current_rows(spark, path, previous, version), "recomputed": 0,
                  "inserted": 0, "changed": 0, "removed": 0, "stages": stages, "version": version}
        state.rows, state.version, state.table_id = result["rows"], version, table_id(path)
        result["unchanged"] = result["rows"]
        committed()
        if plan.mode == "report" and spec.report:
            result["report"] = spec_function(spec.report)(spark, settings)
            lap("report")
        write_state(state, settings)
        result["seconds"] = round(time.monotonic() - started, 1)
        return result
    records, conflicts, resolution, touched = current_records(spark, spec, settings, now, plan, state, full)
    records = records.localCheckpoint()
    result = {"library": library, "rows": records.count(), "stages": stages, "mode": plan.mode,
              "mode_reason": plan.reason}
    if touched is not None:
        result["touched_keys"] = touched.count()
    lap("records")
    if gate and (result["rows"] or touched is None):
        # every blocking expectation of a library suite is a per-row rule or
        # key uniqueness, so gating the touched keys' records gates the change
        # an incremental build's few thousand records are gated in this process (GX on DuckDB over
        # their Arrow table, as deliveries are): on Spark, GX ran a job per expectation (1-2 s a library)
        gated = records.toArrow() if touched is not None and result["rows"] <= ARROW_GATE_ROWS else records
        check = validate_library(gated, library, f"base.{library}@{now:%Y%m%dT%H%M%S}",
                                 settings, rows=result["rows"])
        result["gate"] = {"blocked": check.blocked,
                          "failures": [o.describe() for o in check.blocking_failures + check.warnings]}
        if gates is None:
            build_data_docs(settings, [check])
        else:
            gates.append(check)
        lap("gate")
        if check.blocked:
            result["status"] = "blocked"
            return result
    write_state(unfinished(state, previous), settings)
    # a key-change log only for the libraries another one references (legal_person -> population)
    referenced = any(library == name for other in library_names(settings)
                     for name, _ in load_library_spec(other, settings).references)
    result |= merge_with_history(spark, records, path, spec.key, now, spec.unversioned_columns, touched,
                                 key_changes_path(library, settings) if referenced else None,
                                 rows_still_counted(path, previous) if exists and plan.mode != "full" else None)
    # rows: the library's current records now; recomputed: how many this build computed
    result["recomputed"], result["rows"] = result["rows"], result["inserted"] + result["changed"] + result["unchanged"]
    result["status"] = "built"
    result["version"] = delta_version(spark, path)
    state.rows, state.version, state.table_id = result["rows"], result["version"], table_id(path)
    lap("merge")
    committed()         # the key-change log is written too: the libraries that reference this one may start
    if spec.kind == "golden":
        with _GOVERNANCE_WRITES:
            result["conflicts"] = record_conflicts(spark, library, conflicts, now, settings, touched)
        lap("conflicts")
    if resolution is not None:
        with _GOVERNANCE_WRITES:
            result |= write_resolution(spark, library, *resolution, settings)
        lap("resolution")
    if spec.report:
        result["report"] = spec_function(spec.report)(spark, settings)
        lap("report")
    write_state(state, settings)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# up to this many records an incremental build's gate runs on their Arrow table (``_build_library``);
# a full build's millions stay in Spark
ARROW_GATE_ROWS = 200_000


# governance.conflicts' MERGE reads the whole table (it closes what a library no longer finds), so
# two libraries' commits at once would conflict in Delta: today only population and legal_person
# write it, one after the other (depends_on), and this keeps it so for libraries built at once
_GOVERNANCE_WRITES = threading.Lock()


class BuildRefused(ValueError):
    """An operator's request a build refuses; the message names each library and why."""


def os_user() -> str | None:
    """The operating-system user running this process (recorded beside the
    ``--by`` name an operator gives), or None where there is none to name."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):        # a container user without a passwd entry
        return None


def record_overrides(rows: list[dict], settings: Settings, user: str | None = None) -> None:
    """Append decisions to ``state/build_overrides`` (one delta-rs commit). ``user``: the OS user
    who asked (default: this process's; the build service names its client's)."""
    if rows:
        who = user or os_user()
        append_rows(overrides_path(settings), [row | {"os_user": who, "decided_at": utc_now()} for row in rows],
                    BUILD_OVERRIDES_DDL)


def accept_code_change(libraries: list[str] | None, reason: str, decided_by: str,
                       settings: Settings | None = None, user: str | None = None) -> dict[str, dict]:
    """Record an operator's word that the build code changed since the last
    builds of ``libraries`` (default: all) without changing what they
    compute, so that their next builds stay incremental instead of
    recomputing every key (at city scale, most of an hour).

    Checked per library (``incremental.code_change_acceptance``): only a
    change of build code alone is accepted; a change of a spec, contract,
    suite, rule set or reference data, an unfinished last build, or a
    state that does not say what it was made of is refused, and then
    nothing is accepted (the others are recorded "not applied"). Every
    decision on a library is appended to ``state/build_overrides`` (who,
    why, which files, the digests before and now); a library whose code did
    not change, or that was never built, needs none and is left out. Any
    refusal raises ``BuildRefused`` naming each library and why, before
    anything is built. Returns the accepted rows by library: a build holds
    to the accepted ``digest`` (code that changed again meanwhile is a full build)."""
    settings = settings or get_settings()
    if not reason or not reason.strip():
        raise BuildRefused("accepting a code change needs a reason (--reason): it is recorded with the builds")
    order = library_names(settings)
    wanted = order if not libraries else [name for name in order if name in libraries]
    now = utc_now()
    rows = []
    for name in wanted:
        spec = load_library_spec(name, settings)
        previous = read_state(name, settings)
        parts = digest_parts(spec, settings)
        state = BuildState(library=name, built_at=now.isoformat(), as_of=now.date().isoformat(),
                           spec_digest=parts_digest(parts), digest_parts=parts)
        if previous is None or previous.spec_digest == state.spec_digest:
            continue
        changed, refusal = code_change_acceptance(previous, state)
        rows.append({"library": name, "decision": "refused" if refusal else "accepted", "changed_files": changed,
                     "previous_digest": previous.spec_digest, "digest": state.spec_digest, "reason": reason.strip(),
                     "decided_by": decided_by, "detail": refusal})
    refused = [row for row in rows if row["decision"] == "refused"]
    if refused:          # nothing is built: the acceptable ones are not applied either
        rows = [row if row["decision"] == "refused" else
                row | {"decision": "not applied", "detail": "refused for another library in the same run"}
                for row in rows]
    record_overrides(rows, settings, user)
    if refused:
        raise BuildRefused("; ".join(f"base.{row['library']}: {row['detail']}" for row in refused)
                           + ": build without --accept-code-change (a full build of those), or name the "
                             "others with --library")
    return {row["library"]: row for row in rows}


def build_libraries(spark, libraries: list[str] | None = None, settings: Settings | None = None,
                    gate: bool = True, now: datetime | None = None, full: bool = False) -> list[dict]:
    """Build ``libraries`` (default: all) in dependency order, at one build time."""
    settings = settings or get_settings()
    now = now or utc_now()
    order = library_names(settings)
    wanted = order if not libraries else [name for name in order if name in libraries]
    return [build_library(spark, name, settings, gate, now, full) for name in wanted]


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
    latest = latest_events(settings, feed)
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


def build_ready(session_of, libraries: list[str] | None = None, settings: Settings | None = None,
                full: bool = False, accept_code: tuple[str, str] | None = None,
                now: datetime | None = None, user: str | None = None) -> tuple[list[dict], list[Readiness]]:
    """Build ``libraries`` (default: all) in dependency order, skipping before
    any Spark work those whose sources are not in the lake (``source_readiness``)
    and, during the run, those whose upstream library the gate blocked.
    ``session_of()`` gives the Spark session, called only when a library is
    built. Returns the build results (skipped ones with ``status`` skipped and
    the reason) and the readiness checks that failed. ``full``: rebuild
    every key (else incrementally where the last build allows);
    ``accept_code`` (reason, by whom): ``accept_code_change`` first, whose
    refusal stops the run before anything is built; what each accepted
    library's build then did is recorded beside the acceptance, with
    ``user`` as the OS user who asked (default: this process's).

    Up to ``settings.build_workers`` libraries are built at once, each as
    soon as the libraries it depends on are (``run_by_dependencies``), each
    in a Spark session of its own over the one driver (``newSession``:
    a session's settings, such as the commit metadata a merge sets, stay
    its own); a full build still runs alone (``DriverShare``). On this
    project's two-core machine two workers gained little at scale 1.0 (day
    4's build 213 s against 218 s, medians): a day's scans keep both cores
    busy, and what two workers hide is the small jobs' latency. The driver
    starts on the calling thread, before any build, so that Ctrl-C there
    cancels the running Spark jobs (PySpark's handler), and only when some
    library can be built. ``now``: the build time (default: the clock)."""
    settings = settings or get_settings()
    accepted: dict[str, dict] = {}
    if accept_code is not None:
        if full:
            raise BuildRefused("--accept-code-change keeps builds incremental; --full recomputes every key: "
                               "ask for one or the other")
        accepted = accept_code_change(libraries, *accept_code, settings, user=user)
    now = now or utc_now()
    readiness = source_readiness(libraries, settings)
    workers = settings.build_workers
    share = DriverShare()
    ready = [check.library for check in readiness if check.ready]
    not_ready = {check.library for check in readiness if not check.ready}
    depends_on = {name: load_library_spec(name, settings).depends_on for name in ready}
    # a library none of whose upstream is missing is built: then (only then) the driver is needed
    driver = None
    if any(not set(depends_on[name]) & not_ready for name in ready):
        # the gate's GX (about 3 s of Python) is imported on a thread while the driver's JVM starts
        start_gx_import()
        driver = session_of()
    gates: list = []

    released = Released()

    def build(name: str) -> dict:
        acceptance = accepted.get(name)
        session = driver.newSession() if workers > 1 else driver
        result = build_library(session, name, settings, now=now, full=full,
                               accepted_digest=acceptance["digest"] if acceptance else None, share=share,
                               committed=lambda: released(name), gates=gates)
        if acceptance:
            applied = result["status"] == "built" and result.get("mode") != "full"
            record_overrides([acceptance | {"decision": "applied" if applied else "not applied",
                                            "detail": f"{result['status']}, {result.get('mode', '-')} build: "
                                                      f"{result.get('mode_reason', '')}"}], settings, user)
        return result

    def interrupt() -> None:
        # Ctrl-C: no build gets the driver any more, and the running ones' Spark jobs are cancelled
        share.stop()
        if driver is not None:
            driver.sparkContext.cancelAllJobs()

    try:
        results = run_by_dependencies(ready, depends_on, build, workers, not_built=not_ready, interrupt=interrupt,
                                      released=released)
    finally:
        # once per run: this run's validations and the index, a failed or interrupted run's too (a
        # blocked gate among them); pages that cannot be rendered neither hide the run's outcome nor undo it
        if gates:
            try:
                build_data_docs(settings, gates)
            except Exception as exc:      # noqa: BLE001 - the tables are committed; the pages can be made again
                log.warning("Data Docs were not rendered (`govlake quality report` renders them): %s", exc)
    return results, [check for check in readiness if not check.ready]


def run_by_dependencies(names: list[str], depends_on: dict[str, list[str]], build, workers: int,
                        not_built: set[str] | None = None, interrupt=None,
                        released: Released | None = None) -> list[dict]:
    """``build(name)`` for each of ``names`` (in dependency order), up to
    ``workers`` at a time: a library starts when every library it depends
    on that is in ``names`` has finished, or has been ``released`` (its
    table is committed, and what its build still does, governance tables
    and state, no other library reads). One whose upstream was not built
    (in ``not_built``, or its build's status is not ``built``) is skipped
    with the reason, as its build would read a stale or missing upstream;
    one that started after its upstream's release keeps that commit, should
    the upstream fail afterwards. Results in the order of ``names``.

    When a build raises, no other starts, those running finish, and the
    first error is raised, with a note naming every other failure and the
    libraries built meanwhile (their commits stand). Ctrl-C
    (``KeyboardInterrupt`` on the calling thread): no other build starts
    and ``interrupt()`` is called every second until the running builds
    have ended (the caller cancels their Spark jobs: a build between two
    jobs would otherwise go on), then it is raised. With one worker: one
    after another on the calling thread, in the order of ``names``."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    not_built = set(not_built or ())
    results: dict[str, dict] = {}
    waiting = list(names)
    errors: list[tuple[str, BaseException]] = []

    def startable() -> list[str]:
        """Skips what cannot be built; the names whose upstream has ended, in order."""
        ready = []
        for name in list(waiting):
            upstream = [other for other in depends_on.get(name, []) if other in not_built]
            if upstream:
                waiting.remove(name)
                not_built.add(name)
                results[name] = {"library": name, "status": "skipped", "rows": 0,
                                 "reason": f"upstream {', '.join('base.' + n for n in upstream)} "
                                           "not built in this run"}
            elif not any(other in names and other not in results and not (released is not None and other in released)
                         for other in depends_on.get(name, [])):
                ready.append(name)
        return ready

    def ended(name: str, result: dict) -> None:
        results[name] = result
        if result["status"] != "built":
            not_built.add(name)

    if workers <= 1:
        while waiting and not errors:
            ready = startable()
            if not ready:
                break
            waiting.remove(ready[0])
            try:
                ended(ready[0], build(ready[0]))
            except Exception as exc:
                errors.append((ready[0], exc))
        if errors:
            waiting.clear()
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="govlake-build") as pool:
            running: dict = {}
            try:
                while waiting or running:
                    for name in startable() if not errors else []:
                        if len(running) < workers:
                            waiting.remove(name)
                            with _ctrl_c_after():
                                running[pool.submit(build, name)] = name
                    if errors:
                        waiting.clear()
                    if not running:
                        break
                    # a release is no future's end: it is looked for a few times a second
                    done, _ = wait(running, timeout=0.2 if released is not None else None,
                                   return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        try:
                            ended(name, future.result())
                        except Exception as exc:      # the others finish first: no half-run build is left
                            errors.append((name, exc))
                            not_built.add(name)
            except KeyboardInterrupt:
                waiting.clear()
                while running:
                    try:
                        if interrupt is not None:
                            interrupt()
                        done, _ = wait(running, timeout=1)
                    except KeyboardInterrupt:         # pressed again: still stopping what runs
                        continue
                    for future in done:
                        running.pop(future)
                raise
    if errors:
        first = errors[0][1]
        for name, exc in errors[1:]:
            first.add_note(f"base.{name} failed too: {exc}")
        built = [name for name in names if results.get(name, {}).get("status") == "built"]
        if built:
            first.add_note(f"built before the error (committed): {', '.join('base.' + n for n in built)}")
        raise first
    if waiting:                   # a cycle, or an upstream named but never built: nothing can start
        raise ValueError(f"cannot build {', '.join(waiting)}: their depends_on never finish "
                         f"({', '.join(f'{n} -> {depends_on.get(n)}' for n in waiting)})")
    return [results[name] for name in names if name in results]


class Released:
    """The libraries whose tables a build has committed while it still runs
    (``run_by_dependencies``): called with a name from a build's thread,
    asked with ``in`` by the scheduler's."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._names


@contextmanager
def _ctrl_c_after():
    """Ctrl-C held back until the block has run: a build submitted to the
    pool while it came must be known to the loop that interrupts the
    running builds. (Blocking SIGINT would not do: the kernel hands it to
    another thread, and Python runs its handler on this one at once.)"""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda number, frame: came.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        if came and callable(handler):
            handler(signal.SIGINT, None)           # PySpark's cancels the jobs, and raises KeyboardInterrupt
        elif came and handler != signal.SIG_IGN:
            raise KeyboardInterrupt


class BuildInterrupted(RuntimeError):
    """The run was interrupted (Ctrl-C) before this build had the driver."""


class DriverShare:
    """Turns on the Spark driver for the libraries one run builds at once:
    any number of incremental builds (small jobs, mostly waiting on the
    driver) together, a full build (every key: the memory and both cores
    a whole library's build takes) alone. A full build that waits is let
    in before any build that asks after it. After ``stop()`` (Ctrl-C) no
    build gets a turn: those waiting raise ``BuildInterrupted``."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sharing = 0
        self._alone = False
        self._stopped = False
        self.waiting = {"alone": 0, "sharing": 0}       # how many builds wait for a turn, by kind

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    @contextmanager
    def turn(self, alone: bool):
        kind = "alone" if alone else "sharing"
        with self._changed:
            self.waiting[kind] += 1
            try:
                if alone:
                    self._changed.wait_for(lambda: self._stopped or not (self._alone or self._sharing))
                else:
                    self._changed.wait_for(lambda: self._stopped or not (self._alone or self.waiting["alone"]))
            finally:
                self.waiting[kind] -= 1
            if self._stopped:
                raise BuildInterrupted("the build was interrupted before this library had its turn")
            if alone:
                self._alone = True
            else:
                self._sharing += 1
        try:
            yield
        finally:
            with self._changed:
                if alone:
                    self._alone = False
                else:
                    self._sharing -= 1
                self._changed.notify_all()
