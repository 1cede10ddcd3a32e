from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

from pipelines.contracts import load_contracts
from pipelines.dev.synth.city import DefectRates, generate_city
from pipelines.settings import get_settings

# Higher than default rates so that a small city carries every defect kind.
TEST_RATES = dataclasses.replace(
    DefectRates().scaled(3.0), repeated_header=0.003, duplicate_row=0.006, id_lowercase_x=0.5)


@dataclasses.dataclass
class IngestedCity:
    root: Path
    settings: object
    results: list

    @property
    def deliveries(self) -> Path:
        return self.root / "deliveries"

    def truth_rows(self, name: str) -> list[dict]:
        with (self.root / "truth" / name).open(encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def labels_by_row(self) -> dict[tuple[str, int], list[dict]]:
        grouped = defaultdict(list)
        for label in self.truth_rows("defects.csv"):
            grouped[(label["file"], int(label["row_number"]))].append(label)
        return grouped

    def result(self, file_name: str):
        return next(r for r in self.results if r.source_file == file_name)


@pytest.fixture(scope="session")
def ingested_city(spark, tmp_path_factory) -> IngestedCity:
    """A small generated city, every delivery ingested once into its own lake.

    Defect rates are three times the default so that every kind appears, which
    puts small deliveries over the gate's quarantine threshold: these tests
    check ingest alone, so the quality gate is off here (test_quality_gate.py
    covers it)."""
    from pipelines.ingest.load import ingest_directory

    root = tmp_path_factory.mktemp("city")
    generate_city(root, scale=0.0006, seed=11, rates=TEST_RATES)
    settings = dataclasses.replace(get_settings(), home=str(tmp_path_factory.mktemp("city-lake")))
    results = ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=False)
    return IngestedCity(root, settings, results)
