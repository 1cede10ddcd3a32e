"""The command line: help everywhere, contract checks, JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from pipelines.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help():
    runner = CliRunner()
    for path in _commands(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_contracts_list_json_and_check():
    runner = CliRunner()
    listed = runner.invoke(main, ["contracts", "list", "--json"])
    assert listed.exit_code == 0
    feeds = {c["feed"] for c in json.loads(listed.output)}
    assert len(feeds) == 18 and "psb.hukou" in feeds
    checked = runner.invoke(main, ["contracts", "check"])
    assert checked.exit_code == 0 and "18 contracts valid" in checked.output


def test_contract_check_names_the_broken_file_and_field(tmp_path):
    broken = tmp_path / "psb" / "hukou.yaml"
    broken.parent.mkdir()
    text = Path("schemas/feeds/psb/hukou.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("type: enum, values: [男, 女]", "type: sex, values: [男, 女]", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["contracts", "check", str(broken)])
    assert result.exit_code == 1
    assert "columns[2].type: unknown type 'sex'" in result.output


def test_ingest_needs_feed_and_file_or_all():
    result = CliRunner().invoke(main, ["ingest"])
    assert result.exit_code == 2 and "give either FEED FILE or --all DIR" in result.output


def test_trino_needs_java_24_and_says_so(tmp_path):
    import dataclasses

    import pytest

    from pipelines.serving.trino import TrinoSetupError, find_java
    from pipelines.settings import get_settings

    with pytest.raises(TrinoSetupError, match="GOVLAKE_TRINO_JAVA_HOME=.* is not a Java 24\\+ home"):
        find_java(dataclasses.replace(get_settings(), trino_java_home=str(tmp_path)))
