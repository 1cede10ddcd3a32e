"""Chunked CSV reading on random files: every record comes out once, in file
order, numbered as a spreadsheet numbers it, malformed ones as malformed;
chunks stay near their size however the malformed lines fall (the reader is
given tiny blocks, so records and malformed lines arrive out of step)."""

from __future__ import annotations

import random

import pytest

from pipelines.contracts import get_contract
from pipelines.ingest import readers

CONTRACT = get_contract("psb.hukou")
HEADERS = [c.header for c in CONTRACT.columns]


def _file(tmp_path, records: list[tuple[bool, list[str]]], final_newline: bool = True):
    text = ",".join(HEADERS) + "\n" + "\n".join(",".join(values) for _, values in records)
    path = tmp_path / "hukou_20261128.csv"
    path.write_text(text + ("\n" if records and final_newline else ""), encoding="utf-8")
    return path


def _records(rng: random.Random, count: int, bad_share: float) -> list[tuple[bool, list[str]]]:
    width, records = len(HEADERS), []
    for i in range(count):
        bad = rng.random() < bad_share
        fields = [f"v{i}x{j}" for j in range(rng.choice([1, 2, width - 1, width + 1]) if bad else width)]
        if rng.random() < 0.15:
            fields[0] = f'"v{i}\nq"'       # a quoted line break: one record over two lines
        records.append((bad, fields))
    return records


def _read(path, chunk_rows):
    sizes, out = [], []
    for table in readers.read_csv(CONTRACT, path, chunk_rows).chunks():
        sizes.append(table.num_rows)
        out += zip(table.column("_row_number").to_pylist(), table.column("_malformed").to_pylist(),
                   table.column(CONTRACT.columns[0].name).to_pylist())
    return sizes, out


@pytest.mark.parametrize("seed", range(300))
def test_random_files_read_in_chunks_lose_and_reorder_nothing(seed, tmp_path, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", rng.choice([256, 400, 1000, 1 << 20]))
    records = _records(rng, rng.randint(0, 40), rng.choice([0.0, 0.1, 0.5, 0.9, 1.0]))
    chunk_rows = rng.randint(1, 8)
    sizes, out = _read(_file(tmp_path, records, final_newline=rng.random() < 0.7), chunk_rows)
    assert [number for number, _, _ in out] == list(range(2, len(records) + 2))
    for (_, malformed, first), (bad, fields) in zip(out, records, strict=True):
        if bad:
            assert malformed is not None
        else:
            assert malformed is None and first == fields[0].strip('"')
    assert 0 not in sizes[:-1], sizes   # no empty chunk but possibly the only one


@pytest.mark.parametrize("layout", ["all malformed", "records then a malformed run", "one record in a hundred"])
def test_runs_of_malformed_lines_come_in_chunks_of_their_size(layout, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 4096)
    good, bad = ["x"] * len(HEADERS), ["坏", "行"]
    records = {
        "all malformed": [(True, bad)] * 5_000,
        "records then a malformed run": [(False, good)] * 30 + [(True, bad)] * 5_000,
        "one record in a hundred": [(i % 100 != 0, bad if i % 100 else good) for i in range(5_000)],
    }[layout]
    sizes, out = _read(_file(tmp_path, records), 100)
    assert len(out) == len(records)
    # a chunk: its records, plus at most the malformed lines of one read-ahead block
    assert max(sizes) <= 100 + 4096 // 4, sizes
