"""The audit log: every Trino query by every user (denied ones included), and
the HTTP calls to Trino that are not queries (failed logins, management calls).

Two sources, one table, ``governance.query_audit`` (grain: one row per Trino
query id, or per audited line of Trino's HTTP request log):

- **Query events.** Trino's ``http`` event listener posts each completed query
  (finished, failed or refused by access control) to a receiver on 127.0.0.1
  that ``govlake trino up`` starts next to Trino. Every post carries the token
  of ``<audit dir>/receiver.token`` (mode 0600, created once) in the
  ``X-Govlake-Audit-Token`` header (``http-event-listener.connect-http-headers``).
  A post without the right token gets 401, a body that is not a usable event
  400; both are recorded in ``<audit dir>/rejected-events.jsonl`` and never
  reach the events. Accepted events are appended as Trino sent them to
  ``<audit dir>/events-<day>.jsonl``.
- **HTTP requests.** Trino's request log (``<trino home>/data/var/log/
  http-request*.log``, written by Airlift): every 401 and 403, and every REST
  call that is neither the statement protocol nor the cluster's own traffic.

``load_audit`` appends what the table does not hold yet (by query id; the
first event received for a query id wins, and a row once loaded never
changes) in one delta-rs commit under an exclusive file lock. Rows are
hash-chained: ``seq`` counts 1..n without gaps and ``digest`` covers the
previous row's digest and the row's fields (``row_digest``), so
``verify_audit`` finds an altered, deleted, inserted or reordered row.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipelines.lake.delta import arrow_schema, rows_table, table_exists
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import AUDIT_DDL
from pipelines.processes import running_pid, service_environment, stop_process_group
from pipelines.serving.catalog import load_departments
from pipelines.settings import Settings, get_settings, settings_environment, utc_now

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Govlake-Audit-Token"
EVENTS_PATH = "/events"
VERIFY_PATH = "/verify"      # the verify catalog's questions (pipelines/serving/verifier.py)
REJECTED_EVENTS = "rejected-events.jsonl"
MAX_EVENT_BYTES = 32 * 1024 * 1024       # a completed-query event with a 1 MB query text is far below this
GENESIS_DIGEST = "0" * 64                # the prev_digest of seq 1
HEAD_SEQ_KEY, HEAD_DIGEST_KEY = "govlake_audit_head_seq", "govlake_audit_head_digest"   # in each commit's info


class AuditError(RuntimeError):
    """The audit log's files or table are not what the loader expects; the message names the file."""


def audit_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.trino_home) / "audit"


def receiver_port(settings: Settings) -> int:
    return settings.trino_port + 1


def _make_audit_dir(settings: Settings) -> Path:
    """The audit folder, created readable by its owner only (query texts of every user land there)."""
    folder = audit_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


# --------------------------------------------------------------------------- the receiver's token

def token_path(settings: Settings) -> Path:
    return audit_dir(settings) / "receiver.token"


def receiver_token(settings: Settings | None = None) -> str:
    """The token Trino's listener sends and the receiver requires: 64 hex
    characters in ``<audit dir>/receiver.token`` (mode 0600), created on first
    use and never replaced, so a token from an earlier start stays valid."""
    settings = settings or get_settings()
    path = token_path(settings)
    if not path.exists():
        _make_audit_dir(settings)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".receiver.token.")   # mode 0600
        try:
            with os.fdopen(handle, "w", encoding="ascii") as stream:
                stream.write(secrets.token_hex(32) + "\n")
            try:
                os.link(temporary, path)   # atomic and never overwrites: a concurrent first start keeps one token
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    if path.stat().st_mode & 0o077:
        log.warning("audit: %s was readable by others; now mode 0600", path)
        path.chmod(0o600)
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", token):
        raise AuditError(f"{path}: not a receiver token (64 hex characters); delete it and restart Trino "
                         "(`govlake trino down && govlake trino up`) to create a new one")
    return token


def listener_properties(settings: Settings) -> list[str]:
    """Trino 476's ``http`` event listener: completed queries only, posted to the
    receiver with the token in ``X-Govlake-Audit-Token``. The lines hold the
    token, so the file they go to must be readable by Trino's user only.
    (``connect-http-headers`` takes ``Name:value`` items split on commas; the
    token is hex, and no space follows the colon because Trino keeps it.)"""
    return ["event-listener.name=http", "http-event-listener.log-completed=true",
            "http-event-listener.log-created=false", "http-event-listener.log-split=false",
            f"http-event-listener.connect-ingest-uri=http://127.0.0.1:{receiver_port(settings)}{EVENTS_PATH}",
            f"http-event-listener.connect-http-headers={TOKEN_HEADER}:{receiver_token(settings)}",
            "http-event-listener.connect-retry-count=5"]


