"""The project's services from nothing (issue 21, items 0 and 5): Airflow's UI
and API from a fresh home with no venv on PATH, Trino on a project with no lake
yet, its own error lines when it cannot start, and the official Trino CLI as a
second client running the README's department query over HTTPS with a password."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from pipelines.contracts import load_contracts
from pipelines.settings import PROJECT_ROOT, get_settings
from tests.integration.permits import write_permits

README = PROJECT_ROOT / "README.md"

# The ERROR record of Trino 476's server.log on a lake root that does not
# exist (captured from a real start), with the INFO line before it.
MISSING_LAKE_LOG = """\
2026-12-03T16:09:36.934Z\tINFO\tmain\tio.trino.connector.StaticCatalogManager\t-- Loading catalog lake --
2026-12-03T16:09:38.100Z\tWARN\tmain\tcom.google.inject.internal.util.LineNumbers\tFailed loading line numbers.
java.lang.IllegalArgumentException: Unsupported class file major version 68
\tat com.google.inject.internal.asm.$ClassReader.<init>(ClassReader.java:199)
2026-12-03T16:09:39.222Z\tERROR\tmain\tio.trino.server.Server\tConfiguration errors:

1) Error: Invalid configuration property local.location: file does not exist: /tmp/x/lake (for class LocalFileSystemConfig.location)

1 error

======================
Full classname legend:
======================
LocalFileSystemConfig: "io.trino.filesystem.local.LocalFileSystemConfig"
========================
End of classname legend:
========================

io.airlift.bootstrap.ApplicationConfigurationException: Configuration errors:

1) Error: Invalid configuration property local.location: file does not exist: /tmp/x/lake (for class LocalFileSystemConfig.location)

1 error
\tat io.airlift.bootstrap.Bootstrap.initialize(Bootstrap.java:243)
\tat io.trino.server.TrinoServer.main(TrinoServer.java:37)
"""


def test_trino_start_failure_names_the_servers_own_error_lines():
    from pipelines.serving.trino import server_errors

    lines = server_errors(MISSING_LAKE_LOG)
    assert any("Invalid configuration property local.location: file does not exist: /tmp/x/lake" in line
               for line in lines)
    assert sum("Invalid configuration property" in line for line in lines) == 1   # repeats collapsed
    assert not any(line.startswith("at ") or "major version" in line or "classname" in line for line in lines)


# --------------------------------------------------------------------------- Airflow

@pytest.fixture
def no_venv_on_path(monkeypatch):
    """A newcomer's shell: nothing activated, the venv's bin not on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    kept = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv_bin)]
    monkeypatch.setenv("PATH", os.pathsep.join(kept) or "/usr/bin:/bin")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)


