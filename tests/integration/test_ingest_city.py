"""Ingest of a whole generated city, checked against the generator's ground truth."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from pyspark.sql import functions as F

from pipelines.contracts import load_contracts
from pipelines.governance.collection import collection_status
from pipelines.ingest.load import ingest_directory
from pipelines.lake.delta import delta_version
from pipelines.lake.manifest import read_manifest
from pipelines.lake.paths import governance_path, table_path

CONTRACTS = load_contracts()


def _silver(spark, city, feed):
    return spark.read.format("delta").load(table_path("silver", CONTRACTS[feed], city.settings))


def _quarantine(spark, city):
    return spark.read.format("delta").load(governance_path("quarantine", city.settings))


def test_every_delivery_reaches_its_expected_status(spark, ingested_city):
    manifest = {r["source_file"]: r["status"] for r in read_manifest(spark, ingested_city.settings).collect()}
    files = ingested_city.truth_rows("files.csv")
    assert files and len(ingested_city.results) == len(files)
    for row in files:
        name = Path(row["file"]).name
        result = ingested_city.result(name)
        if row["expected_status"] == "already_loaded":
            assert result.status == "already_loaded", name
            assert "nothing changed" in result.message
        else:
            assert manifest[name] == row["expected_status"], (name, result.message)


def test_every_load_reconciles_with_the_committed_tables(spark, ingested_city):
    quarantine = _quarantine(spark, ingested_city).groupBy("_load_id").count().collect()
    quarantined = {r["_load_id"]: r["count"] for r in quarantine}
    replaced = {r.replaces_load_id for r in ingested_city.results}
    checked = 0
    assert ingested_city.results
    for result in ingested_city.results:
        assert result.reconciles, result
        if result.status != "loaded" or result.load_id in replaced:
            continue
        checked += 1
        silver = _silver(spark, ingested_city, result.feed).where(F.col("_load_id") == result.load_id).count()
        assert silver == result.rows_loaded, result
        assert quarantined.get(result.load_id, 0) == result.rows_quarantined, result
        records = next(int(r["records"]) for r in ingested_city.truth_rows("files.csv")
                       if Path(r["file"]).name == result.source_file)
        assert result.rows_read == records
    assert checked == sum(r["expected_status"] == "loaded" for r in ingested_city.truth_rows("files.csv"))


def test_quarantine_matches_the_injected_defects_exactly(spark, ingested_city):
    """Every unrecoverable defect is caught with its rule; no clean row is quarantined."""
    replaced = {r.replaces_load_id for r in ingested_city.results}
    live = {r.load_id: r.source_file for r in ingested_city.results
            if r.status == "loaded" and r.load_id not in replaced}
    rows = (_quarantine(spark, ingested_city).where(F.col("_load_id").isin(list(live)))
            .select("_source_file", "_row_number", "failures").collect())
    quarantined = {(r["_source_file"], r["_row_number"]): {(f["header"], f["rule"]) for f in r["failures"]}
                   for r in rows}
    labels = ingested_city.labels_by_row()
    expected = {key for key, items in labels.items() if key[0] in live.values()
                and any(i["expected"] in ("quarantine", "header") for i in items)}
    assert expected and set(quarantined) == expected
    for key in expected:
        for label in labels[key]:
            if label["expected"] == "quarantine":
                assert (label["column"], label["rule"]) in quarantined[key], (key, label, quarantined[key])
            if label["expected"] == "header":
                assert ("", "repeated_header") in quarantined[key]
    defects = {label["defect"] for items in labels.values() for label in items}
    assert {"id_excel_mangled", "id_wrong_check", "id_impossible_birth_date", "id_gender_parity",
            "uscc_wrong_check", "date_invalid", "missing_required", "repeated_header", "duplicate_row"} <= defects


def test_duplicates_removed_are_the_injected_copies(ingested_city):
    labels = ingested_city.labels_by_row()
    per_file = defaultdict(int)
    for (file_name, _), items in labels.items():
        per_file[file_name] += sum(i["expected"] == "duplicate" for i in items)
    loaded = [result for result in ingested_city.results if result.status == "loaded"]
    assert loaded and sum(result.rows_duplicate for result in loaded) > 0
    for result in loaded:
        assert result.rows_duplicate == per_file[result.source_file], result.source_file


def test_repaired_identifiers_equal_the_true_values(spark, ingested_city):
    repaired = [label for items in ingested_city.labels_by_row().values() for label in items
                if label["expected"] == "fixed" and label["defect"].startswith(("id_", "uscc_"))]
    assert {"id_lowercase_x", "id_legacy_15", "id_fullwidth_digits", "id_padded_spaces",
            "uscc_padded_spaces"} <= {label["defect"] for label in repaired}
    checked = 0
    for feed, contract in CONTRACTS.items():
        by_header = {c.header: c.name for c in contract.columns}
        wanted = [label for label in repaired if label["feed"] == feed]
        if not wanted:
            continue
        silver = {(r["_source_file"], r["_row_number"]): r.asDict()
                  for r in _silver(spark, ingested_city, feed).collect()}
        for label in wanted:
            row = silver.get((label["file"], int(label["row_number"])))
            if row is None:  # the row was quarantined for another defect, or replaced
                continue
            assert row[by_header[label["column"]]] == label["true_value"], label
            checked += 1
    assert checked > 50


def test_silver_persons_equal_the_true_persons(spark, ingested_city):
    truth = {p["person_id"]: p for p in ingested_city.truth_rows("persons.csv")}
    hukou = _silver(spark, ingested_city, "psb.hukou").collect()
    assert len(hukou) > 1000
    for row in hukou:
        person = truth[row["id_number"]]
        assert (row["full_name"], row["gender"], row["birth_date"].isoformat(), person["registration"]) == (
            person["full_name"], person["gender"], person["birth_date"], "hukou")
    residents = _silver(spark, ingested_city, "psb.residence_permit").select("id_number", "town_name").collect()
    towns = {p["person_id"]: p["town_code"] for p in truth.values()}
    from pipelines.reference import TOWN_CODE_BY_NAME
    # every residence-permit holder but the few whose row was quarantined
    assert len(residents) >= 0.9 * sum(p["registration"] == "residence" for p in truth.values())
    assert all(TOWN_CODE_BY_NAME[r["town_name"]] == towns[r["id_number"]] for r in residents)


def test_entity_names_keep_their_brackets(spark, ingested_city):
    truth = {e["uscc"]: e["name"] for e in ingested_city.truth_rows("entities.csv")}
    registered = _silver(spark, ingested_city, "amr.business_registration").select("uscc", "enterprise_name").collect()
    assert len(registered) >= 0.9 * len(truth)
    assert all(truth[r["uscc"]] == r["enterprise_name"] for r in registered)
    # the abnormal list arrives with its columns in reverse order
    abnormal = _silver(spark, ingested_city, "amr.abnormal_list").select("uscc", "enterprise_name").collect()
    assert abnormal and all(truth[r["uscc"]] == r["enterprise_name"] for r in abnormal)


def test_file_shapes_are_handled(spark, ingested_city):
    by_feed = {r.feed: r for r in ingested_city.results if r.status == "loaded"}
    assert by_feed["psb.hukou"].encoding == "gb18030"
    assert by_feed["mca.marriage"].encoding == "utf-8-sig"
    assert by_feed["psb.residence_permit"].encoding == "xlsx"
    insurance = by_feed["hrss.social_insurance"]
    assert insurance.extra_headers == ["备注"]
    bronze = spark.read.format("delta").load(table_path("bronze", CONTRACTS["hrss.social_insurance"],
                                                        ingested_city.settings))
    assert bronze.where(F.map_contains_key("_extra", "备注")).count() == insurance.rows_read
    death = by_feed["mca.death"]
    assert death.missing_columns == ["殡仪馆"] and "missing, loaded as null" in death.message
    assert _silver(spark, ingested_city, "mca.death").where(F.col("funeral_home").isNotNull()).count() == 0
    rejected = next(r for r in ingested_city.results if r.status == "rejected")
    assert "missing required column(s) 证件号码 (debtor_id)" in rejected.message
    rules = {r["rule"] for r in _quarantine(spark, ingested_city).where(F.col("_load_id") == rejected.load_id)
             .select("rule").collect()}
    assert rules == {"missing_required_column"}


def test_correction_replaces_the_earlier_delivery(spark, ingested_city):
    original = ingested_city.result("penalty_20261128.csv")
    corrected = ingested_city.result("penalty_20261128_更正.csv")
    assert corrected.status == "loaded" and corrected.replaces_load_id == original.load_id
    loads = {r["_load_id"] for r in _silver(spark, ingested_city, "amr.penalty").select("_load_id").distinct().collect()}
    assert loads == {corrected.load_id}
    assert _quarantine(spark, ingested_city).where(F.col("_load_id") == original.load_id).count() == 0
    assert _silver(spark, ingested_city, "amr.penalty").count() == corrected.rows_loaded


def test_ingesting_everything_again_changes_no_table(spark, ingested_city):
    settings = ingested_city.settings
    paths = [table_path(layer, c, settings) for c in CONTRACTS.values() for layer in ("bronze", "silver")]
    paths += [governance_path("quarantine", settings), governance_path("load_manifest", settings)]
    before = {p: delta_version(spark, p) for p in paths}
    again = ingest_directory(ingested_city.deliveries, CONTRACTS, settings=settings)
    assert len(again) == len(ingested_city.results)
    assert {r.status for r in again} <= {"already_loaded", "rejected"}
    assert {p: delta_version(spark, p) for p in paths} == before


def test_collection_list_marks_feeds_on_time_then_late(spark, ingested_city):
    now = datetime.utcnow()
    statuses = {s.feed: s for s in collection_status(spark, CONTRACTS, ingested_city.settings, now=now)}
    assert {s.status for s in statuses.values()} == {"on_time"}
    assert statuses["psb.hukou"].last_rows == ingested_city.result("hukou_20261128.csv").rows_read
    later = {s.feed: s.status for s in collection_status(spark, CONTRACTS, ingested_city.settings,
                                                          now=now + timedelta(days=3))}
    assert later["psb.hukou"] == "late" and later["nr.standard_address"] == "on_time"
