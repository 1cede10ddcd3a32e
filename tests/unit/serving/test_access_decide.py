"""``serving.access.decide`` on a catalog built inline: who sees which column,
masked or not, and which rows."""

from __future__ import annotations

import dataclasses
from datetime import date

from pipelines.serving.access import decide, mask_expression, pseudonym_expression, reversible_masks
from pipelines.serving.catalog import Department, Grant, Resource, ResourceColumn
from pipelines.serving.trino import ADMIN_USER

ON = date(2026, 11, 28)
NANCHENG = "441900004"


def column(name: str, share_type: str, sensitivity: str = "personal", kind: str = "string",
           town: bool = False) -> ResourceColumn:
    return ResourceColumn(name=name, header=name, type=kind, classification=sensitivity, sensitivity=sensitivity,
                          security_grade="general", share_type=share_type, town_column=town)


def resource(resource_id: str, columns: list[ResourceColumn], owner: str = "psb") -> Resource:
    return Resource(resource_id=resource_id, code="DG-TEST-0001", name=resource_id, provider="市公安局",
                    owner_bureau=owner, description="test", update_cadence="每日", format="delta",
                    columns=columns)


REGISTER = resource("silver.psb_register", [
    column("id_number", "conditional", "sensitive_personal", "id_number"),
    column("full_name", "conditional"),
    column("phone", "conditional", "sensitive_personal", "phone"),
    column("town_code", "unconditional", "general", "town_code", town=True),
    column("case_note", "not_shared", "general"),
])
# every column conditional: nothing to read without a grant
CONDITIONAL_ONLY = resource("silver.psb_conditional", [
    column("id_number", "conditional", "sensitive_personal", "id_number"),
    column("full_name", "conditional"),
])
# a town government can only read a table it can filter by town
NO_TOWN = resource("silver.psb_no_town", [
    column("id_number", "conditional", "sensitive_personal", "id_number"),
    column("remark", "unconditional", "general"),
])
BY_TOWN_NAME = resource("silver.psb_by_town_name", [
    column("full_name", "conditional"),
    column("town_name", "unconditional", "general", "town_name", town=True),
])

DEPARTMENTS = {
    "psb": Department("psb", "市公安局", "psb", None, ["psb_analyst"]),
    "hrss": Department("hrss", "市人社局", "hrss", None, ["hrss_officer"]),
    "edu": Department("edu", "市教育局", "edu", None, ["edu_officer"]),
    "nancheng": Department("nancheng", "南城街道办事处", None, NANCHENG, ["nancheng_officer"]),
}


def grant(department: str, resource_id: str, columns: list[str], expires: date = date(2027, 6, 30),
          unmasked: list[str] = (), source: str = "grants.yaml:1") -> Grant:
    return Grant(department=department, resource=resource_id, columns=list(columns), purpose="test",
                 legal_basis="test", expires=expires, approver="test", unmasked=list(unmasked), source=source)


def states(decision) -> dict[str, str]:
    return {name: c.state for name, c in decision.columns.items()}


def test_the_owner_bureau_sees_every_column_in_full_without_a_grant():
    decision = decide("psb_analyst", REGISTER, DEPARTMENTS, [], ON)
    assert states(decision) == {name: "full" for name in
                                ("id_number", "full_name", "phone", "town_code", "case_note")}
    assert decision.row_filter is None
    assert decision.department == "psb" and decision.readable


def test_the_platform_administrator_sees_every_column_in_full():
    decision = decide(ADMIN_USER, REGISTER, DEPARTMENTS, [], ON)
    assert set(states(decision).values()) == {"full"} and len(decision.columns) == 5
    assert decision.row_filter is None


def test_a_grant_gives_exactly_its_columns_sensitive_ones_masked():
    grants = [grant("hrss", REGISTER.resource_id, ["id_number", "full_name"])]
    decision = decide("hrss_officer", REGISTER, DEPARTMENTS, grants, ON)
    assert states(decision) == {
        "id_number": "masked",      # granted, sensitive personal, not under unmasked
        "full_name": "full",        # granted
        "phone": "denied",          # conditional, not in the grant
        "town_code": "full",        # unconditional
        "case_note": "denied",      # 不予共享
    }
    assert "grants.yaml:1" in decision.columns["full_name"].reason
    assert decision.row_filter is None


