"""The schema of every governance table, in one place.

``GOVERNANCE_TABLES`` maps each table under ``governance/`` to its Spark DDL;
``pipelines.lake.delta.read_table`` gives an empty frame of that schema while
a table does not exist yet.
"""

from __future__ import annotations

MANIFEST_DDL = (
    "load_id string, feed string, bureau string, source_file string, raw_path string, "
    "sha256 string, size_bytes long, encoding string, status string, replaces_load_id string, "
    "rows_read long, rows_loaded long, rows_quarantined long, rows_duplicate long, "
    "extra_headers array<string>, missing_columns array<string>, message string, event_at timestamp"
)


QUARANTINE_DDL = (
    "feed string, _load_id string, _source_file string, _row_number long, column_name string, header string, "
    "rule string, failures array<struct<column_name:string,header:string,rule:string,value:string>>, "
    "original_values map<string,string>, quarantined_at timestamp"
)


APPROVALS_DDL = (
    "load_id string, feed string, bureau string, approved_by string, reason string, "
    "rows_promoted long, blocking_failures string, approved_at timestamp"
)


ISSUES_DDL = (
    "issue_id string, bureau string, feed string, rule string, column_name string, source string, "
    "status string, first_seen_at timestamp, last_seen_at timestamp, first_load_id string, "
    "last_load_id string, occurrences int, affected_rows long, last_affected_rows long, "
    "sample_rows array<string>, detail string, closed_at timestamp, closed_by string, closed_reason string"
)


# One row per transition of a governance issue (governance.issues): opened and
# closed by a delivery, answered by the owning bureau (acknowledged, disputed,
# fixed pending redelivery), closed or reopened by a governor.
ISSUE_EVENTS_DDL = (
    "event_id string, issue_id string, bureau string, feed string, action string, status_after string, "
    "reason string, by_user string, department string, load_id string, at timestamp"
)


# One row per feed per day: the bureau scorecard as it stood that day
# (pipelines.governance.reports.snapshot_scorecard, the governance_daily DAG).
SCORECARD_HISTORY_DDL = (
    "day date, bureau string, feed string, completeness double, validity double, uniqueness double, "
    "timeliness string, blocked_loads int, open_issues int, open_reviews int, score double, taken_at timestamp"
)


# One row per published resource: its freshness and its feeds' quality pass
# rate over a window (pipelines.governance.health; every department reads it).
RESOURCE_HEALTH_DDL = (
    "resource_id string, feeds array<string>, last_changed_at timestamp, last_delivery_at timestamp, "
    "deliveries int, blocked int, checks long, checks_passed long, pass_rate double, window_days int, "
    "computed_at timestamp"
)


QUALITY_RESULTS_DDL = (
    "run_id string, load_id string, feed string, bureau string, suite string, expectation_type string, "
    "column_name string, expectation string, rule string, blocking boolean, success boolean, "
    "element_count long, unexpected_count long, unexpected_percent double, observed_value string, "
    "kwargs string, sample_rows array<string>, validated_at timestamp"
)


DEMAND_DDL = (
    "request_id string, department string, resource string, columns array<string>, purpose string, "
    "legal_basis string, row_scope string, expires date, requested_by string, requested_at timestamp, "
    "status string, consents array<string>, decided_by string, decided_at timestamp, decision_reason string, "
    "grant_file string"
)


SHARING_DDL = (
    "department string, resource string, columns array<string>, purpose string, legal_basis string, "
    "row_scope string, expires date, approver string, state string, source string, refreshed_at timestamp"
)


COLLECTION_DDL = (
    "feed string, bureau string, title string, cadence string, last_delivery_at timestamp, last_file string, "
    "last_rows long, loads long, status string, refreshed_at timestamp"
)


# One row per Trino query id (event_kind 'query') or per audited line of Trino's
# HTTP request log (event_kind 'http_request', query_id 'http-<sha256 of the line>').
# Append-only and hash-chained: seq 1..n, digest = sha256(prev_digest + the row),
# see pipelines.serving.audit.row_digest.
AUDIT_DDL = (
    "event_kind string, query_id string, principal string, user string, department string, "
    "created_at timestamp, ended_at timestamp, query string, state string, access_denied boolean, "
    "error_code string, error_message string, tables_read array<string>, columns_read array<string>, "
    "rows_returned long, source string, http_method string, http_uri string, http_status int, "
    "client_address string, loaded_at timestamp, seq long, prev_digest string, digest string"
)


