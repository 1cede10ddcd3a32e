"""Every computed column of a golden library states its rule (what the value
is, where it comes from, when it is null) in the library spec, and the catalog
carries it as the column's description (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.library_specs import load_library_spec
from pipelines.serving.catalog import resources_from_libraries
from pipelines.settings import get_settings


def _declared(library: str) -> dict:
    path = Path(get_settings().schemas_dir) / "libraries" / f"{library}.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")).get("catalog") or {}).get("columns") or {}


@pytest.mark.parametrize("library", ["population", "legal_person"])
def test_every_computed_column_has_a_rule_in_the_spec_and_the_catalog(library):
    declared = _declared(library)
    assert declared, library
    resource = resources_from_libraries()[f"base.{library}"]
    for name, item in declared.items():
        assert isinstance(item, dict) and len(str(item.get("rule") or "").split()) >= 8, (library, name)
        assert resource.column(name).description == " ".join(item["rule"].split()), (library, name)
    # every other column is described too: attributes from their sources (or their own rule), provenance, history
    assert all(c.description for c in resource.columns), [c.name for c in resource.columns if not c.description]


def test_population_rules_name_the_id_number_and_the_is_deceased_cases():
    resource = resources_from_libraries()["base.population"]
    deceased = resource.column("is_deceased").description
    for words in ("mca.death", "死亡", "正常", "residence permit", "build date", "null only when nothing is known"):
        assert words in deceased, words
    spec = load_library_spec("population")
    for attribute in ("gender", "birth_date"):
        assert "validated ID number" in resource.column(attribute).description
        assert resource.column(f"{attribute}_source").description.endswith("(id_number: the key itself); "
                                                                           "null when it is null")
        assert next(a for a in spec.attributes if a.name == attribute).rule
    assert "residence-permit holders" in resource.column("phone").description
