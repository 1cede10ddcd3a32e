"""Quality gates: Great Expectations suites built from contracts, run on every delivery.

Suites are files in the repo (``quality/suites/<feed>.json``, GX's own suite
format) rendered from two sources: the feed contract (required, key,
identifier, enum, date, coordinate and town rules; the quarantine share and
row-count band) and the hand-written expectations in
``quality/custom/<feed>.yaml`` that a contract cannot express. Every
expectation carries ``meta.blocking``: a failing *blocking* expectation keeps
the delivery out of silver; a failing *warning* is recorded only.

The gate validates the *delivery* (``pipelines.classify.gate_table``): one row per delivered
record, duplicates removed, each column holding its valid typed value or null
when it was missing or broke a rule, plus ``_outcome`` (loaded / quarantined)
and ``_row_number``. GX runs in process on Spark with a file data context
under ``<lake>/quality/gx`` so that Data Docs keep every run's history.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipelines import reference as ref
from pipelines.contracts import Contract
from pipelines.lake import delta_exists, governance_path
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

OUTCOME_COLUMN = "_outcome"
ROW_NUMBER_COLUMN = "_row_number"
BIRTH_DATE_SUFFIX = "__birth_date"      # gate column derived from an ID number
ROW_COUNT_BAND = 0.5                    # next delivery within ±50% of the last (warning)

_USCC_CHAR = "[0-9A-HJ-NPQRTUWXY]"
ID_NUMBER_PATTERN = r"^[1-9][0-9]{16}[0-9X]$"
USCC_PATTERN = rf"^{_USCC_CHAR}{{2}}[0-9]{{6}}{_USCC_CHAR}{{10}}$"
ID_OR_USCC_PATTERN = rf"(?:{ID_NUMBER_PATTERN})|(?:{USCC_PATTERN})"

QUALITY_RESULTS_DDL = (
    "run_id string, load_id string, feed string, bureau string, suite string, expectation_type string, "
    "column_name string, expectation string, rule string, blocking boolean, success boolean, "
    "element_count long, unexpected_count long, unexpected_percent double, observed_value string, "
    "kwargs string, sample_rows array<string>, validated_at timestamp"
)


class SuiteError(ValueError):
    """A suite or custom expectation file is malformed; the message names the file."""


# --------------------------------------------------------------------------- suites

def _expectation(kind: str, kwargs: dict, *, blocking: bool, rule: str, origin: str, notes: str = "") -> dict:
    meta = {"blocking": blocking, "rule": rule, "origin": origin}
    if notes:
        meta["notes"] = notes
    return {"type": kind, "kwargs": kwargs, "meta": meta}


def contract_expectations(contract: Contract) -> list[dict]:
    """The expectations a contract implies, in a stable order."""
    origin = f"contract {contract.feed}"
    tolerance = round(1 - contract.quarantine_threshold, 6)
    found = [
        _expectation("expect_table_row_count_to_be_between",
                     {"min_value": {"$PARAMETER": "min_rows"}, "max_value": {"$PARAMETER": "max_rows"}},
                     blocking=False, rule="row_count_band", origin=origin,
                     notes=f"within ±{ROW_COUNT_BAND:.0%} of the feed's previous delivery"),
        _expectation("expect_column_values_to_be_in_set",
                     {"column": OUTCOME_COLUMN, "value_set": ["loaded"], "mostly": tolerance},
                     blocking=True, rule="quarantine_share", origin=origin,
                     notes=f"ingest quarantined at most {contract.quarantine_threshold:.0%} of the delivery"),
    ]
    for column in contract.columns:
        if column.required:
            found.append(_expectation(
                "expect_column_values_to_not_be_null", {"column": column.name, "mostly": tolerance},
                blocking=True, rule=f"{column.name}.present_and_valid", origin=origin,
                notes=f"{column.header} present and valid"))
    keys = list(contract.key_columns)
    if len(keys) == 1:
        found.append(_expectation("expect_column_values_to_be_unique", {"column": keys[0], "mostly": 0.999},
                                  blocking=False, rule=f"{keys[0]}.unique", origin=origin))
    elif keys:
        found.append(_expectation(
            "expect_compound_columns_to_be_unique",
            {"column_list": keys, "ignore_row_if": "any_value_is_missing", "mostly": 0.999},
            blocking=False, rule=f"{'+'.join(keys)}.unique", origin=origin))
    for column in contract.columns:
        name, kind = column.name, column.type
        if kind in ("id_number", "uscc", "id_or_uscc"):
            pattern = {"id_number": ID_NUMBER_PATTERN, "uscc": USCC_PATTERN, "id_or_uscc": ID_OR_USCC_PATTERN}[kind]
            found.append(_expectation("expect_column_values_to_match_regex", {"column": name, "regex": pattern},
                                      blocking=True, rule=f"{name}.{kind}_format", origin=origin))
        elif kind == "enum":
            found.append(_expectation("expect_column_values_to_be_in_set",
                                      {"column": name, "value_set": list(column.values)},
                                      blocking=True, rule=f"{name}.enum", origin=origin))
        elif kind == "date":
            found.append(_expectation("expect_column_values_to_be_between",
                                      {"column": name, "min_value": "1900-01-01", "max_value": "2100-12-31"},
                                      blocking=True, rule=f"{name}.date_range", origin=origin))
        elif kind in ("longitude", "latitude"):
            low, high = ref.CITY_LONGITUDE if kind == "longitude" else ref.CITY_LATITUDE
            found.append(_expectation("expect_column_values_to_be_between",
                                      {"column": name, "min_value": low, "max_value": high},
                                      blocking=True, rule=f"{name}.inside_city", origin=origin))
        elif kind in ("town_code", "town_name"):
            towns = sorted(ref.TOWNS) if kind == "town_code" else sorted(ref.TOWN_CODE_BY_NAME)
            found.append(_expectation("expect_column_values_to_be_in_set", {"column": name, "value_set": towns},
                                      blocking=True, rule=f"{name}.known_town", origin=origin))
    return found


def custom_expectations(contract: Contract, settings: Settings | None = None) -> list[dict]:
    """Hand-written expectations from ``quality/custom/<feed>.yaml`` (none if absent)."""
    settings = settings or get_settings()
    path = Path(settings.quality_dir) / "custom" / f"{contract.feed}.yaml"
    if not path.is_file():
        return []
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found = []
    known = set(gate_columns(contract))
    for index, item in enumerate(document.get("expectations", [])):
        where = f"quality/custom/{path.name}: expectations[{index}]"
        if not isinstance(item, dict) or "type" not in item or "rule" not in item:
            raise SuiteError(f"{where}: needs 'type' and 'rule'")
        kwargs = dict(item.get("kwargs") or {})
        for key in ("column", "column_A", "column_B"):
            if key in kwargs and kwargs[key] not in known:
                raise SuiteError(f"{where}.kwargs.{key}: unknown column {kwargs[key]!r} "
                                 f"(known: {', '.join(sorted(known))})")
        found.append(_expectation(item["type"], kwargs, blocking=bool(item.get("blocking", False)),
                                  rule=item["rule"], origin=f"quality/custom/{contract.feed}.yaml",
                                  notes=item.get("notes", "")))
    return found


def build_suite(contract: Contract, settings: Settings | None = None) -> dict:
    """The suite for one feed as a plain dict in GX's suite JSON format."""
    settings = settings or get_settings()
    sources = [f"schemas/feeds/{contract.bureau}/{contract.feed_name}.yaml"]
    if (Path(settings.quality_dir) / "custom" / f"{contract.feed}.yaml").is_file():
        sources.append(f"quality/custom/{contract.feed}.yaml")
    return {
        "name": contract.slug,
        "meta": {"feed": contract.feed, "owner_bureau": contract.bureau, "rendered_from": sources},
        "expectations": contract_expectations(contract) + custom_expectations(contract, settings),
    }


