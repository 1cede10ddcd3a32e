"""Change tables: what a delivery that replaces others changed in silver.

A snapshot feed (contract ``delivery: snapshot``: the monthly registers of
insured persons, taxpayers, social organisations, addresses and grid cells)
sends the whole register every time; once a snapshot is loaded it supersedes
the feed's earlier deliveries, and a correction (``--replaces``) supersedes
the one it corrects. Silver then holds only the new delivery's rows, so an
incremental build (``pipelines.libraries.incremental``) must learn which keys
differ without treating every row of an 11-million-row register as new.

Before silver is swapped, the new rows are compared with the rows they
replace, on every contract column (lineage aside), and the difference goes to
the feed's change table ``lake/changes/<bureau>/<feed>`` in one Delta commit
tagged with the load id, like Delta's change data feed but keyed by load:

- ``_change = 'added'``: a row of the new delivery that no replaced row has
  (new, or a changed version), with the new load's lineage;
- ``_change = 'removed'``: a replaced row the new delivery no longer has
  (gone, or the old version), with its old lineage;
- ``_change = 'replaced_load'``: one marker row per replaced load
  (``_replaced_load_id``), data columns null: the record that the load was
  superseded with its changes written, which a build needs to stay
  incremental, and which a rerun after a crash finds.

The comparison is made while silver still holds the replaced rows: a
snapshot's own rows go in beside them, the manifest records the
replacement, and only then are they deleted (``pipelines.ingest.load``).

Every change row carries ``_change_load_id``, the delivery that caused it.
The comparison runs in DuckDB over Arrow (no JVM on the ingest path).
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.contracts import Contract
from pipelines.lake.delta import arrow_dataset, table_exists, write_arrow_replacing
from pipelines.lake.paths import table_path
from pipelines.settings import Settings

LAYER = "changes"
ADDED, REMOVED, REPLACED_LOAD = "added", "removed", "replaced_load"


def snapshot_diff(new_rows, old_rows, columns: list[str], load_id: str, replaced: list[str]) -> pa.Table:
    """The change rows of ``load_id`` (see the module docstring): rows of
    ``new_rows`` no row of ``old_rows`` equals on ``columns`` (nulls equal),
    rows of ``old_rows`` no new row equals, and one marker per ``replaced``
    load. Both inputs are Arrow tables or datasets of one schema. Pure."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.register("new_rows", new_rows)
        con.register("old_rows", old_rows)
        same = " AND ".join(f'n."{c}" IS NOT DISTINCT FROM o."{c}"' for c in columns)
        schema = new_rows.schema
        listed = ", ".join(f'"{name}"' for name in schema.names)
        query = (f"SELECT {listed}, '{ADDED}' AS _change FROM new_rows n WHERE NOT EXISTS "
                 f"(SELECT 1 FROM old_rows o WHERE {same}) "
                 f"UNION ALL SELECT {listed}, '{REMOVED}' AS _change FROM old_rows n WHERE NOT EXISTS "
                 f"(SELECT 1 FROM new_rows o WHERE {same})")
        changed = con.sql(query).to_arrow_table()
    finally:
        con.close()
    changed = changed.cast(pa.schema(list(schema) + [pa.field("_change", pa.string())]))
    changed = changed.append_column("_change_load_id", pa.array([load_id] * changed.num_rows, pa.string()))
    changed = changed.append_column("_replaced_load_id", pa.nulls(changed.num_rows, pa.string()))
    markers = pa.table({name: pa.nulls(len(replaced), field.type) for name, field in
                        zip(changed.schema.names, changed.schema)})
    markers = markers.set_column(markers.schema.get_field_index("_change"), "_change",
                                 pa.array([REPLACED_LOAD] * len(replaced), pa.string()))
    markers = markers.set_column(markers.schema.get_field_index("_change_load_id"), "_change_load_id",
                                 pa.array([load_id] * len(replaced), pa.string()))
    markers = markers.set_column(markers.schema.get_field_index("_replaced_load_id"), "_replaced_load_id",
                                 pa.array(sorted(replaced), pa.string()))
    return pa.concat_tables([changed, markers])


def changes_recorded(contract: Contract, load_id: str, settings: Settings) -> set[str]:
    """The loads ``load_id``'s recorded comparison replaced (an earlier
    attempt of the load that died after writing it), or an empty set."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    path = table_path(LAYER, contract, settings)
    if not table_exists(path):
        return set()
    markers = arrow_dataset(DeltaTable(path)).to_table(
        columns=["_replaced_load_id"],
        filter=(pc.field("_change_load_id") == load_id) & (pc.field("_change") == REPLACED_LOAD))
    return set(markers["_replaced_load_id"].to_pylist())


def record_changes(contract: Contract, load_id: str, new_rows, replaced: list[str], settings: Settings) -> dict:
    """Compare ``new_rows`` (the load's silver rows, Arrow table or dataset)
    with the silver rows of the ``replaced`` loads and write the difference
    to the feed's change table, replacing any of this load's earlier
    attempt. Runs while silver still holds the replaced rows (they are
    deleted once the manifest records the replacement); a rerun that finds
    the comparison recorded against the same loads leaves it, one against
    other loads (another snapshot came meanwhile) is made again. Returns
    rows added and removed (None when recorded earlier)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    path = table_path(LAYER, contract, settings)
    if changes_recorded(contract, load_id, settings) == set(replaced):
        return {"added": None, "removed": None}
    silver_path = table_path("silver", contract, settings)
    if table_exists(silver_path):
        old = arrow_dataset(DeltaTable(silver_path)).filter(pc.field("_load_id").isin(replaced))
    else:
        old = new_rows.schema.empty_table()
    changed = snapshot_diff(new_rows, old, [c.name for c in contract.columns], load_id, replaced)
    write_arrow_replacing(changed, path, f"_change_load_id = '{load_id}'", load_id)
    kinds = pc.value_counts(changed["_change"]).to_pylist()
    counts = {item["values"]: item["counts"] for item in kinds}
    return {"added": counts.get(ADDED, 0), "removed": counts.get(REMOVED, 0)}


def read_replacements(contract: Contract, settings: Settings) -> dict[str, str]:
    """Replaced load -> the load that replaced it, from the feed's change table."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    path = table_path(LAYER, contract, settings)
    if not table_exists(path):
        return {}
    markers = (arrow_dataset(DeltaTable(path))
               .to_table(columns=["_replaced_load_id", "_change_load_id"],
                         filter=pc.field("_change") == REPLACED_LOAD))
    return dict(zip(markers["_replaced_load_id"].to_pylist(), markers["_change_load_id"].to_pylist()))


def change_rows(spark, contract: Contract, loads: list[str], settings: Settings):
    """The added and removed rows ``loads`` caused (Spark), or None."""
    from pyspark.sql import functions as F

    path = table_path(LAYER, contract, settings)
    if not loads or not table_exists(path):
        return None
    return (spark.read.format("delta").load(path)
            .where(F.col("_change_load_id").isin(*loads) & F.col("_change").isin(ADDED, REMOVED)))
