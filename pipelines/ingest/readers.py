"""Read one bureau delivery (CSV, XLSX, JSON Lines) into an Arrow table of strings.

The reader decides nothing about validity: it detects the encoding, maps the
delivered headers onto the contract's columns, and hands every record on as
delivered, numbered. Numbering: in CSV and XLSX the header is row 1 and the
first record row 2 (as a spreadsheet shows it; a quoted field spanning lines
is still one row); in JSON Lines a record's row is its line number.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.contracts import Column, Contract

log = logging.getLogger(__name__)

EXTRA_COLUMN = "_extra"
MALFORMED_COLUMN = "_malformed"
ROW_NUMBER_COLUMN = "_row_number"
_BOM = codecs.BOM_UTF8
_CHUNK = 16 << 20


class DeliveryError(ValueError):
    """A delivery that cannot be read at all; the message names the file."""


@dataclass
class Delivery:
    """One parsed delivery: string columns named by contract, plus lineage."""

    path: Path
    encoding: str
    table: pa.Table
    headers_found: dict[str, str]            # contract column name -> header as delivered
    extra_headers: list[str] = field(default_factory=list)
    missing_columns: list[Column] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.table.num_rows

    @property
    def missing_required(self) -> list[Column]:
        return [c for c in self.missing_columns if c.required]


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) if the whole file decodes as UTF-8, else GB18030.

    Trying UTF-8 first matters: GB18030 decodes almost any byte string, so
    the reverse order would silently corrupt UTF-8 files.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        first = handle.read(_CHUNK)
        has_bom = first.startswith(_BOM)
        chunk = first
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = handle.read(_CHUNK)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8-sig" if has_bom else "utf-8"


def _header_key(text: str) -> str:
    """Headers match after NFKC (full-width brackets) and space removal.
    Only headers are folded this way, never values."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lstrip("\ufeff")


def _clean_header(text: str) -> str:
    return text.strip().strip("\ufeff\u3000\u00a0").strip()


def map_headers(contract: Contract, headers: list[str], source: str) -> tuple[dict[int, Column], list[int], list[Column]]:
    """Positions of contract columns, positions of extra columns, missing columns."""
    by_key = {_header_key(h): c for c in contract.columns for h in c.headers}
    mapped: dict[int, Column] = {}
    extras: list[int] = []
    seen: dict[str, int] = {}
    for position, header in enumerate(headers):
        column = by_key.get(_header_key(header))
        if column is None:
            extras.append(position)
            continue
        if column.name in seen:
            raise DeliveryError(
                f"{source}: header {header!r} (column {position + 1}) repeats column "
                f"{headers[seen[column.name]]!r} (column {seen[column.name] + 1})"
            )
        seen[column.name] = position
        mapped[position] = column
    missing = [c for c in contract.columns if c.name not in seen]
    return mapped, extras, missing


def _build_table(contract: Contract, headers: list[str], columns: list[list], row_numbers: list[int],
                 malformed: list[str | None] | None, source: str) -> tuple[pa.Table, dict, list, list]:
    mapped, extras, missing = map_headers(contract, headers, source)
    size = len(row_numbers)
    arrays: dict[str, pa.Array] = {}
    for position, column in mapped.items():
        arrays[column.name] = pa.array(columns[position], type=pa.string()) if not isinstance(
            columns[position], (pa.Array, pa.ChunkedArray)) else columns[position]
    for column in missing:
        arrays[column.name] = pa.nulls(size, type=pa.string())
    ordered = {c.name: arrays[c.name] for c in contract.columns}
    if extras:
        extra_values = [
            columns[p].to_pylist() if isinstance(columns[p], (pa.Array, pa.ChunkedArray)) else columns[p]
            for p in extras
        ]
        names = [headers[p] for p in extras]
        ordered[EXTRA_COLUMN] = pa.array(
            [list(zip(names, values)) for values in zip(*extra_values)] if size else [],
            type=pa.map_(pa.string(), pa.string()),
        )
    else:
        ordered[EXTRA_COLUMN] = pa.nulls(size, type=pa.map_(pa.string(), pa.string()))
    ordered[MALFORMED_COLUMN] = (
        pa.array(malformed, type=pa.string()) if malformed is not None else pa.nulls(size, type=pa.string())
    )
    ordered[ROW_NUMBER_COLUMN] = pa.array(row_numbers, type=pa.int64())
    headers_found = {column.name: headers[p] for p, column in mapped.items()}
    return pa.table(ordered), headers_found, [headers[p] for p in extras], missing


