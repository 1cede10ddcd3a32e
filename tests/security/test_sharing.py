"""Grants compiled into Trino rules, enforced by the real server over HTTPS with
passwords: masks, town row filters, denials, expiry, not-shared columns, and
the usual bypass attempts."""

from __future__ import annotations

import dataclasses
import re

import pytest
import trino

from pipelines.serving.catalog import CatalogError
from pipelines.serving.rules import compile_rules
from pipelines.serving.trino import rules_path
from tests.integration.permits import PERMITS
from tests.security.conftest import DECEASED_ID, ETHNICITY, run_as


def _as(user, sql, settings):
    return run_as(settings, user, sql)


def test_owner_bureau_sees_full_id_numbers(secured_lake):
    rows = _as("psb_analyst", "select id_number, ethnicity from lake.silver.psb_hukou order by id_number", secured_lake)
    assert [r[0] for r in rows] == sorted([p[0] for p in PERMITS] + [DECEASED_ID])
    assert {r[1] for r in rows} == {ETHNICITY}


def test_granted_department_sees_its_pseudonyms_of_id_numbers(secured_lake):
    rows = _as("hrss_officer", "select id_number, full_name from lake.silver.psb_residence_permit", secured_lake)
    assert sorted(r[1] for r in rows) == ["丙", "乙", "甲"]
    assert all(re.fullmatch(r"P[0-9a-f]{24}", r[0]) for r in rows) and len({r[0] for r in rows}) == 3


def test_town_user_sees_only_its_town_with_masked_phones(secured_lake):
    rows = _as("nancheng_officer", "select town_name, phone from lake.silver.psb_residence_permit", secured_lake)
    assert sorted(rows) == [["南城街道", "138****1111"], ["南城街道", "139****2222"]]
    assert _as("humen_officer", "select count(*) from lake.silver.psb_residence_permit", secured_lake) == [[1]]
    # hukou has no town column: a town-scoped user gets nothing of it
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        _as("nancheng_officer", "select count(*) from lake.silver.psb_hukou", secured_lake)


def test_department_without_grant_is_denied_naming_the_table(secured_lake):
    with pytest.raises(trino.exceptions.TrinoUserError,
                       match=r"Access Denied: Cannot select from table lake.silver.psb_residence_permit"):
        _as("amr_inspector", "select id_number from lake.silver.psb_residence_permit", secured_lake)


def test_expired_grant_is_no_grant(secured_lake):
    with pytest.raises(trino.exceptions.TrinoUserError, match=r"Access Denied: .*lake.silver.psb_hukou"):
        _as("edu_officer", "select id_number from lake.silver.psb_hukou", secured_lake)
    # unconditional columns stay readable
    assert _as("edu_officer", "select count(registered_date) from lake.silver.psb_hukou", secured_lake) == [[4]]


def test_not_shared_columns_are_invisible_to_everyone_else(secured_lake):
    for statement in ("select ethnicity from lake.silver.psb_hukou", "select * from lake.silver.psb_hukou"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            _as("hrss_officer", statement, secured_lake)
    columns = _as("hrss_officer", "select column_name from lake.information_schema.columns "
                                  "where table_schema = 'silver' and table_name = 'psb_hukou'", secured_lake)
    assert "ethnicity" not in {c[0] for c in columns} and "id_number" not in {c[0] for c in columns}


def test_masks_hold_through_joins_ctas_and_metadata(secured_lake):
    rows = _as("hrss_officer", "with p as (select id_number, full_name from lake.silver.psb_residence_permit) "
                               "select a.id_number from p a join p b on a.id_number = b.id_number "
                               "where a.full_name = '甲'", secured_lake)
    assert len(rows) == 1 and rows[0][0].startswith("P") and rows[0][0] not in {p[0] for p in PERMITS}
    for statement in ("create table lake.silver.leak as select * from lake.silver.psb_residence_permit",
                      "create view lake.silver.leak as select id_number from lake.silver.psb_residence_permit"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            _as("hrss_officer", statement, secured_lake)
    tables = {r[0] for r in _as("amr_inspector", "show tables from lake.silver", secured_lake)}
    assert "psb_residence_permit" in tables  # unconditional columns (registered_date) are shared
    columns = {r[0] for r in _as("amr_inspector", "show columns from lake.silver.psb_residence_permit",
                                 secured_lake)}
    assert "id_number" not in columns and "registered_date" in columns


def test_a_bad_grant_fails_compile_naming_file_and_line_and_keeps_rules(secured_lake, tmp_path):
    import shutil

    catalog = tmp_path / "catalog"
    shutil.copytree(secured_lake.catalog_dir, catalog)
    (catalog / "grants" / "zz-bad.yaml").write_text(
        "grants:\n  - department: hrss\n    resource: silver.psb_hukou\n    columns: [id_number, shoe_size]\n"
        "    purpose: x\n    legal_basis: y\n    expires: 2030-01-01\n    approver: z\n", encoding="utf-8")
    before = rules_path(secured_lake).read_text()
    with pytest.raises(CatalogError, match=r"catalog/grants/zz-bad.yaml:4: silver.psb_hukou has no column 'shoe_size'"):
        compile_rules(dataclasses.replace(secured_lake, catalog_dir=catalog))
    assert rules_path(secured_lake).read_text() == before
