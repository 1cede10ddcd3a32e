"""Where things live in the lake."""

from __future__ import annotations

from pipelines.contracts import Contract
from pipelines.settings import Settings, get_settings


def table_path(layer: str, contract: Contract, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path(layer, contract.bureau, contract.feed_name)


def governance_path(table: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path("governance", table)
