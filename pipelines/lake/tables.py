"""The schema of every governance table, in one place."""

from __future__ import annotations

MANIFEST_DDL = (
    "load_id string, feed string, bureau string, source_file string, raw_path string, "
    "sha256 string, size_bytes long, encoding string, status string, replaces_load_id string, "
    "rows_read long, rows_loaded long, rows_quarantined long, rows_duplicate long, "
    "extra_headers array<string>, missing_columns array<string>, message string, event_at timestamp"
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


QUALITY_RESULTS_DDL = (
    "run_id string, load_id string, feed string, bureau string, suite string, expectation_type string, "
    "column_name string, expectation string, rule string, blocking boolean, success boolean, "
    "element_count long, unexpected_count long, unexpected_percent double, observed_value string, "
    "kwargs string, sample_rows array<string>, validated_at timestamp"
)


DEMAND_DDL = (
    "request_id string, department string, resource string, columns array<string>, purpose string, "
    "legal_basis string, row_scope string, expires date, requested_by string, requested_at timestamp, "
    "status string, decided_by string, decided_at timestamp, decision_reason string, grant_file string"
)


SHARING_DDL = (
    "department string, resource string, columns array<string>, purpose string, legal_basis string, "
    "row_scope string, expires date, approver string, state string, source string, refreshed_at timestamp"
)


COLLECTION_DDL = (
    "feed string, bureau string, title string, cadence string, last_delivery_at timestamp, last_file string, "
    "last_rows long, loads long, status string, refreshed_at timestamp"
)


AUDIT_DDL = (
    "query_id string, user string, department string, created_at timestamp, ended_at timestamp, "
    "query string, state string, access_denied boolean, error_code string, error_message string, "
    "tables_read array<string>, columns_read array<string>, rows_returned long, source string, "
    "loaded_at timestamp"
)


CONFLICTS_DDL = (
    "library string, subject string, attribute string, authoritative_feed string, authoritative_value string, "
    "authoritative_load_id string, other_feed string, other_column string, other_value string, "
    "other_load_id string, first_seen_at timestamp, last_seen_at timestamp, resolved_at timestamp"
)


LINKS_DDL = ("library string, feed string, source_alias string, _load_id string, _source_file string, "
             "_row_number long, key string, method string, score int")


REVIEW_DDL = ("library string, feed string, source_alias string, _load_id string, _source_file string, "
              "_row_number long, reason string, record map<string,string>, candidate_keys array<string>, "
              "status string, found_at timestamp")
