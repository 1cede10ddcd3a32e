"""Incremental builds: recompute only the keys the loads since the last build touched.

A golden library's record for a key depends only on the source rows with that
key (``golden.latest_per_key``), so a build after day k's deliveries needs
the keys those deliveries carry, plus the keys whose record changes for
other reasons:

- entity resolution: a new key can make an earlier unkeyed record
  linkable, or ambiguous. Resolution matches the records that can have a
  new result (``resolution.resolve_records``: new loads' records and those
  in a block whose candidates changed); the keys of every link that
  differs from the last build's are touched;
- the date alone (``incremental.dated`` in the spec): e.g. a residence
  permit that lapsed since the last build changes ``is_deceased``;
- a library of ``depends_on`` (``incremental.references``): the keys that
  appeared in or left ``base.population`` touch the entities whose legal
  representative they are.

Everything else is a full rebuild (``build --full`` does the same): the first
build; a change of the spec, its sources' contracts, its suite or the build
code since the last build; a delivery live at the last build that is no
longer (a correction replaced it, a governor withdrew it); a new delivery of
standard addresses (every key's address codes are recomputed); an upstream
library that changed without a declared reference, or whose version of the
last build can no longer be read (vacuumed); a last build that did not
finish.

A derived library is built incrementally when its spec names a function that
gives its touched keys (``incremental.touched``): the keys of the new loads'
rows, the keys whose records read something that changed in an upstream
library (its key-change log: appeared, changed or left), and those whose
records change with the date alone. Its build function then computes only
those keys' records. The others (address, grid) are rebuilt in full.

What a build knew is kept in ``<lake>/state/builds/<library>.json``: the live
loads per feed, the upstream tables' versions, a digest of what the build is
made of and the build date. Before the merge the state is written marked
unfinished, with the loads of both builds; the finished state replaces it at
the end. A build that dies in between leaves an unfinished state, and the
next build is a full one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

from pipelines.contracts import get_contract
from pipelines.governance.reviews import decisions_digest
from pipelines.lake.changes import change_rows
from pipelines.lake.delta import delta_version
from pipelines.lake.upkeep import CLUSTERED
from pipelines.libraries.golden import REHASHED
from pipelines.library_specs import LibrarySpec, load_library_spec, spec_function
from pipelines.settings import PROJECT_ROOT, Settings

# the computed columns of the golden libraries (enrich) read these feeds for every key
ENRICH_READS_FEEDS = ("nr.standard_address",)
# what a build is made of besides its spec: a change to any of them is a full build
BUILD_CODE = ("pipelines/libraries/*.py", "pipelines/reference.py", "pipelines/ingest/rules.py",
              "pipelines/ingest/classify.py")
# of those, data the rules read (towns, ID shapes, missing-value tokens): like
# a spec, a change says what the records are, so an operator cannot accept it
REFERENCE_DATA = ("pipelines/reference.py",)


@dataclass
class BuildState:
    """What one library's last build was made from."""

    library: str
    built_at: str
    as_of: str                                            # the build date (ISO)
    spec_digest: str
    loads: dict[str, list[str]] = field(default_factory=dict)      # feed -> live load ids
    upstream: dict[str, int | None] = field(default_factory=dict)  # library -> Delta version read
    finished: bool = True                                 # False from just before the merge to the end
    # feed -> its silver table's Delta version: any write to silver (even one
    # no manifest event vouches for) makes a build look at it again
    silver: dict[str, int | None] = field(default_factory=dict)
    snapshot_feeds: list[str] = field(default_factory=list)   # feeds that deliver whole registers
    # what spec_digest is made of, part by part (``digest_parts``): a full
    # build's reason names the files that changed, and an operator may accept
    # a change of code alone (``code_change_acceptance``)
    digest_parts: dict[str, str] = field(default_factory=dict)
    # the digest its maintained tables are kept under (``maintained_after``); "" in states written before it
    maintained_digest: str = ""
    # the table's current rows, its Delta version and its Delta id as the
    # build left it: the next build reuses the count while it holds
    # (``build.rows_still_counted``) instead of counting again
    rows: int | None = None
    version: int | None = None
    table_id: str = ""
    # the reviewers' live decisions on its match reviews (``reviews.decisions_digest``): new ones are applied
    review_decisions: str = ""


