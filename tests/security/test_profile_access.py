"""The enterprise profile (base.enterprise_profile) and its view
(base.enterprise_profile_today) are shared as their sources are: the legal
representative's name and ID only for the owner bureau (市场监管局) and those
granted, the record hash and version times no wider than the strictest
column, town governments only their own town's firms, and the view
(security invoker, unconditional columns only) widens nothing. Each bypass
a department might try is kept here."""

from __future__ import annotations

import pytest
import trino

from pipelines.serving.access import STATE_ORDER, decide
from pipelines.serving.catalog import load_catalog
from tests.security.conftest import PROFILE_REPRESENTATIVES, run_as

NAMES = {name for _, name, _ in PROFILE_REPRESENTATIVES.values()}
PROFILE = "lake.base.enterprise_profile"
VIEW = "lake.base.enterprise_profile_today"


def test_no_department_reads_a_carried_column_more_openly_than_in_its_source_library(secured_lake):
    """Without a grant of its own on the profile, every user reads each column
    carried from base.legal_person (and the credit grade from credit_rating)
    at most as openly as there; the history columns are as strict as the
    strictest column. (A town government reads its own town's rows of the
    profile, credit grades included, where base.credit_rating, which has no
    town column, is closed to it as a whole.)"""
    from datetime import date

    catalog = load_catalog(secured_lake)
    profile = catalog.resources["base.enterprise_profile"]
    on = date(2026, 12, 7)
    checked = 0
    for department in catalog.departments.values():
        for user in department.users:
            mine = decide(user, profile, catalog.departments, catalog.grants, on)
            for source in ("base.legal_person", "base.credit_rating"):
                theirs = decide(user, catalog.resources[source], catalog.departments, catalog.grants, on)
                for name, column in theirs.columns.items():
                    if column.reason == "town-scoped user; table has no town column":
                        continue    # a row scope, not the column's sharing: the profile has a town column
                    carried = {"risk_grade": "credit_grade", "risk_score": "credit_score",
                               "reasons": "credit_reasons"}.get(name, name)
                    if carried in mine.columns and carried not in ("record_hash", "valid_from", "valid_to",
                                                                   "is_current"):
                        assert STATE_ORDER.index(mine.columns[carried].state) >= STATE_ORDER.index(column.state), (
                            user, name, mine.columns[carried], column)
                        checked += 1
            strictest = max((c.state for n, c in mine.columns.items()
                             if n not in ("record_hash", "valid_from", "valid_to", "is_current")),
                            key=STATE_ORDER.index)
            assert STATE_ORDER.index(mine.columns["record_hash"].state) >= STATE_ORDER.index(strictest), user
    assert checked > 100


def test_a_department_without_a_grant_reads_the_figures_but_not_the_representatives(secured_lake):
    rows = run_as(secured_lake, "edu_officer", f"select uscc, penalty_count, credit_grade, licences_valid "
                                               f"from {PROFILE} order by uscc")
    assert rows == [[u, 1, "B", 2] for u in sorted(PROFILE_REPRESENTATIVES)]
    for column in ("legal_representative", "legal_representative_person_id", "record_hash", "*"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            run_as(secured_lake, "edu_officer", f"select {column} from {PROFILE}")


@pytest.mark.parametrize("attempt", [
    # a predicate, a grouping, a join or a function on the hidden column is a read of it
    f"select count(*) from {PROFILE} where legal_representative = '甲一'",
    f"select count(*) from {PROFILE} where legal_representative_person_id like '4419001980%'",
    f"select count(*) from {PROFILE} group by legal_representative",
    f"select count(*) from {PROFILE} p join lake.base.population q on q.person_id = p.legal_representative_person_id",
    f"select max(length(legal_representative)) from {PROFILE}",
    f"select count(*) from {PROFILE} where record_hash = 7",
    f"select count(*) from {PROFILE} for version as of 0 where legal_representative = '甲一'",
])
def test_filters_on_a_hidden_representative_are_refused(secured_lake, attempt):
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        run_as(secured_lake, "edu_officer", attempt)


def test_the_governor_does_not_read_the_representatives_id(secured_lake):
    """The ID is 市场监管局's (base.legal_person derives it from its registration),
    not the data bureau's: the platform's governor has no grant for it."""
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        run_as(secured_lake, "governor_li", f"select legal_representative_person_id from {PROFILE}")


def test_the_owner_bureau_reads_the_representatives_name(secured_lake):
    rows = run_as(secured_lake, "amr_inspector", f"select legal_representative from {PROFILE} order by uscc")
    assert {r[0] for r in rows} == NAMES


@pytest.mark.parametrize("source", [f"{PROFILE} where is_current", VIEW])
def test_a_town_government_reads_only_its_own_towns_firms(secured_lake, source):
    rows = run_as(secured_lake, "nancheng_officer", f"select uscc, town_code from {source}")
    assert rows == [["91441900MA4NC0001X", "441900004"]]


def test_the_view_has_no_personal_column_and_counts_the_readers_90_days(secured_lake):
    rows = run_as(secured_lake, "edu_officer", f"select uscc, licences_expiring_90_days from {VIEW} order by uscc")
    assert rows == [[u, 1] for u in sorted(PROFILE_REPRESENTATIVES)]   # today's expiry counts, 2099's does not
    columns = {r[0] for r in run_as(secured_lake, "amr_inspector", f"describe {VIEW}")}
    assert not columns & {"legal_representative", "legal_representative_person_id", "record_hash", "valid_from"}


def test_the_view_cannot_be_redefined_and_past_versions_keep_the_town_filter(secured_lake):
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        run_as(secured_lake, "nancheng_officer", f"create or replace view {VIEW} security definer as "
                                                 f"select * from {PROFILE}")
    assert run_as(secured_lake, "nancheng_officer", f"select count(*) from {PROFILE} for version as of 0") == [[1]]


@pytest.mark.parametrize("hidden", ['"$path"', '"$file_modified_time"', '"$file_size"'])
@pytest.mark.parametrize("table", ["base.enterprise_profile", "base.population", "silver.psb_residence_permit"])
def test_the_files_behind_the_rows_are_not_shown(secured_lake, hidden, table):
    """Delta's hidden columns name the file a row is in and when it was written: an incremental build
    writes a changed key's row into a new file, so a file's time is when a column the user may not
    read changed (the version times are closed to them for that reason)."""
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        run_as(secured_lake, "nancheng_officer" if table.startswith("silver") else "edu_officer",
               f"select {hidden} from lake.{table}")
