"""Exactly-once ingest of one bureau delivery: raw -> bronze -> silver + quarantine.

Contract of a load:
- raw: the file is copied once under ``raw/`` named by its sha256; never edited.
- the load id is derived from feed and content hash, so the same file again is
  recognised (``already_loaded``) and changes no table.
- rules run on Arrow (``pipelines.ingest.classify``, ``pipelines.ingest.rules``) on
  the table the reader parsed, and bronze, silver and quarantine are written
  from Arrow by delta-rs: the hot path never crosses into the JVM. So are the
  governance tables a load touches (manifest, quality results, governance
  list, approvals) and the gate (GX on DuckDB over the Arrow table), and so
  does approving a blocked load.
- every table write replaces exactly this load's rows (a predicate on
  ``_load_id``) in one Delta commit: a rerun after a crash completes the load,
  a crash leaves no partial rows in any table.
- a corrected re-delivery (``replaces``) swaps the earlier load's silver and
  quarantine rows for its own in one commit per table.
- rows read = rows loaded + rows quarantined + duplicate rows; checked before
  the load is marked loaded, and against the committed Delta metrics after.
- the quality gate (``pipelines.quality.gate``) validates the delivery before it is
  promoted: a blocking failure leaves silver at its version, parks the rows in
  ``pending/`` and marks the load ``blocked`` until ``approve_blocked_load``.
- every load updates the governance list (``pipelines.governance.issues``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import Contract, get_contract
from pipelines.governance.issues import SAMPLE_SIZE, gate_findings, quarantine_findings, update_issues
from pipelines.ingest.classify import (
    DUPLICATE,
    LOADED,
    QUARANTINED,
    SeenRecords,
    bronze_table,
    classify_delivery,
    failure_counts,
    gate_table,
    quarantine_table,
    silver_table,
)
from pipelines.ingest.readers import DeliveryError, read_delivery
from pipelines.lake.changes import record_changes
from pipelines.lake.delta import (arrow_dataset, committed_rows, delete_rows, rows_table, sql_strings,
                                   table_exists, write_arrow_replacing)
from pipelines.lake.manifest import append_manifest, latest_events, latest_status
from pipelines.lake.paths import governance_path, state_lock, table_path
from pipelines.lake.tables import APPROVALS_DDL
from pipelines.quality.gate import blocked_message, build_data_docs, record_results, start_gx_import, validate_delivery
from pipelines.quality.suites import row_count_parameters
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)

CORRECTION_SUFFIXES = ("_更正", "_corrected", "_correction")


class ReconciliationError(RuntimeError):
    """Rows read do not equal rows loaded + quarantined + duplicates."""


@dataclass
class LoadResult:
    """What one ``ingest_file`` call did; ``status`` is one of loaded,
    already_loaded, rejected, failed."""

    feed: str
    source_file: str
    load_id: str
    sha256: str
    status: str
    encoding: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    extra_headers: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    replaces_load_id: str | None = None
    superseded_load_ids: list[str] = field(default_factory=list)  # a snapshot's earlier deliveries
    changes: dict = field(default_factory=dict)      # rows added/removed against the replaced deliveries
    message: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    issues: dict[str, list[str]] = field(default_factory=dict)  # governance issue ids opened/updated/closed
    gate: object = field(default=None, repr=False)             # quality.GateResult when the gate ran

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined + self.rows_duplicate

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "gate"}
        if self.gate is not None:
            data["blocking_failures"] = [o.describe() for o in self.gate.blocking_failures]
            data["warnings"] = [o.describe() for o in self.gate.warnings]
        return data | {"reconciles": self.reconciles}


# --------------------------------------------------------------------------- load identity


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_load_id(contract: Contract, sha256: str, source_file: str | None = None) -> str:
    """Deterministic: the same file for the same feed is the same load. For a
    snapshot feed the file's name counts too: January's register may repeat
    November's byte for byte, and must still supersede December's."""
    if contract.delivery == "snapshot" and source_file:
        return f"{contract.slug}-{hashlib.sha256(f'{sha256}/{source_file}'.encode()).hexdigest()[:16]}"
    return f"{contract.slug}-{sha256[:16]}"


SNAPSHOT_DATE = re.compile(r"(?<!\d)(20\d{2}[01]\d[0-3]\d)(?!\d)")


def snapshot_date(source_file: str) -> str | None:
    """The date a snapshot file's name carries (``taxpayer_20261201.jsonl``
    -> ``20261201``), or None: the bureaus name exports by their date."""
    found = SNAPSHOT_DATE.search(source_file)
    return found.group(1) if found else None


class OutdatedSnapshotError(DeliveryError):
    """A snapshot older than the one in force: loading it would roll the register back."""


def check_snapshot_order(contract: Contract, source_file: str, live: dict[str, dict]) -> None:
    """Refuse a snapshot whose file date is before that of a live snapshot of
    its feed (``live``: load id -> latest manifest event)."""
    mine = snapshot_date(source_file)
    newer = sorted((snapshot_date(row["source_file"]), row["source_file"], load) for load, row in live.items()
                   if mine and snapshot_date(row["source_file"] or "") and snapshot_date(row["source_file"]) > mine)
    if newer:
        date, name, load = newer[-1]
        raise OutdatedSnapshotError(
            f"{contract.feed} {source_file}: a snapshot of {mine}, older than {name} (load {load}, {date}) in force; "
            "loading it would roll the register back. Deliver a newer snapshot, or withdraw the newer one first")


# --------------------------------------------------------------------------- the load

def _keep_raw(path: Path, contract: Contract, sha256: str, settings: Settings) -> Path:
    target_dir = settings.local_lake_path("raw", contract.bureau, contract.feed_name)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{sha256}{''.join(path.suffixes[-1:]).lower()}"
    if not target.exists():
        partial = target.with_suffix(target.suffix + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)
        target.chmod(0o444)
    return target


def ingest_file(contract: Contract, path: Path, replaces: str | None = None,
                settings: Settings | None = None, known_loads: dict[str, dict] | None = None,
                run_gate: bool = True) -> LoadResult:
    """Load one delivery exactly once. See the module docstring for the contract.

    ``known_loads`` (load id -> latest manifest event) saves a manifest read
    per file when many files are loaded in a row. ``run_gate=False`` skips the
    quality gate (benchmarks of ingest alone); deliveries are then promoted.
    A snapshot feed's loads run one at a time (``feed_lock``): each decides
    which deliveries it supersedes.
    """
    settings = settings or get_settings()
    if contract.delivery != "snapshot":
        return _ingest_file(contract, path, replaces, settings, known_loads, run_gate)
    with feed_lock(contract.feed, settings):
        # what another process loaded while this one waited is in the manifest, not in known_loads
        known = None if known_loads is None else known_loads | latest_events(settings, contract.feed)
        return _ingest_file(contract, path, replaces, settings, known, run_gate)


def feed_lock(feed: str, settings: Settings):
    """An exclusive lock per feed (``lake.paths.state_lock``), held from
    deciding what a snapshot supersedes until the old rows are gone."""
    return state_lock(feed, settings)


def _ingest_file(contract: Contract, path: Path, replaces: str | None, settings: Settings,
                 known_loads: dict[str, dict] | None, run_gate: bool) -> LoadResult:
    started = time.monotonic()
    path = Path(path)
    source = f"{contract.feed} {path.name}"
    if not path.is_file():
        raise DeliveryError(f"{source}: no such file")
    gx_import = start_gx_import() if run_gate else None
    sha256 = sha256_of(path)
    load_id = make_load_id(contract, sha256, path.name)
    result = LoadResult(contract.feed, path.name, load_id, sha256, status="started", replaces_load_id=replaces)

    previous = known_loads.get(load_id) if known_loads is not None else latest_status(load_id, settings)
    if previous and previous["status"] in ("loaded", "replaced", "rejected", "blocked"):
        result.status = previous["status"] if previous["status"] in ("rejected", "blocked") else "already_loaded"
        result.message = (
            f"same content as {previous['source_file']} (load {load_id}, {previous['status']}"
            f" at {previous['event_at']:%Y-%m-%d %H:%M:%S} UTC): nothing changed"
        )
        for key in ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate"):
            setattr(result, key, previous[key] or 0)
        result.seconds = time.monotonic() - started
        log.info("%s: %s", source, result.message)
        return result
    replaced = None
    if replaces:
        replaced = latest_status(replaces, settings)
        if not replaced or replaced["feed"] != contract.feed or replaced["status"] != "loaded":
            state = "unknown" if not replaced else f"{replaced['feed']} {replaced['status']}"
            raise DeliveryError(f"{source}: --replaces {replaces}: not a loaded delivery of {contract.feed} ({state})")
    superseded = superseded_loads(contract, load_id, replaces, settings, known_loads)
    result.superseded_load_ids = sorted(superseded)

    raw_path = _keep_raw(path, contract, sha256, settings)
    base_event = {
        "load_id": load_id, "feed": contract.feed, "bureau": contract.bureau,
        "source_file": path.name, "raw_path": str(raw_path), "sha256": sha256,
        "size_bytes": path.stat().st_size, "replaces_load_id": replaces,
    }
    if superseded:
        try:
            check_snapshot_order(contract, path.name, {load: _event(load, settings, known_loads)
                                                       for load in superseded})
        except OutdatedSnapshotError as exc:
            result.status, result.message = "rejected", str(exc)
            append_manifest([base_event | {"status": "rejected", "message": str(exc)}], settings)
            raise

    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.timings[phase] = round(now - clock, 3)
        clock = now

    try:
        delivery = read_delivery(contract, path, settings.ingest_chunk_rows)
    except DeliveryError as exc:
        result.status, result.message = "rejected", str(exc)
        append_manifest([base_event | {"status": "rejected", "message": str(exc)}], settings)
        raise
    result.encoding = delivery.encoding
    result.extra_headers = delivery.extra_headers
    result.missing_columns = [c.header for c in delivery.missing_columns]
    missing_required = [c.name for c in delivery.missing_required]

    lap("parse")
    ingested_at = utc_now()
    bronze_path = table_path("bronze", contract, settings)
    silver_path = table_path("silver", contract, settings)
    quarantine_path = governance_path("quarantine", settings)
    # A delivery read in one piece is held in memory; a larger one is staged
    # chunk by chunk in Parquet files and committed from there (bounded memory).
    staged = contextlib.ExitStack()
    staging = None if delivery.complete else staged.enter_context(_staging_folder(load_id, settings))
    bronze, quarantined, silver, gated = (_Staged(staging, name) for name in ("bronze", "quarantine", "silver", "gate"))
    seen = None if delivery.complete else SeenRecords()
    counts: dict[tuple[str, str], list] = {}
    recorded = False   # whether the manifest already has this run's outcome
    writer = ThreadPoolExecutor(max_workers=1)
    try:
        try:
            for index, chunk in enumerate(delivery.chunks()):
                # Bronze needs nothing from classification: its write (delta-rs
                # or Parquet, no GIL) overlaps with the rest of GX's import and
                # then with the rules.
                bronze_chunk = bronze_table(chunk, load_id, path.name, ingested_at)
                bronze_written = (
                    writer.submit(write_arrow_replacing, bronze_chunk, bronze_path, f"_load_id = '{load_id}'",
                                  load_id) if delivery.complete else writer.submit(bronze.add, bronze_chunk))
                del bronze_chunk
                if gx_import is not None and index == 0:
                    gx_import.join()   # the rules would contend with the import for the GIL
                    lap("gx_import")   # what was left of GX's import once the file was parsed
                classified = classify_delivery(chunk, contract, delivery.headers_found, missing_required, seen)
                result.rows_read += chunk.num_rows
                result.rows_loaded += classified.count(LOADED)
                result.rows_quarantined += classified.count(QUARANTINED)
                result.rows_duplicate += classified.count(DUPLICATE)
                quarantined.add(quarantine_table(classified, load_id, path.name, ingested_at))
                _add_failure_counts(counts, failure_counts(classified, SAMPLE_SIZE))
                if not missing_required:
                    silver.add(silver_table(classified, load_id, path.name, ingested_at))
                    if run_gate:
                        gated.add(gate_table(classified))
                del chunk, classified
                bronze_written.result()   # one chunk ahead at most
        except DeliveryError as exc:   # a later chunk unreadable: nothing of the file is published
            result.status, result.message = "rejected", str(exc)
            append_manifest([base_event | {"status": "rejected", "message": str(exc)}], settings)
            recorded = True
            raise
        finally:
            writer.shutdown(wait=True)
        lap("classify")
        if not result.reconciles:
            raise ReconciliationError(
                f"{source}: read {result.rows_read} rows but classified "
                f"{result.rows_loaded} loaded + {result.rows_quarantined} quarantined + "
                f"{result.rows_duplicate} duplicate")
        if not delivery.complete:
            write_arrow_replacing(bronze.data(), bronze_path, f"_load_id = '{load_id}'", load_id)
        swap = [load_id] + ([replaces] if replaces else [])
        lap("bronze")
        _crash_point("after_bronze", settings)
        write_arrow_replacing(
            quarantined.data(), quarantine_path,
            f"feed = '{contract.feed}' AND _load_id IN ({sql_strings(swap)})", load_id, partition_by="feed")
        lap("quarantine")
        findings = quarantine_findings(_sorted_failure_counts(counts), path.name)
        if missing_required:
            result.status = "rejected"
            result.superseded_load_ids = superseded = []
            headers = ", ".join(f"{c.header} ({c.name})" for c in delivery.missing_required)
            result.message = (
                f"{source}: missing required column(s) {headers}; found headers: "
                f"{', '.join(delivery.headers_found.values()) or 'none'}. Whole file rejected; "
                "its rows are in governance.quarantine")
        else:
            gate = None
            if run_gate:
                gate = validate_delivery(
                    gated.data(), contract, load_id,
                    row_count_parameters(_previous_delivery_rows(contract, load_id, settings, known_loads)),
                    settings, rows=result.rows_read - result.rows_duplicate)
                record_results(gate, contract, path.name, settings)
                result.gate = gate
                failed, _ = gate_findings(gate, path.name)
                findings += failed
                lap("gate")
            if gate is not None and gate.blocked:
                # Not promoted: silver keeps its version; the rows wait in pending
                # until a governor approves the load (``govlake quality approve``).
                silver_path = table_path("pending", contract, settings)
                write_arrow_replacing(silver.data(), silver_path, f"_load_id = '{load_id}'", load_id)
                result.status = "blocked"
                result.superseded_load_ids = superseded = []     # a snapshot supersedes once approved
                result.message = blocked_message(gate)
            else:
                replaced_loads = sorted(set(superseded) | ({replaces} if replaces else set()))
                if replaced_loads:
                    result.changes = record_changes(contract, load_id, silver.data(), replaced_loads, settings)
                    lap("changes")
                # a snapshot's rows go in beside those it supersedes, which are
                # deleted once the manifest says so (drop_superseded): a build
                # reading the loads the manifest calls live never sees a gap
                write_arrow_replacing(silver.data(), silver_path, f"_load_id IN ({sql_strings(swap)})", load_id)
                result.status = "loaded"
        lap("silver")
        _verify_commits(result, bronze_path, silver_path, quarantine_path)
        lap("verify")
        result.issues = update_issues(contract, load_id, findings,
                                      close_others=result.status in ("loaded", "blocked") and run_gate,
                                      settings=settings)
        if result.status == "blocked" and result.issues:
            ids = result.issues["opened"] + result.issues["updated"]
            result.message += f". Governance issues: {', '.join(ids)}"
        lap("governance")
    except Exception as exc:
        if not recorded:   # a rejection for missing columns that then failed is recorded as failed
            result.status = "failed"
            append_manifest([base_event | {"status": "failed", "message": str(exc)[:2000]}], settings)
        raise
    finally:
        staged.close()   # the staged files: removed however the load ended
    if delivery.extra_headers:
        result.message = (result.message + " " if result.message else "") + (
            f"extra column(s) kept in bronze._extra: {', '.join(delivery.extra_headers)}")
    if result.status == "loaded" and superseded:
        counted = ("" if result.changes.get("added") is None else
                   f": {result.changes['added']} rows added and {result.changes['removed']} removed against it")
        result.message = (result.message + " " if result.message else "") + (
            f"snapshot: supersedes {', '.join(superseded)}{counted}")
    if delivery.missing_columns and not missing_required:
        result.message = (result.message + " " if result.message else "") + (
            f"optional column(s) missing, loaded as null: {', '.join(result.missing_columns)}")
    event = base_event | {
        "status": result.status, "encoding": result.encoding, "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded, "rows_quarantined": result.rows_quarantined,
        "rows_duplicate": result.rows_duplicate, "extra_headers": result.extra_headers,
        "missing_columns": result.missing_columns, "message": result.message,
    }
    events = [event]
    if replaced and result.status == "loaded":
        events.append({k: replaced[k] for k in replaced if k != "event_at"} | {
            "status": "replaced", "message": f"replaced by {load_id} ({path.name})"})
    if result.status == "loaded":
        events += _superseded_events(contract.feed, superseded, load_id, path.name, settings)
    append_manifest(events, settings)
    if result.status == "loaded" and contract.delivery == "snapshot":
        drop_superseded(contract, load_id, superseded, settings)
    lap("manifest")
    result.seconds = time.monotonic() - started
    log.info("%s: %s load %s: read %d, loaded %d, quarantined %d, duplicate %d (%.1fs)",
             source, result.status, load_id, result.rows_read, result.rows_loaded,
             result.rows_quarantined, result.rows_duplicate, result.seconds)
    return result


def superseded_loads(contract: Contract, load_id: str, replaces: str | None, settings: Settings,
                     known_loads: dict[str, dict] | None = None) -> list[str]:
    """The deliveries a load of a snapshot feed supersedes once it is
    loaded: every other live (``loaded``) delivery of the feed, except the
    one a correction names (``replaces``, swapped as a correction). A
    changes feed supersedes nothing."""
    if contract.delivery != "snapshot":
        return []
    if known_loads is None:
        known_loads = latest_events(settings, contract.feed)
    return sorted(key for key, row in known_loads.items()
                  if key not in (load_id, replaces) and row.get("feed") == contract.feed
                  and row.get("status") == "loaded")


def _event(load_id: str, settings: Settings, known_loads: dict[str, dict] | None) -> dict:
    return (known_loads or {}).get(load_id) or latest_status(load_id, settings) or {"source_file": ""}


def drop_superseded(contract: Contract, load_id: str, superseded: list[str], settings: Settings) -> None:
    """After a snapshot is recorded loaded: every other row of the feed's
    silver table goes (the superseded deliveries', and any left by a load
    that died before this step), and the superseded deliveries' quarantined
    rows."""
    silver_path = table_path("silver", contract, settings)
    delete_rows(silver_path, f"_load_id <> '{load_id}'")
    if superseded:
        delete_rows(governance_path("quarantine", settings),
                    f"feed = '{contract.feed}' AND _load_id IN ({sql_strings(superseded)})")


def _superseded_events(feed: str, superseded: list[str], load_id: str, source_file: str,
                       settings: Settings) -> list[dict]:
    """The manifest events that mark ``superseded`` deliveries replaced by a snapshot."""
    if not superseded:
        return []
    latest = latest_events(settings, feed)
    return [{k: latest[old][k] for k in latest[old] if k != "event_at"} | {
        "status": "replaced", "message": f"superseded by the snapshot {load_id} ({source_file})"}
        for old in superseded if old in latest]


class _Staged:
    """Rows bound for one Delta table, gathered chunk by chunk: in memory when
    the delivery is one chunk (``folder`` None), else one Parquet file per
    chunk in ``folder/name``, so memory holds one chunk whatever the file's
    size (one file per chunk: a reader of the staged rows buffers a file's
    row group at most, never the whole delivery)."""

    def __init__(self, folder: Path | None, name: str) -> None:
        self.folder = folder / name if folder is not None else None
        self.tables: list = []
        self.schema = None
        self.files = 0

    def add(self, table) -> None:
        if self.folder is None:
            self.tables.append(table)
            return
        import pyarrow.parquet as pq

        if self.schema is None:
            self.schema = table.schema
            self.folder.mkdir(parents=True, exist_ok=True)
        # a chunk whose column is all null may type it differently; the first chunk's schema holds
        table = table if table.schema.equals(self.schema) else table.cast(self.schema)
        pq.write_table(table, self.folder / f"part-{self.files:06d}.parquet", compression="lz4",
                       row_group_size=256 * 1024)
        self.files += 1

    def data(self):
        """The rows: an Arrow table, or a pyarrow dataset over the staged
        files, in the order they were added."""
        if self.folder is None:
            return self.tables[0] if len(self.tables) == 1 else pa.concat_tables(self.tables)
        import pyarrow.dataset as ds

        parquet = ds.ParquetFileFormat(
            default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
        files = [str(self.folder / f"part-{i:06d}.parquet") for i in range(self.files)]
        return ds.dataset(files, schema=self.schema, format=parquet)


@contextlib.contextmanager
def _staging_folder(load_id: str, settings: Settings) -> Iterator[Path]:
    """An empty folder of this run's own for a chunked load's staged rows,
    removed when the block ends. The run holds a lock on ``.lock`` inside it
    while it lives; a folder whose lock anyone can take was left by a run
    that is gone (killed: no clean-up ran), and is removed here, so retries
    of a crashed load do not pile up copies. Folders without a lock file are
    removed once they are a day old."""
    import fcntl

    root = settings.local_lake_path("tmp", "staging")
    root.mkdir(parents=True, exist_ok=True)
    for left in root.iterdir():
        with contextlib.suppress(OSError):
            lock_file = left / ".lock"
            if not lock_file.exists():
                if left.stat().st_mtime < time.time() - 86_400:
                    shutil.rmtree(left, ignore_errors=True)
                continue
            if left.stat().st_mtime > time.time() - 60:
                continue   # just made: its run may not hold the lock yet
            with lock_file.open("rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises while its run lives
                shutil.rmtree(left, ignore_errors=True)
    folder = root / f"{load_id}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        with (folder / ".lock").open("wb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _add_failure_counts(total: dict[tuple[str, str], list], counts) -> None:
    for column, rule, rows, samples in counts:
        entry = total.setdefault((column, rule), [0, []])
        entry[0] += rows
        entry[1] = sorted(set(entry[1]) | set(samples))[:SAMPLE_SIZE]


def _sorted_failure_counts(total: dict[tuple[str, str], list]) -> list[tuple[str, str, int, list[int]]]:
    """``failure_counts`` of the whole delivery from its chunks' counts."""
    return [(column, rule, rows, samples) for (column, rule), (rows, samples) in sorted(total.items())]


