"""The build service (`govlake builder up`): `govlake build` through a warm
driver computes exactly what a build in its own process computes, a day's
increment included; the service is replaced when a client runs other
settings, is closed to other users, stops a build whose client went away,
and is gone after `govlake builder down`."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipelines.contracts import load_contracts
from pipelines.dev.synth.city import generate_city
from pipelines.dev.synth.days import generate_days
from pipelines.ingest.load import ingest_directory
from pipelines.libraries.build import build_ready
from pipelines.libraries.service import (
    build_through_service,
    service_paths,
    service_status,
    start_service,
    stop_service,
)
from pipelines.library_specs import library_names
from pipelines.processes import alive
from pipelines.settings import PROJECT_ROOT, get_settings, settings_environment

SCALE = 0.0006


@dataclasses.dataclass
class ServedCity:
    root: object
    served: object           # the lake the service builds
    alone: object            # a copy built in the test's own process


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """A small city's day 0 ingested into a lake and a copy of it; the
    first lake's build service up (stopped at the end)."""
    root = tmp_path_factory.mktemp("served-city")
    generate_city(root, scale=SCALE, seed=5)
    generate_days(root, 1, scale=SCALE, seed=5)
    served = dataclasses.replace(get_settings(), home=str(tmp_path_factory.mktemp("served-lake")))
    ingest_directory(root / "deliveries", load_contracts(), settings=served, run_gate=False)
    alone = dataclasses.replace(served, home=str(tmp_path_factory.mktemp("alone-lake") / "lake"))
    shutil.copytree(served.home, alone.home)
    start_service(served)
    yield ServedCity(root, served, alone)
    stop_service(served)


def _govlake(settings, *args: str, extra: dict | None = None, wait: bool = True):
    environment = os.environ | settings_environment(settings) | (extra or {})
    command = [sys.executable, "-m", "pipelines.cli", *args]
    if not wait:
        return subprocess.Popen(command, env=environment, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=environment, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)


def _records(spark, settings) -> dict[str, list[tuple]]:
    """Every version of every record of every library, build times aside."""
    found = {}
    for library in library_names(settings):
        frame = spark.read.format("delta").load(settings.lake_path("base", library))
        columns = sorted(c for c in frame.columns if c not in ("valid_from", "valid_to"))
        found[library] = sorted(tuple(str(v) for v in row) for row in frame.select(*columns).collect())
    return found


def test_builds_through_the_service_equal_builds_in_a_process_of_its_own(spark, city):
    service_pid = service_status(city.served)["pid"]
    for day in (0, 1):
        if day:
            for lake in (city.served, city.alone):
                ingest_directory(city.root / "days" / "1", load_contracts(), settings=lake, run_gate=False)
        through = _govlake(city.served, "build", "--json")
        assert through.returncode == 0, through.stderr[-3000:]
        assert f"built by the build service (pid {service_pid})" in through.stderr
        results, skipped = build_ready(lambda: spark, settings=city.alone)
        assert not skipped and all(r["status"] == "built" for r in results)
        by_service = {r["library"]: r for r in json.loads(through.stdout)}
        assert {r["library"]: (r["mode"], r["rows"]) for r in results} == \
            {name: (r["mode"], r["rows"]) for name, r in by_service.items()}
        if day:                          # the day's keys, not every key
            assert by_service["population"]["mode"] == "incremental"
    assert _records(spark, city.served) == _records(spark, city.alone)
    status = service_status(city.served)
    assert (status["pid"], status["builds"], status["building"]) == (service_pid, 2, None)


def test_a_client_with_other_settings_gets_a_service_of_its_own_settings(city):
    old_pid = service_status(city.served)["pid"]
    run = _govlake(city.served, "build", "--json", extra={"GOVLAKE_BUILD_WORKERS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"the build service (pid {old_pid}) is retiring (a client's settings differ" in run.stderr
    new = service_status(dataclasses.replace(city.served, build_workers=1))
    assert new["answering"] and new["pid"] != old_pid and new["builds"] == 1
    assert f"built by the build service (pid {new['pid']})" in run.stderr
    assert not alive(old_pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_reach_the_service(city):
    path = service_paths(city.served).socket
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    child = os.fork()
    if child == 0:                       # as nobody: neither the folder nor the socket lets it in
        os.setgid(65534)
        os.setuid(65534)
        code = 0
        try:
            socket.socket(socket.AF_UNIX).connect(str(path))
        except PermissionError:
            # and its `govlake build` builds in its own process, without an error about the folder
            code = 13 if build_through_service(city.served, None, False, None) is None else 2
        except BaseException:            # noqa: BLE001 - any other outcome fails the test
            code = 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 13


def test_a_client_that_goes_away_cancels_its_build_and_the_service_goes_on(city):
    # the settings of the service the test before started
    client = _govlake(city.served, "build", "--full", extra={"GOVLAKE_BUILD_WORKERS": "1"}, wait=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (service_status(city.served).get("building") or {}).get("user"):
        time.sleep(0.2)
    assert service_status(city.served)["building"] is not None, client.communicate()
    time.sleep(3)                        # its Spark jobs running
    client.send_signal(signal.SIGINT)
    client.communicate(timeout=60)
    assert client.returncode != 0
    deadline = time.monotonic() + 30     # its jobs cancelled, not waited for
    while time.monotonic() < deadline and service_status(city.served)["building"] is not None:
        time.sleep(0.5)
    status = service_status(city.served)
    assert status["answering"] and status["building"] is None
    log_text = service_paths(city.served).log_file.read_text()
    assert "the client of the running build went away: cancelling it" in log_text
    assert f"build for {pwd.getpwuid(os.getuid()).pw_name} cancelled in" in log_text
    # and its driver builds on: a full build by the same service (the cancelled one had committed nothing)
    again = _govlake(city.served, "build", "--library", "address", "--full", "--json",
                     extra={"GOVLAKE_BUILD_WORKERS": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"built by the build service (pid {status['pid']})" in again.stderr
    assert {r["mode"] for r in json.loads(again.stdout)} == {"full"}


def test_builder_down_stops_it_and_builds_run_in_their_own_process_again(city):
    pid = service_status(city.served)["pid"]
    assert stop_service(city.served)
    assert not alive(pid)
    paths = service_paths(city.served)
    assert not paths.socket.exists() and not paths.pid_file.exists()
    assert build_through_service(city.served, None, False, None) is None
    assert not service_status(city.served)["running"]