# --------------------------------------------------------------------------- the receiver

PLAN_FIELDS = ("plan", "jsonPlan", "payload")     # metadata fields the audit does not use: the bulk of an event
EDGE_BYTES = 8 * 1024 * 1024                      # how much of an oversized event's head and tail is read


def slim_event(event: dict) -> dict:
    """The event without the query plans (text and JSON), which the audit
    does not use and which make up most of its size."""
    metadata = event.get("metadata")
    if isinstance(metadata, dict) and any(name in metadata for name in PLAN_FIELDS):
        event = dict(event, metadata={k: v for k, v in metadata.items() if k not in PLAN_FIELDS})
    return event


def _string_after(text: str, key: str) -> str | None:
    """The JSON string value that follows the first ``"key":`` in ``text``
    (decoded; cut where ``text`` ends), or None."""
    found = re.search(rf'"{re.escape(key)}"\s*:\s*"', text)
    if not found:
        return None
    start = found.end() - 1
    try:
        return json.JSONDecoder().raw_decode(text, start)[0]
    except ValueError:           # the string runs past the end of what was read
        value = text[start + 1:]
        try:
            return json.loads('"' + value.rstrip("\\") + '"')
        except ValueError:
            return value


def oversized_event(stream, length: int, edge: int = EDGE_BYTES) -> dict | None:
    """Read an event of ``length`` bytes from ``stream`` in chunks, keeping only
    its first and last ``edge`` bytes, and rebuild the audited fields: query
    id, state and text from the head (where ``metadata`` starts), user,
    principal and source from the tail's ``context``. None without a query id."""
    head, tail = bytearray(), bytearray()
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        remaining -= len(chunk)
        if len(head) < edge:
            head += chunk[:edge - len(head)]
        tail = (tail + chunk)[-edge:]
    first = head.decode("utf-8", errors="replace")
    last = tail.decode("utf-8", errors="replace")
    query_id = _string_after(first, "queryId")
    if not query_id:
        return None
    context = last[last.rfind('"context"'):] if '"context"' in last else ""
    query = _string_after(first, "query") or ""
    return {"metadata": {"queryId": query_id, "queryState": _string_after(first, "queryState") or "UNKNOWN",
                         "query": query + f" [govlake: an event of {length} bytes; plans not kept]"},
            "context": {name: _string_after(context, name) for name in ("user", "principal", "source")},
            "govlake_oversized_bytes": length}