def test_unmasked_lifts_the_mask_for_the_listed_column_only():
    grants = [grant("hrss", REGISTER.resource_id, ["id_number", "phone"], unmasked=["id_number"])]
    decision = decide("hrss_officer", REGISTER, DEPARTMENTS, grants, ON)
    assert (decision.columns["id_number"].state, decision.columns["phone"].state) == ("full", "masked")


def test_a_grant_for_another_department_or_resource_gives_nothing():
    grants = [grant("edu", REGISTER.resource_id, ["id_number", "full_name", "phone"]),
              grant("hrss", CONDITIONAL_ONLY.resource_id, ["id_number", "full_name"])]
    decision = decide("hrss_officer", REGISTER, DEPARTMENTS, grants, ON)
    assert states(decision) == {"id_number": "denied", "full_name": "denied", "phone": "denied",
                                "town_code": "full", "case_note": "denied"}


def test_not_shared_columns_stay_hidden_even_when_a_grant_lists_them():
    grants = [grant("hrss", REGISTER.resource_id, ["full_name", "case_note"], unmasked=["case_note"])]
    decision = decide("hrss_officer", REGISTER, DEPARTMENTS, grants, ON)
    assert decision.columns["case_note"].state == "denied"
    assert "不予共享" in decision.columns["case_note"].reason
    assert decision.columns["full_name"].state == "full"


def test_an_unconditional_sensitive_column_is_masked_for_everyone_but_the_owner():
    open_register = resource("silver.psb_open", [column("phone", "unconditional", "sensitive_personal", "phone")])
    assert decide("edu_officer", open_register, DEPARTMENTS, [], ON).columns["phone"].state == "masked"
    assert decide("psb_analyst", open_register, DEPARTMENTS, [], ON).columns["phone"].state == "full"


def test_an_expired_grant_counts_as_none():
    grants = [grant("hrss", CONDITIONAL_ONLY.resource_id, ["id_number", "full_name"], expires=date(2026, 11, 27),
                    source="old.yaml:3")]
    decision = decide("hrss_officer", CONDITIONAL_ONLY, DEPARTMENTS, grants, ON)
    assert states(decision) == {"id_number": "denied", "full_name": "denied"}
    assert not decision.readable
    assert "expired on 2026-11-27" in decision.columns["full_name"].reason
    # the expiry date itself is still a live day
    assert decide("hrss_officer", CONDITIONAL_ONLY, DEPARTMENTS, grants, date(2026, 11, 27)).readable


def test_without_a_grant_a_conditional_table_is_not_readable():
    decision = decide("edu_officer", CONDITIONAL_ONLY, DEPARTMENTS, [], ON)
    assert states(decision) == {"id_number": "denied", "full_name": "denied"}
    assert not decision.readable
    assert decision.columns["full_name"].reason == "有条件共享: no live grant lists this column"


def test_a_user_of_no_department_reads_nothing():
    decision = decide("stranger", REGISTER, DEPARTMENTS, [], ON)
    assert set(states(decision).values()) == {"denied"} and len(decision.columns) == 5
    assert decision.department is None and not decision.readable


def test_a_town_department_gets_its_towns_rows_only():
    grants = [grant("nancheng", REGISTER.resource_id, ["full_name", "phone"])]
    decision = decide("nancheng_officer", REGISTER, DEPARTMENTS, grants, ON)
    assert decision.row_filter == f"\"town_code\" = '{NANCHENG}'"
    assert states(decision) == {"id_number": "denied", "full_name": "full", "phone": "masked",
                                "town_code": "full", "case_note": "denied"}


def test_a_town_name_column_is_filtered_by_the_towns_name():
    grants = [grant("nancheng", BY_TOWN_NAME.resource_id, ["full_name"])]
    decision = decide("nancheng_officer", BY_TOWN_NAME, DEPARTMENTS, grants, ON)
    assert decision.row_filter == "\"town_name\" = '南城街道'"
    assert states(decision) == {"full_name": "full", "town_name": "full"}


