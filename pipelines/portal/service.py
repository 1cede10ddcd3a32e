"""``govlake portal up|down|status``: the portal as a background process.

Uvicorn serves ``pipelines.portal.app`` on 127.0.0.1 only, over HTTPS with
the project's certificate (the one Trino serves with; clients that trust
Trino trust the portal). Before it starts, the table the portal writes
(``governance.issue_events``) is made if missing and published to Trino, so
the first page can read it. Trino must be up: the portal logs users in
through it and reads everything through it."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipelines.processes import probe_service, service_environment, stop_process_group
from pipelines.settings import Settings, get_settings, settings_environment

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class PortalError(RuntimeError):
    """The portal could not start; the message says why."""


def _home(settings: Settings) -> Path:
    from pipelines.portal.app import portal_home

    return portal_home(settings)


def _pid_file(settings: Settings) -> Path:
    return _home(settings) / "portal.pid"


def portal_url(settings: Settings) -> str:
    return f"https://{HOST}:{settings.portal_port}"


def _answers(settings: Settings) -> bool:
    import requests

    from pipelines.serving.trino import certificate_path

    session = requests.Session()
    session.trust_env = False
    response = session.get(portal_url(settings) + "/login", verify=str(certificate_path(settings)), timeout=5)
    return response.status_code == 200


def portal_status(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    pid, answering = probe_service(_pid_file(settings), lambda: _answers(settings))
    return {"running": pid is not None, "answering": answering, "pid": pid, "url": portal_url(settings),
            "log": str(_home(settings) / "portal.log"), "refusals": str(_home(settings) / "refusals.jsonl")}


def ensure_issue_events(settings: Settings) -> None:
    """``governance.issue_events`` exists (empty at first) and Trino has it."""
    from deltalake import write_deltalake

    from pipelines.lake.delta import rows_table
    from pipelines.lake.paths import governance_path
    from pipelines.lake.tables import ISSUE_EVENTS_DDL
    from pipelines.serving.publish import publish

    path = governance_path("issue_events", settings)
    if not Path(path, "_delta_log").exists():
        write_deltalake(path, rows_table([], ISSUE_EVENTS_DDL), mode="append")
    publish(settings)


def portal_up(settings: Settings | None = None, wait_seconds: int = 60) -> dict:
    """Start the portal (idempotent); return once it answers."""
    from pipelines.serving.trino import certificate_path, trino_status

    settings = settings or get_settings()
    status = portal_status(settings)
    if status["answering"]:
        return status
    if not trino_status(settings)["answering"]:
        raise PortalError("Trino is not answering: the portal logs users in and reads through it "
                          "(`govlake trino up` first)")
    with socket.socket() as probe:
        if probe.connect_ex((HOST, settings.portal_port)) == 0 and not status["running"]:
            raise PortalError(f"{HOST}:{settings.portal_port} is taken by another process "
                              "(set GOVLAKE_PORTAL_PORT)")
    ensure_issue_events(settings)
    home = _home(settings)
    home.mkdir(parents=True, exist_ok=True)
    keystore = certificate_path(settings).with_name("govlake-trino.pem")
    environment = service_environment(settings_environment(settings))
    if settings.today is None:
        environment.pop("GOVLAKE_TODAY", None)
    log_path = home / "portal.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "pipelines.portal.app:create_app",
             "--host", HOST, "--port", str(settings.portal_port), "--ssl-certfile", str(certificate_path(settings)),
             "--ssl-keyfile", str(keystore), "--workers", "1", "--no-server-header", "--log-level", "warning"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _pid_file(settings).unlink(missing_ok=True)
            raise PortalError(f"the portal exited (code {process.returncode}); see {log_path}")
        status = portal_status(settings)
        if status["answering"]:
            return status
        time.sleep(0.5)
    raise PortalError(f"the portal did not answer on {portal_url(settings)} within {wait_seconds} s; see {log_path}")


def portal_down(settings: Settings | None = None) -> bool:
    return stop_process_group(_pid_file(settings or get_settings()), grace_seconds=10)