def serve(settings: Settings | None = None) -> None:
    """Receive Trino's events on 127.0.0.1 until killed (run as ``python -m
    pipelines.serving.audit``). The token is read once, at start."""
    settings = settings or get_settings()
    folder = _make_audit_dir(settings)
    expected = receiver_token(settings).encode("ascii")
    write_lock = threading.Lock()

    def append(name: str, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with write_lock, (folder / name).open("a", encoding="utf-8") as handle:
            handle.write(line)

    class Handler(BaseHTTPRequestHandler):
        timeout = 30   # a client that stops sending mid-request does not hold a thread forever

        def refuse(self, status: int, reason: str, body: bytes) -> None:
            append(REJECTED_EVENTS, {
                "received_at": utc_now().isoformat(), "client_address": self.client_address[0],
                "path": self.path, "status": status, "reason": reason,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_start": body.decode("utf-8", errors="replace")[:500]})
            self.send_response(status)
            self.end_headers()

        def do_POST(self):  # http.server names the handler
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                length = -1
            supplied = (self.headers.get(TOKEN_HEADER) or "").strip().encode("utf-8", errors="replace")
            trusted = hmac.compare_digest(supplied, expected)
            if length < 0 or (length > MAX_EVENT_BYTES and not trusted):
                self.close_connection = True
                return self.refuse(400 if length < 0 else 413,
                                   f"no Content-Length or a body over {MAX_EVENT_BYTES} bytes", b"")
            if length > MAX_EVENT_BYTES:
                # Trino's own event, too big to parse whole: its plan repeats every
                # literal once per reference, so a crafted query can make it any size.
                # It is still audited, from what a bounded head and tail of it say.
                event = oversized_event(self.rfile, length)
                if self.path == EVENTS_PATH and event is not None:
                    append(f"events-{utc_now():%Y%m%d}.jsonl", event)
                    self.send_response(200)
                    self.end_headers()
                    return None
                return self.refuse(400, f"an event of {length} bytes with no query id in it", b"")
            body = self.rfile.read(length)
            if not trusted:
                return self.refuse(401, f"wrong {TOKEN_HEADER}" if supplied else f"no {TOKEN_HEADER}", body)
            if self.path == VERIFY_PATH:       # a question from the verify catalog's table functions
                return self.verify(body)
            if self.path != EVENTS_PATH:
                return self.refuse(404, f"not {EVENTS_PATH}", body)
            try:
                event = json.loads(body)
                audit_row(event, {})
            except BadAuditEvent as exc:
                return self.refuse(400, str(exc), body)
            except (ValueError, RecursionError):   # not JSON, not UTF-8, nested too deep
                return self.refuse(400, "not JSON", body)
            try:
                append(f"events-{utc_now():%Y%m%d}.jsonl", slim_event(event))
            except UnicodeEncodeError:   # a lone surrogate outside the audited fields
                return self.refuse(400, "the event holds text that is not valid Unicode", body)
            self.send_response(200)
            self.end_headers()
            return None

        def verify(self, body: bytes) -> None:
            from pipelines.serving.verifier import answer_form, parse_form

            try:
                form = parse_form(body)
            except ValueError as exc:
                # not the body: a question names a person (an ID number) and its purpose
                return self.refuse(400, f"not a verification form: {exc}", b"")
            try:
                status, text = answer_form(form, settings)
            except Exception:                    # noqa: BLE001 - the query fails, the receiver lives on
                incident = secrets.token_hex(4)
                log.exception("verification failed (incident %s)", incident)
                # the department sees no path or value, only what to quote to the operators
                status, text = 500, f"the verification failed (incident {incident}, in the receiver's log)"
            reply = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return None

        def log_message(self, *args):  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", receiver_port(settings)), Handler)
    server.serve_forever()


def _pid_file(settings: Settings) -> Path:
    return audit_dir(settings) / "receiver.pid"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def start_receiver(settings: Settings, wait_seconds: float = 10) -> int:
    """Start the receiver in the background and return its pid once it
    listens. Idempotent: a running receiver is kept unless the token file is
    newer than it (then it is restarted, to read the token Trino now sends);
    a token from an earlier start is kept."""
    receiver_token(settings)   # created before the receiver and Trino's listener read it
    pid = running_pid(_pid_file(settings))
    if pid is not None:
        started = _pid_file(settings).stat().st_mtime
        # its code too: a receiver started before an upgrade would not know the paths Trino now posts to
        newer = [path for path in (token_path(settings), *RECEIVER_CODE) if path.stat().st_mtime > started]
        if not newer:
            return pid
        log.warning("audit: %s changed after the receiver (pid %d) started; restarting it",
                    ", ".join(str(path) for path in newer), pid)
        stop_receiver(settings)
    port = receiver_port(settings)
    if _listening(port):
        raise RuntimeError(f"127.0.0.1:{port}, the audit receiver's port (Trino's port + 1), is taken by "
                           "another process")
    folder = _make_audit_dir(settings)
    # the lake's settings too: the receiver answers the verify catalog's questions from the libraries
    environment = service_environment(settings_environment(settings))
    receiver_log = folder / "receiver.log"
    with receiver_log.open("ab") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.serving.audit"], env=environment,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    # reaped as soon as it exits: a stopped child of a process that lives on
    # (a test, a scheduler) would otherwise look alive to stop_receiver
    threading.Thread(target=process.wait, name="audit-receiver-reaper", daemon=True).start()
    deadline = time.monotonic() + wait_seconds
    while not _listening(port):
        if process.poll() is not None:
            raise RuntimeError(f"the audit receiver exited; see {receiver_log}")
        if time.monotonic() > deadline:
            stop_receiver(settings)
            raise RuntimeError(f"the audit receiver did not listen on 127.0.0.1:{port} within {wait_seconds:g} s; "
                               f"see {receiver_log}")
        time.sleep(0.1)
    return process.pid


RECEIVER_CODE = (Path(__file__), Path(__file__).with_name("verifier.py"))


def stop_receiver(settings: Settings) -> None:
    stop_process_group(_pid_file(settings), grace_seconds=5)


# --------------------------------------------------------------------------- query events

def _timestamp(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / (1000 if value > 1e11 else 1), tz=UTC).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            return None
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
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
    """One audit row (``event_kind`` query, without the chain columns and
    ``loaded_at``) from one QueryCompletedEvent as Trino's listener sends it.

    ``principal`` is who authenticated (``context.principal``), ``user`` the
    effective user (``context.user``, which a client may ask to change with
    ``X-Trino-User``), and ``department`` the principal's department: an
    attempt to act as another user stays under the principal's department.
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
    principal = _text(context.get("principal"), "context.principal")
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
    row = {
        "event_kind": "query", "query_id": query_id, "principal": principal, "user": user,
        "department": departments_by_user.get(principal) if principal else None,
        "created_at": _timestamp(event.get("createTime")), "ended_at": _timestamp(event.get("endTime")),
        "query": _text(metadata.get("query"), "metadata.query"), "state": state,
        "access_denied": error_code == "PERMISSION_DENIED" or message.startswith("Access Denied"),
        "error_code": error_code, "error_message": message[:2000] or None,
        "tables_read": sorted(set(tables)), "columns_read": sorted(set(columns)),
        "rows_returned": rows_returned, "source": _text(context.get("source"), "context.source"),
        "client_address": _text(context.get("remoteClientAddress"), "context.remoteClientAddress"),
    }
    try:   # a lone surrogate (a "\\ud800" escape) can be neither hashed nor stored as UTF-8
        json.dumps(row, default=str, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadAuditEvent("the event holds text that is not valid Unicode (a lone surrogate)") from None
    return row


def rejected_path(event_file: Path) -> Path:
    """Where the lines of ``event_file`` that are not usable events, or repeat
    a query id, are kept (next to it; not matched by ``events-*.jsonl``)."""
    return event_file.with_name(event_file.name + ".rejected")


@dataclass
class AuditEvents:
    """The usable events of the receiver's files, one row per query id (the
    first received), and what was set aside: ``skipped`` unusable lines and
    ``duplicates`` (a query id seen before), both kept in ``rejected_files``."""
    rows: dict[str, dict] = field(default_factory=dict)
    skipped: int = 0
    duplicates: int = 0
    rejected_files: list[str] = field(default_factory=list)


def user_departments(settings: Settings) -> dict[str, str]:
    """Trino user -> department code, from the catalog's departments."""
    return {user: code for code, d in load_departments(settings).items() for user in d.users}


def read_audit_events(settings: Settings | None = None,
                      departments_by_user: dict[str, str] | None = None) -> AuditEvents:
    """Parse every ``events-*.jsonl`` file, oldest day first. The first event
    of a query id wins; a later one is a duplicate and never replaces it. A
    line that is not JSON, not an event object or misses a field is skipped,
    never fatal; each file's skipped lines and duplicates (line number,
    reason, text) are (re)written to its ``.rejected`` file, so reading twice
    keeps one copy of each. A last line without its newline is still being
    written and is left for the next read."""
    settings = settings or get_settings()
    if departments_by_user is None:
        departments_by_user = user_departments(settings)
    result = AuditEvents()
    for path in sorted(audit_dir(settings).glob("events-*.jsonl")):
        bad = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip() or not line.endswith("\n"):
                    continue
                try:
                    row = audit_row(json.loads(line), departments_by_user)
                except (json.JSONDecodeError, RecursionError):
                    bad.append({"line": number, "reason": "not JSON", "text": line.rstrip("\n")})
                except BadAuditEvent as exc:
                    bad.append({"line": number, "reason": str(exc), "text": line.rstrip("\n")})
                else:
                    if row["query_id"] in result.rows:
                        result.duplicates += 1
                        bad.append({"line": number, "reason": "duplicate query id", "text": line.rstrip("\n")})
                    else:
                        result.rows[row["query_id"]] = row
        rejected = rejected_path(path)
        if bad:
            partial = rejected.with_name(rejected.name + ".partial")
            partial.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in bad), encoding="utf-8")
            partial.replace(rejected)
            result.rejected_files.append(str(rejected))
        else:
            rejected.unlink(missing_ok=True)
        result.skipped += sum(1 for item in bad if item["reason"] != "duplicate query id")
    if result.skipped or result.duplicates:
        log.warning("audit: skipped %d event line(s) that are not Trino query events and %d duplicate query id(s); "
                    "kept in %s", result.skipped, result.duplicates, ", ".join(result.rejected_files))
    return result


