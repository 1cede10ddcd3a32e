"""Every Trino surface under the rules: other users' queries over REST,
cancelling them, management resources, procedures and table procedures,
writes, impersonation, session properties, statistics and plans, files
holding secrets, and what listens on the network (issue 13, items 2 and 6)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import requests
import trino
from trino.auth import BasicAuthentication

from pipelines.serving.trino import ADMIN_USER, CATALOG, certificate_path, password_for
from tests.security.conftest import run_as

DEPARTMENT_USERS = ("hrss_officer", "psb_analyst", "governor_li", "nancheng_officer", "amr_inspector")
DENIED = pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied")


def _rest(settings, user: str, method: str, path: str, **kwargs) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.request(method, f"https://127.0.0.1:{settings.trino_port}{path}",
                           auth=(user, password_for(user, settings)), verify=str(certificate_path(settings)),
                           timeout=30, **kwargs)


def _submit(settings, user: str, sql: str) -> str:
    """Start a query over the REST protocol without fetching its results, so
    it stays alive (queued or running) while others try to see or cancel it."""
    response = _rest(settings, user, "POST", "/v1/statement", data=sql.encode())
    response.raise_for_status()
    queued = response.json()
    # one poll dispatches it; its results then wait, unread, for the client
    _rest(settings, user, "GET", queued["nextUri"].split(str(settings.trino_port), 1)[1]).raise_for_status()
    return queued["id"]


def test_a_department_sees_and_cancels_only_its_own_queries(secured_lake):
    mine = _submit(secured_lake, "psb_analyst", "select count(*) from lake.silver.psb_hukou")
    listed = _rest(secured_lake, "hrss_officer", "GET", "/v1/query").json()
    assert mine not in {q["queryId"] for q in listed}
    assert {q["session"]["user"] for q in listed} <= {"hrss_officer"}
    assert _rest(secured_lake, "hrss_officer", "GET", f"/v1/query/{mine}").status_code >= 400
    assert _rest(secured_lake, "hrss_officer", "DELETE", f"/v1/query/{mine}").status_code >= 400
    with DENIED:
        run_as(secured_lake, "hrss_officer", f"call system.runtime.kill_query(query_id => '{mine}')")
    own = _rest(secured_lake, "psb_analyst", "GET", f"/v1/query/{mine}")
    assert own.status_code == 200 and own.json()["state"] != "FAILED"           # not cancelled by hrss
    assert {q["queryId"] for q in _rest(secured_lake, ADMIN_USER, "GET", "/v1/query").json()} >= {mine}
    assert _rest(secured_lake, "psb_analyst", "DELETE", f"/v1/query/{mine}").status_code in (200, 204)


def test_management_resources_are_for_the_administrator(secured_lake):
    for path in ("/v1/node", "/v1/thread", "/v1/jmx/mbean"):
        for user in DEPARTMENT_USERS:
            assert _rest(secured_lake, user, "GET", path).status_code == 403, (user, path)
    ui = _rest(secured_lake, "governor_li", "GET", "/ui/")
    assert "disabled" in ui.url or ui.status_code in (401, 403, 404)     # web-ui.enabled=false


def test_no_department_runs_a_procedure_or_a_table_procedure(secured_lake):
    statements = [
        ("call lake.system.register_table(schema_name => 'silver', table_name => 'x', "
        "table_location => 'local:///silver/psb/hukou')"),
        "call lake.system.unregister_table(schema_name => 'silver', table_name => 'psb_hukou')",
        "call lake.system.vacuum('silver', 'psb_hukou', '0s')",
        "call lake.system.flush_metadata_cache()",
        "call system.runtime.kill_query(query_id => 'x')",
        "alter table lake.silver.psb_hukou execute optimize",
        "alter table lake.silver.psb_residence_permit execute optimize(file_size_threshold => '1MB')",
        "alter table lake.vault.pseudonym_key execute optimize",
        "alter table lake.governance.quarantine execute optimize",
    ]
    for user in DEPARTMENT_USERS:
        for statement in statements:
            with pytest.raises(trino.exceptions.TrinoUserError) as refused:
                run_as(secured_lake, user, statement)
            message = refused.value.message
            if "execute optimize" in statement and refused.value.error_name != "PERMISSION_DENIED":
                # refused by Trino for a table read through a row filter (every
                # department's is), before the connector's local-filesystem guard
                assert "not supported for table with row filter" in message or \
                    "not supported for table with column masks" in message, (user, statement, message)
            else:
                assert refused.value.error_name == "PERMISSION_DENIED", (user, statement, message)


def test_nobody_writes_or_changes_tables(secured_lake):
    for user in DEPARTMENT_USERS:
        for statement in ("insert into lake.silver.psb_hukou (full_name) values ('x')",
                          "delete from lake.silver.psb_hukou", "update lake.silver.psb_hukou set full_name = 'x'",
                          "create table lake.silver.leak as select * from lake.silver.psb_residence_permit",
                          "create view lake.silver.leak as select 1 x", "comment on table lake.silver.psb_hukou is 'x'",
                          "alter table lake.silver.psb_hukou set authorization hrss_officer",
                          "create schema lake.leak", "drop table lake.silver.psb_hukou",
                          "create function lake.silver.f() returns int return 1"):
            with DENIED:
                run_as(secured_lake, user, statement)
        with pytest.raises(trino.exceptions.TrinoUserError) as refused:    # statistics are off altogether
            run_as(secured_lake, user, "analyze lake.silver.psb_hukou")
        assert refused.value.error_name in ("PERMISSION_DENIED", "NOT_SUPPORTED"), refused.value.message


def test_impersonation_is_refused(secured_lake):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(certificate_path(secured_lake))
    connection = trino.dbapi.connect(
        host="127.0.0.1", port=secured_lake.trino_port, user=ADMIN_USER, catalog=CATALOG, http_scheme="https",
        auth=BasicAuthentication("psb_analyst", password_for("psb_analyst", secured_lake)),
        http_session=session, max_attempts=1)
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        connection.cursor().execute("select * from lake.vault.pseudonym_key").fetchall()


def test_session_properties_are_for_the_administrator(secured_lake):
    for statement in ("set session query_max_run_time = '1h'", "set session lake.projection_pushdown_enabled = false",
                      "set session lake.query_partition_filter_required = false"):
        with DENIED:
            run_as(secured_lake, "hrss_officer", statement)


def test_statistics_and_plans_show_no_figures_outside_the_row_filter(secured_lake):
    """南城 sees 2 of the 3 permits (虎门镇's is the third): no statistic or
    estimate may say 3 or show 虎门镇's values. SHOW STATS is not refused by
    Trino 476 for a filtered table, and would show whole-table low and high
    values; with statistics off it shows nothing."""
    for statement in ("show stats for lake.silver.psb_residence_permit",
                      "show stats for (select town_name, full_name from lake.silver.psb_residence_permit)"):
        try:
            stats = run_as(secured_lake, "nancheng_officer", statement)
        except trino.exceptions.TrinoUserError as exc:       # refused (it reads every column): fine too
            assert "Access Denied" in exc.message, exc.message
            continue
        values = [value for row in stats for value in row[1:]]
        assert 3 not in values and 3.0 not in values, stats
        assert "虎门镇" not in repr(stats) and "丙" not in repr(stats), stats
    plan = repr(run_as(secured_lake, "nancheng_officer", "explain select town_name from lake.silver.psb_residence_permit"))
    assert "rows: 3" not in plan and "rows: 2" not in plan      # estimates unknown: statistics are off
    for property_ in ("lake.statistics_enabled = true", "lake.extended_statistics_enabled = true"):
        with DENIED:
            run_as(secured_lake, "nancheng_officer", f"set session {property_}")
    totals = run_as(secured_lake, ADMIN_USER, "show stats for lake.silver.psb_residence_permit")
    assert all(row[2] is None and row[5] is None and row[6] is None for row in totals), totals


def test_files_holding_secrets_are_private(secured_lake):
    home = Path(secured_lake.trino_home)
    etc = home / "etc"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o700
    for path in [*etc.glob("*.properties"), etc / "rules.json", etc / "password.db", etc / "govlake-trino.pem",
                 home / "passwords.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "shared-secret" in (etc / "config.properties").read_text()
    vault = Path(secured_lake.local_lake_path("vault"))
    assert stat.S_IMODE(vault.stat().st_mode) == 0o700


def _listening(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_services_listen_on_loopback_only(secured_lake, spark):
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    assert _listening(secured_lake.trino_port) and _listening(secured_lake.trino_port) <= loopback
    receiver = _listening(secured_lake.trino_port + 1)
    assert receiver and receiver <= loopback                           # the audit receiver
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1" and conf.get("spark.driver.host") == "127.0.0.1"
    driver = _listening(int(conf.get("spark.driver.port")))
    assert driver and driver <= loopback
    assert os.environ.get("SPARK_LOCAL_IP") == "127.0.0.1"


@pytest.mark.xfail(strict=True, reason="known residual risk (docs/security.md): Trino 476 has no access check for "
                   "EXPLAIN ANALYZE, whose scan statistics count rows of files read before the town filter; fixed "
                   "only by laying tables out so that no file mixes towns")
def test_explain_analyze_does_not_tell_a_town_which_values_other_towns_hold(secured_lake):
    """Found by the independent attacker: 南城 asks about a 虎门镇 resident's
    name; its own count is 0 either way, but the scan reads the shared file
    only when some row (of any town) may hold the value."""
    def scanned(name: str) -> str:
        plan = run_as(secured_lake, "nancheng_officer",
                      f"explain analyze select count(*) from lake.base.population where full_name = '{name}'")
        return re.findall(r"Input: (\d+) rows? \(", plan[0][0])
    assert scanned("丙") == scanned("不存在的人")
