"""Airflow Assets shared by the DAG files: one per feed's silver table.

Imported by DAG files only (it imports ``airflow.sdk``)."""

from __future__ import annotations

from airflow.sdk import Asset

from pipelines.contracts import Contract, ContractError, contract_paths, load_contract


def silver_asset(contract: Contract) -> Asset:
    return Asset(name=f"silver.{contract.feed}", uri=f"govlake://silver/{contract.bureau}/{contract.feed_name}",
                 group="silver")


def all_silver_assets() -> list[Asset]:
    """One asset per loadable contract (broken contracts are skipped: they have no DAG)."""
    assets = []
    for path in contract_paths():
        try:
            assets.append(silver_asset(load_contract(path)))
        except ContractError:
            continue
    return assets
