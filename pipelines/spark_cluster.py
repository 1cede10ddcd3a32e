"""A Spark standalone cluster on 127.0.0.1: ``govlake cluster up|down|status``.

The master and its workers are the installed pyspark distribution's own
daemons (``bin/spark-class org.apache.spark.deploy.master.Master`` and
``...worker.Worker``), nothing downloaded: the same jars the driver runs.
Each worker offers one core and ``spark_worker_memory``; the cluster lives
under ``spark_cluster_home`` (git-ignored): ``conf/spark-defaults.conf``,
logs, pid files and the workers' work dirs.

No other local account can join or submit: every daemon and every application
authenticates with a shared secret (``spark.authenticate``), generated at
the first start into ``conf/spark-defaults.conf`` (mode 0600), the
``SPARK_CONF_DIR`` of the daemons and of a driver that uses the cluster
(pyspark would put a builder setting on the JVM's command line, which every
local user can read); the workers pass it on to their executors. Spark
reads a secret *file* only on Kubernetes. Daemons, their RPC and their web UIs bind
127.0.0.1 only (``SPARK_LOCAL_IP``); the UIs have no login (any local account
can read them: state and logs, no data), so killing applications and
decommissioning workers from them is off.

Builds run on the cluster when ``GOVLAKE_SPARK_MASTER`` names it
(``spark://127.0.0.1:7077``): ``pipelines.spark.build_spark_session`` adds
the secret, the executors' memory and the project's Python
(``cluster_application_conf``), and the Delta jars reach the executors as
``spark.jars`` (the driver serves them).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipelines.processes import probe_service, service_environment, stop_process_group
from pipelines.settings import Settings, get_settings
from pipelines.spark import CLUSTER_HOST as HOST
from pipelines.spark import cluster_conf_dir
from pipelines.spark import master_url


class ClusterError(RuntimeError):
    """The cluster could not start; the message says why and where the log is."""


def spark_home() -> Path:
    """The pyspark distribution this interpreter imports (its bin/ and jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _ui_port(settings: Settings, index: int) -> int:
    """The master's web UI at port + 1, worker ``i``'s (from 1) at port + 1 + i."""
    return settings.spark_cluster_port + 1 + index


def _conf_dir(settings: Settings) -> Path:
    """``conf/spark-defaults.conf`` (mode 0600, in a 0700 folder): authentication
    on, and the shared secret, generated once. Daemons and drivers read it as
    their ``SPARK_CONF_DIR``; the workers hand the secret to their executors."""
    conf = cluster_conf_dir(settings)
    conf.mkdir(parents=True, exist_ok=True)
    conf.chmod(0o700)
    defaults = conf / "spark-defaults.conf"
    secret = next((line.split(None, 1)[1] for line in (defaults.read_text().splitlines() if defaults.exists() else [])
                   if line.startswith("spark.authenticate.secret ")), None) or secrets.token_hex(32)
    defaults.touch(mode=0o600)
    defaults.chmod(0o600)
    # the web UIs (loopback, no login) show state and logs; nobody kills or decommissions from them
    defaults.write_text(f"spark.authenticate true\nspark.authenticate.secret {secret}\n"
                        "spark.ui.killEnabled false\nspark.master.ui.decommission.allow.mode DENY\n")
    return conf


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.spark_cluster_home / f"{name}.pid"


def _names(settings: Settings) -> list[str]:
    return ["master"] + [f"worker-{i}" for i in range(1, settings.spark_cluster_workers + 1)]


def _master_state(settings: Settings) -> dict | None:
    """The master's own account of itself (its web UI's JSON), None when it does not answer."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://{HOST}:{_ui_port(settings, 0)}/json/", timeout=3) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def cluster_status(settings: Settings | None = None) -> dict:
    """Which daemons run, and whether the master answers with every worker alive."""
    settings = settings or get_settings()
    running = {name: probe_service(_pid_file(settings, name), lambda: True)[0] for name in _names(settings)}
    state = _master_state(settings) if running["master"] else None
    alive = [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]
    return {"running": all(running.values()), "answering": state is not None
            and len(alive) >= settings.spark_cluster_workers, "master": master_url(settings),
            "master_ui": f"http://{HOST}:{_ui_port(settings, 0)}", "pids": running,
            "workers_alive": len(alive), "cores": sum(w.get("cores", 0) for w in alive),
            "log_dir": str(settings.spark_cluster_home / "logs")}


def _start(settings: Settings, name: str, main_class: str, arguments: list[str], conf: Path) -> None:
    home = settings.spark_cluster_home
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    environment = service_environment({
        "SPARK_HOME": str(spark_home()), "SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": HOST,
        "SPARK_LOG_DIR": str(logs), "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable,
        "SPARK_DAEMON_MEMORY": "512m",
        # a taken port fails the daemon (and names it) instead of moving it where status does not look
        "SPARK_DAEMON_JAVA_OPTS": "-Dspark.port.maxRetries=0"})
    with (logs / f"{name}.log").open("ab") as log_file:
        process = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), main_class, *arguments],
                                   env=environment, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    _pid_file(settings, name).write_text(str(process.pid))


def cluster_up(settings: Settings | None = None, wait_seconds: int = 90) -> dict:
    """Start the master and the workers that are not running (idempotent);
    return once the master counts every worker alive."""
    settings = settings or get_settings()
    status = cluster_status(settings)
    if status["answering"] and status["running"]:
        return status
    conf = _conf_dir(settings)
    if not status["pids"]["master"]:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, settings.spark_cluster_port)) == 0:
                raise ClusterError(f"{HOST}:{settings.spark_cluster_port}, the Spark master's port, is taken by "
                                   "another process (set GOVLAKE_SPARK_CLUSTER_PORT)")
        _start(settings, "master", "org.apache.spark.deploy.master.Master",
               ["--host", HOST, "--port", str(settings.spark_cluster_port),
                "--webui-port", str(_ui_port(settings, 0))], conf)
    for index in range(1, settings.spark_cluster_workers + 1):
        name = f"worker-{index}"
        if status["pids"][name]:
            continue
        work = settings.spark_cluster_home / name
        work.mkdir(parents=True, exist_ok=True)
        _start(settings, name, "org.apache.spark.deploy.worker.Worker",
               ["--host", HOST, "--cores", "1", "--memory", settings.spark_worker_memory,
                "--webui-port", str(_ui_port(settings, index)), "--work-dir", str(work), master_url(settings)], conf)
    deadline = time.monotonic() + wait_seconds
    try:
        while time.monotonic() < deadline:
            status = cluster_status(settings)
            if status["answering"]:
                return status
            dead = [name for name, pid in status["pids"].items() if pid is None]
            if dead:
                raise ClusterError(f"the Spark {', '.join(dead)} exited; see {settings.spark_cluster_home / 'logs'}")
            time.sleep(1)
        raise ClusterError(f"the Spark master at {master_url(settings)} did not count "
                           f"{settings.spark_cluster_workers} workers alive within {wait_seconds} s; "
                           f"see {settings.spark_cluster_home / 'logs'}")
    except ClusterError:
        cluster_down(settings)     # nothing of a failed start keeps running
        raise


def cluster_down(settings: Settings | None = None) -> bool:
    """Stop the workers, then the master. False if nothing was running."""
    settings = settings or get_settings()
    stopped = [stop_process_group(_pid_file(settings, name), grace_seconds=15)
               for name in reversed(_names(settings))]
    return any(stopped)
