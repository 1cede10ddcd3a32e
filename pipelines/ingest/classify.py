"""Decide every delivered row's outcome, on Arrow: loaded, quarantined or duplicate.

Input: the reader's table (contract columns as delivered strings, ``_extra``,
``_malformed``, ``_row_number``). ``classify_delivery`` standardises every
column (``pipelines.ingest.rules``), adds the cross-column ID checks (gender
parity, embedded birth date), recognises repeated header rows and malformed
rows, removes exact duplicates of an earlier record (as delivered), and keeps
the failures of each quarantined row. The ``*_table`` functions shape the
results for bronze, silver, quarantine and the quality gate. All pure.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import Contract
from pipelines.ingest.readers import EXTRA_COLUMN, MALFORMED_COLUMN, ROW_NUMBER_COLUMN
from pipelines.ingest.rules import Standardised, id_gender, standardise_table

LOADED, QUARANTINED, DUPLICATE = "loaded", "quarantined", "duplicate"
OUTCOME_COLUMN = "_outcome"
BIRTH_DATE_SUFFIX = "__birth_date"
FAILURE_TYPE = pa.struct([("column_name", pa.string()), ("header", pa.string()), ("rule", pa.string()),
                          ("value", pa.string())])
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass
class ClassifiedDelivery:
    """One delivery's rows with their standardised values and outcomes."""

    contract: Contract
    table: pa.Table                      # as read: raw strings + _extra, _malformed, _row_number
    headers_found: dict[str, str]
    columns: dict[str, Standardised]
    outcome: np.ndarray                  # one of LOADED / QUARANTINED / DUPLICATE per row (object array)
    failures: dict[int, list[dict]]      # row index -> failures, for quarantined rows

    def count(self, outcome: str) -> int:
        return int((self.outcome == outcome).sum())

    def where(self, outcome: str) -> pa.Array:
        return pa.array(self.outcome == outcome)


def _failure(column_name: str, header: str, rule: str, value) -> dict:
    return {"column_name": column_name, "header": header, "rule": rule, "value": value}


def classify_delivery(table: pa.Table, contract: Contract, headers_found: dict[str, str],
                      missing_required: list[str], seen: SeenRecords | None = None) -> ClassifiedDelivery:
    """Every row's outcome; see the module docstring. For a delivery read in
    chunks, ``seen`` carries the records of the earlier chunks, so a record
    repeating one of them is a duplicate too."""
    names = [c.name for c in contract.columns]
    size = table.num_rows
    columns = standardise_table(table, contract.columns)
    errors = {name: columns[name].error for name in names}
    for column in contract.columns:
        value = columns[column.name].value
        if column.gender_column:
            gender = columns[column.gender_column].value
            wrong = pc.and_(pc.and_(pc.is_valid(value), pc.is_valid(gender)),
                            pc.not_equal(id_gender(value), gender))
            errors[column.name] = pc.coalesce(errors[column.name], pc.if_else(
                pc.fill_null(wrong, False), pa.scalar("id_number.gender_parity"), pa.nulls(size, pa.string())))
        if column.birth_date_column:
            birth = columns[column.birth_date_column].value
            wrong = pc.and_(pc.and_(pc.is_valid(value), pc.is_valid(birth)),
                            pc.not_equal(columns[column.name].birth, birth))
            errors[column.name] = pc.coalesce(errors[column.name], pc.if_else(
                pc.fill_null(wrong, False), pa.scalar("id_number.birth_date_mismatch"), pa.nulls(size, pa.string())))

    found = [n for n in names if n in headers_found]
    hits = np.zeros(size, dtype=np.int64)
    for name in found:
        hits += np.asarray(pc.fill_null(pc.equal(columns[name].text, headers_found[name]), False), dtype=np.int64)
    is_header = hits >= max(1, math.ceil(len(found) / 2)) if found else np.zeros(size, dtype=bool)
    is_malformed = np.asarray(pc.is_valid(table.column(MALFORMED_COLUMN)), dtype=bool)
    skip = is_header | is_malformed
    has_error = np.zeros(size, dtype=bool) | bool(missing_required)
    for name in names:
        has_error |= np.asarray(pc.is_valid(errors[name]), dtype=bool)

    duplicate = _duplicates(table, contract, skip)
    if seen is not None:
        duplicate |= seen.repeated(table.select(names), ~(skip | duplicate))

    outcome = np.full(size, LOADED, dtype=object)
    outcome[has_error] = QUARANTINED
    outcome[duplicate] = DUPLICATE
    outcome[skip] = QUARANTINED

    failures = _failures(table, contract, headers_found, missing_required, errors,
                         np.flatnonzero(outcome == QUARANTINED), is_header, is_malformed)
    return ClassifiedDelivery(contract, table, headers_found, columns, outcome, failures)


