"""`govlake airflow` and `govlake trino`: the project's local services, started,
stopped and checked the same way (one helper makes their up/down/status)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import click

from pipelines.cli.common import console, emit_json, err_console, json_option, table


@dataclass(frozen=True)
class Service:
    """What the shared up/down/status commands need to know about a service
    (whose status dict says ``answering`` and ``running``). The callables import
    the service's module when a command runs, so the CLI starts fast."""

    name: str                           # shown: "Airflow", "Trino"
    up: Callable[[], dict]
    down: Callable[[], bool]
    status: Callable[[], dict]
    up_errors: Callable[[], tuple[type[Exception], ...]]   # "could not start"
    starting: str                       # the spinner's text while `up` waits
    up_help: str
    down_help: str
    status_help: str
    describe: Callable[[dict], list[str]]
    up_options: tuple = ()              # click options of `up`, passed to ``up`` as keywords


def add_service_commands(group: click.Group, service: Service) -> None:
    """``up``, ``down`` and ``status`` for ``service`` under ``group``.

    ``status`` exits 0 only when the service answers, 1 otherwise (stopped, or
    started but not answering yet); ``up`` exits 1 with the reason when the
    service does not come up."""

    def render(status: dict, as_json: bool) -> None:
        if as_json:
            emit_json(status)
        else:
            for line in service.describe(status):
                console.print(line, highlight=False)

    def up(as_json: bool, **options) -> None:
        errors = service.up_errors()
        with err_console.status(service.starting):
            try:
                status = service.up(**options)
            except errors as exc:
                raise click.ClickException(str(exc)) from None
        render(status, as_json)

    for option in reversed(service.up_options):
        up = option(up)
    group.command("up", help=service.up_help)(json_option(up))

    @group.command("down", help=service.down_help)
    def down() -> None:
        console.print(f"{service.name} stopped" if service.down() else f"{service.name} was not running")

    @group.command("status", help=service.status_help + "\n\nExits 0 only when it answers, 1 otherwise.")
    @json_option
    def status(as_json: bool) -> None:
        current = service.status()
        render(current, as_json)
        if not current["answering"]:
            sys.exit(1)


# ---------------------------------------------------------------------- airflow
@click.group("airflow")
def airflow_group() -> None:
    """The project's local Airflow 3 (home in ./.airflow, SQLite, 127.0.0.1)."""


def _airflow_local() -> ModuleType:
    from pipelines.orchestration import airflow_local

    return airflow_local


def _describe_airflow(status: dict) -> list[str]:
    state = "running" if status["answering"] else "starting" if status["running"] else "stopped"
    lines = [f"Airflow {state}: UI {status['url']} (pid {status['pid'] or '-'}), home {status['home']}, "
             f"metadata DB {status.get('database', 'sqlite')}"]
    if status["running"]:
        lines.append(f"Log in as admin; the password is in {status['password_file']}")
    return lines


add_service_commands(airflow_group, Service(
    name="Airflow",
    up=lambda: _airflow_local().airflow_up(),
    down=lambda: _airflow_local().airflow_down(),
    status=lambda: _airflow_local().airflow_status(),
    up_errors=lambda: (RuntimeError, TimeoutError),
    starting="starting Airflow (API server, scheduler, DAG processor, triggerer)",
    up_help="Start `airflow standalone` in the background and wait until it answers.",
    down_help="Stop the Airflow started by `govlake airflow up`.",
    status_help="Is the local Airflow running, and where is its UI.",
    describe=_describe_airflow,
))


@airflow_group.command("run")
@click.argument("dag_ids", nargs=-1, required=True)
@json_option
def airflow_run_command(dag_ids: tuple[str, ...], as_json: bool) -> None:
    """Run DAGs now through Airflow's dag.test() (in this process, recorded in Airflow)."""
    from pipelines.orchestration.airflow_local import run_dag

    try:
        runs = [run_dag(dag_id) for dag_id in dag_ids]
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if as_json:
        emit_json(runs)
    else:
        console.print(table("DAG runs", ["dag", "state", "tasks", "s"],
                            [[r["dag_id"], r["state"], ", ".join(f"{k}={v}" for k, v in r["tasks"].items()),
                              r["seconds"]] for r in runs], {"s"}))
    if any(r["state"] != "success" for r in runs):
        sys.exit(1)


# ---------------------------------------------------------------------- trino
@click.group("trino")
def trino_group() -> None:
    """The project's Trino server (HTTPS with passwords on 127.0.0.1, catalog `lake`)."""


def _trino() -> ModuleType:
    from pipelines.serving import trino

    return trino


def _trino_up_with_rules(workers: int | None = None) -> dict:
    import dataclasses

    from pipelines.serving.publish import trino_up_with_rules
    from pipelines.settings import get_settings

    settings = get_settings()
    if workers is not None:
        settings = dataclasses.replace(settings, trino_workers=workers)
    return trino_up_with_rules(settings)


def _describe_trino(status: dict) -> list[str]:
    state = "answering" if status["answering"] else "starting" if status["running"] else "stopped"
    lines = [f"Trino {state}: {status['url']} catalog {status['catalog']} (pid {status['pid'] or '-'})"]
    if status.get("workers"):
        lines.append(f"  workers: {', '.join(f'{n} (pid {p})' for n, p in sorted(status['workers'].items()))}; "
                     "the coordinator schedules no splits on itself")
    if status["running"]:
        lines.append(f"  certificate: {status['certificate']}   passwords: {status['passwords']}")
    return lines


