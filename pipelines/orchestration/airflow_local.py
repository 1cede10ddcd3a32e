"""Run Airflow 3 locally with its home inside the project.

Airflow is the orchestrator of record: ``run_dags`` runs DAGs through Airflow's
own ``dag.test()`` (the task runner, XCom, asset events and the metadata DB are
Airflow's; runs show up in the UI), and ``airflow_up`` starts ``airflow
standalone`` (API server + UI, scheduler, DAG processor, triggerer) on
127.0.0.1 with the LocalExecutor. The metadata database is SQLite by default
(one task at a time: SQLite takes one writer) or, with
``GOVLAKE_AIRFLOW_DATABASE=postgres``, the project's own PostgreSQL
(``pipelines.orchestration.postgres``, started and stopped with Airflow), on
which feed DAGs run in parallel: ``GOVLAKE_AIRFLOW_PARALLELISM`` tasks at once
(default 4 on PostgreSQL, two per core of this machine).

Airflow reads its configuration from ``AIRFLOW_*`` variables when it is first
imported, so ``use_project_airflow`` must run before anything imports airflow.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipelines.processes import probe_service, service_environment, stop_process_group
from pipelines.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


def airflow_environment(settings: Settings | None = None) -> dict[str, str]:
    """The ``AIRFLOW_*`` configuration of the project's local Airflow."""
    settings = settings or get_settings()
    home = Path(settings.airflow_home)
    if settings.airflow_database == "postgres":
        from pipelines.orchestration.postgres import database_url

        database, parallelism = database_url(settings), settings.airflow_parallelism or 4
    else:
        database, parallelism = f"sqlite:///{home / 'airflow.db'}", settings.airflow_parallelism or 2
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        # where task processes report to the API server (Airflow's default is localhost:8080 whatever the port)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # log servers next to the API port (8793/8794, Airflow's defaults, for
        # port 8080), so that a second Airflow on another port does not clash
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_port + 713),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 714),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # the lake and the declarative folders, for tasks started by Airflow
        "GOVLAKE_HOME": settings.home,
        "GOVLAKE_SCHEMAS": str(settings.schemas_dir),
        "GOVLAKE_QUALITY": str(settings.quality_dir),
        "GOVLAKE_CATALOG": str(settings.catalog_dir),
    }


def use_project_airflow(settings: Settings | None = None) -> dict[str, str]:
    """Point this process (and its children) at the project's Airflow; create
    its metadata DB on first use. Call before importing airflow."""
    settings = settings or get_settings()
    environment = airflow_environment(settings)
    configuration = sys.modules.get("airflow.configuration")
    loaded_home = getattr(configuration, "AIRFLOW_HOME", None)
    if loaded_home and Path(loaded_home).resolve() != Path(environment["AIRFLOW_HOME"]).resolve():
        raise RuntimeError(f"airflow was imported with AIRFLOW_HOME={loaded_home} before use_project_airflow(); "
                           "its configuration is fixed for this process")
    os.environ.update(environment)
    _migrate(settings, service_environment(environment))
    return environment


def _migrate(settings: Settings, environment: dict[str, str]) -> None:
    """Create or upgrade the metadata DB of ``settings.airflow_home``, once."""
    home = Path(settings.airflow_home)
    home.mkdir(parents=True, exist_ok=True)
    if settings.airflow_database == "postgres":
        from pipelines.orchestration.postgres import postgres_up

        postgres_up(settings)
    stamp = home / (".db-migrated" if settings.airflow_database == "sqlite" else f".db-migrated-{settings.airflow_database}")
    if not stamp.exists():
        completed = subprocess.run([_airflow_bin(), "db", "migrate"], env=environment,
                                   capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed in {home}:\n{completed.stderr[-3000:]}")
        stamp.touch()


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def load_dag(dag_id: str):
    """The DAG ``dag_id`` from the project's dags folder, failing on import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise LookupError(f"no DAG {dag_id} in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    return bag.dags[dag_id]


def run_dag(dag_id: str, settings: Settings | None = None, run_conf: dict | None = None) -> dict:
    """Run one DAG through Airflow's ``dag.test()`` (with ``run_conf`` as its
    params); returns its run state and the state of every task."""
    use_project_airflow(settings)
    dag = load_dag(dag_id)
    started = time.monotonic()
    run = dag.test(run_conf=run_conf)
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()} if hasattr(run, "get_task_instances") else {}
    return {"dag_id": dag_id, "state": str(run.state), "tasks": tasks, "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- the standalone server

def _pid_file(settings: Settings) -> Path:
    return Path(settings.airflow_home) / "standalone.pid"


def _health_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health"


def password_file(settings: Settings | None = None) -> Path:
    """Where Airflow's simple auth manager writes the generated password of ``admin``."""
    settings = settings or get_settings()
    return Path(settings.airflow_home) / "simple_auth_manager_passwords.json.generated"


