"""Quality gates: Great Expectations suites built from contracts, run on every delivery.

Suites are files in the repo (``quality/suites/<feed>.json``, GX's own suite
format) rendered from two sources: the feed contract (required, key,
identifier, enum, date, coordinate and town rules; the quarantine share and
row-count band) and the hand-written expectations in
``quality/custom/<feed>.yaml`` that a contract cannot express. Every
expectation carries ``meta.blocking``: a failing *blocking* expectation keeps
the delivery out of silver; a failing *warning* is recorded only.

The gate validates the *delivery* (``pipelines.ingest.classify.gate_table``): one row per delivered
record, duplicates removed, each column holding its valid typed value or null
when it was missing or broke a rule, plus ``_outcome`` (loaded / quarantined)
and ``_row_number``. GX runs in process with a file data context under
``<lake>/quality/gx`` so that Data Docs keep every run's history. Deliveries
(Arrow tables) are validated by GX's SQL engine on an in-process DuckDB that
reads the Arrow table in place (``pipelines.quality.duckdb_source``; GX's
pandas engine gives the same results ~15× slower and stays selectable as
``GOVLAKE_GATE_ENGINE=pandas``); library tables (Spark DataFrames, built in
Spark) by GX's Spark engine. No JVM starts for a delivery.

Data Docs are not rebuilt per validation: ``build_data_docs`` renders the
validations of a run once at its end (``govlake ingest``, a feed DAG's
pick-up, a library build) and in full on ``govlake quality report``.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from pipelines.contracts import Contract
from pipelines.lake.delta import rows_table, write_arrow_replacing
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import QUALITY_RESULTS_DDL
from pipelines.quality.suites import (
    ROW_NUMBER_COLUMN,
    SuiteError,
    library_suite,
    library_suite_path,
    load_suite,
    suite_path,
)
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- suites


# --------------------------------------------------------------------------- the batch


# --------------------------------------------------------------------------- running GX

@dataclass
class ExpectationOutcome:
    expectation_type: str
    column_name: str | None
    rule: str
    blocking: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: str | None
    kwargs: dict
    sample_rows: list = field(default_factory=list)   # row numbers (deliveries) or keys (libraries)

    @property
    def label(self) -> str:
        target = self.column_name or ",".join(self.kwargs.get("column_list", [])) or (
            f"{self.kwargs.get('column_A')}>{self.kwargs.get('column_B')}" if "column_A" in self.kwargs else "table")
        return f"{self.expectation_type}({target})"

    def describe(self) -> str:
        if self.unexpected_count is not None and self.element_count:
            return f"{self.label}: {self.unexpected_count} of {self.element_count} rows ({self.unexpected_percent:.1f}%)"
        return f"{self.label}: observed {self.observed_value}"


class GateError(RuntimeError):
    """GX could not evaluate an expectation (not a failing expectation: a broken one)."""


@dataclass
class GateResult:
    feed: str
    load_id: str
    run_id: str
    success: bool                 # every expectation passed
    blocked: bool                 # a blocking expectation failed
    outcomes: list[ExpectationOutcome]
    engine: str = "duckdb"
    seconds: float = 0.0
    validation_ids: list = field(default_factory=list, repr=False)  # GX result keys, for Data Docs

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.blocking and not o.success]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.blocking and not o.success]


_gx_import_lock = __import__("threading").Lock()


def _import_gx() -> None:
    """Import GX (through the DuckDB datasource module) under one process-wide
    lock: GX's modules import each other in cycles, and two threads entering
    them from different modules at once deadlock."""
    with _gx_import_lock:
        import pipelines.quality.duckdb_source  # noqa: F401


def start_gx_import():
    """Start importing GX (~2.5 s of CPU, once per process) on a background
    thread and return it (None when GX is already imported). Ingest starts it
    before hashing and parsing a delivery, which release the GIL, and joins it
    before the rules, which would contend with it for the GIL."""
    import sys
    import threading

    if "pipelines.quality.duckdb_source" in sys.modules:
        return None
    thread = threading.Thread(target=_import_gx, name="gx-import", daemon=True)
    thread.start()
    return thread


@contextmanager
def _gx_lock(settings: Settings):
    """Hold the lake's GX context for this process: GX's file context keeps
    datasources and assets in one ``great_expectations.yml`` that every
    validation rewrites, so loads of different feeds running at once (Airflow
    workers, two ``govlake ingest``) take turns from reading the context to
    writing the results. Reading and classifying the deliveries stays parallel."""
    import fcntl

    root = settings.local_lake_path("quality")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "gx.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_contexts: dict[str, tuple[tuple, object]] = {}   # project root -> (its config file's identity, context)


def _context(settings: Settings):
    """The lake's GX file context. Kept for the process while its
    ``great_expectations.yml`` is the same file, unchanged (a context takes
    0.05 s to build, and a run builds one for the gate and one for Data Docs)."""
    _import_gx()   # also registers GX's ``duckdb`` datasource type
    import great_expectations as gx

    root = settings.local_lake_path("quality")
    config = root / "gx" / "great_expectations.yml"
    with suppress(OSError):
        stat = config.stat()
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        kept = _contexts.get(str(root))
        if kept is not None and kept[0] == identity:
            return kept[1]
    root.mkdir(parents=True, exist_ok=True)
    context = _configured_context(gx.get_context(mode="file", project_root_dir=str(root)), root)
    with suppress(OSError):
        stat = config.stat()
        _contexts[str(root)] = ((stat.st_ino, stat.st_mtime_ns, stat.st_size), context)
    return context


def _configured_context(context, root: Path):
    import great_expectations as gx

    # No analytics (offline networks), no progress bars, and no config
    # variables file: the lake's GX context substitutes nothing, and GX
    # re-reads and parses that file at every access to a context variable
    # (about 100 per validation: 0.17 s of a small delivery's 0.4 s gate).
    if (context.variables.analytics_enabled is not False or context.variables.progress_bars is None
            or context.variables.config_variables_file_path is not None):
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.analytics_enabled = False
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.config_variables_file_path = None
        context.variables.save()
        context = gx.get_context(mode="file", project_root_dir=str(root))   # built without that file's provider
    return context


def data_docs_index(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.local_lake_path("quality", "gx", "uncommitted", "data_docs", "local_site", "index.html")


def _suite_object(suite: dict):
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    gx_suite = gx.ExpectationSuite(name=suite["name"], meta=suite.get("meta", {}))
    for item in suite["expectations"]:
        configuration = ExpectationConfiguration(type=item["type"], kwargs=item["kwargs"], meta=item.get("meta", {}))
        gx_suite.add_expectation_configuration(configuration)
    return gx_suite


def _observed(result: dict) -> str | None:
    value = result.get("observed_value")
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)[:500]


GATE_ENGINES = ("duckdb", "pandas")


def _raised(info) -> str | None:
    """The message of an exception GX caught while evaluating an expectation
    (its ``exception_info`` is one record or one per metric), else None."""
    records = [info] if isinstance(info, dict) and "raised_exception" in info else (info or {}).values()
    for record in records:
        if isinstance(record, dict) and record.get("raised_exception"):
            return str(record.get("exception_message"))[:500]
    return None


def _is_arrow(frame) -> bool:
    """An Arrow table, or a pyarrow dataset (a large delivery's staged gate
    rows); anything else is a Spark DataFrame."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    return isinstance(frame, (pa.Table, ds.Dataset))


