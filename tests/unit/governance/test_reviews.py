"""Decisions on match reviews (pipelines/governance/reviews.py) on a tiny
match_review table: what is refused and why, what the queue shows, undo."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipelines.governance.reviews import (ReviewRefused, decide, decided_counts, decisions_digest, live_decisions,
                                          open_reviews, review_id)
from pipelines.lake.paths import governance_path

CANDIDATES = ["441900199001011231", "441900199001011258"]


@pytest.fixture
def queue(lake_settings):
    import pyarrow as pa
    from deltalake import write_deltalake

    rows = [{"library": "population", "feed": "psb.hukou", "source_alias": "hukou", "_load_id": "L1",
             "_source_file": "hukou.csv", "_row_number": n, "reason": "ambiguous",
             "record": [("name_key", "王小明"), ("delivered_key", f"4.41900E+{n}")],
             "candidate_keys": CANDIDATES, "status": "open", "found_at": datetime(2026, 12, 1)} for n in (7, 8)]
    schema = pa.schema([("library", pa.string()), ("feed", pa.string()), ("source_alias", pa.string()),
                        ("_load_id", pa.string()), ("_source_file", pa.string()), ("_row_number", pa.int64()),
                        ("reason", pa.string()), ("record", pa.map_(pa.string(), pa.string())),
                        ("candidate_keys", pa.list_(pa.string())), ("status", pa.string()),
                        ("found_at", pa.timestamp("us"))])
    write_deltalake(governance_path("match_review", lake_settings), pa.Table.from_pylist(rows, schema))
    return lake_settings, [review_id("population", "hukou", {"name_key": "王小明", "delivered_key": f"4.41900E+{n}"})
                           for n in (7, 8)]


def test_a_review_id_names_the_record_by_what_was_compared_not_by_its_load():
    record = {"name_key": "王小明", "birth": "1990-01-01", "town_code": None, "delivered_key": "4.41900E+17"}
    assert review_id("population", "hukou", record) == review_id("population", "hukou", dict(record))
    assert review_id("population", "hukou", record) != review_id("population", "residence_permit", record)
    assert review_id("population", "hukou", record) != review_id("population", "hukou", record | {"birth": None})
    assert len(review_id("population", "hukou", record)) == 12


def test_decided_records_leave_the_queue_and_an_undo_counts_as_no_decision(queue):
    settings, (first, second) = queue
    assert [r["review_id"] for r in open_reviews(settings)] == [first, second]
    assert open_reviews(settings)[0]["record"] == {"name_key": "王小明", "delivered_key": "4.41900E+7"}   # as shown
    assert decisions_digest(settings, "population") == ""
    decide(first, "accept", "reviewer", CANDIDATES[1], settings=settings)
    assert [r["review_id"] for r in open_reviews(settings)] == [second]
    assert live_decisions(settings)[first]["candidate_key"] == CANDIDATES[1]
    assert decided_counts(settings) == {"psb.hukou": 1}
    digest = decisions_digest(settings, "population")
    assert digest and decisions_digest(settings, "legal_person") == ""
    decide(first, "undo", "governor", reason="wrong person", settings=settings)
    assert live_decisions(settings) == {} and decisions_digest(settings, "population") == ""
    decide(first, "new_person", "reviewer", settings=settings)       # decided again after the undo
    assert live_decisions(settings)[first]["decision"] == "new_person"


@pytest.mark.parametrize("decision, key, reason, refused", [
    ("accept", "441900199001011274", "户籍核对", "is neither a candidate of review"),
    ("accept", None, None, "--accept needs a key"),
    ("reject", None, None, "a rejection needs --reason"),
    ("reject", None, "  ", "a rejection needs --reason"),
    ("new_person", CANDIDATES[0], None, "only --accept takes a candidate key"),
    ("undo", None, "changed my mind", "has no decision to undo"),
    ("merge", None, None, "no decision 'merge'"),
])
def test_a_decision_is_refused_with_its_reason_and_not_recorded(queue, decision, key, reason, refused):
    settings, (first, _) = queue
    with pytest.raises(ReviewRefused, match=refused):
        decide(first, decision, "reviewer", key, reason, settings)
    assert live_decisions(settings) == {}


def test_an_unknown_or_already_decided_review_is_refused(queue):
    settings, (first, _) = queue
    with pytest.raises(ReviewRefused, match="no open review 000000000000"):
        decide("000000000000", "new_person", "reviewer", settings=settings)
    decide(first, "reject", "reviewer", reason="not a person", settings=settings)
    with pytest.raises(ReviewRefused, match="already decided \\(reject by reviewer\\); undo it first"):
        decide(first, "accept", "other", CANDIDATES[0], settings=settings)


def test_an_undone_review_that_a_build_took_out_of_match_review_can_be_decided_again(queue):
    """After a build applied a decision, the record is no longer in match_review; undone, it comes back
    there only with the next build, but it can be decided again at once (from its decision history)."""
    from deltalake import DeltaTable

    settings, (first, _) = queue
    decide(first, "reject", "reviewer", reason="not a person", settings=settings)
    DeltaTable(governance_path("match_review", settings)).delete("_row_number = 7")       # what the build does
    assert first not in {r["review_id"] for r in open_reviews(settings)}
    decide(first, "undo", "governor", reason="it is a person", settings=settings)
    row = decide(first, "new_person", "reviewer", settings=settings)
    assert (row["feed"], row["_row_number"], live_decisions(settings)[first]["decision"]) == (
        "psb.hukou", 7, "new_person")
