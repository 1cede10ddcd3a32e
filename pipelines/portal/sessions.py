"""Server-side sessions of the portal.

A session holds the Trino user and the password it logged in with, since
every page reads through Trino as that user; they stay in this process's
memory and never reach the browser, which holds only a random session id in
a cookie that is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``. Every form
carries the session's CSRF token (``check_csrf``), the login form included
(an anonymous session is made for it), and a login gets a new session id.
Sessions end on logout, after ``IDLE_SECONDS`` without a request or
``LIFETIME_SECONDS`` in all, or when the portal stops; login forms waiting
are capped. ``FAILURES_ALLOWED`` failed logins of a user name or a client
within ``FAILURE_WINDOW_SECONDS`` lock further attempts for the window."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# __Host-: only this origin's HTTPS pages set or get it (cookies ignore ports: Trino's
# and Airflow's pages on 127.0.0.1 cannot overwrite it)
COOKIE = "__Host-govlake_portal"
IDLE_SECONDS = 30 * 60
LIFETIME_SECONDS = 8 * 3600         # a working day, however active
ANONYMOUS_LIMIT = 1000              # login forms waiting; the oldest go first
FAILURES_ALLOWED, FAILURE_WINDOW_SECONDS = 5, 300


@dataclass
class Session:
    session_id: str
    csrf: str
    user: str | None = None            # None: not logged in (the login form's session)
    password: str | None = field(default=None, repr=False)
    department: str | None = None      # its code in the catalog
    seen_at: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.monotonic)
    previous_login: datetime | None = None     # the user's login before this one (what is new since)


class SessionStore:
    """Sessions by id, in memory; thread-safe."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS, lifetime_seconds: float = LIFETIME_SECONDS):
        self.idle_seconds, self.lifetime_seconds = idle_seconds, lifetime_seconds
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def new(self, user: str | None = None, password: str | None = None, department: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, password, department)
        with self._lock:
            self._drop_idle()
            if user is None:
                anonymous = [k for k, s in self._sessions.items() if s.user is None]
                for key in anonymous[:max(0, len(anonymous) - ANONYMOUS_LIMIT + 1)]:
                    del self._sessions[key]
            self._sessions[session.session_id] = session
        return session

    def locked_out(self, *who: str) -> bool:
        """Whether a user name or client address failed to log in
        ``FAILURES_ALLOWED`` times within ``FAILURE_WINDOW_SECONDS``."""
        limit = time.monotonic() - FAILURE_WINDOW_SECONDS
        with self._lock:
            return any(len([t for t in self._failures.get(w, []) if t > limit]) >= FAILURES_ALLOWED for w in who)

    def failed(self, *who: str) -> None:
        limit = time.monotonic() - FAILURE_WINDOW_SECONDS
        with self._lock:
            for w in who:
                self._failures[w] = [t for t in self._failures.get(w, []) if t > limit] + [time.monotonic()]

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            self._drop_idle()
            session = self._sessions.get(session_id)
            if session is not None:
                session.seen_at = time.monotonic()
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _drop_idle(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items()
                    if s.seen_at < now - self.idle_seconds or s.started_at < now - self.lifetime_seconds]:
            del self._sessions[key]


def check_csrf(session: Session | None, token: str | None) -> bool:
    """Whether a form's ``token`` is its session's (constant-time)."""
    return session is not None and bool(token) and hmac.compare_digest(session.csrf, token)


def remember_login(folder: Path, user: str, at: datetime) -> datetime | None:
    """Record ``user``'s login at ``at`` in ``folder/logins.json`` (mode
    0600) and return the one before, so a page can say what is new since.
    A missing or unreadable file means no earlier login."""
    import json
    import os

    path = folder / "logins.json"
    try:
        logins = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logins = {}
    before = logins.get(user)
    logins[user] = at.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(logins, sort_keys=True), encoding="utf-8")
    os.chmod(partial, 0o600)
    partial.replace(path)
    return datetime.fromisoformat(before) if before else None