def suite_path(contract: Contract, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.quality_dir) / "suites" / f"{contract.feed}.json"


def render_suite(suite: dict) -> str:
    return json.dumps(suite, ensure_ascii=False, indent=2) + "\n"


def write_suites(contracts: dict[str, Contract], settings: Settings | None = None,
                 check: bool = False) -> dict[str, str]:
    """Render every feed's suite file. Returns feed -> ``written`` / ``unchanged``
    / ``stale`` (the last only with ``check``, which writes nothing)."""
    outcome = {}
    rendered = [(feed, suite_path(contract, settings), build_suite(contract, settings))
                for feed, contract in sorted(contracts.items())]
    rendered += [(f"base.{library}", library_suite_path(library, settings), library_suite(library, settings))
                 for library in LIBRARIES]
    for feed, path, suite in rendered:
        text = render_suite(suite)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            outcome[feed] = "unchanged"
        elif check:
            outcome[feed] = "stale" if current is not None else "missing"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            outcome[feed] = "written"
    return outcome


def load_suite(contract: Contract, settings: Settings | None = None) -> dict:
    """The committed suite file; a feed without one (just added) gets its
    contract's rendering, with a warning."""
    path = suite_path(contract, settings)
    if not path.is_file():
        log.warning("%s: no suite file %s; using the suite rendered from its contract "
                    "(write it with `govlake quality suites`)", contract.feed, path.name)
        return build_suite(contract, settings)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


