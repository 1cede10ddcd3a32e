"""Issue 19, item 2: a Trino coordinator with two workers gives the same
answers as one node, sharing rules included.

A second server over the secured lake (its own home and ports, the same
catalog and sharing list) runs with ``trino_workers=2``: the coordinator
schedules nothing on itself. The same queries, as department users whose
columns are masked and whose rows are filtered, return identical rows on
both; an administrator sees the workers' tasks in ``system.runtime.tasks``;
the workers' config holds the internal secret in 0600 files; clients cannot
log in at a worker."""

from __future__ import annotations

import dataclasses
import re

import pytest
import requests

from pipelines.serving.publish import trino_up_with_rules
from pipelines.serving.trino import (ADMIN_USER, certificate_path, connect, password_for, query, trino_down,
                                     worker_home, worker_port)
from tests.security.conftest import run_as, wait_for_rules

CLUSTER_PORT = 18480        # audit receiver at +1, the workers at +11 and +12
WORKERS = {"govlake-worker-1", "govlake-worker-2"}

GROUPING = "SELECT town_code, count(*), max(full_name) FROM lake.base.population GROUP BY town_code"
# (user, SQL): masks (hrss: pseudonymised IDs), row filters (a town), governance
# masks (a governor), a join and a grouping (hash-partitioned over the workers)
QUERIES = [
    ("hrss_officer", "SELECT {readable} FROM lake.base.population"),
    ("nancheng_officer", "SELECT {readable} FROM lake.base.population"),
    ("hrss_officer", "SELECT * FROM lake.base.population"),                   # refused alike: a denied column
    ("governor_li", "SELECT * FROM lake.governance.quarantine"),
    ("psb_analyst", GROUPING),
    ("hrss_officer", "SELECT p.full_name, r.id_number FROM lake.base.population p "
                     "JOIN lake.silver.psb_residence_permit r ON p.person_id = r.id_number"),
]


@pytest.fixture(scope="module")
def cluster(secured_lake, tmp_path_factory):
    settings = dataclasses.replace(secured_lake, trino_home=tmp_path_factory.mktemp("trino-cluster"),
                                   trino_port=CLUSTER_PORT, trino_heap="2G", trino_workers=2,
                                   trino_worker_heap="2G")
    try:
        status = trino_up_with_rules(settings)
        assert "rules_error" not in status, status.get("rules_error")
        wait_for_rules(settings)
        yield settings
    finally:
        trino_down(settings)


def _sorted(rows) -> list[tuple]:
    return sorted(tuple(str(v) for v in row) for row in rows)


def _readable(settings, user: str, resource_id: str = "base.population") -> str:
    """The columns of the resource the sharing list lets ``user`` see (masked or in full)."""
    from pipelines.serving.access import decide
    from pipelines.serving.catalog import load_catalog

    known = load_catalog(settings)
    resource = known.resources[resource_id]
    decision = decide(user, resource, known.departments, known.grants, settings.on_date())
    return ", ".join(c.name for c in resource.columns
                     if decision.columns.get(c.name) and decision.columns[c.name].state != "denied")


def _outcome(settings, user, sql):
    try:
        return _sorted(run_as(settings, user, sql))
    except Exception as exc:           # noqa: BLE001 - a refusal must be the same refusal on both
        return type(exc).__name__, re.sub(r"query_id=\w+", "", str(exc).split("\n")[0])


def test_a_coordinator_with_two_workers_answers_as_one_node_does(secured_lake, cluster):
    nodes = query("SELECT node_id, coordinator, state FROM system.runtime.nodes", settings=cluster)[1]
    assert {(n, c, s) for n, c, s in nodes} == {("govlake-coordinator-1", True, "active")} | {
        (w, False, "active") for w in WORKERS}
    for user, sql in QUERIES:
        sql = sql.format(readable=_readable(secured_lake, user))
        on_one_node, on_the_cluster = _outcome(secured_lake, user, sql), _outcome(cluster, user, sql)
        assert on_the_cluster == on_one_node, (user, sql)
        refused = "SELECT *" in sql and "population" in sql
        assert isinstance(on_one_node, list) != refused, (user, sql, on_one_node)
        assert refused or on_one_node, (user, sql)
    # the masks held: hrss sees pseudonyms, the town its own rows
    hrss = run_as(cluster, "hrss_officer", "SELECT person_id FROM lake.base.population")
    assert hrss and all(str(r[0]).startswith("P") for r in hrss)
    towns = {r[0] for r in run_as(cluster, "nancheng_officer", "SELECT town_code FROM lake.base.population")}
    assert towns == {"441900004"}


def test_the_workers_ran_the_splits_and_the_coordinator_none(cluster):
    with connect("psb_analyst", password_for("psb_analyst", cluster), settings=cluster) as connection:
        cursor = connection.cursor()
        cursor.execute(GROUPING)
        cursor.fetchall()
        query_id = cursor.query_id
    tasks = query(f"SELECT node_id, stage_id, completed_splits FROM system.runtime.tasks "
                  f"WHERE query_id = '{query_id}'", settings=cluster)[1]
    assert tasks and {node for node, _, _ in tasks} == WORKERS, tasks
    assert sum(splits for _, _, splits in tasks) > 0
    # a department user cannot read the task list
    with pytest.raises(Exception, match="Access Denied"):
        run_as(cluster, "psb_analyst", "SELECT node_id FROM system.runtime.tasks")


def test_workers_keep_the_secret_to_their_user_and_take_no_client_logins(cluster):
    for index in (1, 2):
        etc = worker_home(cluster, index) / "etc"
        assert (etc.stat().st_mode & 0o777) == 0o700
        config = etc / "config.properties"
        assert (config.stat().st_mode & 0o777) == 0o600
        assert "internal-communication.shared-secret=" in config.read_text()
        # a client at a worker's port: statements, management and task endpoints all refuse it,
        # with the administrator's real password, with a name alone, and with nothing
        worker = f"https://127.0.0.1:{worker_port(cluster, index)}"
        # (/v1/info and /v1/status are public in Trino, as on the coordinator: health probes that
        # give the node's version, state and load, no data)
        for method, path in (("POST", "/v1/statement"), ("GET", "/v1/thread"), ("GET", "/v1/task"),
                             ("GET", "/v1/jmx/mbean"), ("GET", "/v1/query"), ("GET", "/v1/node")):
            for credentials in ({"auth": (ADMIN_USER, password_for(ADMIN_USER, cluster))},
                                {"headers": {"X-Trino-User": ADMIN_USER}}, {}):
                session = requests.Session()
                session.trust_env = False
                try:
                    response = session.request(method, worker + path, data="SELECT 1" if method == "POST" else None,
                                               timeout=10, verify=str(certificate_path(cluster)), **credentials)
                except requests.ConnectionError:         # the worker hung up: refused, nothing sent
                    continue
                assert response.status_code in (401, 403, 404), (path, credentials.keys(), response.status_code)
    # and both workers are still in the cluster after all that
    nodes = query("SELECT node_id FROM system.runtime.nodes WHERE state = 'active'", settings=cluster)[1]
    assert {n for (n,) in nodes} >= WORKERS
