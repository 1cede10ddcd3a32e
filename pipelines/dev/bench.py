"""Benchmarks: ``python -m pipelines.dev.bench ingest --rows 1000000``.

Each run measures govlake and its baseline in the same run on the same input
and appends the figures, with the machine, to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipelines.contracts import get_contract, load_contracts
from pipelines.dev.evaluate import evaluate_conflicts, evaluate_resolution
from pipelines.dev.synth.city import generate_city, write_hukou_export
from pipelines.ingest.load import ingest_directory, ingest_file
from pipelines.lake.delta import delta_exists
from pipelines.libraries.build import build_libraries
from pipelines.serving.publish import publish
from pipelines.serving.rules import compile_rules
from pipelines.serving.trino import connect, trino_down, trino_up
from pipelines.settings import PROJECT_ROOT, get_settings, utc_now
from pipelines.spark import build_spark_session

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


def bench_ingest(rows: int, seed: int = 7, repeats: int = 3) -> dict:
    """1M-row hukou export: govlake ingest (raw → bronze → silver) vs pyarrow
    reading the same CSV and writing zstd Parquet; medians of ``repeats``
    alternating runs."""
    import dataclasses
    import shutil

    source_dir = BENCH_DIR / f"hukou-{rows}-{seed}"
    source = source_dir / "deliveries" / "psb" / "hukou" / "hukou_20261128.csv"
    if not source.exists():
        print(f"generating {rows:,} hukou rows ...", file=sys.stderr)
        write_hukou_export(source_dir, rows, seed=seed)
    size_mb = source.stat().st_size / 1e6

    lake = BENCH_DIR / "lake"
    settings = dataclasses.replace(get_settings(), home=str(lake))
    spark = build_spark_session(settings)
    contract = get_contract("psb.hukou")
    warmup = write_hukou_export(BENCH_DIR / "warmup", 2_000, seed=seed + 1)
    # Alternate baseline and govlake runs and report medians: single runs on a
    # shared 2-core VM vary by up to 50% (pyarrow 1.9-3.0 s on one day).
    arrow_runs, govlake_runs = [], []
    for _ in range(repeats):
        baseline = subprocess.run(
            [sys.executable, "-c", _PYARROW_BASELINE, str(source), str(BENCH_DIR / "baseline.parquet")],
            check=True, capture_output=True, text=True).stdout.split()
        arrow_runs.append(float(baseline[0]))
        arrow_rows, arrow_peak = int(baseline[1]), int(baseline[2])
        shutil.rmtree(lake, ignore_errors=True)
        ingest_file(contract, warmup, settings=settings, run_gate=False)  # tables exist, code is warm
        started = time.perf_counter()
        result = ingest_file(contract, source, settings=settings, run_gate=False)
        govlake_runs.append(time.perf_counter() - started)
        assert result.status == "loaded" and result.reconciles and arrow_rows == result.rows_read
    seconds, arrow_seconds = statistics.median(govlake_runs), statistics.median(arrow_runs)
    peak = _peak_rss(_jvm_pid(spark)) + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "benchmark": "ingest", "rows": result.rows_read, "file_mb": round(size_mb, 1),
        "govlake_seconds": round(seconds, 2), "govlake_rows_per_second": round(result.rows_read / seconds),
        "govlake_peak_rss_gib": round(peak / 2**30, 2),
        "pyarrow_seconds": round(arrow_seconds, 2), "pyarrow_rows_per_second": round(arrow_rows / arrow_seconds),
        "pyarrow_peak_rss_gib": round(arrow_peak / 2**30, 2),
        "ratio_govlake_over_pyarrow": round(seconds / arrow_seconds, 2),
        "govlake_runs_seconds": [round(x, 2) for x in govlake_runs],
        "pyarrow_runs_seconds": [round(x, 2) for x in arrow_runs],
        "govlake_phase_seconds": result.timings,
        "loaded": result.rows_loaded, "quarantined": result.rows_quarantined, "duplicate": result.rows_duplicate,
        "spark_master": settings.spark_master, "shuffle_partitions": settings.shuffle_partitions,
    }


def bench_quality(rows: int, seed: int = 7, engine: str = "pandas") -> dict:
    """The quality gate on a 1M-row hukou delivery: GX checkpoint (+ results
    and governance list) time against the ingest time of the same delivery,
    both from one ``ingest_file`` call's phase timings."""
    import dataclasses
    import shutil

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
    ingest_file(contract, warmup, settings=settings)  # JVM start, JIT and GX imports are not part of a load
    started = time.perf_counter()
    result = ingest_file(contract, source, settings=settings)
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


