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