# --------------------------------------------------------------------------- Trino's HTTP request log

def request_log_dir(settings: Settings) -> Path:
    return Path(settings.trino_home) / "data" / "var" / "log"


# Paths of the statement protocol (the query events cover it) and of the
# cluster's own traffic (tasks, discovery, memory, node state); a request to
# them is audited only when refused (401/403). Everything else is audited.
# The statement protocol (its queries are audited as query events) is never a
# separate row; the cluster's own traffic is not audited when it comes from the
# cluster (no user agent, or the node's own; a client can claim those, so only
# paths that hold nothing a department could want are left to that test).
# /v1/status, which shows other users' running query ids, is always audited.
UNAUDITED_PATHS = ("/v1/statement", "/v1/spooled")
INTERNAL_PATHS = ("/v1/task", "/v1/announcement", "/v1/memory", "/v1/info/state", "/v1/service")
INTERNAL_AGENTS = re.compile(r"^(null|govlake-coordinator-\d+)?$")


def request_row(line: str) -> dict | None:
    """The audit row (``event_kind`` http_request) of one line of Trino 476's
    request log, or None when the request is not audited (see
    ``UNAUDITED_PATHS``). Its id is ``http-`` + the sha256 of the line, so
    the same line read again (or from a rotated file) is the same row.

    Airlift writes 13 tab-separated fields: time, client address, method, URI,
    user, user agent, status, request bytes, response bytes, time in ms,
    protocol, ms to the request headers, ms since them. The user field is
    always ``null`` in 476 (it is Jetty's principal, which Trino's
    authenticators do not set), so who tried a refused call is not known: the
    row has no user, principal or department. A user agent may hold a tab,
    so it is whatever lies between the first five and the last seven fields.
    Raises ValueError for a line that is not a request-log line."""
    line = line.rstrip("\n")
    parts = line.split("\t")
    if len(parts) < 13:
        raise ValueError(f"{len(parts)} tab-separated fields, not 13")
    time_text, client, method, uri = parts[:4]
    status_text, _request_bytes, _response_bytes, millis_text = parts[-7:-3]
    try:
        status, millis = int(status_text), int(millis_text)
    except ValueError:
        raise ValueError(f"status {status_text!r} or time {millis_text!r} is not a number") from None
    created_at = _timestamp(time_text)
    if created_at is None:
        raise ValueError(f"time {time_text!r} is not an ISO timestamp")
    path = uri.split("?", 1)[0]
    refused = status in (401, 403)
    def under(prefixes) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)

    agent = "\t".join(parts[5:-7])
    if not refused and (under(UNAUDITED_PATHS) or (under(INTERNAL_PATHS) and INTERNAL_AGENTS.match(agent))):
        return None
    return {
        "event_kind": "http_request", "query_id": "http-" + hashlib.sha256(line.encode("utf-8")).hexdigest(),
        "principal": None, "user": None, "department": None,
        "created_at": created_at, "ended_at": created_at + timedelta(milliseconds=millis),
        "access_denied": refused, "source": agent or None,
        "http_method": method, "http_uri": uri[:2000], "http_status": status, "client_address": client,
    }