def bench_build(scales: list[float], seed: int = 7) -> dict:
    """From raw files to all base libraries at each scale: generate, ingest
    (with the quality gate), build every library; then a day's increment
    (one hukou delivery touching 0.1% of persons) applied to the built
    libraries. Time per stage, peak memory, accuracy against the ground truth,
    and a linear fit of time against scale to estimate the real city."""
    import dataclasses
    import shutil

    spark = build_spark_session(app_name="govlake-bench-build")
    jvm = _jvm_pid(spark)
    runs = []
    for scale in scales:
        root = BENCH_DIR / f"city-{scale}"
        shutil.rmtree(root, ignore_errors=True)
        settings = dataclasses.replace(get_settings(), home=str(BENCH_DIR / f"lake-{scale}"))
        shutil.rmtree(settings.home, ignore_errors=True)
        run = {"scale": scale}
        started = time.perf_counter()
        summary = generate_city(root, scale=scale, seed=seed)
        run["synth_s"] = round(time.perf_counter() - started, 1)
        run["persons"], run["entities"] = summary.persons, summary.market_entities + summary.social_orgs
        run["rows_delivered"] = sum(v for v in summary.files.values() if v > 0)
        started = time.perf_counter()
        ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=True)
        run["ingest_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        built = build_libraries(spark, settings=settings)
        run["build_s"] = round(time.perf_counter() - started, 1)
        run["libraries"] = {r["library"]: {"status": r["status"], "rows": r["rows"], "seconds": r.get("seconds"),
                                           "stages": r.get("stages")} for r in built}
        run["accuracy"] = {lib: {k: v for k, v in evaluate_resolution(spark, lib, root / "truth", settings).items()
                                 if k in ("subject_precision", "subject_recall", "link_precision", "link_recall",
                                          "unkeyed_records", "to_review")}
                           for lib in ("population", "legal_person")}
        run["conflicts"] = evaluate_conflicts(spark, root / "truth", settings)
        # a day's increment: 0.1% of persons move out
        delivery = root / "increment" / "hukou_20261129.csv"
        delivery.parent.mkdir(parents=True, exist_ok=True)
        changed = _write_increment(root / "truth" / "persons.csv", delivery, max(5, summary.persons // 1000))
        started = time.perf_counter()
        ingest_file(get_contract("psb.hukou"), delivery, settings=settings)
        increment = build_libraries(spark, settings=settings)
        run["increment_s"] = round(time.perf_counter() - started, 1)
        run["increment_changed"] = {r["library"]: r.get("changed") for r in increment}
        run["increment_expected_population_changes"] = changed
        run["total_s"] = round(run["synth_s"] + run["ingest_s"] + run["build_s"], 1)
        runs.append(run)
        print(json.dumps(run, ensure_ascii=False), flush=True)
    # least-squares line through (scale, seconds) for ingest + build
    xs = [r["scale"] for r in runs]
    ys = [r["ingest_s"] + r["build_s"] for r in runs]
    if len(runs) > 1:
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
        intercept = mean_y - slope * mean_x
    else:
        slope, intercept = ys[0] / xs[0], 0.0
    return {
        "benchmark": "bench-build: raw files to all base libraries",
        "runs": runs,
        "fit_seconds": f"{intercept:.0f} + {slope:.0f} × scale (ingest + build)",
        "estimate_scale_1_minutes": round((intercept + slope) / 60, 1),
        "peak_rss_gib_jvm": round(_peak_rss(jvm) / 2**30, 2),
        "peak_rss_gib_python": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "spark_master": get_settings().spark_master,
    }


QUERIES = {
    "point lookup by ID": "select * from {population} where person_id = '{person_id}' and is_current",
    "town aggregate": ("select town_code, count(*) as persons, count(death_date) as deceased, "
                       "avg(year(birth_date)) as mean_birth_year from {population} where is_current "
                       "group by town_code order by town_code"),
    "population ⋈ legal_person": ("select p.town_code, count(*) as representatives, "
                                  "count(distinct l.industry_section) as sections "
                                  "from {population} p join {legal_person} l "
                                  "on l.legal_representative_id = p.person_id "
                                  "where p.is_current and l.is_current group by p.town_code order by p.town_code"),
}


def bench_query(scale: float, repeats: int = 7, seed: int = 7) -> dict:
    """Trino (the project's server, HTTPS + password, warm) against DuckDB over
    the same Parquet files (the current Delta snapshot), same queries, same run.
    Uses bench-out/lake-<scale> from ``make bench-build`` (built here if missing)."""
    import dataclasses
    import statistics

    import duckdb

    settings = dataclasses.replace(get_settings(), home=str(BENCH_DIR / f"lake-{scale}"),
                                   trino_home=BENCH_DIR / "trino", trino_port=18643)
    spark = build_spark_session(app_name="govlake-bench-query")
    if not delta_exists(spark, settings.lake_path("base", "legal_person")):
        root = BENCH_DIR / f"city-{scale}"
        generate_city(root, scale=scale, seed=seed)
        ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=True)
        build_libraries(spark, ["population", "legal_person"], settings=settings)
    files = {name: [f.removeprefix("file://").removeprefix("file:") for f in
                    spark.read.format("delta").load(settings.lake_path("base", name)).inputFiles()]
             for name in ("population", "legal_person")}
    person_id = (spark.read.format("delta").load(settings.lake_path("base", "population"))
                 .where("is_current").select("person_id").orderBy("person_id").first()[0])
    rows = {name: spark.read.format("delta").load(settings.lake_path("base", name)).count() for name in files}
    trino_up(settings)
    try:
        compile_rules(settings)
        publish(settings)
        connection = connect(settings=settings)
        cursor = connection.cursor()
        duck = duckdb.connect()
        for name, paths in files.items():
            duck.execute(f"create view {name} as select * from read_parquet({paths!r})")
        results = {}
        for title, template in QUERIES.items():
            trino_sql = template.format(population="lake.base.population", legal_person="lake.base.legal_person",
                                        person_id=person_id)
            duck_sql = template.format(population="population", legal_person="legal_person", person_id=person_id)
            timings = {"trino": [], "duckdb": []}
            answers = {}
            for _ in range(repeats + 1):                       # the first run warms up and is not counted
                started = time.perf_counter()
                cursor.execute(trino_sql)
                answers["trino"] = cursor.fetchall()
                timings["trino"].append(time.perf_counter() - started)
                started = time.perf_counter()
                answers["duckdb"] = duck.execute(duck_sql).fetchall()
                timings["duckdb"].append(time.perf_counter() - started)
            trino_ms = statistics.median(timings["trino"][1:]) * 1000
            duck_ms = statistics.median(timings["duckdb"][1:]) * 1000
            results[title] = {"trino_ms": round(trino_ms, 1), "duckdb_ms": round(duck_ms, 1),
                              "ratio_trino_over_duckdb": round(trino_ms / duck_ms, 1),
                              "same_row_count": len(answers["trino"]) == len(answers["duckdb"])}
        connection.close()
    finally:
        trino_down(settings)
    return {"benchmark": f"bench-query: Trino vs DuckDB at scale {scale}",
            **{f"{title}": f"Trino {r['trino_ms']} ms, DuckDB {r['duckdb_ms']} ms, ratio "
               f"{r['ratio_trino_over_duckdb']}, same rows: {r['same_row_count']}" for title, r in results.items()},
            "rows_population_table": rows["population"], "rows_legal_person_table": rows["legal_person"],
            "repeats": repeats, "measure": "median of warm runs, wall clock from the client (Python trino over "
            "HTTPS with a password; duckdb in process)", "trino_heap": settings.trino_heap}


def _write_increment(persons_csv: Path, target: Path, changes: int) -> int:
    """A hukou delivery in which ``changes`` hukou persons move out (迁出)."""
    import csv

    headers = ["身份证号", "姓名", "性别", "民族", "出生日期", "户籍地址", "户号", "与户主关系", "登记日期", "人口状态"]
    written = 0
    with persons_csv.open(encoding="utf-8") as source, target.open("w", encoding="gb18030", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(headers)
        for row in csv.DictReader(source):
            if row["registration"] != "hukou" or row["population_status"] != "正常":
                continue
            out.writerow([row["person_id"], row["full_name"], row["gender"], row["ethnicity"], row["birth_date"],
                          "", "", "户主", "2026-11-29", "迁出"])
            written += 1
            if written == changes:
                break
    return written


def record(result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n\nEach section is one run of `make bench-...`, appended by "
                           "`pipelines/dev/bench.py`; the baseline is measured in the same run.\n", encoding="utf-8")
    stamp = utc_now().strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {result['benchmark']} — {stamp}\n", f"Machine: {machine_description()}\n"]
    if "runs" in result:
        lines += ["| scale | persons | entities | rows delivered | synth s | ingest s | build s | increment s | "
                  "person P / R | entity P / R | conflicts found / injected |", "|" + "---|" * 11]
        for run in result["runs"]:
            acc = run["accuracy"]
            lines.append(
                f"| {run['scale']} | {run['persons']:,} | {run['entities']:,} | {run['rows_delivered']:,} | "
                f"{run['synth_s']} | {run['ingest_s']} | {run['build_s']} | {run['increment_s']} | "
                f"{acc['population']['subject_precision']} / {acc['population']['subject_recall']} | "
                f"{acc['legal_person']['subject_precision']} / {acc['legal_person']['subject_recall']} | "
                f"{run['conflicts']['found']} / {run['conflicts']['injected']} |")
        lines += ["", "Seconds per library and stage at the largest scale:", "",
                  "| library | rows | seconds | stages |", "|---|---|---|---|"]
        for name, lib in result["runs"][-1]["libraries"].items():
            lines.append(f"| {name} | {lib['rows']:,} | {lib['seconds']} | {lib['stages']} |")
        lines.append("")
        result = {k: v for k, v in result.items() if k != "runs"}
    lines += ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items() if k != "benchmark"]
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.dev.bench")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest = sub.add_parser("ingest", help="hukou CSV ingest vs pyarrow CSV→Parquet")
    ingest.add_argument("--rows", type=int, default=1_000_000)
    ingest.add_argument("--seed", type=int, default=7)
    quality = sub.add_parser("quality", help="quality gate on a hukou delivery vs that delivery's ingest")
    quality.add_argument("--rows", type=int, default=1_000_000)
    quality.add_argument("--seed", type=int, default=7)
    quality.add_argument("--engine", choices=["spark", "pandas"], default="pandas")
    build = sub.add_parser("build", help="raw files to all base libraries at several scales")
    build.add_argument("--scales", default="0.01,0.02,0.05")
    build.add_argument("--seed", type=int, default=7)
    query = sub.add_parser("query", help="Trino vs DuckDB on base.population and base.legal_person")
    query.add_argument("--scale", type=float, default=0.05)
    query.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.benchmark == "ingest":
        result = bench_ingest(args.rows, args.seed)
    elif args.benchmark == "query":
        result = bench_query(args.scale, args.repeats)
    elif args.benchmark == "build":
        result = bench_build([float(x) for x in args.scales.split(",")], args.seed)
    else:
        result = bench_quality(args.rows, args.seed, args.engine)
    record(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
