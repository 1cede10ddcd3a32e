"""Expectation suites: rendered from contracts and quality/custom/, one per feed and library."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from pathlib import Path

import yaml

from pipelines import reference as ref
from pipelines.contracts import Contract
from pipelines.library_specs import library_names
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

OUTCOME_COLUMN = "_outcome"
ROW_NUMBER_COLUMN = "_row_number"
BIRTH_DATE_SUFFIX = "__birth_date"      # gate column derived from an ID number
ROW_COUNT_BAND = 0.5                    # next delivery within ±50% of the last (warning)

# The same shapes the ingest rules accept (pipelines/reference.py).
ID_NUMBER_PATTERN = ref.ID_SHAPE
USCC_PATTERN = ref.USCC_SHAPE
ID_OR_USCC_PATTERN = rf"(?:{ID_NUMBER_PATTERN})|(?:{USCC_PATTERN})"


class SuiteError(ValueError):
    """A suite or custom expectation file is malformed; the message names the file."""


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
        # a snapshot supersedes the whole register: a truncated export would
        # delete what it leaves out, so for snapshot feeds the band blocks
        _expectation("expect_table_row_count_to_be_between",
                     {"min_value": {"$PARAMETER": "min_rows"}, "max_value": {"$PARAMETER": "max_rows"}},
                     blocking=contract.delivery == "snapshot", rule="row_count_band", origin=origin,
                     notes=f"within ±{ROW_COUNT_BAND:.0%} of the feed's previous delivery"
                           + (" (blocking: a snapshot replaces the register)" if contract.delivery == "snapshot"
                              else "")),
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


# The expectation types a delivery suite may use: the ones GX's SQL engine on
# DuckDB (the gate) and its pandas engine (the reference) evaluate alike,
# which tests/integration/test_gate_engines.py checks. Others (e.g.
# strftime formats, JSON parsing) have no SQL implementation in GX 1.24.
DELIVERY_EXPECTATION_TYPES = frozenset({
    "expect_table_row_count_to_be_between", "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set", "expect_column_values_to_be_between",
    "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique",
    "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b",
})


def check_gate_expectation(item: dict, where: str) -> None:
    """Refuse, naming ``where``, an expectation the DuckDB gate cannot evaluate
    as the pandas engine would: an unsupported type, or a regex whose meaning
    differs between Python's ``re`` (pandas) and DuckDB's RE2 (see
    ``regex_difference``)."""
    if item["type"] not in DELIVERY_EXPECTATION_TYPES:
        raise SuiteError(f"{where}: expectation type {item['type']!r} is not one the delivery gate evaluates "
                         f"(known: {', '.join(sorted(DELIVERY_EXPECTATION_TYPES))})")
    regex = (item.get("kwargs") or {}).get("regex")
    if regex is not None and (problem := regex_difference(regex)):
        raise SuiteError(f"{where}.kwargs.regex: {regex!r} does not mean the same in Python and DuckDB (RE2): "
                         f"{problem}")


# Python's classes are Unicode-aware (\w matches 中), RE2's ASCII-only; ``{,n}``
# is a repeat in Python 3.11 and literal text in RE2
_UNICODE_CLASSES = re.compile(r"\\[wWdDsSbB]|\{,")
# strings on which both engines must agree: CJK, full-width digits, ASCII.
# (Python's $ also matches before a trailing newline; no value reaches the
# gate with one: the rules trim it, reference.TRIM_CHARS.)
_PROBES = ["", "a", "A1", "中文", "张三丰", "１２３", "123", "_", " ", "-", "9" * 18, "X" * 20]


@functools.lru_cache(maxsize=256)
def regex_difference(regex: str) -> str | None:
    """Why ``regex`` may not match alike in Python and DuckDB, or None: it
    must compile in both, use no Unicode-dependent class, and give the same
    answers on ``_PROBES``. A private DuckDB connection: the module-level one
    cannot serve two threads."""
    import duckdb

    try:
        compiled = re.compile(regex)
    except re.error as exc:
        return f"Python: {exc}"
    if _UNICODE_CLASSES.search(regex):
        return r"uses \w, \d, \s, \b (Unicode in Python, ASCII in RE2) or {,n}: spell the characters out"
    with duckdb.connect() as connection:
        try:
            answers = [row[0] for row in connection.execute(
                "SELECT regexp_matches(probe, ?) FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(probe, position) "
                "ORDER BY position", [regex, _PROBES]).fetchall()]
        except duckdb.Error as exc:
            return f"DuckDB: {str(exc).splitlines()[0]}"
    python = [compiled.search(probe) is not None for probe in _PROBES]
    differing = [probe for probe, ours, theirs in zip(_PROBES, python, answers) if ours != theirs]
    return f"they disagree on {differing!r}" if differing else None


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
        check_gate_expectation(item, where)
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
                 for library in library_names(settings)]
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
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    for index, item in enumerate(suite.get("expectations", [])):
        check_gate_expectation(item, f"{path.name}: expectations[{index}]")
    return suite


def gate_columns(contract: Contract) -> list[str]:
    names = [c.name for c in contract.columns]
    names += [c.name + BIRTH_DATE_SUFFIX for c in contract.columns if c.type == "id_number"]
    return names + [OUTCOME_COLUMN, ROW_NUMBER_COLUMN]


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


def row_count_parameters(previous_rows: int | None) -> dict:
    """The row-count band for the next delivery, from the feed's previous one."""
    if not previous_rows:
        return {"min_rows": 1, "max_rows": None}
    return {"min_rows": max(1, math.floor(previous_rows * (1 - ROW_COUNT_BAND))),
            "max_rows": math.ceil(previous_rows * (1 + ROW_COUNT_BAND))}