@dataclass
class RequestLog:
    """The audited requests of Trino's request log files, by id; ``lines``
    read in all and ``unparsed`` ones that are not request-log lines."""
    rows: dict[str, dict] = field(default_factory=dict)
    lines: int = 0
    unparsed: int = 0


def request_log_files(settings: Settings) -> list[Path]:
    """``http-request.log`` and the files Airlift rotates it into
    (``http-request-<day>.<n>.log``, ``.log.gz`` when compressed)."""
    return sorted(path for path in request_log_dir(settings).glob("http-request*.log*")
                  if path.name.endswith((".log", ".log.gz")))


def read_request_log(settings: Settings | None = None) -> RequestLog:
    """Parse every request log file. A line that is not a request-log line is
    counted and named in a warning, never fatal; a last line without its
    newline is still being written and is left for the next read."""
    settings = settings or get_settings()
    result = RequestLog()
    first_bad = None
    for path in request_log_files(settings):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip() or not line.endswith("\n"):
                    continue
                result.lines += 1
                try:
                    row = request_row(line)
                except ValueError as exc:
                    result.unparsed += 1
                    first_bad = first_bad or f"{path} line {number}: {exc}"
                    continue
                if row is not None:
                    result.rows.setdefault(row["query_id"], row)
    if result.unparsed:
        log.warning("audit: %d line(s) of Trino's request log are not request-log lines, first %s",
                    result.unparsed, first_bad)
    return result