def _duplicates(table: pa.Table, contract: Contract, skip: np.ndarray) -> np.ndarray:
    """Rows that repeat an earlier record exactly (as delivered; nulls equal).

    Only rows whose first key column (or first column) value occurs more than
    once can repeat a record, so the full-row grouping runs on those alone."""
    names = [c.name for c in contract.columns]
    probe = next((c.name for c in contract.columns if c.key), names[0])
    encoded = pc.dictionary_encode(table.column(probe)).combine_chunks()
    indices = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.bincount(indices + 1)          # nulls (-1) counted together in bin 0
    candidates = (counts[indices + 1] > 1) & ~skip
    duplicate = np.zeros(table.num_rows, dtype=bool)
    if not candidates.any():
        return duplicate
    rows = np.flatnonzero(candidates)
    subset = table.select(names).take(pa.array(rows)).append_column("_position", pa.array(rows))
    first = subset.group_by(names, use_threads=False).aggregate([("_position", "min")])
    duplicate[rows] = True
    duplicate[np.asarray(first.column("_position_min").to_numpy(), dtype=np.int64)] = False
    return duplicate


class SeenRecords:
    """The records (as delivered, nulls equal) of the chunks classified so
    far, as 128-bit digests: 16 bytes a record, 0.8 GB for 50M records,
    where the records themselves would not fit in memory. The digest is MD5
    of the record as a JSON list (unambiguous: nulls, quotes, separators);
    two different records share one with odds of about n²/2¹²⁹."""

    def __init__(self) -> None:
        self.upper = np.empty(0, np.uint64)   # sorted
        self.lower = np.empty(0, np.uint64)   # in the same order as ``upper``

    @staticmethod
    def digests(records: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        import duckdb  # the gate's engine: MD5 of a whole record, vectorised

        quoted = ", ".join('"' + name.replace('"', '""') + '"' for name in records.column_names)
        with duckdb.connect(config={"threads": 1}) as connection:
            connection.register("records", records)
            found = connection.sql(   # one MD5 per record, split into two 64-bit halves
                "SELECT (m >> 64)::UBIGINT AS u, (m & 18446744073709551615::UHUGEINT)::UBIGINT AS l "
                f"FROM (SELECT md5_number(to_json([{quoted}])) AS m FROM records)").to_arrow_table()
        return (np.asarray(found.column("u").to_numpy(), np.uint64),
                np.asarray(found.column("l").to_numpy(), np.uint64))

    def repeated(self, records: pa.Table, candidates: np.ndarray) -> np.ndarray:
        """Which ``candidates`` rows of ``records`` repeat a record seen in an
        earlier call; the candidates are remembered for later calls. Rows
        outside ``candidates`` (repeats within this chunk, header and
        malformed rows) are neither checked nor remembered."""
        rows = np.flatnonzero(candidates)
        repeated = np.zeros(records.num_rows, dtype=bool)
        if not rows.size:
            return repeated
        upper, lower = self.digests(records.take(pa.array(rows)))
        left = np.searchsorted(self.upper, upper, side="left")
        right = np.searchsorted(self.upper, upper, side="right")
        one = right - left == 1                    # the usual case: one stored digest shares the upper half
        hit = np.zeros(rows.size, dtype=bool)
        hit[one] = self.lower[left[one]] == lower[one]
        for i in np.flatnonzero(right - left > 1):
            hit[i] = bool((self.lower[left[i]:right[i]] == lower[i]).any())
        repeated[rows[hit]] = True
        order = np.argsort(upper[~hit], kind="stable")
        new_upper, new_lower = upper[~hit][order], lower[~hit][order]
        at = np.searchsorted(self.upper, new_upper, side="right")
        self.upper = np.insert(self.upper, at, new_upper)
        self.lower = np.insert(self.lower, at, new_lower)
        return repeated


def _failures(table, contract, headers_found, missing_required, errors, rows, is_header, is_malformed):
    """Failures of the quarantined rows only (a few per cent of a delivery):
    assembled per row, after every rule has run vectorised."""
    index = pa.array(rows, pa.int64())
    error_lists = {name: pc.take(errors[name], index).to_pylist() for name in errors}
    raw_lists = {name: pc.take(table.column(name), index).to_pylist() for name in errors}
    malformed = pc.take(table.column(MALFORMED_COLUMN), index).to_pylist()
    missing = [_failure(n, contract.column(n).header, "missing_required_column", None) for n in missing_required]
    out = {}
    for i, row in enumerate(rows.tolist()):
        if is_malformed[row]:
            out[row] = [_failure("_row", "", "malformed_row", malformed[i])]
        elif is_header[row]:
            out[row] = [_failure("_row", "", "repeated_header", None)]
        else:
            out[row] = missing + [
                _failure(c.name, headers_found.get(c.name, c.header), error_lists[c.name][i], raw_lists[c.name][i])
                for c in contract.columns if error_lists[c.name][i] is not None]
    return out


def _lineage(size: int, load_id: str, source_file: str, ingested_at: datetime) -> dict[str, pa.Array]:
    return {
        "_load_id": pa.array([load_id] * size, pa.string()),
        "_source_file": pa.array([source_file] * size, pa.string()),
        "_ingested_at": pa.repeat(pa.scalar(ingested_at, TIMESTAMP), size),
    }


def bronze_table(table: pa.Table, load_id: str, source_file: str, ingested_at: datetime) -> pa.Table:
    """Every delivered row as delivered (the reader's table), plus lineage."""
    columns = {name: table.column(name) for name in table.column_names}
    return pa.table(columns | _lineage(table.num_rows, load_id, source_file, ingested_at))


def silver_table(classified: ClassifiedDelivery, load_id: str, source_file: str, ingested_at: datetime) -> pa.Table:
    """The typed rows that passed every rule."""
    keep = classified.where(LOADED)
    columns = {c.name: pc.filter(classified.columns[c.name].value, keep) for c in classified.contract.columns}
    size = classified.count(LOADED)
    columns[ROW_NUMBER_COLUMN] = pc.filter(classified.table.column(ROW_NUMBER_COLUMN), keep)
    lineage = _lineage(size, load_id, source_file, ingested_at)
    ordered = {**columns, "_load_id": lineage["_load_id"], "_source_file": lineage["_source_file"],
               ROW_NUMBER_COLUMN: columns.pop(ROW_NUMBER_COLUMN), "_ingested_at": lineage["_ingested_at"]}
    return pa.table(ordered)


def quarantine_table(classified: ClassifiedDelivery, load_id: str, source_file: str,
                     ingested_at: datetime) -> pa.Table:
    """One row per quarantined input row: first failure, all failures, and the
    original values keyed by the delivered header."""
    contract, table = classified.contract, classified.table
    rows = sorted(classified.failures)
    index = pa.array(rows, pa.int64())
    raw = {c.name: pc.take(table.column(c.name), index).to_pylist()
           for c in contract.columns if c.name in classified.headers_found}
    extras = pc.take(table.column(EXTRA_COLUMN), index).to_pylist()
    malformed = pc.take(table.column(MALFORMED_COLUMN), index).to_pylist()
    originals = []
    for i in range(len(rows)):
        if malformed[i] is not None:
            originals.append([("_row", malformed[i])])
            continue
        pairs = [(classified.headers_found[name], values[i]) for name, values in raw.items()]
        originals.append(pairs + list(extras[i] or []))
    failures = [classified.failures[row] for row in rows]
    first = [items[0] if items else _failure(None, None, None, None) for items in failures]
    size = len(rows)
    return pa.table({
        "feed": pa.array([contract.feed] * size, pa.string()),
        "_load_id": pa.array([load_id] * size, pa.string()),
        "_source_file": pa.array([source_file] * size, pa.string()),
        ROW_NUMBER_COLUMN: pc.take(table.column(ROW_NUMBER_COLUMN), index),
        "column_name": pa.array([f["column_name"] for f in first], pa.string()),
        "header": pa.array([f["header"] for f in first], pa.string()),
        "rule": pa.array([f["rule"] for f in first], pa.string()),
        "failures": pa.array(failures, pa.list_(FAILURE_TYPE)),
        "original_values": pa.array(originals, pa.map_(pa.string(), pa.string())),
        "quarantined_at": pa.array([ingested_at] * size, TIMESTAMP),
    })


def failure_counts(classified: ClassifiedDelivery, sample_size: int) -> list[tuple[str, str, int, list[int]]]:
    """(column, rule, rows, first row numbers) per rule that quarantined rows."""
    row_numbers = classified.table.column(ROW_NUMBER_COLUMN)
    counts: Counter = Counter()
    samples: dict[tuple[str, str], list[int]] = {}
    for row, items in classified.failures.items():
        number = row_numbers[row].as_py()
        for item in items:
            key = (item["column_name"], item["rule"])
            counts[key] += 1
            samples.setdefault(key, []).append(number)
    return [(column, rule, rows, sorted(set(samples[(column, rule)]))[:sample_size])
            for (column, rule), rows in sorted(counts.items())]


def gate_table(classified: ClassifiedDelivery) -> pa.Table:
    """The delivery as the quality gate sees it: duplicates removed; each
    column its valid typed value or null (timestamps as naive UTC, as Spark
    shows them); ``<id column>__birth_date`` derived from every ID number;
    ``_outcome`` and ``_row_number``."""
    keep = pa.array(classified.outcome != DUPLICATE)
    columns = {}
    for column in classified.contract.columns:
        value = classified.columns[column.name].value
        if pa.types.is_timestamp(value.type):
            value = value.cast(pa.timestamp("us"))
        columns[column.name] = pc.filter(value, keep)
    for column in classified.contract.columns:
        if column.type == "id_number":
            standardised = classified.columns[column.name]
            birth = pc.if_else(pc.is_valid(standardised.value), standardised.birth, pa.scalar(None, pa.date32()))
            columns[column.name + BIRTH_DATE_SUFFIX] = pc.filter(birth, keep)
    columns[OUTCOME_COLUMN] = pc.filter(pa.array(classified.outcome.astype(str)), keep)
    columns[ROW_NUMBER_COLUMN] = pc.filter(classified.table.column(ROW_NUMBER_COLUMN), keep)
    return pa.table(columns)