def _get_json(url: str, token: str | None = None, data: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                     headers=headers, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_airflow_up_from_a_fresh_home_logs_in_and_lists_the_feed_dags(tmp_path, no_venv_on_path):
    from pipelines.orchestration.airflow_local import airflow_down, airflow_status, airflow_up

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), airflow_home=tmp_path / "airflow",
                                   airflow_port=18080)
    expected = {f"feed__{contract.slug}" for contract in load_contracts().values()}
    assert not airflow_status(settings)["answering"]
    try:
        # paused: the scheduler must not start feed runs on a shared test machine
        status = airflow_up(settings, wait_seconds=300,
                            extra_environment={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"})
        assert status["answering"] is True and status["running"] is True
        url = status["url"]
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=10) as response:
            assert response.status == 200
        # the UI answers too
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()

        # log in as the simple auth manager's admin, with the generated password
        password = json.loads(Path(status["password_file"]).read_text())["admin"]
        token = _get_json(f"{url}/auth/token", data={"username": "admin", "password": password})["access_token"]
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _get_json(f"{url}/api/v2/dags")

        # the DAG processor parses the dags folder shortly after start
        deadline, listed = time.monotonic() + 180, set()
        while time.monotonic() < deadline:
            dags = _get_json(f"{url}/api/v2/dags?limit=1000", token)["dags"]
            listed = {dag["dag_id"] for dag in dags if dag["dag_id"].startswith("feed__")}
            if listed >= expected:
                break
            time.sleep(3)
        assert listed == expected
        log_text = (Path(settings.airflow_home) / "standalone.log").read_text(errors="replace")
        assert "No such file or directory: 'airflow'" not in log_text
    finally:
        airflow_down(settings)
    stopped = airflow_status(settings)
    assert stopped["answering"] is False and stopped["running"] is False


# --------------------------------------------------------------------------- Trino and its CLI

@pytest.fixture(scope="module")
def empty_project_trino(tmp_path_factory):
    """``trino_up`` on a project whose lake does not exist yet (one start for the module)."""
    from pipelines.serving.trino import trino_down, trino_up

    root = tmp_path_factory.mktemp("services")
    settings = dataclasses.replace(get_settings(), home=str(root / "lake"), trino_home=root / "trino",
                                   trino_port=18445, trino_heap="2G")
    assert not Path(settings.home).exists()
    started = time.monotonic()
    try:
        status = trino_up(settings)
        yield settings, status, time.monotonic() - started
    finally:
        trino_down(settings)


def test_trino_up_on_a_project_with_no_lake_starts_and_answers(empty_project_trino):
    from pipelines.serving.trino import query, trino_status

    settings, status, _ = empty_project_trino
    assert status["answering"] is True and status["running"] is True
    assert Path(settings.home).is_dir() and (Path(settings.home) / "_trino_metastore").is_dir()
    assert query("select 1", settings=settings)[1] == [[1]]
    assert query("show schemas from lake", settings=settings)[1]   # the catalog on the empty lake
    assert trino_status(settings)["answering"] is True


def _readme_cli_command() -> tuple[list[str], str]:
    """The README's Trino CLI example: its argv and its password placeholder."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^TRINO_PASSWORD=('[^']*') (java -jar .*?)\n(?!  )", text, re.MULTILINE | re.DOTALL)
    assert match, "README has no Trino CLI example"
    return shlex.split(match.group(2).replace("\\\n", " ")), match.group(1)


def _readme_jdbc_url() -> str:
    return re.search(r"`(jdbc:trino://[^`]+)`", README.read_text(encoding="utf-8")).group(1)


def test_the_official_trino_cli_runs_the_readme_department_query(spark, empty_project_trino):
    from pipelines.serving.publish import publish
    from pipelines.serving.rules import compile_rules
    from pipelines.serving.trino import certificate_path, cli_command, cli_jar, find_java, password_for, query

    settings, _, _ = empty_project_trino
    write_permits(spark, settings)
    publish(settings)
    compile_rules(settings, on=date(2026, 11, 29))
    deadline = time.monotonic() + 30   # the password file and rules reload within seconds
    while time.monotonic() < deadline:
        try:
            rows = query("select count(*) from lake.silver.psb_residence_permit", user="hrss_officer",
                         settings=settings, max_attempts=1)[1]
        except Exception:  # noqa: BLE001 - not reloaded yet
            rows = None
        if rows == [[3]]:
            break
        time.sleep(1)

    # the README's command, with this test's Java, port and files in place of the defaults
    readme_argv, placeholder = _readme_cli_command()
    assert placeholder == "'<from .trino/passwords.json>'"
    assert "--truststore-type" not in readme_argv
    replace = {"java": str(find_java(settings) / "bin" / "java"),
               f".cache/trino/{cli_jar(settings).name}": str(cli_jar(settings)),
               "https://127.0.0.1:8443": f"https://127.0.0.1:{settings.trino_port}",
               ".trino/etc/govlake-trino.crt": str(certificate_path(settings))}
    argv = [replace.get(arg, arg) for arg in readme_argv]
    sql = argv[argv.index("--execute") + 1]
    assert argv[:argv.index("--execute")] == cli_command("hrss_officer", settings)
    assert cli_jar(settings) == Path(settings.cache_dir) / "trino" / "trino-cli-476-executable.jar"
    assert cli_jar(settings).is_file()

    environment = dict(os.environ, TRINO_PASSWORD=password_for("hrss_officer", settings))
    completed = subprocess.run([*argv, "--output-format", "CSV_HEADER"], env=environment,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    rows = list(csv.reader(io.StringIO(completed.stdout)))
    assert rows[0] == ["id_number", "full_name", "town_name"]
    assert [row[1:] for row in rows[1:]] == [["丙", "虎门镇"], ["甲", "南城街道"], ["乙", "南城街道"]]
    # hrss sees its own pseudonyms of the ID numbers, never the numbers
    assert all(re.fullmatch(r"P[0-9a-f]{24}", row[0]) for row in rows[1:])
    assert sql.startswith("select id_number, full_name, town_name from silver.psb_residence_permit")

    # a wrong password is refused by the same CLI
    refused = subprocess.run([*argv], env=dict(environment, TRINO_PASSWORD="not-the-password"),
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert re.search(r"401|Unauthorized|Authentication failed", refused.stdout + refused.stderr)
    # and the truststore type the README used to give is not one Java knows
    pem = subprocess.run([*argv, "--truststore-type", "PEM"], env=environment, capture_output=True, text=True,
                         timeout=120, check=False)
    assert pem.returncode != 0 and "PEM not found" in (pem.stdout + pem.stderr)

    # the README's JDBC URL says the same as the CLI line: port, catalog, truststore, no type
    url = _readme_jdbc_url()
    assert url == "jdbc:trino://127.0.0.1:8443/lake?SSL=true&SSLTrustStorePath=.trino/etc/govlake-trino.crt"
    assert "SSLTrustStoreType" not in url and ".trino/etc/govlake-trino.crt" in readme_argv


def test_trino_up_with_a_catalog_that_does_not_compile_narrows_to_administrator_only(empty_project_trino, tmp_path):
    """Runs after the CLI test, whose grant lets hrss_officer read permits: a
    broken grant on the next `trino up` must not leave those older, wider
    rules in force. The administrator-only rules replace them, and the
    command says why."""
    import shutil

    from pipelines.serving.publish import trino_up_with_rules
    from pipelines.serving.rules import compile_rules
    from pipelines.serving.trino import base_rules, query, rules_path

    settings, _, _ = empty_project_trino
    catalog = tmp_path / "catalog"
    shutil.copytree(settings.catalog_dir, catalog)
    (catalog / "grants" / "zz-bad.yaml").write_text(
        "grants:\n  - department: hrss\n    resource: silver.psb_hukou\n    columns: [id_number, shoe_size]\n"
        "    purpose: x\n    legal_basis: y\n    expires: 2030-01-01\n    approver: z\n", encoding="utf-8")
    broken = dataclasses.replace(settings, catalog_dir=catalog)
    try:
        status = trino_up_with_rules(broken)   # already running: only the rules step runs
        assert status["answering"] is True
        assert "zz-bad.yaml:4" in status["rules_error"] and "shoe_size" in status["rules_error"]
        assert json.loads(rules_path(settings).read_text(encoding="utf-8")) == base_rules()
        deadline = time.monotonic() + 30       # Trino re-reads the rules file every 5 s
        denied = None
        while time.monotonic() < deadline and denied is None:
            try:
                query("select count(*) from lake.silver.psb_residence_permit", user="hrss_officer",
                      settings=settings, max_attempts=1)
                time.sleep(2)
            except Exception as exc:  # noqa: BLE001 - the refusal is what this waits for
                denied = str(exc)
        assert denied is not None and "Access Denied" in denied
    finally:
        compile_rules(settings)