# --------------------------------------------------------------------------- the batch

def gate_columns(contract: Contract) -> list[str]:
    names = [c.name for c in contract.columns]
    names += [c.name + BIRTH_DATE_SUFFIX for c in contract.columns if c.type == "id_number"]
    return names + [OUTCOME_COLUMN, ROW_NUMBER_COLUMN]


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


@dataclass
class GateResult:
    feed: str
    load_id: str
    run_id: str
    success: bool                 # every expectation passed
    blocked: bool                 # a blocking expectation failed
    outcomes: list[ExpectationOutcome]
    engine: str = "spark"
    data_docs: str | None = None
    seconds: float = 0.0

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.blocking and not o.success]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.blocking and not o.success]


def _context(settings: Settings):
    import great_expectations as gx

    root = settings.local_lake_path("quality")
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    if context.variables.analytics_enabled is not False or context.variables.progress_bars is None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.analytics_enabled = False
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
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


def gate_engine(rows: int, settings: Settings) -> str:
    """``pandas`` for deliveries up to ``gate_pandas_max_rows``, else ``spark``."""
    return "pandas" if rows <= settings.gate_pandas_max_rows else "spark"


def validate_delivery(frame, contract: Contract, load_id: str, parameters: dict,
                      settings: Settings | None = None, rows: int | None = None) -> GateResult:
    """Run the feed's checkpoint on one delivery's gate frame and build Data Docs.

    ``rows`` (the frame's row count, if known) picks the GX execution engine;
    the suite and the results are the same on both.
    """
    settings = settings or get_settings()
    suite = load_suite(contract, settings)
    missing = {e["kwargs"].get("column") for e in suite["expectations"]} - set(_column_names(frame)) - {None}
    if missing:
        raise SuiteError(f"{suite_path(contract, settings)}: columns {sorted(missing)} are not in {contract.feed}")
    return _run_checkpoint(frame, suite, contract.feed, load_id, parameters, settings, rows, ROW_NUMBER_COLUMN)


def _column_names(frame) -> list[str]:
    """Column names of a Spark DataFrame or an Arrow table."""
    return frame.column_names if hasattr(frame, "column_names") else frame.columns


