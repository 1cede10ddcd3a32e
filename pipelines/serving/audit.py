"""The query audit log: every Trino query by every user, denied ones included.

Trino's ``http`` event listener posts each completed query (finished, failed or
refused by access control) to a small receiver on 127.0.0.1 that ``govlake
trino up`` starts next to Trino; the receiver appends the events, as Trino sent
them, to ``<trino home>/audit/events-<day>.jsonl``. ``load_audit`` merges new
events into the Delta table ``governance.query_audit`` (one row per query id,
so loading twice changes nothing): user, department, times, query text, state,
error, tables and columns read, rows returned, and whether access was denied.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipelines.lake.delta import delta_exists
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import AUDIT_DDL
from pipelines.processes import running_pid, stop_process_group
from pipelines.serving.catalog import load_departments
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)


def audit_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.trino_home) / "audit"


def receiver_port(settings: Settings) -> int:
    return settings.trino_port + 1


# --------------------------------------------------------------------------- the receiver

def serve(settings: Settings | None = None) -> None:
    """Receive Trino's events until killed (run as ``python -m pipelines.serving.audit``)."""
    settings = settings or get_settings()
    folder = audit_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            try:
                event = json.loads(body)
            except json.JSONDecodeError:
                self.send_response(400)
                self.end_headers()
                return
            day = utc_now().strftime("%Y%m%d")
            with (folder / f"events-{day}.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", receiver_port(settings)), Handler)
    server.serve_forever()


def _pid_file(settings: Settings) -> Path:
    return audit_dir(settings) / "receiver.pid"


