"""Verification instead of documents (核验, 减材料): a department asks a yes/no
question about a person or an entity, with its purpose, and learns the
answer, not the record. Every question is logged, answered or refused, in
``governance.verification_log`` (who, which department, which check, about
whom, why, the answer and the Delta versions it was answered from).

The checks (``CHECKS``):

- ``person-alive-in-town``: is person X alive and living in town Z? Yes when
  base.population's current record of X says ``is_deceased`` false and its
  ``town_code`` is Z. An unknown person, one whose death is recorded, one
  about whom nothing is known (``is_deceased`` null) or one elsewhere: no.
- ``holds-valid-licence``: does holder X (a USCC) hold a valid licence of
  type T? Yes when base.e_licence has a current licence of that type held by
  X, a holder base.legal_person knows, with status ``valid`` and not expired
  today (a licence that lapsed since the last build is not valid).
- ``entity-good-standing``: is entity E in good standing? Yes when
  base.legal_person's current record of E is registered and in operation,
  base.credit_record holds no open abnormal-operation listing and no
  unperformed dishonest-debtor case of E (the credit rule set's definitions,
  ``schemas/rules/credit_rating.yaml``), and its business licence in
  base.e_licence is valid.

A question without a purpose, from a department the catalog does not know,
for a check that does not exist, or from a town government about another
town (a yes/no oracle must not locate people across the city) is refused,
and the refusal is logged. Each question reads only the subject's rows (the
key pushed into the scan; the base libraries are clustered by key).
The Trino-callable form is the ``verify`` catalog's table functions, one per
check (``pipelines/serving/verifier.py``): they call ``verify`` too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from zoneinfo import ZoneInfo

from pipelines import reference as ref
from pipelines.lake.delta import append_rows, read_arrow_at, read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import VERIFICATION_LOG_DDL
from pipelines.settings import Settings, utc_now

log = logging.getLogger(__name__)

CITY_TIME = ZoneInfo("Asia/Shanghai")
MIN_PURPOSE_CHARS = 4       # "核验" alone says nothing; the purpose names the matter (e.g. 办理营业执照变更)
MAX_PURPOSE_CHARS = 200     # a matter, not a document: every log row carries it
TOWN_PROBE_DAYS = 30        # one department asking about one person in two towns within this is refused
OPERATING = ("存续", "在业", "正常")
LICENCE_COLUMNS = ["licence_type", "status", "expires_on", "holder_found"]


class VerificationRefused(ValueError):
    """A question that is not answered; the message says why (and it is logged)."""


@dataclass(frozen=True)
class Check:
    name: str
    question: str              # what the answer means, in the department's words
    subject: str               # id_number or uscc
    needs: tuple[str, ...]     # the parameters the check takes besides the subject


CHECKS = {
    "person-alive-in-town": Check("person-alive-in-town", "该人员是否在世且居住在指定镇街", "id_number", ("town",)),
    "holds-valid-licence": Check("holds-valid-licence", "该主体是否持有指定类型的有效证照", "uscc",
                                 ("licence_type",)),
    "entity-good-standing": Check("entity-good-standing", "该主体是否存续、未列入经营异常名录、"
                                  "无未履行的失信被执行记录且营业执照有效", "uscc", ()),
}


def alive_in_town(person: dict | None, town_code: str) -> bool:
    """``person-alive-in-town`` on the current population record (or None)."""
    return person is not None and person.get("is_deceased") is False and person.get("town_code") == town_code


def holds_valid_licence(licences: list[dict], licence_type: str, today: date) -> bool:
    """``holds-valid-licence`` on the holder's current e-licence records: one
    of that type, valid when built, of a known holder, not expired ``today``."""
    return any(row["licence_type"] == licence_type and row["status"] == "valid" and row.get("holder_found") is not False
               and (row.get("expires_on") is None or row["expires_on"] >= today) for row in licences)


def in_good_standing(entity: dict | None, records: list[dict], licences: list[dict], today: date) -> bool:
    """``entity-good-standing`` on the entity's current legal-person record,
    its current credit records and its current e-licences."""
    if entity is None or entity.get("registration_status") not in OPERATING:
        return False
    for record in records:
        if record["record_type"] == "abnormal_operation" and record["ended_on"] is None:
            return False
        if record["record_type"] == "dishonest_debtor" and (record["status"] or "") != "全部履行":
            return False
    if entity.get("registration_status_source") == "mca.social_org":
        return True                       # a social organisation holds no business licence
    return holds_valid_licence(licences, "business_licence", today)


def _asked_before(settings: Settings, department: str) -> list[dict]:
    """The questions ``department`` asked before (answered or refused), from the log."""
    return read_delta_rows(governance_path("verification_log", settings), [("department", "=", department)])


def _towns_asked(earlier: list[dict], subject: str, asked_at) -> set[str]:
    """The towns a department asked ``person-alive-in-town`` about ``subject``
    within ``TOWN_PROBE_DAYS`` before ``asked_at`` and got an answer to."""
    since = asked_at - timedelta(days=TOWN_PROBE_DAYS)
    towns = set()
    for row in earlier:
        if (row["check_name"] == "person-alive-in-town" and row["subject"] == subject and row["answer"] is not None
                and row["asked_at"] >= since):
            town = json.loads(row["params"] or "{}").get("town")
            towns.add(ref.TOWN_CODE_BY_NAME.get(town, town))
    return towns


def _current(settings: Settings, library: str, columns: list[str], key: str, value: str, versions: dict,
             row: dict) -> list[dict]:
    """The current rows of base.<library> whose ``key`` is ``value`` (the key
    pushed into the scan); the version read goes into ``versions``. A library
    not built is a refusal, logged with ``row``."""
    table, version = read_arrow_at(settings.lake_path("base", library), [*columns, key, "is_current"],
                                   equal_to=(key, value))
    versions[f"base.{library}"] = version
    if table is None:
        _refuse(f"base.{library} is not built in this lake: nothing can be verified yet", row, settings)
    return [r for r in table.to_pylist() if r["is_current"]]


def _refuse(reason: str, row: dict, settings: Settings) -> None:
    append_rows(governance_path("verification_log", settings), [dict(row, answer=None, refused_reason=reason)],
                VERIFICATION_LOG_DDL)
    log.warning("verification refused (%s, %s): %s", row.get("department"), row.get("check_name"), reason)
    raise VerificationRefused(reason)


def verify(check: str, subject: str, params: dict[str, str], department: str | None, purpose: str | None,
           asked_by: str, departments: Mapping[str, str | None], settings: Settings) -> dict:
    """Answer ``check`` about ``subject`` for ``department`` (a code of
    ``departments``: the catalog's departments and the town each governs, or
    None), and log it. ``{"check", "question", "answer": "yes"|"no",
    "asked_at"}``: never a value of the record. ``VerificationRefused``
    (logged) for a question without a purpose, from an unknown department,
    for an unknown check, about a subject that is no ID number or USCC,
    without the parameters it needs, or from a town government about
    another town."""
    asked_at = utc_now()
    today = asked_at.replace(tzinfo=UTC).astimezone(CITY_TIME).date()       # the city's date
    row = {"asked_at": asked_at, "department": department, "asked_by": asked_by, "check_name": check,
           "subject": subject, "params": json.dumps(params, ensure_ascii=False, sort_keys=True),
           "purpose": purpose, "library_versions": None}
    if check not in CHECKS:
        _refuse(f"no check {check!r}: the checks are {', '.join(CHECKS)}", row, settings)
    if not department:
        _refuse(f"{asked_by!r} belongs to no department of the catalog (catalog/departments.yaml)", row, settings)
    if department not in departments:
        _refuse(f"department {department!r} is not in the catalog (catalog/departments.yaml)", row, settings)
    if not purpose or len(purpose.strip()) < MIN_PURPOSE_CHARS:
        _refuse(f"a verification needs its purpose (the matter it is for, {MIN_PURPOSE_CHARS} characters or more)",
                row, settings)
    if len(purpose) > MAX_PURPOSE_CHARS:
        row["purpose"] = purpose[:MAX_PURPOSE_CHARS]
        _refuse(f"a purpose names the matter in at most {MAX_PURPOSE_CHARS} characters", row, settings)
    spec = CHECKS[check]
    subject = row["subject"] = subject.strip().upper()
    if spec.subject == "id_number":
        valid = re.fullmatch(ref.ID_SHAPE, subject) and ref.id_check_char(subject[:17]) == subject[17]
    else:
        valid = re.fullmatch(ref.USCC_SHAPE, subject) and ref.uscc_check_char(subject[:17]) == subject[17]
    if not valid:
        _refuse(f"{check} is about a {'resident ID number' if spec.subject == 'id_number' else 'USCC'}: "
                f"{subject!r} is not one (18 characters, its check character right)", row, settings)
    asked: list[dict] = []

    def earlier() -> list[dict]:          # read once, when a rule needs it
        if not asked:
            asked.append(_asked_before(settings, department))
        return asked[0]

    query_id = params.get("trino_query_id")
    if query_id and any(json.loads(r["params"] or "{}").get("trino_query_id") == query_id for r in earlier()):
        _refuse(f"one question per query: Trino query {query_id} already asked one (ask each in a query of its own)",
                row, settings)
    missing = [name for name in spec.needs if not params.get(name)]
    if missing:
        named = [f"{name} (--{name.replace('_', '-')}; in Trino {name} =>)" for name in missing]
        _refuse(f"{check} needs {', '.join(named)}", row, settings)
    versions: dict[str, int | None] = {}
    if check == "person-alive-in-town":
        town = params["town"]
        code = ref.TOWN_CODE_BY_NAME.get(town, town)
        if code not in ref.TOWNS:
            _refuse(f"unknown town {town!r} (a town name or its 9-digit code)", row, settings)
        governs = departments[department]
        if governs and governs != code:
            _refuse(f"department {department} governs town {governs}: it may ask about its own town only",
                    row, settings)
        elsewhere = _towns_asked(earlier(), subject, asked_at) - {code}
        if elsewhere:
            _refuse(f"department {department} asked about this person in another town "
                    f"({', '.join(sorted(elsewhere))}) within {TOWN_PROBE_DAYS} days: a yes/no oracle must not "
                    "locate people across the city", row, settings)
        people = _current(settings, "population", ["is_deceased", "town_code"], "person_id", subject, versions, row)
        answer = alive_in_town(people[0] if people else None, code)
    elif check == "holds-valid-licence":
        if params["licence_type"] not in ref.LICENCE_TYPES:
            _refuse(f"unknown licence type {params['licence_type']!r} ({', '.join(ref.LICENCE_TYPES)})", row, settings)
        licences = _current(settings, "e_licence", LICENCE_COLUMNS, "holder_id", subject, versions, row)
        answer = holds_valid_licence(licences, params["licence_type"], today)
    else:
        entities = _current(settings, "legal_person", ["registration_status", "registration_status_source"], "uscc",
                            subject, versions, row)
        records = _current(settings, "credit_record", ["record_type", "status", "ended_on"], "subject_id", subject,
                           versions, row)
        licences = _current(settings, "e_licence", LICENCE_COLUMNS, "holder_id", subject, versions, row)
        answer = in_good_standing(entities[0] if entities else None, records, licences, today)
    row |= {"answer": "yes" if answer else "no", "refused_reason": None,
            "library_versions": json.dumps(versions, sort_keys=True)}
    append_rows(governance_path("verification_log", settings), [row], VERIFICATION_LOG_DDL)
    log.info("verification %s for %s (%s): %s", check, department, purpose, row["answer"])
    return {"check": check, "question": spec.question, "answer": row["answer"], "asked_at": asked_at}
