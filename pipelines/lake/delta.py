"""The Delta helpers every stage uses: one way to read a lake table with
Spark (``read_table`` for governance tables, ``read_silver`` for a feed's
silver table) and the delta-rs writers and readers of the JVM-free ingest path
(``write_arrow_replacing``, ``append_rows``, ``upsert_rows``,
``read_delta_rows``). Where the tables live: ``pipelines.lake.paths``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.contracts import get_contract
from pipelines.lake.paths import governance_path, table_path
from pipelines.lake.tables import GOVERNANCE_TABLES
from pipelines.settings import Settings, get_settings


def delta_exists(spark, path: str) -> bool:
    """Is there a Delta table at ``path``: read from the log with delta-rs
    (``table_exists``). Spark's ``DeltaTable.isDeltaTable`` is a JVM round
    trip of about 40 ms, and a daily build asks about a hundred times.
    ``spark`` is unused; the callers' signature is kept."""
    return table_exists(path)


def delta_version(spark, path: str) -> int | None:
    """The table's current version, or None if there is no table yet. Read
    from the log with delta-rs: a Spark history query is a job of its own."""
    from deltalake import DeltaTable as LogTable

    if not delta_exists(spark, path):
        return None
    return LogTable(path).version()


def read_table(spark, name: str, settings: Settings | None = None):
    """``governance.<name>`` as a Spark DataFrame; while the table does not
    exist yet, an empty frame of its declared schema
    (``pipelines.lake.tables.GOVERNANCE_TABLES``)."""
    if name not in GOVERNANCE_TABLES:
        raise LookupError(f"no governance table {name!r}: known are {', '.join(sorted(GOVERNANCE_TABLES))}")
    path = governance_path(name, settings)
    if not delta_exists(spark, path):
        return spark.createDataFrame([], GOVERNANCE_TABLES[name])
    return spark.read.format("delta").load(path)


def read_silver(spark, feed: str, settings: Settings | None = None, load_ids=None):
    """The silver table of ``feed`` (``bureau.feed``) as a Spark DataFrame, or
    None while the feed has no delivery yet; an unknown feed raises
    ``ContractError``. With ``load_ids``, only those loads' rows: a build
    reads the loads the manifest calls live (silver is written before the
    manifest vouches for a load, and a snapshot's predecessors are deleted
    after it)."""
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    path = table_path("silver", get_contract(feed, settings.schemas_dir), settings)
    if not delta_exists(spark, path):
        return None
    frame = spark.read.format("delta").load(path)
    return frame if load_ids is None else frame.where(F.col("_load_id").isin(*sorted(load_ids)))


def live_loads_of(live: dict | None, feed: str) -> list[str] | None:
    """The load ids of ``feed`` a build reads: ``live[feed]`` (none live:
    []), or None (all of silver) when the caller passed no ``live``."""
    return None if live is None else live.get(feed, [])


COMMIT_ATTEMPTS = 8


class CommitConflictError(RuntimeError):
    """A delta-rs commit still conflicted after ``COMMIT_ATTEMPTS`` tries."""


def _with_commit_retries(write, path: str, what: str) -> None:
    """Run ``write`` (one delta-rs commit), retrying on a commit conflict.

    Loads of different feeds share the governance tables (quarantine, quality
    results, issues, manifest). delta-rs itself rebases a commit over
    concurrent commits that do not touch the same rows (other feeds'
    partitions, appends); what it cannot rebase, chiefly two processes
    creating the same table at once or changing its metadata, fails the
    commit without writing anything visible. Each write here is idempotent
    (it replaces exactly its own rows, or appends rows of a commit that did not
    happen), so it is simply repeated after a short random back-off; after
    ``COMMIT_ATTEMPTS`` the error names the table and the load fails, never
    losing rows silently."""
    import random
    import time

    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            write()
            return
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise CommitConflictError(f"{path}: {what}: commit still conflicting after {attempt} attempts: "
                                          f"{exc}") from exc
            time.sleep(random.uniform(0.05, 0.2) * attempt)


