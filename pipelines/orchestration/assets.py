"""Airflow Assets shared by the DAG files: one per feed's silver table.

Imported by DAG files only (it imports ``airflow.sdk``)."""

from __future__ import annotations

from airflow.sdk import Asset

from pipelines.contracts import Contract, ContractError, contract_paths, load_contract
from pipelines.settings import get_settings


def silver_asset(contract: Contract) -> Asset:
    return silver_asset_for_feed(contract.feed)


def silver_asset_for_feed(feed: str) -> Asset:
    bureau, _, name = feed.partition(".")
    return Asset(name=f"silver.{feed}", uri=f"govlake://silver/{bureau}/{name}", group="silver")


def library_asset(library: str) -> Asset:
    return Asset(name=f"base.{library}", uri=f"govlake://base/{library}", group="base")


def all_library_assets() -> list[Asset]:
    from pathlib import Path


    return [library_asset(path.stem) for path in sorted((Path(get_settings().schemas_dir) / "libraries").glob("*.yaml"))]


def all_silver_assets() -> list[Asset]:
    """One asset per loadable contract (broken contracts are skipped: they have no DAG)."""
    assets = []
    for path in contract_paths():
        try:
            assets.append(silver_asset(load_contract(path)))
        except ContractError:
            continue
    return assets


def any_of(assets: list[Asset]):
    """A schedule that fires when any of ``assets`` is updated."""
    schedule = assets[0]
    for asset in assets[1:]:
        schedule = schedule | asset
    return schedule