def _arrow_table(frame, columns: list[str] | None = None):
    """``frame`` (Arrow table or dataset) as an Arrow table of ``columns``."""
    import pyarrow.dataset as ds

    if isinstance(frame, ds.Dataset):
        return frame.to_table(columns=columns)
    return frame.select(columns) if columns else frame


def gate_engine(frame, settings: Settings) -> str:
    """GX's engine for ``frame``: ``spark`` for a Spark DataFrame (library
    builds), else ``Settings.gate_engine`` (``duckdb`` unless set)."""
    if not _is_arrow(frame):
        return "spark"
    if settings.gate_engine not in GATE_ENGINES:
        raise ValueError(f"GOVLAKE_GATE_ENGINE={settings.gate_engine!r}: expected one of {', '.join(GATE_ENGINES)}")
    return settings.gate_engine


def validate_delivery(frame, contract: Contract, load_id: str, parameters: dict,
                      settings: Settings | None = None, rows: int | None = None) -> GateResult:
    """Run the feed's checkpoint on one delivery's gate frame and build Data Docs.

    ``frame`` is the Arrow gate table; ``rows`` is accepted for callers that
    know the count (GX counts it anyway).
    """
    settings = settings or get_settings()
    suite = load_suite(contract, settings)
    missing = {e["kwargs"].get("column") for e in suite["expectations"]} - set(_column_names(frame)) - {None}
    if missing:
        raise SuiteError(f"{suite_path(contract, settings)}: columns {sorted(missing)} are not in {contract.feed}")
    return _run_checkpoint(frame, suite, contract.feed, load_id, parameters, settings, rows, ROW_NUMBER_COLUMN)


