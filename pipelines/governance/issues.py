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
from pipelines.lake.delta import append_rows, read_delta_rows, upsert_rows
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import ISSUE_EVENTS_DDL, ISSUES_DDL
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
    reopen_as: dict[str, Finding] = {}     # the finding behind each update, should its issue be closed meanwhile
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
            reopen_as[issue["issue_id"]] = finding
        else:
            issue = _new_issue(contract, finding, load_id, now)
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
    # An issue a governor closed (or anyone changed) since it was read above stays
    # as they left it: only rows still open are updated, new ones inserted.
    merged = upsert_rows(path, changes, ISSUES_DDL, key="issue_id", partition=("feed", contract.feed),
                         matched_predicate="t.status = 'open'")
    if merged.get("num_target_rows_updated", 0) < len(summary["updated"]) + len(summary["closed"]):
        stored = {row["issue_id"]: row for row in read_delta_rows(path, [("feed", "=", contract.feed)])}
        for kind in ("updated", "closed"):
            summary[kind] = [i for i in summary[kind] if stored.get(i, {}).get("last_load_id") == load_id
                             or (kind == "closed" and stored.get(i, {}).get("closed_by") == "govlake"
                                 and stored[i].get("closed_reason") == f"passed in delivery {load_id}")]
        # a rule this delivery failed again, whose issue was closed meanwhile: a new issue follows it
        followed = [_new_issue(contract, finding, load_id, now) for issue_id, finding in reopen_as.items()
                    if issue_id not in summary["updated"]]
        if followed:
            upsert_rows(path, followed, ISSUES_DDL, key="issue_id", partition=("feed", contract.feed))
            changes += followed
            summary["opened"] += [issue["issue_id"] for issue in followed]
    by_id = {issue["issue_id"]: issue for issue in changes}
    record_events([_event(by_id[i], action, "govlake", None, load_id=load_id, now=now,
                          reason=by_id[i]["closed_reason"] if action == "closed" else by_id[i]["detail"])
                   for action, key in (("opened", "opened"), ("closed", "closed")) for i in summary[key]], settings)
    for kind, ids in summary.items():
        if ids:
            log.info("%s load %s: governance issues %s: %s", contract.feed, load_id, kind, ", ".join(ids))
    return summary


def _new_issue(contract: Contract, finding: Finding, load_id: str, now) -> dict:
    return {
        "issue_id": _issue_id(contract.bureau, contract.feed, finding.rule, now),
        "bureau": contract.bureau, "feed": contract.feed, "rule": finding.rule,
        "column_name": finding.column_name, "source": finding.source, "status": "open",
        "first_seen_at": now, "last_seen_at": now, "first_load_id": load_id, "last_load_id": load_id,
        "occurrences": 1, "affected_rows": finding.affected_rows,
        "last_affected_rows": finding.affected_rows, "sample_rows": list(finding.sample_rows),
        "detail": finding.detail, "closed_at": None, "closed_by": None, "closed_reason": None,
    }


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
    # SQL expressions, quotes doubled: delta-rs's ``new_values`` does not escape
    # them, and a reason like "the register's error" failed the close
    outcome = DeltaTable(path).update(
        updates={"status": "'closed'", "closed_at": f"cast('{closing['closed_at'].isoformat()}Z' as timestamp)",
                 "closed_by": _sql_text(closed_by), "closed_reason": _sql_text(reason)},
        predicate=f"feed = '{feed}' AND issue_id = '{issue}' AND status = 'open'")
    if not outcome.get("num_updated_rows"):
        raise ValueError(f"issue {issue_id} was closed meanwhile")
    return row | closing


# --------------------------------------------------------------------------- the response flow

# What the owning bureau may answer to an open issue, and what a governor may do
# (``respond``). A bureau's answer leaves the issue open: only a governor, or the
# bureau's next delivery that passes the rule (``update_issues``), closes it.
BUREAU_ACTIONS = {"acknowledged": "the bureau has seen the issue and works on it",
                  "disputed": "the bureau holds that its data is right (a reason is required)",
                  "fixed": "fixed at the source, pending redelivery"}
GOVERNOR_ACTIONS = {"closed": "closed by a governor (a reason is required)",
                    "reopened": "reopened by a governor (a reason is required)"}
NEEDS_REASON = ("disputed", "closed", "reopened")


class IssueActionRefused(ValueError):
    """An issue action that is not allowed; the message says why."""


