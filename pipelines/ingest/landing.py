"""What Airflow tasks call: pick up a feed's deliveries from its landing folder.

Deliveries land in ``<lake>/landing/<bureau>/<feed>/``. A pick-up ingests every
file there (oldest name first, corrections after what they correct) through
the exactly-once ingest and its quality gate, then moves each file aside:
``_processed/`` once the lake holds it (loaded, already loaded or blocked),
``_rejected/`` when the file itself is unusable. A failed load leaves its file
in place for the retry. Rerunning a pick-up is therefore harmless.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pipelines.contracts import Contract, get_contract
from pipelines.ingest.load import ingest_directory
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

PROCESSED = "_processed"
REJECTED = "_rejected"


def landing_folder(contract: Contract, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.local_lake_path("landing", contract.bureau, contract.feed_name)


def pending_deliveries(contract: Contract, settings: Settings | None = None) -> list[Path]:
    """Files waiting in the feed's landing folder."""
    folder = landing_folder(contract, settings)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def drop_deliveries(source_root: Path, contracts: dict[str, Contract], settings: Settings | None = None) -> int:
    """Copy a generated city's ``deliveries/<bureau>/<feed>/*`` into the landing folders."""
    copied = 0
    for contract in contracts.values():
        source = Path(source_root) / contract.bureau / contract.feed_name
        if not source.is_dir():
            continue
        target = landing_folder(contract, settings)
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            if path.is_file():
                shutil.copy2(path, target / path.name)
                copied += 1
    return copied


def _move_aside(path: Path, folder: str) -> None:
    target = path.parent / folder
    target.mkdir(exist_ok=True)
    path.replace(target / path.name)


def ingest_landing(feed: str, settings: Settings | None = None) -> dict:
    """Ingest every delivery waiting for ``feed``; returns a small summary
    (load ids by outcome, messages, whether silver changed) for the DAG.
    Starts no JVM: ingest runs on Arrow and delta-rs."""

    settings = settings or get_settings()
    contract = get_contract(feed, settings.schemas_dir)
    summary = {"feed": feed, "loaded": [], "already_loaded": [], "blocked": [], "rejected": [], "failed": [],
               "messages": {}, "silver_changed": False}
    if not pending_deliveries(contract, settings):
        log.info("%s: no deliveries waiting in %s", feed, landing_folder(contract, settings))
        return summary
    root = settings.local_lake_path("landing")
    for result in ingest_directory(root, {feed: contract}, settings=settings):
        key = result.load_id or result.source_file
        summary.setdefault(result.status, []).append(key)
        summary["messages"][key] = f"{result.source_file}: {result.message}" if result.message else result.source_file
        path = landing_folder(contract, settings) / result.source_file
        if result.status in ("loaded", "already_loaded", "blocked"):
            _move_aside(path, PROCESSED)
        elif result.status == "rejected":
            _move_aside(path, REJECTED)
        summary["silver_changed"] |= result.status == "loaded"
        log.info("%s %s: %s %s", feed, result.source_file, result.status, result.message)
    return summary


class DeliveryProblem(RuntimeError):
    """A pick-up left deliveries blocked, rejected or failed."""


def raise_for_problem_deliveries(summary: dict) -> str:
    """Raise naming every blocked, rejected or failed delivery (with its
    governance issues); return a one-line summary otherwise."""
    problems = [f"{status} {key}: {summary['messages'].get(key, '')}"
                for status in ("blocked", "rejected", "failed") for key in summary.get(status, [])]
    if problems:
        raise DeliveryProblem(f"{summary['feed']}: " + " | ".join(problems))
    return (f"{summary['feed']}: {len(summary['loaded'])} loaded, "
            f"{len(summary['already_loaded'])} already loaded")
