"""A delivery too large for memory is read, classified and staged in chunks
(``GOVLAKE_INGEST_CHUNK_ROWS``) and loads exactly as it would in one piece:
the same rows in bronze, silver and quarantine, the same row numbers, the same
duplicates (a record repeating one of an earlier chunk included), the same
gate verdicts and sample rows, the same governance findings. The 5 GB figure
is a benchmark (``make bench-ingest-large``), not a test."""

from __future__ import annotations

import dataclasses
import time

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.contracts import get_contract
from pipelines.dev.synth.city import DefectRates, write_hukou_export
from pipelines.governance.issues import gate_findings
from pipelines.ingest.load import ingest_file
from pipelines.ingest.readers import read_delivery
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path, table_path
from pipelines.settings import get_settings

CHUNK = 250
RATES = dataclasses.replace(DefectRates().scaled(3.0), repeated_header=0.003, duplicate_row=0.006)
COPIED = [0, 1, 7]          # records of the first chunk delivered again at the end of the file


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    """A hukou export (defects at three times the default rates) with, added by
    hand: copies of early records at the end (duplicates across chunks), a
    malformed record on each side of the first chunk boundary and one as the
    very last line."""
    folder = tmp_path_factory.mktemp("chunked-city")
    path = write_hukou_export(folder, 1_200, seed=5, rates=RATES)
    lines = path.read_bytes().decode("gb18030").split("\r\n")
    header, records = lines[0], [line for line in lines[1:] if line]
    width = header.count(",") + 1
    malformed = ",".join(["坏行"] * (width + 2))
    records[CHUNK - 1:CHUNK - 1] = [malformed]             # row CHUNK + 1, the last of the first chunk's range
    records[CHUNK + 1:CHUNK + 1] = [malformed + ",多"]      # two rows later, in the second chunk's
    records += [records[i] for i in COPIED] + ["短,行"]
    path.write_bytes(("\r\n".join([header, *records]) + "\r\n").encode("gb18030"))
    return path, len(records)


def _load(path, home, chunk_rows):
    settings = dataclasses.replace(get_settings(), home=str(home), ingest_chunk_rows=chunk_rows)
    result = ingest_file(get_contract("psb.hukou"), path, settings=settings)
    contract = get_contract("psb.hukou")
    tables = {}
    for name, location in (("bronze", table_path("bronze", contract, settings)),
                           ("silver", table_path("silver", contract, settings)),
                           ("quarantine", governance_path("quarantine", settings))):
        table = DeltaTable(location).to_pyarrow_table()
        table = table.drop_columns([c for c in ("_ingested_at", "quarantined_at") if c in table.column_names])
        tables[name] = table.sort_by("_row_number")
    issues = sorted((row["rule"], row["column_name"], row["rows_affected"], tuple(row["sample_row_numbers"] or ()))
                    for row in read_delta_rows(governance_path("governance_issues", settings))
                    if "rows_affected" in row)
    return result, tables, issues, settings


@pytest.fixture(scope="module")
def both(delivery, tmp_path_factory):
    path, _ = delivery
    return {mode: _load(path, tmp_path_factory.mktemp(f"lake-{mode}"), chunk)
            for mode, chunk in (("whole", 10_000_000), ("chunked", CHUNK))}


def test_the_delivery_is_read_in_chunks(delivery):
    path, records = delivery
    read = read_delivery(get_contract("psb.hukou"), path, CHUNK)
    assert not read.complete
    sizes = [chunk.num_rows for chunk in read.chunks()]
    assert len(sizes) >= records // CHUNK and sum(sizes) == records
    numbers = read_delivery(get_contract("psb.hukou"), path).table.column("_row_number").to_pylist()
    assert sorted(numbers) == list(range(2, records + 2))


def test_chunked_load_equals_whole_load(both):
    (whole, whole_tables, whole_issues, _), (chunked, chunked_tables, chunked_issues, settings) = (
        both["whole"], both["chunked"])
    counts = ("status", "rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate", "message")
    assert {k: getattr(chunked, k) for k in counts} == {k: getattr(whole, k) for k in counts}
    assert chunked.status == "loaded" and chunked.reconciles
    for name in ("bronze", "silver", "quarantine"):
        assert chunked_tables[name].num_rows == whole_tables[name].num_rows
        assert chunked_tables[name].equals(whole_tables[name]), name
    # the same gate verdicts, counts and sample rows, and the same issues opened
    verdicts = [(o.rule, o.success, o.element_count, o.unexpected_count, o.sample_rows) for o in whole.gate.outcomes]
    assert [(o.rule, o.success, o.element_count, o.unexpected_count, o.sample_rows)
            for o in chunked.gate.outcomes] == verdicts
    assert gate_findings(chunked.gate, chunked.source_file) == gate_findings(whole.gate, whole.source_file)
    assert chunked_issues == whole_issues
    # the staged chunks are gone once the load is committed
    assert not any(settings.local_lake_path("tmp", "staging").glob("*/*"))