def test_a_town_department_sees_nothing_of_a_table_without_a_town_column():
    grants = [grant("nancheng", NO_TOWN.resource_id, ["id_number"])]
    decision = decide("nancheng_officer", NO_TOWN, DEPARTMENTS, grants, ON)
    assert states(decision) == {"id_number": "denied", "remark": "denied"}
    assert decision.row_filter is None and not decision.readable


# ------------------------------------------------------------------ masks that cannot be undone (issue 13)

LIBRARY = Resource(resource_id="base.people", code="DG-BASE-PEOPLE", name="people", provider="市政务服务数据管理局",
                   owner_bureau="dsj", description="test", update_cadence="每日", format="delta", columns=[
    dataclasses.replace(column("person_id", "conditional", "sensitive_personal", "id_number"), owner_bureau="psb"),
    dataclasses.replace(column("full_name", "conditional"), owner_bureau="psb"),
    dataclasses.replace(column("full_name_source", "conditional", kind="code"), owner_bureau="psb",
                        follows=["full_name", "death_date"]),
    dataclasses.replace(column("birth_date", "conditional", kind="date"), owner_bureau="psb"),
    dataclasses.replace(column("ethnicity", "not_shared", "sensitive_personal"), owner_bureau="psb"),
    dataclasses.replace(column("death_date", "conditional", kind="date"), owner_bureau="mca"),
    dataclasses.replace(column("death_date_source", "conditional", kind="code"), owner_bureau="mca",
                        follows=["death_date"]),
    dataclasses.replace(column("is_deceased", "conditional", "sensitive_personal", "boolean"),
                        derived_from=["death_date"]),
    column("town_code", "unconditional", "general", "town_code", town=True),
    column("valid_from", "conditional", "sensitive_personal", "timestamp"),
    column("is_current", "unconditional", "general", "boolean"),
])
LIBRARY.columns[9].follows = ["full_name", "birth_date", "ethnicity", "death_date"]
DEPARTMENTS_WITH_CURATOR = DEPARTMENTS | {"dsj": Department("dsj", "数据局", "dsj", None, ["governor_li"], "governor"),
                                          "mca": Department("mca", "民政局", "mca", None, ["mca_officer"])}


def test_provenance_is_shown_no_more_than_what_it_gives_away():
    grants = [grant("hrss", "base.people", ["person_id", "full_name", "full_name_source", "death_date_source"])]
    shown = states(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, grants, ON))
    assert shown["full_name"] == "full" and shown["death_date"] == "denied"
    # granted by name, but full_name_source would say "mca.death" for the dead, and death_date_source who died
    assert shown["full_name_source"] == "denied" and shown["death_date_source"] == "denied"
    assert shown["person_id"] == "masked"
    # a column that follows many is never widened by them: without its own grant it stays hidden
    everything = [grant("hrss", "base.people", ["person_id", "full_name", "birth_date", "death_date"])]
    widened = states(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, everything, ON))
    assert widened["full_name_source"] == "denied" and widened["valid_from"] == "denied"
    assert widened["death_date_source"] == "full"          # read with death_date, under its grant


def test_hidden_versions_show_only_current_rows():
    decision = decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, [grant("hrss", "base.people", ["full_name"])], ON)
    assert decision.columns["valid_from"].state == "denied" and decision.row_filter == '"is_current"'
    nancheng = decide("nancheng_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR,
                      [grant("nancheng", "base.people", ["full_name"])], ON)
    assert nancheng.row_filter == f"(\"town_code\" = '{NANCHENG}') and (\"is_current\")"


