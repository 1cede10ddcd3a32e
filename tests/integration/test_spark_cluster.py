"""Issue 19, item 1: the same code on a Spark standalone cluster.

``govlake cluster``'s master and two one-core workers on 127.0.0.1 build
every base library of the ingested test city, in a separate driver process
as a user runs it (``GOVLAKE_SPARK_MASTER=spark://...``); the test's own
``local[*]`` session builds a copy of the same lake at the same build time.
Every table is identical row for row, the executors ran on both workers,
and the shared secret is on no process's command line."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from pipelines.settings import settings_environment

CLUSTER_PORT = 17277              # master; its UI at +1, the workers' UIs at +2 and +3
BUILT_AT = datetime(2026, 12, 1, 6, 30)
LAKE_PARTS = ("silver", "governance", "state", "raw", "changes")
RESOLUTION = ("conflicts", "entity_links", "match_review")

BUILD_ON_CLUSTER = """
import json, sys
from datetime import datetime
from pipelines.libraries.build import build_libraries
from pipelines.spark import build_spark_session
spark = build_spark_session(app_name="govlake-cluster-test")
results = build_libraries(spark, now=datetime.fromisoformat(sys.argv[1]))
print(json.dumps({"master": spark.sparkContext.master, "app_id": spark.sparkContext.applicationId,
                  "libraries": {r["library"]: r["rows"] for r in results}}))
"""


@pytest.fixture(scope="module")
def cluster(ingested_city, tmp_path_factory):
    from pipelines.spark import master_url
    from pipelines.spark_cluster import cluster_down, cluster_up

    root = tmp_path_factory.mktemp("spark-cluster")
    settings = dataclasses.replace(ingested_city.settings, spark_cluster_home=root / "cluster",
                                   spark_cluster_port=CLUSTER_PORT, spark_worker_memory="2g")
    settings = dataclasses.replace(settings, spark_master=master_url(settings))
    try:
        status = cluster_up(settings)
        assert status["answering"] and status["workers_alive"] == 2 and status["cores"] == 2, status
        yield settings, root
    finally:
        cluster_down(settings)


def _lake_copy(settings, home):
    for part in LAKE_PARTS:
        if settings.local_lake_path(part).exists():
            shutil.copytree(settings.local_lake_path(part), home / part)
    return dataclasses.replace(settings, home=str(home))


def _command_lines() -> list[str]:
    """Every process's command line, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:            # gone meanwhile
                continue
    return found


def _rows(spark, path):
    """Every row, as comparable tuples (sorted); without ``found_at``, the wall-clock time a
    review was first found (not the build time)."""
    frame = spark.read.format("delta").load(path)
    columns = sorted(c for c in frame.columns if c != "found_at")
    return sorted(tuple(str(v) for v in row) for row in frame.select(*columns).collect())


def test_every_library_built_on_the_cluster_equals_the_local_build(spark, ingested_city, cluster):
    from pipelines.libraries.build import build_libraries
    from pipelines.library_specs import library_names

    settings, root = cluster
    on_cluster = _lake_copy(settings, root / "cluster-lake")
    local = _lake_copy(dataclasses.replace(settings, spark_master="local[*]"), root / "local-lake")

    environment = os.environ | settings_environment(on_cluster)
    secret = (settings.spark_cluster_home / "conf" / "spark-defaults.conf").read_text().split()[-1]
    driver = subprocess.Popen([sys.executable, "-c", BUILD_ON_CLUSTER, BUILT_AT.isoformat()], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # once the executors run (driver, master, workers, executors all up): the secret is on no command line
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any("CoarseGrainedExecutorBackend" in c for c in _command_lines()):
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        time.sleep(1)
    command_lines = _command_lines()
    assert sum("CoarseGrainedExecutorBackend" in c for c in command_lines) == 2, "two executors, one per worker"
    assert not any(secret in c for c in command_lines)
    local_results = {r["library"]: r["rows"] for r in build_libraries(spark, settings=local, now=BUILT_AT)}
    out, err = driver.communicate(timeout=1200)
    assert driver.returncode == 0, err[-3000:]
    built = json.loads(out.strip().splitlines()[-1])
    assert built["master"] == settings.spark_master
    assert built["libraries"] == local_results and set(local_results) == set(library_names(local))

    for library in local_results:
        assert _rows(spark, on_cluster.lake_path("base", library)) == _rows(spark, local.lake_path("base", library)), \
            library
    for table in RESOLUTION:
        assert _rows(spark, on_cluster.lake_path("governance", table)) == _rows(
            spark, local.lake_path("governance", table)), table

    # the work ran on the workers: each has a work dir for the application, with an executor in it
    for worker in ("worker-1", "worker-2"):
        executors = list((settings.spark_cluster_home / worker / built["app_id"]).iterdir())
        assert executors, f"{worker} ran no executor of {built['app_id']}"
    mode = (settings.spark_cluster_home / "conf" / "spark-defaults.conf").stat().st_mode & 0o777
    assert mode == 0o600