def write_arrow_replacing(table, path: str, predicate: str, tag: str, partition_by: str | None = None) -> None:
    """Replace the rows matching ``predicate`` with ``table`` in one Delta
    commit tagged ``tag``; creates the table if needed.

    ``table`` is an Arrow table, or a pyarrow dataset (the Parquet files a
    large delivery was staged in), which is streamed into the commit batch by
    batch in bounded memory. Written by delta-rs (the ``deltalake`` package)
    straight from Arrow: the ingest hot path never crosses into the JVM
    (docs/benchmarks.md). Every row must match ``predicate`` (delta-rs checks
    it, like Spark's ``replaceWhere``). Spark and Trino read these tables like
    any other.
    """
    from deltalake import CommitProperties, write_deltalake

    def source():   # a fresh reader for every attempt: a reader is consumed by the attempt that failed
        # one file at a time, a few batches ahead: memory stays bounded whatever the dataset's size
        return table if hasattr(table, "num_rows") else table.scanner(
            batch_size=64 * 1024, batch_readahead=4, fragment_readahead=1).to_reader()

    _with_commit_retries(lambda: write_deltalake(
        path, source(), mode="overwrite", predicate=predicate, partition_by=partition_by,
        commit_properties=CommitProperties(custom_metadata={"userMetadata": tag})), path, f"replace {predicate}")


def committed_rows(path: str, user_metadata: str) -> int:
    """Rows added by the newest commit tagged ``user_metadata``, whichever
    engine wrote it (delta-rs ``num_added_rows``, Spark ``numOutputRows``)."""
    from deltalake import DeltaTable

    for commit in DeltaTable(path).history(20):
        if commit.get("userMetadata") == user_metadata:
            metrics = commit.get("operationMetrics") or {}
            if "num_added_rows" in metrics:
                return int(metrics["num_added_rows"]) - int(metrics.get("num_copied_rows", 0))
            return int(metrics.get("numOutputRows", 0))
    return 0


_DDL_TYPES = {"string": "string", "long": "int64", "int": "int32", "boolean": "bool", "double": "float64",
              "date": "date32", "timestamp": "timestamp[us, tz=UTC]", "binary": "binary"}


def arrow_schema(ddl: str):
    """The Arrow schema of a Spark DDL string of simple columns
    (``name type, ...``; types string/long/int/boolean/double/date/timestamp
    and ``array<...>`` of them)."""
    import pyarrow as pa

    def arrow_type(name: str):
        if name.startswith("array<") and name.endswith(">"):
            return pa.list_(arrow_type(name[6:-1]))
        if name == "timestamp":
            return pa.timestamp("us", tz="UTC")
        return pa.type_for_alias(_DDL_TYPES[name])

    fields = [item.strip().split(" ", 1) for item in ddl.split(", ")]
    return pa.schema([(name, arrow_type(kind.strip())) for name, kind in fields])


def read_delta_rows(path: str, filters: list[tuple] | None = None) -> list[dict]:
    """Rows of a (small) Delta table as dicts, timestamps as naive UTC like
    Spark shows them; ``filters`` as pyarrow DNF (``[("feed", "=", "x")]``).
    [] when there is no table."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = arrow_dataset(DeltaTable(path)).to_table()
    except TableNotFoundError:
        return []
    # Filtered here, not pushed into the scan: files written by delta-rs's
    # MERGE carry string_view columns, and pyarrow's scan filter cannot compare
    # string with string_view (ArrowNotImplementedError).
    for column, operator, value in filters or []:
        if operator != "=":
            raise ValueError(f"read_delta_rows supports '=' filters only, not {operator!r}")
        table = table.filter(pc.fill_null(pc.equal(table.column(column), value), False))
    columns = {name: (column.cast(pa.timestamp("us")) if pa.types.is_timestamp(column.type) else column)
               for name, column in zip(table.column_names, table.columns)}
    return pa.table(columns).to_pylist() if columns else []


def rows_table(rows: list[dict], ddl: str):
    """``rows`` (dicts, missing keys null) as an Arrow table of the DDL's schema."""
    import pyarrow as pa

    schema = arrow_schema(ddl)
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def append_rows(path: str, rows: list[dict], ddl: str, partition_by: str | None = None) -> None:
    """Blind append of ``rows`` (dicts, missing keys null) in one commit."""
    from deltalake import write_deltalake

    table = rows_table(rows, ddl)
    _with_commit_retries(lambda: write_deltalake(path, table, mode="append", partition_by=partition_by),
                         path, f"append {len(rows)} rows")