def _crash_point(name: str, settings: Settings) -> None:
    """Fault injection for the crash tests: ``GOVLAKE_CRASH_AT=<name>``
    (``Settings.crash_at``) kills the process here with SIGKILL (no clean-up
    runs), between two commits."""
    if settings.crash_at == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _previous_delivery_rows(contract: Contract, load_id: str, settings: Settings,
                            known_loads: dict[str, dict] | None) -> int | None:
    """Rows (duplicates excluded) of the feed's latest other delivery that
    passed the gate or was blocked by it; None for a first delivery."""
    if known_loads is None:
        known_loads = latest_events(settings, contract.feed)
    events = [row for key, row in known_loads.items()
              if key != load_id and row.get("feed") == contract.feed
              and row.get("status") in ("loaded", "replaced", "blocked")]
    if not events:
        return None
    last = max(events, key=lambda row: row["event_at"])
    return (last.get("rows_read") or 0) - (last.get("rows_duplicate") or 0)


def _verify_commits(result: LoadResult, bronze_path: str, silver_path: str, quarantine_path: str) -> None:
    """The committed Delta metrics must agree with the classified counts."""
    expected = {bronze_path: result.rows_read, quarantine_path: result.rows_quarantined}
    if result.status in ("loaded", "blocked"):
        expected[silver_path] = result.rows_loaded
    for path, rows in expected.items():
        written = committed_rows(path, result.load_id)
        if written != rows:
            raise ReconciliationError(
                f"{result.feed} {result.source_file}: expected {rows} rows committed to {path}, "
                f"Delta reports {written}")


