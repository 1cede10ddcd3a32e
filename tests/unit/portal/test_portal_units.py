"""The portal's pure parts: sessions and CSRF, redirects, sample references,
latest answers, catalog search (on the project's own catalog)."""

from __future__ import annotations

import time
from datetime import datetime

from pipelines.portal.app import _local
from pipelines.portal.reads import ISSUE_ID, latest_answers, sample_references, search_catalog
from pipelines.portal.sessions import SessionStore, check_csrf
from pipelines.serving.catalog import load_catalog


def test_sessions_are_random_end_on_logout_and_when_idle_and_csrf_must_match():
    store = SessionStore(idle_seconds=0.2)
    one, two = store.new("psb_analyst", "secret", "psb"), store.new()
    assert one.session_id != two.session_id and one.csrf != two.csrf and len(one.session_id) >= 40
    assert store.get(one.session_id) is one and "secret" not in repr(one)
    assert check_csrf(one, one.csrf) and not check_csrf(one, two.csrf) and not check_csrf(one, "")
    assert not check_csrf(None, one.csrf)
    store.end(one.session_id)
    assert store.get(one.session_id) is None
    time.sleep(0.3)
    assert store.get(two.session_id) is None


def test_redirects_stay_on_the_site():
    assert _local("/issues/GI-1") == "/issues/GI-1"
    for target in ("https://example.org/", "//example.org/x", "/\\example.org", "javascript:alert(1)", "", None):
        assert _local(target) == "/home"


def test_sample_references_keep_file_rows_and_drop_anything_else():
    samples = ["psb_hukou_20261101.csv:3", "psb_hukou_20261101.csv:12", "b.xlsx:4", "441900197704045671", None,
               "a:b:c", "x.csv:"]
    assert sample_references(samples) == {"psb_hukou_20261101.csv": [3, 12], "b.xlsx": [4]}
    assert sample_references(None) == {}


def test_the_latest_answer_of_each_issue_wins():
    at = datetime(2026, 12, 1, 8)
    events = [{"issue_id": "GI-1", "action": "acknowledged", "at": at},
              {"issue_id": "GI-1", "action": "disputed", "at": at.replace(hour=9)},
              {"issue_id": "GI-2", "action": "fixed", "at": at}]
    assert latest_answers(events) == {"GI-1": "disputed", "GI-2": "fixed"}
    assert ISSUE_ID.match("GI-0123456789") and not ISSUE_ID.match("GI-1' OR '1'='1")


def test_catalog_search_by_text_column_classification_share_type_and_owner():
    catalog = load_catalog()
    everything = search_catalog(catalog)
    assert len(everything) == len(catalog.resources)
    by_column = {r.resource_id for r in search_catalog(catalog, "person_id")}
    assert "base.population" in by_column and all(
        any("person_id" in c.name for c in catalog.resources[r].columns) or "person_id" in (
            catalog.resources[r].description or "") for r in by_column)
    psb = search_catalog(catalog, owner="psb")
    assert psb and {r.owner_bureau for r in psb} == {"psb"}
    not_shared = search_catalog(catalog, share_type="not_shared")
    assert not_shared and all(any(c.share_type == "not_shared" for c in r.columns) for r in not_shared)
    assert search_catalog(catalog, "户籍") and not search_catalog(catalog, "no such words anywhere")