# --------------------------------------------------------------------------- the chained table

def _columns() -> list[str]:
    return [item.strip().split(" ", 1)[0] for item in AUDIT_DDL.split(", ")]


def _canonical(value):
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def row_digest(row: dict, prev_digest: str) -> str:
    """sha256 hex of ``prev_digest`` + newline + the canonical JSON of the
    row: every column of ``AUDIT_DDL`` except ``prev_digest`` and ``digest``
    (so ``seq`` and ``loaded_at`` are covered), null values left out (a
    column added later does not change the digests of older rows), keys
    sorted, no spaces, UTF-8, timestamps as naive UTC ``isoformat`` with
    microseconds."""
    fields = {name: _canonical(row.get(name)) for name in _columns()
              if name not in ("prev_digest", "digest") and row.get(name) is not None}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_digest}\n{text}".encode()).hexdigest()


def _chain(rows: list[dict], head_seq: int, head_digest: str, loaded_at: datetime | None) -> tuple[int, str]:
    """Number ``rows`` (in their order) after ``head_seq`` and link each to the
    one before; returns the new head (seq, digest)."""
    for row in rows:
        head_seq += 1
        row["seq"], row["prev_digest"] = head_seq, head_digest
        if loaded_at is not None:
            row["loaded_at"] = loaded_at
        row["digest"] = head_digest = row_digest(row, head_digest)
    return head_seq, head_digest


def _head_commit(seq: int, digest: str, what: str):
    """Commit properties recording the chain's head, which ``verify_audit``
    compares with the table's last row (a removed tail has no other trace)."""
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata={"userMetadata": what, HEAD_SEQ_KEY: str(seq),
                                             HEAD_DIGEST_KEY: digest})


def _load_order(row: dict) -> tuple:
    return (row.get("created_at") or datetime.min, row["event_kind"], row["query_id"])


def ensure_audit_table(settings: Settings | None = None) -> str:
    """Create ``governance.query_audit`` empty if it does not exist; returns
    its path. A table from before the hash chain (no ``digest`` column) is
    chained once, in one commit (its old version stays in the Delta history):
    its rows in created_at order, as query events without a principal."""
    from deltalake import DeltaTable, write_deltalake

    settings = settings or get_settings()
    path = governance_path("query_audit", settings)
    if not table_exists(path):
        DeltaTable.create(path, arrow_schema(AUDIT_DDL), mode="ignore",
                          commit_properties=_head_commit(0, GENESIS_DIGEST, "govlake audit: created"))
        return path
    if "digest" in {f.name for f in DeltaTable(path).schema().fields}:
        return path
    rows = sorted(({**row, "event_kind": "query"} for row in _read_data_files(DeltaTable(path))[0]),
                  key=_load_order)
    seq, digest = _chain(rows, 0, GENESIS_DIGEST, loaded_at=None)
    write_deltalake(path, rows_table(rows, AUDIT_DDL), mode="overwrite", schema_mode="overwrite",
                    commit_properties=_head_commit(seq, digest, f"govlake audit: chained {seq} rows of the "
                                                                "table from before the hash chain"))
    log.warning("audit: governance.query_audit at %s predated the hash chain; its %d rows are now seq 1..%d",
                path, seq, seq)
    return path


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _table_head(path: str) -> tuple[set[str], int, str]:
    """(query ids in the table, seq and digest of its last row). Raises
    ``AuditError`` when a data file cannot be read or differs from the Delta log."""
    import pyarrow as pa
    from deltalake import DeltaTable

    try:
        rows, changed = _read_data_files(DeltaTable(path), columns=["query_id", "seq", "digest"])
    except (OSError, pa.ArrowException) as exc:
        raise AuditError(f"governance.query_audit at {path} cannot be read ({exc}); nothing was appended: "
                         "see `govlake audit verify`") from exc
    if changed:
        raise AuditError(f"governance.query_audit at {path} cannot be read as the Delta log describes it: "
                         f"{'; '.join(changed)}; nothing was appended: see `govlake audit verify`")
    if not rows:
        return set(), 0, GENESIS_DIGEST
    last = max(rows, key=lambda row: row["seq"] or 0)
    if len(rows) != (last["seq"] or 0):
        log.warning("audit: governance.query_audit at %s has %d rows but its last seq is %s: run "
                    "`govlake audit verify`", path, len(rows), last["seq"])
    return {row["query_id"] for row in rows}, last["seq"] or 0, last["digest"] or GENESIS_DIGEST