def airflow_status(settings: Settings | None = None) -> dict:
    """``answering`` is True only when the API's health endpoint answers 200
    (``running``: the process in the pid file is alive)."""
    settings = settings or get_settings()

    def healthy() -> bool:
        with urllib.request.urlopen(_health_url(settings), timeout=3) as response:
            return response.status == 200

    pid, answering = probe_service(_pid_file(settings), healthy)
    return {"answering": answering, "running": pid is not None, "pid": pid,
            "url": f"http://127.0.0.1:{settings.airflow_port}", "home": str(settings.airflow_home),
            "database": settings.airflow_database,
            "log": str(_log_path(settings)), "password_file": str(password_file(settings))}


def _log_path(settings: Settings) -> Path:
    return Path(settings.airflow_home) / "standalone.log"


class AirflowStartError(RuntimeError):
    """``airflow standalone`` exited or did not answer; the message carries its error lines."""


def _error_lines(log_path: Path, offset: int, limit: int = 25) -> str:
    """The error lines ``airflow standalone`` (and its children) wrote since ``offset``."""
    if not log_path.exists():
        return ""
    with log_path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    lines = text.splitlines()
    picked = [line for line in lines
              if any(mark in line for mark in ("ERROR", "Error", "Traceback", "Exception", "exited"))]
    return "\n".join((picked or lines)[-limit:])


def airflow_up(settings: Settings | None = None, wait_seconds: int = 180,
               extra_environment: dict[str, str] | None = None) -> dict:
    """Start ``airflow standalone`` in the background (idempotent) and wait until
    its API answers. The service gets the project's ``AIRFLOW_*`` settings and
    the project venv's ``bin`` first on ``PATH`` (standalone starts its
    scheduler, DAG processor, API server and triggerer as ``airflow …``
    commands found on ``PATH``). This process's environment is left alone;
    ``extra_environment`` overrides single settings (e.g. tests pause DAGs)."""
    settings = settings or get_settings()
    status = airflow_status(settings)
    if status["answering"]:
        return status
    log_path = _log_path(settings)
    if status["running"]:
        return _wait_until_answering(settings, status["pid"], wait_seconds, None, log_path, 0)
    environment = service_environment(airflow_environment(settings) | (extra_environment or {}))
    _migrate(settings, environment)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([_airflow_bin(), "standalone"], env=environment, cwd=settings.airflow_home,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    return _wait_until_answering(settings, process.pid, wait_seconds, process, log_path, offset)


def _wait_until_answering(settings: Settings, pid: int, wait_seconds: int, process, log_path: Path,
                          offset: int) -> dict:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            _pid_file(settings).unlink(missing_ok=True)
            raise AirflowStartError(f"airflow standalone exited with {process.returncode} (log: {log_path}):\n"
                                    f"{_error_lines(log_path, offset)}")
        status = airflow_status(settings)
        if status["answering"]:
            return status
        time.sleep(2)
    raise AirflowStartError(f"airflow standalone (pid {pid}) did not answer {_health_url(settings)} within "
                            f"{wait_seconds}s (log: {log_path}):\n{_error_lines(log_path, offset)}")


def airflow_down(settings: Settings | None = None) -> bool:
    """Stop the standalone Airflow started by ``airflow_up`` (its whole process
    group), then the PostgreSQL it used, if any."""
    settings = settings or get_settings()
    stopped = stop_process_group(_pid_file(settings))
    from pipelines.orchestration.postgres import postgres_down

    postgres_down(settings)
    return stopped
