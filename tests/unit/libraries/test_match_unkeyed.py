"""``libraries.resolution.match_unkeyed`` on tiny inline frames: a record links
only to a single best candidate; ties and contradictions go to review."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.libraries.resolution import match_unkeyed

FIELDS = "name_key string, birth date, town_code string, rep_key string"
NANCHENG, DONGCHENG = "441900004", "441900003"
D1, D2, D3 = date(1990, 1, 1), date(1985, 5, 5), date(1970, 7, 7)


def run(spark, unkeyed_rows, candidate_rows, profile, materialise=None):
    unkeyed = spark.createDataFrame(unkeyed_rows, f"_record_id string, {FIELDS}")
    candidates = spark.createDataFrame(candidate_rows, f"candidate_key string, {FIELDS}")
    links, reviews = match_unkeyed(unkeyed, candidates, profile, materialise)
    return ({r["_record_id"]: r.asDict() for r in links.collect()},
            {r["_record_id"]: r.asDict() for r in reviews.collect()})


@pytest.fixture(scope="module")
def persons(spark):
    unkeyed = [
        ("best", "张三", D1, NANCHENG, None),        # K1 agrees on town, K2 disagrees: K1
        ("only", "赵六", D1, None, None),            # one candidate, nothing to compare: links on the block
        ("tie", "李四", D2, None, None),             # two candidates, same score
        ("contradicts", "王五", D3, NANCHENG, None),  # the only candidate is in another town
        ("other_birth", "张三", D2, NANCHENG, None),  # same name, another birth date: no candidate
        ("no_birth", "张三", None, NANCHENG, None),   # cannot block
    ]
    candidates = [
        ("K1", "张三", D1, NANCHENG, None), ("K2", "张三", D1, DONGCHENG, None),
        ("K6", "赵六", D1, DONGCHENG, None),
        ("K3", "李四", D2, NANCHENG, None), ("K4", "李四", D2, DONGCHENG, None),
        ("K5", "王五", D3, DONGCHENG, None),
        ("K7", "王五", D1, NANCHENG, None),           # another birth date: not a candidate for "contradicts"
    ]
    # checkpointed once between the comparison and the split, as resolve_records does
    return run(spark, unkeyed, candidates, "person", materialise=lambda frame: frame.localCheckpoint())


def test_exactly_one_best_candidate_links(persons):
    links, _ = persons
    assert links["best"] == {"_record_id": "best", "key": "K1", "method": "person:name_key+birth+score", "score": 1}
    assert (links["only"]["key"], links["only"]["score"]) == ("K6", 0)


def test_only_single_best_candidates_link(persons):
    links, reviews = persons
    assert set(links) == {"best", "only"}
    assert set(reviews) == {"tie", "contradicts", "other_birth", "no_birth"}


def test_a_tie_goes_to_review_with_both_candidates(persons):
    _, reviews = persons
    assert reviews["tie"]["reason"] == "ambiguous: several candidates score the same"
    assert reviews["tie"]["candidate_keys"] == ["K3", "K4"]


def test_a_contradicting_attribute_goes_to_review(persons):
    _, reviews = persons
    assert reviews["contradicts"]["reason"] == "the only candidates disagree on town or representative"
    assert reviews["contradicts"]["candidate_keys"] == ["K5"]


def test_links_and_reviews_both_come_from_the_one_materialised_comparison(spark):
    """``materialise`` is applied once, to the comparison both outputs are
    cut from: a comparison it drops a record from is missing from the links
    and the record is reviewed as without candidate."""
    unkeyed = [("best", "张三", D1, NANCHENG, None), ("tie", "李四", D2, None, None)]
    candidates = [("K1", "张三", D1, NANCHENG, None), ("K3", "李四", D2, None, None), ("K4", "李四", D2, None, None)]
    links, reviews = run(spark, unkeyed, candidates, "person",
                         materialise=lambda frame: frame.where("_record_id != 'best'"))
    assert links == {}
    assert reviews["best"]["reason"] == "no candidate with the same name_key and birth"
    assert reviews["tie"]["reason"] == "ambiguous: several candidates score the same"


def test_records_without_a_candidate_say_why(persons):
    _, reviews = persons
    assert reviews["other_birth"]["reason"] == "no candidate with the same name_key and birth"
    assert reviews["no_birth"]["reason"] == "too little to match on: name_key or birth missing"
    assert reviews["other_birth"]["candidate_keys"] == reviews["no_birth"]["candidate_keys"] == []


def test_entities_block_on_the_name_and_score_town_and_representative(spark):
    unkeyed = [
        ("rep", "某某公司", None, None, "甲"),          # C1 has the representative, C2 another one
        ("both", "某某公司", None, NANCHENG, "乙"),     # C2 agrees on both (+2), C1 on the town only (+1 -1)
        ("none", "无此公司", None, NANCHENG, "甲"),
    ]
    candidates = [("C1", "某某公司", None, NANCHENG, "甲"), ("C2", "某某公司", None, NANCHENG, "乙")]
    links, reviews = run(spark, unkeyed, candidates, "entity")
    assert {k: (r["key"], r["score"], r["method"]) for k, r in links.items()} == {
        "rep": ("C1", 1, "entity:name_key+score"), "both": ("C2", 2, "entity:name_key+score")}
    assert reviews["none"]["reason"] == "no candidate with the same name_key"
    assert set(reviews) == {"none"}


def test_a_single_candidate_with_one_contradicting_attribute_is_not_linked(spark):
    """A town agreement (+1) does not offset a representative disagreement (-1)."""
    unkeyed = [("mixed", "某某公司", None, NANCHENG, "乙")]
    candidates = [("C1", "某某公司", None, NANCHENG, "甲")]
    links, reviews = run(spark, unkeyed, candidates, "entity")
    assert links == {} and set(reviews) == {"mixed"}
    assert reviews["mixed"]["reason"] == "the best candidate disagrees on town or representative"


def test_a_key_known_in_two_towns_links_a_record_that_agrees_with_one_of_them(spark):
    """A migrant: hukou town Dongcheng, residence-permit town Nancheng. A
    record in Nancheng agrees with one of the key's combinations: it links."""
    unkeyed = [("migrant", "陈七", D1, NANCHENG, None)]
    candidates = [("K8", "陈七", D1, DONGCHENG, None), ("K8", "陈七", D1, NANCHENG, None)]
    links, reviews = run(spark, unkeyed, candidates, "person")
    assert reviews == {} and (links["migrant"]["key"], links["migrant"]["score"]) == ("K8", 1)