def _column_names(frame) -> list[str]:
    """Column names of a Spark DataFrame, an Arrow table or a pyarrow dataset."""
    if _is_arrow(frame):
        return frame.schema.names
    return frame.columns


def _checkpoint_run(frame, suite: dict, run_name: str, parameters: dict, settings: Settings, engine: str,
                    index_column: str):
    """The GX part of ``_run_checkpoint`` (under the GX lock): the checkpoint
    result and the run id."""
    from contextlib import nullcontext

    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(settings)
    name = suite["name"]
    batch_parameters = None
    staging = nullcontext()
    if engine == "duckdb":
        from pipelines.quality.duckdb_source import staged

        staging = staged(_gate_table_name(name), frame)
    elif engine == "spark":
        batch_parameters = {"dataframe": frame}
    else:
        batch_parameters = {"dataframe": _arrow_table(frame).to_pandas()}
    with staging:
        checkpoint = _gx_checkpoint(context, suite, engine, index_column, settings)
        run_at = utc_now().replace(tzinfo=UTC)   # GX takes a naive run time as local time
        run_id = f"{run_name}@{run_at:%Y%m%dT%H%M%S}"
        checkpoint_result = checkpoint.run(
            batch_parameters=batch_parameters, expectation_parameters=parameters,
            run_id=RunIdentifier(run_name=run_name, run_time=run_at))
    return checkpoint_result, run_id


def _spill_folder(settings: Settings) -> Path:
    """Where the gate's DuckDB spills beyond ``GOVLAKE_GATE_MEMORY_LIMIT``."""
    folder = settings.local_lake_path("tmp", "duckdb")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _gate_table_name(suite_name: str) -> str:
    return "gate_" + suite_name.replace(".", "_")


def _gx_checkpoint(context, suite: dict, engine: str, index_column: str, settings: Settings):
    """The GX checkpoint that validates ``suite`` on ``engine``, with its
    datasource, asset, batch definition, suite and validation definition.

    Stored once and reused while nothing it is made of has changed (a
    fingerprint of the suite, engine, index column and connection settings
    is kept beside GX's stores): storing them again each time took 0.2 s of
    a small delivery's 0.4 s gate. Anything missing or changed is stored
    again. Other suites' assets are kept (a datasource is replaced only when
    its connection settings change)."""
    import hashlib

    import great_expectations as gx

    name = suite["name"]
    source_name, source_kwargs = f"lake_{engine}", {}
    if engine == "duckdb":
        from pipelines.quality.duckdb_source import CONNECTION_STRING, connection_kwargs

        source_kwargs = connection_kwargs(settings.gate_memory_limit, str(_spill_folder(settings)))
    fingerprint = hashlib.sha256(json.dumps(
        [suite, engine, index_column, source_kwargs], sort_keys=True, default=str).encode()).hexdigest()
    marker = settings.local_lake_path("quality", "gx", "uncommitted", "govlake_checkpoints", f"{name}.{engine}")
    if marker.is_file() and marker.read_text() == fingerprint:
        try:
            context.data_sources.get(source_name).get_asset(name).get_batch_definition("delivery")
            return context.checkpoints.get(f"{name}.{engine}")
        except Exception as exc:   # noqa: BLE001 - removed or unreadable by hand: stored again below
            log.info("GX checkpoint %s.%s is stored again: %s", name, engine, exc)
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, LookupError, ValueError):
        source = None
    if engine == "duckdb" and (source is None or source.kwargs != source_kwargs):
        source = context.data_sources.add_or_update_duckdb(
            source_name, connection_string=CONNECTION_STRING, kwargs=source_kwargs)
    elif engine == "spark" and source is None:
        source = context.data_sources.add_or_update_spark(source_name)
    elif engine == "pandas" and source is None:
        source = context.data_sources.add_or_update_pandas(source_name)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = (source.add_table_asset(name, table_name=_gate_table_name(name)) if engine == "duckdb"
                 else source.add_dataframe_asset(name))
    try:
        batch = asset.get_batch_definition("delivery")
    except (KeyError, LookupError):
        batch = (asset.add_batch_definition_whole_table("delivery") if engine == "duckdb"
                 else asset.add_batch_definition_whole_dataframe("delivery"))
    gx_suite = context.suites.add_or_update(_suite_object(suite))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}.{engine}", data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"{name}.{engine}", validation_definitions=[definition], actions=[],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [index_column],
                       "partial_unexpected_count": 10},
    ))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    return checkpoint