def approve_blocked_load(load_id: str, reason: str, approved_by: str, settings: Settings | None = None) -> dict:
    """A governor promotes a blocked delivery: its pending rows replace its own
    (and, for a correction, the replaced delivery's) rows in silver in one
    commit; the approval is recorded in ``governance.quality_approvals`` and
    the manifest, and then the pending rows are deleted. delta-rs throughout,
    like the load itself: no JVM. A crash before the manifest records the
    approval leaves the load blocked with its pending rows, and approving it
    again completes it (silver and the approval row are replaced, not
    appended); a crash after it leaves pending rows that the next attempt
    clears. A correction is refused once what it corrects is no longer loaded
    (another correction replaced it meanwhile)."""
    from deltalake import DeltaTable

    settings = settings or get_settings()
    if not reason or not reason.strip():
        raise ValueError("an approval needs a reason (--reason)")
    event = latest_status(load_id, settings)
    if event is None:
        raise LookupError(f"no load {load_id} in governance.load_manifest")
    contract = get_contract(event["feed"], settings.schemas_dir)
    pending_path = table_path("pending", contract, settings)
    if event["status"] != "blocked":
        if event["status"] == "loaded" and table_exists(pending_path):
            # an approval that died after recording itself, before clearing pending
            delete_rows(pending_path, f"_load_id IN ({sql_strings([load_id])})")
        raise ValueError(f"load {load_id} ({event['feed']} {event['source_file']}) is {event['status']}, not blocked")
    if event["replaces_load_id"]:
        target = latest_status(event["replaces_load_id"], settings)
        if target is None or target["status"] != "loaded":
            state = "unknown" if target is None else f"{target['status']}: {target['message']}"
            raise ValueError(f"load {load_id} corrects {event['replaces_load_id']}, which is no longer loaded "
                             f"({state}); approving it would put a second correction into silver")
    # scanned, not read whole: a blocked delivery may be larger than memory
    rows = arrow_dataset(DeltaTable(pending_path)).filter(pc.field("_load_id") == load_id)
    pending = rows.count_rows()
    if pending != (event["rows_loaded"] or 0):
        raise ReconciliationError(f"{event['feed']} {event['source_file']}: pending holds {pending} rows of "
                                  f"load {load_id}, the load has {event['rows_loaded']}")
    swap = [load_id] + ([event["replaces_load_id"]] if event["replaces_load_id"] else [])
    with contextlib.ExitStack() as held:
        if contract.delivery == "snapshot":
            held.enter_context(feed_lock(contract.feed, settings))
        return _promote(event, contract, rows, swap, reason, approved_by, settings)


