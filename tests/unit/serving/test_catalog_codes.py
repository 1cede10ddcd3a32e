"""Resource codes come from provider and name, so adding a feed renumbers nothing."""

from __future__ import annotations

from pipelines.contracts import load_contracts
from pipelines.serving.catalog import resources_from_contracts, resources_from_libraries


def test_adding_a_feed_changes_no_other_resources_code():
    contracts = load_contracts()
    every = {r.resource_id: r.code for r in resources_from_contracts(contracts).values()}
    first = min(contracts)            # as if the alphabetically first feed arrived last
    fewer = {r.resource_id: r.code for r in
             resources_from_contracts({k: v for k, v in contracts.items() if k != first}).values()}
    assert fewer == {k: v for k, v in every.items() if k != f"silver.{contracts[first].slug}"}
    assert every["silver.psb_residence_permit"] == "DG-PSB-RESIDENCE-PERMIT"
    assert len(set(every.values())) == len(every)
    libraries = {r.resource_id: r.code for r in resources_from_libraries().values()}
    assert libraries["base.population"] == "DG-BASE-POPULATION" and len(set(libraries.values())) == len(libraries)