def _run_checkpoint(frame, suite: dict, subject: str, run_name: str, parameters: dict, settings: Settings,
                    rows: int | None, index_column: str) -> GateResult:
    """One GX checkpoint run of ``suite`` on ``frame`` (a Spark DataFrame or an
    Arrow table; Spark or pandas engine by size), Data Docs rebuilt;
    ``index_column`` names sample rows."""
    import time

    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    started = time.monotonic()
    is_arrow = hasattr(frame, "column_names")
    if rows is None:
        rows = frame.num_rows if is_arrow else frame.count()
    engine = gate_engine(rows, settings)
    context = _context(settings)
    if engine == "spark":
        source = context.data_sources.add_or_update_spark("lake_spark")
        if is_arrow:
            from pyspark.sql import SparkSession

            frame = SparkSession.builder.getOrCreate().createDataFrame(frame)
        batch_frame = frame
    else:
        source = context.data_sources.add_or_update_pandas("lake_pandas")
        batch_frame = frame.to_pandas() if is_arrow else frame.toPandas()
    name = suite["name"]
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        batch = asset.get_batch_definition("delivery")
    except (KeyError, LookupError):
        batch = asset.add_batch_definition_whole_dataframe("delivery")
    gx_suite = context.suites.add_or_update(_suite_object(suite))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}.{engine}", data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"{name}.{engine}", validation_definitions=[definition],
        actions=[UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [index_column],
                       "partial_unexpected_count": 10},
    ))
    run_at = datetime.now(timezone.utc)
    run_id = f"{run_name}@{run_at:%Y%m%dT%H%M%S}"
    checkpoint_result = checkpoint.run(
        batch_parameters={"dataframe": batch_frame}, expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=run_name, run_time=run_at))
    outcomes = []
    for validation in checkpoint_result.run_results.values():
        for item in validation.results:
            config = item.expectation_config
            result = item.result or {}
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            samples = [row.get(index_column) for row in result.get("partial_unexpected_index_list") or []
                       if isinstance(row, dict)]
            outcomes.append(ExpectationOutcome(
                expectation_type=config.type, column_name=kwargs.get("column"),
                rule=(config.meta or {}).get("rule", config.type),
                blocking=bool((config.meta or {}).get("blocking", False)), success=bool(item.success),
                element_count=result.get("element_count"), unexpected_count=result.get("unexpected_count"),
                unexpected_percent=result.get("unexpected_percent"), observed_value=_observed(result),
                kwargs=kwargs, sample_rows=[s for s in samples if s is not None]))
    blocked = any(o.blocking and not o.success for o in outcomes)
    docs = data_docs_index(settings)
    return GateResult(subject, run_name, run_id, success=all(o.success for o in outcomes), blocked=blocked,
                      outcomes=outcomes, engine=engine, data_docs=str(docs) if docs.exists() else None,
                      seconds=time.monotonic() - started)


# --------------------------------------------------------------------------- base-library suites

LIBRARIES = ("population", "legal_person", "address", "grid", "credit_record", "credit_rating", "e_licence")


