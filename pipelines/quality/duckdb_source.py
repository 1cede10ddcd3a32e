"""GX's SQL execution engine on an in-process DuckDB that sees Arrow tables.

Why: the delivery gate's 14 expectations on a 1M-row hukou delivery take
0.7 s as DuckDB SQL against 10-13 s on GX's pandas engine, with the same
results (docs/benchmarks.md, issue 14; ``tests/integration/test_gate_engines.py``
compares both on every delivery of a generated city). DuckDB reads the Arrow
table the classifier produced in place (``register``: no copy, no file).

GX 1.24 has no DuckDB datasource; this module adds one through GX's own
extension point (a ``SQLDatasource`` subclass with ``type: duckdb``, found by
``context.data_sources.add_or_update_duckdb``). Three things make it work:

- GX reads a query's rows after leaving the connection's ``with`` block; on
  DuckDB the rollback on close discards the pending result, so the engine
  keeps one connection, as GX itself does for SQLite and SQL Server.
- every connection of the datasource's engines registers the staged Arrow
  tables (``staged``) when it opens: GX builds more than one engine.
- GX picks its regex operator from the dialect module; DuckDB's ``~`` is
  PostgreSQL's (partial match, RE2 syntax covers the suites' patterns), so the
  engine names PostgreSQL's module.

Importing this module imports GX (~2.5 s): only ``pipelines.quality.gate``
does, when a gate runs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import duckdb
import sqlalchemy as sa
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine

CONNECTION_STRING = "duckdb:///:memory:"
# One thread: GX fetches sample rows without ORDER BY, and only a
# single-threaded scan returns the first unexpected rows in file order, as the
# pandas engine reports them (and the same ones on every run). Two threads
# gave no gain on the 1M-row gate (docs/benchmarks.md).
CONNECTION_KWARGS = {"connect_args": {"config": {"threads": 1}}}


def connection_kwargs(memory_limit: str, temp_directory: str) -> dict:
    """``CONNECTION_KWARGS`` with a memory limit and where to spill beyond it:
    the gate of a delivery larger than memory (a staged Parquet dataset)
    aggregates out of core instead of growing with the file."""
    config = CONNECTION_KWARGS["connect_args"]["config"] | {
        "memory_limit": memory_limit, "temp_directory": temp_directory}
    return {"connect_args": {"config": config}}

_staged: dict[str, object] = {}
_registered: dict[str, list] = {}       # name -> DuckDB connections that registered it
_staged_lock = threading.Lock()
_engines: weakref.WeakSet = weakref.WeakSet()   # live DuckDBExecutionEngines


@contextmanager
def staged(name: str, table) -> Iterator[str]:
    """Make the Arrow ``table`` (or pyarrow dataset) visible as table ``name`` to every DuckDB
    connection of the datasource while the block runs; dropped after, so the
    delivery's memory is released."""
    with _staged_lock:
        if name in _staged:
            raise RuntimeError(f"a DuckDB gate table {name!r} is already staged (one validation per feed at a time)")
        _staged[name] = table
    try:
        yield name
    finally:
        with _staged_lock:
            _staged.pop(name, None)
            connections = _registered.pop(name, [])
        for engine in list(_engines):   # an open transaction keeps the scanned table alive
            engine.end_transaction()
        for raw in connections:         # and so would the view
            with suppress(duckdb.Error):   # a closed connection holds nothing
                raw.unregister(name)


def _register_staged(connection: sa.Connection) -> None:
    """Register the staged tables this DuckDB connection has not seen yet
    (DuckDB refuses ``register`` while a result is pending, so only when the
    staged set changed)."""
    raw = connection.connection.driver_connection
    with _staged_lock:
        for name, table in _staged.items():
            holders = _registered.setdefault(name, [])
            if not any(known is raw for known in holders):
                raw.register(name, table)
                holders.append(raw)


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQLAlchemy engine with one persistent DuckDB connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        sa.event.listen(self.engine, "engine_connect", _register_staged)
        self.dialect_module = sa.dialects.postgresql   # regex: DuckDB's ``~`` is PostgreSQL's
        _engines.add(self)

    @contextmanager
    def get_connection(self) -> Iterator[sa.Connection]:
        if not self._connection:
            self._connection = self.engine.connect()
        else:
            _register_staged(self._connection)
        try:
            yield self._connection
        except Exception:
            # a failed statement aborts DuckDB's transaction: without a
            # rollback every later query of the validation would fail too,
            # hiding which expectation broke
            self.end_transaction()
            raise

    def end_transaction(self) -> None:
        """Roll back the persistent connection's transaction (it only reads)."""
        if self._connection is not None:
            with suppress(Exception):
                self._connection.rollback()


class DuckDBDatasource(SQLDatasource):
    """``type: duckdb`` in the GX context: an in-memory DuckDB over staged Arrow tables."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine

    def _create_engine(self) -> sa.engine.Engine:
        engine = super()._create_engine()
        sa.event.listen(engine, "engine_connect", _register_staged)
        return engine