def load_audit(settings: Settings | None = None) -> dict:
    """Append the received query events and the audited requests of Trino's
    request log that ``governance.query_audit`` does not hold yet (by query
    id), chained, in one delta-rs commit, under an exclusive lock on
    ``<audit dir>/load.lock``; no Spark. Rows already in the table never
    change, so loading twice adds nothing. New rows go in created_at order
    (then kind, then id). Returns the counts: rows ``loaded`` (``queries`` +
    ``http_requests``), ``already_loaded``, ``skipped_events``,
    ``duplicate_events``, ``unparsed_request_lines``, and the chain's
    ``head_seq`` afterwards. Raises ``AuditError`` when the table cannot be read."""
    from deltalake import write_deltalake

    settings = settings or get_settings()
    folder = _make_audit_dir(settings)
    with _exclusive_lock(folder / "load.lock"):
        path = ensure_audit_table(settings)
        events = read_audit_events(settings)
        requests = read_request_log(settings)
        present, head_seq, head_digest = _table_head(path)
        candidates = [*events.rows.values(), *requests.rows.values()]
        new = sorted((row for row in candidates if row["query_id"] not in present), key=_load_order)
        seq, digest = _chain(new, head_seq, head_digest, loaded_at=utc_now())
        if new:
            write_deltalake(path, rows_table(new, AUDIT_DDL), mode="append", schema_mode="merge",
                            commit_properties=_head_commit(seq, digest, f"govlake audit load: seq {head_seq + 1}"
                                                                        f"..{seq}"))
            log.info("audit: appended seq %d..%d to %s", head_seq + 1, seq, path)
    queries = sum(1 for row in new if row["event_kind"] == "query")
    return {"table": path, "loaded": len(new), "queries": queries, "http_requests": len(new) - queries,
            "already_loaded": len(candidates) - len(new), "skipped_events": events.skipped,
            "duplicate_events": events.duplicates, "unparsed_request_lines": requests.unparsed, "head_seq": seq}


# --------------------------------------------------------------------------- verification

def _broken(seq, query_id, reason: str) -> dict:
    return {"seq": seq, "query_id": query_id, "reason": reason}


