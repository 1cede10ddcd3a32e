"""The rules keeper recompiles for the day it runs on: expiries apply with no
one running a command, and a catalog that stops compiling is not applied
while expiries still are (no Trino needed: the rules file is the outcome)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date

from pipelines.serving.keeper import Keeper
from pipelines.serving.trino import rules_path
from pipelines.settings import get_settings


def _users_reading(settings, table: str) -> set[str]:
    rules = json.loads(rules_path(settings).read_text(encoding="utf-8"))
    return {r["user"].strip("^$") for r in rules["tables"] if r.get("table") == f"^{table}$"}


def test_the_keeper_expires_grants_on_its_own_and_survives_a_bad_grant_file(tmp_path):
    shutil.copytree(get_settings().catalog_dir, tmp_path / "catalog")
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino",
                                   catalog_dir=tmp_path / "catalog", today=date(2027, 6, 30))
    keeper = Keeper(settings)
    first = keeper.refresh_rules()
    assert first["changed"] and "nancheng_officer" in _users_reading(settings, "psb_residence_permit")
    assert keeper.refresh_rules()["changed"] is False          # same day, same catalog: the file stays
    bad = tmp_path / "catalog" / "grants" / "zz-bad.yaml"
    bad.write_text("grants:\n  - department: edu\n    resource: silver.psb_hukou\n    columns: [shoe_size]\n"
                   "    purpose: x\n    legal_basis: y\n    expires: 2030-01-01\n    approver: z\n", encoding="utf-8")
    keeper.settings = dataclasses.replace(settings, today=date(2027, 7, 1))     # the towns' grants expired
    outcome = keeper.refresh_rules()
    assert "zz-bad.yaml:4" in outcome["error"] and outcome["changed"]
    readers = _users_reading(settings, "psb_residence_permit")
    assert "hrss_officer" in readers
    assert "nancheng_officer" in readers       # unconditional columns still, but no longer the granted ones
    rule = next(r for r in json.loads(rules_path(settings).read_text(encoding="utf-8"))["tables"]
                if r.get("user") == "^nancheng_officer$" and r.get("table") == "^psb_residence_permit$")
    assert {"name": "phone", "allow": False} in rule["columns"]
    assert "shoe_size" not in rules_path(settings).read_text(encoding="utf-8")    # the bad file is not applied
