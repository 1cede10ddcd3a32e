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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipelines.lake.delta import delta_exists
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import AUDIT_DDL
from pipelines.processes import running_pid, stop_process_group
from pipelines.serving.catalog import load_departments
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)


def audit_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.trino_home) / "audit"


def receiver_port(settings: Settings) -> int:
    return settings.trino_port + 1


# --------------------------------------------------------------------------- the receiver

def serve(settings: Settings | None = None) -> None:
    """Receive Trino's events until killed (run as ``python -m pipelines.audit``)."""
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
            day = datetime.now(timezone.utc).strftime("%Y%m%d")
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
        return datetime.fromtimestamp(value / (1000 if value > 1e11 else 1), tz=timezone.utc).replace(tzinfo=None)
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        return None


def audit_row(event: dict, departments_by_user: dict[str, str]) -> dict | None:
    """One audit row from one QueryCompletedEvent as Trino's listener sends it."""
    metadata = event.get("metadata") or {}
    context = event.get("context") or {}
    query_id = metadata.get("queryId")
    if not query_id:
        return None
    failure = event.get("failureInfo") or {}
    error_code = (failure.get("errorCode") or {}).get("name") if isinstance(failure.get("errorCode"), dict) \
        else failure.get("errorCode")
    message = failure.get("failureMessage") or ""
    tables, columns = [], []
    for item in (event.get("ioMetadata") or {}).get("inputs", []):
        table = f"{item.get('catalogName')}.{item.get('schema')}.{item.get('table')}"
        tables.append(table)
        for column in item.get("columns", []):
            name = (column.get("name") or column.get("column")) if isinstance(column, dict) else column
            columns.append(f"{table}.{name}")
    statistics = event.get("statistics") or {}
    user = context.get("user")
    return {
        "query_id": query_id, "user": user, "department": departments_by_user.get(user),
        "created_at": _timestamp(event.get("createTime")), "ended_at": _timestamp(event.get("endTime")),
        "query": metadata.get("query"), "state": metadata.get("queryState"),
        "access_denied": error_code == "PERMISSION_DENIED" or message.startswith("Access Denied"),
        "error_code": error_code, "error_message": message[:2000] or None,
        "tables_read": sorted(set(tables)), "columns_read": sorted(set(columns)),
        "rows_returned": statistics.get("outputRows"), "source": context.get("source"),
        "loaded_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }


def load_audit(spark, settings: Settings | None = None) -> int:
    """Merge every received event into ``governance.query_audit``; returns the
    number of query ids new to the table."""
    from delta.tables import DeltaTable


    settings = settings or get_settings()
    users = {user: code for code, d in load_departments(settings).items() for user in d.users}
    rows = {}
    for path in sorted(audit_dir(settings).glob("events-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = audit_row(json.loads(line), users)
                if row:
                    rows[row["query_id"]] = row
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
