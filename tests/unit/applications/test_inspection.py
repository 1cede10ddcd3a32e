"""The inspection draw's pure parts on a few inline rows: the plan's errors,
sample sizes, scope, recusal, the prohibition of a repeat inspector,
reproducibility and the shortfall that writes nothing."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from pipelines import reference as ref
from pipelines.applications.inspection import (
    DrawInputs, DrawShortfall, Inspector, InspectionScope, PlanError, RosterEntity, draw_plan, in_scope, parse_plan,
    recusals_of, sample_size)

PLAN = """
plan: test-plan
title: 测试计划
department: 东莞市市场监督管理局
period: {start: 2026-12-01, end: 2026-12-31}
max_inspections_per_inspector: 100
items:
  - item: food
    title: 食品检查
    legal_basis: 食品安全法
    enforcement_category: 食品
    sampling_ratio: {A: 0.03, B: 0.5, C: 1, D: 1.0}
    inspectors_per_entity: 2
"""


def _entities(count: int, grade: str = "B", **kw) -> list[RosterEntity]:
    industry = kw.get("industry", "F5211")
    return [RosterEntity(f"91441900MA{grade}{k:07d}", f"企业{k}", "有限责任公司", industry, industry[:1],
                         ref.TOWN_CODE_BY_NAME[kw.get("town", "南城街道")], grade, frozenset(kw.get("licences", ())))
            for k in range(count)]


def _inspectors(count: int, category: str = "食品", department: str = "东莞市市场监督管理局",
                prefix: str = "C") -> list[Inspector]:
    return [Inspector(f"{prefix}{category}{k:03d}", f"P{prefix}{category}{k:03d}", department, category, True)
            for k in range(count)]


def _inputs(entities, inspectors, recusals=None, previous=None) -> DrawInputs:
    return DrawInputs(entities, inspectors, recusals or {}, previous or {})


@pytest.mark.parametrize("change, message", [
    ("sampling_ratio: {A: 0.03, B: 0.5, C: 1, D: 1.0}", None),
    ("sampling_ratio: {A: 0.03, B: 0.5, C: 1, E: 1.0}", "items[0].sampling_ratio: unknown grade 'E' (A, B, C, D)"),
    ("sampling_ratio: {A: 0.03, B: 0.5, C: 1}", "items[0].sampling_ratio: no ratio for grade D"),
    ("sampling_ratio: {A: 0.03, B: 1.5, C: 1, D: 1}", "items[0].sampling_ratio: grade B: ratio 1.5 is not between"),
    ("enforcement_category: 食品", None),
    ("enforcement_category: 烟草", "items[0].enforcement_category: unknown enforcement category '烟草'"),
    ("legal_basis: 食品安全法", None),
])
def test_a_plan_names_the_field_it_breaks(change, message):
    key = change.split(":")[0]
    line = next(line for line in PLAN.splitlines() if line.strip().startswith(key + ":"))
    text = PLAN.replace(line, "    " + change)
    if message is None:
        assert parse_plan(text, "plans/x.yaml").items[0].item == "food"
        return
    with pytest.raises(PlanError) as raised:
        parse_plan(text, "plans/x.yaml")
    assert str(raised.value).startswith("plans/x.yaml: ") and message in str(raised.value)


@pytest.mark.parametrize("scope, message", [
    ("industry_sections: [Z]", "items[0].scope.industry_sections: unknown industry section 'Z'"),
    ("industry_codes: [C39X]", "items[0].scope.industry_codes: unknown industry code 'C39X'"),
    ("towns: [南城]", "items[0].scope.towns: unknown town '南城'"),
    ("entity_types: [公司]", "items[0].scope.entity_types: unknown entity type '公司'"),
    ("licence_types: [drivers_licence]", "items[0].scope.licence_types: unknown licence type 'drivers_licence'"),
    ("industries: [C]", "items[0].scope.industries: unknown field"),
])
def test_an_unknown_scope_value_is_refused_with_the_file_and_field(scope, message):
    text = PLAN.replace("    inspectors_per_entity: 2", f"    inspectors_per_entity: 2\n    scope: {{{scope}}}")
    with pytest.raises(PlanError, match="^plans/x.yaml: ") as raised:
        parse_plan(text, "plans/x.yaml")
    assert message in str(raised.value)


def test_a_repeated_item_and_a_backward_period_are_refused():
    item = PLAN[PLAN.index("  - item: food"):]
    with pytest.raises(PlanError, match="item 'food' appears twice"):
        parse_plan(PLAN + item, "x.yaml")
    with pytest.raises(PlanError, match=r"period: ends \(2026-11-01\) before it starts"):
        parse_plan(PLAN.replace("end: 2026-12-31", "end: 2026-11-01"), "x.yaml")


@pytest.mark.parametrize("count, ratio, size", [
    (100, "0.03", 3), (101, "0.03", 4), (0, "0.03", 0), (1, "0.03", 1), (7, "1.0", 7), (7, "0", 0), (10, "0.1", 1)])
def test_sample_sizes_round_up_from_the_exact_ratio(count, ratio, size):
    assert sample_size(count, Decimal(ratio)) == size


def test_per_grade_sample_sizes_follow_the_ratios():
    plan = parse_plan(PLAN, "x.yaml")
    entities = _entities(100, "A") + _entities(10, "B") + _entities(3, "C") + _entities(2, "D")
    result = draw_plan(plan, _inputs(entities, _inspectors(40)), seed=1)
    assert result.items[0]["in_scope"] == {"A": 100, "B": 10, "C": 3, "D": 2}
    assert result.items[0]["drawn"] == {"A": 3, "B": 5, "C": 3, "D": 2}
    grades = [a.grade for a in result.assignments]
    assert {g: grades.count(g) for g in "ABCD"} == {"A": 3, "B": 5, "C": 3, "D": 2}
    assert all(len(a.certificates) == len(set(a.certificates)) == 2 for a in result.assignments)


def test_the_same_seed_gives_the_same_draw_and_another_seed_another():
    plan = parse_plan(PLAN, "x.yaml")
    inputs = _inputs(_entities(200, "A") + _entities(40, "B"), _inspectors(30))
    first, again, other = (draw_plan(plan, inputs, seed) for seed in (7, 7, 8))
    assert first.assignments == again.assignments and first.digest == again.digest
    assert {a.uscc for a in first.assignments} != {a.uscc for a in other.assignments}
    assert first.digest != other.digest
    # the input order does not matter: ranks are by hash of the keys
    shuffled = _inputs(list(reversed(inputs.entities)), list(reversed(inputs.inspectors)))
    assert draw_plan(plan, shuffled, 7).digest == first.digest


def test_scope_filters_by_every_list_given():
    entity = _entities(1, industry="H6210", town="虎门镇", licences=("food_business_licence",))[0]
    organisation = RosterEntity("51441900MJ0000001X", "商会", "社会团体", None, "S", "441900121", "A")
    assert in_scope(InspectionScope(industry_sections=("S",), towns=("虎门镇",)), organisation)
    assert not in_scope(InspectionScope(industry_codes=("S95",)), organisation)
    assert in_scope(InspectionScope(), entity)
    assert in_scope(InspectionScope(industry_sections=("H",), towns=("虎门镇",)), entity)
    assert in_scope(InspectionScope(industry_codes=("H62",), licence_types=("food_business_licence",)), entity)
    assert not in_scope(InspectionScope(industry_sections=("H",), towns=("南城街道",)), entity)
    assert not in_scope(InspectionScope(licence_types=("construction_permit",)), entity)
    assert not in_scope(InspectionScope(entity_types=("个体工商户",)), entity)


def test_recusal_covers_own_household_and_employer_relations():
    inspectors = [Inspector("C1", "P1", "东莞市市场监督管理局", "食品", True),
                  Inspector("C2", "P9", "东莞市市场监督管理局", "食品", True)]
    persons = {"P1": {"household_number": "H1", "employer_uscc": "E-EMPLOYER"},
               "P2": {"household_number": "H1", "employer_uscc": None},
               "P3": {"household_number": "H2", "employer_uscc": None}}
    representatives = {"P1": ["E-OWN"], "P2": ["E-SPOUSE"], "P3": ["E-STRANGER"]}
    recused = recusals_of(inspectors, persons, representatives)
    assert recused["C1"] == {"E-OWN": "legal_representative", "E-SPOUSE": "household_legal_representative",
                             "E-EMPLOYER": "employer"}
    assert recused["C2"] == {}          # a person the population does not know: nothing to recuse from


def test_a_recused_or_previous_inspector_is_never_assigned():
    plan = parse_plan(PLAN.replace("A: 0.03", "A: 1"), "x.yaml")
    entities = _entities(30, "A")
    inspectors = _inspectors(4)
    certs = [i.certificate_number for i in inspectors]
    recusals = {certs[0]: {e.uscc: "legal_representative" for e in entities[:15]}}
    previous = {e.uscc: frozenset({certs[1]}) for e in entities[10:20]}
    for seed in range(20):
        result = draw_plan(plan, _inputs(entities, inspectors, recusals, previous), seed)
        for assignment in result.assignments:
            k = int(assignment.uscc[-7:])
            assert not (k < 15 and certs[0] in assignment.certificates)
            assert not (10 <= k < 20 and certs[1] in assignment.certificates)


def test_only_qualified_inspectors_are_assigned():
    plan = parse_plan(PLAN.replace("A: 0.03", "A: 1"), "x.yaml")
    inspectors = (_inspectors(2, "食品") + _inspectors(2, "综合") + _inspectors(3, "价格")
                  + _inspectors(2, "食品", department="东莞市应急管理局", prefix="E")
                  + [Inspector("OFF", "POFF", "东莞市市场监督管理局", "食品", False)])
    result = draw_plan(plan, _inputs(_entities(20, "A"), inspectors), 3)
    used = {cert for a in result.assignments for cert in a.certificates}
    assert used == {"C食品000", "C食品001", "C综合000", "C综合001"}


def test_a_shortfall_names_the_item_and_draws_nothing():
    plan = parse_plan(PLAN.replace("max_inspections_per_inspector: 100", "max_inspections_per_inspector: 2"),
                      "x.yaml")
    with pytest.raises(DrawShortfall, match=r"food \(食品检查\): 2 of 5 drawn entities lack 2 qualified"):
        draw_plan(plan, _inputs(_entities(10, "B"), _inspectors(3)), 1)      # 5 entities x 2 > 3 x 2 slots
    with pytest.raises(DrawShortfall, match="1 inspectors qualify"):
        draw_plan(plan, _inputs(_entities(2, "B"), _inspectors(1)), 1)


def test_the_licence_types_a_plan_may_name_are_those_the_licence_library_writes():
    from pipelines import reference as ref
    from pipelines.libraries.licence import LICENCE_FEEDS

    assert set(ref.LICENCE_TYPES) == {"business_licence"} | {kind for _, kind in LICENCE_FEEDS.values()}


def test_no_inspector_exceeds_the_cap_and_the_cap_is_reached_exactly():
    plan = parse_plan(PLAN.replace("A: 0.03", "A: 1").replace("max_inspections_per_inspector: 100",
                                                               "max_inspections_per_inspector: 5"), "x.yaml")
    # 10 entities x 2 inspectors = 20 slots = 4 inspectors x 5: every inspector exactly at the cap
    for seed in range(30):
        result = draw_plan(plan, _inputs(_entities(10, "A"), _inspectors(4)), seed)
        loads = Counter(cert for a in result.assignments for cert in a.certificates)
        assert sorted(loads.values()) == [5, 5, 5, 5]
    with pytest.raises(DrawShortfall, match="1 of 11 drawn entities"):
        draw_plan(plan, _inputs(_entities(11, "A"), _inspectors(4)), 0)


def test_an_entity_drawn_by_two_items_gets_other_inspectors_and_the_cap_spans_the_plan():
    two = PLAN.replace("A: 0.03", "A: 1") + PLAN[PLAN.index("  - item: food"):].replace(
        "item: food", "item: food-again").replace("A: 0.03", "A: 1")
    plan = parse_plan(two.replace("max_inspections_per_inspector: 100", "max_inspections_per_inspector: 6"),
                      "x.yaml")
    for seed in range(20):
        result = draw_plan(plan, _inputs(_entities(6, "A"), _inspectors(4)), seed)
        by_entity: dict[str, list[str]] = {}
        for a in result.assignments:
            by_entity.setdefault(a.uscc, []).extend(a.certificates)
        assert all(len(certs) == len(set(certs)) == 4 for certs in by_entity.values())
        assert max(Counter(c for certs in by_entity.values() for c in certs).values()) <= 6


def test_one_person_with_two_certificates_counts_once():
    plan = parse_plan(PLAN.replace("A: 0.03", "A: 1").replace("max_inspections_per_inspector: 100",
                                                               "max_inspections_per_inspector: 4"), "x.yaml")
    same_person = [Inspector("C-OLD", "P-SAME", "东莞市市场监督管理局", "食品", True),
                   Inspector("C-NEW", "P-SAME", "东莞市市场监督管理局", "综合", True)]
    inspectors = same_person + _inspectors(3)
    previous = {"91441900MAA0000000": frozenset({"C-OLD"})}      # inspected last time under the old certificate
    for seed in range(30):
        result = draw_plan(plan, _inputs(_entities(6, "A"), inspectors, previous=previous), seed)
        person = Counter()
        for a in result.assignments:
            assert not {"C-OLD", "C-NEW"} <= set(a.certificates)          # never both on one entity
            if a.uscc == "91441900MAA0000000":
                assert not {"C-OLD", "C-NEW"} & set(a.certificates)       # nor again after last time
            person["P-SAME"] += bool({"C-OLD", "C-NEW"} & set(a.certificates))
        assert person["P-SAME"] <= 4                                      # one cap for the person
