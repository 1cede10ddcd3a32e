"""The governance list (治理清单).

``governance.issues`` holds one row per issue: at most one *open* issue per
(owner bureau, feed, rule). A rule is either a quality expectation that failed
(``quarantine_share``, ``id_number.present_and_valid``, ...) or an ingest rule
that quarantined rows (``id_number.check_character``, ...). Every validated
delivery updates the list: failures open or update issues; rules of that feed
that passed close their open issue by themselves. A governor can also close an
issue with a reason.

Every write of the table goes through delta-rs (``upsert_rows``, one MERGE per
feed partition), so the JVM-free ingest path and Spark jobs (conflicts, the
CLI) never mix writer engines on it. Read it with
``pipelines.lake.delta.read_table(spark, "issues")``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from pipelines.contracts import Contract
from pipelines.lake.delta import read_delta_rows, upsert_rows
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import ISSUES_DDL
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class Finding:
    """One rule that failed in one delivery."""

    rule: str
    column_name: str | None
    source: str            # quality | quarantine | conflict
    affected_rows: int
    sample_rows: tuple[str, ...]
    detail: str = ""


def _issue_id(bureau: str, feed: str, rule: str, opened_at: datetime) -> str:
    text = f"{bureau}|{feed}|{rule}|{opened_at.isoformat()}"
    return "GI-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def quarantine_findings(failure_counts, source_file: str) -> list[Finding]:
    """One finding per (column, rule) that quarantined rows of a delivery;
    ``failure_counts`` as ``pipelines.ingest.classify.failure_counts`` gives them."""
    return [
        Finding(rule=f"{column}.{rule.split('.')[-1]}" if column != "_row" else rule,
                column_name=None if column == "_row" else column,
                source="quarantine", affected_rows=rows,
                sample_rows=tuple(f"{source_file}:{n}" for n in samples),
                detail=f"ingest rule {rule}")
        for column, rule, rows, samples in failure_counts
    ]


def gate_findings(gate, source_file: str) -> tuple[list[Finding], set[str]]:
    """Failed expectations as findings, and the rules that passed."""
    failed, passed = [], set()
    for outcome in gate.outcomes:
        if outcome.success:
            passed.add(outcome.rule)
            continue
        failed.append(Finding(
            rule=outcome.rule, column_name=outcome.column_name, source="quality",
            affected_rows=int(outcome.unexpected_count or 0),
            sample_rows=tuple(f"{source_file}:{n}" for n in outcome.sample_rows[:SAMPLE_SIZE]),
            detail=("blocking: " if outcome.blocking else "warning: ") + outcome.describe()))
    return failed, passed


def update_issues(contract: Contract, load_id: str, findings: list[Finding],
                  close_others: bool, settings: Settings | None = None) -> dict[str, list[str]]:
    """Open or update one issue per finding; with ``close_others`` (the delivery
    was validated), close this feed's open issues whose rule did not fail.

    Returns the issue ids ``opened``, ``updated`` and ``closed``. One MERGE per
    call, partitioned by feed so concurrent feeds do not conflict.
    """
    settings = settings or get_settings()
    path = governance_path("issues", settings)
    now = utc_now()
    existing = {row["rule"]: row for row in read_delta_rows(
        path, [("feed", "=", contract.feed), ("status", "=", "open")])}
    changes, summary = [], {"opened": [], "updated": [], "closed": []}
    seen = set()
    for finding in findings:
        if finding.rule in seen:
            continue
        seen.add(finding.rule)
        issue = existing.get(finding.rule)
        if issue and issue["last_load_id"] == load_id:   # a rerun of the same load changes nothing
            continue
        if issue:
            issue.update(last_seen_at=now, last_load_id=load_id, occurrences=issue["occurrences"] + 1,
                         affected_rows=issue["affected_rows"] + finding.affected_rows,
                         last_affected_rows=finding.affected_rows, sample_rows=list(finding.sample_rows),
                         detail=finding.detail)
            summary["updated"].append(issue["issue_id"])
        else:
            issue = {
                "issue_id": _issue_id(contract.bureau, contract.feed, finding.rule, now),
                "bureau": contract.bureau, "feed": contract.feed, "rule": finding.rule,
                "column_name": finding.column_name, "source": finding.source, "status": "open",
                "first_seen_at": now, "last_seen_at": now, "first_load_id": load_id, "last_load_id": load_id,
                "occurrences": 1, "affected_rows": finding.affected_rows,
                "last_affected_rows": finding.affected_rows, "sample_rows": list(finding.sample_rows),
                "detail": finding.detail, "closed_at": None, "closed_by": None, "closed_reason": None,
            }
            summary["opened"].append(issue["issue_id"])
        changes.append(issue)
    if close_others:
        for rule, issue in existing.items():
            if rule not in seen and issue["source"] != "conflict":
                issue.update(status="closed", closed_at=now, closed_by="govlake",
                             closed_reason=f"passed in delivery {load_id}")
                changes.append(issue)
                summary["closed"].append(issue["issue_id"])
    if not changes:
        return summary
    upsert_rows(path, changes, ISSUES_DDL, key="issue_id", partition=("feed", contract.feed))
    for kind, ids in summary.items():
        if ids:
            log.info("%s load %s: governance issues %s: %s", contract.feed, load_id, kind, ", ".join(ids))
    return summary


def close_issue(issue_id: str, reason: str, closed_by: str, settings: Settings | None = None) -> dict:
    """A governor closes an open issue by hand; the reason is recorded.

    delta-rs, like every write of the table: one UPDATE of the closing
    columns only, and only while the issue is still open, so a load that
    updated the issue meanwhile (occurrences, last load) keeps its update."""
    from deltalake import DeltaTable

    if not reason.strip():
        raise ValueError("closing an issue needs a reason")
    settings = settings or get_settings()
    path = governance_path("issues", settings)
    found = read_delta_rows(path, [("issue_id", "=", issue_id)])
    if not found:
        raise LookupError(f"no governance issue {issue_id}")
    row = found[0]
    if row["status"] != "open":
        raise ValueError(f"issue {issue_id} is already {row['status']} ({row['closed_reason']})")
    closing = {"status": "closed", "closed_at": utc_now(), "closed_by": closed_by, "closed_reason": reason}
    feed = row["feed"].replace("'", "''")
    issue = issue_id.replace("'", "''")
    outcome = DeltaTable(path).update(
        new_values=closing, predicate=f"feed = '{feed}' AND issue_id = '{issue}' AND status = 'open'")
    if not outcome.get("num_updated_rows"):
        raise ValueError(f"issue {issue_id} was closed meanwhile")
    return row | closing