def _run_checkpoint(frame, suite: dict, subject: str, run_name: str, parameters: dict, settings: Settings,
                    rows: int | None, index_column: str) -> GateResult:
    """One GX checkpoint run of ``suite`` on ``frame`` (an Arrow table, or a
    Spark DataFrame for library tables); ``index_column`` names sample rows.
    Data Docs are left to ``build_data_docs``."""
    import time

    started = time.monotonic()
    engine = gate_engine(frame, settings)
    _import_gx()   # outside the lock: other processes need not wait for this one's import
    with _gx_lock(settings):
        checkpoint_result, run_id = _checkpoint_run(frame, suite, run_name, parameters, settings, engine,
                                                    index_column)
    outcomes = []
    for validation in checkpoint_result.run_results.values():
        for item in validation.results:
            config = item.expectation_config
            result = item.result or {}
            if error := _raised(item.exception_info):
                raise GateError(f"{subject}: GX could not evaluate {config.type}"
                                f"({config.kwargs.get('column', '')}) on the {engine} engine: {error}")
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            samples = [row.get(index_column) for row in result.get("partial_unexpected_index_list") or []
                       if isinstance(row, dict)]
            unexpected = result.get("unexpected_count")
            if unexpected is None and result.get("element_count") == 0 and "unexpected_percent" in result:
                unexpected = 0   # an empty delivery: GX's SQL engine says None where pandas says 0
            if (engine == "duckdb" and config.type == "expect_compound_columns_to_be_unique" and unexpected
                    and not samples):
                samples = compound_duplicate_rows(
                    frame, kwargs["column_list"], index_column, kwargs.get("ignore_row_if", "all_values_are_missing"),
                    memory_limit=settings.gate_memory_limit, temp_directory=str(_spill_folder(settings)))
            outcomes.append(ExpectationOutcome(
                expectation_type=config.type, column_name=kwargs.get("column"),
                rule=(config.meta or {}).get("rule", config.type),
                blocking=bool((config.meta or {}).get("blocking", False)), success=bool(item.success),
                element_count=result.get("element_count"), unexpected_count=unexpected,
                unexpected_percent=result.get("unexpected_percent"), observed_value=_observed(result),
                kwargs=kwargs, sample_rows=[s for s in samples if s is not None]))
    blocked = any(o.blocking and not o.success for o in outcomes)
    return GateResult(subject, run_name, run_id, success=all(o.success for o in outcomes), blocked=blocked,
                      outcomes=outcomes, engine=engine, seconds=time.monotonic() - started,
                      validation_ids=list(checkpoint_result.run_results))


