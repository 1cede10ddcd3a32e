"""Base libraries against a generated city's ground truth (``<city>/truth``):
presence of every true person and entity, entity-resolution precision and
recall, and conflicts found against conflicts injected. Used by the tests and
``make bench-build``."""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.lake.delta import read_table
from pipelines.settings import Settings

KEY_HEADERS = {"population": ("身份证号", "证件号码"), "legal_person": ("统一社会信用代码", "纳税人识别号")}


def _truth(truth: Path, name: str) -> list[dict]:
    with (truth / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def evaluate_resolution(spark, library: str, truth: Path, settings: Settings) -> dict:
    """Golden keys against the true persons (population) or entities
    (legal_person), and every record resolved without a valid key against the
    key the generator wrote before damaging it."""
    from pyspark.sql import functions as F

    key, truth_file, truth_key = (("person_id", "persons.csv", "person_id") if library == "population"
                                  else ("uscc", "entities.csv", "uscc"))
    true_keys = {row[truth_key] for row in _truth(truth, truth_file)}
    golden = {r[0] for r in spark.read.format("delta").load(settings.lake_path("base", library))
              .where("is_current").select(key).collect()}
    true_key_of = {(row["file"], int(row["row_number"])): row["true_value"]
                   for row in _truth(truth, "defects.csv")
                   if row["column"] in KEY_HEADERS[library] and row["expected"] == "quarantine"}
    links = (read_table(spark, "entity_links", settings)
             # a reviewer's "new person" or "rejected" decision is no link (its key is null)
             .where((F.col("library") == library) & (F.col("method") != "key") & F.col("key").isNotNull())
             .select("_source_file", "_row_number", "key").collect())
    reviews = (read_table(spark, "match_review", settings)
               .where(F.col("library") == library).select("_source_file", "_row_number", "reason").collect())
    correct = sum(1 for r in links if true_key_of.get((r["_source_file"], r["_row_number"])) == r["key"])
    unkeyed = len(links) + len(reviews)
    # a record is linkable when its true subject is known through some other, keyed record
    linkable = sum(1 for r in list(links) + list(reviews)
                   if true_key_of.get((r["_source_file"], r["_row_number"])) in golden)
    reasons: dict[str, int] = {}
    for r in reviews:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    present = len(golden & true_keys)
    return {
        "library": library, "true_subjects": len(true_keys), "golden_records": len(golden),
        "present": present, "invented": len(golden - true_keys), "missing": len(true_keys - golden),
        "subject_recall": round(present / len(true_keys), 6) if true_keys else 1.0,
        "subject_precision": round(present / len(golden), 6) if golden else 1.0,
        "unkeyed_records": unkeyed, "linked": len(links), "linked_correctly": correct, "to_review": len(reviews),
        "link_precision": round(correct / len(links), 6) if links else 1.0,
        "linkable": linkable, "link_recall": round(correct / linkable, 6) if linkable else 1.0,
        "review_reasons": reasons,
    }


def evaluate_conflicts(spark, truth: Path, settings: Settings) -> dict:
    """Open conflicts in governance.conflicts against truth/conflicts.csv."""
    from pyspark.sql import functions as F

    injected = {(r["subject"], r["attribute"], r["other_feed"]) for r in _truth(truth, "conflicts.csv")}
    found = {(r[0], r[1], r[2]) for r in read_table(spark, "conflicts", settings)
             .where(F.col("resolved_at").isNull()).select("subject", "attribute", "other_feed").collect()}
    return {"injected": len(injected), "found": len(found), "found_and_injected": len(found & injected),
            "not_injected": sorted(found - injected)[:10], "not_found": sorted(injected - found)[:10]}


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.dev.evaluate LAKE TRUTH``: person and entity
    resolution of the lake at LAKE against the city truth at TRUTH, as one
    JSON object on the last line (bench-city runs it in a process of its
    own, so no idle Spark JVM stays beside the later builds)."""
    import argparse
    import dataclasses
    import json

    from pipelines.settings import get_settings
    from pipelines.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="python -m pipelines.dev.evaluate", description=main.__doc__)
    parser.add_argument("lake", help="the lake home (GOVLAKE_HOME) to evaluate")
    parser.add_argument("truth", type=Path, help="the generated city's truth/ folder")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(get_settings(), home=args.lake)
    spark = build_spark_session(app_name="govlake-evaluate")
    print(json.dumps({library: evaluate_resolution(spark, library, args.truth, settings)
                      for library in ("population", "legal_person")}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
