"""Grants compiled into Trino rules, enforced by the real server over HTTPS with
passwords: masks, town row filters, denials, expiry, not-shared columns, and
the usual bypass attempts."""

from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest
import trino

from pipelines.contracts import get_contract
from pipelines.lake.paths import table_path
from pipelines.serving.catalog import CatalogError
from pipelines.serving.publish import publish
from pipelines.serving.rules import compile_rules
from pipelines.serving.trino import query, rules_path, trino_down, trino_up
from pipelines.settings import get_settings
from tests.integration.permits import PERMITS, write_permits


def _write_hukou(spark, settings) -> None:
    contract = get_contract("psb.hukou")
    rows = [(p[0], p[1], p[2], "汉", p[3], p[4], "H1", "户主", p[7], "正常") for p in PERMITS]
    frame = spark.createDataFrame(rows, "id_number string, full_name string, gender string, ethnicity string, "
                                        "birth_date date, hukou_address string, household_number string, "
                                        "relation_to_head string, registered_date date, population_status string")
    frame.write.format("delta").mode("overwrite").save(table_path("silver", contract, settings))


@pytest.fixture(scope="module")
def shared_lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("sharing")
    settings = dataclasses.replace(get_settings(), home=str(root / "lake"), trino_home=root / "trino",
                                   trino_port=18444, trino_heap="2G")
    write_permits(spark, settings)
    _write_hukou(spark, settings)
    trino_up(settings)
    publish(settings)
    compile_rules(settings, on=date(2026, 11, 29))
    deadline = time.monotonic() + 30   # rules and password file reload within seconds
    while time.monotonic() < deadline:
        try:
            query("select 1", user="hrss_officer", settings=settings, max_attempts=1)
            break
        except trino.exceptions.HttpError:
            time.sleep(1)
    time.sleep(6)
    yield settings
    trino_down(settings)


def _as(user, sql, settings):
    return query(sql, user=user, settings=settings, max_attempts=1)[1]


def test_owner_bureau_sees_full_id_numbers(shared_lake):
    rows = _as("psb_analyst", "select id_number, ethnicity from lake.silver.psb_hukou order by id_number", shared_lake)
    assert [r[0] for r in rows] == sorted(p[0] for p in PERMITS)
    assert {r[1] for r in rows} == {"汉"}


def test_granted_department_sees_masked_id_numbers(shared_lake):
    rows = _as("hrss_officer", "select id_number, full_name from lake.silver.psb_residence_permit", shared_lake)
    assert sorted(rows) == [["441900********1234", "甲"], ["441900********2345", "乙"], ["441900********3456", "丙"]]


def test_town_user_sees_only_its_town_with_masked_phones(shared_lake):
    rows = _as("nancheng_officer", "select town_name, phone from lake.silver.psb_residence_permit", shared_lake)
    assert sorted(rows) == [["南城街道", "138****1111"], ["南城街道", "139****2222"]]
    assert _as("humen_officer", "select count(*) from lake.silver.psb_residence_permit", shared_lake) == [[1]]
    # hukou has no town column: a town-scoped user gets nothing of it
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        _as("nancheng_officer", "select count(*) from lake.silver.psb_hukou", shared_lake)


def test_department_without_grant_is_denied_naming_the_table(shared_lake):
    with pytest.raises(trino.exceptions.TrinoUserError,
                       match=r"Access Denied: Cannot select from table lake.silver.psb_residence_permit"):
        _as("amr_inspector", "select id_number from lake.silver.psb_residence_permit", shared_lake)


def test_expired_grant_is_no_grant(shared_lake):
    with pytest.raises(trino.exceptions.TrinoUserError, match=r"Access Denied: .*lake.silver.psb_hukou"):
        _as("edu_officer", "select id_number from lake.silver.psb_hukou", shared_lake)
    # unconditional columns stay readable
    assert _as("edu_officer", "select count(population_status) from lake.silver.psb_hukou", shared_lake) == [[3]]


