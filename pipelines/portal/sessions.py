"""Server-side sessions of the portal.

A session holds the Trino user and the password it logged in with, since
every page reads through Trino as that user; they stay in this process's
memory and never reach the browser, which holds only a random session id in
a cookie that is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``. Every form
carries the session's CSRF token (``check_csrf``), the login form included
(an anonymous session is made for it), and a login gets a new session id.
Sessions end on logout, after ``IDLE_SECONDS`` without a request, or when the
portal stops."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "govlake_portal"
IDLE_SECONDS = 30 * 60


@dataclass
class Session:
    session_id: str
    csrf: str
    user: str | None = None            # None: not logged in (the login form's session)
    password: str | None = field(default=None, repr=False)
    department: str | None = None      # its code in the catalog
    seen_at: float = field(default_factory=time.monotonic)


class SessionStore:
    """Sessions by id, in memory; thread-safe."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS):
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, user: str | None = None, password: str | None = None, department: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, password, department)
        with self._lock:
            self._drop_idle()
            self._sessions[session.session_id] = session
        return session

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
        limit = time.monotonic() - self.idle_seconds
        for key in [k for k, s in self._sessions.items() if s.seen_at < limit]:
            del self._sessions[key]


def check_csrf(session: Session | None, token: str | None) -> bool:
    """Whether a form's ``token`` is its session's (constant-time)."""
    return session is not None and bool(token) and hmac.compare_digest(session.csrf, token)
