"""The main job end to end, for now: generate a small city and ingest all of it.

The summary is read back from the lake (manifest and silver tables), not from
what this run did, so a rerun on the same lake prints the same figures.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.contracts import load_contracts
from pipelines.settings import Settings, get_settings


def run_demo(spark, scale: float = 0.002, seed: int = 7, show_progress: bool = True, console=None,
             settings: Settings | None = None) -> dict:
    """Generate (once per scale and seed), ingest everything, summarise per feed."""
    from pyspark.sql import functions as F

    from pipelines.cli import ingest_all_with_progress
    from pipelines.ingest import read_manifest
    from pipelines.lake import delta_exists, table_path
    from pipelines.synth import generate_city

    settings = settings or get_settings()
    city = settings.local_lake_path("_synth", f"city-scale{scale}-seed{seed}")
    if not (city / "truth" / "files.csv").exists():
        if console and show_progress:
            console.print(f"generating a scale {scale} city into {city}")
        generate_city(city, scale=scale, seed=seed)
    results = ingest_all_with_progress(spark, city / "deliveries", show_progress)
    by_file = {(r.feed, r.source_file): r for r in results}

    contracts = load_contracts()
    manifest = read_manifest(spark, settings).where(F.col("status").isin("loaded", "replaced", "rejected"))
    manifest_rows = manifest.collect()
    feeds = []
    for feed, contract in sorted(contracts.items()):
        rows = [r for r in manifest_rows if r["feed"] == feed]
        live = [r for r in rows if r["status"] == "loaded"]
        silver = table_path("silver", contract, settings)
        silver_rows = spark.read.format("delta").load(silver).count() if delta_exists(spark, silver) else 0
        read = sum(r["rows_read"] or 0 for r in rows)
        loaded = sum(r["rows_loaded"] or 0 for r in rows)
        quarantined = sum(r["rows_quarantined"] or 0 for r in rows)
        duplicate = sum(r["rows_duplicate"] or 0 for r in rows)
        feeds.append({
            "feed": feed, "loads": len(rows), "rows_read": read, "rows_loaded": loaded,
            "rows_quarantined": quarantined, "rows_duplicate": duplicate,
            "reconciles": read == loaded + quarantined + duplicate,
            "silver_rows": silver_rows,
            "silver_rows_expected": sum(r["rows_loaded"] or 0 for r in live),
        })

    expected = list(csv.DictReader((city / "truth" / "files.csv").open(encoding="utf-8")))
    notes, ok = [], all(f["reconciles"] and f["silver_rows"] == f["silver_rows_expected"] for f in feeds)
    status_of = {(r["feed"], r["source_file"]): r["status"] for r in manifest_rows}
    for row in expected:
        name = Path(row["file"]).name
        actual = status_of.get((row["feed"], name))
        result = by_file.get((row["feed"], name))
        if result and result.status == "already_loaded":
            actual = actual if row["expected_status"] != "already_loaded" else "already_loaded"
        if actual != row["expected_status"]:
            ok = False
            notes.append(f"UNEXPECTED: {row['feed']} {name} is {actual}, expected {row['expected_status']}")
        elif row["expected_status"] != "loaded":
            message = result.message if result else ""
            notes.append(f"{row['feed']} {name}: {actual} as expected. {message}".strip())
    return {
        "scale": scale, "seed": seed, "ok": ok, "lake": settings.home, "truth": str(city / "truth"),
        "feeds": feeds, "notes": notes, "loads_this_run": [r.as_dict() for r in results],
    }
