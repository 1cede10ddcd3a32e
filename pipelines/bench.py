"""Benchmarks: ``python -m pipelines.bench ingest --rows 1000000``.

Each run measures govlake and its baseline in the same run on the same input
and appends the figures, with the machine, to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pipelines.settings import PROJECT_ROOT, get_settings

BENCH_DIR = PROJECT_ROOT / "bench-out"
RESULTS = PROJECT_ROOT / "docs" / "benchmarks.md"

_PYARROW_BASELINE = """
import sys, time, resource
import pyarrow.csv as pacsv, pyarrow.parquet as pq
source, target = sys.argv[1], sys.argv[2]
started = time.perf_counter()
table = pacsv.read_csv(source, read_options=pacsv.ReadOptions(encoding="gb18030"),
                       parse_options=pacsv.ParseOptions(newlines_in_values=True))
pq.write_table(table, target, compression="zstd")
print(time.perf_counter() - started, table.num_rows,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _peak_rss(pid: int) -> int:
    """Peak resident memory (VmHWM) of a live process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _jvm_pid(spark) -> int:
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())


def bench_ingest(rows: int, seed: int = 7) -> dict:
    """1M-row hukou export: govlake ingest (raw → bronze → silver) vs pyarrow
    reading the same CSV and writing zstd Parquet."""
    import dataclasses
    import shutil

    from pipelines.contracts import get_contract
    from pipelines.ingest import ingest_file
    from pipelines.spark import build_spark_session
    from pipelines.synth.city import write_hukou_export

    source_dir = BENCH_DIR / f"hukou-{rows}-{seed}"
    source = source_dir / "deliveries" / "psb" / "hukou" / "hukou_20261128.csv"
    if not source.exists():
        print(f"generating {rows:,} hukou rows ...", file=sys.stderr)
        write_hukou_export(source_dir, rows, seed=seed)
    size_mb = source.stat().st_size / 1e6

    baseline = subprocess.run([sys.executable, "-c", _PYARROW_BASELINE, str(source), str(BENCH_DIR / "baseline.parquet")],
                              check=True, capture_output=True, text=True).stdout.split()
    arrow_seconds, arrow_rows, arrow_peak = float(baseline[0]), int(baseline[1]), int(baseline[2])

    lake = BENCH_DIR / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    settings = dataclasses.replace(get_settings(), home=str(lake))
    spark = build_spark_session(settings)
    contract = get_contract("psb.hukou")
    warmup = write_hukou_export(BENCH_DIR / "warmup", 2_000, seed=seed + 1)
    ingest_file(spark, contract, warmup, settings=settings, run_gate=False)  # JVM start and JIT are not part of a load
    started = time.perf_counter()
    result = ingest_file(spark, contract, source, settings=settings, run_gate=False)
    seconds = time.perf_counter() - started
    peak = _peak_rss(_jvm_pid(spark)) + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert result.status == "loaded" and result.reconciles and arrow_rows == result.rows_read
    return {
        "benchmark": "ingest", "rows": result.rows_read, "file_mb": round(size_mb, 1),
        "govlake_seconds": round(seconds, 2), "govlake_rows_per_second": round(result.rows_read / seconds),
        "govlake_peak_rss_gib": round(peak / 2**30, 2),
        "pyarrow_seconds": round(arrow_seconds, 2), "pyarrow_rows_per_second": round(arrow_rows / arrow_seconds),
        "pyarrow_peak_rss_gib": round(arrow_peak / 2**30, 2),
        "ratio_govlake_over_pyarrow": round(seconds / arrow_seconds, 2),
        "govlake_phase_seconds": result.timings,
        "loaded": result.rows_loaded, "quarantined": result.rows_quarantined, "duplicate": result.rows_duplicate,
        "spark_master": settings.spark_master, "shuffle_partitions": settings.shuffle_partitions,
    }


def bench_quality(rows: int, seed: int = 7, engine: str = "spark") -> dict:
    """The quality gate on a 1M-row hukou delivery: GX checkpoint (+ results
    and governance list) time against the ingest time of the same delivery,
    both from one ``ingest_file`` call's phase timings."""
    import dataclasses
    import shutil

    from pipelines.contracts import get_contract
    from pipelines.ingest import ingest_file
    from pipelines.spark import build_spark_session
    from pipelines.synth.city import write_hukou_export

    source_dir = BENCH_DIR / f"hukou-{rows}-{seed}"
    source = source_dir / "deliveries" / "psb" / "hukou" / "hukou_20261128.csv"
    if not source.exists():
        print(f"generating {rows:,} hukou rows ...", file=sys.stderr)
        write_hukou_export(source_dir, rows, seed=seed)
    lake = BENCH_DIR / "lake-quality"
    shutil.rmtree(lake, ignore_errors=True)
    settings = dataclasses.replace(get_settings(), home=str(lake),
                                   gate_pandas_max_rows=0 if engine == "spark" else 10**12)
    spark = build_spark_session(settings)
    contract = get_contract("psb.hukou")
    warmup = write_hukou_export(BENCH_DIR / "warmup", 2_000, seed=seed + 1)
    ingest_file(spark, contract, warmup, settings=settings)  # JVM start, JIT and GX imports are not part of a load
    started = time.perf_counter()
    result = ingest_file(spark, contract, source, settings=settings)
    seconds = time.perf_counter() - started
    gate_seconds = result.timings["gate"] + result.timings.get("governance", 0.0)
    ingest_seconds = seconds - gate_seconds
    peak = _peak_rss(_jvm_pid(spark)) + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert result.status in ("loaded", "blocked") and result.reconciles
    return {
        "benchmark": "quality", "rows": result.rows_read, "gx_engine": result.gate.engine,
        "expectations": len(result.gate.outcomes),
        "gate_seconds": round(gate_seconds, 2), "gx_checkpoint_seconds": round(result.gate.seconds, 2),
        "ingest_seconds_same_delivery": round(ingest_seconds, 2),
        "ratio_gate_over_ingest": round(gate_seconds / ingest_seconds, 2),
        "gate_rows_per_second": round(result.rows_read / gate_seconds),
        "peak_rss_gib": round(peak / 2**30, 2), "status": result.status,
        "phase_seconds": result.timings, "spark_master": settings.spark_master,
    }


def record(result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n\nEach section is one run of `make bench-...`, appended by "
                           "`pipelines/bench.py`; the baseline is measured in the same run.\n", encoding="utf-8")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {result['benchmark']} — {stamp}\n", f"Machine: {machine_description()}\n"]
    lines += ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items() if k != "benchmark"]
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest = sub.add_parser("ingest", help="hukou CSV ingest vs pyarrow CSV→Parquet")
    ingest.add_argument("--rows", type=int, default=1_000_000)
    ingest.add_argument("--seed", type=int, default=7)
    quality = sub.add_parser("quality", help="quality gate on a hukou delivery vs that delivery's ingest")
    quality.add_argument("--rows", type=int, default=1_000_000)
    quality.add_argument("--seed", type=int, default=7)
    quality.add_argument("--engine", choices=["spark", "pandas"], default="spark")
    args = parser.parse_args(argv)
    if args.benchmark == "ingest":
        result = bench_ingest(args.rows, args.seed)
    else:
        result = bench_quality(args.rows, args.seed, args.engine)
    record(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
