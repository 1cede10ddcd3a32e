"""PostgreSQL for Airflow's metadata database (``GOVLAKE_AIRFLOW_DATABASE=postgres``).

SQLite lets Airflow run one task at a time; feed DAGs that run in parallel
need a server database. This is Debian's ``postgresql`` package (``make
postgres`` installs it; ``make test`` does), run by the project like its
other services: a cluster of its own under ``<airflow home>/postgres/``
(``initdb`` on first use), listening on 127.0.0.1 only at
``airflow_port + 715`` with its socket inside the data dir, one superuser
``airflow`` whose generated password is in ``postgres-password`` (0600),
``scram-sha-256`` over TCP, ``peer`` over the socket, and a database
``airflow``. PostgreSQL refuses to run as root: as root, the server runs as
the ``postgres`` account the package created (``setpriv``; it then owns the
data dir, and the folders above it must be traversable: a 0700 home or
temporary folder is not, and ``postgres_up`` says which). ``govlake airflow
down`` stops it, also after ``govlake airflow run`` started it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pipelines.processes import probe_service, stop_process_group
from pipelines.settings import Settings, get_settings

HOST = "127.0.0.1"
DATABASE = USER = "airflow"
SERVICE_ACCOUNT = "postgres"      # the account Debian's package creates; the server runs as it under root


class PostgresError(RuntimeError):
    """PostgreSQL is missing or did not start; the message says what to do or where the log is."""


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` with a server in it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    if not found:
        raise PostgresError("PostgreSQL is not installed: `make postgres` (apt-get install postgresql)")
    return found[-1].parent


def home(settings: Settings) -> Path:
    return Path(settings.airflow_home) / "postgres"


def data_dir(settings: Settings) -> Path:
    return home(settings) / "data"


def port(settings: Settings) -> int:
    return settings.airflow_port + 715


def password_path(settings: Settings) -> Path:
    return Path(settings.airflow_home) / "postgres-password"


def _password(settings: Settings) -> str:
    path = password_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    path.chmod(0o600)
    return path.read_text().strip()


def database_url(settings: Settings) -> str:
    """Airflow's ``sql_alchemy_conn`` for this server (the password in it: keep it to the environment)."""
    return f"postgresql+psycopg2://{USER}:{_password(settings)}@{HOST}:{port(settings)}/{DATABASE}"


def _as_server_account(command: list[str]) -> list[str]:
    """``command`` as the server account under root: ``setpriv`` execs it (no
    parent stays in between, so the pid file holds the server's own pid)."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={SERVICE_ACCOUNT}", f"--regid={SERVICE_ACCOUNT}", "--init-groups", "--", *command]


def _check_reachable(folder: Path) -> None:
    """Under root the server runs as ``postgres``, which must traverse every
    folder above its data dir; say which one it cannot."""
    if os.geteuid() != 0:
        return
    for parent in reversed(folder.resolve().parents):
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise PostgresError(f"{parent} is not traversable by others (mode {parent.stat().st_mode & 0o777:o}): "
                                f"PostgreSQL runs as {SERVICE_ACCOUNT} under root and needs to reach {folder}; "
                                "set GOVLAKE_AIRFLOW_HOME to a folder below traversable ones")


def _pid_file(settings: Settings) -> Path:
    return home(settings) / "server.pid"


def _connect(settings: Settings, database: str = DATABASE):
    import psycopg2

    return psycopg2.connect(host=HOST, port=port(settings), user=USER, password=_password(settings),
                            dbname=database, connect_timeout=3)


def _answers(settings: Settings) -> bool:
    try:
        _connect(settings, "postgres").close()
        return True
    except Exception:                    # noqa: BLE001 - any failure to connect is "not (yet) answering"
        return False


def postgres_status(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    pid, answering = probe_service(_pid_file(settings), lambda: _answers(settings))
    return {"running": pid is not None, "answering": answering, "pid": pid,
            "url": f"postgresql://{USER}@{HOST}:{port(settings)}/{DATABASE}", "data": str(data_dir(settings)),
            "log": str(home(settings) / "server.log")}


def _initdb(settings: Settings, binaries: Path) -> None:
    data = data_dir(settings)
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=home(settings), delete=False) as handle:
        handle.write(_password(settings) + "\n")
    secret = Path(handle.name)
    try:
        if os.geteuid() == 0:
            home(settings).chmod(0o711)
            shutil.chown(data, SERVICE_ACCOUNT, SERVICE_ACCOUNT)
            shutil.chown(secret, SERVICE_ACCOUNT, SERVICE_ACCOUNT)
        secret.chmod(0o600)
        completed = subprocess.run(
            _as_server_account([str(binaries / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={secret}",
                                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-locale"]),
            capture_output=True, text=True, check=False)
    finally:
        secret.unlink(missing_ok=True)
    if completed.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise PostgresError(f"initdb failed for {data}:\n{(completed.stdout + completed.stderr)[-2000:]}")


def postgres_up(settings: Settings | None = None, wait_seconds: int = 60) -> dict:
    """Create the cluster on first use, start the server (idempotent) and make
    sure the ``airflow`` database exists; return once it answers."""
    settings = settings or get_settings()
    status = postgres_status(settings)
    if status["answering"]:
        return status
    binaries = postgres_bin()
    home(settings).mkdir(parents=True, exist_ok=True)
    _check_reachable(home(settings))
    if not (data_dir(settings) / "PG_VERSION").exists():
        _initdb(settings, binaries)
    if not status["running"]:
        log_path = home(settings) / "server.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                _as_server_account([str(binaries / "postgres"), "-D", str(data_dir(settings)),
                                    "-p", str(port(settings)), "-h", HOST, "-k", str(data_dir(settings))]),
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        _pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        status = postgres_status(settings)
        if status["answering"]:
            _ensure_database(settings)
            return status
        if not status["running"]:
            raise PostgresError(f"PostgreSQL exited; see {home(settings) / 'server.log'}")
        time.sleep(0.5)
    raise PostgresError(f"PostgreSQL did not answer on {HOST}:{port(settings)} within {wait_seconds} s; "
                        f"see {home(settings) / 'server.log'}")


def _ensure_database(settings: Settings) -> None:
    connection = _connect(settings, "postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        connection.close()


def postgres_down(settings: Settings | None = None) -> bool:
    """A fast shutdown (``pg_ctl stop -m fast``: sessions rolled back, a clean
    checkpoint), then the process group if anything is left."""
    settings = settings or get_settings()
    running = probe_service(_pid_file(settings), lambda: True)[0] is not None
    if running:
        subprocess.run(_as_server_account([str(postgres_bin() / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30",
                                           "-D", str(data_dir(settings))]),
                       capture_output=True, text=True, check=False)
    return stop_process_group(_pid_file(settings), grace_seconds=10) or running
