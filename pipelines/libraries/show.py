"""Read-only views of the base libraries for people, as plain data the CLI
renders: ``golden_record`` gives one current record, each attribute's value
with the feed and load it came from, the computed columns, and its open
conflicts. (Whether a library can be built now is ``build.source_readiness``.)
"""

from __future__ import annotations

from pipelines.lake.delta import read_table, table_exists
from pipelines.library_specs import HISTORY_COLUMNS, LibrarySpec, load_library_spec
from pipelines.settings import Settings, get_settings

# Columns of every golden record that are neither an attribute nor computed.
_RECORD_COLUMNS = frozenset({"known_to", "is_known_to_authority", *HISTORY_COLUMNS})


def computed_columns(spec: LibrarySpec, columns) -> list[str]:
    """The columns of a record that no attribute of ``spec`` provides (added
    by the library's ``enrich`` step), in record order."""
    provided = {spec.key, *_RECORD_COLUMNS}
    for attribute in spec.attributes:
        provided |= {attribute.name, f"{attribute.name}_source", f"{attribute.name}_load_id"}
    return [c for c in columns if c not in provided]


def golden_record(spark, library: str, value: str, settings: Settings | None = None) -> dict:
    """The current record of ``library`` whose key is ``value``:
    ``{"record", "attributes": [{name, value, source, load_id}], "computed":
    [{column, value}], "conflicts": [open conflict rows]}``. LookupError when
    the library is not built or has no such record."""
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    spec = load_library_spec(library, settings)
    path = settings.lake_path("base", library)
    if not table_exists(path):
        raise LookupError(f"base.{library} is not built yet: run `govlake build`")
    row = spark.read.format("delta").load(path).where((F.col(spec.key) == value) & F.col("is_current")).first()
    if row is None:
        raise LookupError(f"no {spec.key} {value} in base.{library}")
    record = row.asDict()
    conflicts = [c.asDict() for c in read_table(spark, "conflicts", settings)
                 .where((F.col("library") == library) & (F.col("subject") == value) & F.col("resolved_at").isNull())
                 .collect()]
    return {
        "record": record,
        "attributes": [{"name": a.name, "value": record[a.name], "source": record[f"{a.name}_source"],
                        "load_id": record[f"{a.name}_load_id"]} for a in spec.attributes],
        "computed": [{"column": c, "value": record[c]} for c in computed_columns(spec, record)],
        "conflicts": conflicts,
    }




def month_ends(today, months: int = 12) -> list:
    """The last ``months`` month ends before ``today``, oldest first. Pure."""
    from datetime import timedelta

    ends, day = [], today.replace(day=1) - timedelta(days=1)
    for _ in range(months):
        ends.append(day)
        day = day.replace(day=1) - timedelta(days=1)
    return ends[::-1]


def value_on(versions: list[dict], column: str, moment) -> object | None:
    """``column`` of the version of a record valid at ``moment`` (the
    libraries' history: ``valid_from <= moment < valid_to``), or None when
    the library did not know the record then. Pure."""
    for version in versions:
        if version["valid_from"] <= moment and (version["valid_to"] is None or moment < version["valid_to"]):
            return version[column]
    return None


def enterprise_profile(spark, uscc: str, settings: Settings | None = None, today=None) -> dict:
    """The profile of ``uscc`` (base.enterprise_profile's current row) in
    sections, with what depends on the reader's date: the valid licences
    expiring within 90 days of ``today``, and the insured employees at each
    of the last 12 month ends as base.legal_person knew them then (its
    history; null before it knew the entity). LookupError when the profile
    is not built or has no such entity."""
    from datetime import datetime, time, timedelta

    from pyspark.sql import functions as F

    from pipelines.settings import utc_now

    settings = settings or get_settings()
    today = today or utc_now().date()
    path = settings.lake_path("base", "enterprise_profile")
    if not table_exists(path):
        raise LookupError("base.enterprise_profile is not built yet: run `govlake build`")
    row = spark.read.format("delta").load(path).where((F.col("uscc") == uscc) & F.col("is_current")).first()
    if row is None:
        raise LookupError(f"no uscc {uscc} in base.enterprise_profile")
    record = row.asDict(recursive=True)
    versions = [r.asDict() for r in spark.read.format("delta").load(settings.lake_path("base", "legal_person"))
                .where(F.col("uscc") == uscc).select("valid_from", "valid_to", "insured_employees").collect()]
    trend = [{"month_end": end.isoformat(),
              "insured_employees": value_on(versions, "insured_employees",
                                            datetime.combine(end + timedelta(days=1), time.min))}
             for end in month_ends(today)]
    soon = [d for d in record["valid_licence_expiries"] if d < today + timedelta(days=90)]

    def pick(*names):
        return {name: record[name] for name in names}

    return {
        "uscc": uscc, "as_of": today.isoformat(),
        "registration": pick("entity_name", "entity_type", "registration_status", "established_date",
                             "industry_code", "industry_section", "registered_capital_wan_cny"),
        "place": pick("domicile_address", "domicile_address_code", "grid_code", "town_code", "town_name"),
        "legal_representative": pick("legal_representative", "legal_representative_person_id",
                                     "legal_representative_found"),
        "credit": pick("tax_credit_grade", "tax_evaluation_year", "credit_grade", "credit_score", "credit_reasons",
                       "credit_rule_set_version"),
        "records": pick("penalty_count", "penalty_latest_on", "abnormal_count", "abnormal_latest_on",
                        "abnormal_open", "dishonest_count", "dishonest_latest_on", "dishonest_open"),
        "licences": pick("licences_valid", "licences_expired", "licences_revoked")
        | {"expiring_within_90_days": len(soon), "next_expiry": min(soon) if soon else None},
        "employees": {"insured_employees": record["insured_employees"], "trend": trend},
        "hazards": pick("hazards_open", "hazards_closed", "hazard_latest_reported_at")
        | {"by_category": record["hazards_by_category"]},
        "inspections": pick("last_inspected_on", "last_inspection_result", "last_inspection_item"),
    }
