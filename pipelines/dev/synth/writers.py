"""Feed writers: a bureau export file in its own format, plus its truth labels.

A writer numbers rows the way ``pipelines.readers`` does (CSV/XLSX: header is
row 1, first record row 2; JSON Lines: line number), injects file-level
defects it is told to (repeated headers, duplicate rows, reordered, extra and
missing columns) and records a label for every defect in ``defects.csv``.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

XLSX_MAX_ROWS = 1_048_575  # one sheet's rows below the header


@dataclass
class Label:
    """One injected defect: the column (delivered header), what was done and
    what ingest should do with it: fixed | quarantine | duplicate | header |
    rejected."""

    column: str
    defect: str
    expected: str
    rule: str = ""
    true_value: str = ""


@dataclass
class FileLayout:
    """How a delivery's columns deviate from the bureau's standard layout."""

    reorder: bool = False
    extra_headers: tuple[str, ...] = ()
    drop_headers: tuple[str, ...] = ()


class DefectLog:
    """Streams the ground-truth defect labels to ``truth/defects.csv``."""

    HEADER = ("feed", "file", "row_number", "column", "defect", "expected", "rule", "true_value")

    def __init__(self, path: Path):
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(self.HEADER)

    def add(self, feed: str, file: str, row: int, label: Label) -> None:
        self._writer.writerow((feed, file, row, label.column, label.defect, label.expected,
                               label.rule, label.true_value))

    def close(self) -> None:
        self._handle.close()


@dataclass
class FeedWriter:
    """Writes one delivery file of a feed (CSV, XLSX or JSON Lines)."""

    feed: str
    path: Path
    headers: list[str]
    file_type: str
    encoding: str
    defects: DefectLog
    rng: random.Random
    crlf: bool = False
    repeated_header_rate: float = 0.0
    duplicate_rate: float = 0.0
    layout: FileLayout = field(default_factory=FileLayout)
    records: int = 0
    _pending: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        columns = [h for h in self.headers if h not in self.layout.drop_headers]
        if self.layout.reorder:
            columns = columns[::-1]
        self.columns = columns + list(self.layout.extra_headers)
        self.row_number = 1 if self.file_type != "jsonl" else 0
        if self.file_type == "csv":
            self._handle = self.path.open("w", encoding=self.encoding, newline="")
            self._csv = csv.writer(self._handle, lineterminator="\r\n" if self.crlf else "\n")
            self._csv.writerow(self.columns)
        elif self.file_type == "jsonl":
            self._handle = self.path.open("w", encoding="utf-8", newline="\n")
        elif self.file_type == "xlsx":
            self.part = 1
            self.paths = [self.path]
            self._open_workbook()
        else:  # pragma: no cover
            raise ValueError(self.file_type)

    def _open_workbook(self) -> None:
        self._book = XLSX_WRITER(self.path, self.columns)

    def _next_workbook(self) -> None:
        """A sheet holds 1,048,575 records: larger exports come in parts."""
        self._book.close()
        self.part += 1
        first = self.paths[0]
        self.path = first.with_name(f"{first.stem}_part{self.part}{first.suffix}")
        self.paths.append(self.path)
        self.row_number = 1
        self._open_workbook()

    def _emit(self, values: dict) -> None:
        if self.file_type == "xlsx" and self.row_number > XLSX_MAX_ROWS:
            self._next_workbook()
        self.row_number += 1
        self.records += 1
        if self.file_type == "csv":
            self._csv.writerow([_text(values.get(h)) for h in self.columns])
        elif self.file_type == "jsonl":
            record = {h: values.get(h) for h in self.columns}
            self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            self._book.add(self.row_number - 1, [values.get(h) for h in self.columns])

    def _label(self, label: Label) -> None:
        self.defects.add(self.feed, self.path.name, self.row_number, label)

    def write(self, values: dict, labels: list[Label] | tuple = ()) -> None:
        """Write one record (``values`` keyed by header) with its defect labels."""
        if self.repeated_header_rate and self.file_type == "csv" and self.rng.random() < self.repeated_header_rate:
            self._emit({h: h for h in self.columns})
            self._label(Label("", "repeated_header", "header", "repeated_header"))
        for header in self.layout.extra_headers:
            values.setdefault(header, self.rng.choice(("", "备注", "已核实")))
        self._emit(values)
        for label in labels:
            self._label(label)
        if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
            self._pending.append((self.rng.randint(1, 40), dict(values)))
        if self._pending:
            due = [item for item in self._pending if item[0] <= 1]
            self._pending = [(n - 1, v) for n, v in self._pending if n > 1]
            for _, copy in due:
                self._emit(copy)
                self._label(Label("", "duplicate_row", "duplicate", "duplicate"))

    def close(self) -> int:
        """Flush pending duplicates, close the file; returns records written."""
        for _, copy in self._pending:
            self._emit(copy)
            self._label(Label("", "duplicate_row", "duplicate", "duplicate"))
        self._pending = []
        if self.file_type == "xlsx":
            self._book.close()
        else:
            self._handle.close()
        return self.records


class XlsxSink:
    """One workbook written by a process of its own, fed rows in batches.

    xlsxwriter spends some 10 µs of Python per cell: at scale 1.0 the
    residence-permit export (about 7M rows in 7 parts) took some 40% of
    the generator's time. Written beside the generator, on the second core,
    it costs the generator only the pickling of its rows. The file is the one xlsxwriter wrote in process: the
    same calls, in the same order (rows must come in order:
    ``constant_memory``). The pipe's buffer bounds what waits."""

    BATCH = 2_000

    def __init__(self, path: Path, columns: list[str]):
        import multiprocessing

        self.path = path
        # spawn, not fork: the generator holds gigabytes of truth at city scale
        context = multiprocessing.get_context("spawn")
        theirs, self._to_child = context.Pipe(duplex=False)
        self._process = context.Process(target=_write_workbook, args=(str(path), list(columns), theirs),
                                        name=f"xlsx {path.name}", daemon=True)
        self._process.start()
        theirs.close()
        self._batch: list = []

    def add(self, row: int, values: list) -> None:
        """Row ``row`` (0-based; the header is row 0) with one value per column."""
        self._batch.append((row, values))
        if len(self._batch) >= self.BATCH:
            self._send(self._batch)
            self._batch = []

    def _send(self, message) -> None:
        try:
            self._to_child.send(message)
        except (BrokenPipeError, EOFError):
            self._process.join()
            raise RuntimeError(f"the writer of {self.path} died (exit code {self._process.exitcode}); "
                               "its error is above") from None

    def close(self) -> None:
        """Send what is left, wait for the workbook to be written."""
        try:
            if self._batch:
                self._send(self._batch)
            self._send(None)
        finally:
            self._to_child.close()
            self._process.join()
        if self._process.exitcode != 0:
            raise RuntimeError(f"the writer of {self.path} failed (exit code {self._process.exitcode}); "
                               "its error is above")


class InlineXlsx:
    """A workbook written in the generator's process (``XlsxSink``'s
    interface): the baseline of ``make bench-synth``."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self._book, self._add = _open_workbook(str(path), columns)

    def add(self, row: int, values: list) -> None:
        self._add(row, values)

    def close(self) -> None:
        self._book.close()


# how FeedWriter writes a workbook (the benchmark's baseline process sets InlineXlsx)
XLSX_WRITER = XlsxSink


def _open_workbook(path: str, columns: list[str]):
    """(workbook, add(row, values)): one sheet, the header in row 0, dates as yyyy-mm-dd."""
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    sheet = book.add_worksheet("Sheet1")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, columns)

    def add(row: int, values: list) -> None:
        for col, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, (date, datetime)):
                sheet.write_datetime(row, col, datetime(value.year, value.month, value.day), date_format)
            elif isinstance(value, (int, float)):
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, value)

    return book, add


def _write_workbook(path: str, columns: list[str], rows) -> None:
    """``XlsxSink``'s process: batches of (row, values) until None."""
    book, add = _open_workbook(path, columns)
    while (batch := rows.recv()) is not None:
        for row, values in batch:
            add(row, values)
    rows.close()
    book.close()


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)
