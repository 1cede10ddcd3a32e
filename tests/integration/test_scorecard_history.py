"""The daily scorecard snapshot (governance.scorecard_history, the
governance_daily DAG's task) on the ingested test city: one row per feed per
day equal to the scorecard of that moment, a rerun of a day replaces its
rows, and the monthly ranking reads them."""

from __future__ import annotations

from datetime import date

from pipelines.contracts import load_contracts
from pipelines.governance.reports import feed_score, monthly_ranking, scorecard, snapshot_scorecard
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path


def test_a_day_is_stored_once_and_equals_the_scorecard(spark, ingested_city):
    settings, contracts = ingested_city.settings, load_contracts()
    card = {r.feed: r for r in scorecard(spark, contracts, settings)}
    first = snapshot_scorecard(spark, contracts, settings, day=date(2026, 11, 30))
    snapshot_scorecard(spark, contracts, settings, day=date(2026, 12, 1))
    again = snapshot_scorecard(spark, contracts, settings, day=date(2026, 12, 1))       # the DAG retried
    stored = read_delta_rows(governance_path("scorecard_history", settings))
    assert sorted((r["day"], r["feed"]) for r in stored) == sorted(
        (day, feed) for day in (date(2026, 11, 30), date(2026, 12, 1)) for feed in contracts)
    assert {r["feed"]: r["score"] for r in first} == {feed: feed_score(row) for feed, row in card.items()}
    assert {r["feed"]: r["open_issues"] for r in again} == {feed: row.open_issues for feed, row in card.items()}
    # a city with quarantined rows and open issues ranks below 100, every bureau once
    ranked = monthly_ranking(stored, "2026-12")
    assert {r["bureau"] for r in ranked} == {c.bureau for c in contracts.values()}
    assert all(r["days"] == 1 and 0 <= r["score"] <= 100 for r in ranked) and min(r["score"] for r in ranked) < 100


def test_resource_health_counts_every_delivery_of_the_ingested_city(ingested_city):
    """resource_health on the ingested city (gate off): one row per silver
    table and base library; each feed's deliveries as ingest reported them,
    freshness from its table; no checks, so no pass rate; libraries not built."""
    from collections import Counter

    from pipelines.governance.health import snapshot_resource_health

    settings, contracts = ingested_city.settings, load_contracts()
    rows = {r["resource_id"]: r for r in snapshot_resource_health(contracts, settings)}
    stored = read_delta_rows(governance_path("resource_health", settings))
    assert sorted(r["resource_id"] for r in stored) == sorted(rows)
    delivered = Counter(r.feed for r in ingested_city.results if r.status != "already_loaded")
    loaded = {r.feed for r in ingested_city.results if r.status == "loaded"}
    for contract in contracts.values():
        row = rows[f"silver.{contract.slug}"]
        assert row["feeds"] == [contract.feed]
        assert row["deliveries"] == delivered[contract.feed], contract.feed
        assert (row["last_delivery_at"] is not None) == (contract.feed in loaded), contract.feed
        assert (row["last_changed_at"] is not None) == (contract.feed in loaded), contract.feed
        assert (row["checks"], row["pass_rate"]) == (0, None)
    libraries = [r for rid, r in rows.items() if rid.startswith("base.")]
    assert libraries and all(r["last_changed_at"] is None for r in libraries)
    assert all(r["deliveries"] == sum(delivered[f] for f in r["feeds"]) for r in libraries)
