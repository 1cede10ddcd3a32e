"""The issue response flow (issue 18): the owning bureau answers its own open
issues, a governor closes and reopens, every transition lands in
``governance.issue_events`` (delta-rs, read back), and anything else is
refused naming why."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.contracts import get_contract
from pipelines.governance.issues import Finding, IssueActionRefused, issue_events, respond, update_issues
from pipelines.lake.delta import read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.serving.catalog import Department
from pipelines.settings import get_settings

PSB = Department("psb", "市公安局", "psb", None, ["psb_analyst"])
HRSS = Department("hrss", "市人力资源和社会保障局", "hrss", None, ["hrss_officer"])
GOVERNOR = Department("dsj", "市政务服务数据管理局", "dsj", None, ["governor_li"], role="governor")
BAD_IDS = Finding("id_number.check_character", "id_number", "quarantine", 3, ("a.csv:2",))


@pytest.fixture()
def opened(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    [issue_id] = update_issues(get_contract("psb.hukou"), "load-1", [BAD_IDS], close_others=True,
                               settings=settings)["opened"]
    return settings, issue_id


def _status(settings, issue_id):
    return read_delta_rows(governance_path("issues", settings), [("issue_id", "=", issue_id)])[0]["status"]


def test_a_bureau_answers_its_issue_a_governor_closes_and_reopens_and_every_step_is_recorded(opened):
    settings, issue_id = opened
    respond(issue_id, "acknowledged", "psb_analyst", PSB, settings=settings)
    respond(issue_id, "disputed", "psb_analyst", PSB, "the check characters are right in our register",
            settings=settings)
    respond(issue_id, "fixed", "psb_analyst", PSB, settings=settings)
    assert _status(settings, issue_id) == "open"          # a bureau's answer never closes it
    respond(issue_id, "closed", "governor_li", GOVERNOR, "confirmed with the register", settings=settings)
    assert _status(settings, issue_id) == "closed"
    respond(issue_id, "reopened", "governor_li", GOVERNOR, "the next delivery has them again", settings=settings)
    assert _status(settings, issue_id) == "open"

    events = issue_events(issue_id, settings)
    assert [(e["action"], e["by_user"], e["status_after"]) for e in events] == [
        ("opened", "govlake", "open"), ("acknowledged", "psb_analyst", "open"), ("disputed", "psb_analyst", "open"),
        ("fixed", "psb_analyst", "open"), ("closed", "governor_li", "closed"), ("reopened", "governor_li", "open")]
    assert events[2]["reason"] == "the check characters are right in our register"
    assert {e["bureau"] for e in events} == {"psb"} and {e["feed"] for e in events} == {"psb.hukou"}


def test_the_next_clean_delivery_closes_it_and_records_the_close(opened):
    settings, issue_id = opened
    respond(issue_id, "fixed", "psb_analyst", PSB, settings=settings)
    update_issues(get_contract("psb.hukou"), "load-2", [], close_others=True, settings=settings)
    assert _status(settings, issue_id) == "closed"
    last = issue_events(issue_id, settings)[-1]
    assert (last["action"], last["by_user"], last["load_id"]) == ("closed", "govlake", "load-2")


@pytest.mark.parametrize("action, who, department, reason, refusal", [
    ("acknowledged", "hrss_officer", HRSS, "", "only its own bureau answers it"),
    ("closed", "psb_analyst", PSB, "done", "only a governor may mark an issue closed"),
    ("disputed", "psb_analyst", PSB, "  ", "disputed needs a reason"),
    ("closed", "governor_li", GOVERNOR, "", "closed needs a reason"),
    ("reopened", "governor_li", GOVERNOR, "why not", "only a closed issue can be reopened"),
    ("deleted", "governor_li", GOVERNOR, "x", "unknown action 'deleted'"),
])
def test_actions_out_of_turn_are_refused_naming_why_and_change_nothing(opened, action, who, department, reason,
                                                                       refusal):
    settings, issue_id = opened
    with pytest.raises(IssueActionRefused, match=refusal):
        respond(issue_id, action, who, department, reason, settings=settings)
    assert _status(settings, issue_id) == "open"
    assert [e["action"] for e in issue_events(issue_id, settings)] == ["opened"]


def test_a_closed_issue_is_not_reopened_beside_a_newer_open_one_of_the_same_rule(opened):
    settings, issue_id = opened
    respond(issue_id, "closed", "governor_li", GOVERNOR, "fixed at the source", settings=settings)
    [newer] = update_issues(get_contract("psb.hukou"), "load-2", [BAD_IDS], close_others=True,
                            settings=settings)["opened"]
    with pytest.raises(IssueActionRefused, match=f"has an open issue for id_number.check_character already \\({newer}"):
        respond(issue_id, "reopened", "governor_li", GOVERNOR, "again", settings=settings)
    with pytest.raises(IssueActionRefused, match="only an open issue is answered"):
        respond(issue_id, "acknowledged", "psb_analyst", PSB, settings=settings)


@pytest.mark.parametrize("finding_again", [True, False])
def test_a_delivery_does_not_undo_a_governor_close_that_came_while_it_ran(opened, monkeypatch, finding_again):
    """The governor closes the issue after the delivery read it as open and
    before it wrote (a real close, at the race point): the issue stays closed,
    and no event claims the delivery updated or closed it; a rule the
    delivery failed again gets a new open issue, so the failure is followed."""
    import pipelines.governance.issues as issues

    settings, issue_id = opened
    read = issues.read_delta_rows

    def read_then_governor_closes(path, filters=None):
        rows = read(path, filters)
        if ("status", "=", "open") in (filters or []):
            monkeypatch.setattr(issues, "read_delta_rows", read)
            respond(issue_id, "closed", "governor_li", GOVERNOR, "a register error, not the delivery's",
                    settings=settings)
        return rows

    monkeypatch.setattr(issues, "read_delta_rows", read_then_governor_closes)
    summary = update_issues(get_contract("psb.hukou"), "load-2", [BAD_IDS] if finding_again else [],
                            close_others=True, settings=settings)
    stored = read_delta_rows(governance_path("issues", settings), [("issue_id", "=", issue_id)])[0]
    assert (stored["status"], stored["closed_by"], stored["last_load_id"]) == ("closed", "governor_li", "load-1")
    assert summary["updated"] == summary["closed"] == []
    assert [e["action"] for e in issue_events(issue_id, settings)] == ["opened", "closed"]
    open_now = read_delta_rows(governance_path("issues", settings), [("status", "=", "open")])
    if finding_again:
        [followed] = open_now
        assert summary["opened"] == [followed["issue_id"]] != [issue_id]
        assert (followed["rule"], followed["first_load_id"], followed["occurrences"]) == (
            BAD_IDS.rule, "load-2", 1)
        assert [e["action"] for e in issue_events(followed["issue_id"], settings)] == ["opened"]
    else:
        assert open_now == [] and summary["opened"] == []


def test_a_close_reason_with_quotes_is_stored_as_written(opened):
    settings, issue_id = opened
    from pipelines.settings import utc_now

    reason = "the register's error, not the delivery's; ' OR 1=1 --"
    respond(issue_id, "closed", "governor_li", GOVERNOR, reason, settings=settings)
    stored = read_delta_rows(governance_path("issues", settings), [("issue_id", "=", issue_id)])[0]
    assert (stored["status"], stored["closed_reason"], stored["closed_by"]) == ("closed", reason, "governor_li")
    assert abs((stored["closed_at"] - utc_now()).total_seconds()) < 60      # stored as UTC, not shifted
