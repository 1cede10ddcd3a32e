"""An XLSX export is written by a process of its own (``XlsxSink``): the
workbook holds exactly the rows the generator wrote, in parts where a sheet
is full, and a writer that fails says which file."""

from __future__ import annotations

import random
from datetime import date

import pytest
from python_calamine import CalamineWorkbook

from pipelines.dev.synth import writers
from pipelines.dev.synth.writers import DefectLog, FeedWriter, XlsxSink


def _sheet(path):
    return CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()


def test_rows_come_back_as_written_across_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 3)          # a sheet of three records: parts after 3 and 6
    monkeypatch.setattr(XlsxSink, "BATCH", 2)                 # and batches that end inside a part
    log = DefectLog(tmp_path / "defects.csv")
    writer = FeedWriter(feed="psb.residence_permit", path=tmp_path / "permits.xlsx", headers=["号码", "日期", "数"],
                        file_type="xlsx", encoding="utf-8", defects=log, rng=random.Random(1))
    rows = [{"号码": f"A{i}", "日期": date(2026, 1, 1 + i), "数": i if i % 2 else None} for i in range(7)]
    for row in rows:
        writer.write(dict(row))
    assert writer.close() == 7
    log.close()
    assert [p.name for p in writer.paths] == ["permits.xlsx", "permits_part2.xlsx", "permits_part3.xlsx"]
    read = [line for path in writer.paths for line in _sheet(path)[1:]]
    assert [line[0] for line in read] == [f"A{i}" for i in range(7)]
    assert [line[1] for line in read] == [date(2026, 1, 1 + i) for i in range(7)]
    assert [line[2] for line in read] == [("" if i % 2 == 0 else float(i)) for i in range(7)]
    assert all(_sheet(path)[0] == ["号码", "日期", "数"] for path in writer.paths)


def test_a_writer_that_fails_names_its_file(tmp_path):
    sink = XlsxSink(tmp_path / "no such folder" / "permits.xlsx", ["号码"])
    sink.add(1, ["A1"])
    with pytest.raises(RuntimeError, match="permits.xlsx"):
        sink.close()


def test_a_writer_that_dies_midway_stops_the_generator_naming_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(XlsxSink, "BATCH", 1)
    sink = XlsxSink(tmp_path / "permits.xlsx", ["数"])
    sink.add(1, [float("nan")])                 # xlsxwriter refuses NaN: the writer's process ends
    with pytest.raises(RuntimeError, match=r"the writer of .*permits.xlsx died \(exit code 1\)"):
        for row in range(2, 1_000_000):         # until the pipe's buffer is full and the dead end is seen
            sink.add(row, [1.0])
    with pytest.raises(RuntimeError, match="permits.xlsx"):
        sink.close()
    assert not sink._process.is_alive()
