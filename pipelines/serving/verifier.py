"""The Trino-callable form of verification (核验): the service behind the
``verify`` catalog's table functions.

Trino's plugin (``trino-plugins/govlake-verify``) posts each question to the
audit receiver's ``/verify`` path on 127.0.0.1, with the receiver's token: the
Trino user who asked, the check, the subject, the check's parameters, the
purpose and the query id. ``answer_form`` maps the user to their department
(catalog/departments.yaml) and answers with ``verification.verify``, the code
behind ``govlake verify``: the same checks, the same refusals, the same log
(``governance.verification_log``, the query id in ``params`` as
``trino_query_id``, so the question can be found in the query audit too).

The reply is ``200`` with three lines (``yes``/``no``, the question, when it
was asked) or ``403`` with the reason it was refused; the plugin turns a
refusal into a failed query naming the reason. The department never names
itself: Trino authenticated the user, and the token proves the plugin sent it.
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs

from pipelines.applications.verification import CHECKS, VerificationRefused, verify
from pipelines.serving.catalog import load_departments
from pipelines.settings import Settings

FIELDS = ("user", "check", "subject", "purpose", "query_id", "town", "licence_type")
BUSY_SECONDS = 45
_one_at_a_time = threading.Lock()     # one writer of the verification log per process: no commit retries among threads


def parse_form(body: bytes) -> dict[str, str]:
    """The plugin's form fields (UTF-8, each at most once); ``ValueError`` otherwise."""
    fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), errors="strict")
    if any(len(values) > 1 for values in fields.values()):
        raise ValueError("a field given twice")
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    return {name: values[0] for name, values in fields.items()}


def answer_form(form: dict[str, str], settings: Settings) -> tuple[int, str]:
    """``(status, text)`` for one question from the plugin: 200 and
    ``answer\\nquestion\\nasked_at``, or 403 and the refusal's reason (logged
    by ``verify``)."""
    user = form.get("user") or ""
    check = form.get("check") or ""
    departments = load_departments(settings)
    member_of = [code for code, d in departments.items() if user in d.users]
    # a user in two departments (a catalog mistake) could ask as the one without a town limit: no answer
    department = member_of[0] if len(member_of) == 1 else None
    params = {name: form[name] for name in (CHECKS[check].needs if check in CHECKS else ()) if form.get(name)}
    if form.get("query_id"):
        params["trino_query_id"] = form["query_id"]
    # Trino's plugin waits 60 s: a question still queued after BUSY_SECONDS is not answered (nor logged),
    # so no answer is logged that nobody received
    if not _one_at_a_time.acquire(timeout=BUSY_SECONDS):
        return 503, f"the verification service is busy (waited {BUSY_SECONDS} s): ask again"
    try:
        answer = verify(check, form.get("subject") or "", params, department, form.get("purpose"), user,
                        {code: d.town_code for code, d in departments.items()}, settings)
    except VerificationRefused as exc:
        return 403, str(exc)
    finally:
        _one_at_a_time.release()
    return 200, "\n".join((answer["answer"], answer["question"], answer["asked_at"].isoformat()))