def _read_data_files(table, columns: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Every row (``columns`` of it, or all; timestamps as naive UTC) of the
    table's current data files, read from the files as they are on disk, and
    the files whose size differs from the one the Delta log recorded.

    Read directly, not through ``DeltaTable.to_pyarrow_table``: a rewritten
    file is read rather than failing the scan, and the process does not abort
    at exit ("terminate called without an active exception", seen here with
    deltalake 1.6.6 and pyarrow 26; cf. delta-io/delta-rs#2184). Delta
    features the audit table never uses (deletion vectors, column mapping)
    are not applied. Raises OSError or ArrowInvalid for an unreadable file."""
    from urllib.parse import unquote

    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    filesystem, base = pafs.FileSystem.from_uri(table.table_uri)
    rows, changed = [], []
    for action in pa.table(table.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pylist():
        location = f"{base.rstrip('/')}/{unquote(action['path'])}"
        size = filesystem.get_file_info(location).size
        if size != action["size_bytes"]:
            changed.append(f"{action['path']} ({action['size_bytes']} bytes in the Delta log, {size} on disk)")
        names = pq.read_schema(location, filesystem=filesystem).names
        data = pq.read_table(location, filesystem=filesystem,
                             columns=[name for name in columns if name in names] if columns else None)
        rows.extend(pa.table({name: column.cast(pa.timestamp("us")) if pa.types.is_timestamp(column.type) else column
                              for name, column in zip(data.column_names, data.columns)}).to_pylist())
    return rows, changed


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


def _chain_break(rows: list[dict]) -> dict | None:
    """The first row (``rows`` in seq order) where the chain breaks, or None."""
    previous = GENESIS_DIGEST
    for expected, row in enumerate(rows, start=1):
        seq, query_id = row.get("seq"), row.get("query_id")
        if seq is None:
            return _broken(None, query_id, "the row has no seq")
        if seq < expected:
            return _broken(seq, query_id, f"seq {seq} appears more than once")
        if seq > expected:
            return _broken(seq, query_id, f"{_seqs(expected, seq - 1)} missing: deleted before seq {seq}")
        linked = row.get("prev_digest") == previous
        if row_digest(row, row.get("prev_digest") or "") != row.get("digest"):
            return _broken(seq, query_id, "the digest does not match the row's fields: the row "
                           + ("was altered" if linked else "was altered or moved (its seq changed)"))
        if not linked:
            return _broken(seq, query_id, f"prev_digest is not the digest of seq {seq - 1}: a row was removed, "
                                          "inserted or reordered before it")
        previous = row["digest"]
    return None


def _tail_break(table, rows: list[dict]) -> dict | None:
    """Where the table's end differs from the head the newest load of this
    snapshot committed (rows removed from the end, rows appended by others,
    the whole chain recomputed), or None."""
    committed = next((commit for commit in table.history() if HEAD_SEQ_KEY in commit
                      and commit.get("version", 0) <= table.version()), None)
    if committed is None:
        return None
    head_seq, last = int(committed[HEAD_SEQ_KEY]), rows[-1] if rows else {}
    if head_seq > len(rows):
        return _broken(len(rows) + 1, None, f"{_seqs(len(rows) + 1, head_seq)} missing: the last load (version "
                                            f"{committed['version']}) ended at seq {head_seq}; deleted from the "
                                            "end")
    if head_seq < len(rows):
        extra = rows[head_seq]
        return _broken(extra.get("seq"), extra.get("query_id"), f"rows after seq {head_seq} were not written by "
                                                                 "`govlake audit load`")
    if head_seq and committed.get(HEAD_DIGEST_KEY) != last.get("digest"):
        return _broken(head_seq, last.get("query_id"), "the last row's digest is not the one the last load "
                                                       "committed: the chain was recomputed")
    return None


def verify_audit(settings: Settings | None = None) -> dict:
    """Re-read ``governance.query_audit`` (its current data files as they are
    on disk), order by seq and check the chain: seq 1..n without gaps or
    repeats, each digest recomputed from the row (``row_digest``), each
    prev_digest equal to the digest before, and the last row equal to the head
    the newest load committed (a removed tail leaves no other trace). Returns
    ``{ok, table, rows, head_seq, head_digest, changed_files, first_broken:
    {seq, query_id, reason} | None}`` (head_* once the chain holds). A data
    file whose size differs from the Delta log breaks the table too: it is
    named in ``changed_files``, and in first_broken when the chain holds."""
    import pyarrow as pa
    from deltalake import DeltaTable

    settings = settings or get_settings()
    path = governance_path("query_audit", settings)
    result = {"ok": False, "table": path, "rows": 0, "head_seq": None, "head_digest": None, "changed_files": [],
              "first_broken": None}
    if not table_exists(path):
        result["first_broken"] = _broken(None, None, f"there is no governance.query_audit table at {path} "
                                                     "(`govlake trino up` creates it; if it was there, it was removed)")
        return result
    table = DeltaTable(path)
    try:
        rows, result["changed_files"] = _read_data_files(table)
    except (OSError, pa.ArrowException) as exc:
        result["first_broken"] = _broken(None, None, f"a data file of {path} cannot be read: {exc}")
        return result
    rows.sort(key=lambda row: (row.get("seq") is None, row.get("seq") or 0))
    result["rows"] = len(rows)
    result["first_broken"] = _chain_break(rows)
    if result["first_broken"] is None:
        result["head_seq"], result["head_digest"] = len(rows), rows[-1]["digest"] if rows else GENESIS_DIGEST
        result["first_broken"] = _tail_break(table, rows)
    if result["first_broken"] is None and result["changed_files"]:
        result["first_broken"] = _broken(None, None, "data files were rewritten on disk: "
                                         + "; ".join(result["changed_files"]))
    result["ok"] = result["first_broken"] is None
    return result


if __name__ == "__main__":
    serve()
