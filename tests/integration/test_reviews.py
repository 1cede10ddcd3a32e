"""Review that lasts (issue 17, item 4), on a copy of the built city: a
reviewer's decisions survive incremental and full builds, take the record out
of the queue, link it as decided, and an undone decision puts the record back;
checked against the generator's truth (the key each reviewed record really had)."""

from __future__ import annotations

import pytest

from pipelines.dev.evaluate import KEY_HEADERS
from pipelines.governance.reviews import ReviewRefused, decide, open_reviews
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.libraries.build import build_libraries
from tests.integration.cities import copy_built_lake, truth_rows


@pytest.fixture(scope="module")
def lake(built_city, tmp_path_factory):
    return copy_built_lake(built_city, tmp_path_factory, "reviews")


def _links(settings) -> dict[tuple, dict]:
    """(file, row) -> the population's entity link of that record (reviewed records only)."""
    return {(r["_source_file"], r["_row_number"]): r
            for r in read_delta_rows(governance_path("entity_links", settings), [("library", "=", "population")])
            if r["method"].startswith("review_")}


def _in_review(settings) -> set[tuple]:
    return {(r["_source_file"], r["_row_number"])
            for r in read_delta_rows(governance_path("match_review", settings), [("library", "=", "population")])}


def _at(review: dict) -> tuple:
    return review["_source_file"], review["_row_number"]


def test_decisions_last_through_builds_and_an_undo_puts_the_record_back(spark, lake):
    root, settings = lake
    true_key = {(r["file"], int(r["row_number"])): r["true_value"] for r in truth_rows(root, "defects.csv")
                if r["column"] in KEY_HEADERS["population"] and r["expected"] == "quarantine"}
    queue = open_reviews(settings, "population")
    rows_of: dict[str, list[dict]] = {}
    for review in queue:                 # a review ID names a record however often it was delivered
        rows_of.setdefault(review["review_id"], []).append(review)
    assert len(rows_of) >= 3
    known = {r.person_id for r in spark.read.format("delta").load(settings.lake_path("base", "population"))
             .where("is_current").select("person_id").collect()}
    # the generator's reviews wait because nothing matched (no birth date, a mangled ID): the reviewer finds
    # the person by other means and accepts a key that is no candidate, saying how
    right = next(rows[0] for rows in rows_of.values() if len({true_key.get(_at(r)) for r in rows}) == 1
                 and true_key.get(_at(rows[0])) in known)
    rejected, newcomer = [rows[0] for rid, rows in rows_of.items() if rid != right["review_id"]][:2]
    key = true_key[_at(right)]

    # refusals, each naming why; nothing is recorded
    with pytest.raises(ReviewRefused, match="is neither a candidate of review"):
        decide(right["review_id"], "accept", "reviewer_a", "441900190001010000", reason="核对", settings=settings)
    if key not in (right["candidate_keys"] or []):
        with pytest.raises(ReviewRefused, match="needs --reason"):
            decide(right["review_id"], "accept", "reviewer_a", key, settings=settings)
    with pytest.raises(ReviewRefused, match="needs --reason"):
        decide(rejected["review_id"], "reject", "reviewer_a", settings=settings)
    with pytest.raises(ReviewRefused, match="no decision to undo"):
        decide(right["review_id"], "undo", "reviewer_a", reason="typo", settings=settings)
    with pytest.raises(ReviewRefused, match="no open review"):
        decide("000000000000", "new_person", "reviewer_a", settings=settings)
    assert read_delta_rows(governance_path("review_decisions", settings)) == []

    decide(right["review_id"], "accept", "reviewer_a", key, "户籍系统核对一致", settings)
    decide(rejected["review_id"], "reject", "reviewer_b", reason="测试数据，非真实人员", settings=settings)
    decide(newcomer["review_id"], "new_person", "reviewer_b", settings=settings)
    with pytest.raises(ReviewRefused, match="already decided"):
        decide(right["review_id"], "new_person", "reviewer_b", settings=settings)
    decided = {right["review_id"]: ("review_accepted", key), rejected["review_id"]: ("review_rejected", None),
               newcomer["review_id"]: ("review_new_person", None)}
    expected = {_at(row): link for rid, link in decided.items() for row in rows_of[rid]}
    # the queue shows only undecided records at once, before any build
    assert not set(decided) & {r["review_id"] for r in open_reviews(settings, "population")}
    assert len(open_reviews(settings, "population")) == len(queue) - len(expected)

    # an incremental build applies them: out of match_review, linked as decided (every row of a decided record)
    (result,) = build_libraries(spark, ["population"], settings=settings)
    assert result["mode"] == "incremental", result.get("mode_reason")
    links = {at: (r["method"], r["key"]) for at, r in _links(settings).items()}
    assert links == expected
    assert not set(expected) & _in_review(settings)

    # a full build rebuilds match_review and the links from scratch: the decisions hold
    (result,) = build_libraries(spark, ["population"], settings=settings, full=True)
    assert result["mode"] == "full"
    assert {at: (r["method"], r["key"]) for at, r in _links(settings).items()} == expected
    assert not set(expected) & _in_review(settings)

    # undone: the next build matches the record again, and it waits for review as before
    decide(right["review_id"], "undo", "reviewer_c", reason="证件号码需再核实", settings=settings)
    (result,) = build_libraries(spark, ["population"], settings=settings)
    assert result["mode"] == "incremental"
    assert not {_at(r) for r in rows_of[right["review_id"]]} & set(_links(settings))
    assert right["review_id"] in {r["review_id"] for r in open_reviews(settings, "population")}
    # the decisions table is the audit: who, when, why, undo included, nothing removed
    rows = sorted(read_delta_rows(governance_path("review_decisions", settings)), key=lambda r: r["decided_at"])
    assert [(r["decision"], r["decided_by"]) for r in rows] == [
        ("accept", "reviewer_a"), ("reject", "reviewer_b"), ("new_person", "reviewer_b"), ("undo", "reviewer_c")]
    assert rows[-1]["reason"] == "证件号码需再核实" and rows[0]["candidate_key"] == key
