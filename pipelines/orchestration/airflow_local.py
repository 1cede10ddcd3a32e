"""Run Airflow 3 locally with its home inside the project.

Airflow is the orchestrator of record: ``run_dags`` runs DAGs through Airflow's
own ``dag.test()`` (the task runner, XCom, asset events and the metadata DB are
Airflow's; runs show up in the UI), and ``airflow_up`` starts ``airflow
standalone`` (API server + UI, scheduler, DAG processor, triggerer) on
127.0.0.1 with SQLite metadata and parallelism sized for 2 cores.

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

from pipelines.processes import running_pid, stop_process_group
from pipelines.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


def airflow_environment(settings: Settings | None = None) -> dict[str, str]:
    """The ``AIRFLOW_*`` configuration of the project's local Airflow."""
    settings = settings or get_settings()
    home = Path(settings.airflow_home)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
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
    home = Path(settings.airflow_home)
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".db-migrated"
    if not stamp.exists():
        completed = subprocess.run([_airflow_bin(), "db", "migrate"], env=os.environ.copy(),
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed in {home}:\n{completed.stderr[-3000:]}")
        stamp.touch()
    return environment


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


def run_dag(dag_id: str, settings: Settings | None = None) -> dict:
    """Run one DAG through Airflow's ``dag.test()``; returns its run state and
    the state of every task."""
    use_project_airflow(settings)
    dag = load_dag(dag_id)
    started = time.monotonic()
    run = dag.test()
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()} if hasattr(run, "get_task_instances") else {}
    return {"dag_id": dag_id, "state": str(run.state), "tasks": tasks, "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- the standalone server

def _pid_file(settings: Settings) -> Path:
    return Path(settings.airflow_home) / "standalone.pid"


def _health_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health"


def airflow_status(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    pid = running_pid(_pid_file(settings))
    alive = pid is not None
    healthy = False
    if alive:
        try:
            with urllib.request.urlopen(_health_url(settings), timeout=3) as response:
                healthy = response.status == 200
        except OSError:
            healthy = False
    return {"pid": pid if alive else None, "running": alive, "healthy": healthy,
            "url": f"http://127.0.0.1:{settings.airflow_port}", "home": str(settings.airflow_home),
            "password_file": str(Path(settings.airflow_home) / "simple_auth_manager_passwords.json.generated")}


def airflow_up(settings: Settings | None = None, wait_seconds: int = 180) -> dict:
    """Start ``airflow standalone`` in the background (idempotent) and wait until
    its API answers."""
    settings = settings or get_settings()
    status = airflow_status(settings)
    if status["running"]:
        return status
    environment = use_project_airflow(settings)
    log_path = Path(settings.airflow_home) / "standalone.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([_airflow_bin(), "standalone"], env=os.environ.copy() | environment,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {process.returncode}; see {log_path}")
        status = airflow_status(settings)
        if status["healthy"]:
            return status
        time.sleep(2)
    raise TimeoutError(f"airflow standalone did not answer {_health_url(settings)} within {wait_seconds}s; "
                       f"see {log_path}")


def airflow_down(settings: Settings | None = None) -> bool:
    """Stop the standalone Airflow started by ``airflow_up`` (its whole process group)."""
    return stop_process_group(_pid_file(settings or get_settings()))
