"""An event too big to parse whole (a crafted query can make Trino's plan in it
any size) is still audited from its head and tail; plans are never kept."""

from __future__ import annotations

import io
import json

from pipelines.serving.audit import audit_row, oversized_event, slim_event


def _event(plan_bytes: int) -> dict:
    return {"metadata": {"uri": "https://127.0.0.1/v1/query/q1", "queryId": "20261203_000000_00001_abcde",
                         "transactionId": "t", "query": 'select "x" from t where a = \'一\'', "queryState": "FINISHED",
                         "plan": "Fragment " * (plan_bytes // 9), "jsonPlan": "{}"},
            "statistics": {"outputRows": 3},
            "context": {"user": "nancheng_officer", "principal": "nancheng_officer", "source": "attacker"},
            "ioMetadata": {"inputs": []}}


def test_an_oversized_event_keeps_who_ran_what_and_drops_the_plans():
    event = _event(3_000_000)
    body = json.dumps(event, ensure_ascii=False).encode()
    rebuilt = oversized_event(io.BytesIO(body), len(body), edge=64 * 1024)
    assert rebuilt["metadata"]["queryId"] == "20261203_000000_00001_abcde"
    assert rebuilt["metadata"]["queryState"] == "FINISHED"
    assert rebuilt["metadata"]["query"].startswith('select "x" from t where a = \'一\'')
    assert f"{len(body)} bytes" in rebuilt["metadata"]["query"]
    assert rebuilt["context"] == {"user": "nancheng_officer", "principal": "nancheng_officer", "source": "attacker"}
    row = audit_row(rebuilt, {"nancheng_officer": "nancheng"})
    assert row["department"] == "nancheng" and row["principal"] == "nancheng_officer"
    assert oversized_event(io.BytesIO(b'{"metadata": {"plan": "' + b"x" * 1000 + b'"}}'), 1025, edge=100) is None


def test_stored_events_carry_no_plans():
    slim = slim_event(_event(1000))
    assert "plan" not in slim["metadata"] and "jsonPlan" not in slim["metadata"]
    assert slim["metadata"]["query"] and slim["context"]["user"] == "nancheng_officer"