@dataclass
class BuildPlan:
    """Full or incremental, and why."""

    mode: str                                             # full | incremental
    reason: str
    new_loads: list[str] = field(default_factory=list)
    previous: BuildState | None = None
    # loads that replaced others since the last build (snapshots, corrections):
    # their change rows are touched (pipelines.lake.changes)
    change_loads: list[str] = field(default_factory=list)
    # new loads compared against loads the last build saw: only their change
    # rows are touched, not every row they carry
    diffed_loads: list[str] = field(default_factory=list)

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"


def _state_path(library: str, settings: Settings):
    return settings.local_lake_path("state", "builds") / f"{library}.json"


def read_state(library: str, settings: Settings) -> BuildState | None:
    path = _state_path(library, settings)
    if not path.exists():
        return None
    # fields a later version wrote are left out: a rollback still reads the state
    known = {f.name for f in dataclasses.fields(BuildState)}
    return BuildState(**{k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k in known})


def write_state(state: BuildState, settings: Settings) -> None:
    """Atomically (write, then rename): a reader sees the old state or the new."""
    path = _state_path(state.library, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(state), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, path)


def spec_feeds(spec: LibrarySpec) -> list[str]:
    """Every feed whose loads can change the library: its sources', its
    resolution candidates', its report's (``report_reads``) and, for
    computed columns, ``ENRICH_READS_FEEDS``."""
    feeds = {source.feed for source in spec.sources.values()} | set(spec.report_reads)
    if spec.resolution:
        feeds |= set(spec.resolution.candidates)
    if spec.kind == "golden" and spec.enrich:
        feeds |= set(ENRICH_READS_FEEDS)
    return sorted(feeds)


