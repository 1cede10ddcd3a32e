"""Benchmarks: ``python -m pipelines.dev.bench ingest --rows 1000000``.

Each run measures govlake and its baseline in the same run on the same input
and appends the figures, with the machine, to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pipelines.contracts import get_contract, load_contracts
from pipelines.dev.evaluate import evaluate_conflicts, evaluate_resolution
from pipelines.dev.synth.city import generate_city, write_hukou_export
from pipelines.ingest.load import ingest_directory, ingest_file
from pipelines.lake.delta import delta_exists
from pipelines.lake.upkeep import run_upkeep
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

# the same in bounded memory: batch by batch, as the large-file benchmark needs
_PYARROW_STREAMING_BASELINE = """
import sys, time, resource
import pyarrow.csv as pacsv, pyarrow.parquet as pq
source, target = sys.argv[1], sys.argv[2]
started = time.perf_counter()
reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(encoding="gb18030", use_threads=False),
                        parse_options=pacsv.ParseOptions(newlines_in_values=True))
rows = 0
with pq.ParquetWriter(target, reader.schema, compression="zstd") as writer:
    for batch in reader:
        writer.write_batch(batch)
        rows += batch.num_rows
print(time.perf_counter() - started, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
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


def _settle(pids: list[int], limit_gib: float = 4.0, seconds: float = 300.0) -> dict:
    """Wait until the summed RSS of the process trees ``pids`` is below
    ``limit_gib`` (an idle build service gives its heap back to the system
    within a few minutes: G1's periodic collection, ``IDLE_GC``), at most
    ``seconds``. Why: at scale 1.0 the accuracy evaluation (16 GiB) started
    right after day 0's build, beside a service still holding 8 GiB, and the
    kernel killed it on this 24 GiB machine. The city's own day has no such
    evaluation; it is the benchmark's."""
    started = time.perf_counter()
    peak = rss = sum(_tree_usage(pid)[0] for pid in pids)
    while rss > limit_gib * 2**30 and time.perf_counter() - started < seconds:
        time.sleep(5)
        rss = sum(_tree_usage(pid)[0] for pid in pids)
        peak = max(peak, rss)
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_gib": round(peak / 2**30, 2),
            "rss_gib_after": round(rss / 2**30, 2), "settled": rss <= limit_gib * 2**30}


