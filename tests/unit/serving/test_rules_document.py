"""``serving.rules.build_rules``: the Trino file-based access-control document
compiled from an inline catalog."""

from __future__ import annotations

from datetime import date

from pipelines.serving.access import pseudonym_expression
from pipelines.serving.catalog import Catalog, Department, Grant, Resource, ResourceColumn
from pipelines.serving.rules import DELTA_HIDDEN_COLUMNS, build_rules
from pipelines.serving.trino import ADMIN_USER, CATALOG

ON = date(2026, 11, 28)


def column(name: str, share_type: str, sensitivity: str = "personal", kind: str = "string",
           town: bool = False) -> ResourceColumn:
    return ResourceColumn(name=name, header=name, type=kind, classification=sensitivity, sensitivity=sensitivity,
                          security_grade="general", share_type=share_type, town_column=town)


REGISTER = Resource(
    resource_id="silver.psb_register", code="DG-PSB-0001", name="登记", provider="市公安局", owner_bureau="psb",
    description="test", update_cadence="每日", format="delta", columns=[
        column("id_number", "conditional", "sensitive_personal", "id_number"),
        column("full_name", "conditional"),
        column("phone", "conditional", "sensitive_personal", "phone"),
        column("town_code", "unconditional", "general", "town_code", town=True),
        column("case_note", "not_shared", "general"),
    ])
SECRET = Resource(
    resource_id="silver.psb_secret", code="DG-PSB-0002", name="秘", provider="市公安局", owner_bureau="psb",
    description="test", update_cadence="每日", format="delta",
    columns=[column("full_name", "conditional")])

DEPARTMENTS = {
    "psb": Department("psb", "市公安局", "psb", None, ["psb_analyst"]),
    "hrss": Department("hrss", "市人社局", "hrss", None, ["hrss_officer"]),
    "edu": Department("edu", "市教育局", "edu", None, ["edu_officer"]),
    "nancheng": Department("nancheng", "南城街道办事处", None, "441900004", ["nancheng_officer"]),
    "dsj": Department("dsj", "市政务服务数据管理局", "dsj", None, ["governor_li"], role="governor"),
}
GRANTS = [
    Grant("hrss", "silver.psb_register", ["id_number", "full_name"], "test", "test", date(2027, 6, 30), "test",
          source="hrss.yaml:2"),
    Grant("nancheng", "silver.psb_register", ["full_name", "phone"], "test", "test", date(2027, 6, 30), "test",
          row_scope="own_town", source="towns.yaml:2"),
    Grant("edu", "silver.psb_secret", ["full_name"], "test", "test", date(2026, 1, 1), "test",
          source="expired.yaml:2"),
]
CATALOG_UNDER_TEST = Catalog({r.resource_id: r for r in (REGISTER, SECRET)}, DEPARTMENTS, GRANTS)


def rules_for(user: str, rules: dict) -> list[dict]:
    """``user``'s rules on published resources (governance tables: test_governance_access.py)."""
    return [rule for rule in rules["tables"] if rule.get("user") == f"^{user}$" and rule.get("schema") != "^governance$"]


def test_the_catch_all_deny_comes_last_and_only_once():
    tables = build_rules(CATALOG_UNDER_TEST, ON)["tables"]
    assert tables[-1] == {"privileges": []}
    assert [rule for rule in tables if "user" not in rule] == [{"privileges": []}]


def test_nobody_but_the_administrator_writes_or_owns():
    rules = build_rules(CATALOG_UNDER_TEST, ON, owned=[("base", "population")])
    assert rules["catalogs"][-3:] == [{"catalog": CATALOG, "allow": "read-only"},
                                      {"catalog": "system", "allow": "read-only"},
                                      {"catalog": "verify", "allow": "read-only"}]
    # functions: the built-in ones and verification's table functions; no catalog's system.table_changes
    assert rules["functions"] == [{"catalog": "system", "schema": "builtin", "privileges": ["EXECUTE"]},
                                  {"catalog": "verify", "schema": "system", "privileges": ["EXECUTE"]}]
    owning = [rule for rule in rules["tables"] if "OWNERSHIP" in rule.get("privileges", [])]
    assert owning == [{"user": f"^{ADMIN_USER}$", "catalog": CATALOG, "schema": "^base$", "table": "^population$",
                       "privileges": ["SELECT", "OWNERSHIP", "GRANT_SELECT"]}]
    for rule in rules["tables"]:
        if rule.get("user") != f"^{ADMIN_USER}$":
            assert set(rule["privileges"]) <= {"SELECT"}, rule


def test_the_owner_reads_everything_unmasked_and_unfiltered():
    owner = rules_for("psb_analyst", build_rules(CATALOG_UNDER_TEST, ON))
    assert [(r["schema"], r["table"]) for r in owner] == [("^silver$", "^psb_register$"), ("^silver$", "^psb_secret$")]
    # "true": Trino refuses table procedures (ALTER TABLE ... EXECUTE) on a table read through a row filter
    assert all(r["columns"] == [] and r["filter"] == "true" for r in owner)


def test_a_grantee_gets_masks_and_column_denials():
    (rule,) = rules_for("hrss_officer", build_rules(CATALOG_UNDER_TEST, ON))
    assert (rule["catalog"], rule["schema"], rule["table"], rule["privileges"]) == (
        CATALOG, "^silver$", "^psb_register$", ["SELECT"])
    assert rule["columns"] == [
        {"name": "id_number", "mask": pseudonym_expression('"id_number"', "hrss"),
         "mask_environment": {"user": ADMIN_USER}},
        {"name": "phone", "allow": False},
        {"name": "case_note", "allow": False},
    ] + [{"name": name, "allow": False} for name in DELTA_HIDDEN_COLUMNS]   # which file, written when
    assert rule["filter"] == "true"


def test_a_town_department_gets_a_row_filter_and_a_phone_mask():
    (rule,) = rules_for("nancheng_officer", build_rules(CATALOG_UNDER_TEST, ON))
    assert rule["table"] == "^psb_register$"
    assert rule["filter"] == "\"town_code\" = '441900004'"
    assert {"name": "phone", "mask": "concat(substr(\"phone\", 1, 3), '****', substr(\"phone\", 8, 4))"} \
        in rule["columns"]
    assert {"name": "id_number", "allow": False} in rule["columns"]


def test_an_unreadable_table_gets_no_rule():
    rules = build_rules(CATALOG_UNDER_TEST, ON)
    # edu's only grant has expired and psb_register's one unconditional column is all it may read
    edu = rules_for("edu_officer", rules)
    assert [r["table"] for r in edu] == ["^psb_register$"]
    assert [c["name"] for c in edu[0]["columns"]] == ["id_number", "full_name", "phone", "case_note",
                                                      *DELTA_HIDDEN_COLUMNS]
    assert all(c == {"name": c["name"], "allow": False} for c in edu[0]["columns"])
    assert not any(r.get("table") == "^psb_secret$" for r in rules["tables"] if r.get("user") not in
                   ("^psb_analyst$", f"^{ADMIN_USER}$"))
