"""Table upkeep: compaction, clustering by key, VACUUM (``catalog/upkeep.yaml``).

Every rewrite commits with ``dataChange`` false, so readers and the builds
see the same rows before and after:

- a base library with files added since it was last clustered is rewritten
  range-partitioned and sorted by its key (the spec's ``key``): the files'
  key ranges are disjoint afterwards, so a point lookup by key reads one
  file. Z-order (delta-rs's or Spark's OPTIMIZE ZORDER BY) was measured
  first: on one column both leave neighbouring files' ranges overlapping
  (approximate range bounds), so some lookups read two files. This rewrite
  runs on Spark, the engine that builds those tables;
- any other table with ``min_small_files`` files under ``small_file_mb`` is
  compacted (one file per load adds up under hourly feeds);
- every table is vacuumed: files no version within ``retention_hours``
  references are deleted. Time travel reaches back that far; the base
  libraries' history rows answer "what did we know on date D" beyond it.
  Base libraries carry deletion vectors (their daily MERGE writes them),
  which only Spark's VACUUM knows to delete once unreferenced.

Everything else runs on delta-rs (no JVM): compaction and VACUUM of bronze,
silver and governance need no Spark session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.library_specs import library_names, load_library_spec
from pipelines.settings import PROJECT_ROOT, Settings, get_settings

POLICY_FILE = PROJECT_ROOT / "catalog" / "upkeep.yaml"
MB = 2**20


@dataclass(frozen=True)
class UpkeepPolicy:
    schedule: str
    retention_hours: int
    small_file_mb: int
    min_small_files: int
    target_file_mb: int
    layers: tuple[str, ...]


def load_policy(path: Path = POLICY_FILE) -> UpkeepPolicy:
    """The policy file as a typed model; a missing or malformed field is named."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    shown = f"catalog/{path.name}"
    for name, kind in (("schedule", str), ("retention_hours", int), ("small_file_mb", int),
                       ("min_small_files", int), ("target_file_mb", int), ("layers", list)):
        if not isinstance(document.get(name), kind):
            raise ValueError(f"{shown}: {name}: required, a {kind.__name__}")
    if document["retention_hours"] < 0:
        raise ValueError(f"{shown}: retention_hours: {document['retention_hours']} is below 0")
    return UpkeepPolicy(document["schedule"], document["retention_hours"], document["small_file_mb"],
                        document["min_small_files"], document["target_file_mb"], tuple(document["layers"]))


def layer_tables(layer: str, settings: Settings) -> list[tuple[str, str | None]]:
    """(table path, clustering key or None) of every Delta table of ``layer``."""
    from deltalake import DeltaTable

    if layer == "base":
        return [(settings.lake_path("base", name), load_library_spec(name, settings).key)
                for name in library_names(settings)
                if DeltaTable.is_deltatable(settings.lake_path("base", name))]
    root = settings.local_lake_path(layer)
    if not root.exists():
        return []
    return sorted((str(log.parent), None) for log in root.rglob("_delta_log") if log.is_dir())


CLUSTERED = "govlake upkeep: clustered by "


def _added_since_clustering(table) -> bool:
    """Did a commit after the table was last clustered (or any, if never) add files?"""
    for commit in table.history():                       # newest first
        if str(commit.get("userMetadata") or "").startswith(CLUSTERED):
            return False
        if commit.get("operation", "") not in ("VACUUM START", "VACUUM END"):
            return True
    return False


def cluster_by_key(spark, path: str, key: str, files: int) -> dict:
    """Rewrite the table at ``path`` as ``files`` files of disjoint, sorted
    ranges of ``key``, as a layout change (``dataChange`` false)."""
    frame = spark.read.format("delta").load(path)
    (frame.repartitionByRange(files, key).sortWithinPartitions(key)
     .write.format("delta").mode("overwrite").option("dataChange", "false")
     .option("userMetadata", CLUSTERED + key).save(path))
    return {"files_added": files}


def vacuum_with_spark(spark, path: str, hours: int, dry_run: bool) -> int:
    """VACUUM a table with deletion vectors (a base library) on Spark; how
    many files it deletes (or would). delta-rs's vacuum deletes only the data
    files the log has tombstoned: deletion-vector files that clustering left
    unreferenced would stay forever. The retention is the policy's, which may
    be under Delta's 7-day safety default, hence the check is off here."""
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    listed = spark.sql(f"VACUUM delta.`{path}` RETAIN {hours} HOURS DRY RUN").count()
    if not dry_run:
        spark.sql(f"VACUUM delta.`{path}` RETAIN {hours} HOURS").collect()
    return listed


def upkeep_table(path: str, key: str | None, policy: UpkeepPolicy, dry_run: bool = False, spark_of=None) -> dict:
    """Cluster, compact and vacuum one table; what was done, with file counts.
    ``spark_of()`` gives a Spark session, called only for a base library
    (clustered and vacuumed on Spark)."""
    import math

    from deltalake import DeltaTable

    table = DeltaTable(path)
    files = table.get_add_actions(flatten=True)
    sizes = files.column("size_bytes").to_pylist()
    done = {"table": path, "files_before": len(sizes), "action": "none"}
    # compaction merges files within a partition: a partition's lone small file stays as it is
    partitions = [name for name in files.column_names if name.startswith("partition.")]
    small_per_partition: dict[tuple, int] = {}
    for index, size in enumerate(sizes):
        if size < policy.small_file_mb * MB:
            where = tuple(files.column(name)[index].as_py() for name in partitions)
            small_per_partition[where] = small_per_partition.get(where, 0) + 1
    small = sum(count for count in small_per_partition.values() if count > 1)
    if key and _added_since_clustering(table):
        done["action"] = f"cluster by {key}"
        if not dry_run:
            target = max(1, math.ceil(sum(sizes) / (policy.target_file_mb * MB)))
            done |= cluster_by_key(spark_of(), path, key, target)
    elif small >= policy.min_small_files:
        done["action"] = f"compact {small} small files"
        if not dry_run:
            metrics = table.optimize.compact(target_size=policy.target_file_mb * MB)
            done["files_removed"], done["files_added"] = metrics["numFilesRemoved"], metrics["numFilesAdded"]
    if key:
        done["vacuumed_files"] = vacuum_with_spark(spark_of(), path, policy.retention_hours, dry_run)
    else:
        deleted = table.vacuum(retention_hours=policy.retention_hours, dry_run=dry_run,
                               enforce_retention_duration=False)
        done["vacuumed_files"] = len(deleted)
    done["files_after"] = len(DeltaTable(path).file_uris())
    return done


def run_upkeep(layers: list[str] | None = None, settings: Settings | None = None,
               policy: UpkeepPolicy | None = None, dry_run: bool = False, spark_of=None) -> list[dict]:
    """Upkeep of every table of ``layers`` (default: the policy's). ``spark_of()``
    gives the Spark session that clusters and vacuums base libraries
    (default: the project's session, started only if a base library is kept up)."""
    settings = settings or get_settings()
    policy = policy or load_policy()
    unknown = sorted(set(layers or ()) - set(policy.layers))
    if unknown:
        raise ValueError(f"no upkeep for layer {unknown[0]!r}: catalog/upkeep.yaml names {list(policy.layers)}")
    if spark_of is None:
        def spark_of():
            from pipelines.spark import build_spark_session

            return build_spark_session(app_name="govlake-upkeep")
    results = []
    for layer in layers or policy.layers:
        for path, key in layer_tables(layer, settings):
            results.append({"layer": layer} | upkeep_table(path, key, policy, dry_run, spark_of))
    return results