def library_suite(library: str, settings: Settings | None = None) -> dict:
    """The suite of a base-library table, from ``quality/libraries/<library>.yaml``."""
    settings = settings or get_settings()
    path = Path(settings.quality_dir) / "libraries" / f"{library}.yaml"
    if not path.is_file():
        raise SuiteError(f"quality/libraries/{library}.yaml: no suite for base library {library!r}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    named_sets = {"@town_codes": sorted(ref.TOWNS), "@town_names": sorted(ref.TOWN_CODE_BY_NAME)}
    expectations = []
    for index, item in enumerate(document.get("expectations", [])):
        if not isinstance(item, dict) or "type" not in item or "rule" not in item:
            raise SuiteError(f"quality/libraries/{path.name}: expectations[{index}]: needs 'type' and 'rule'")
        kwargs = dict(item.get("kwargs") or {})
        if isinstance(kwargs.get("value_set"), str):
            if kwargs["value_set"] not in named_sets:
                raise SuiteError(f"quality/libraries/{path.name}: expectations[{index}].kwargs.value_set: unknown "
                                 f"named set {kwargs['value_set']!r} (known: {', '.join(named_sets)})")
            kwargs["value_set"] = named_sets[kwargs["value_set"]]
        expectations.append(_expectation(item["type"], kwargs,
                                         blocking=bool(item.get("blocking", False)), rule=item["rule"],
                                         origin=f"quality/libraries/{path.name}", notes=item.get("notes", "")))
    return {"name": f"base_{library}",
            "meta": {"library": f"base.{library}", "key": document["key"], "grain": document.get("grain", ""),
                     "rendered_from": [f"quality/libraries/{path.name}"]},
            "expectations": expectations}


def library_suite_path(library: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.quality_dir) / "suites" / f"base.{library}.json"


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


def row_count_parameters(previous_rows: int | None) -> dict:
    """The row-count band for the next delivery, from the feed's previous one."""
    if not previous_rows:
        return {"min_rows": 1, "max_rows": None}
    return {"min_rows": max(1, math.floor(previous_rows * (1 - ROW_COUNT_BAND))),
            "max_rows": math.ceil(previous_rows * (1 + ROW_COUNT_BAND))}


def record_results(spark, gate: GateResult, contract: Contract, source_file: str,
                   settings: Settings | None = None) -> None:
    """Replace this load's rows in ``governance.quality_results`` with this run."""
    settings = settings or get_settings()
    validated_at = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [{
        "run_id": gate.run_id, "load_id": gate.load_id, "feed": contract.feed, "bureau": contract.bureau,
        "suite": contract.slug, "expectation_type": o.expectation_type, "column_name": o.column_name,
        "expectation": o.label, "rule": o.rule, "blocking": o.blocking, "success": o.success,
        "element_count": o.element_count, "unexpected_count": o.unexpected_count,
        "unexpected_percent": float(o.unexpected_percent) if o.unexpected_percent is not None else None,
        "observed_value": o.observed_value, "kwargs": json.dumps(o.kwargs, ensure_ascii=False, default=str),
        "sample_rows": [f"{source_file}:{r}" for r in o.sample_rows], "validated_at": validated_at,
    } for o in gate.outcomes]
    frame = spark.createDataFrame(rows, QUALITY_RESULTS_DDL)
    (frame.write.format("delta").mode("overwrite").partitionBy("feed")
     .option("replaceWhere", f"feed = '{contract.feed}' AND load_id = '{gate.load_id}'")
     .save(governance_path("quality_results", settings)))


def read_quality_results(spark, settings: Settings | None = None):
    path = governance_path("quality_results", settings)
    if not delta_exists(spark, path):
        return spark.createDataFrame([], QUALITY_RESULTS_DDL)
    return spark.read.format("delta").load(path)


def blocked_message(gate: GateResult) -> str:
    failures = "; ".join(o.describe() for o in gate.blocking_failures)
    return f"blocked by the quality gate: {failures}"


# --------------------------------------------------------------------------- reporting

def quality_report(spark, settings: Settings | None = None, worst: int = 3) -> dict:
    """Per feed: validated loads, expectation pass rate, blocked loads and the
    worst failing expectations (by unexpected percent), plus the Data Docs path."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.ingest import read_manifest

    settings = settings or get_settings()
    results = read_quality_results(spark, settings)
    per_feed = {row["feed"]: row.asDict() for row in results.groupBy("feed", "bureau").agg(
        F.countDistinct("load_id").alias("validated_loads"),
        F.count("*").alias("evaluations"),
        F.round(F.avg(F.col("success").cast("double")), 4).alias("pass_rate"),
        F.sum((~F.col("success") & F.col("blocking")).cast("int")).alias("blocking_failures"),
        F.sum((~F.col("success") & ~F.col("blocking")).cast("int")).alias("warnings"),
    ).collect()}
    ranked = Window.partitionBy("feed").orderBy(F.col("unexpected_percent").desc_nulls_last(), "expectation")
    for row in (results.where(~F.col("success"))
                .groupBy("feed", "expectation", "rule", "blocking")
                .agg(F.max("unexpected_percent").alias("unexpected_percent"), F.count("*").alias("failed_runs"))
                .withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= worst)
                .orderBy("feed", "rank").collect()):
        per_feed[row["feed"]].setdefault("worst", []).append(
            {"expectation": row["expectation"], "rule": row["rule"], "blocking": row["blocking"],
             "unexpected_percent": row["unexpected_percent"], "failed_runs": row["failed_runs"]})
    manifest = read_manifest(spark, settings)
    blocked = manifest.where(F.col("status") == "blocked").select("load_id", "feed", "source_file", "message")
    blocked_rows = [row.asDict() for row in blocked.orderBy("feed").collect()]
    for row in blocked_rows:
        per_feed.setdefault(row["feed"], {"feed": row["feed"]}).setdefault("blocked_loads", []).append(row["load_id"])
    docs = data_docs_index(settings)
    return {
        "data_docs": str(docs) if docs.exists() else None,
        "feeds": [per_feed[feed] | {"worst": per_feed[feed].get("worst", []),
                                    "blocked_loads": per_feed[feed].get("blocked_loads", [])}
                  for feed in sorted(per_feed)],
        "blocked": blocked_rows,
    }