def _promote(event: dict, contract: Contract, rows, swap: list[str], reason: str, approved_by: str,
             settings: Settings) -> dict:
    """The approval's writes (``approve_blocked_load``), under the feed's lock for a snapshot."""
    load_id, silver_path = event["load_id"], table_path("silver", contract, settings)
    pending_path = table_path("pending", contract, settings)
    # a snapshot supersedes what is live when it is approved, not when it was blocked
    superseded = superseded_loads(contract, load_id, event["replaces_load_id"], settings)
    if superseded:
        try:
            check_snapshot_order(contract, event["source_file"], {load: _event(load, settings, None)
                                                                   for load in superseded})
        except OutdatedSnapshotError as exc:
            raise ValueError(f"load {load_id} cannot be approved: {exc}") from None
    replaced_loads = sorted(set(swap[1:]) | set(superseded))
    if replaced_loads:
        record_changes(contract, load_id, rows, replaced_loads, settings)
    tag = f"{load_id} approved"
    write_arrow_replacing(rows, silver_path, f"_load_id IN ({sql_strings(swap)})", tag)
    written = committed_rows(silver_path, tag)
    if written != (event["rows_loaded"] or 0):
        raise ReconciliationError(f"{event['feed']} {event['source_file']}: approval promoted {written} rows, "
                                  f"the load has {event['rows_loaded']}")
    approval = {"load_id": load_id, "feed": event["feed"], "bureau": event["bureau"], "approved_by": approved_by,
                "reason": reason, "rows_promoted": written, "blocking_failures": event["message"],
                "approved_at": utc_now()}
    # replacing this load's row: an approval rerun after a crash records it once
    write_arrow_replacing(rows_table([approval], APPROVALS_DDL), governance_path("quality_approvals", settings),
                          f"load_id IN ({sql_strings([load_id])})", tag)
    events = [{k: event[k] for k in event if k != "event_at"} | {
        "status": "loaded", "message": f"approved by {approved_by}: {reason} (was {event['message']})"}]
    if event["replaces_load_id"]:
        replaced = latest_status(event["replaces_load_id"], settings)
        if replaced:
            events.append({k: replaced[k] for k in replaced if k != "event_at"} | {
                "status": "replaced", "message": f"replaced by {load_id} ({event['source_file']})"})
    events += _superseded_events(contract.feed, superseded, load_id, event["source_file"], settings)
    append_manifest(events, settings)
    if contract.delivery == "snapshot":
        drop_superseded(contract, load_id, superseded, settings)
    delete_rows(pending_path, f"_load_id IN ({sql_strings([load_id])})")
    log.info("%s load %s approved by %s: %d rows promoted to silver", event["feed"], load_id, approved_by, written)
    return approval


