"""`govlake show`: which columns of a golden record are computed is decided in
pipelines.libraries.show, and the command fails in one line before Spark."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.libraries.show import computed_columns
from pipelines.library_specs import load_library_spec
from pipelines.settings import get_settings


def test_computed_columns_are_those_no_attribute_provides():
    spec = load_library_spec("population")
    attribute = spec.attributes[0].name
    record = [spec.key, attribute, f"{attribute}_source", f"{attribute}_load_id", "known_to",
              "is_known_to_authority", "record_hash", "valid_from", "valid_to", "is_current", "age", "household_size"]
    assert computed_columns(spec, record) == ["age", "household_size"]


def test_show_before_a_build_says_so_without_starting_spark(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVLAKE_HOME", str(tmp_path))
    monkeypatch.setattr("pipelines.spark.build_spark_session", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["show", "entity", "91441900MA4W000000"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "base.legal_person is not built yet: run `govlake build`" in result.output
