"""The rules keeper: a small process next to Trino that keeps the sharing rules
and the audit log current without anyone running a command.

Every ``settings.rules_refresh_seconds`` (default 60) it
- recompiles the sharing rules for ``settings.on_date()``: a grant that
  expired since the last pass stops working, a grant file added by an
  approval starts working, and the rules file is rewritten only when it
  changes (Trino re-reads it within 5 s). When the catalog no longer compiles
  (a bad grant file), the last catalog that did is compiled again for the new
  date instead, so the bad file is not applied but expiries still are; the
  error is logged on every pass until the file is fixed;
- loads new audit events and HTTP request-log lines into
  ``governance.query_audit`` (``audit.load_audit``).

``govlake trino up`` starts it (``start_keeper``); ``govlake trino down`` stops
it. Its log is ``<trino home>/keeper.log``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.processes import running_pid, service_environment, stop_process_group
from pipelines.serving.catalog import Catalog, load_catalog
from pipelines.serving.trino import keeper_pid_file, rules_path, write_rules
from pipelines.settings import Settings, get_settings, settings_environment

log = logging.getLogger(__name__)


class Keeper:
    """One pass at a time (``refresh``); remembers the last catalog that compiled."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.last_good: Catalog | None = None

    def refresh_rules(self) -> dict:
        from pipelines.serving.pseudonyms import ensure_pseudonym_key
        from pipelines.serving.rules import build_rules
        from pipelines.serving.tables import publishable_names
        from pipelines.serving.trino import ensure_passwords

        settings = self.settings
        on = settings.on_date()
        outcome: dict = {"on": on.isoformat()}
        ensure_pseudonym_key(settings)       # before the rules: it is one of the tables they name
        try:
            catalog = load_catalog(settings)
            rules = build_rules(catalog, on, publishable_names(settings))
            self.last_good = catalog
        except Exception as exc:  # noqa: BLE001 - a bad catalog must not stop expiries
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            log.error("the sharing rules do not compile (%s); %s", exc,
                      "compiling the last catalog that did" if self.last_good else "keeping the running rules")
            if self.last_good is None:
                return outcome
            rules = build_rules(self.last_good, on, publishable_names(settings))
        path = rules_path(settings)
        current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        outcome["changed"] = rules != current
        if outcome["changed"]:
            ensure_passwords(settings)
            write_rules(rules, settings)
            log.info("rules recompiled for %s (%d table rules)", on, len(rules["tables"]))
        return outcome

    def load_audit(self) -> dict:
        from pipelines.serving.audit import load_audit

        try:
            return {"audit": load_audit(self.settings)}
        except Exception as exc:
            log.exception("loading the audit log failed")
            return {"audit_error": f"{type(exc).__name__}: {exc}"}

    def refresh(self) -> dict:
        return self.refresh_rules() | self.load_audit()


def keep(settings: Settings | None = None, passes: int | None = None) -> None:
    """Refresh every ``rules_refresh_seconds`` (``passes``: stop after that many)."""
    settings = settings or get_settings()
    keeper = Keeper(settings)
    done = 0
    while passes is None or done < passes:
        started = time.monotonic()
        try:
            keeper.refresh()
        except Exception:   # one bad pass (a full disk, a vanished file) must not end the keeping
            log.exception("the keeper's pass failed; the next one retries")
        done += 1
        if passes is None or done < passes:
            time.sleep(max(1.0, settings.rules_refresh_seconds - (time.monotonic() - started)))


def start_keeper(settings: Settings | None = None) -> int:
    """Start the keeper in the background (idempotent); returns its pid. The
    child process sees ``settings`` through its ``GOVLAKE_*`` environment."""
    settings = settings or get_settings()
    pid_file = keeper_pid_file(settings)
    pid = running_pid(pid_file)
    if pid is not None:
        return pid
    environment = service_environment(settings_environment(settings))
    if settings.today is None:
        environment.pop("GOVLAKE_TODAY", None)
    log_path = Path(settings.trino_home) / "keeper.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.serving.keeper"], env=environment,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    return process.pid


def stop_keeper(settings: Settings | None = None) -> bool:
    return stop_process_group(keeper_pid_file(settings or get_settings()), grace_seconds=5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)
    keep()
