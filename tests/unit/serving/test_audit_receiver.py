"""The audit receiver accepts only Trino: a post without the token from
``receiver.token`` (or with a body that is not an event) is refused, recorded
in ``rejected-events.jsonl`` and never reaches the events file."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import socket
import stat

import pytest

from pipelines.serving.audit import (
    REJECTED_EVENTS,
    TOKEN_HEADER,
    audit_dir,
    listener_properties,
    read_audit_events,
    receiver_token,
    start_receiver,
    stop_receiver,
    token_path,
)
from pipelines.settings import get_settings
from tests.unit.serving.test_audit_events import GOOD


def _free_port_pair() -> int:
    """A port p with p + 1 free (the receiver listens on Trino's port + 1),
    below Linux's ephemeral range (32768-60999): a port the kernel hands out
    for outgoing connections can be taken between this check and a restart
    of the receiver (a CI run failed so: "port ... taken by another process")."""
    import random

    for _ in range(200):
        port = random.randrange(20000, 32000)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


@pytest.fixture
def receiver(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino",
                                   trino_port=_free_port_pair())
    start_receiver(settings)
    yield settings
    stop_receiver(settings)


def _post(settings, body: bytes, token: str | None, path: str = "/events") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", settings.trino_port + 1, timeout=10)
    headers = {"Content-Type": "application/json"} | ({TOKEN_HEADER: token} if token is not None else {})
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _rejected(settings) -> list[dict]:
    path = audit_dir(settings) / REJECTED_EVENTS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_the_listener_sends_the_token_kept_in_a_file_only_its_owner_reads(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    lines = listener_properties(settings)
    token = receiver_token(settings)
    assert f"http-event-listener.connect-http-headers={TOKEN_HEADER}:{token}" in lines
    assert stat.S_IMODE(token_path(settings).stat().st_mode) == 0o600
    assert receiver_token(settings) == token   # created once
    assert any(line.endswith(f":{settings.trino_port + 1}/events") for line in lines)


def test_a_post_without_the_right_token_is_refused_and_recorded(receiver):
    event = json.dumps(GOOD[0]).encode()
    assert _post(receiver, event, token=None) == 401
    assert _post(receiver, event, token="0" * 64) == 401
    assert _post(receiver, event, token="") == 401

    rejected = _rejected(receiver)
    assert [r["reason"] for r in rejected] == [f"no {TOKEN_HEADER}", f"wrong {TOKEN_HEADER}", f"no {TOKEN_HEADER}"]
    assert {r["status"] for r in rejected} == {401} and {r["client_address"] for r in rejected} == {"127.0.0.1"}
    assert rejected[0]["body_sha256"] == hashlib.sha256(event).hexdigest()
    assert rejected[0]["body_start"] == event.decode()[:500] and rejected[0]["received_at"]
    assert "0" * 64 not in json.dumps(rejected)   # a guessed token is not written down
    assert not list(audit_dir(receiver).glob("events-*.jsonl"))
    assert read_audit_events(receiver, {}).rows == {}


def test_a_body_that_is_not_an_event_is_refused_even_with_the_token(receiver):
    token = receiver_token(receiver)
    assert _post(receiver, b"not json at all" * 100, token) == 400
    assert _post(receiver, json.dumps({"metadata": {"queryState": "FINISHED"}}).encode(), token) == 400
    assert _post(receiver, json.dumps(GOOD[0]).encode(), token, path="/elsewhere") == 404
    rejected = _rejected(receiver)
    assert [r["reason"] for r in rejected] == ["not JSON", "missing metadata.queryId", "not /events"]
    assert len(rejected[0]["body_start"]) == 500
    assert not list(audit_dir(receiver).glob("events-*.jsonl"))


def test_trinos_post_is_accepted_also_after_a_restart_with_the_earlier_token(receiver):
    token = receiver_token(receiver)
    assert _post(receiver, json.dumps(GOOD[0]).encode(), token) == 200
    stop_receiver(receiver)
    start_receiver(receiver)   # the token file exists from before
    assert receiver_token(receiver) == token
    assert _post(receiver, json.dumps(GOOD[1]).encode(), token) == 200
    assert _post(receiver, json.dumps(GOOD[1]).encode(), token + "0") == 401
    events = read_audit_events(receiver, {})
    assert sorted(events.rows) == sorted(e["metadata"]["queryId"] for e in GOOD)
    assert [r["reason"] for r in _rejected(receiver)] == [f"wrong {TOKEN_HEADER}"]


def test_a_receiver_older_than_its_token_file_is_restarted_with_the_new_token(receiver):
    old = receiver_token(receiver)
    first = start_receiver(receiver)
    assert start_receiver(receiver) == first   # nothing changed: kept
    token_path(receiver).unlink()              # e.g. removed by hand; the next `trino up` writes a new one
    new = listener_properties(receiver)[-2].rsplit(":", 1)[1]
    second = start_receiver(receiver)
    assert second != first and new != old and new == receiver_token(receiver)
    assert _post(receiver, json.dumps(GOOD[0]).encode(), new) == 200
    assert _post(receiver, json.dumps(GOOD[0]).encode(), old) == 401


def _ask(settings, form: dict, token: str | None) -> tuple[int, str]:
    """The receiver's answer to one verify-catalog question (as the Trino plugin posts it)."""
    from urllib.parse import urlencode

    connection = http.client.HTTPConnection("127.0.0.1", settings.trino_port + 1, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} | ({TOKEN_HEADER: token} if token else {})
    try:
        connection.request("POST", "/verify", body=urlencode(form).encode(), headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def test_the_verify_path_answers_for_the_department_of_the_trino_user_in_the_receivers_lake(receiver):
    """The receiver answers the verify catalog's questions from the lake it was started for (its
    settings reach the child process) and logs them; the department comes from the user, never the form."""
    from pipelines.lake.delta import read_delta_rows
    from pipelines.lake.paths import governance_path

    token = receiver_token(receiver)
    question = {"user": "nancheng_officer", "check": "person-alive-in-town", "subject": "441900199001011231",
                "town": "南城街道", "purpose": "低保申请核验", "query_id": "20261207_000000_00001_abcde"}
    assert _ask(receiver, question, None)[0] == 401
    status, text = _ask(receiver, question, token)
    assert (status, text) == (403, "base.population is not built in this lake: nothing can be verified yet")
    assert _ask(receiver, question | {"town": "虎门镇", "query_id": "q2"}, token) == (
        403, "department nancheng governs town 441900004: it may ask about its own town only")
    assert _ask(receiver, question | {"user": "stranger", "query_id": "q3"}, token)[1].startswith(
        "'stranger' belongs to no department")
    # a second question of the same Trino query (UNION ALL of many calls): refused
    assert _ask(receiver, question, token)[1].startswith("one question per query")
    assert _ask(receiver, question | {"department": "hrss"}, token)[0] == 400        # no field names a department
    logged = sorted(read_delta_rows(governance_path("verification_log", receiver)), key=lambda r: r["asked_at"])
    assert [(r["asked_by"], r["department"]) for r in logged] == [
        ("nancheng_officer", "nancheng"), ("nancheng_officer", "nancheng"), ("stranger", None),
        ("nancheng_officer", "nancheng")]
    assert json.loads(logged[0]["params"]) == {"town": "南城街道", "trino_query_id": "20261207_000000_00001_abcde"}