def test_a_bureau_reads_its_own_values_in_a_library_and_the_curator_only_what_is_shared():
    psb = states(decide("psb_analyst", LIBRARY, DEPARTMENTS_WITH_CURATOR, [], ON))
    assert psb["person_id"] == psb["ethnicity"] == psb["full_name"] == "full"
    assert psb["death_date"] == psb["is_deceased"] == "denied"
    curator = states(decide("governor_li", LIBRARY, DEPARTMENTS_WITH_CURATOR, [], ON))
    assert curator["person_id"] == curator["ethnicity"] == curator["death_date"] == "denied"
    assert curator["is_deceased"] == "denied"          # computed from mca's data: not the curator's own
    mca = states(decide("mca_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, [], ON))
    assert mca["death_date"] == mca["death_date_source"] == "full" and mca["person_id"] == "denied"
    with_grant = [grant("hrss", "base.people", ["ethnicity"])]       # not shared stays not shared
    assert states(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, with_grant, ON))["ethnicity"] == "denied"


def test_a_masked_derived_column_beside_its_basis_is_refused_naming_the_grant():
    grants = [grant("hrss", "base.people", ["death_date", "is_deceased"], source="catalog/grants/x.yaml:7")]
    decision = decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, grants, ON)
    (problem,) = reversible_masks(decision, LIBRARY)
    assert "catalog/grants/x.yaml:7" in problem and "death_date" in problem and "is_deceased (masked)" in problem
    fixed = [grant("hrss", "base.people", ["death_date", "is_deceased"], unmasked=["is_deceased"])]
    assert reversible_masks(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, fixed, ON), LIBRARY) == []
    # the owner of the basis knows it anyway: nothing to refuse
    assert reversible_masks(decide("mca_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, [], ON), LIBRARY) == []


def test_a_full_id_number_beside_a_hidden_birth_date_is_refused():
    grants = [grant("hrss", "base.people", ["person_id", "full_name"], unmasked=["person_id"], source="g.yaml:3")]
    (problem,) = reversible_masks(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, grants, ON), LIBRARY)
    assert "g.yaml:3" in problem and "person_id" in problem and "birth_date (denied)" in problem
    grants = [grant("hrss", "base.people", ["person_id", "birth_date"], unmasked=["person_id"])]
    assert reversible_masks(decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, grants, ON), LIBRARY) == []


def test_row_scope_all_widens_a_town_and_the_narrowest_scope_wins():
    wide = Grant(department="nancheng", resource=REGISTER.resource_id, columns=["full_name"], purpose="p",
                 legal_basis="l", expires=date(2027, 1, 1), approver="a", row_scope="all", source="w.yaml:1")
    assert decide("nancheng_officer", REGISTER, DEPARTMENTS, [wide], ON).row_filter is None
    narrow = dataclasses.replace(wide, columns=["phone"], row_scope="own_town", source="n.yaml:1")
    assert decide("nancheng_officer", REGISTER, DEPARTMENTS, [wide, narrow], ON).row_filter == \
        f"\"town_code\" = '{NANCHENG}'"
    # no town column, but every grant read under says all: the whole table
    assert decide("nancheng_officer", NO_TOWN, DEPARTMENTS,
                  [dataclasses.replace(wide, resource=NO_TOWN.resource_id, columns=["remark"])], ON).readable


def test_pseudonyms_differ_by_department_and_never_hold_the_key():
    assert pseudonym_expression('"x"', "hrss") != pseudonym_expression('"x"', "edu")
    assert "vault.pseudonym_key" in pseudonym_expression('"x"', "hrss")
    masked = decide("hrss_officer", REGISTER, DEPARTMENTS, [grant("hrss", REGISTER.resource_id, ["id_number"])], ON)
    assert masked.columns["id_number"].state == "masked"
    assert mask_expression(REGISTER.column("id_number"), "hrss") == pseudonym_expression('"id_number"', "hrss")


def test_a_full_id_number_in_a_table_without_a_birth_date_is_judged_by_the_population_library():
    deaths = resource("silver.mca_deaths", [column("id_number", "conditional", "sensitive_personal", "id_number"),
                                            column("death_date", "conditional", kind="date")], owner="mca")
    grants = [grant("hrss", "silver.mca_deaths", ["id_number"], unmasked=["id_number"], source="d.yaml:2")]
    decision = decide("hrss_officer", deaths, DEPARTMENTS_WITH_CURATOR, grants, ON)
    person = decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR, [], ON)        # no birth date granted
    (problem,) = reversible_masks(decision, deaths, person)
    assert "d.yaml:2" in problem and "birth_date (denied in base.people)" in problem
    granted = decide("hrss_officer", LIBRARY, DEPARTMENTS_WITH_CURATOR,
                     [grant("hrss", "base.people", ["birth_date"])], ON)
    assert reversible_masks(decision, deaths, granted) == []