def test_records_repeating_an_earlier_chunk_are_duplicates(delivery, both):
    _, records = delivery
    chunked, tables = both["chunked"][0], both["chunked"][1]
    # the copies are the rows just before the malformed last line (row records + 1)
    copies = list(range(records + 1 - len(COPIED), records + 1))
    silver_rows = set(tables["silver"].column("_row_number").to_pylist())
    quarantined_rows = set(tables["quarantine"].column("_row_number").to_pylist())
    assert not (set(copies) & (silver_rows | quarantined_rows))
    # every delivered row is in bronze, and loaded, quarantined or duplicate
    bronze_rows = tables["bronze"].column("_row_number").to_pylist()
    assert sorted(bronze_rows) == list(range(2, records + 2))
    assert len(silver_rows) + len(quarantined_rows) + chunked.rows_duplicate == records
    assert chunked.rows_duplicate >= len(COPIED)


def test_malformed_records_keep_their_row_numbers_across_chunk_boundaries(delivery, both):
    _, records = delivery
    tables = both["chunked"][1]
    malformed = {row["_row_number"] for row in tables["quarantine"].to_pylist() if row["rule"] == "malformed_row"}
    assert {CHUNK + 1, CHUNK + 3, records + 1} <= malformed
    bronze = tables["bronze"]
    texts = dict(zip(bronze.column("_row_number").to_pylist(), bronze.column("_malformed").to_pylist()))
    assert texts[records + 1] == "短,行" and texts[CHUNK + 1].startswith("坏行,")
    assert pa.types.is_string(bronze.schema.field("_malformed").type)


def test_a_file_of_mostly_malformed_lines_is_still_read_in_chunks(delivery, tmp_path):
    """Malformed lines count toward a chunk: a 48 MB file in which one line in
    a hundred is a record is not held whole until enough records arrive."""
    path, _ = delivery
    lines = path.read_bytes().split(b"\r\n")
    header, record = lines[0], lines[2]
    malformed = ",".join(["坏"] * 330).encode("gb18030")        # about 1 kB: a 48 MB file is three 16 MB blocks
    body = [record if i % 100 == 0 else malformed for i in range(48_000)]
    mostly_bad = tmp_path / "hukou_20261129.csv"
    mostly_bad.write_bytes(b"\r\n".join([header, *body]) + b"\r\n")
    read = read_delivery(get_contract("psb.hukou"), mostly_bad, 5_000)
    sizes, numbers = [], []
    for chunk in read.chunks():
        sizes.append(chunk.num_rows)
        numbers += chunk.column("_row_number").to_pylist()
    assert sum(sizes) == len(body) and sorted(numbers) == list(range(2, len(body) + 2))
    # a chunk is its records plus at most one read-ahead block of malformed lines
    assert len(sizes) >= 3 and max(sizes) <= 5_000 + 17_000, sizes


def test_staging_left_by_a_killed_run_is_removed_and_a_live_run_is_kept(tmp_path):
    """A run killed mid-load leaves its staged files; the next chunked load
    removes them (their lock is free), never those of a run still going."""
    import fcntl
    import os

    from pipelines.ingest.load import _staging_folder

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    root = settings.local_lake_path("tmp", "staging")
    dead, live, old_style = root / "psb_hukou-aaaa-dead", root / "psb_hukou-bbbb-live", root / "psb_hukou-cccc"
    for folder in (dead, live, old_style):
        (folder / "bronze").mkdir(parents=True)
        (folder / "bronze" / "part-000000.parquet").write_bytes(b"staged")
    (dead / ".lock").touch()
    (live / ".lock").touch()
    an_hour_ago, two_days_ago = time.time() - 3_600, time.time() - 2 * 86_400
    os.utime(dead, (an_hour_ago, an_hour_ago))
    os.utime(live, (an_hour_ago, an_hour_ago))
    os.utime(old_style, (two_days_ago, two_days_ago))
    with (live / ".lock").open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)          # the live run's lock (another open file: it conflicts)
        with _staging_folder("psb_hukou-dddd", settings) as mine:
            assert mine.is_dir() and not dead.exists() and not old_style.exists()
            assert (live / "bronze" / "part-000000.parquet").exists()
        assert not mine.exists()