def upsert_rows(path: str, rows: list[dict], ddl: str, key: str, partition: tuple[str, str],
                matched_predicate: str | None = None) -> dict:
    """Insert or replace ``rows`` by ``key`` within one partition (column,
    value) in one MERGE commit; creates the table partitioned by that column.
    With ``matched_predicate`` (on the target ``t``) an existing row is
    replaced only while it holds: a row someone else changed since it was
    read is left as they left it. Returns delta-rs's merge metrics."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import TableNotFoundError

    table = rows_table(rows, ddl)
    column, value = partition
    literal = "'" + value.replace("'", "''") + "'"
    metrics: dict = {}

    def upsert() -> None:
        try:
            target = DeltaTable(path)
        except TableNotFoundError:
            # the first rows create the table; a concurrent creator makes this
            # commit fail, and the retry merges into the table it created
            write_deltalake(path, table, mode="append", partition_by=column)
            metrics.update(num_target_rows_inserted=table.num_rows, num_target_rows_updated=0)
            return
        metrics.update((target.merge(table, predicate=f"t.{column} = {literal} AND t.{key} = s.{key}",
                                     source_alias="s", target_alias="t")
                        .when_matched_update_all(predicate=matched_predicate).when_not_matched_insert_all()
                        .execute()))

    _with_commit_retries(upsert, path, f"upsert {len(rows)} rows of {column} = {literal}")
    return metrics


def read_arrow(path: str, ddl: str):
    """The whole of a (small) Delta table as an Arrow table of the DDL's
    schema (delta-rs: no JVM), or None when there is no table."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    schema = arrow_schema(ddl)
    try:
        table = arrow_dataset(DeltaTable(path)).to_table(columns=schema.names)
    except TableNotFoundError:
        return None
    return table.select(schema.names).cast(schema)


def arrow_dataset(log):
    """The pyarrow dataset of the delta-rs table ``log``, its files read
    through pyarrow's own filesystem for the table's location rather than
    delta-rs's file handler, which calls into Python for every read: a
    146,548-row table of rescued rows took 9.8 s through the handler and
    0.5 s through pyarrow's, and a Python thread beside it ran a quarter
    slower meanwhile."""
    from urllib.parse import unquote, urlparse

    import pyarrow.fs as pafs

    location = urlparse(log.table_uri)
    if location.scheme not in ("", "file"):
        return log.to_pyarrow_dataset()      # an object store: its settings are delta-rs's
    root = unquote(location.path) if location.scheme else log.table_uri
    return log.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(root, pafs.LocalFileSystem()))


def arrow_readable(log) -> bool:
    """Can delta-rs hand the table ``log`` to pyarrow (``arrow_dataset``)?
    Not with a reader feature it does not support, deletion vectors above all."""
    from deltalake.table import SUPPORTED_READER_FEATURES

    return not set(log.protocol().reader_features or []) - SUPPORTED_READER_FEATURES


