"""Suites are rendered from contracts and custom files; the committed files are current."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.contracts import get_contract, load_contracts
from pipelines.quality.suites import SuiteError, build_suite, custom_expectations, write_suites
from pipelines.settings import get_settings


def test_committed_suite_files_are_current():
    outcome = write_suites(load_contracts(), check=True)
    assert set(outcome.values()) == {"unchanged"}, {f: s for f, s in outcome.items() if s != "unchanged"}


def test_suite_covers_the_contract_rules():
    suite = build_suite(get_contract("psb.hukou"))
    rules = {e["meta"]["rule"]: e for e in suite["expectations"]}
    assert rules["quarantine_share"]["kwargs"]["mostly"] == pytest.approx(0.95)
    assert rules["quarantine_share"]["meta"]["blocking"] is True
    assert rules["row_count_band"]["meta"]["blocking"] is False
    assert {"id_number.present_and_valid", "id_number.unique", "id_number.id_number_format",
            "gender.enum", "birth_date.date_range", "registered_date.not_before_birth"} <= set(rules)
    json.dumps(suite, ensure_ascii=False)  # a plain, serialisable document


def test_custom_expectation_with_unknown_column_names_the_file(tmp_path):
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "psb.hukou.yaml").write_text(
        "expectations:\n  - rule: x\n    type: expect_column_values_to_not_be_null\n"
        "    kwargs: {column: brith_date}\n", encoding="utf-8")
    settings = dataclasses.replace(get_settings(), quality_dir=tmp_path)
    with pytest.raises(SuiteError, match=r"quality/custom/psb.hukou.yaml: expectations\[0\].kwargs.column: "
                                         r"unknown column 'brith_date'"):
        custom_expectations(get_contract("psb.hukou"), settings)


@pytest.mark.parametrize(("expectation", "refusal"), [
    ("type: expect_column_values_to_match_strftime_format\n    kwargs: {column: full_name, strftime_format: '%Y'}",
     r"expectations\[0\]: expectation type 'expect_column_values_to_match_strftime_format' is not one the "
     r"delivery gate evaluates"),
    ("type: expect_column_values_to_match_regex\n    kwargs: {column: full_name, regex: '^(?!x)'}",
     r"expectations\[0\]\.kwargs\.regex: '\^\(\?!x\)' does not mean the same in Python and DuckDB \(RE2\): "
     r"DuckDB: .*invalid perl operator"),
    ("type: expect_column_values_to_match_regex\n    kwargs: {column: full_name, regex: '^(a)\\1$'}",
     r"expectations\[0\]\.kwargs\.regex: .* DuckDB: .*invalid escape"),
    # \w is Unicode in Python and ASCII in RE2: 张三 would pass on pandas and fail on DuckDB
    ("type: expect_column_values_to_match_regex\n    kwargs: {column: full_name, regex: '^\\w{2,4}$'}",
     r"expectations\[0\]\.kwargs\.regex: .* uses \\w"),
])
def test_custom_expectation_the_duckdb_gate_cannot_evaluate_is_refused(tmp_path, expectation, refusal):
    """What GX's pandas engine would evaluate but the DuckDB gate could not (or
    would read differently) is refused when the suite is rendered, naming the file."""
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "psb.hukou.yaml").write_text(
        f"expectations:\n  - rule: x\n    {expectation}\n", encoding="utf-8")
    settings = dataclasses.replace(get_settings(), quality_dir=tmp_path)
    with pytest.raises(SuiteError, match=r"quality/custom/psb.hukou.yaml: " + refusal):
        custom_expectations(get_contract("psb.hukou"), settings)
