"""Governance tables under the sharing list: the rules document's shape
(``pipelines.serving.governance_access``), on the project's catalog and on a
variant of it. What Trino makes of the rules: tests/security/test_governance_access.py."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pipelines.serving.catalog import Catalog, load_catalog
from pipelines.serving.governance_access import (
    DEPARTMENT_TABLES,
    FEED_OWNED_TABLES,
    PUBLIC_TABLES,
    _Reader,
    governance_rules,
    governance_views,
    id_mask,
    scrub,
)
from pipelines.serving.trino import ADMIN_USER

GOVERNANCE = set(FEED_OWNED_TABLES) | set(DEPARTMENT_TABLES) | set(PUBLIC_TABLES) | {"conflicts"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def rules_of(catalog: Catalog, user: str) -> dict[str, dict]:
    department = next(d for d in catalog.departments.values() if user in d.users)
    rules = governance_rules(catalog, department, user)
    tables = [r["table"].strip("^$") for r in rules]
    assert len(tables) == len(set(tables)), "one rule per table: the first would win"
    return {r["table"].strip("^$"): r for r in rules}


def masks(rule: dict) -> dict[str, dict]:
    return {c["name"]: c for c in rule["columns"]}


def branch(sql: str, value: str) -> str:
    """The THEN part of ``WHEN '<value>' THEN ...`` up to the next top-level WHEN of the same CASE."""
    start = sql.index(f"WHEN '{value}' THEN ") + len(f"WHEN '{value}' THEN ")
    depth, i = 0, start
    while i < len(sql):
        if sql[i] == "(":
            depth += 1
        elif sql[i] == ")":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and sql.startswith(" WHEN '", i):
            break
        i += 1
    return sql[start:i]


def listed_as_full(sql: str, key: str) -> bool:
    """Is ``key`` in an IN list whose values are shown (scrubbed) rather than masked?"""
    for found in re.finditer(r"IN \(([^)]*)\) THEN (regexp_replace|concat|'\*)", sql):
        if f"'{key}'" in found.group(1):
            return found.group(2) == "regexp_replace"
    return False


def balanced(sql: str) -> bool:
    depth, quoted = 0, False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not quoted


def every_rule(catalog: Catalog):
    for department in catalog.departments.values():
        for user in department.users:
            yield from governance_rules(catalog, department, user)


# ---------------------------------------------------------------- owners


def test_owner_bureau_reads_its_own_rows_in_full(catalog):
    rules = rules_of(catalog, "psb_analyst")
    for table in FEED_OWNED_TABLES:
        rule = rules[table]
        assert rule["filter"] == "coalesce(split_part(\"feed\", '.', 1) = 'psb', false)", table
        if table not in ("entity_links", "match_review"):
            assert rule["columns"] == [], f"{table}: psb's own rows are not masked"
        assert rule["privileges"] == ["SELECT"] and rule["schema"] == "^governance$"
    for table in DEPARTMENT_TABLES:
        assert rules[table]["filter"] == "\"department\" = 'psb'"
        assert rules[table]["columns"] == []


def test_owner_rows_do_not_hand_over_other_peoples_library_keys(catalog):
    """民政局 owns its death records' links and reviews, but a key found by
    matching and the candidate keys of a review are IDs from the population
    library, which it is not granted: pseudonyms and masks, not IDs."""
    mca = rules_of(catalog, "mca_officer")
    key = masks(mca["entity_links"])["key"]
    assert key["mask"].startswith("CASE WHEN \"method\" = 'key' THEN \"key\" ELSE ")
    assert "pseudonym_key" in key["mask"] and key["mask_environment"] == {"user": "govlake"}
    candidates = masks(mca["match_review"])["candidate_keys"]["mask"]
    assert "'population'" in candidates and "'************'" in candidates
    psb = masks(rules_of(catalog, "psb_analyst")["entity_links"])["key"]["mask"]
    assert re.search(r"WHEN \"library\" IN \([^)]*'population'", psb)        # psb sees the population key in full


def test_owner_reads_conflicts_of_its_feeds_with_the_other_side_masked(catalog):
    rule = rules_of(catalog, "mca_officer")["conflicts"]
    assert "'mca'" in rule["filter"] and '"other_feed"' in rule["filter"] and '"authoritative_feed"' in rule["filter"]
    columns = masks(rule)
    assert "subject" not in columns               # the subject is in mca's own delivery
    authority = columns["authoritative_value"]["mask"]
    assert authority.startswith("CASE WHEN (coalesce(split_part(\"authoritative_feed\"")
    # psb's full_name, as the sharing list gives it to mca without a grant: withheld
    population = branch(authority, "population")
    assert not listed_as_full(population, "full_name")
    assert "mask_environment" not in columns["authoritative_value"]


# ---------------------------------------------------------------- governors


def test_governor_reads_every_table_with_masks(catalog):
    rules = rules_of(catalog, "governor_li")
    assert GOVERNANCE <= set(rules)
    assert all("filter" not in rules[t] for t in GOVERNANCE), "a governor reads every row"
    assert set(masks(rules["quarantine"])) == {"original_values", "failures"}
    assert set(masks(rules["match_review"])) == {"record", "candidate_keys"}
    assert {"subject", "authoritative_value", "other_value"} <= set(masks(rules["conflicts"]))
    assert "key" in masks(rules["entity_links"])
    assert "address_text" in masks(rules["unmatched_addresses"])
    assert {"sample_rows", "detail"} <= set(masks(rules["issues"]))
    assert "sample_rows" in masks(rules["quality_results"])
    assert "query" in masks(rules["query_audit"])
    assert masks(rules["demand_list"]) == {} and masks(rules["sharing_list"]) == {}


def test_governor_quarantine_values_follow_the_feeds_classification(catalog):
    rule = rules_of(catalog, "governor_li")["quarantine"]
    original = masks(rule)["original_values"]["mask"]
    hukou = branch(original, "psb.hukou")
    assert hukou.startswith('transform_values("original_values", (gk, gv) ->')
    for header in ("身份证号", "公民身份号码", "姓名", "民族", "出生日期", "户籍地址"):     # conditional, not shared
        assert not listed_as_full(hukou, header), header
    assert listed_as_full(hukou, "登记日期")                    # unconditional, general: shown (scrubbed)
    assert hukou.endswith("ELSE '******' END)")                 # extra headers and _row: withheld
    assert original.endswith("ELSE transform_values(\"original_values\", (gk, gv) -> '******') END")
    failures = masks(rule)["failures"]["mask"]
    social = branch(failures, "hrss.social_insurance")
    assert not listed_as_full(social, "contribution_base_cny") and not listed_as_full(social, "id_number")
    assert listed_as_full(social, "insurance_type")
    assert "AS ROW(column_name varchar, header varchar, rule varchar, value varchar)" in social
    marriage = branch(original, "mca.marriage")
    for header in ("男方身份证号", "女方姓名", "登记类型"):
        assert not listed_as_full(marriage, header), header


def test_governor_keys_become_its_pseudonym(catalog):
    rules = rules_of(catalog, "governor_li")
    for table, column in (("entity_links", "key"), ("conflicts", "subject")):
        mask = masks(rules[table])[column]
        assert mask["mask_environment"] == {"user": ADMIN_USER}, table
        assert "hmac_sha256(to_utf8('dsj')" in mask["mask"] and "lake.vault.pseudonym_key" in mask["mask"]
    # a USCC (法人库, unconditional) stays as it is; the population key does not
    assert "'legal_person'" in masks(rules["entity_links"])["key"]["mask"]
    assert "'population'" not in masks(rules["entity_links"])["key"]["mask"]
    candidates = masks(rules["match_review"])["candidate_keys"]["mask"]
    assert id_mask("gs") in branch(candidates, "population")
    assert "hmac" not in candidates, "no subquery inside a lambda"


def test_governor_review_records_withhold_personal_fields(catalog):
    record = masks(rules_of(catalog, "governor_li")["match_review"])["record"]["mask"]
    death = branch(record, "population|mca.death")
    assert death == "transform_values(\"record\", (gk, gv) -> '******')"
    company = branch(record, "legal_person|amr.business_registration")
    assert listed_as_full(company, "name_key") and not listed_as_full(company, "rep_key")


def test_governor_free_text_is_scrubbed_of_ids_and_phones(catalog):
    rules = rules_of(catalog, "governor_li")
    audit = masks(rules["query_audit"])
    # another department's SQL text and errors can quote any value: withheld, not scrubbed
    for name in ("query", "error_message"):
        assert audit[name]["mask"] == f"CASE WHEN coalesce(\"department\" = 'dsj', false) THEN \"{name}\" ELSE '******' END"
    query = scrub('"query"')
    pattern = re.search(r"regexp_replace\(\"query\", '([^']+)', '\$1\*{12}'\), '([^']+)'", query)
    ids, phones = re.compile(pattern.group(1)), re.compile(pattern.group(2))
    text = "select * from t where id_number = '441900199001011234' or phone = '13800001111' or x = '44190019900101123X'"
    masked = phones.sub(r"\1****\2", ids.sub(r"\1************", text))
    assert "441900199001011234" not in masked and "13800001111" not in masked and "4419001990010112" not in masked
    assert "441900************" in masked and "138****1111" in masked
    assert ids.sub("", "file_20261101120000.csv") == "file_20261101120000.csv"     # a 14-digit time is no ID
    sample = masks(rules["issues"])["sample_rows"]["mask"]
    assert "ELSE '******' END" in sample and "regexp_like(gs, '^[^:]+:[0-9]+$')" in sample
    assert "message" in masks(rules["load_manifest"])


def test_governor_owning_the_libraries_does_not_own_their_source_values(catalog):
    reader = _Reader(catalog, catalog.departments["dsj"], "governor_li")
    assert reader.bureau == "dsj" and not reader.owns_feeds
    assert reader.library_column("population", "full_name")[0] == "denied"       # psb's value, no grant
    assert reader.library_column("population", "person_id")[0] == "denied"
    assert reader.feed_kind("psb.hukou", "ethnicity") == "withheld"
    assert reader.feed_kind("psb.hukou", "registered_date") == "full"


def test_unconditional_sensitive_values_are_masked_not_withheld(catalog):
    # a variant of the catalog where the permit's ID number and phone are 无条件 (unconditional)
    resources = dict(catalog.resources)
    permit = resources["silver.psb_residence_permit"]
    resources[permit.resource_id] = dataclasses.replace(permit, columns=[
        dataclasses.replace(c, share_type="unconditional") if c.name in ("id_number", "phone") else c
        for c in permit.columns])
    variant = Catalog(resources, catalog.departments, [])
    reader = _Reader(variant, variant.departments["dsj"], "governor_li")
    assert reader.feed_kind("psb.residence_permit", "id_number") == "id"
    assert reader.feed_kind("psb.residence_permit", "phone") == "phone"
    original = masks(rules_of(variant, "governor_li")["quarantine"])["original_values"]["mask"]
    permits = branch(original, "psb.residence_permit")
    assert re.search(r"IN \('证件号码', '身份证号'\) THEN concat\(substr\(gv, 1, 6\), '\*{12}'\)", permits)
    assert re.search(r"IN \('联系电话'\) THEN concat\(substr\(gv, 1, 3\), '\*\*\*\*', substr\(gv, 8, 4\)\)", permits)


# ---------------------------------------------------------------- everyone else


@pytest.mark.parametrize("user", ["nancheng_officer", "humen_officer", "edu_officer"])
def test_departments_owning_no_feed_read_only_their_own_list_rows(catalog, user):
    rules = rules_of(catalog, user)
    assert set(rules) == set(DEPARTMENT_TABLES) | set(PUBLIC_TABLES)
    for table in PUBLIC_TABLES:       # counts and times of every resource: every row, unmasked
        assert "filter" not in rules[table] and rules[table]["columns"] == []
    code = next(d.code for d in catalog.departments.values() if user in d.users)
    assert all(rules[t]["filter"] == f"\"department\" = '{code}'" for t in DEPARTMENT_TABLES)


def test_bureaus_read_no_other_bureaus_rows(catalog):
    rules = rules_of(catalog, "hrss_officer")
    assert all("'hrss'" in rules[t]["filter"] and "'psb'" not in rules[t]["filter"] for t in FEED_OWNED_TABLES)


def test_views_are_granted_with_the_tables_they_read(catalog):
    views = governance_views()
    assert views["load_status"] == {"load_manifest"} and views["open_issues_by_bureau"] == {"issues"}
    assert {"load_status", "open_issues_by_bureau"} <= set(rules_of(catalog, "governor_li"))
    assert {"load_status", "open_issues_by_bureau"} <= set(rules_of(catalog, "psb_analyst"))
    assert "load_status" not in rules_of(catalog, "nancheng_officer")


# ---------------------------------------------------------------- every mask


def test_every_mask_is_well_formed(catalog):
    for rule in every_rule(catalog):
        assert set(rule) <= {"user", "catalog", "schema", "table", "privileges", "columns", "filter"}
        for column in rule["columns"]:
            assert set(column) <= {"name", "mask", "mask_environment"}
            assert balanced(column["mask"]), (rule["user"], rule["table"], column["name"])
            assert ("pseudonym_key" in column["mask"]) == ("mask_environment" in column), column["name"]
        if "filter" in rule:
            assert balanced(rule["filter"])

