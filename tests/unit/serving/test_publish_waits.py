"""``publish`` registers tables only once Trino can have read the rules that
let the administrator own them: Trino re-reads its rules file every 5 s, and
a caller that has just compiled the rules (bench-city did, right after
starting Trino) would otherwise be refused ``register_table``."""
import dataclasses
import json
import os
import time

from pipelines.serving import publish as publishing
from pipelines.serving.trino import ADMIN_USER, rules_path
from pipelines.settings import get_settings


def _owning(tmp_path, names, age_seconds):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path), trino_home=tmp_path / "trino")
    path = rules_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"tables": [
        {"user": f"^{ADMIN_USER}$", "catalog": "lake", "schema": f"^{s}$", "table": f"^{t}$",
         "privileges": ["SELECT", "OWNERSHIP"]} for s, t in names]}))
    written = time.time() - age_seconds
    os.utime(path, (written, written))
    return settings


def test_rules_written_just_now_are_waited_for(tmp_path, monkeypatch):
    slept = []
    monkeypatch.setattr(publishing.time, "sleep", slept.append)
    settings = _owning(tmp_path, [("silver", "amr_abnormal_list")], age_seconds=1)
    publishing._ensure_ownership([("silver", "amr_abnormal_list")], settings)
    assert len(slept) == 1 and 4.5 < slept[0] <= 5.1


def test_rules_in_force_for_a_while_are_not_waited_for(tmp_path, monkeypatch):
    slept = []
    monkeypatch.setattr(publishing.time, "sleep", slept.append)
    settings = _owning(tmp_path, [("silver", "amr_abnormal_list")], age_seconds=60)
    publishing._ensure_ownership([("silver", "amr_abnormal_list")], settings)
    assert slept in ([], [0.0])