def datafusion_rows(log, sql: str):
    """The Arrow result of ``sql`` over the delta-rs table ``log``,
    registered as ``t``, run by delta-rs's DataFusion engine (which applies
    deletion vectors). Pulled through pyarrow's stream reader, which lets
    go of Python's lock while DataFusion works: read straight from
    delta-rs, the query held up every other Python thread of the build."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    return without_views(pa.RecordBatchReader.from_stream(
        QueryBuilder().register("t", log).execute(sql)).read_all())


def arrow_frame(spark, table):
    """The Arrow ``table`` as a Spark frame of rows in memory, in its Arrow
    types; an empty one too (Spark's ``createDataFrame`` fails on a table
    without batches)."""
    if table.num_rows:
        return spark.createDataFrame(table)
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame([], from_arrow_schema(table.schema))


def read_arrow_rows(path: str, partition: tuple[str, str] | None = None, where=None):
    """Every row of a (small) Delta table as Arrow (delta-rs: no JVM), or of
    one ``partition`` (column, value: only its files are opened), or those
    matching ``where`` (a pyarrow expression on columns without string
    views, pushed into the scan); None when there is no table. A table
    delta-rs's Arrow reader refuses (deletion vectors) is read through
    delta-rs's DataFusion engine, which applies them, in the same column
    order. String views (what delta-rs's MERGE and DataFusion produce) come
    back as plain strings, which Spark and pyarrow's kernels take."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        log = DeltaTable(path)
    except TableNotFoundError:
        return None
    in_partition = pc.field(partition[0]) == partition[1] if partition else None
    if not arrow_readable(log):
        sql = "SELECT * FROM t"
        if partition:
            column, value = partition
            sql += ' WHERE "' + column.replace('"', '""') + '" = ' + sql_strings([value])
        table = datafusion_rows(log, sql)
        table = table.select([field.name for field in log.schema().fields])
        return table.filter(where) if where is not None else table
    # a partition's filter only prunes files (their partition values)
    scan = in_partition if where is None else where if in_partition is None else in_partition & where
    return without_views(arrow_dataset(log).to_table(filter=scan))


def read_arrow_at(path: str, columns: list[str], version: int | None = None,
                  equal_to: tuple[str, str] | None = None):
    """``columns`` of a Delta table as Arrow at ``version`` (the latest when
    None), with the version read: ``(table, version)``, or ``(None, None)``
    when there is no table. ``equal_to`` (column, value) keeps the rows whose
    column has that value, pushed into the scan (a table clustered by that
    column reads one file). For readers that must be able to read the same
    data again (the inspection draw records the versions of its inputs and
    verification reads them back). Tables with deletion vectors go through
    delta-rs's DataFusion engine, as in ``read_arrow_rows``."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        log = DeltaTable(path) if version is None else DeltaTable(path, version=version)
    except TableNotFoundError:
        return None, None
    if not arrow_readable(log):
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        where = ""
        if equal_to:
            column, value = equal_to
            where = ' WHERE "' + column.replace('"', '""') + '" = ' + sql_strings([value])
        return datafusion_rows(log, f"SELECT {names} FROM t{where}"), log.version()
    scan = None if equal_to is None else ds.field(equal_to[0]) == equal_to[1]
    return without_views(arrow_dataset(log).to_table(columns=columns, filter=scan)), log.version()


def without_views(table):
    """The Arrow ``table`` with string and binary views made plain (nested ones too)."""
    import pyarrow as pa

    return table.cast(pa.schema([field.with_type(_without_views(field.type)) for field in table.schema]))


def _without_views(kind):
    """An Arrow type with string and binary views (nested ones too) made plain."""
    import pyarrow as pa

    if kind == pa.string_view():
        return pa.string()
    if kind == pa.binary_view():
        return pa.binary()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(kind.value_field.with_type(_without_views(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_without_views(field.type)) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(kind.key_field.with_type(_without_views(kind.key_type)),
                       kind.item_field.with_type(_without_views(kind.item_type)))
    return kind


def as_table_schema(path: str, table):
    """``table`` cast to the Arrow schema of the Delta table at ``path``
    (nullability included: a table Spark wrote may have non-null columns)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    schema = pa.schema(DeltaTable(path).schema().to_arrow())
    return table.select(schema.names).cast(schema)


def replace_table(path: str, table) -> None:
    """Replace every row of the Delta table at ``path`` (created if need be)
    with the Arrow ``table``, its schema the table's new one, in one commit."""
    from deltalake import write_deltalake

    _with_commit_retries(lambda: write_deltalake(path, table, mode="overwrite", schema_mode="overwrite"),
                         path, f"replace with {table.num_rows} rows")


def append_table(path: str, table) -> None:
    """Blind append of the Arrow ``table`` to the Delta table at ``path`` in one commit."""
    from deltalake import write_deltalake

    _with_commit_retries(lambda: write_deltalake(path, as_table_schema(path, table), mode="append"),
                         path, f"append {table.num_rows} rows")


def sql_strings(values: Iterable[str]) -> str:
    """``values`` as SQL string literals, comma-separated (quotes doubled): the items of an ``IN (...)`` list."""
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


def delete_rows(path: str, predicate: str) -> None:
    """Delete the rows matching ``predicate`` in one commit (delta-rs)."""
    from deltalake import DeltaTable

    _with_commit_retries(lambda: DeltaTable(path).delete(predicate), path, f"delete {predicate}")


def table_exists(path: str) -> bool:
    """Is there a Delta table at ``path`` (delta-rs: no JVM)."""
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(path)
