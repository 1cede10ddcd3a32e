"""Library specs: every spec loads, dependencies order the builds, and a broken
spec fails naming the file and field."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from pipelines.library_specs import LibrarySpecError, library_names, load_library_spec
from pipelines.settings import get_settings


def test_every_spec_loads_and_builds_after_its_dependencies():
    names = library_names()
    assert set(names) == {"population", "legal_person", "address", "grid", "credit_record", "credit_rating",
                          "e_licence", "enterprise_profile", "supervision_risk"}
    for name in names:
        spec = load_library_spec(name)
        assert all(names.index(d) < names.index(name) for d in spec.depends_on)
        assert spec.feeds or spec.depends_on, name     # something to schedule it on


def test_population_declares_authority_roles_and_resolution():
    spec = load_library_spec("population")
    assert spec.authoritative_sources == ("psb.hukou", "psb.residence_permit")
    assert spec.sources["mca.marriage@wife"].feed == "mca.marriage"
    assert not spec.sources["mca.marriage@wife"].adds_records
    marital = next(a for a in spec.attributes if a.name == "marital_status")
    assert marital.values == {"结婚": "已婚", "离婚": "离婚"}
    assert spec.resolution.profile == "person" and "psb.hukou" in spec.resolution.rescue


def _copy_schemas(tmp_path: Path):
    target = tmp_path / "schemas"
    shutil.copytree(Path(get_settings().schemas_dir), target)
    return dataclasses.replace(get_settings(), schemas_dir=target)


def test_unknown_source_in_an_attribute_names_file_and_field(tmp_path):
    settings = _copy_schemas(tmp_path)
    path = Path(settings.schemas_dir) / "libraries" / "grid.yaml"
    path.write_text("library: grid\nkey: grid_code\nsources: {grid.cell: grid_code}\n"
                    "attributes: [{name: x, sources: [grid.hazard_report.grid_code]}]\n", encoding="utf-8")
    with pytest.raises(LibrarySpecError, match=r"schemas/libraries/grid.yaml: attributes\[0\].sources: "
                                               r"'grid.hazard_report' is not under sources:"):
        load_library_spec("grid", settings)


def test_dependency_cycle_is_refused(tmp_path):
    settings = _copy_schemas(tmp_path)
    path = Path(settings.schemas_dir) / "libraries" / "population.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "depends_on: [e_licence]\n", encoding="utf-8")
    with pytest.raises(LibrarySpecError, match="depends_on cycle"):
        library_names(settings)


def test_population_takes_gender_and_birth_date_from_the_id_number():
    spec = load_library_spec("population")
    from_key = {a.name: a.from_key for a in spec.attributes if a.from_key}
    assert from_key == {"gender": "id_number.gender", "birth_date": "id_number.birth_date"}


def test_unknown_key_fact_names_file_and_field(tmp_path):
    settings = _copy_schemas(tmp_path)
    path = Path(settings.schemas_dir) / "libraries" / "grid.yaml"
    path.write_text("library: grid\nkey: grid_code\nsources: {grid.cell: grid_code}\n"
                    "attributes: [{name: x, from_key: id_number.shoe_size, sources: [grid.cell.x]}]\n",
                    encoding="utf-8")
    with pytest.raises(LibrarySpecError, match=r"schemas/libraries/grid.yaml: attributes\[0\].from_key: one of "
                                               r"id_number.birth_date, id_number.gender"):
        load_library_spec("grid", settings)