def start_receiver(settings: Settings) -> int:
    """Start the receiver in the background (idempotent); returns its pid."""
    pid = running_pid(_pid_file(settings))
    if pid is not None:
        return pid
    audit_dir(settings).mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, GOVLAKE_TRINO_HOME=str(settings.trino_home),
                       GOVLAKE_TRINO_PORT=str(settings.trino_port))
    process = subprocess.Popen([sys.executable, "-m", "pipelines.serving.audit"], env=environment,
                               stdout=subprocess.DEVNULL, stderr=(audit_dir(settings) / "receiver.log").open("ab"),
                               start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    time.sleep(0.5)
    if process.poll() is not None:
        raise RuntimeError(f"the audit receiver exited; see {audit_dir(settings) / 'receiver.log'}")
    return process.pid


def stop_receiver(settings: Settings) -> None:
    stop_process_group(_pid_file(settings), grace_seconds=5)


def listener_properties(settings: Settings) -> list[str]:
    return ["event-listener.name=http", "http-event-listener.log-completed=true",
            "http-event-listener.log-created=false", "http-event-listener.log-split=false",
            f"http-event-listener.connect-ingest-uri=http://127.0.0.1:{receiver_port(settings)}/events",
            "http-event-listener.connect-retry-count=5"]


# --------------------------------------------------------------------------- loading

def _timestamp(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / (1000 if value > 1e11 else 1), tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            return None
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


class BadAuditEvent(ValueError):
    """An event the audit log cannot use; the message says why."""


def _object(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadAuditEvent(f"{what} is a {type(value).__name__}, not an object")
    return value


def _text(value, what: str, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise BadAuditEvent(f"missing {what}")
        return None
    if not isinstance(value, str):
        raise BadAuditEvent(f"{what} is a {type(value).__name__}, not a string")
    return value


def audit_row(event, departments_by_user: dict[str, str]) -> dict:
    """One audit row from one QueryCompletedEvent as Trino's listener sends it.
    Raises ``BadAuditEvent`` for anything else (not an object, a field of the
    wrong type, no query id, state or user)."""
    event = _object(event, "the event")
    if not event:
        raise BadAuditEvent("the event is empty or not an object")
    metadata = _object(event.get("metadata"), "metadata")
    context = _object(event.get("context"), "context")
    query_id = _text(metadata.get("queryId"), "metadata.queryId", required=True)
    state = _text(metadata.get("queryState"), "metadata.queryState", required=True)
    user = _text(context.get("user"), "context.user", required=True)
    failure = _object(event.get("failureInfo"), "failureInfo")
    raw_code = failure.get("errorCode")
    error_code = _text(_object(raw_code, "failureInfo.errorCode").get("name") if isinstance(raw_code, dict)
                       else raw_code, "failureInfo.errorCode")
    message = _text(failure.get("failureMessage"), "failureInfo.failureMessage") or ""
    inputs = _object(event.get("ioMetadata"), "ioMetadata").get("inputs") or []
    if not isinstance(inputs, list):
        raise BadAuditEvent("ioMetadata.inputs is not a list")
    tables, columns = [], []
    for item in inputs:
        item = _object(item, "an ioMetadata input")
        table = f"{item.get('catalogName')}.{item.get('schema')}.{item.get('table')}"
        tables.append(table)
        item_columns = item.get("columns") or []
        if not isinstance(item_columns, list):
            raise BadAuditEvent("ioMetadata input columns is not a list")
        for column in item_columns:
            name = (column.get("name") or column.get("column")) if isinstance(column, dict) else column
            columns.append(f"{table}.{name}")
    statistics = _object(event.get("statistics"), "statistics")
    rows_returned = statistics.get("outputRows")
    if rows_returned is not None and (isinstance(rows_returned, bool) or not isinstance(rows_returned, int)
                                      or not 0 <= rows_returned < 2 ** 63):
        raise BadAuditEvent("statistics.outputRows is not a row count (a non-negative 64-bit integer)")
    return {
        "query_id": query_id, "user": user, "department": departments_by_user.get(user),
        "created_at": _timestamp(event.get("createTime")), "ended_at": _timestamp(event.get("endTime")),
        "query": _text(metadata.get("query"), "metadata.query"), "state": state,
        "access_denied": error_code == "PERMISSION_DENIED" or message.startswith("Access Denied"),
        "error_code": error_code, "error_message": message[:2000] or None,
        "tables_read": sorted(set(tables)), "columns_read": sorted(set(columns)),
        "rows_returned": rows_returned, "source": _text(context.get("source"), "context.source"),
        "loaded_at": utc_now(),
    }


def rejected_path(event_file: Path) -> Path:
    """Where the lines of ``event_file`` that are not usable events are kept
    (next to it; not matched by ``events-*.jsonl``)."""
    return event_file.with_name(event_file.name + ".rejected")


@dataclass
class AuditEvents:
    """The usable events of the receiver's files, one row per query id, and
    what was skipped: ``skipped`` lines in total, kept in ``rejected_files``."""
    rows: dict[str, dict] = field(default_factory=dict)
    skipped: int = 0
    rejected_files: list[str] = field(default_factory=list)


def read_audit_events(settings: Settings | None = None,
                      departments_by_user: dict[str, str] | None = None) -> AuditEvents:
    """Parse every ``events-*.jsonl`` file. A line that is not JSON, not an
    event object or misses a field is skipped, never fatal; each file's bad
    lines (line number, reason, text) are (re)written to its ``.rejected``
    file, so reading twice keeps one copy of each."""
    settings = settings or get_settings()
    if departments_by_user is None:
        departments_by_user = {user: code for code, d in load_departments(settings).items() for user in d.users}
    result = AuditEvents()
    for path in sorted(audit_dir(settings).glob("events-*.jsonl")):
        bad = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = audit_row(json.loads(line), departments_by_user)
                except (json.JSONDecodeError, RecursionError):
                    bad.append({"line": number, "reason": "not JSON", "text": line.rstrip("\n")})
                except BadAuditEvent as exc:
                    bad.append({"line": number, "reason": str(exc), "text": line.rstrip("\n")})
                else:
                    result.rows[row["query_id"]] = row
        rejected = rejected_path(path)
        if bad:
            partial = rejected.with_name(rejected.name + ".partial")
            partial.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in bad), encoding="utf-8")
            partial.replace(rejected)
            result.skipped += len(bad)
            result.rejected_files.append(str(rejected))
        else:
            rejected.unlink(missing_ok=True)
    if result.skipped:
        log.warning("audit: skipped %d event line(s) that are not Trino query events; kept in %s",
                    result.skipped, ", ".join(result.rejected_files))
    return result


def load_audit(spark, settings: Settings | None = None) -> int:
    """Merge every received event into ``governance.query_audit``; returns the
    number of query ids new to the table. Lines that are not usable events are
    skipped, counted in a warning and kept aside (see ``read_audit_events``)."""
    from delta.tables import DeltaTable

    settings = settings or get_settings()
    rows = read_audit_events(settings).rows
    if not rows:
        return 0
    frame = spark.createDataFrame(list(rows.values()), AUDIT_DDL)
    path = governance_path("query_audit", settings)
    if not delta_exists(spark, path):
        frame.write.format("delta").save(path)
        return len(rows)
    before = spark.read.format("delta").load(path).count()
    (DeltaTable.forPath(spark, path).alias("t").merge(frame.alias("s"), "t.query_id = s.query_id")
     .whenNotMatchedInsertAll().execute())
    return spark.read.format("delta").load(path).count() - before


if __name__ == "__main__":
    serve()
