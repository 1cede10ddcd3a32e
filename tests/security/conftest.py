"""One real Trino for the attack suite: a small published lake (three residence
permits, their hukou records, a population library with a death, a marriage
and a past version, governance tables with planted personal data), the
project's catalog copied so tests can add grant files, the rules keeper
running every few seconds, and every department user of the catalog."""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import date, datetime

import pytest
import trino

from pipelines.contracts import get_contract
from pipelines.lake.paths import table_path
from pipelines.serving.catalog import load_catalog
from pipelines.serving.publish import trino_up_with_rules
from pipelines.serving.trino import query, trino_down
from pipelines.settings import get_settings
from tests.integration.permits import PERMITS, write_permits

# The city's people in the population library: the three permit holders,
# plus a hukou resident who died and is married (the facts a department
# without those grants must not learn).
DECEASED_ID = "441900195005057771"
# a row base.population's file still holds but a deletion vector removed (as
# the daily MERGE leaves closed versions): no query may see it
REMOVED_ID = "441900198801010019"
DECEASED = {"person_id": DECEASED_ID, "full_name": "丁", "gender": "男", "birth_date": date(1950, 5, 5),
            "hukou_address": "东莞市南城街道四路4号", "population_status": "死亡", "marital_status": "已婚",
            "death_date": date(2026, 1, 2), "town_code": "441900004", "is_deceased": True,
            "known_to": ["psb.hukou", "mca.death", "mca.marriage@husband"]}
ETHNICITY = "回"           # not shared: only the owner bureau may see it
SECURITY_PORT = 18446


def _spark_type(kind: str) -> str:
    return {"date": "date", "timestamp": "timestamp", "boolean": "boolean", "array": "array<string>",
            "integer": "bigint"}.get(kind, "string")


def population_rows() -> list[dict]:
    """Current and past versions of base.population, every catalog column set
    the way the library build sets it (provenance, history)."""
    people = []
    for p in PERMITS:
        people.append({"person_id": p[0], "full_name": p[1], "gender": p[2], "birth_date": p[3],
                       "residence_address": p[4], "residence_town": p[5], "phone": p[6],
                       "town_code": "441900004" if p[5] == "南城街道" else "441900121", "is_deceased": False,
                       "population_status": "正常", "known_to": ["psb.hukou", "psb.residence_permit"]})
    people.append(dict(DECEASED))
    rows = []
    built = datetime(2026, 11, 1)
    for person in people:
        row = dict(person, ethnicity=ETHNICITY, is_known_to_authority=True, record_hash=0x5EED,
                   valid_from=built, valid_to=None, is_current=True)
        for name, value in list(person.items()):
            if name not in ("person_id", "known_to", "town_code", "is_deceased") and value is not None:
                row[f"{name}_source"] = {"death_date": "mca.death", "marital_status": "mca.marriage"}.get(
                    name, "psb.hukou")
                row[f"{name}_load_id"] = "L-0001"
        rows.append(row)
    # the deceased person's version before the death was registered
    past = dict(rows[-1], death_date=None, death_date_source=None, death_date_load_id=None, is_deceased=False,
                population_status="正常", is_current=False, valid_from=datetime(2025, 1, 1), valid_to=built)
    return rows + [past]


def write_population(spark, settings) -> None:
    resource = load_catalog(settings).resources["base.population"]
    schema = ", ".join(f"{c.name} {_spark_type(c.type)}" for c in resource.columns)
    names = [c.name for c in resource.columns]
    removed = dict(population_rows()[0], person_id=REMOVED_ID, full_name="戊")
    frame = spark.createDataFrame([tuple(row.get(n) for n in names) for row in population_rows() + [removed]],
                                  schema)
    # one file for every town, as a library build writes them, with deletion vectors on as the build sets them
    path = settings.lake_path("base", "population")
    frame.coalesce(1).write.format("delta").mode("overwrite").option("delta.enableDeletionVectors", "true").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE person_id = '{REMOVED_ID}'")