def read_csv(contract: Contract, path: Path) -> Delivery:
    encoding = detect_encoding(path)
    source = f"{contract.feed} {path.name}"
    invalid: list[tuple[int | None, str]] = []

    def on_invalid_row(row) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    def parse(use_threads: bool):
        invalid.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                encoding="utf8" if encoding.startswith("utf-8") else encoding,
                autogenerate_column_names=True,
                block_size=16 << 20,
                use_threads=use_threads,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types=None, strings_can_be_null=False, quoted_strings_can_be_null=False,
                auto_dict_encode=False, include_missing_columns=False,
            ),
        )

    try:
        table = parse(use_threads=True)
        if any(number is None for number, _ in invalid):
            # The multi-threaded reader does not know the row numbers of
            # malformed rows; the serial one does (rare: only such files pay).
            table = parse(use_threads=False)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DeliveryError(f"{source}: not a readable CSV file ({encoding}): {exc}") from exc
    # every column as string: re-cast whatever pyarrow inferred
    table = pa.table({name: table[name].cast(pa.string()) for name in table.column_names})
    if table.num_rows == 0:
        raise DeliveryError(f"{source}: empty file (no header row)")
    headers = [_clean_header(v if v is not None else "") for v in table.slice(0, 1).to_pylist()[0].values()]
    body = table.slice(1)
    columns = [body.column(i).combine_chunks() for i in range(body.num_columns)]
    size = body.num_rows
    row_numbers = list(range(2, size + 2))
    malformed = None
    if invalid:
        log.warning("%s: %d malformed rows (wrong number of fields)", source, len(invalid))
        columns = [pa.concat_arrays([c, pa.nulls(len(invalid), pa.string())]) for c in columns]
        # records are numbered as a spreadsheet shows them (header = 1) and
        # the malformed ones hold their own numbers
        taken = {number for number, _ in invalid}
        row_numbers = [n for n in range(2, size + len(invalid) + 2) if n not in taken]
        row_numbers += [number for number, _ in invalid]
        malformed = [None] * size + [text for _, text in invalid]
    arrow, found, extras, missing = _build_table(contract, headers, columns, row_numbers, malformed, source)
    return Delivery(path, encoding, arrow, found, extras, missing)


def cell_text(value) -> str | None:
    """A spreadsheet cell as the text a person would have typed or seen.

    Large numbers are shown the way Excel shows them (``4.41900E+17``): an ID
    number stored as a number has already lost its last digits.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"{value:.5E}" if abs(value) >= 10**15 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if abs(value) >= 1e15:
            return f"{value:.5E}"
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") if value.time() != time(0) else value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (time, timedelta)):
        return str(value)
    return str(value)


def read_xlsx(contract: Contract, path: Path) -> Delivery:
    from python_calamine import CalamineWorkbook  # Rust reader: ~10x openpyxl

    source = f"{contract.feed} {path.name}"
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        rows = workbook.get_sheet_by_index(contract.file.sheet).to_python(skip_empty_area=False)
    except Exception as exc:  # calamine raises its own error types
        raise DeliveryError(f"{source}: not a readable XLSX workbook: {exc}") from exc
    if not rows:
        raise DeliveryError(f"{source}: empty sheet (no header row)")
    headers = [_clean_header(cell_text(v) or "") for v in rows[0]]
    while headers and not headers[-1]:
        headers.pop()
    width = len(headers)
    body = rows[1:]
    while body and all(v in ("", None) for v in body[-1]):
        body.pop()
    columns = [[None] * len(body) for _ in range(width)]
    for r, row in enumerate(body):
        for c in range(min(width, len(row))):
            columns[c][r] = cell_text(row[c])
    arrow, found, extras, missing = _build_table(
        contract, headers, columns, list(range(2, len(body) + 2)), None, source)
    return Delivery(path, "xlsx", arrow, found, extras, missing)


def _json_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def read_jsonl(contract: Contract, path: Path) -> Delivery:
    encoding = detect_encoding(path)
    source = f"{contract.feed} {path.name}"
    records: list[dict] = []
    row_numbers: list[int] = []
    malformed: list[str | None] = []
    headers: dict[str, None] = {}
    with path.open("r", encoding=encoding, newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError:
                records.append({})
                malformed.append(text)
            else:
                records.append(record)
                malformed.append(None)
                for key in record:
                    headers.setdefault(key, None)
            row_numbers.append(line_number)
    names = [_clean_header(k) for k in headers]
    columns = [[_json_text(r.get(k)) for r in records] for k in headers]
    has_malformed = any(m is not None for m in malformed)
    arrow, found, extras, missing = _build_table(
        contract, names, columns, row_numbers, malformed if has_malformed else None, source)
    return Delivery(path, encoding, arrow, found, extras, missing)


def read_delivery(contract: Contract, path: Path) -> Delivery:
    """Parse a delivery according to its contract's file type."""
    readers = {"csv": read_csv, "xlsx": read_xlsx, "jsonl": read_jsonl}
    return readers[contract.file.type](contract, path)
