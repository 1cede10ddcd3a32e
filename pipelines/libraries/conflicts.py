"""Cross-bureau conflicts (一数一源): where a non-authoritative bureau's value
disagrees with the authoritative one.

``governance.conflicts`` keeps one row per (library, subject, attribute, other
feed): both values and sources, ``first_seen_at`` / ``last_seen_at``, and
``resolved_at`` once the sources agree again. Each build also keeps one issue
per (other feed, attribute) on the governance list, for the bureau that has to
fix its data, with the number of subjects still in conflict; the issue closes
when none are left. ``governance.conflicts`` is written by Spark only (one
MERGE per build); the issues go through ``pipelines.governance.issues``
(delta-rs), like every write of that table.
"""

from __future__ import annotations

from datetime import datetime

from pipelines.contracts import get_contract
from pipelines.governance.issues import SAMPLE_SIZE, Finding, close_issue, update_issues
from pipelines.lake.delta import delta_exists, read_delta_rows, read_table
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import CONFLICTS_DDL
from pipelines.settings import Settings


def record_conflicts(spark, library: str, conflicts, now: datetime, settings: Settings, touched=None) -> dict:
    """Merge this build's conflicts into governance.conflicts and the
    governance list. Returns open conflicts per (other feed, attribute).

    ``touched`` (column ``_key``): an incremental build's keys; ``conflicts``
    are theirs only, and only their open conflicts that are no longer found
    are resolved (without it, every open conflict of the library not found)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = governance_path("conflicts", settings)
    if conflicts is None:
        conflicts = spark.createDataFrame([], CONFLICTS_DDL).drop("library", "first_seen_at", "last_seen_at", "resolved_at")
    found = conflicts.select("*", F.lit(library).alias("library"), F.lit(now).cast("timestamp").alias("first_seen_at"),
                             F.lit(now).cast("timestamp").alias("last_seen_at"),
                             F.lit(None).cast("timestamp").alias("resolved_at"))
    if not delta_exists(spark, path):
        spark.createDataFrame([], CONFLICTS_DDL).write.format("delta").partitionBy("library").save(path)
    match = ("t.library = s.library AND t.subject = s.subject AND t.attribute = s.attribute "
             "AND t.other_feed = s.other_feed AND t.resolved_at IS NULL")
    found = found.withColumn("_settled", F.lit(False))
    if touched is not None:
        # open conflicts of touched subjects that this build no longer finds
        keys = ["subject", "attribute", "other_feed"]
        settled = (read_table(spark, "conflicts", settings)
                   .where((F.col("library") == library) & F.col("resolved_at").isNull())
                   .join(F.broadcast(touched), F.col("subject") == F.col("_key"), "left_semi")
                   .join(found.select(*keys), keys, "left_anti")
                   .select(*found.drop("_settled").columns).withColumn("_settled", F.lit(True)).localCheckpoint())
        found = found.unionByName(settled)
    # the same values seen again keep the loads they were first seen in (as
    # golden records keep their provenance): a snapshot that repeats a
    # conflict does not touch it, whether the build is incremental or full
    changed = ("NOT (t.authoritative_value <=> s.authoritative_value) OR NOT (t.other_value <=> s.other_value)")
    update = {"last_seen_at": "s.last_seen_at", "authoritative_value": "s.authoritative_value",
              "authoritative_load_id": "s.authoritative_load_id", "other_value": "s.other_value",
              "other_load_id": "s.other_load_id"}
    merge = (DeltaTable.forPath(spark, path).alias("t")
             .merge(found.alias("s"), match)
             .whenMatchedUpdate(condition="s._settled", set={"resolved_at": F.lit(now).cast("timestamp")})
             .whenMatchedUpdate(condition=changed, set=update)
             .whenMatchedUpdate(set={"last_seen_at": "s.last_seen_at"})
             .whenNotMatchedInsert(condition="NOT s._settled",
                                   values={c: f"s.{c}" for c in found.columns if c != "_settled"}))
    # the library's open conflicts this build did not look at (an incremental
    # build's untouched subjects) still hold: seen now; the others are resolved
    merge = merge.whenNotMatchedBySourceUpdate(
        condition=f"t.library = '{library}' AND t.resolved_at IS NULL",
        set={"resolved_at": F.lit(now).cast("timestamp")} if touched is None else {"last_seen_at": F.lit(now).cast("timestamp")})
    merge.execute()
    open_conflicts = (read_table(spark, "conflicts", settings)
                      .where((F.col("library") == library) & F.col("resolved_at").isNull())
                      .groupBy("other_feed", "other_column", "attribute", "authoritative_feed")
                      .agg(F.count("*").alias("subjects"),
                           F.slice(F.sort_array(F.collect_list("subject")), 1, SAMPLE_SIZE).alias("samples"))
                      .collect())
    _sync_issues(spark, library, open_conflicts, now, settings)
    return {f"{r['other_feed']}.{r['attribute']}": r["subjects"] for r in open_conflicts}


def _sync_issues(spark, library: str, open_conflicts, now: datetime, settings: Settings) -> None:
    build = f"base.{library}@{now:%Y%m%dT%H%M%S}"
    still_open = set()
    for row in open_conflicts:
        rule = f"conflict.{library}.{row['attribute']}"
        still_open.add((row["other_feed"], rule))
        finding = Finding(
            rule=rule, column_name=row["other_column"], source="conflict", affected_rows=row["subjects"],
            sample_rows=tuple(row["samples"]),
            detail=(f"{row['subjects']} subjects where {row['other_feed']}.{row['other_column']} disagrees with "
                    f"the authoritative {row['authoritative_feed']} (see governance.conflicts)"))
        update_issues(get_contract(row["other_feed"], settings.schemas_dir), build, [finding],
                      close_others=False, settings=settings)
    # the issues table is delta-rs's (pipelines.governance.issues): read it the same way, no Spark job
    stale = read_delta_rows(governance_path("issues", settings), [("source", "=", "conflict"), ("status", "=", "open")])
    for issue in stale:
        if issue["rule"].startswith(f"conflict.{library}.") and (issue["feed"], issue["rule"]) not in still_open:
            close_issue(issue["issue_id"], f"no subject in conflict after {build}", "govlake", settings)