def _event(issue: dict, action: str, by_user: str, department: str | None, reason: str | None = None,
           load_id: str | None = None, now: datetime | None = None) -> dict:
    now = now or utc_now()
    text = f"{issue['issue_id']}|{action}|{by_user}|{now.isoformat()}"
    return {"event_id": "GE-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], "issue_id": issue["issue_id"],
            "bureau": issue["bureau"], "feed": issue["feed"], "action": action,
            "status_after": "closed" if action == "closed" else "open", "reason": reason, "by_user": by_user,
            "department": department, "load_id": load_id, "at": now}


def record_events(events: list[dict], settings: Settings | None = None) -> None:
    """Append issue transitions to ``governance.issue_events`` (delta-rs, one commit)."""
    if events:
        append_rows(governance_path("issue_events", settings or get_settings()), events, ISSUE_EVENTS_DDL)


def issue_events(issue_id: str, settings: Settings | None = None) -> list[dict]:
    """The transitions of one issue, oldest first."""
    rows = read_delta_rows(governance_path("issue_events", settings or get_settings()),
                           [("issue_id", "=", issue_id)])
    return sorted(rows, key=lambda r: (r["at"], r["event_id"]))


def respond(issue_id: str, action: str, by_user: str, department, reason: str = "",
            settings: Settings | None = None) -> dict:
    """Record ``action`` on issue ``issue_id`` by ``by_user`` of ``department``
    (``pipelines.serving.catalog.Department``) and return the event.

    A bureau answers its own open issues (``BUREAU_ACTIONS``); a governor
    closes an open issue or reopens a closed one (``GOVERNOR_ACTIONS``).
    Anything else is refused with ``IssueActionRefused`` naming why; the
    caller audits the refusal. Closing goes through ``close_issue``."""
    from deltalake import DeltaTable

    settings = settings or get_settings()
    reason = (reason or "").strip()
    found = read_delta_rows(governance_path("issues", settings), [("issue_id", "=", issue_id)])
    if not found:
        raise LookupError(f"no governance issue {issue_id}")
    issue = found[0]
    governor = department.role == "governor"
    if action in BUREAU_ACTIONS:
        if department.bureau != issue["bureau"]:
            raise IssueActionRefused(f"issue {issue_id} is {issue['bureau']}'s; only its own bureau answers it "
                                     f"({by_user} is of {department.code})")
        if issue["status"] != "open":
            raise IssueActionRefused(f"issue {issue_id} is {issue['status']}: only an open issue is answered")
    elif action in GOVERNOR_ACTIONS:
        if not governor:
            raise IssueActionRefused(f"only a governor may mark an issue {action} ({by_user} is of "
                                     f"{department.code})")
        wanted = "open" if action == "closed" else "closed"
        if issue["status"] != wanted:
            raise IssueActionRefused(f"issue {issue_id} is {issue['status']}: only a {wanted} issue can be {action}")
        if action == "reopened":     # at most one open issue per feed and rule
            open_now = [r["issue_id"] for r in read_delta_rows(governance_path("issues", settings), [
                ("feed", "=", issue["feed"]), ("status", "=", "open")]) if r["rule"] == issue["rule"]]
            if open_now:
                raise IssueActionRefused(f"{issue['feed']} has an open issue for {issue['rule']} already "
                                         f"({open_now[0]})")
    else:
        raise IssueActionRefused(f"unknown action {action!r}: one of {', '.join([*BUREAU_ACTIONS, *GOVERNOR_ACTIONS])}")
    if action in NEEDS_REASON and not reason:
        raise IssueActionRefused(f"{action} needs a reason")
    if action == "closed":
        close_issue(issue_id, reason, by_user, settings)
    elif action == "reopened":
        path = governance_path("issues", settings)
        feed, issue_literal = issue["feed"].replace("'", "''"), issue_id.replace("'", "''")
        outcome = DeltaTable(path).update(
            updates={"status": "'open'", "closed_at": "null", "closed_by": "null", "closed_reason": "null"},
            predicate=f"feed = '{feed}' AND issue_id = '{issue_literal}' AND status = 'closed'")
        if not outcome.get("num_updated_rows"):
            raise IssueActionRefused(f"issue {issue_id} was reopened meanwhile")
    event = _event(issue, action, by_user, department.code, reason or None)
    record_events([event], settings)
    return event