def compound_duplicate_rows(frame, columns: list[str], index_column: str,
                            ignore_row_if: str = "all_values_are_missing", limit: int = 10,
                            memory_limit: str | None = None, temp_directory: str | None = None) -> list:
    """The first ``limit`` rows (in delivery order) whose combination of
    ``columns`` occurs more than once, nulls equal, skipping rows as GX's
    ``ignore_row_if`` says (``all_values_are_missing``, ``any_value_is_missing``
    or ``never``): the sample rows GX's pandas engine gives for
    ``expect_compound_columns_to_be_unique`` and its SQL engine leaves out."""
    import duckdb

    def quoted(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    names = ", ".join(quoted(c) for c in columns)
    joiner = {"all_values_are_missing": " OR ", "any_value_is_missing": " AND "}.get(ignore_row_if)
    if joiner is None and ignore_row_if != "never":
        raise GateError(f"expect_compound_columns_to_be_unique: ignore_row_if={ignore_row_if!r} is not one of "
                        "all_values_are_missing, any_value_is_missing, never")
    present = joiner.join(f"t.{quoted(c)} IS NOT NULL" for c in columns) if joiner else "true"
    same = " AND ".join(f"t.{quoted(c)} IS NOT DISTINCT FROM d.{quoted(c)}" for c in columns)
    import pyarrow as pa
    import pyarrow.dataset as ds

    if isinstance(frame, ds.Dataset):
        # a large delivery's staged rows, scanned by DuckDB in bounded memory;
        # they are staged in delivery order, so their row numbers give it
        delivery, position = frame, quoted(index_column)
        config = {"threads": 1} | ({"memory_limit": memory_limit, "temp_directory": temp_directory}
                                   if memory_limit and temp_directory else {})
    else:
        selected = _arrow_table(frame, [*dict.fromkeys([*columns, index_column])])
        delivery = selected.append_column("__position", pa.array(range(selected.num_rows), pa.int64()))
        position, config = "__position", {}
    with duckdb.connect(config=config) as connection:
        connection.register("delivery", delivery)
        found = connection.execute(
            f"SELECT t.{quoted(index_column)} FROM delivery t "
            f"JOIN (SELECT {names} FROM delivery t WHERE {present} GROUP BY {names} HAVING count(*) > 1) d "
            f"ON {same} WHERE {present} ORDER BY t.{position} LIMIT {int(limit)}").fetchall()
    return [row[0] for row in found]


def build_data_docs(settings: Settings | None = None, gates: list[GateResult] | None = None) -> Path | None:
    """Render Data Docs once: the pages of ``gates``' validations and the
    index, or every stored validation when ``gates`` is None. Returns the
    index page (None when no validation has run yet)."""
    settings = settings or get_settings()
    ids = [key for gate in gates or [] if gate is not None for key in gate.validation_ids]
    if gates is not None and not ids:
        index = data_docs_index(settings)
        return index if index.exists() else None
    if gates is None and not settings.local_lake_path("quality", "gx").is_dir():
        return None
    with _gx_lock(settings):
        _context(settings).build_data_docs(resource_identifiers=ids or None)
    index = data_docs_index(settings)
    return index if index.exists() else None


# --------------------------------------------------------------------------- base-library suites


def validate_library(frame, library: str, run_name: str, settings: Settings | None = None,
                     rows: int | None = None) -> GateResult:
    """The gate of a base-library table (one golden record per key, referential
    integrity via the ``*_found`` columns the library build computes, valid
    identifiers). Sample rows are key values."""
    settings = settings or get_settings()
    path = library_suite_path(library, settings)
    suite = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else library_suite(library, settings)
    missing = {e["kwargs"].get("column") for e in suite["expectations"]} - set(_column_names(frame)) - {None}
    if missing:
        raise SuiteError(f"quality/libraries/{library}.yaml: columns {sorted(missing)} are not in base.{library}")
    return _run_checkpoint(frame, suite, f"base.{library}", run_name, {}, settings, rows, suite["meta"]["key"])


def record_results(gate: GateResult, contract: Contract, source_file: str,
                   settings: Settings | None = None) -> None:
    """Replace this load's rows in ``governance.quality_results`` with this run
    (delta-rs, one commit: the ingest path stays out of the JVM)."""
    settings = settings or get_settings()
    validated_at = utc_now()
    rows = [{
        "run_id": gate.run_id, "load_id": gate.load_id, "feed": contract.feed, "bureau": contract.bureau,
        "suite": contract.slug, "expectation_type": o.expectation_type, "column_name": o.column_name,
        "expectation": o.label, "rule": o.rule, "blocking": o.blocking, "success": o.success,
        "element_count": o.element_count, "unexpected_count": o.unexpected_count,
        "unexpected_percent": float(o.unexpected_percent) if o.unexpected_percent is not None else None,
        "observed_value": o.observed_value, "kwargs": json.dumps(o.kwargs, ensure_ascii=False, default=str),
        "sample_rows": [f"{source_file}:{r}" for r in o.sample_rows], "validated_at": validated_at,
    } for o in gate.outcomes]
    write_arrow_replacing(rows_table(rows, QUALITY_RESULTS_DDL), governance_path("quality_results", settings),
                          f"feed = '{contract.feed}' AND load_id = '{gate.load_id}'",
                          f"{gate.load_id} quality_results", partition_by="feed")


def blocked_message(gate: GateResult) -> str:
    failures = "; ".join(o.describe() for o in gate.blocking_failures)
    return f"blocked by the quality gate: {failures}"


# --------------------------------------------------------------------------- reporting

