"""The portal's pure parts: sessions and CSRF, redirects, sample references,
latest answers, catalog search (on the project's own catalog)."""

from __future__ import annotations

import time
from datetime import datetime

from pipelines.portal.app import _local
from pipelines.portal.reads import ISSUE_ID, latest_answers, sample_references, search_catalog, with_answers
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
    assert latest_answers(events) == {"GI-1": (at.replace(hour=9), "disputed"), "GI-2": (at, "fixed")}
    issues = [{"issue_id": "GI-1", "last_seen_at": at.replace(hour=10)}, {"issue_id": "GI-2", "last_seen_at": at},
              {"issue_id": "GI-3", "last_seen_at": at}]
    shown = with_answers(issues, latest_answers(events))
    # GI-1 was disputed at 9 and delivered again, still failing, at 10
    assert [(i["answer"], i["seen_again"]) for i in shown] == [("disputed", True), ("fixed", False), (None, False)]
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


def test_feed_scores_and_the_monthly_ranking_from_daily_snapshots():
    from datetime import date

    from pipelines.governance.reports import ScorecardRow, feed_score, monthly_ranking

    def card(**values):
        base = dict(bureau="psb", feed="psb.hukou", last_load_id="L", last_status="loaded", completeness=1.0,
                    validity=1.0, uniqueness=1.0, timeliness="on_time", blocked_loads=0, open_issues=0)
        return ScorecardRow(**(base | values))

    assert feed_score(card()) == 100.0
    assert feed_score(card(timeliness="late")) == 87.5 and feed_score(card(open_issues=3)) == 94.0
    assert feed_score(card(open_issues=50)) == 80.0                       # the issue penalty stops at 20
    assert feed_score(card(completeness=None, validity=None, uniqueness=None, timeliness="missing")) == 0.0

    def row(day, bureau, feed, score):
        return {"day": date(2026, 11, day) if day else date(2026, 10, 31), "bureau": bureau, "feed": feed,
                "score": score}

    history = [row(1, "psb", "a", 90), row(1, "psb", "b", 80), row(2, "psb", "a", 94), row(2, "psb", "b", 80),
               row(1, "hrss", "c", 87), row(2, "hrss", "c", 87), row(1, "mca", "d", 60), row(0, "mca", "d", 100),
               row(2, "tax", "e", 87)]
    ranked = monthly_ranking(history, "2026-11")
    # psb: 85 then 87 (its feeds' means); October's day is not November's; equal scores share a rank
    assert [(r["bureau"], r["score"], r["rank"], r["days"], r["change"]) for r in ranked] == [
        ("hrss", 87.0, 1, 2, 0.0), ("tax", 87.0, 1, 1, 0.0), ("psb", 86.0, 3, 2, 2.0), ("mca", 60.0, 4, 1, 0.0)]
    assert monthly_ranking(history, "2026-12") == []


def test_the_trend_line_spans_the_box_and_scales_scores_to_its_height():
    from datetime import date

    from pipelines.portal.app import trend_line

    line = trend_line([(date(2026, 11, 1), 100), (date(2026, 11, 2), 50), (date(2026, 11, 3), 0)], 600, 120)
    assert line["points"] == "0.0,0.0 300.0,60.0 600.0,120.0"
    assert trend_line([]) is None


def test_lineage_follows_feeds_into_libraries_and_libraries_into_views():
    from pipelines.portal.reads import lineage
    from pipelines.settings import get_settings

    hukou = lineage("silver.psb_hukou", get_settings())
    assert hukou["upstream"] == ["delivery psb.hukou"] and "base.population" in hukou["downstream"]
    population = lineage("base.population", get_settings())
    assert {"silver.psb_hukou", "silver.psb_residence_permit", "silver.mca_death"} <= set(population["upstream"])
    profile = lineage("base.enterprise_profile", get_settings())
    assert "base.legal_person" in profile["upstream"]
    assert "base.enterprise_profile_today (view)" in profile["downstream"]
    assert "base.enterprise_profile" in lineage("base.legal_person", get_settings())["downstream"]


def test_failed_logins_lock_a_name_or_a_client_for_the_window_and_waiting_forms_are_capped(monkeypatch):
    from pipelines.portal import sessions as module

    store = SessionStore()
    for _ in range(module.FAILURES_ALLOWED - 1):
        store.failed("user:psb_analyst", "client:127.0.0.1")
    assert not store.locked_out("user:psb_analyst")
    store.failed("user:psb_analyst", "client:127.0.0.1")
    assert store.locked_out("user:psb_analyst") and store.locked_out("user:x", "client:127.0.0.1")
    assert not store.locked_out("user:hrss_officer", "client:10.0.0.2")
    monkeypatch.setattr(module, "ANONYMOUS_LIMIT", 3)
    forms = [store.new() for _ in range(5)]
    logged_in = store.new("psb_analyst", "p", "psb")
    assert [store.get(f.session_id) is not None for f in forms] == [False, False, True, True, True]
    assert store.get(logged_in.session_id) is logged_in


def test_a_request_form_names_every_wrong_field():
    from datetime import date

    from pipelines.portal.app import request_errors

    hukou = load_catalog().resources["silver.psb_hukou"]
    today = date(2026, 12, 7)
    assert request_errors(hukou, ["full_name"], "核验", "条例", "2027-06-30", "", today) == []
    errors = request_errors(hukou, [], " ", "", "2026-12-07", "everyone", today)
    assert [e.split(":")[0] for e in errors] == ["columns", "purpose", "legal_basis", "expires", "row_scope"]
    assert request_errors(hukou, ["shoe_size"], "p", "l", "2030-13-01", "", today) == [
        "columns: silver.psb_hukou has no column shoe_size", "expires: '2030-13-01' is not a date (YYYY-MM-DD)"]
    assert request_errors(hukou, ["full_name"], "p", "l", "2031-01-01", "", today) == [
        "expires: at most three years ahead"]


def test_the_timeliness_grid_has_a_cell_per_feed_and_snapshot_day():
    from datetime import date

    from pipelines.governance.reports import timeliness_grid

    history = [{"day": date(2026, 11, 1), "feed": "a", "timeliness": "on_time"},
               {"day": date(2026, 11, 2), "feed": "a", "timeliness": "late"},
               {"day": date(2026, 11, 2), "feed": "b", "timeliness": "missing"}]
    assert timeliness_grid(history) == ([date(2026, 11, 1), date(2026, 11, 2)],
                                        [("a", ["on_time", "late"]), ("b", [None, "missing"])])


def test_issues_new_since_the_previous_login_and_logins_remembered(tmp_path):
    import os
    from datetime import UTC, datetime

    from pipelines.portal.reads import new_since
    from pipelines.portal.sessions import remember_login

    first, second = datetime(2026, 12, 1, 8, tzinfo=UTC), datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert remember_login(tmp_path, "psb_analyst", first) is None
    assert remember_login(tmp_path, "psb_analyst", second) == first
    assert remember_login(tmp_path, "hrss_officer", second) is None
    assert oct(os.stat(tmp_path / "logins.json").st_mode & 0o777) == "0o600"
    issues = [{"issue_id": "GI-old", "first_seen_at": datetime(2026, 11, 30)},
              {"issue_id": "GI-new", "first_seen_at": datetime(2026, 12, 2, tzinfo=UTC)},
              {"issue_id": "GI-none", "first_seen_at": None}]
    assert new_since(issues, first) == {"GI-new"} and new_since(issues, None) == set()