def digest_parts(spec: LibrarySpec, settings: Settings) -> dict[str, str]:
    """What a build of ``spec`` is made of, part by part, each with a digest
    of its content: the library spec (``schemas/libraries/...``), the
    contracts of its feeds (``schemas/feeds/...``), its quality suite
    (``quality/libraries/...``), the rule sets it reads (``rule_sets``), and
    the build code (``BUILD_CODE``, paths from the project root). Names do
    not depend on where the folders are. A part that does not exist is ``<none>``."""
    import hashlib

    def digest(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()[:16]

    schemas = Path(settings.schemas_dir)
    files = {f"schemas/feeds/{feed.split('.')[0]}/{feed.split('.')[1]}.yaml":
             schemas / "feeds" / feed.split(".")[0] / f"{feed.split('.')[1]}.yaml" for feed in spec_feeds(spec)}
    files[f"quality/libraries/{spec.library}.yaml"] = Path(settings.quality_dir) / "libraries" / f"{spec.library}.yaml"
    files |= {f"schemas/rules/{name}.yaml": schemas / "rules" / f"{name}.yaml" for name in spec.rule_sets}
    files |= {path.relative_to(PROJECT_ROOT).as_posix(): path
              for pattern in BUILD_CODE for path in PROJECT_ROOT.glob(pattern)}
    parts = {f"schemas/libraries/{spec.library}.yaml": digest(spec.digest.encode())}
    parts |= {name: digest(path.read_bytes()) if path.is_file() else "<none>" for name, path in sorted(files.items())}
    return parts


def parts_digest(parts: dict[str, str]) -> str:
    """One digest of ``digest_parts``' answer. Pure."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_digest(spec: LibrarySpec, settings: Settings) -> str:
    """A digest of what a build of ``spec`` is made of (``digest_parts``).
    Rows an incremental build leaves alone were computed by the code of
    their time; when any part changes, every key is recomputed."""
    return parts_digest(digest_parts(spec, settings))


def is_code_part(name: str) -> bool:
    """May the digest part ``name`` change without changing what the records
    are? Build code (``BUILD_CODE``) only; not reference data, a spec, a
    contract, a suite or a rule set."""
    from fnmatch import fnmatchcase

    return name not in REFERENCE_DATA and any(fnmatchcase(name, pattern) for pattern in BUILD_CODE)


def named_parts(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 2 more``: digest parts named in a reason. Pure."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def changed_parts(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """The digest parts that differ between two builds (added, removed or changed), sorted. Pure."""
    return sorted(name for name in set(before) | set(now) if before.get(name) != now.get(name))


def code_change_acceptance(previous: BuildState | None, state: BuildState) -> tuple[list[str], str | None]:
    """Whether an operator may accept that what changed since ``previous``
    (the last build) is build code that leaves the records as they were,
    so the build stays incremental: (the files that changed, why not or
    None). Refused when there is no finished last build; when its state
    does not say what it was made of (written before per-part digests, or
    parts that do not give its digest); or when anything besides code
    changed: a spec, contract, suite, rule set or reference data says what
    the records are, and only a full build applies it to every key. Pure."""
    if previous is None:
        return [], "it has no finished build to compare with"
    if not previous.finished:
        return [], "its last build did not finish (the next build is a full one whatever the code)"
    if previous.spec_digest == state.spec_digest:
        return [], None
    changed = changed_parts(previous.digest_parts, state.digest_parts)
    if (not previous.digest_parts or not changed
            or parts_digest(previous.digest_parts) != previous.spec_digest):
        return [], "its last build's state does not say which files it was made of (built before per-file digests)"
    data = [name for name in changed if not is_code_part(name)]
    if data:
        return changed, (f"not only build code changed since its last build: {named_parts(data)} "
                         "(what the records are made of)")
    return changed, None


def overrides_path(settings: Settings) -> str:
    """The operators' log of accepted and refused code changes (``build.accept_code_change``)."""
    return settings.lake_path("state", "build_overrides")


def maintained_after(plan: BuildPlan, state: BuildState, previous: BuildState | None) -> str:
    """The digest a build leaves its maintained tables under (its rescued
    rows and resolution candidates; the address library's keys and match
    report): a full build's own (a full build makes them with its code),
    otherwise the last build's, which is its own unless an operator
    accepted a change of build code alone (``build.accept_code_change``):
    the operator's word is that the code computes what it did, and making
    them again costs minutes at city scale (every live load's quarantined
    rows re-standardised, 10M+ candidates normalised, every delivery's
    addresses matched) for a build that is otherwise a day's. Pure."""
    if plan.mode == "full" or previous is None:
        return state.spec_digest
    return previous.maintained_digest or previous.spec_digest


def maintained_digest(spec: LibrarySpec, settings: Settings) -> str:
    """``maintained_after``'s answer for ``spec``'s library as another
    build sees it (the address keys are read by every golden library's
    build): as its state has it once built with this code; before that,
    the last build's when the latest decision on this change of code is an
    operator's acceptance not yet built (its build keeps the tables), else
    this code's digest. A full build writes its state when it starts, so
    that it is seen making its own."""
    from pipelines.lake.delta import read_delta_rows

    digest = build_digest(spec, settings)
    state = read_state(spec.library, settings)
    if state is None:
        return digest
    if state.spec_digest == digest:
        return state.maintained_digest or digest
    decisions = sorted((row for row in read_delta_rows(overrides_path(settings), [("library", "=", spec.library)])
                        if row["previous_digest"] == state.spec_digest and row["digest"] == digest),
                       key=lambda row: row["decided_at"])
    pending = bool(decisions) and decisions[-1]["decision"] == "accepted"
    return (state.maintained_digest or state.spec_digest) if pending else digest


def upstream_versions(spark, spec: LibrarySpec, settings: Settings) -> dict[str, int | None]:
    return {name: delta_version(spark, settings.lake_path("base", name)) for name in sorted(spec.depends_on)}


def silver_versions(spec: LibrarySpec, settings: Settings) -> dict[str, int | None]:
    """The Delta version of each feed's silver table (None: no table)."""
    from deltalake import DeltaTable

    from pipelines.lake.paths import table_path

    versions = {}
    for feed in spec_feeds(spec):
        path = table_path("silver", get_contract(feed, settings.schemas_dir), settings)
        versions[feed] = DeltaTable(path).version() if DeltaTable.is_deltatable(path) else None
    return versions


def current_state(spark, spec: LibrarySpec, live: dict[str, list[str]], now: datetime,
                  settings: Settings) -> BuildState:
    parts = digest_parts(spec, settings)
    return BuildState(library=spec.library, built_at=now.isoformat(), as_of=now.date().isoformat(),
                      spec_digest=parts_digest(parts), digest_parts=parts,
                      loads={feed: sorted(live.get(feed, [])) for feed in spec_feeds(spec)},
                      upstream=upstream_versions(spark, spec, settings),
                      silver=silver_versions(spec, settings),
                      snapshot_feeds=sorted(feed for feed in spec_feeds(spec)
                                            if get_contract(feed, settings.schemas_dir).delivery == "snapshot"),
                      review_decisions=decisions_digest(settings, spec.library) if spec.resolution else "")


def unfinished(state: BuildState, previous: BuildState | None) -> BuildState:
    """The state written just before the merge: marked unfinished, with the
    loads of the last build and this one (a crash leaves it, and the next
    build is full)."""
    loads = {feed: sorted(set(loads) | set((previous.loads if previous else {}).get(feed, [])))
             for feed, loads in state.loads.items()}
    return BuildState(**(asdict(state) | {"loads": loads, "finished": False}))


def versions_changing_rows(path: str, version: int) -> list[int]:
    """The commits after ``version`` of the Delta table at ``path`` that
    changed rows. A MERGE that inserted, updated and deleted nothing,
    upkeep (OPTIMIZE, VACUUM, clustering), table properties (deletion
    vectors turned on) and the one-off rehash of an older table
    (``golden.rehash_older_table``) do not count; a MERGE whose commit
    lacks Spark's row metrics (another writer, metrics turned off) does."""
    from deltalake import DeltaTable

    quiet = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")
    changing = []
    table = DeltaTable(path)
    # only the commits after ``version``: a merge's entry lists a day's key hashes, and the log is long
    for commit in table.history(max(table.version() - version, 1)):           # newest first
        if commit.get("version", 0) <= version:
            break
        operation, metrics = commit.get("operation", ""), commit.get("operationMetrics") or {}
        if operation in ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"):
            continue
        if str(commit.get("userMetadata") or "").startswith((CLUSTERED, REHASHED)):
            continue
        if operation != "MERGE" or not all(name in metrics for name in quiet) or any(
                int(metrics[name]) for name in quiet):
            changing.append(commit["version"])
    return sorted(changing)


def data_changed_since(path: str, version: int | None) -> bool:
    """Did any commit after ``version`` of the Delta table at ``path`` change
    rows (``versions_changing_rows``)? True without a version."""
    return version is None or bool(versions_changing_rows(path, version))


def _readable(path: str, version: int) -> bool:
    """Are the data files of ``version`` still there (not vacuumed)?"""
    from urllib.parse import unquote, urlparse

    from deltalake import DeltaTable

    try:
        uris = DeltaTable(path, version=version).file_uris()
    except Exception:                                   # the log itself was cleaned up
        return False
    return all(Path(unquote(urlparse(uri).path) if uri.startswith("file:") else uri).exists() for uri in uris)


def upstream_problems(spec: LibrarySpec, state: BuildState, previous: BuildState | None,
                      settings: Settings) -> list[str]:
    """Why the upstream libraries rule out an incremental build: one that
    changed without a declared reference, or a referenced one whose version
    of the last build can no longer be read."""
    if previous is None:
        return []
    referenced = dict(spec.references)
    problems = []
    for name, version in state.upstream.items():
        before = previous.upstream.get(name)
        if before == version:
            continue
        path = settings.lake_path("base", name)
        if name not in referenced and (version is None or data_changed_since(path, before)):
            problems.append(f"base.{name} changed since the last build")
        elif name in referenced and (before is None or version is None or not _readable(path, before)):
            problems.append(f"base.{name} version {before} of the last build can no longer be read")
    return problems


def replacement_chains(gone: list[str], replacements: dict[str, str], live: set[str]) -> tuple[list[str], list[str]]:
    """Which ``gone`` loads were replaced, directly or through later
    replacements, by a load live now, and the replacing loads on the way
    (whose change rows together cover every row that differs). Returns
    (gone loads not explained so, replacing loads). Pure."""
    unexplained, on_the_way = [], set()
    for load in gone:
        chain, current = [], replacements.get(load)
        while current is not None and current not in chain:
            chain.append(current)
            if current in live:
                break
            current = replacements.get(current)
        if chain and chain[-1] in live:
            on_the_way |= set(chain)
        else:
            unexplained.append(load)
    return unexplained, sorted(on_the_way)


def upstream_changed(spec: LibrarySpec, state: BuildState, previous: BuildState | None,
                     settings: Settings) -> list[str]:
    """The libraries of ``depends_on`` whose rows changed since the versions
    the last build read (upkeep and merges that changed nothing aside)."""
    if previous is None:
        return sorted(state.upstream)
    changed = []
    for name, version in state.upstream.items():
        before = previous.upstream.get(name)
        if version == before:
            continue
        if (version is None or before is None or version < before       # rebuilt from scratch meanwhile
                or data_changed_since(settings.lake_path("base", name), before)):
            changed.append(name)
    return changed


def plan_build(spec: LibrarySpec, state: BuildState, previous: BuildState | None, path_exists: bool,
               full: bool, upstream: list[str] = (), replacements: dict[str, str] | None = None,
               changed_upstream: list[str] | None = None, accepted_digest: str | None = None) -> BuildPlan:
    """Incremental when the last build's state says exactly what changed
    since; ``unchanged`` (nothing to compute) when nothing the library reads
    did, ``report`` when only its report's feeds did. Pure.
    ``upstream``: ``upstream_problems``'s answer; ``replacements``: replaced
    load -> the load that replaced it, from the feeds' change tables
    (``pipelines.lake.changes.read_replacements``); ``changed_upstream``:
    ``upstream_changed``'s answer (None: assume every upstream changed);
    ``accepted_digest``: the digest an operator accepted a change of build
    code alone to (``build.accept_code_change``); it holds only if the build
    is made of exactly that, and the change passes ``code_change_acceptance``."""
    if full:
        return BuildPlan("full", "asked for (--full)", previous=previous)
    if previous is None or not path_exists:
        return BuildPlan("full", "first build", previous=previous)
    if not previous.finished:
        return BuildPlan("full", "the last build did not finish", previous=previous)
    accepted = ""
    if previous.spec_digest != state.spec_digest:
        changed = changed_parts(previous.digest_parts, state.digest_parts) if previous.digest_parts else []
        if accepted_digest != state.spec_digest or code_change_acceptance(previous, state)[1] is not None:
            named = f" ({named_parts(changed)})" if changed else ""
            return BuildPlan("full", "the library spec, its feeds' contracts, its suite or the build code changed "
                                     f"since the last build{named}", previous=previous)
        accepted = f"; the change of {named_parts(changed)} accepted as leaving the records as they were"
    if date.fromisoformat(state.as_of) < date.fromisoformat(previous.as_of):
        return BuildPlan("full", "the build date is before the last build's", previous=previous)
    changed_feeds = {feed for feed in set(state.loads) | set(previous.loads)
                     if set(state.loads.get(feed, [])) != set(previous.loads.get(feed, []))
                     or state.silver.get(feed, -1) != previous.silver.get(feed, -2)}
    read_by_build = set(spec_feeds(spec)) - (set(spec.report_reads) - {s.feed for s in spec.sources.values()})
    if (changed_upstream is not None and not changed_upstream and not changed_feeds & read_by_build
            and (not spec.reads_date or state.as_of == previous.as_of)
            and state.review_decisions == previous.review_decisions):
        if changed_feeds:
            return BuildPlan("report", f"only feeds its report reads changed ({', '.join(sorted(changed_feeds))})"
                                       + accepted, previous=previous)
        return BuildPlan("unchanged", "nothing it reads changed since the last build" + accepted, previous=previous)
    if spec.kind != "golden" and not spec.touched_keys:
        return BuildPlan("full", "this derived library is rebuilt in full (no incremental.touched)",
                         previous=previous)
    live = {load for loads in state.loads.values() for load in loads}
    gone = sorted({load for feed, loads in previous.loads.items() for load in loads} - live)
    gone, change_loads = replacement_chains(gone, replacements or {}, live)
    if gone:
        counted = "1 delivery of the last build is" if len(gone) == 1 else f"{len(gone)} deliveries of the last build are"
        return BuildPlan("full", f"{counted} no longer live and not replaced with recorded changes (withdrawn, "
                                 f"or replaced before change tables), e.g. {gone[0]}", previous=previous)
    if upstream:
        return BuildPlan("full", upstream[0], previous=previous)
    before = {load for loads in previous.loads.values() for load in loads}
    new = sorted({load for loads in state.loads.values() for load in loads} - before)
    for feed in ENRICH_READS_FEEDS:
        if set(state.loads.get(feed, [])) - before:
            return BuildPlan("full", f"{feed} delivered since the last build: every key's computed columns "
                                     "read it", previous=previous)
    # a new snapshot that replaced only loads the last build saw: its change
    # rows say what differs. A correction of a changes feed is not: its rows
    # are newer than every earlier delivery's, so a key it repeats unchanged
    # can still take its value again (golden.latest_per_key); all its keys are touched
    seen = {load for loads in previous.loads.values() for load in loads}
    snapshots = {load for feed in state.snapshot_feeds for load in state.loads.get(feed, [])}
    replaced_by: dict[str, set[str]] = {}
    for old, load in (replacements or {}).items():
        replaced_by.setdefault(load, set()).add(old)
    diffed = sorted(load for load in new if load in snapshots and load in replaced_by and replaced_by[load] <= seen)
    change_loads = sorted(set(change_loads) | set(diffed))
    return BuildPlan("incremental", f"{len(new)} new deliveries since the last build{accepted}", new, previous,
                     change_loads, diffed)


def key_changes_path(library: str, settings: Settings) -> str:
    """The key-change log of ``base.<library>``: per version a build
    committed, the keys it opened (appeared), changed or closed (left)
    (``golden.merge_with_history``)."""
    return settings.lake_path("state", "key_changes", library)


def logged_key_changes(spark, name: str, before: int, settings: Settings, include_changed: bool = False):
    """The keys that appeared in or left ``base.<name>`` after version
    ``before`` (column ``_key``), from its key-change log, and with
    ``include_changed`` those whose record changed; None when the log
    does not cover every commit since that changed rows (no log yet, or a
    merge whose log entry was not written)."""
    from deltalake import DeltaTable
    from pyspark.sql import functions as F

    path = settings.lake_path("base", name)
    needed = versions_changing_rows(path, before)
    if not needed:                      # nothing changed rows since: no log needed
        return spark.createDataFrame([], "_key string")
    log = key_changes_path(name, settings)
    if not DeltaTable.is_deltatable(log):
        return None
    entries = (spark.read.format("delta").load(log)
               .where((F.col("table_id") == DeltaTable(path).metadata().id) & F.col("version").isin(*needed))
               .localCheckpoint())
    if {r[0] for r in entries.select("version").distinct().collect()} != set(needed):
        return None
    # an entry without a key only says its commit was logged (golden: the closed copies change no current record)
    kept = entries.where(F.col("key").isNotNull())
    kept = kept if include_changed else kept.where(F.col("change") != "changed")
    return kept.select(F.col("key").alias("_key")).distinct()


def _current_keys_then_and_now(spark, name: str, key: str, before: int | None, settings: Settings):
    """(keys current in ``base.<name>`` now, at version ``before`` or None), as ``_key``."""
    from pyspark.sql import functions as F

    path = settings.lake_path("base", name)

    def current(reader):
        return reader.load(path).where("is_current").select(F.col(key).alias("_key"))

    now = current(spark.read.format("delta"))
    return now, (None if before is None else current(spark.read.format("delta").option("versionAsOf", before)))


def compared_key_changes(spark, name: str, key: str, before: int | None, settings: Settings):
    """Keys current in ``base.<name>`` at version ``before`` or now, not both
    (appeared or left), as ``_key``, by comparing the two versions (two
    scans of the table); every current key without ``before``."""
    now, then = _current_keys_then_and_now(spark, name, key, before, settings)
    if then is None:
        return now
    return now.join(then, "_key", "left_anti").unionByName(then.join(now, "_key", "left_anti"))


def upstream_changed_keys(spark, name: str, key: str, before: int | None, settings: Settings):
    """Keys that appeared in or left ``base.<name>`` since version ``before``
    (``_key``): from its key-change log (a few small files a day) where that
    covers every commit since, else ``compared_key_changes``. The log may
    also name a key that came and went again in between: recomputing a key
    more gives the same records."""
    logged = logged_key_changes(spark, name, before, settings) if before is not None else None
    return logged if logged is not None else compared_key_changes(spark, name, key, before, settings)


def changed_upstream_keys(spark, name: str, key: str, before: int | None, settings: Settings):
    """Keys of ``base.<name>`` whose current record appeared, changed or left
    since version ``before`` (``_key``), for a derived library whose records
    read the upstream's columns: from its key-change log, or, when the log
    does not cover the commits since (a merge that died before its entry, a
    write that was not a merge), every key current at ``before`` or now, so
    that a key which left is among them (recomputing more keys gives the
    same records). ``upstream_problems`` has made sure ``before`` is readable."""
    logged = logged_key_changes(spark, name, before, settings, include_changed=True) if before is not None else None
    if logged is not None:
        return logged
    now, then = _current_keys_then_and_now(spark, name, key, before, settings)
    return now if then is None else now.unionByName(then).distinct()


# above this many touched keys a join of them with a table is left to Spark's
# planner: a broadcast of millions of keys (a fallback to every key) would
# strain the driver
BROADCAST_KEYS = 1_000_000


def joinable_keys(touched):
    """``touched`` (checkpointed), hinted for a broadcast join when it is small."""
    from pyspark.sql import functions as F

    return F.broadcast(touched) if touched.count() <= BROADCAST_KEYS else touched


def new_rows(spark, feed: str, plan: BuildPlan, state: BuildState, settings: Settings):
    """``feed``'s rows that an incremental build has to look at, or None:
    the rows of its new loads (a diffed snapshot's aside) and the change rows
    (both sides) of the loads that replaced others. For a derived library's
    touched keys: the contract's columns are there, lineage and ``_change``
    columns where the part has them."""
    from pipelines.lake.delta import read_silver

    parts = []
    loads = [load for load in state.loads.get(feed, []) if load in plan.new_loads and load not in plan.diffed_loads]
    if loads:
        frame = read_silver(spark, feed, settings, loads)
        if frame is not None:
            parts.append(frame)
    changes = change_rows(spark, get_contract(feed, settings.schemas_dir), plan.change_loads, settings)
    if changes is not None:
        parts.append(changes)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1], allowMissingColumns=True)


