"""Helpers for tests on the session's built city (``built_city`` in conftest.py)."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path


def copy_built_lake(built_city, tmp_path_factory, name: str):
    """``(root, settings)`` of a fresh copy of the built city's lake as built
    (``root / "built-lake"``), for a module whose tests write to it."""
    root, settings, _ = built_city
    home = tmp_path_factory.mktemp(name) / "lake"
    shutil.copytree(root / "built-lake", home)
    return root, dataclasses.replace(settings, home=str(home))


def truth_rows(root: Path, name: str) -> list[dict]:
    """The rows of the generated city's ``truth/<name>``."""
    with (root / "truth" / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