def correction_target(path: Path) -> str | None:
    """``hukou_20261128_更正.csv`` corrects ``hukou_20261128.csv``."""
    for suffix in CORRECTION_SUFFIXES:
        if path.stem.endswith(suffix):
            return path.stem[: -len(suffix)] + path.suffix
    return None


def discover_deliveries(root: Path, contracts: dict[str, Contract]) -> list[tuple[Contract, Path]]:
    """Files under ``<root>/<bureau>/<feed>/`` for every known feed, oldest
    name first within a feed, corrections after what they correct."""
    found = []
    for contract in sorted(contracts.values(), key=lambda c: c.feed):
        folder = root / contract.bureau / contract.feed_name
        if not folder.is_dir():
            continue
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        files.sort(key=lambda p: (correction_target(p) is not None, p.name))
        found += [(contract, p) for p in files]
    return found


def ingest_directory(root: Path, contracts: dict[str, Contract], settings: Settings | None = None,
                     on_result=None, run_gate: bool = True) -> list[LoadResult]:
    """Ingest every delivery found under ``root``; a bad file does not stop the
    others. Data Docs are rendered once, for the validations of this run."""
    settings = settings or get_settings()
    results = []
    known = latest_events(settings)
    for contract, path in discover_deliveries(root, contracts):
        replaces = None
        target_name = correction_target(path)
        if target_name:
            replaces = next((load_id for load_id, row in known.items()
                             if row["feed"] == contract.feed and row["source_file"] == target_name
                             and row["status"] == "loaded"), None)
            if replaces is None:
                log.warning("%s %s: correction of %s, which was never loaded; loading as new",
                            contract.feed, path.name, target_name)
        try:
            result = ingest_file(contract, path, replaces=replaces, settings=settings, known_loads=known,
                                 run_gate=run_gate)
        except (DeliveryError, ReconciliationError) as exc:
            result = LoadResult(contract.feed, path.name, "", "", status="rejected", message=str(exc))
        if result.status in ("loaded", "rejected", "blocked") and result.load_id:
            if result.status == "loaded":
                gone = result.superseded_load_ids + ([result.replaces_load_id] if result.replaces_load_id else [])
                for replaced in gone:
                    known[replaced]["status"] = "replaced"
            known[result.load_id] = {"status": result.status, "source_file": result.source_file,
                                     "feed": result.feed, **{k: getattr(result, k) for k in (
                                         "rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate")},
                                     "event_at": utc_now()}
        results.append(result)
        if on_result:
            on_result(result)
    build_data_docs(settings, [r.gate for r in results])
    return results


