"""The demand list turns requests into grants; the four lists are Delta tables."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date

import pytest
from pyspark.sql import functions as F

from pipelines.contracts import load_contracts
from pipelines.lake.delta import read_table
from pipelines.lake.paths import governance_path
from pipelines.serving.access import explain
from pipelines.serving.catalog import CatalogError, load_catalog
from pipelines.serving.requests import consent_request, decide_request, file_request, refresh_lists
from pipelines.settings import get_settings


@pytest.fixture
def catalog_copy(tmp_path):
    settings = get_settings()
    shutil.copytree(settings.catalog_dir, tmp_path / "catalog")
    return dataclasses.replace(settings, home=str(tmp_path / "lake"), catalog_dir=tmp_path / "catalog")


def test_request_approve_becomes_a_live_grant(spark, catalog_copy):
    settings = catalog_copy
    before = explain("mca_officer", "silver.psb_hukou", settings, on=date(2026, 11, 29))
    assert before.columns["id_number"].state == "denied"
    request = file_request("mca", "silver.psb_hukou", ["id_number", "full_name"], "婚姻登记核验户籍",
                           "《婚姻登记条例》第七条", date(2027, 12, 31), "clerk-wang", settings=settings)
    pending = read_table(spark, "demand_list", settings).where(F.col("request_id") == request["request_id"]).first()
    assert pending["status"] == "pending"
    with pytest.raises(ValueError, match="needs the consent of psb"):
        decide_request(request["request_id"], True, "governor-li", "依法核验所需", settings)
    with pytest.raises(ValueError, match="hrss_officer cannot consent.*belong to psb"):
        consent_request(request["request_id"], "hrss_officer", settings)
    consented = consent_request(request["request_id"], "psb_analyst", settings)
    assert consented["consents"][0].startswith("bureau=psb by=psb_analyst at=")
    decided = decide_request(request["request_id"], True, "governor-li", "依法核验所需", settings)
    assert decided["status"] == "approved" and decided["grant_file"].startswith("catalog/grants/dr-")
    grant = next(g for g in load_catalog(settings).grants if g.source.startswith(decided["grant_file"]))
    assert grant.consent == consented["consents"]
    after = explain("mca_officer", "silver.psb_hukou", settings, on=date(2026, 11, 29))
    assert after.columns["id_number"].state == "masked" and after.columns["full_name"].state == "full"
    assert "dr-" in after.columns["full_name"].reason
    with pytest.raises(ValueError, match="already approved"):
        decide_request(request["request_id"], False, "governor-li", "again", settings)


def test_rejected_request_gives_nothing_and_bad_requests_are_refused(spark, catalog_copy):
    settings = catalog_copy
    request = file_request("edu", "silver.psb_hukou", ["full_name"], "x", "y", date(2027, 1, 1), "u",
                           settings=settings)
    decided = decide_request(request["request_id"], False, "governor-li", "无法律依据", settings)
    assert decided["status"] == "rejected" and decided["grant_file"] is None
    assert explain("edu_officer", "silver.psb_hukou", settings).columns["full_name"].state == "denied"
    with pytest.raises(CatalogError, match="no column"):
        file_request("edu", "silver.psb_hukou", ["shoe_size"], "x", "y", date(2027, 1, 1), "u",
                     settings=settings)


def test_the_lists_are_delta_tables(spark, catalog_copy):
    settings = catalog_copy
    counts = refresh_lists(spark, settings, on=date(2026, 11, 29))
    sharing = spark.read.format("delta").load(governance_path("sharing_list", settings))
    assert sharing.count() == counts["sharing_list"] >= 4
    states = {(r["department"], r["resource"]): r["state"] for r in sharing.collect()}
    assert states[("edu", "silver.psb_hukou")] == "expired" and states[("hrss", "silver.psb_residence_permit")] == "live"
    collection = spark.read.format("delta").load(governance_path("collection_list", settings))
    assert collection.count() == len(load_contracts()) == 18
    assert {r["status"] for r in collection.collect()} == {"missing"}