def test_not_shared_columns_are_invisible_to_everyone_else(shared_lake):
    for statement in ("select ethnicity from lake.silver.psb_hukou", "select * from lake.silver.psb_hukou"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            _as("hrss_officer", statement, shared_lake)
    columns = _as("hrss_officer", "select column_name from lake.information_schema.columns "
                                  "where table_schema = 'silver' and table_name = 'psb_hukou'", shared_lake)
    assert "ethnicity" not in {c[0] for c in columns} and "id_number" not in {c[0] for c in columns}


def test_masks_hold_through_joins_ctas_and_metadata(shared_lake):
    rows = _as("hrss_officer", "with p as (select id_number, full_name from lake.silver.psb_residence_permit) "
                               "select a.id_number from p a join p b on a.id_number = b.id_number "
                               "where a.full_name = '甲'", shared_lake)
    assert rows == [["441900********1234"]]
    for statement in ("create table lake.silver.leak as select * from lake.silver.psb_residence_permit",
                      "create view lake.silver.leak as select id_number from lake.silver.psb_residence_permit"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            _as("hrss_officer", statement, shared_lake)
    tables = {r[0] for r in _as("amr_inspector", "show tables from lake.silver", shared_lake)}
    assert "psb_residence_permit" in tables  # unconditional columns (registered_date) are shared
    columns = {r[0] for r in _as("amr_inspector", "show columns from lake.silver.psb_residence_permit",
                                 shared_lake)}
    assert "id_number" not in columns and "registered_date" in columns


def test_a_bad_grant_fails_compile_naming_file_and_line_and_keeps_rules(shared_lake, tmp_path):
    import shutil

    catalog = tmp_path / "catalog"
    shutil.copytree(shared_lake.catalog_dir, catalog)
    (catalog / "grants" / "zz-bad.yaml").write_text(
        "grants:\n  - department: hrss\n    resource: silver.psb_hukou\n    columns: [id_number, shoe_size]\n"
        "    purpose: x\n    legal_basis: y\n    expires: 2030-01-01\n    approver: z\n", encoding="utf-8")
    before = rules_path(shared_lake).read_text()
    with pytest.raises(CatalogError, match=r"catalog/grants/zz-bad.yaml:4: silver.psb_hukou has no column 'shoe_size'"):
        compile_rules(dataclasses.replace(shared_lake, catalog_dir=catalog))
    assert rules_path(shared_lake).read_text() == before


def test_every_query_is_in_the_audit_table_denied_ones_too(spark, shared_lake):
    """Runs after the others in this module: their queries are in the audit trail too."""
    from pyspark.sql import functions as F

    from pipelines.lake.paths import governance_path
    from pipelines.serving.audit import load_audit
    from pipelines.serving.trino import connect

    def run(user, sql):
        cursor = connect(user, settings=shared_lake, max_attempts=1).cursor()
        try:
            cursor.execute(sql)
            cursor.fetchall()
        except trino.exceptions.TrinoUserError:
            pass
        return cursor.query_id

    denied_id = run("amr_inspector", "select id_number from lake.silver.psb_residence_permit")
    read_id = run("hrss_officer", "select full_name from lake.silver.psb_residence_permit")
    path = governance_path("query_audit", shared_lake)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        load_audit(spark, shared_lake)
        audit = spark.read.format("delta").load(path)
        if audit.where(F.col("query_id").isin(denied_id, read_id)).count() == 2:
            break
        time.sleep(2)
    denied = audit.where(F.col("query_id") == denied_id).first()
    assert denied["user"] == "amr_inspector" and denied["department"] == "amr" and denied["access_denied"]
    assert denied["state"] == "FAILED" and denied["error_message"].startswith("Access Denied")
    read = audit.where(F.col("query_id") == read_id).first()
    assert read["state"] == "FINISHED" and not read["access_denied"] and read["rows_returned"] == 3
    assert "lake.silver.psb_residence_permit" in read["tables_read"]
    assert "lake.silver.psb_residence_permit.full_name" in read["columns_read"]
    # the earlier tests' users are there, denied queries included; one row per query
    users = {r["user"] for r in audit.where(F.col("access_denied")).select("user").distinct().collect()}
    assert {"amr_inspector", "edu_officer", "hrss_officer", "nancheng_officer"} <= users
    assert audit.count() == audit.select("query_id").distinct().count()