# base.enterprise_profile: one firm in 南城 and one in 虎门, each with a legal
# representative whose name and ID only the owner bureau (市场监管局) and
# those granted may read
PROFILE_REPRESENTATIVES = {"91441900MA4NC0001X": ("441900004", "甲一", "441900198001010011"),
                           "91441900MA4HM0002Y": ("441900121", "乙二", "441900198202020022")}
PROFILE_TYPES = {"valid_licence_expiries": "array<date>", "credit_reasons": "array<string>",
                 "hazards_by_category": "array<struct<category:string,open:bigint,closed:bigint>>",
                 "registered_capital_wan_cny": "decimal(18,2)", "credit_score": "int",
                 "tax_evaluation_year": "int", "hazard_latest_reported_at": "timestamp"}


def write_enterprise_profile(spark, settings) -> None:
    resource = load_catalog(settings).resources["base.enterprise_profile"]
    names = [c.name for c in resource.columns]
    schema = ", ".join(f"{c.name} {PROFILE_TYPES.get(c.name) or _spark_type(c.type)}" for c in resource.columns)
    rows = []
    for uscc, (town, name, person) in PROFILE_REPRESENTATIVES.items():
        row = {"uscc": uscc, "entity_name": f"{name}公司", "town_code": town, "legal_representative": name,
               "legal_representative_person_id": person, "legal_representative_found": True,
               "credit_grade": "B", "penalty_count": 1, "licences_valid": 2,
               "valid_licence_expiries": [date.today(), date(2099, 1, 1)], "credit_reasons": [],
               "hazards_by_category": [], "hazards_open": 1, "record_hash": 7, "valid_from": datetime(2026, 11, 1),
               "is_current": True}
        rows.append(tuple(row.get(n) for n in names))
    frame = spark.createDataFrame(rows, schema)
    frame.write.format("delta").mode("overwrite").save(settings.lake_path("base", "enterprise_profile"))


def write_hukou(spark, settings) -> None:
    contract = get_contract("psb.hukou")
    rows = [(p[0], p[1], p[2], ETHNICITY, p[3], p[4], "H1", "户主", p[7], "正常") for p in PERMITS]
    rows.append((DECEASED_ID, "丁", "男", ETHNICITY, date(1950, 5, 5), DECEASED["hukou_address"], "H4", "户主",
                 date(2000, 1, 1), "死亡"))
    frame = spark.createDataFrame(rows, "id_number string, full_name string, gender string, ethnicity string, "
                                        "birth_date date, hukou_address string, household_number string, "
                                        "relation_to_head string, registered_date date, population_status string")
    frame.write.format("delta").mode("overwrite").save(table_path("silver", contract, settings))


def wait_for_rules(settings, user: str = "hrss_officer", seconds: float = 40) -> None:
    """Until ``user`` can log in and the rules file has been re-read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            query("select 1", user=user, settings=settings, max_attempts=1)
            break
        except trino.exceptions.HttpError:
            time.sleep(1)
    time.sleep(6)          # Trino re-reads the rules file every 5 s


@pytest.fixture(scope="session")
def secured_lake(spark, tmp_path_factory):
    from tests.security.governance_rows import write_governance_samples

    root = tmp_path_factory.mktemp("security")
    catalog = root / "catalog"
    shutil.copytree(get_settings().catalog_dir, catalog)
    settings = dataclasses.replace(get_settings(), home=str(root / "lake"), trino_home=root / "trino",
                                   trino_port=SECURITY_PORT, trino_heap="2G", catalog_dir=catalog,
                                   rules_refresh_seconds=3)
    write_permits(spark, settings)
    write_hukou(spark, settings)
    write_population(spark, settings)
    write_enterprise_profile(spark, settings)
    write_governance_samples(spark, settings)
    status = trino_up_with_rules(settings)
    assert "rules_error" not in status, status.get("rules_error")
    wait_for_rules(settings)
    yield settings
    trino_down(settings)


def run_as(settings, user: str, sql: str):
    """Rows of ``sql`` run as ``user``."""
    return query(sql, user=user, settings=settings, max_attempts=1)[1]
