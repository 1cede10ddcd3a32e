"""Where things live in the lake, and the small Delta helpers every stage uses.

Layout under ``GOVLAKE_HOME``::

    landing/<bureau>/<feed>/          deliveries waiting to be ingested
    raw/<bureau>/<feed>/<sha256>.<ext> files exactly as sent, by content hash
    bronze/<bureau>/<feed>/           Delta, every value as delivered + lineage
    silver/<bureau>/<feed>/           Delta, typed and standardised
    pending/<bureau>/<feed>/          Delta, silver rows of loads the quality gate blocked
    governance/load_manifest/         Delta, one row per load status change
    governance/quarantine/            Delta, one row per quarantined input row
    governance/quality_results/       Delta, one row per expectation per validated load
    governance/quality_approvals/     Delta, one row per governor approval of a blocked load
    governance/issues/                Delta, the governance list (治理清单)
    quality/gx/                       GX file context; Data Docs under uncommitted/data_docs
    _staging/                         scratch for loads in flight
"""

from __future__ import annotations

from pipelines.contracts import Contract
from pipelines.settings import Settings, get_settings


def table_path(layer: str, contract: Contract, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path(layer, contract.bureau, contract.feed_name)


def governance_path(table: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path("governance", table)


def delta_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def delta_version(spark, path: str) -> int | None:
    """The table's current version, or None if there is no table yet."""
    from delta.tables import DeltaTable

    if not delta_exists(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def commit_metrics(spark, path: str, user_metadata: str) -> dict[str, str]:
    """operationMetrics of the newest commit tagged with ``user_metadata``."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    row = (
        DeltaTable.forPath(spark, path).history(20)
        .where(F.col("userMetadata") == user_metadata)
        .orderBy(F.col("version").desc())
        .select("operationMetrics")
        .first()
    )
    return dict(row[0]) if row else {}
