"""Background services started by the project (Trino, Airflow, the audit
receiver) are tracked by a pid file and stopped by their own process group."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def venv_bin() -> Path:
    """The bin directory of the interpreter running govlake (the project's venv
    when started as ``.venv/bin/govlake``; not resolved, so a symlinked venv
    python still names the venv)."""
    return Path(sys.executable).parent


def service_environment(extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a background service: ``base`` (default: this
    process's) plus ``extra``, with the project venv's ``bin`` first on ``PATH``
    so that tools the service starts by name (``airflow``, ``python``) are the
    project's own, even when nothing was activated."""
    environment = dict(os.environ if base is None else base)
    environment.update(extra or {})
    first = str(venv_bin())
    rest = [part for part in environment.get("PATH", os.defpath).split(os.pathsep) if part and part != first]
    environment["PATH"] = os.pathsep.join([first, *rest])
    return environment


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: exists and is not a zombie (one that
    ended and whose parent, e.g. a test process that started it, has not
    collected it yet)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:                     # no /proc: as os.kill says
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive, else None."""
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    return pid if alive(pid) else None


def stop_process_group(pid_file: Path, grace_seconds: float = 30) -> bool:
    """SIGTERM the process group of the pid in ``pid_file``, SIGKILL after the
    grace period; remove the pid file. False if nothing was running."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            break
        time.sleep(0.5)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:      # it ended just as the grace period did
            pass
    pid_file.unlink(missing_ok=True)
    return True


def probe_service(pid_file: Path, answers) -> tuple[int | None, bool]:
    """(pid of the service's live process or None, whether ``answers()`` says
    it answers). A stopped service is never asked; any error from the probe
    means "not answering (yet)"."""
    pid = running_pid(pid_file)
    if pid is None:
        return None, False
    try:
        return pid, bool(answers())
    except Exception:  # noqa: BLE001 - a service that fails its probe does not answer
        return pid, False
