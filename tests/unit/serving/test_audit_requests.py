"""Trino's HTTP request log in the audit: refused calls and REST calls outside
the statement protocol are audited; polling and the cluster's own traffic are
not; a line has the same id wherever it is read (current or rotated file)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from datetime import datetime

import pytest

from pipelines.serving.audit import read_request_log, request_log_dir, request_row
from pipelines.settings import get_settings

T = "\t"
# Lines as Trino 476 (Airlift) writes them: 13 tab-separated fields.
FAILED_LOGIN = T.join(["2026-12-03T19:13:51.124Z", "127.0.0.1", "POST", "/v1/statement", "null",
                       "Trino Python Client/0.340.0", "401", "20", "48", "16", "HTTP/1.1", "0", "16"])
QUERY_LIST_NO_PASSWORD = T.join(["2026-12-03T19:09:30.339Z", "127.0.0.1", "GET", "/v1/query", "null",
                                 "curl/7.88.1", "401", "0", "34", "77", "HTTP/2.0", "0", "76"])
NODE_FORBIDDEN = T.join(["2026-12-03T19:17:27.49Z", "127.0.0.1", "GET", "/v1/node", "null", "curl/7.88.1", "403",
                         "0", "45", "6", "HTTP/1.1", "0", "6"])
QUERY_LIST = T.join(["2026-12-03T19:17:27.432Z", "10.1.2.3", "GET", "/v1/query?state=RUNNING", "null",
                     "curl/7.88.1", "200", "0", "27726", "31", "HTTP/1.1", "0", "31"])
UI = T.join(["2026-12-03T19:20:00.000Z", "10.1.2.3", "GET", "/ui/", "null", "Mozilla/5.0\tevil", "303", "0", "0",
             "1", "HTTP/2.0", "0", "1"])
INFO = T.join(["2026-12-03T19:17:27.567Z", "127.0.0.1", "GET", "/v1/info", "null", "curl/7.88.1", "200", "0",
               "107", "7", "HTTP/1.1", "0", "7"])
AUDITED = [FAILED_LOGIN, QUERY_LIST_NO_PASSWORD, NODE_FORBIDDEN, QUERY_LIST, UI, INFO]

POLLING = "/v1/statement/executing/20261203_190046_00001_abcde/y1a2b3"
NOT_AUDITED = [
    T.join(["2026-12-03T19:00:45.956Z", "127.0.0.1", "POST", "/v1/statement", "null", "trino-cli", "200", "77",
            "1000", "40", "HTTP/2.0", "0", "40"]),
    T.join(["2026-12-03T19:00:46.1Z", "127.0.0.1", "GET", f"{POLLING}/1", "null", "Trino Python Client/0.340.0",
            "200", "0", "900", "12", "HTTP/1.1", "0", "12"]),
    T.join(["2026-12-03T19:00:46.2Z", "127.0.0.1", "DELETE", f"{POLLING}/2", "null", "trino-cli", "204", "0", "0", "1",
            "HTTP/2.0", "0", "1"]),
    T.join(["2026-12-03T19:00:46.3Z", "127.0.0.1", "POST", "/v1/task/20261203_190046_00001_abcde.0.0.0", "null",
            "null", "200", "900", "1200", "5", "HTTP/1.1", "0", "5"]),
    T.join(["2026-12-03T19:00:46.4Z", "127.0.0.1", "PUT", "/v1/announcement/govlake-coordinator-1", "null",
            "govlake-coordinator-1", "202", "300", "0", "2", "HTTP/1.1", "0", "2"]),
    T.join(["2026-12-03T19:00:46.5Z", "127.0.0.1", "GET", "/v1/memory", "null", "null", "200", "0", "300", "1",
            "HTTP/1.1", "0", "1"]),
    T.join(["2026-12-03T19:00:45.956Z", "127.0.0.1", "GET", "/v1/info/state", "null", "null", "200", "0", "8",
            "159", "HTTP/1.1", "13", "146"]),
    T.join(["2026-12-03T19:00:45.955Z", "127.0.0.1", "GET", "/v1/service/trino/general", "null",
            "govlake-coordinator-1", "200", "0", "39", "195", "HTTP/1.1", "8", "186"]),
    T.join(["2026-12-03T19:17:27.585Z", "127.0.0.1", "GET", "/v1/memory", "null", "null", "200", "0", "594",
            "5", "HTTP/1.1", "0", "5"]),
]
# a client (not the cluster) reading /v1/status sees other users' running query ids: audited
STATUS_BY_A_CLIENT = T.join(["2026-12-03T19:17:27.585Z", "127.0.0.1", "GET", "/v1/status", "null", "curl/7.88.1",
                             "200", "0", "594", "5", "HTTP/1.1", "0", "5"])


def test_a_client_reading_the_cluster_status_is_audited_whatever_agent_it_claims():
    row = request_row(STATUS_BY_A_CLIENT)
    assert row["http_uri"] == "/v1/status" and row["source"] == "curl/7.88.1" and not row["access_denied"]
    assert request_row(STATUS_BY_A_CLIENT.replace("curl/7.88.1", "null"))["http_uri"] == "/v1/status"


def test_a_failed_login_is_audited_with_its_status_address_and_time():
    row = request_row(FAILED_LOGIN + "\n")
    assert row == {
        "event_kind": "http_request", "query_id": "http-" + hashlib.sha256(FAILED_LOGIN.encode()).hexdigest(),
        "principal": None, "user": None, "department": None,
        "created_at": datetime(2026, 12, 3, 19, 13, 51, 124000), "ended_at": datetime(2026, 12, 3, 19, 13, 51, 140000),
        "access_denied": True, "source": "Trino Python Client/0.340.0", "http_method": "POST",
        "http_uri": "/v1/statement", "http_status": 401, "client_address": "127.0.0.1"}


@pytest.mark.parametrize("line", AUDITED)
def test_refused_calls_and_rest_calls_are_audited(line):
    row = request_row(line)
    assert row is not None and row["query_id"] == "http-" + hashlib.sha256(line.encode()).hexdigest()
    assert row["access_denied"] is (row["http_status"] in (401, 403))


@pytest.mark.parametrize("line", NOT_AUDITED)
def test_the_statement_protocol_and_internal_traffic_are_not(line):
    assert request_row(line) is None


def test_a_user_agent_with_a_tab_does_not_shift_the_fields():
    row = request_row(UI)
    assert row["source"] == "Mozilla/5.0\tevil" and row["http_status"] == 303 and row["http_uri"] == "/ui/"


@pytest.mark.parametrize("line", ["garbage", T.join(["x"] * 13), FAILED_LOGIN.replace("\t401\t", "\tfour\t")])
def test_a_line_that_is_not_a_request_log_line_raises(line):
    with pytest.raises(ValueError):
        request_row(line)


def test_the_current_and_rotated_logs_are_read_once_per_line(tmp_path, caplog):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"), trino_home=tmp_path / "trino")
    folder = request_log_dir(settings)
    folder.mkdir(parents=True)
    # Airlift rotates http-request.log into http-request-<day>.<n>.log(.gz)
    with gzip.open(folder / "http-request-2026-12-02.0.log.gz", "wt", encoding="utf-8") as rotated:
        rotated.write("\n".join([FAILED_LOGIN, *NOT_AUDITED[:3]]) + "\n")
    (folder / "http-request-2026-12-02.1.log").write_text(QUERY_LIST_NO_PASSWORD + "\n", encoding="utf-8")
    (folder / "http-request.log").write_text(
        "\n".join([FAILED_LOGIN, *NOT_AUDITED[3:], *AUDITED[1:], "garbage"]) + "\n" + INFO[:30], encoding="utf-8")
    (folder / "http-request.log.tmp").write_text(NODE_FORBIDDEN + "\n", encoding="utf-8")   # mid-compression

    log = read_request_log(settings)

    assert sorted(log.rows) == sorted("http-" + hashlib.sha256(line.encode()).hexdigest() for line in AUDITED)
    assert log.unparsed == 1 and "http-request.log line" in caplog.text
    # the cut-off last line (still being written) is not read yet
    assert log.lines == 4 + 1 + (1 + len(NOT_AUDITED[3:]) + len(AUDITED[1:]) + 1)
