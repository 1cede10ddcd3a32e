"""The fast gate decides exactly as the reference gate: GX's SQL engine on
DuckDB (the default) and GX's pandas engine give the same outcome for every
expectation, block the same deliveries and open the same governance issues:
on every delivery of the generated city (three times the default defect
rates) and on hand-made bad deliveries."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from pipelines.contracts import load_contracts
from pipelines.dev.synth.city import DefectRates, write_hukou_export
from pipelines.governance.issues import gate_findings
from pipelines.ingest.classify import classify_delivery, gate_table
from pipelines.ingest.load import discover_deliveries
from pipelines.ingest.readers import read_delivery
from pipelines.quality.gate import validate_delivery
from pipelines.quality.suites import row_count_parameters
from pipelines.settings import get_settings

CLEAN = DefectRates().scaled(0.0)


def _gate_input(contract, path):
    delivery = read_delivery(contract, path)
    classified = classify_delivery(delivery.table, contract, delivery.headers_found,
                                   [c.name for c in delivery.missing_required])
    return gate_table(classified)


def _decision(gate, source_file: str) -> dict:
    """Everything the gate's result feeds: per expectation its verdict,
    counts, observed value and sample rows; blocked; the findings that open
    governance issues."""
    findings, passed = gate_findings(gate, source_file)
    return {
        "blocked": gate.blocked,
        "outcomes": [(o.rule, o.blocking, o.success, o.element_count, o.unexpected_count,
                      None if o.unexpected_percent is None else round(o.unexpected_percent, 9),
                      o.observed_value, o.sample_rows) for o in gate.outcomes],
        "findings": [dataclasses.astuple(f) for f in findings], "passed": sorted(passed),
    }


def _both_engines(contract, path, settings, previous_rows=None):
    table = _gate_input(contract, path)
    parameters = row_count_parameters(previous_rows)
    gates = {engine: validate_delivery(table, contract, f"{contract.slug}-{engine}", parameters,
                                       dataclasses.replace(settings, gate_engine=engine))
             for engine in ("duckdb", "pandas")}
    assert {engine: gate.engine for engine, gate in gates.items()} == {"duckdb": "duckdb", "pandas": "pandas"}
    return {engine: _decision(gate, path.name) for engine, gate in gates.items()}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return dataclasses.replace(get_settings(), home=str(tmp_path_factory.mktemp("engines-lake")))


def test_same_decisions_on_every_delivery_of_the_city(ingested_city, settings):
    deliveries = discover_deliveries(ingested_city.deliveries, load_contracts())
    assert len({contract.feed for contract, _ in deliveries}) == 18
    blocked = 0
    for contract, path in deliveries:
        decisions = _both_engines(contract, path, settings)
        assert decisions["duckdb"] == decisions["pandas"], f"{contract.feed} {path.name}"
        blocked += decisions["duckdb"]["blocked"]
    # three times the default defect rates puts some deliveries over the
    # quarantine threshold: the comparison covers blocking failures too
    assert blocked >= 1


@pytest.mark.parametrize("case", ["bad_ids", "row_count_band", "clean"])
def test_same_decisions_on_hand_made_deliveries(case, settings, tmp_path):
    contract = next(c for c in load_contracts().values() if c.feed == "psb.hukou")
    rates = {"bad_ids": dataclasses.replace(CLEAN, id_wrong_check=0.3, missing_required=0.1),
             "row_count_band": CLEAN, "clean": CLEAN}[case]
    path = write_hukou_export(tmp_path, 600, seed=31, rates=rates)
    previous = 5_000 if case == "row_count_band" else None      # 600 rows after 5,000: outside the band
    decisions = _both_engines(contract, path, settings, previous)
    assert decisions["duckdb"] == decisions["pandas"]
    expected_blocked = {"bad_ids": True, "row_count_band": False, "clean": False}[case]
    assert decisions["duckdb"]["blocked"] is expected_blocked
    failed = {finding[0] for finding in decisions["duckdb"]["findings"]}
    if case == "bad_ids":
        assert {"quarantine_share", "id_number.present_and_valid"} <= failed
    elif case == "row_count_band":
        assert failed == {"row_count_band"}
    else:
        assert failed == set()
    samples = list(itertools.chain.from_iterable(o[7] for o in decisions["duckdb"]["outcomes"]))
    assert bool(samples) is (case == "bad_ids")   # failing rows are named by row number


def _validate_both(contract, table, settings) -> dict:
    gates = {engine: validate_delivery(table, contract, f"{contract.slug}-{engine}", row_count_parameters(None),
                                       dataclasses.replace(settings, gate_engine=engine))
             for engine in ("duckdb", "pandas")}
    return {engine: _decision(gate, "delivery.csv") for engine, gate in gates.items()}


def test_same_decisions_on_shared_compound_keys_and_an_empty_delivery(ingested_city, settings):
    """Two different records sharing a compound key (GX's SQL engine gives no
    sample rows for it: the gate finds them itself), and a delivery with a
    header and no rows (GX's SQL engine counts None where pandas counts 0)."""
    import pyarrow as pa

    contract = next(c for c in load_contracts().values() if c.feed == "court.dishonest_debtor")
    path = next(p for c, p in discover_deliveries(ingested_city.deliveries, load_contracts()) if c == contract)
    table = _gate_input(contract, path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for name in ("case_number", "debtor_id"):
        columns[name][5] = columns[name][3]
    # rows 7 and 9 share a case number and miss the debtor: the suite ignores
    # rows with any key part missing, so they are no duplicates
    columns["case_number"][9] = columns["case_number"][7]
    columns["debtor_id"][7] = columns["debtor_id"][9] = None
    shared = pa.table({name: pa.array(values, table.schema.field(name).type) for name, values in columns.items()})
    decisions = _validate_both(contract, shared, settings)
    assert decisions["duckdb"] == decisions["pandas"]
    unique = next(o for o in decisions["duckdb"]["outcomes"] if o[0] == "case_number+debtor_id.unique")
    rows = columns["_row_number"]
    assert (unique[2], unique[4], unique[7]) == (False, 2, [rows[3], rows[5]])

    empty = _validate_both(contract, table.slice(0, 0), settings)
    assert empty["duckdb"] == empty["pandas"]
    assert all(o[4] in (0, None) for o in empty["duckdb"]["outcomes"])
