from __future__ import annotations

import csv
import dataclasses
import shutil
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


@pytest.fixture(scope="session")
def built_city(spark, tmp_path_factory):
    """A scale-0.002 city (about 21k persons, 2.9k entities, 30 inspectors) at
    the default defect rates, ingested and built into all libraries:
    ``(root, settings, results by library)``. Shared by test_libraries.py
    and the application tests, which copy ``root / "built-lake"``, the lake
    as built: test_libraries.py changes the shared lake in place."""
    from pipelines.ingest.load import ingest_directory
    from pipelines.libraries.build import build_libraries

    root = tmp_path_factory.mktemp("default-city")
    generate_city(root, scale=0.002, seed=3)
    settings = dataclasses.replace(get_settings(), home=str(tmp_path_factory.mktemp("default-city-lake")))
    ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=False)
    results = {r["library"]: r for r in build_libraries(spark, settings=settings)}
    # the lake as built, for modules that must not see what test_libraries.py later does to it
    shutil.copytree(settings.home, root / "built-lake")
    return root, settings, results