class DeliveryFolderError(ValueError):
    """A folder given to ``ingest --all`` holds no deliveries; the message says what was expected."""


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")) if path.is_dir() else []


def check_delivery_folder(root: Path, contracts_by_feed: dict) -> tuple[int, list[str]]:
    """How many deliveries ``root`` holds, and warnings for folders that are
    not a known feed. Raises ``DeliveryFolderError`` when it holds none: naming the
    folder, the layout expected, and the nearest folder that has it."""

    bureaus = {c.bureau for c in contracts_by_feed.values()}
    feeds = {(c.bureau, c.feed_name) for c in contracts_by_feed.values()}
    warnings = []
    for bureau in _folders(root):
        if bureau.name not in bureaus:
            warnings.append(f"{bureau}: not a bureau folder (bureaus: {', '.join(sorted(bureaus))}), skipped")
            continue
        known = sorted(name for b, name in feeds if b == bureau.name)
        for folder in _folders(bureau):
            if folder.name not in known:
                close = difflib.get_close_matches(folder.name, known, n=1)
                warnings.append(f"{folder}: no contract for feed {bureau.name}.{folder.name}, skipped"
                                + (f" (did you mean {bureau.name}/{close[0]}?)" if close
                                   else f" ({bureau.name} feeds: {', '.join(known)})"))
    count = len(discover_deliveries(root, contracts_by_feed))
    if count:
        return count, warnings
    listed = "".join(f"\n  {warning}" for warning in warnings)
    present = [f"{b}/{f}" for b, f in sorted(feeds) if (root / b / f).is_dir()]
    if present:
        raise DeliveryFolderError(f"{root}: no delivery files: its feed folders ({', '.join(present[:5])}"
                                   f"{', ...' if len(present) > 5 else ''}) are empty" + listed)
    nearest = next((candidate for candidate in _candidates(root)
                    if discover_deliveries(candidate, contracts_by_feed)), None)
    hint = f"; did you mean {nearest}?" if nearest else ""
    raise DeliveryFolderError(f"{root}: no delivery folders: expected <bureau>/<feed>/ folders of files, "
                               f"e.g. {root / 'psb' / 'hukou'}/{hint}" + listed)


def _candidates(root: Path, depth: int = 3):
    """Folders under ``root`` (breadth first, a few levels deep), then its
    parent and the folders beside it."""
    level = [root]
    for _ in range(depth):
        level = [child for folder in level for child in _folders(folder)]
        yield from level
    parent = root.resolve().parent
    if parent != root.resolve():
        yield parent
        yield from (sibling for sibling in _folders(parent) if sibling != root.resolve())