add_service_commands(trino_group, Service(
    name="Trino",
    up=_trino_up_with_rules,
    down=lambda: _trino().trino_down(),
    status=lambda: _trino().trino_status(),
    up_errors=lambda: (_trino().TrinoSetupError,),
    starting="starting Trino (fetches the server on first use)",
    up_help="Fetch (first time), configure and start Trino, compile the sharing list's rules; wait until it answers.",
    down_help="Stop the Trino started by `govlake trino up`.",
    status_help="Is Trino running and answering, and how to connect.",
    describe=_describe_trino,
    up_options=(click.option("--workers", type=click.IntRange(0, 8), default=None,
                             help="Start N workers beside the coordinator, which then schedules no splits on "
                                  "itself (default: GOVLAKE_TRINO_WORKERS, 0)."),),
))


# ---------------------------------------------------------------------- build service
@click.group("builder")
def builder_group() -> None:
    """The lake's build service: a Spark driver kept warm between builds, which `govlake build` builds through."""


def _build_service() -> ModuleType:
    from pipelines.libraries import service

    return service


def _describe_builder(status: dict) -> list[str]:
    state = "answering" if status["answering"] else "starting" if status["running"] else "stopped"
    lines = [f"Build service {state} for the lake {status['lake']} (pid {status['pid'] or '-'})"]
    if status["answering"]:
        building = status.get("building")
        lines.append(f"  up since {status['started_at']} UTC, {status['builds']} builds; "
                     + (f"building for {building['user']} since {building['since']} UTC" if building else "idle")
                     + (f", {status['queued']} waiting" if status.get("queued") else "")
                     + (f"; retiring: {status['retiring']}" if status.get("retiring") else ""))
    if status.get("log"):
        lines.append(f"  socket: {status['socket']}   log: {status['log']}")
    return lines


add_service_commands(builder_group, Service(
    name="The build service",
    up=lambda: _build_service().start_service(),
    down=lambda: _build_service().stop_service(),
    status=lambda: _build_service().service_status(),
    up_errors=lambda: (_build_service().ServiceError,),
    starting="starting the build service (a Spark driver)",
    up_help="Start the lake's build service (one per lake, a warm Spark driver) and wait until it answers.",
    down_help="Stop the lake's build service; a build it is running is cancelled first.",
    status_help="Is the lake's build service running, and what is it building.",
    describe=_describe_builder,
))


# ---------------------------------------------------------------------- portal
@click.group("portal")
def portal_group() -> None:
    """The governance portal: bureaus answer their issues, departments browse the catalog (HTTPS, 127.0.0.1)."""


def _portal() -> ModuleType:
    from pipelines.portal import service

    return service


def _describe_portal(status: dict) -> list[str]:
    state = "answering" if status["answering"] else "starting" if status["running"] else "stopped"
    lines = [f"Portal {state}: {status['url']} (pid {status['pid'] or '-'})"]
    if status["running"]:
        lines.append(f"  log in as a department user with its Trino password; log: {status['log']}")
    return lines


add_service_commands(portal_group, Service(
    name="The portal",
    up=lambda: _portal().portal_up(),
    down=lambda: _portal().portal_down(),
    status=lambda: _portal().portal_status(),
    up_errors=lambda: (_portal().PortalError,),
    starting="starting the portal",
    up_help="Start the governance portal on 127.0.0.1 over HTTPS (Trino must be up) and wait until it answers.",
    down_help="Stop the portal started by `govlake portal up`.",
    status_help="Is the portal running and answering, and its URL.",
    describe=_describe_portal,
))


# ---------------------------------------------------------------------- Spark standalone cluster
@click.group("cluster")
def cluster_group() -> None:
    """A Spark standalone cluster on 127.0.0.1 (a master, two one-core workers); builds use it when
    GOVLAKE_SPARK_MASTER=spark://127.0.0.1:7077."""


def _cluster() -> ModuleType:
    from pipelines import spark_cluster

    return spark_cluster


def _describe_cluster(status: dict) -> list[str]:
    state = "answering" if status["answering"] else "starting" if status["pids"].get("master") else "stopped"
    lines = [f"Spark cluster {state}: {status['master']} ({status['workers_alive']} workers alive, "
             f"{status['cores']} cores; UI {status['master_ui']})"]
    if status["answering"]:
        lines.append(f"  builds run on it with GOVLAKE_SPARK_MASTER={status['master']}; logs: {status['log_dir']}")
    return lines


add_service_commands(cluster_group, Service(
    name="The Spark cluster",
    up=lambda: _cluster().cluster_up(),
    down=lambda: _cluster().cluster_down(),
    status=lambda: _cluster().cluster_status(),
    up_errors=lambda: (_cluster().ClusterError,),
    starting="starting the Spark master and workers",
    up_help="Start a Spark standalone master and its workers on 127.0.0.1 and wait until every worker is alive.",
    down_help="Stop the workers and the master started by `govlake cluster up`.",
    status_help="Are the master and every worker running, and the master's URL.",
    describe=_describe_cluster,
))
