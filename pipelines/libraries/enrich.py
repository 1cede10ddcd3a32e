"""Computed columns of the golden libraries (declared as ``enrich:`` in their
specs): address codes, town codes, links between libraries, counts.
Each takes the golden records, the source frames, the settings and the build
date, and returns the records with the columns added. Every column's rule
(what it is, where it comes from, when it is null) is stated as ``rule:``
under ``catalog.columns`` in the library spec, which the catalog shows: keep
the two in step."""

from __future__ import annotations

from datetime import date

from pipelines.lake.delta import delta_exists
from pipelines.libraries.address import address_keys_from_lake, match_addresses
from pipelines.libraries.matching import town_code_of
from pipelines.settings import Settings


def _with_address_codes(records, pairs: list[tuple[str, str]], spark, settings: Settings):
    from pyspark.sql import functions as F

    keys = address_keys_from_lake(spark, settings)
    for text_column, output in pairs:
        if keys is None:
            records = records.withColumn(output, F.lit(None).cast("string"))
        else:
            records = match_addresses(records, text_column, keys, output)
    return records


DEATH_FEED = "mca.death"
RESIDENCE_PERMIT = "psb.residence_permit"


def is_deceased(records, permits, as_of: date):
    """``is_deceased`` (issue 17 item 5). Pure. True with a death record (the
    person is known to mca.death, or the hukou population status is 死亡);
    false when the person has a live registration with the authority (hukou
    status 正常, or a residence permit valid on ``as_of``: 有效期至 on or
    after it, or not delivered) and no death record; null when neither is
    known (e.g. hukou 迁出 and no permit, an expired permit, or a person known
    only to other bureaus).

    ``permits``: the residence-permit source frame (``id_number``,
    ``valid_until``) or None."""
    from pyspark.sql import functions as F

    if permits is not None:
        live = (permits.where(F.col("id_number").isNotNull())
                .groupBy(F.col("id_number").alias("_permit_id"))
                .agg(F.max(F.coalesce(F.col("valid_until") >= F.lit(as_of), F.lit(True))).alias("_permit_live")))
        records = (records.join(live, records["person_id"] == live["_permit_id"], "left").drop("_permit_id"))
    else:
        records = records.withColumn("_permit_live", F.lit(None).cast("boolean"))
    dead = (F.array_contains(F.col("known_to"), DEATH_FEED)
            | F.coalesce(F.col("population_status") == "死亡", F.lit(False)))
    alive = (F.coalesce(F.col("population_status") == "正常", F.lit(False))
             | F.coalesce(F.col("_permit_live"), F.lit(False)))
    return records.withColumn(
        "is_deceased", F.when(dead, F.lit(True)).when(alive, F.lit(False)).otherwise(F.lit(None).cast("boolean"))
    ).drop("_permit_live")


def permits_lapsed(frames: dict, since: date, as_of: date):
    """Persons whose ``is_deceased`` can change between builds on ``since``
    and ``as_of`` with no new delivery: a residence permit valid on
    ``since`` and no longer on ``as_of`` (``is_deceased``'s rule). Column
    ``_key``, or None without permits."""
    from pyspark.sql import functions as F

    permits = frames.get(RESIDENCE_PERMIT)
    if permits is None:
        return None
    return (permits.where(F.col("id_number").isNotNull() & (F.col("valid_until") >= F.lit(since))
                          & (F.col("valid_until") < F.lit(as_of)))
            .select(F.col("id_number").alias("_key")))


def population(spark, records, frames: dict, settings: Settings, as_of: date):
    """+ hukou / residence address codes, ``town_code`` (where the person lives:
    residence permit town, else the hukou address's town), ``is_deceased``
    (``is_deceased``, as of the build date ``as_of``)."""
    from pyspark.sql import functions as F

    records = _with_address_codes(records, [("hukou_address", "hukou_address_code"),
                                            ("residence_address", "residence_address_code")], spark, settings)
    records = records.withColumn(
        "town_code", F.coalesce(town_code_of(F.col("residence_town")), town_code_of(F.col("hukou_address"))))
    return is_deceased(records, frames.get(RESIDENCE_PERMIT), as_of)


def legal_person(spark, records, frames: dict, settings: Settings, as_of: date):
    """+ ``industry_section`` (GB/T 4754 letter), ``town_code``, domicile address
    code, ``insured_employees`` (people whose insurance with the entity is
    active, from 人社局), and ``legal_representative_found`` (the
    representative's ID resolves to base.population)."""
    from pyspark.sql import functions as F

    records = _with_address_codes(records, [("domicile_address", "domicile_address_code")], spark, settings)
    # social organisations belong to GB/T 4754 section S (公共管理、社会保障和社会组织)
    section = F.coalesce(F.substring("industry_code", 1, 1),
                         F.when(F.col("entity_type_source") == "mca.social_org", F.lit("S")))
    records = records.withColumn("industry_section", section).withColumn(
        "town_code", F.coalesce(town_code_of(F.col("town_name")), town_code_of(F.col("domicile_address"))))
    insured = frames.get("hrss.social_insurance@employer")
    if insured is not None:
        counts = (insured.where((F.col("insurance_status") == "参保缴费") & F.col("employer_uscc").isNotNull())
                  .groupBy(F.col("employer_uscc").alias("uscc")).agg(F.count_distinct("id_number")
                                                                      .alias("insured_employees")))
        records = records.join(counts, "uscc", "left").withColumn(
            "insured_employees", F.coalesce("insured_employees", F.lit(0)).cast("long"))
    else:
        records = records.withColumn("insured_employees", F.lit(None).cast("long"))
    population_path = settings.lake_path("base", "population")
    if delta_exists(spark, population_path):
        # the representatives' IDs first cut base.population's current persons (a semi-join Spark can
        # broadcast on a day's few thousand entities), so the persons are not shuffled for the join
        records = records.localCheckpoint()
        wanted = (records.where(F.col("legal_representative_id").isNotNull())
                  .select(F.col("legal_representative_id").alias("_rep_id")).distinct())
        persons = (spark.read.format("delta").load(population_path).where("is_current")
                   .select(F.col("person_id").alias("_rep_id"))
                   .join(wanted, "_rep_id", "left_semi")
                   .select("_rep_id", F.lit(True).alias("_rep_found")))
        records = (records.join(persons, records["legal_representative_id"] == persons["_rep_id"], "left")
                   .withColumn("legal_representative_found", F.coalesce("_rep_found", F.lit(False)))
                   .drop("_rep_id", "_rep_found"))
    else:
        records = records.withColumn("legal_representative_found", F.lit(False))
    return records.withColumn(
        "legal_representative_person_id",
        F.when(F.col("legal_representative_found"), F.col("legal_representative_id")))