def _tree_usage(root: int, parts: dict | None = None) -> tuple[int, dict[int, float]]:
    """Process ``root`` and all its descendants now: their summed resident
    memory in bytes, and each one's CPU seconds so far (user and system;
    a ``govlake build``'s Spark JVM is its child). ``parts``, when given,
    is filled with each process's RSS by pid, under its name and role."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, cpu, stack = 0, {}, [root]
    ticks = os.sysconf("SC_CLK_TCK")
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    if parts is not None:
                        parts[pid] = (_role(pid), int(line.split()[1]) * 1024)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks       # utime, stime
        except (OSError, IndexError, ValueError):
            pass
        stack += children.get(pid, [])
    return total, cpu


def _role(pid: int) -> str:
    """What a process in a measured tree is, in a word: ``java`` (a Spark
    JVM), ``pyspark worker`` (PySpark's daemon and its forked workers),
    ``build service``, or its command's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "gone"
    if Path(words[0]).name.startswith("java"):
        return "java"
    if "pyspark.daemon" in words or "pyspark.worker" in words:
        return "pyspark worker"
    if "pipelines.libraries.service" in words:
        return "build service"
    # names, not paths: the figures go into docs/benchmarks.md
    return " ".join(Path(w).name for w in words[:3] if not w.startswith("-"))[:40]


def _pss(pids) -> int:
    """The summed proportional set size of ``pids`` in bytes: a page shared
    by n processes (PySpark's forked workers share their daemon's) counts
    1/n in each, so the sum is the memory the processes hold together."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


def _measured_process(argv: list[str], env: dict | None = None, cwd: Path | None = None,
                      beside: list[int] | None = None) -> dict:
    """Run one whole process; its wall seconds, CPU seconds, peak RSS and
    stdout. CPU: of its process tree, the larger of what ``wait4`` reports
    (the process and the children it waited for) and the sum of each
    process's last sample (every 0.25 s): a ``govlake`` process leaves with
    ``os._exit`` and never waits for its Spark JVM, whose CPU only the
    samples see (its last quarter second may be missed). Peak RSS: the
    summed RSS of its process tree, sampled every
    0.25 s (child processes such as a Spark JVM count), or the process's own
    ``ru_maxrss`` (through ``wait4``: not the other runs') where that is
    larger and above this process's own peak. Linux carries a parent's
    peak over fork and exec into the child's ``ru_maxrss``: after the city
    was generated in this process (about 10 GiB at scale 1.0), every child
    would report at least that. ``beside``: processes that are not its
    children but work for it or hold memory while it runs (the lake's build
    service): their trees' RSS is added to each sample, and the CPU they
    use while it runs to its CPU."""
    import resource
    import tempfile
    import threading

    with tempfile.TemporaryFile("w+", encoding="utf-8") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True, cwd=cwd)
        tree_peak, tree_cpu, done = [0], {}, threading.Event()

        beside_before: dict[int, float] = {}
        for pid in beside or []:
            beside_before.update(_tree_usage(pid)[1])

        at_peak: dict = {}
        pss_peak = [0]

        def sample() -> None:
            count = 0
            while not done.wait(0.25):
                parts: dict = {}
                rss, cpu = _tree_usage(process.pid, parts)
                for pid in beside or []:
                    other_rss, other_cpu = _tree_usage(pid, parts)
                    rss += other_rss
                    cpu |= {f"beside {p}": seconds - beside_before.get(p, 0) for p, seconds in other_cpu.items()}
                if rss > tree_peak[0]:
                    tree_peak[0] = rss
                    at_peak.clear()
                    for role, size in parts.values():
                        at_peak[role] = at_peak.get(role, 0) + size
                if count % 4 == 0 or rss >= tree_peak[0]:        # PSS walks page tables: once a second, and at peaks
                    pss_peak[0] = max(pss_peak[0], _pss(parts))
                count += 1
                tree_cpu.update(cpu)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr[-2000:]}")
    own, inherited = usage.ru_maxrss * 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"wall": wall, "cpu": max(usage.ru_utime + usage.ru_stime, sum(tree_cpu.values())),
            "returncode": process.returncode,
            "peak_rss": max(own if own > inherited else 0, tree_peak[0]), "stdout": stdout, "stderr": stderr,
            "peak_pss": pss_peak[0],
            "rss_at_peak_by_role": {role: round(size / 2**30, 2) for role, size in
                                    sorted(at_peak.items(), key=lambda item: -item[1])}}


def _govlake_ingest(feed: str, path: Path, lake: Path) -> dict:
    """``govlake ingest FEED FILE --json`` as a user runs it (gate on), as a whole process."""
    env = dict(os.environ, GOVLAKE_HOME=str(lake))
    run = _measured_process([str(Path(sys.executable).with_name("govlake")), "ingest", feed, str(path), "--json"],
                            env)
    run["load"] = json.loads(run["stdout"])[0]
    return run


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def hukou_file(count: int, file_seed: int) -> Path:
    """A generated hukou export of ``count`` rows, kept under bench-out/ for later runs."""
    folder = BENCH_DIR / f"hukou-{count}-{file_seed}"
    source = folder / "deliveries" / "psb" / "hukou" / "hukou_20261128.csv"
    if not source.exists():                 # generated aside and renamed: an interrupted run leaves no half file
        import shutil

        print(f"generating {count:,} hukou rows ...", file=sys.stderr)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_hukou_export(partial, count, seed=file_seed)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return source


def bench_ingest(rows: int, seed: int = 7, repeats: int = 3, small_rows: int = 1_500) -> dict:
    """Whole processes, as a user runs them: ``govlake ingest psb.hukou FILE``
    (gate on, Data Docs rendered) against a pyarrow process reading the same
    GB18030 CSV and writing zstd Parquet; on a ``rows`` file and a
    ``small_rows`` file, alternating runs, medians of ``repeats``. Each
    govlake run loads into a lake that already holds one earlier delivery of
    the feed (tables and GX context exist, as on any day but the first)."""
    import shutil

    big, small = hukou_file(rows, seed), hukou_file(small_rows, seed)
    earlier = write_hukou_export(BENCH_DIR / "earlier", 2_000, seed=seed + 1)
    lake = BENCH_DIR / "lake"
    runs: dict[str, list[dict]] = {"govlake": [], "pyarrow": [], "govlake_small": [], "pyarrow_small": []}
    for _ in range(repeats):
        for label, source in (("", big), ("_small", small)):
            runs["pyarrow" + label].append(_measured_process(
                [sys.executable, "-c", _PYARROW_BASELINE, str(source), str(BENCH_DIR / "baseline.parquet")]))
            shutil.rmtree(lake, ignore_errors=True)
            _govlake_ingest("psb.hukou", earlier, lake)          # the lake's earlier day, not timed
            run = _govlake_ingest("psb.hukou", source, lake)
            assert run["load"]["status"] == "loaded" and run["load"]["reconciles"], run["load"]["message"]
            runs["govlake" + label].append(run)
    big_load = runs["govlake"][-1]["load"]
    arrow_rows = int(runs["pyarrow"][-1]["stdout"].split()[1])
    assert arrow_rows == big_load["rows_read"]
    figures = {}
    for label in ("", "_small"):
        govlake, arrow = runs["govlake" + label], runs["pyarrow" + label]
        figures |= {
            f"govlake{label}_wall_s": round(_median(govlake, "wall"), 2),
            f"pyarrow{label}_wall_s": round(_median(arrow, "wall"), 2),
            f"ratio{label}_wall": round(_median(govlake, "wall") / _median(arrow, "wall"), 2),
            f"govlake{label}_cpu_s": round(_median(govlake, "cpu"), 2),
            f"pyarrow{label}_cpu_s": round(_median(arrow, "cpu"), 2),
            f"govlake{label}_peak_rss_gib": round(_median(govlake, "peak_rss") / 2**30, 2),
            f"pyarrow{label}_peak_rss_gib": round(_median(arrow, "peak_rss") / 2**30, 2),
            f"ratio{label}_peak_rss": round(_median(govlake, "peak_rss") / _median(arrow, "peak_rss"), 2),
            f"govlake{label}_runs_wall_s": [round(r["wall"], 2) for r in govlake],
            f"pyarrow{label}_runs_wall_s": [round(r["wall"], 2) for r in arrow],
        }
    return {
        "benchmark": "bench-ingest: whole processes, gate on",
        "rows": big_load["rows_read"], "file_mb": round(big.stat().st_size / 1e6, 1), "small_rows": small_rows,
        **figures,
        "govlake_phase_seconds (last run, inside the process)": big_load["timings"],
        "govlake_small_phase_seconds (last run)": runs["govlake_small"][-1]["load"]["timings"],
        "loaded": big_load["rows_loaded"], "quarantined": big_load["rows_quarantined"],
        "duplicate": big_load["rows_duplicate"], "repeats": repeats,
        "includes": "govlake: interpreter start, imports (GX ~2.5 s), sha256, raw copy, parse, rules, bronze, "
                    "quarantine, GX gate + quality_results, silver, governance list, manifest, Data Docs; "
                    "pyarrow: interpreter start, read_csv (GB18030), write zstd Parquet",
    }


def bench_ingest_large(rows: int, seed: int = 7) -> dict:
    """One delivery larger than this machine's memory budget for it: a
    ``rows``-row hukou export (48M rows: about 5 GB of GB18030), loaded by a
    whole ``govlake ingest`` process (gate on) into an empty lake, against a
    whole pyarrow process streaming the same file into zstd Parquet in bounded
    memory. One run each (a run takes minutes); peak RSS through ``wait4``."""
    import shutil

    source = hukou_file(rows, seed)
    lake = BENCH_DIR / "lake-large"
    shutil.rmtree(lake, ignore_errors=True)
    arrow = _measured_process([sys.executable, "-c", _PYARROW_STREAMING_BASELINE, str(source),
                               str(BENCH_DIR / "baseline-large.parquet")])
    govlake = _govlake_ingest("psb.hukou", source, lake)
    load = govlake["load"]
    assert load["reconciles"] and load["status"] in ("loaded", "blocked"), load["message"]
    assert int(arrow["stdout"].split()[1]) == load["rows_read"]
    (BENCH_DIR / "baseline-large.parquet").unlink(missing_ok=True)
    shutil.rmtree(lake, ignore_errors=True)
    return {
        "benchmark": "bench-ingest-large: one delivery of several GB, whole processes, gate on",
        "rows": load["rows_read"], "file_gb": round(source.stat().st_size / 1e9, 2),
        "chunk_rows": get_settings().ingest_chunk_rows, "status": load["status"],
        "loaded": load["rows_loaded"], "quarantined": load["rows_quarantined"], "duplicate": load["rows_duplicate"],
        "govlake_wall_s": round(govlake["wall"], 1), "pyarrow_streaming_wall_s": round(arrow["wall"], 1),
        "ratio_wall": round(govlake["wall"] / arrow["wall"], 2),
        "govlake_cpu_s": round(govlake["cpu"], 1), "pyarrow_streaming_cpu_s": round(arrow["cpu"], 1),
        "govlake_peak_rss_gib": round(govlake["peak_rss"] / 2**30, 2),
        "pyarrow_streaming_peak_rss_gib": round(arrow["peak_rss"] / 2**30, 2),
        "govlake_phase_seconds (inside the process)": load["timings"], "repeats": 1,
        "includes": "govlake: everything bench-ingest lists, with the delivery read, classified and staged in "
                    "chunks and committed from the staged Parquet files; pyarrow: interpreter start, streaming "
                    "CSV read (GB18030), zstd Parquet written batch by batch",
    }


def bench_quality(rows: int, seed: int = 7, repeats: int = 3) -> dict:
    """GX's engines on the same 1M-row hukou delivery (its gate table, built
    once): the SQL engine on DuckDB (the default) and the pandas engine (the
    reference); the same suite must give the same decisions. In-process
    seconds of ``validate_delivery`` (GX already imported), medians of
    ``repeats``, against parsing the same file."""
    import dataclasses

    from pipelines.ingest.classify import classify_delivery, gate_table
    from pipelines.ingest.readers import read_delivery
    from pipelines.quality.gate import validate_delivery
    from pipelines.quality.suites import row_count_parameters

    source_dir = BENCH_DIR / f"hukou-{rows}-{seed}"
    source = source_dir / "deliveries" / "psb" / "hukou" / "hukou_20261128.csv"
    if not source.exists():
        print(f"generating {rows:,} hukou rows ...", file=sys.stderr)
        write_hukou_export(source_dir, rows, seed=seed)
    settings = dataclasses.replace(get_settings(), home=str(BENCH_DIR / "lake-quality"))
    contract = get_contract("psb.hukou")
    parse = []
    for _ in range(repeats):
        started = time.perf_counter()
        delivery = read_delivery(contract, source)
        parse.append(time.perf_counter() - started)
    classified = classify_delivery(delivery.table, contract, delivery.headers_found, [])
    table = gate_table(classified)
    parameters = row_count_parameters(None)
    seconds, decisions = {}, {}
    for engine in ("duckdb", "pandas"):
        engine_settings = dataclasses.replace(settings, gate_engine=engine)
        validate_delivery(table.slice(0, 100), contract, "warm-up", parameters, engine_settings)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            gate = validate_delivery(table, contract, f"bench-{engine}", parameters, engine_settings)
            runs.append(time.perf_counter() - started)
        seconds[engine] = statistics.median(runs)
        decisions[engine] = [(o.rule, o.success, o.element_count, o.unexpected_count, o.observed_value,
                              o.sample_rows) for o in gate.outcomes]
    assert decisions["duckdb"] == decisions["pandas"], "the engines disagree"
    parse_seconds = statistics.median(parse)
    return {
        "benchmark": "bench-quality: GX engines on one delivery", "rows": table.num_rows,
        "expectations": len(decisions["duckdb"]), "same_decisions": True,
        "duckdb_sql_gate_s": round(seconds["duckdb"], 2), "pandas_gate_s": round(seconds["pandas"], 2),
        "ratio_pandas_over_duckdb": round(seconds["pandas"] / seconds["duckdb"], 1),
        "parse_file_s": round(parse_seconds, 2),
        "ratio_duckdb_gate_over_parse": round(seconds["duckdb"] / parse_seconds, 2),
        "repeats": repeats,
        "includes": "validate_delivery: GX context, datasource and checkpoint set-up, the run, results; "
                    "not GX's import (once per process, ~2.5 s) nor Data Docs",
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


# A new Trino JVM answers its first lookups about twice as slowly as a warm
# one: the JIT compiles the query path over the first ~200 queries (measured
# at scale 0.1: 253 ms for queries 1-10, ~95 ms after 200). A lake's server
# runs for days, so the benchmark warms it up first, for at most this long,
# and reports the cold figure beside the warm one.
WARMUP_QUERIES, WARMUP_SECONDS = 200, 60


def _trino_and_duckdb(spark, settings, titles: list[str], repeats: int) -> tuple[dict, dict]:
    """Run ``QUERIES[title]`` for each title on the project's Trino (started
    here on the lake of ``settings``, HTTPS + password) and on DuckDB over
    the current Delta snapshot's Parquet files, alternating; medians in ms.
    Trino is warmed up first (``WARMUP_QUERIES``); its first ``repeats`` runs
    after start are reported as ``trino_cold_ms``. Each lookup asks for a
    different person. Returns (results by title, rows per table)."""
    import duckdb

    files = {name: [f.removeprefix("file://").removeprefix("file:") for f in
                    spark.read.format("delta").load(settings.lake_path("base", name)).inputFiles()]
             for name in ("population", "legal_person")}
    rows = {name: spark.read.format("delta").load(settings.lake_path("base", name)).count() for name in files}
    wanted = WARMUP_QUERIES + repeats + 1
    person_ids = [r[0] for r in spark.read.format("delta").load(settings.lake_path("base", "population"))
                  .where("is_current").select("person_id").sample(fraction=min(1.0, 4 * wanted / rows["population"]),
                                                                  seed=7).limit(wanted).collect()]
    if not person_ids:
        raise RuntimeError(f"{settings.lake_path('base', 'population')} has no current person to look up")
    person_ids += [person_ids[0]] * (wanted - len(person_ids))
    for name, paths in files.items():
        # DuckDB reads the Parquet files as they are: rows a deletion vector
        # removed would still count (upkeep's clustering drops the vectors)
        seen = duckdb.connect().execute(f"select count(*) from read_parquet({paths!r})").fetchone()[0]
        if seen != rows[name]:
            raise RuntimeError(f"base.{name}: its files hold {seen} rows, the table {rows[name]}: deletion "
                               "vectors are in force; run `govlake upkeep --layer base` first")
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
        for title in titles:
            template = QUERIES[title]

            def sql(tables: tuple[str, str], run: int, template=template) -> str:
                return template.format(population=tables[0], legal_person=tables[1], person_id=person_ids[run])

            trino_tables, duck_tables = ("lake.base.population", "lake.base.legal_person"), ("population",
                                                                                             "legal_person")
            cold, warm_until = [], time.monotonic() + WARMUP_SECONDS
            for run in range(WARMUP_QUERIES):
                started = time.perf_counter()
                cursor.execute(sql(trino_tables, run))
                cursor.fetchall()
                cold.append(time.perf_counter() - started)
                if time.monotonic() > warm_until:
                    break
            timings = {"trino": [], "duckdb": []}
            answers = {}
            for run in range(WARMUP_QUERIES, WARMUP_QUERIES + repeats + 1):   # the first run is not counted
                started = time.perf_counter()
                cursor.execute(sql(trino_tables, run))
                answers["trino"] = cursor.fetchall()
                timings["trino"].append(time.perf_counter() - started)
                started = time.perf_counter()
                answers["duckdb"] = duck.execute(sql(duck_tables, run)).fetchall()
                timings["duckdb"].append(time.perf_counter() - started)
            trino_ms = statistics.median(timings["trino"][1:]) * 1000
            duck_ms = statistics.median(timings["duckdb"][1:]) * 1000
            results[title] = {"trino_ms": round(trino_ms, 1), "duckdb_ms": round(duck_ms, 1),
                              "trino_cold_ms": round(statistics.median(cold[:repeats]) * 1000, 1),
                              "warmup_queries": len(cold),
                              "ratio_trino_over_duckdb": round(trino_ms / duck_ms, 1),
                              "same_row_count": len(answers["trino"]) == len(answers["duckdb"])}
        connection.close()
    finally:
        trino_down(settings)
    return results, rows


def bench_query(scale: float, repeats: int = 7, seed: int = 7) -> dict:
    """Trino (the project's server, HTTPS + password, warm) against DuckDB over
    the same Parquet files (the current Delta snapshot), same queries, same run.
    Uses bench-out/lake-<scale> from ``make bench-build`` (built here if missing)."""
    import dataclasses

    settings = dataclasses.replace(get_settings(), home=str(BENCH_DIR / f"lake-{scale}"),
                                   trino_home=BENCH_DIR / "trino", trino_port=18643)
    spark = build_spark_session(app_name="govlake-bench-query")
    if not delta_exists(spark, settings.lake_path("base", "legal_person")):
        root = BENCH_DIR / f"city-{scale}"
        generate_city(root, scale=scale, seed=seed)
        ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=True)
        build_libraries(spark, ["population", "legal_person"], settings=settings)
    # the nightly upkeep first: clustered by key, and without the deletion vectors of bench-build's increment,
    # which DuckDB's Parquet reader would not apply
    run_upkeep(["base"], settings, spark_of=lambda: spark)
    results, rows = _trino_and_duckdb(spark, settings, list(QUERIES), repeats)
    return {"benchmark": f"bench-query: Trino vs DuckDB at scale {scale}",
            **{f"{title}": f"Trino {r['trino_ms']} ms (cold {r['trino_cold_ms']} ms), DuckDB {r['duckdb_ms']} ms, "
               f"ratio {r['ratio_trino_over_duckdb']}, same rows: {r['same_row_count']}"
               for title, r in results.items()},
            "rows_population_table": rows["population"], "rows_legal_person_table": rows["legal_person"],
            "repeats": repeats, "measure": "median of warm runs, wall clock from the client (Python trino over "
            f"HTTPS with a password, after up to {WARMUP_QUERIES} warm-up queries or {WARMUP_SECONDS} s; cold: the "
            "first runs after Trino started; duckdb in process)", "trino_heap": settings.trino_heap}


# ``govlake`` run from the package on PYTHONPATH (another commit's worktree) with this venv's libraries
_GOVLAKE_FROM_PATH = "import sys; from pipelines.cli import run; sys.argv[0] = 'govlake'; run()"


def _govlake(args: list[str], lake: Path, code: Path | None = None, beside: list[int] | None = None,
             env_extra: dict[str, str] | None = None) -> dict:
    """``govlake ARGS --json`` as a whole process on the lake ``lake``: wall,
    CPU, peak RSS of its process tree (the Spark JVM included for a build)
    and the parsed output. ``code``: a checkout of another commit to run
    instead of this one (``_code_checkout``)."""
    env = dict(os.environ, GOVLAKE_HOME=str(lake)) | (env_extra or {})
    command = [str(Path(sys.executable).with_name("govlake"))]
    if code is not None:
        # run from the checkout: ``python -c`` puts the working directory before PYTHONPATH, and Spark's
        # Python workers start there too; the jars are this tree's (the checkout has none downloaded)
        env |= {"PYTHONPATH": str(code), "GOVLAKE_CACHE": str(get_settings().cache_dir)}
        command = [sys.executable, "-c", _GOVLAKE_FROM_PATH]
    run = _measured_process([*command, *args, "--json"], env, cwd=code, beside=beside)
    try:
        run["output"] = json.loads(run.pop("stdout"))
    except json.JSONDecodeError:
        raise RuntimeError(f"govlake {' '.join(args)} printed no JSON: {run['stderr'][-2000:]}") from None
    return run


def _memory(run: dict) -> dict:
    """A measured process's memory for a stage line: peak summed RSS (the
    issue's measure), peak summed PSS (shared pages counted once), and the
    RSS by role at the peak."""
    return {"peak_rss_gib": round(run["peak_rss"] / 2**30, 2), "peak_pss_gib": round(run["peak_pss"] / 2**30, 2),
            "rss_at_peak_by_role": run["rss_at_peak_by_role"]}


def _ingest_stage(directory: Path, lake: Path, beside: list[int] | None = None) -> dict:
    run = _govlake(["ingest", "--all", str(directory)], lake, beside=beside)
    loads = run["output"]
    return {"seconds": round(run["wall"], 1), **_memory(run),
            "deliveries": len(loads), "rows_read": sum(r.get("rows_read") or 0 for r in loads),
            "rows_loaded": sum(r.get("rows_loaded") or 0 for r in loads),
            "statuses": dict(sorted(Counter(r["status"] for r in loads).items())),
            # snapshots that superseded an earlier delivery: rows added / removed against it
            "snapshots": [f"{r['feed']} +{r['changes'].get('added')}/-{r['changes'].get('removed')}"
                          for r in loads if r.get("superseded_load_ids")]}


def _build_stage(lake: Path, full: bool = False, beside: list[int] | None = None,
                 env_extra: dict[str, str] | None = None) -> dict:
    run = _govlake(["build"] + (["--full"] if full else []), lake, beside=beside, env_extra=env_extra)
    built = [r for r in run["output"] if "mode" in r or r.get("status") == "skipped"]
    service = re.search(r"built by the build service \(pid (\d+)\)", run["stderr"])
    return {"seconds": round(run["wall"], 1), **_memory(run),
            "cpu_s": round(run["cpu"], 1), "by_build_service": int(service.group(1)) if service else None,
            "libraries": {r["library"]: {"status": r["status"], "mode": r.get("mode"), "rows": r.get("rows"),
                                         "touched_keys": r.get("touched_keys"), "changed": r.get("changed"),
                                         "inserted": r.get("inserted"), "seconds": r.get("seconds"),
                                         "stages": r.get("stages")}
                          for r in built}}


def bench_city(scale: float, days: int = 3, seed: int = 7, repeats: int = 15, full_rebuild: bool = True,
               build_service: bool = True) -> dict:
    """A city as the lake runs it: day 0's deliveries ingested through the
    gate (``govlake ingest --all``) and every library built (``govlake
    build``), then ``days`` daily increments (ingest the day's change
    deliveries, build incrementally), then ``govlake build --full`` on the
    final lake as the baseline an increment is compared with (unless
    ``full_rebuild`` is off: then day 0's build is), then the nightly upkeep
    of the base libraries, then warm point lookups on Trino and DuckDB. Every stage is a whole process, timed
    with its peak RSS; person and entity precision / recall against the
    truth after day 0. The city is generated once per (scale, seed, days)
    and kept in bench-out/.

    ``build_service`` (the default, as a city would run its lake): the
    lake's build service is started after day 0's ingest (``govlake
    builder up``, a stage of its own) and every build is a ``govlake
    build`` that builds through it, day 0's being its first; the service's
    RSS and CPU count in every stage while it is up (it idles beside the
    ingests and the accuracy evaluation), and it is stopped after the last
    build. Off: each build in its own process, as before."""
    import dataclasses
    import shutil

    from pipelines.dev.synth.days import generate_days

    root = BENCH_DIR / f"city-{scale}-{seed}-days"
    lake = BENCH_DIR / f"lake-city-{scale}"
    result: dict = {"benchmark": f"bench-city: scale {scale}, day 0 and {days} daily increments"}
    started = time.perf_counter()
    if not (root / "truth" / f"day-{days}" / "events.csv").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate_city(root, scale=scale, seed=seed)
        generate_days(root, days, scale=scale, seed=seed)
        result["synth_s"] = round(time.perf_counter() - started, 1)
    else:
        result["synth_s"] = "cached"
    shutil.rmtree(lake, ignore_errors=True)
    stages: dict = {}

    def measured(name: str, stage: dict) -> None:
        # each stage as it ends, on stderr: a long run that fails later still says how far it got
        stages[name] = stage
        print(f"bench-city {scale}: {name}: {json.dumps(stage, ensure_ascii=False)}", file=sys.stderr, flush=True)

    measured("day 0 ingest", _ingest_stage(root / "deliveries", lake))
    beside: list[int] = []
    try:
        if build_service:
            service = _govlake(["builder", "up"], lake)
            beside.append(service["output"]["pid"])
            measured("build service start", {"seconds": round(service["wall"], 1), "pid": beside[0],
                                             "peak_rss_gib": round(_tree_usage(beside[0])[0] / 2**30, 2)})
        measured("day 0 build", _build_stage(lake, beside=beside))
        settings = dataclasses.replace(get_settings(), home=str(lake), trino_home=BENCH_DIR / "trino",
                                       trino_port=18643)
        if beside:
            measured("build service settle", _settle(beside))
        # in a process of its own: a Spark JVM kept by this one would sit beside every later build's
        evaluated = _measured_process([sys.executable, "-m", "pipelines.dev.evaluate", str(lake), str(root / "truth")],
                                      beside=beside)
        if evaluated["returncode"] != 0:
            raise RuntimeError(f"the accuracy evaluation failed: {evaluated['stderr'][-2000:]}")
        accuracy = json.loads(evaluated["stdout"].strip().splitlines()[-1])
        measured("accuracy after day 0", {"seconds": round(evaluated["wall"], 1),
                                          **_memory(evaluated),
                                          "person_precision_recall": [accuracy["population"]["subject_precision"],
                                                                      accuracy["population"]["subject_recall"]],
                                          "entity_precision_recall": [accuracy["legal_person"]["subject_precision"],
                                                                      accuracy["legal_person"]["subject_recall"]]})
        for day in range(1, days + 1):
            measured(f"day {day} ingest", _ingest_stage(root / "days" / str(day), lake, beside))
            measured(f"day {day} build", _build_stage(lake, beside=beside))
        if full_rebuild:
            measured("full rebuild (baseline)", _build_stage(lake, full=True, beside=beside))
        if build_service:
            for name, stage in stages.items():
                if "by_build_service" in stage and stage["by_build_service"] != beside[0]:
                    raise RuntimeError(f"{name} did not run in the build service started for the run: {stage}")
    finally:                    # after the last build, or a failed stage: no build service left behind
        if build_service:
            subprocess.run([str(Path(sys.executable).with_name("govlake")), "builder", "down"],
                           env=dict(os.environ, GOVLAKE_HOME=str(lake)), capture_output=True)
    # the nightly upkeep: base libraries clustered by key (point lookups read one file)
    upkeep = _govlake(["upkeep", "--layer", "base"], lake)
    measured("upkeep (base)", {"seconds": round(upkeep["wall"], 1), **_memory(upkeep),
                               "actions": {r["table"].rsplit("/", 1)[-1]: r["action"] for r in upkeep["output"]}})
    spark = build_spark_session(app_name="govlake-bench-city")
    lookups, rows = _trino_and_duckdb(spark, settings, ["point lookup by ID"], repeats)
    lookup = lookups["point lookup by ID"]
    day0 = stages["day 0 ingest"]["seconds"] + stages["day 0 build"]["seconds"]
    # without the full rebuild, day 0's build (every key, on an empty lake) is the baseline
    baseline = "full rebuild (baseline)" if full_rebuild else "day 0 build"
    increments = [stages[f"day {d} ingest"]["seconds"] + stages[f"day {d} build"]["seconds"]
                  for d in range(1, days + 1)]
    result |= {
        "day0_ingest_build_min": round(day0 / 60, 1),
        "increment_ingest_build_s": increments,
        "increment_build_s": [stages[f"day {d} build"]["seconds"] for d in range(1, days + 1)],
        "full_rebuild_s": stages[baseline]["seconds"],
        "baseline": baseline,
        "increment_build_over_full_rebuild": round(statistics.median(
            stages[f"day {d} build"]["seconds"] for d in range(1, days + 1))
            / stages[baseline]["seconds"], 2),
        "peak_rss_gib": max(stage["peak_rss_gib"] for stage in stages.values()),
        "peak_pss_gib": max(stage.get("peak_pss_gib", 0) for stage in stages.values()),
        "person_precision_recall": [accuracy["population"]["subject_precision"],
                                    accuracy["population"]["subject_recall"]],
        "entity_precision_recall": [accuracy["legal_person"]["subject_precision"],
                                    accuracy["legal_person"]["subject_recall"]],
        "trino_point_lookup_p50_ms": lookup["trino_ms"], "duckdb_point_lookup_p50_ms": lookup["duckdb_ms"],
        "trino_point_lookup_cold_p50_ms": lookup["trino_cold_ms"],
        "rows_population_table": rows["population"], "rows_legal_person_table": rows["legal_person"],
        "stages": stages,
        "build_service": build_service,
        "measure": ("whole govlake processes (ingest --all with the gate; build: incremental where the state "
                    "allows, Spark JVM included"
                    + ("; each build by the lake's build service, started after day 0's ingest, its RSS and CPU "
                       "counted in every stage it was up for; before the accuracy evaluation the run waits for the "
                       "idle service to give memory back (stage 'build service settle')" if build_service
                       else "; each build in its own process")
                    + "); peak RSS is each stage's process tree (sampled every 0.25 s; PSS beside it counts a "
                    "page shared by forked PySpark workers once); the "
                    + ("baseline is build --full on the final lake in the same run" if full_rebuild else
                       "baseline is day 0's build (every key, empty lake), no full rebuild was run")
                    + "; upkeep clusters the base libraries before the lookups; point lookups median of "
                    f"{repeats} runs, each of another person, Python trino client over HTTPS with a password, "
                    f"after {lookup['warmup_queries']} warm-up lookups (cold: the first {repeats} after Trino "
                    "started), DuckDB in process over the same Parquet files"),
    }
    return result


def _code_checkout(ref: str) -> tuple[str, Path]:
    """The commit ``ref`` names, and a worktree of it under
    bench-out/code/<commit> (made once, reused)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, check=True, capture_output=True,
                              text=True).stdout.strip()

    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = BENCH_DIR / "code" / commit[:12]
    if not (tree / "pipelines" / "cli").is_dir():
        git("worktree", "add", "--force", "--detach", str(tree), commit)
    return commit, tree


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _copy_lake(source: Path, target: Path) -> None:
    import shutil

    _remove(target)
    shutil.copytree(source, target, symlinks=True)


def bench_day(baseline: str, scale: float = 1.0, seed: int = 7, day: int = 4, repeats: int = 2) -> dict:
    """One daily build as the lake runs it (``govlake build``, a whole
    process, after the day's deliveries were ingested), the code of this
    working tree against the commit ``baseline``, alternating on copies of
    the same lake, medians of ``repeats``: a change to the build measured
    at the scale it is for in some twenty minutes, not bench-city's hours.

    Both start from bench-city's kept city and lake (bench-out/city-<scale>-
    <seed>-days, bench-out/lake-city-<scale>; run ``make bench-city`` first).
    Each side's lake is a copy brought to that side's code by a build with
    nothing new to build and ``--accept-code-change`` (the libraries stay
    incremental and their maintained tables stand; refused, and so is this
    benchmark, when more than build code differs from the lake's last
    build, e.g. a spec), with day ``day``'s deliveries then ingested by that
    side's code. A baseline older than e748a48 re-makes its maintained
    tables after an accepted change (minutes at scale 1.0): give the commit
    that built the kept lake, or a later one. Each run builds on a fresh
    copy of its side's lake. Both
    sides must find the same changes (the libraries' inserted, changed and
    removed counts), or the comparison is refused. Disk: three copies of
    the lake."""
    root = BENCH_DIR / f"city-{scale}-{seed}-days"
    kept = BENCH_DIR / f"lake-city-{scale}"
    deliveries = root / "days" / str(day)
    if not kept.is_dir() or not (root / "truth" / "persons.csv").exists():
        raise FileNotFoundError(f"bench-day needs bench-city's kept city {root} and lake {kept}: run make "
                                f"bench-city SCALE={scale} (with DAYS= before DAY={day}) first")
    if not deliveries.is_dir():                  # the city's later days, made from its truth (deterministic)
        # in a process of its own: the generator's memory (GiBs at scale 1.0) is not held beside the builds
        made = _measured_process([sys.executable, "-c", "import sys; from pathlib import Path; from pipelines.dev."
                                  "synth.days import generate_days; generate_days(Path(sys.argv[1]), int(sys.argv[2]), "
                                  "scale=float(sys.argv[3]), seed=int(sys.argv[4]))",
                                  str(root), str(day), str(scale), str(seed)])
        if made["returncode"] != 0:
            raise RuntimeError(f"bench-day: generating day {day} failed: {made['stderr'][-2000:]}")
    commit, checkout = _code_checkout(baseline)
    sides = {f"baseline {commit[:12]}": checkout, "this tree": None}
    prepared: dict[str, Path] = {}
    result: dict = {"benchmark": f"bench-day: scale {scale}, day {day}'s build, this tree against {commit[:12]}"}
    for side, code in sides.items():
        lake = BENCH_DIR / "bench-day" / ("baseline" if code is not None else "this")
        _copy_lake(kept, lake)
        accepted = _govlake(["build", "--accept-code-change", "--reason", f"bench-day: {side}"], lake, code)
        # incremental, not unchanged, where the records read the date and the lake was built on another day
        if accepted["returncode"] != 0:
            raise RuntimeError(f"bench-day: the lake cannot be brought to the {side} code incrementally (more "
                               f"than build code differs?): {accepted['stderr'][-2000:]}")
        if any(r.get("mode") == "full" for r in accepted["output"]):
            raise RuntimeError(f"bench-day: bringing the lake to the {side} code rebuilt a library in full: "
                               f"{json.dumps(accepted['output'], ensure_ascii=False)[:2000]}")
        ingested = _govlake(["ingest", "--all", str(deliveries)], lake, code)
        statuses = Counter(r.get("status") for r in ingested["output"]) if isinstance(ingested["output"], list) else {}
        if ingested["returncode"] != 0 or set(statuses) != {"loaded"}:
            raise RuntimeError(f"bench-day: day {day}'s deliveries did not all load on the {side} side: "
                               f"{dict(statuses)} (did bench-city ingest that day already? DAY must come after "
                               "its DAYS)")
        prepared[side] = lake
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    run_lake = BENCH_DIR / "bench-day" / "run"
    for repeat in range(repeats):
        # each side first in every other pair: a machine that slows down during the run favours neither
        for side, code in list(sides.items())[::1 if repeat % 2 == 0 else -1]:
            _copy_lake(prepared[side], run_lake)
            build = _govlake(["build"], run_lake, code)
            if build["returncode"] != 0:
                raise RuntimeError(f"bench-day: the {side} build failed: {build['stderr'][-2000:]}")
            libraries = {r["library"]: r for r in build["output"] if "library" in r}
            runs[side].append({"seconds": round(build["wall"], 1), "cpu_s": round(build["cpu"], 1),
                               "peak_rss_gib": round(build["peak_rss"] / 2**30, 2),
                               "libraries": {name: {key: r.get(key) for key in (
                                   "mode", "touched_keys", "inserted", "changed", "removed", "seconds", "stages")}
                                   for name, r in libraries.items()}})
    for lake in [run_lake, *prepared.values()]:
        _remove(lake)

    def changes(run: dict) -> dict:
        return {name: (lib["mode"], lib["inserted"], lib["changed"], lib["removed"])
                for name, lib in run["libraries"].items()}

    found = {side: [changes(run) for run in side_runs] for side, side_runs in runs.items()}
    first = next(iter(found.values()))[0]
    if any(f != first for side_found in found.values() for f in side_found):
        raise RuntimeError(f"bench-day: the sides' builds found different changes, so their times do not compare: "
                           f"{json.dumps(found, ensure_ascii=False)[:3000]}")
    medians = {side: statistics.median(run["seconds"] for run in side_runs) for side, side_runs in runs.items()}
    baseline_side, this_side = list(sides)
    result |= {
        "build_s": {side: [run["seconds"] for run in side_runs] for side, side_runs in runs.items()},
        "median_s": medians,
        "this_over_baseline": round(medians[this_side] / medians[baseline_side], 2),
        "cpu_s": {side: [run["cpu_s"] for run in side_runs] for side, side_runs in runs.items()},
        "peak_rss_gib": max(run["peak_rss_gib"] for side_runs in runs.values() for run in side_runs),
        "libraries_s": {side: {name: [run["libraries"][name]["seconds"] for run in side_runs]
                               for name in side_runs[0]["libraries"]} for side, side_runs in runs.items()},
        "changes": {name: dict(zip(("mode", "inserted", "changed", "removed"), found_change))
                    for name, found_change in first.items()},
        "build_workers": os.environ.get("GOVLAKE_BUILD_WORKERS", "default"),
        "measure": (f"govlake build as a whole process (Spark JVM start included; the day's ingest not), "
                    f"alternating, median of {repeats}; each on a fresh copy of its side's lake: bench-city's kept "
                    f"lake brought to that side's code by an accepted build with nothing new, day {day} ingested"),
    }
    return result


# ``govlake synth`` with its workbooks written in its own process, as before XlsxSink
_SYNTH_INLINE_XLSX = """
import sys
from pipelines.dev.synth import writers
from pipelines.cli import run
writers.XLSX_WRITER = writers.InlineXlsx
sys.argv[0] = "govlake"
run()
"""


def bench_synth(scale: float, days: int = 1, seed: int = 7, repeats: int = 2) -> dict:
    """``govlake synth --scale S --days D`` as whole processes: as it runs
    (each XLSX export written by a process of its own) against the same
    command writing its workbooks in process, alternating, medians of
    ``repeats``. Both must write the same files: every delivery's bytes, and
    each workbook's sheet (its zip's timestamps aside), are compared."""
    import hashlib
    import shutil
    import zipfile

    def fingerprint(root: Path) -> dict[str, str]:
        prints = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                if path.suffix == ".xlsx":
                    with zipfile.ZipFile(path) as book:
                        content = b"".join(book.read(name) for name in sorted(book.namelist())
                                           if not name.startswith("docProps/"))
                else:
                    content = path.read_bytes()
                prints[str(path.relative_to(root))] = hashlib.sha256(content).hexdigest()
        return prints

    govlake = str(Path(sys.executable).with_name("govlake"))
    arguments = ["synth", "--scale", str(scale), "--seed", str(seed), "--days", str(days), "--json"]
    kinds = {"govlake synth": [govlake], "workbooks in process (baseline)": [sys.executable, "-c", _SYNTH_INLINE_XLSX]}
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    first: dict[str, str] | None = None
    for _ in range(repeats):
        for kind, command in kinds.items():
            out = BENCH_DIR / f"synth-{scale}-{'inline' if 'baseline' in kind else 'sink'}"
            shutil.rmtree(out, ignore_errors=True)
            run = _measured_process(command + arguments + ["--out", str(out)])
            if run["returncode"] != 0:
                raise RuntimeError(f"{kind} failed: {run['stderr'][-2000:]}")
            runs[kind].append(run)
            written = fingerprint(out)
            shutil.rmtree(out, ignore_errors=True)
            first = first if first is not None else written
            if written != first:          # every run of either kind writes the files of the first
                differ = sorted(set(first) ^ set(written) | {k for k in first if first[k] != written.get(k)})
                raise RuntimeError(f"{kind} wrote other files than the first run: {differ[:5]}")
    summary = json.loads(runs["govlake synth"][0]["stdout"])
    wall = {kind: _median(kind_runs, "wall") for kind, kind_runs in runs.items()}
    return {
        "benchmark": f"bench-synth: scale {scale}, day 0 and {days} days of changes",
        "persons": summary["persons"], "market_entities": summary["market_entities"],
        "files": len(first),
        "synth_s": round(wall["govlake synth"], 1),
        "baseline_s": round(wall["workbooks in process (baseline)"], 1),
        "synth_over_baseline": round(wall["govlake synth"] / wall["workbooks in process (baseline)"], 2),
        "cpu_s": round(_median(runs["govlake synth"], "cpu"), 1),
        "baseline_cpu_s": round(_median(runs["workbooks in process (baseline)"], "cpu"), 1),
        "peak_rss_gib": round(max(r["peak_rss"] for r in runs["govlake synth"]) / 2**30, 2),
        "baseline_peak_rss_gib": round(max(r["peak_rss"] for r in runs["workbooks in process (baseline)"]) / 2**30, 2),
        "same_files": True,                  # else it raised above
        "measure": (f"whole processes, alternating, median of {repeats}; wall and CPU seconds include the "
                    "workbook writers' processes; peak RSS of the process tree; the files of both compared "
                    "(XLSX: every part of the zip but docProps, which holds the time it was written)"),
    }


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


def bench_er(scale: float, seed: int = 7, repeats: int = 3) -> dict:
    """govlake's entity resolution against Splink on the hard-case city
    (``govlake synth --hard``) at ``scale``: generate, ingest, build the
    address, population and legal-person libraries, export what resolution
    compares (``er_compare.export``), then run each matcher ``repeats``
    times, alternating, as whole processes on the same records: precision,
    recall and F1 of person and entity links against the truth, and the
    median wall seconds."""
    import shutil

    from pipelines.dev import er_compare

    root, folder, lake = BENCH_DIR / f"er-city-{scale}", BENCH_DIR / f"er-records-{scale}", BENCH_DIR / f"er-lake-{scale}"
    for path in (root, folder, lake):
        shutil.rmtree(path, ignore_errors=True)
    # in a process of its own, so that no Spark JVM of it stays beside the matchers
    started = time.perf_counter()
    made = _measured_process([sys.executable, "-m", "pipelines.dev.er_compare", "prepare", str(folder),
                              "--scale", str(scale), "--seed", str(seed), "--city", str(root), "--lake", str(lake)])
    if made["returncode"]:
        raise RuntimeError(f"er_compare prepare failed: {made['stderr'][-2000:]}")
    prepared_counts = json.loads(made["stdout"].strip().splitlines()[-1])
    prepared = round(time.perf_counter() - started, 1)
    seconds: dict[str, list[float]] = {"govlake": [], "splink": []}
    scores: dict[str, dict] = {}
    for _ in range(repeats):
        for matcher in seconds:
            run = _measured_process([sys.executable, "-m", "pipelines.dev.er_compare", matcher, str(folder)])
            if run["returncode"]:
                raise RuntimeError(f"er_compare {matcher} failed: {run['stderr'][-2000:]}")
            seconds[matcher].append(run["wall"])
            found = er_compare.score(folder, matcher)
            if scores.setdefault(matcher, found) != found:
                raise RuntimeError(f"{matcher} linked differently on a repeat: {scores[matcher]} vs {found}")
    outcome = {matcher: {**{kind: {k: figures[k] for k in ("precision", "recall", "f1", "recall_identifiable")}
                            for kind, figures in scores[matcher].items()},
                         "seconds": round(statistics.median(seconds[matcher]), 1)} for matcher in seconds}
    return {
        "benchmark": f"bench-er: govlake entity resolution vs Splink, hard-case city scale {scale}",
        "er": outcome,
        "detail": {matcher: scores[matcher] for matcher in scores},
        "misses_by_defect": {matcher: er_compare.misses_by_defect(folder, matcher, root / "truth")
                             for matcher in seconds},
        "namesakes_merged": {matcher: er_compare.namesakes_merged(folder, matcher, root / "truth")
                             for matcher in seconds},
        "records": prepared_counts["records"], "persons": prepared_counts["persons"],
        "entities": prepared_counts["entities"],
        "runs_seconds": {matcher: [round(x, 1) for x in values] for matcher, values in seconds.items()},
        "prepare_s": prepared, "repeats": repeats,
        "splink_model": er_compare.SPLINK_DESCRIPTION,
        "govlake_model": er_compare.govlake_description(),
    }


def bench_cluster(scale: float, seed: int = 7, repeats: int = 1) -> dict:
    """Issue 19: ``govlake build --full`` of every base library on the same
    ingested city, as whole processes, on ``local[2]`` and on the two-worker
    standalone cluster (``govlake cluster up``), alternating, each on a fresh
    copy of the ingested lake. On one 2-core machine the cluster cannot be
    faster: it runs the same two cores through two executor JVMs, a master
    and RPC, so the ratio measures the cluster's overhead, not a speed-up."""
    import dataclasses
    import shutil

    from pipelines.spark import master_url
    from pipelines.spark_cluster import cluster_down, cluster_up

    root, ingested = BENCH_DIR / f"cluster-city-{scale}", BENCH_DIR / f"cluster-ingested-{scale}"
    for path in (root, ingested):
        shutil.rmtree(path, ignore_errors=True)
    generate_city(root, scale=scale, seed=seed)
    ingest = _ingest_stage(root / "deliveries", ingested)
    settings = dataclasses.replace(get_settings(), spark_cluster_home=BENCH_DIR / "spark-cluster")
    cluster = {"GOVLAKE_SPARK_MASTER": master_url(settings),
               "GOVLAKE_SPARK_CLUSTER_HOME": str(settings.spark_cluster_home)}
    modes = {"local[2]": {"GOVLAKE_SPARK_MASTER": "local[2]"}, "cluster (2 workers × 1 core)": cluster}
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    cluster_up(settings)
    try:
        for _ in range(repeats):
            for mode, env in modes.items():
                lake = BENCH_DIR / "cluster-build-lake"
                shutil.rmtree(lake, ignore_errors=True)
                shutil.copytree(ingested, lake)
                runs[mode].append(_build_stage(lake, full=True, env_extra=env))
    finally:
        cluster_down(settings)
    rows = {mode: [{lib: r["rows"] for lib, r in run["libraries"].items()} for run in mode_runs]
            for mode, mode_runs in runs.items()}
    if len({json.dumps(r, sort_keys=True) for mode_rows in rows.values() for r in mode_rows}) != 1:
        raise RuntimeError(f"the builds disagree on row counts: {rows}")
    seconds = {mode: statistics.median(r["seconds"] for r in mode_runs) for mode, mode_runs in runs.items()}
    local, on_cluster = seconds.values()
    return {
        "benchmark": f"bench-cluster: govlake build --full on local[2] and on a two-worker Spark standalone "
                     f"cluster, scale {scale}",
        "what_is_timed": "`govlake build --full --json` as a whole process (interpreter, Spark driver start, "
                         "executors registering on the cluster, every base library built, gated and written); "
                         "not the city's generation or ingest",
        "repeats": repeats, "ingest_seconds": ingest["seconds"], "rows_delivered": ingest["rows_read"],
        "seconds_median": seconds, "cluster_over_local": round(on_cluster / local, 2),
        "runs_seconds": {mode: [r["seconds"] for r in mode_runs] for mode, mode_runs in runs.items()},
        "peak_rss_gib": {mode: [r["peak_rss_gib"] for r in mode_runs] for mode, mode_runs in runs.items()},
        "library_rows": rows["local[2]"][0],
        "note": "one machine, 2 cores: the cluster adds two executor JVMs, a master and RPC on the same cores; "
                "this is its overhead, not a speed-up",
    }


def record(result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n\nEach section is one run of `make bench-...`, appended by "
                           "`pipelines/dev/bench.py`; the baseline is measured in the same run.\n", encoding="utf-8")
    stamp = utc_now().strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {result['benchmark']} — {stamp}\n", f"Machine: {machine_description()}\n"]
    if "er" in result:
        lines += ["Seconds: the median wall time of each matcher as a whole process "
                  "(`python -m pipelines.dev.er_compare MATCHER FOLDER`: interpreter, Spark or DuckDB start, reading "
                  "the exported records and candidates, blocking, comparison, training for Splink, writing the links), "
                  f"{result['repeats']} runs each, alternating, on the same records; not the ingest and build "
                  "before.\n",
                  "Person recall (identifiable): over the linkable person records that carry a birth date or a "
                  "key of a key's length, not only a name (`er_compare.score`).\n",
                  "| matcher | person precision | person recall | person recall (identifiable) | person F1 | "
                  "entity precision | entity recall | entity F1 | planted namesakes merged | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for matcher, figures in result["er"].items():
            p, e = figures["person"], figures["entity"]
            lines.append(f"| {matcher} | {p['precision']} | {p['recall']} | {p['recall_identifiable']} | {p['f1']} | "
                         f"{e['precision']} | {e['recall']} | {e['f1']} | {result['namesakes_merged'][matcher]} | "
                         f"{figures['seconds']} |")
        lines += ["", f"Records compared: {result['records']}", "",
                  "Missed (linkable records left unlinked) and wrong links, by the defects the generator planted on "
                  "the record:", ""]
        for matcher, found in result["misses_by_defect"].items():
            lines.append(f"- {matcher}: {found}")
        lines += ["", f"govlake's model: {result['govlake_model']}", "",
                  f"Splink's model: {result['splink_model']}", ""]
        result = {k: v for k, v in result.items()
                  if k not in ("er", "misses_by_defect", "splink_model", "govlake_model", "detail",
                               "namesakes_merged")}
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
    if "stages" in result:
        lines += ["| stage | seconds | peak RSS GiB | what |", "|---|---|---|---|"]
        for name, stage in result["stages"].items():
            if "libraries" in stage:
                what = "; ".join(f"{lib} {r['mode'] or r['status']} {r['rows'] or 0:,} rows"
                                 + (f" ({r['touched_keys']:,} keys touched)" if r.get("touched_keys") is not None else "")
                                 + f" {r['seconds']} s" for lib, r in stage["libraries"].items())
            elif "deliveries" in stage:
                what = (f"{stage['deliveries']} deliveries, {stage['rows_read']:,} rows read, "
                        f"{stage['rows_loaded']:,} loaded, {stage['statuses']}"
                        + (f"; snapshots {', '.join(stage['snapshots'])}" if stage.get("snapshots") else ""))
            else:                           # upkeep, accuracy: what they did or found
                what = "; ".join(f"{k} {v}" for k, v in stage.items() if k not in ("seconds", "peak_rss_gib"))
            lines.append(f"| {name} | {stage['seconds']} | {stage['peak_rss_gib']} | {what} |")
        lines.append("")
        result = {k: v for k, v in result.items() if k != "stages"}
    lines += ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items() if k != "benchmark"]
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.dev.bench")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest = sub.add_parser("ingest", help="govlake ingest vs pyarrow CSV→Parquet, whole processes")
    ingest.add_argument("--rows", type=int, default=1_000_000)
    ingest.add_argument("--seed", type=int, default=7)
    large = sub.add_parser("ingest-large", help="one delivery of several GB (48M hukou rows), whole processes")
    large.add_argument("--rows", type=int, default=48_000_000)
    large.add_argument("--seed", type=int, default=7)
    quality = sub.add_parser("quality", help="GX's DuckDB and pandas engines on one hukou delivery")
    quality.add_argument("--rows", type=int, default=1_000_000)
    quality.add_argument("--seed", type=int, default=7)
    build = sub.add_parser("build", help="raw files to all base libraries at several scales")
    build.add_argument("--scales", default="0.01,0.02,0.05")
    build.add_argument("--seed", type=int, default=7)
    city = sub.add_parser("city", help="a city's day 0 and daily increments, whole processes, then point lookups")
    city.add_argument("--scale", type=float, default=1.0)
    city.add_argument("--days", type=int, default=3)
    city.add_argument("--seed", type=int, default=7)
    city.add_argument("--no-full-rebuild", dest="full_rebuild", action="store_false",
                      help="skip build --full at the end; day 0's build is the baseline")
    city.add_argument("--no-build-service", dest="build_service", action="store_false",
                      help="every build in its own process, without the lake's build service")
    synth = sub.add_parser("synth", help="govlake synth as it runs vs workbooks written in process, whole processes")
    synth.add_argument("--scale", type=float, default=0.1)
    synth.add_argument("--days", type=int, default=1)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--repeats", type=int, default=2)
    day = sub.add_parser("day", help="one daily build at bench-city's scale, this tree against a commit, alternating")
    day.add_argument("--baseline", required=True, help="a commit (or ref) to compare with")
    day.add_argument("--scale", type=float, default=1.0)
    day.add_argument("--seed", type=int, default=7)
    day.add_argument("--day", type=int, default=4)
    day.add_argument("--repeats", type=int, default=2)
    query = sub.add_parser("query", help="Trino vs DuckDB on base.population and base.legal_person")
    query.add_argument("--scale", type=float, default=0.05)
    query.add_argument("--repeats", type=int, default=7)
    er = sub.add_parser("er", help="govlake entity resolution vs Splink on the hard-case city, whole processes")
    er.add_argument("--scale", type=float, default=0.05)
    er.add_argument("--seed", type=int, default=7)
    er.add_argument("--repeats", type=int, default=3)
    cluster = sub.add_parser("cluster", help="build --full on local[2] and on the two-worker standalone cluster")
    cluster.add_argument("--scale", type=float, default=0.05)
    cluster.add_argument("--seed", type=int, default=7)
    cluster.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    if args.benchmark == "ingest":
        result = bench_ingest(args.rows, args.seed)
    elif args.benchmark == "ingest-large":
        result = bench_ingest_large(args.rows, args.seed)
    elif args.benchmark == "city":
        result = bench_city(args.scale, args.days, args.seed, full_rebuild=args.full_rebuild,
                            build_service=args.build_service)
    elif args.benchmark == "query":
        result = bench_query(args.scale, args.repeats)
    elif args.benchmark == "day":
        result = bench_day(args.baseline, args.scale, args.seed, args.day, args.repeats)
    elif args.benchmark == "synth":
        result = bench_synth(args.scale, args.days, args.seed, args.repeats)
    elif args.benchmark == "er":
        result = bench_er(args.scale, args.seed, args.repeats)
        record(result)
        print(json.dumps(result, indent=2, ensure_ascii=False))
        print(json.dumps(result["er"], ensure_ascii=False))     # the last line: {"govlake": ..., "splink": ...}
        return
    elif args.benchmark == "cluster":
        result = bench_cluster(args.scale, args.seed, args.repeats)
    elif args.benchmark == "build":
        result = bench_build([float(x) for x in args.scales.split(",")], args.seed)
    else:
        result = bench_quality(args.rows, args.seed)
    record(result)
    print(json.dumps(result, indent=2))
    print(json.dumps(result, ensure_ascii=False))     # the last line: one JSON object


if __name__ == "__main__":
    main()