def touched_keys(spark, spec: LibrarySpec, frames: dict, plan: BuildPlan, state: BuildState,
                 links_before, links_after, settings: Settings, disagreements=None):
    """The keys an incremental build recomputes (column ``_key``, distinct):
    see the module docstring. ``frames``: the source frames after
    resolution (rescued rows included); ``links_before``/``after``: the
    library's entity links before and after this build's resolution;
    ``disagreements``: what rescued rows said against their own ID number
    (their subject is the delivered ID, linked or not)."""
    from functools import reduce

    from pyspark.sql import functions as F

    new_loads = [load for load in plan.new_loads if load not in plan.diffed_loads]
    parts = []
    changes = {}
    for alias, frame in frames.items():
        key = spec.sources[alias].key
        if new_loads:
            parts.append(frame.where(F.col("_load_id").isin(*new_loads) & F.col(key).isNotNull())
                         .select(F.col(key).alias("_key")))
        feed = spec.sources[alias].feed
        if feed not in changes:
            changes[feed] = change_rows(spark, get_contract(feed, settings.schemas_dir), plan.change_loads, settings)
        if changes[feed] is not None:
            # both sides of a snapshot's or a correction's difference: keys that came, changed or went
            parts.append(changes[feed].where(F.col(key).isNotNull()).select(F.col(key).alias("_key")))
    if disagreements is not None and plan.new_loads:
        # every new load's, a snapshot's too: what a rescued row says is not in the change rows
        parts.append(disagreements.where(F.col("other_load_id").isin(*plan.new_loads))
                     .select(F.col("subject").alias("_key")))
    if links_after is not None:
        lineage = ["source_alias", "_load_id", "_row_number"]
        before = (links_before if links_before is not None else links_after.limit(0)).select(
            *lineage, F.col("key").alias("_before"))
        after = links_after.select(*lineage, F.col("key").alias("_after"))
        moved = before.join(after, lineage, "full_outer").where(~F.col("_before").eqNullSafe(F.col("_after")))
        parts += [moved.where(F.col(side).isNotNull()).select(F.col(side).alias("_key"))
                  for side in ("_before", "_after")]
    if spec.dated_keys:
        dated = spec_function(spec.dated_keys)(frames, date.fromisoformat(plan.previous.as_of),
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

    keys = F.broadcast(touched)
    return {alias: frame.join(keys, frame[spec.sources[alias].key] == keys["_key"], "left_semi")
            for alias, frame in frames.items()}
