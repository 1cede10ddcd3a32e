"""The CLI on conditions a user can cause (issue 21): a wrong folder, a lake
without sources, a stopped service, an unexpected error. One clear line and a
non-zero exit; never a stack trace, unless ``--debug`` asks for it."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.settings import get_settings


class SparkStarted(Exception):
    """Raised by the test's stand-in for the Spark session builder."""


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A project whose lake, Trino and Airflow homes are under tmp_path (the
    lake folder itself is not created), and a Spark that refuses to start."""
    started: list[str] = []

    def no_spark(*args, **kwargs):
        started.append("spark")
        raise SparkStarted("the command started Spark")

    monkeypatch.setenv("GOVLAKE_HOME", str(tmp_path / "lake"))
    monkeypatch.setenv("GOVLAKE_TRINO_HOME", str(tmp_path / "trino"))
    monkeypatch.setenv("GOVLAKE_AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("GOVLAKE_TRINO_PORT", "1")
    monkeypatch.setenv("GOVLAKE_AIRFLOW_PORT", "1")
    monkeypatch.setenv("GOVLAKE_SPARK_CLUSTER_HOME", str(tmp_path / "spark-cluster"))
    monkeypatch.setenv("GOVLAKE_SPARK_CLUSTER_PORT", "1")
    monkeypatch.setattr("pipelines.spark.build_spark_session", no_spark)
    get_settings.cache_clear()
    yield tmp_path / "lake", started
    get_settings.cache_clear()


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _assert_clean_failure(result, *expected: str, code: int = 1) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    for text in expected:
        assert text in result.output, result.output


# ---------------------------------------------------------------------- ingest --all
def _city(tmp_path: Path) -> Path:
    city = tmp_path / "city"
    (city / "deliveries" / "psb" / "hukou").mkdir(parents=True)
    (city / "deliveries" / "psb" / "hukou" / "hukou_20260101.csv").write_text("x\n", encoding="utf-8")
    (city / "truth").mkdir()
    return city


def test_ingest_all_on_a_folder_without_deliveries_names_the_nearest_match(lake, tmp_path):
    city = _city(tmp_path)
    result = _run("ingest", "--all", str(city))
    _assert_clean_failure(result, f"{city}: no delivery folders", "expected <bureau>/<feed>/",
                          f"did you mean {city / 'deliveries'}?")
    assert lake[1] == []   # failed before Spark


def test_ingest_all_from_a_sibling_folder_points_at_the_deliveries(lake, tmp_path):
    city = _city(tmp_path)
    result = _run("ingest", "--all", str(city / "truth"))
    _assert_clean_failure(result, f"did you mean {city / 'deliveries'}?")


def test_ingest_all_reports_folders_that_are_not_a_known_feed(lake, tmp_path):
    city = _city(tmp_path)
    (city / "deliveries" / "psb" / "hukuo").mkdir()
    (city / "deliveries" / "edu").mkdir()
    result = _run("ingest", "--all", str(city / "deliveries"))
    assert "no contract for feed psb.hukuo, skipped (did you mean psb/hukou?)" in result.output
    assert f"{city / 'deliveries' / 'edu'}: not a bureau folder" in result.output
    # the known feed goes on to load (on Arrow, no Spark): its one-column file is rejected, naming the file
    _assert_clean_failure(result, "hukou_20260101.csv", "rejected")
    assert lake[1] == []


def test_ingest_all_on_empty_feed_folders_says_so(lake, tmp_path):
    (tmp_path / "landing" / "psb" / "hukou").mkdir(parents=True)
    result = _run("ingest", "--all", str(tmp_path / "landing"))
    _assert_clean_failure(result, "no delivery files", "psb/hukou")


# ---------------------------------------------------------------------- build
def _manifest(lake_dir: Path, *rows: dict) -> None:
    from datetime import datetime

    from pipelines.lake.delta import append_rows
    from pipelines.lake.paths import governance_path
    from pipelines.lake.tables import MANIFEST_DDL

    append_rows(governance_path("load_manifest"), [{"source_file": "f.csv", "event_at": datetime(2026, 1, 1, 0, i)}
                                                   | row for i, row in enumerate(rows)], MANIFEST_DDL)


def test_build_skips_libraries_without_sources_and_says_why(lake):
    _manifest(lake[0], {"load_id": "L1", "feed": "psb.hukou", "status": "loaded"},
              {"load_id": "L1", "feed": "psb.hukou", "status": "blocked"},
              {"load_id": "L2", "feed": "psb.hukou", "status": "rejected"})
    result = _run("build")
    _assert_clean_failure(result, "base.population skipped: psb.hukou has no silver table "
                                  "(2 deliveries: 1 blocked, 1 rejected); psb.residence_permit has no silver "
                                  "table (never delivered)",
                          "base.grid skipped: grid.cell has no silver table (never delivered)",
                          "base.credit_rating skipped: base.legal_person is not built")
    assert lake[1] == []   # nothing to build: Spark never started


def test_build_one_library_with_missing_sources_fails_with_the_reason(lake):
    result = _run("build", "--library", "grid", "--json")
    _assert_clean_failure(result, "Error: base.grid skipped: grid.cell has no silver table (never delivered)")
    assert lake[1] == []


def test_build_json_lists_skipped_libraries(lake):
    result = _run("build", "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert {r["library"]: r["status"] for r in rows}["population"] == "skipped"
    assert next(r for r in rows if r["library"] == "address")["missing_feeds"] == {
        "nr.standard_address": "never delivered"}


def test_source_readiness_lets_a_library_build_after_its_dependency_in_the_same_run(lake):
    import pyarrow as pa
    from deltalake import write_deltalake

    from pipelines.libraries.build import source_readiness

    for feed in ("psb.hukou", "psb.residence_permit"):   # real (tiny) silver tables for these two feeds only
        bureau, name = feed.split(".")
        write_deltalake(str(lake[0] / "silver" / bureau / name), pa.table({"id_number": ["x"]}))
    ready = {r.library: r for r in source_readiness()}
    assert ready["population"].ready
    assert ready["legal_person"].missing_feeds.keys() == {"amr.business_registration", "mca.social_org"}
    assert ready["e_licence"].missing_libraries == ["legal_person"]


def _built_state(library: str, changed: dict[str, str], finished: bool = True) -> None:
    """A last build of ``library`` recorded as if the files in ``changed`` had other content then."""
    from pipelines.libraries.incremental import BuildState, digest_parts, parts_digest, write_state
    from pipelines.library_specs import load_library_spec

    settings = get_settings()
    parts = digest_parts(load_library_spec(library, settings), settings) | changed
    write_state(BuildState(library=library, built_at="2026-12-02T20:00:00+00:00", as_of="2026-12-02",
                           spec_digest=parts_digest(parts), digest_parts=parts, finished=finished), settings)


def _overrides(library: str | None = None) -> list[dict]:
    from pipelines.lake.delta import read_delta_rows
    from pipelines.libraries.build import overrides_path

    rows = read_delta_rows(overrides_path(get_settings()))
    return sorted((row for row in rows if library in (None, row["library"])), key=lambda row: row["decided_at"])


def test_accepting_a_code_change_is_recorded_and_refused_where_more_than_code_changed(lake):
    """An operator's --accept-code-change: refused before any build (and
    before Spark) where a contract changed too or the last build died, each
    refusal recorded with who and why; accepted where code alone changed,
    and what the build then did is recorded beside it."""
    _built_state("population", {"pipelines/libraries/golden.py": "old", "schemas/feeds/psb/hukou.yaml": "old"})
    _built_state("legal_person", {"pipelines/libraries/golden.py": "old"}, finished=False)
    _built_state("grid", {"pipelines/libraries/address.py": "old"})
    for misuse in (["--reason", "x"], ["--by", "ops1"], ["--full", "--accept-code-change", "--reason", "x"]):
        assert _run("build", "--library", "grid", *misuse).exit_code == 2, misuse      # usage errors
    _assert_clean_failure(_run("build", "--library", "grid", "--accept-code-change"),
                          "accepting a code change needs a reason (--reason)")
    assert _overrides() == []
    refused = _run("build", "--accept-code-change", "--reason", "a refactoring", "--by", "ops1")
    _assert_clean_failure(refused, "base.population: not only build code changed since its last build: "
                                   "schemas/feeds/psb/hukou.yaml", "base.legal_person: its last build did not finish")
    assert lake[1] == []                                                            # before Spark
    rows = {row["library"]: row for row in _overrides()}
    assert {name: row["decision"] for name, row in rows.items()} == {
        "population": "refused", "legal_person": "refused", "grid": "not applied"}  # never-built ones: no row
    assert rows["population"]["changed_files"] == ["pipelines/libraries/golden.py", "schemas/feeds/psb/hukou.yaml"]
    assert (rows["grid"]["decided_by"], rows["grid"]["reason"]) == ("ops1", "a refactoring")
    assert rows["grid"]["detail"] == "refused for another library in the same run"
    accepted = _run("build", "--library", "grid", "--accept-code-change", "--reason", "a refactoring")
    # accepted, then skipped for want of sources (this lake has none), still before Spark
    _assert_clean_failure(accepted, "base.grid skipped: grid.cell has no silver table")
    assert [row["decision"] for row in _overrides("grid")] == ["not applied", "accepted"]


def test_an_accepted_code_change_keeps_the_build_incremental_and_says_so(lake, monkeypatch):
    """What the build did with an acceptance is recorded: the plan it got
    (here through a stand-in for the Spark build, which ``plan_build``'s
    tests cover), against the digest accepted."""
    from pipelines.libraries import build

    _built_state("grid", {"pipelines/libraries/address.py": "old"})
    monkeypatch.setattr(build, "source_readiness", lambda libraries, settings: [build.Readiness("grid")])
    seen = {}

    def fake_build(spark, library, settings, now=None, full=False, accepted_digest=None, share=None,
                   committed=None, gates=None):
        seen[library] = accepted_digest
        return {"library": library, "status": "built", "mode": "unchanged", "rows": 0,
                "mode_reason": "nothing it reads changed since the last build; the change of "
                               "pipelines/libraries/address.py accepted as leaving the records as they were"}

    monkeypatch.setattr(build, "build_library", fake_build)
    # no driver: each library's session would be the driver's newSession()
    monkeypatch.setattr("pipelines.cli.libraries.spark", lambda: types.SimpleNamespace(newSession=lambda: None))
    result = _run("build", "--library", "grid", "--accept-code-change", "--reason", "a refactoring")
    assert result.exit_code == 0, result.output
    accepted, applied = _overrides("grid")
    assert seen == {"grid": accepted["digest"]}
    assert (accepted["decision"], applied["decision"]) == ("accepted", "applied")
    assert applied["detail"].startswith("built, unchanged build: nothing it reads changed since the last build; "
                                        "the change of pipelines/libraries/address.py accepted")
    assert applied["os_user"] and applied["decided_by"] == accepted["decided_by"]


def test_maintained_tables_keep_their_digest_across_an_accepted_code_change(lake):
    """A library's rescued rows and candidates (and the address keys) are
    kept under the digest they were made with while an operator's accepted
    change of code is built incrementally: making them again costs minutes
    at city scale. A change nobody accepted, an acceptance its build did not
    apply, and a full build make them anew, with the code of the build."""
    import time
    from datetime import datetime

    from pipelines.libraries.build import accept_code_change, record_overrides
    from pipelines.libraries.incremental import (
        BuildPlan, build_digest, current_state, maintained_after, maintained_digest, read_state, write_state)
    from pipelines.library_specs import load_library_spec

    settings = get_settings()
    spec = load_library_spec("population", settings)
    digest = build_digest(spec, settings)
    assert maintained_digest(spec, settings) == digest                      # never built
    _built_state("population", {"pipelines/libraries/golden.py": "old"})
    previous = read_state("population", settings)
    made_with = previous.spec_digest
    assert maintained_digest(spec, settings) == digest                      # not accepted: made anew
    _built_state("legal_person", {"pipelines/libraries/golden.py": "old"})
    accept_code_change(["legal_person"], "a refactoring", "ops1", settings)
    assert maintained_digest(spec, settings) == digest                      # another library's acceptance
    accepted = accept_code_change(["population"], "a refactoring", "ops1", settings)["population"]
    assert maintained_digest(spec, settings) == made_with                   # its build will keep them
    # population reads no other library: its state needs no Spark
    state = current_state(None, spec, {}, datetime(2026, 12, 3), settings)
    assert maintained_after(BuildPlan("incremental", "accepted"), state, previous) == made_with
    assert maintained_after(BuildPlan("full", "--full"), state, previous) == digest
    write_state(dataclasses.replace(state, maintained_digest=made_with), settings)
    assert maintained_digest(spec, settings) == made_with                   # as the accepted build left them
    assert maintained_after(BuildPlan("incremental", "a day"), state, read_state("population", settings)) == made_with
    # an acceptance its build did not apply (blocked, or full for another reason): the next build is full
    write_state(previous, settings)
    time.sleep(0.01)
    record_overrides([accepted | {"decision": "not applied", "detail": "blocked"}], settings)
    assert maintained_digest(spec, settings) == digest


# ---------------------------------------------------------------------- --debug
def test_an_unexpected_error_is_one_line_and_debug_shows_the_trace(lake, monkeypatch):
    def broken():
        raise RuntimeError("catalog/resources.yaml [line 3]: boom\n  at some.java.Frame(Frame.java:1)")

    monkeypatch.setattr("pipelines.serving.catalog.load_catalog", broken)
    result = _run("catalog", "list")
    _assert_clean_failure(result, "govlake catalog: RuntimeError: catalog/resources.yaml [line 3]: boom",
                          "--debug")
    assert "Frame.java" not in result.output
    debugged = _run("--debug", "catalog", "list")
    assert isinstance(debugged.exception, RuntimeError)


# ---------------------------------------------------------------------- status
@pytest.mark.parametrize("service", ["airflow", "trino"])
def test_status_exits_non_zero_unless_the_service_answers(lake, service):
    stopped = _run(service, "status")
    _assert_clean_failure(stopped, "stopped")
    assert "Exits 0 only when it answers" in _run(service, "status", "--help").output


@pytest.mark.parametrize("service,module", [("airflow", "pipelines.orchestration.airflow_local"),
                                            ("trino", "pipelines.serving.trino")])
def test_status_exits_zero_when_the_service_answers(lake, monkeypatch, service, module):
    key = "answering"
    status = {"answering": True, "running": True, "pid": 42, "url": "u", "home": "h",
              "password_file": "p", "catalog": "lake", "certificate": "c", "passwords": "p"}
    monkeypatch.setattr(f"{module}.{service}_status", lambda: status)
    result = _run(service, "status", "--json")
    assert result.exit_code == 0 and json.loads(result.output)[key] is True
    status[key] = False
    assert _run(service, "status").exit_code == 1


# ---------------------------------------------------------------------- the sweep
def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


# Every command, with arguments naming something that does not exist.
SWEEP = {
    ("setup",): [[]],
    ("contracts", "list"): [[]],
    ("contracts", "check"): [["no/such/contract.yaml"]],
    ("synth",): [["--out", "pyproject.toml"]],
    ("ingest",): [["psb.hukou", "no/such/file.csv"], ["no.such_feed", "pyproject.toml"], ["--all", "no/such/dir"]],
    ("loads",): [[], ["--feed", "no.such_feed"]],
    ("collection", "status"): [[]],
    ("quality", "suites"): [["--check"]],
    ("quality", "report"): [[]],
    ("quality", "approve"): [["NO-SUCH-LOAD", "--reason", "r"]],
    ("governance", "list"): [[], ["--feed", "no.such_feed"]],
    ("governance", "close"): [["NO-SUCH-ISSUE", "--reason", "r"]],
    ("governance", "conflicts"): [[]],
    ("governance", "reviews"): [[]],
    ("governance", "review"): [["NO-SUCH-REVIEW", "--reject", "--reason", "r"], ["NO-SUCH-REVIEW"]],
    ("governance", "scorecard"): [[]],
    ("airflow", "status"): [[]],
    ("airflow", "down"): [[]],
    ("trino", "status"): [[]],
    ("trino", "down"): [[]],
    ("builder", "status"): [[]],
    ("builder", "down"): [[]],
    ("portal", "status"): [[]],
    ("portal", "down"): [[]],
    ("cluster", "status"): [[]],
    ("cluster", "down"): [[]],
    ("publish",): [[]],
    ("catalog", "list"): [[]],
    ("catalog", "show"): [["no_such_resource"]],
    ("access", "compile"): [[]],
    ("access", "check"): [["--user", "nobody", "--table", "silver.no_such_table"]],
    ("access", "request"): [["--department", "nobody", "--resource", "silver.x", "--columns", "a", "--purpose", "p",
                             "--legal-basis", "l", "--expires", "2030-01-01"]],
    ("access", "approve"): [["NO-SUCH-REQUEST", "--reason", "r"]],
    ("access", "reject"): [["NO-SUCH-REQUEST", "--reason", "r"]],
    ("access", "requests"): [[]],
    ("access", "consent"): [["NO-SUCH-REQUEST", "--by", "psb_analyst"]],
    ("audit", "load"): [[]],
    ("audit", "verify"): [[], ["--json"]],
    ("build",): [[], ["--library", "no_such_library"], ["--library", "population"]],
    ("show", "person"): [["000000000000000000"]],
    ("show", "entity"): [["NO-SUCH-USCC"]],
    ("show", "risk"): [["no-such-town"]],
    ("demo",): [[]],
    ("upkeep",): [["--layer", "no_such_layer"]],
    ("inspect", "draw"): [["--plan", "no-such-plan", "--seed", "1"], ["--plan", "amr-2026-12", "--seed", "1"]],
    ("inspect", "verify"): [["NO-SUCH-DRAW"]],
    ("inspect", "notice"): [["NO-SUCH-DRAW"]],
    ("verify",): [["person-alive-in-town", "441900199001011231", "--department", "hrss", "--town", "南城街道",
                   "--purpose", "社保待遇资格认证"], ["entity-good-standing", "NO-SUCH-USCC", "--department", "x"]],
}
# Starting them would start a real service or Airflow's database: tested elsewhere.
NOT_SWEPT = {("airflow", "up"), ("trino", "up"), ("airflow", "run"), ("builder", "up"), ("portal", "up"),
             ("cluster", "up")}
# These need Spark whatever the lake holds (the stand-in refuses, in one line).
NEED_SPARK = {("setup",), ("demo",), ("access", "request")}
# read-only listings of one governance table: empty (exit 0) while nothing has written it
LISTINGS = {("loads",), ("governance", "list"), ("governance", "conflicts"), ("governance", "reviews"),
            ("access", "requests")}


def test_the_sweep_covers_every_command():
    assert set(_commands(main)) == set(SWEEP) | NOT_SWEPT


@pytest.mark.parametrize("state", ["missing lake", "empty lake"])
def test_no_command_shows_a_stack_trace(lake, state):
    lake_dir, started = lake
    if state == "empty lake":
        lake_dir.mkdir()
    for path, variants in SWEEP.items():
        for args in variants:
            started.clear()
            result = _run(*path, *args)
            shown = " ".join([*path, *args])
            assert "Traceback" not in result.output, f"{shown}:\n{result.output}"
            assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
            if path not in NEED_SPARK:
                assert not started, f"{shown} started Spark on an {state}:\n{result.output}"
            listing = path in LISTINGS and not args and state == "empty lake"
            if listing:   # nothing has written the table yet: an empty listing that says why
                assert result.exit_code == 0 and "is empty: it is written by" in result.output, (shown, result.output)
            elif path not in {("contracts", "list"), ("quality", "suites"), ("catalog", "list"), ("access", "compile"),
                              ("airflow", "down"), ("trino", "down"), ("builder", "down"), ("portal", "down"),
                              ("cluster", "down"), ("access", "check")}:
                assert result.exit_code != 0, f"{shown} exited 0 on an {state}:\n{result.output}"
