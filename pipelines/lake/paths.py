"""Where things live in the lake.

Layout under ``GOVLAKE_HOME``::

    landing/<bureau>/<feed>/          deliveries waiting to be ingested
    raw/<bureau>/<feed>/<sha256>.<ext> files exactly as sent, by content hash
    bronze/<bureau>/<feed>/           Delta, every value as delivered + lineage
    silver/<bureau>/<feed>/           Delta, typed and standardised
    pending/<bureau>/<feed>/          Delta, silver rows of loads the quality gate blocked
    base/<library>/                   Delta, the base libraries (golden records with history)
    governance/<table>/               Delta, the governance tables (schemas in
                                      ``pipelines.lake.tables.GOVERNANCE_TABLES``):
                                      load_manifest, quarantine, quality_results,
                                      quality_approvals, issues, the lists, conflicts, ...
    quality/gx/                       GX file context; Data Docs under uncommitted/data_docs
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipelines.contracts import Contract
from pipelines.settings import Settings, get_settings


def table_path(layer: str, contract: Contract, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path(layer, contract.bureau, contract.feed_name)


def governance_path(table: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path("governance", table)


@contextlib.contextmanager
def state_lock(name: str, settings: Settings) -> Iterator[None]:
    """An exclusive lock on ``name`` between processes on this machine (a
    lock file ``<lake>/state/locks/<name>.lock``, flock): ingest holds one per
    feed, a library build one per library. Local lakes only."""
    import fcntl

    folder = settings.local_lake_path("state", "locks")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.lock").open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