CONFLICTS_DDL = (
    "library string, subject string, attribute string, authoritative_feed string, authoritative_value string, "
    "authoritative_load_id string, other_feed string, other_column string, other_value string, "
    "other_load_id string, first_seen_at timestamp, last_seen_at timestamp, resolved_at timestamp"
)


# evidence: which attributes agreed and how, and the score against the next
# candidate's (``resolution.match_unkeyed``); null for a valid key's link
LINKS_DDL = ("library string, feed string, source_alias string, _load_id string, _source_file string, "
             "_row_number long, key string, method string, score int, evidence string")


REVIEW_DDL = ("library string, feed string, source_alias string, _load_id string, _source_file string, "
              "_row_number long, reason string, record map<string,string>, candidate_keys array<string>, "
              "status string, found_at timestamp, evidence string")


# one row per decision on a match review, undoing ones included (pipelines/governance/reviews.py)
REVIEW_DECISIONS_DDL = ("review_id string, library string, feed string, source_alias string, _load_id string, "
                        "_row_number long, decision string, candidate_key string, reason string, "
                        "decided_by string, decided_at timestamp")


ADDRESS_MATCH_RATES_DDL = ("feed string, column_name string, rows long, matched long, match_rate double, "
                           "measured_at timestamp")


UNMATCHED_ADDRESSES_DDL = "feed string, column_name string, address_text string, rows long"


# Not a governance table: the operators' log under ``state/build_overrides``
# (``pipelines.libraries.build.accept_code_change``), one row per library per decision.
# decision: accepted | refused | not applied | applied (what the build then did, in detail)
BUILD_OVERRIDES_DDL = ("library string, decision string, changed_files array<string>, previous_digest string, "
                       "digest string, reason string, decided_by string, os_user string, detail string, "
                       "decided_at timestamp")


# The inspection draw (pipelines/applications/inspection.py): one row per draw,
# with what it needs to be drawn again; one row per entity drawn and inspector.
INSPECTION_DRAWS_DDL = (
    "draw_id string, plan string, plan_title string, plan_sha256 string, plan_text string, registered boolean, "
    "algorithm string, seed long, "
    "input_versions string, items string, entities_drawn long, assignments long, not_drawn string, "
    "result_digest string, replaces_draw_id string, reason string, drawn_by string, drawn_at timestamp"
)


INSPECTION_ASSIGNMENTS_DDL = (
    "draw_id string, plan string, position int, item string, uscc string, entity_name string, "
    "risk_grade string, inspector_slot int, certificate_number string, drawn_at timestamp"
)


# Verification instead of documents (pipelines/applications/verification.py):
# one row per question asked, answered or refused.
VERIFICATION_LOG_DDL = (
    "asked_at timestamp, department string, asked_by string, check_name string, subject string, params string, "
    "purpose string, answer string, refused_reason string, library_versions string"
)


GOVERNANCE_TABLES = {
    "load_manifest": MANIFEST_DDL,
    "quarantine": QUARANTINE_DDL,
    "quality_results": QUALITY_RESULTS_DDL,
    "quality_approvals": APPROVALS_DDL,
    "issues": ISSUES_DDL,
    "issue_events": ISSUE_EVENTS_DDL,
    "scorecard_history": SCORECARD_HISTORY_DDL,
    "resource_health": RESOURCE_HEALTH_DDL,
    "demand_list": DEMAND_DDL,
    "sharing_list": SHARING_DDL,
    "collection_list": COLLECTION_DDL,
    "query_audit": AUDIT_DDL,
    "conflicts": CONFLICTS_DDL,
    "entity_links": LINKS_DDL,
    "match_review": REVIEW_DDL,
    "review_decisions": REVIEW_DECISIONS_DDL,
    "address_match_rates": ADDRESS_MATCH_RATES_DDL,
    "unmatched_addresses": UNMATCHED_ADDRESSES_DDL,
    "inspection_draws": INSPECTION_DRAWS_DDL,
    "inspection_assignments": INSPECTION_ASSIGNMENTS_DDL,
    "verification_log": VERIFICATION_LOG_DDL,
}
