"""Masks that cannot be undone, and provenance that gives nothing away: a
department's valid login trying to get masked ID numbers and denied
attributes back through columns, joins, functions, predicates, plans,
metadata and time travel (issue 13, items 1 and 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trino
from deltalake import DeltaTable

from pipelines.serving.pseudonyms import pseudonym_key_path
from tests.integration.permits import PERMITS
from tests.security.conftest import DECEASED_ID, ETHNICITY, REMOVED_ID, run_as

REAL_IDS = {p[0] for p in PERMITS} | {DECEASED_ID}
DENIED = pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied")


def _text(rows) -> str:
    return repr(rows)


def test_granted_birth_date_does_not_rebuild_masked_ids(secured_lake):
    """The old mask 441900********1234 hid only the birth date, which 人社局 is
    granted: the concat attack rebuilt every ID. A pseudonym leaves nothing to
    put back together."""
    for user, table, column in (("hrss_officer", "base.population", "person_id"),
                                ("hrss_officer", "silver.psb_residence_permit", "id_number"),
                                ("nancheng_officer", "base.population", "person_id")):
        rows = run_as(secured_lake, user,
                      f"select {column}, concat(substr({column}, 1, 6), date_format(birth_date, '%Y%m%d'), "
                      f"substr({column}, 15, 4)), substr({column}, 17, 1) from lake.{table}")
        assert rows, (user, table)
        assert not REAL_IDS & {value for row in rows for value in row}, (user, table)
        assert all(re.fullmatch(r"P[0-9a-f]{24}", row[0]) for row in rows), rows
        # nor inside any value (a pseudonym's hex may hold a run of digits by chance: real IDs only)
        assert not any(real[6:] in _text(rows) for real in REAL_IDS)


def test_pseudonyms_join_within_a_department_and_differ_between_departments(secured_lake):
    joined = run_as(secured_lake, "hrss_officer",
                    "select p.full_name from lake.base.population p join lake.silver.psb_residence_permit r "
                    "on p.person_id = r.id_number order by 1")
    assert [r[0] for r in joined] == sorted(p[1] for p in PERMITS)
    hrss = dict(run_as(secured_lake, "hrss_officer", "select full_name, id_number from lake.silver.psb_residence_permit"))
    nancheng = dict(run_as(secured_lake, "nancheng_officer",
                           "select full_name, id_number from lake.silver.psb_residence_permit"))
    assert nancheng and all(hrss[name] != pseudonym for name, pseudonym in nancheng.items())


def test_predicates_and_functions_on_a_masked_column_see_only_the_pseudonym(secured_lake):
    real = PERMITS[0][0]
    for predicate in (f"id_number = '{real}'", "substr(id_number, 1, 6) = '441900'",
                      f"starts_with(id_number, '{real[:10]}')", "regexp_like(id_number, '^[0-9]{17}')",
                      f"to_hex(sha256(to_utf8(id_number))) = to_hex(sha256(to_utf8('{real}')))"):
        assert run_as(secured_lake, "hrss_officer",
                      f"select count(*) from lake.silver.psb_residence_permit where {predicate}") == [[0]], predicate


def test_no_plan_shows_the_pseudonym_key(secured_lake):
    secret = DeltaTable(pseudonym_key_path(secured_lake)).to_pyarrow_table().column("secret")[0].as_py()
    shown = []
    for statement in ("explain select id_number from lake.silver.psb_residence_permit",
                      "explain (type logical) select id_number from lake.silver.psb_residence_permit",
                      "explain (type io, format json) select id_number from lake.silver.psb_residence_permit",
                      "explain (format json) select id_number from lake.silver.psb_residence_permit",
                      "explain analyze select id_number from lake.silver.psb_residence_permit",
                      "explain (type validate) select id_number from lake.silver.psb_residence_permit"):
        shown.append(_text(run_as(secured_lake, "hrss_officer", statement)))
    text = "\n".join(shown).lower()          # hex in either case; also the bytes as text
    assert secret.hex() not in text and secret.decode("latin-1").lower() not in text
    assert "pseudonym_key" in text      # the plan names the table, which the user cannot read
    for user in ("hrss_officer", "governor_li", "psb_analyst", "nancheng_officer"):
        with DENIED:
            run_as(secured_lake, user, "select * from lake.vault.pseudonym_key")
        try:
            listed = run_as(secured_lake, user, "show tables from lake.vault")
        except trino.exceptions.TrinoUserError as exc:
            assert "Access Denied" in exc.message
            listed = []
        assert "pseudonym_key" not in _text(listed)


def test_time_travel_keeps_the_masks(secured_lake):
    rows = run_as(secured_lake, "hrss_officer",
                  "select id_number from lake.silver.psb_residence_permit for version as of 0")
    assert rows and not REAL_IDS & {r[0] for r in rows}
    with DENIED:
        run_as(secured_lake, "hrss_officer", 'select * from lake.silver."psb_residence_permit$history"')


def test_provenance_does_not_give_away_death_or_marriage(secured_lake):
    """市场监管局 is granted person_id and full_name, nothing about death or
    marriage: the provenance, known_to, hash and version columns that would
    say who died or married are hidden, and only current versions show."""
    for column in ("death_date_source", "death_date_load_id", "marital_status_source", "known_to",
                   "record_hash", "valid_from", "full_name_source", "is_deceased", "population_status_source"):
        with DENIED:
            run_as(secured_lake, "amr_inspector", f"select count(*) from lake.base.population where {column} is not null")
    counts = run_as(secured_lake, "amr_inspector", "select count(*), count(distinct person_id) from lake.base.population")
    assert counts == [[4, 4]]          # the deceased person's past version is not there to compare with
    columns = {r[0] for r in run_as(secured_lake, "amr_inspector", "show columns from lake.base.population")}
    assert "full_name" in columns and not columns & {"death_date", "death_date_source", "known_to", "ethnicity"}


def test_the_police_see_death_date_and_is_deceased_alike(secured_lake):
    rows = run_as(secured_lake, "psb_analyst",
                  f"select death_date, is_deceased, death_date_source from lake.base.population "
                  f"where person_id = '{DECEASED_ID}' and is_current")
    assert rows == [[rows[0][0], True, "mca.death"]] and rows[0][0] is not None


def test_a_row_a_deletion_vector_removed_stays_removed(secured_lake):
    """base.population's file still holds a row its deletion vector removed
    (the daily MERGE closes versions so): Trino reads the vector."""
    assert list(Path(secured_lake.lake_path("base", "population")).glob("deletion_vector_*.bin"))
    assert run_as(secured_lake, "psb_analyst", f"select count(*) from lake.base.population "
                                               f"where person_id = '{REMOVED_ID}'") == [[0]]
    assert run_as(secured_lake, "psb_analyst", f"select count(*) from lake.base.population "
                                               f"where person_id = '{DECEASED_ID}' and is_current") == [[1]]


def test_not_shared_columns_stay_hidden_everywhere(secured_lake):
    for user in ("hrss_officer", "amr_inspector", "governor_li", "nancheng_officer", "edu_officer"):
        for table in ("base.population", "silver.psb_hukou"):
            with DENIED:
                run_as(secured_lake, user, f"select ethnicity from lake.{table}")
    assert {r[0] for r in run_as(secured_lake, "psb_analyst", "select ethnicity from lake.silver.psb_hukou")} == {ETHNICITY}
