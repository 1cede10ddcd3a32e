"""What the portal's pages read, through Trino as the logged-in user.

Every function takes a ``TrinoReader`` (one user's connection settings) and
runs plain SQL on the ``lake`` catalog; what the user may not see, Trino's
rules already withhold, mask or filter. A table the user has no rule for is
an access error, which the pages show as "not yours to see"."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from pipelines.serving.catalog import Catalog, Resource
from pipelines.settings import Settings

# issue ids are GI- and ten hex digits (``governance.issues._issue_id``); anything else is nobody's
SOURCE = "govlake-portal"        # every page's queries carry it into governance.query_audit
ISSUE_ID = re.compile(r"^GI-[0-9A-Za-z]{1,40}$")
SAMPLE_REF = re.compile(r"^(?P<file>[^:]+):(?P<row>[0-9]+)$")


class NotVisible(PermissionError):
    """Trino refused the user the table a page reads (no rule gives it)."""


class MissingTable(LookupError):
    """A table the page reads does not exist yet in the lake."""


@dataclass(frozen=True)
class TrinoReader:
    user: str
    password: str = field(repr=False)
    settings: Settings = field(repr=False)

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        """The statement's rows as dicts. Parameters are bound by Trino
        (``?``), never formatted into the text."""
        from trino.exceptions import TrinoUserError

        from pipelines.serving.trino import connect

        if not self.password:       # connect() would fall back to the generated password: never for a user
            raise PermissionError(f"no password for {self.user}")
        connection = connect(self.user, self.password, self.settings, max_attempts=1, source=SOURCE)
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params) if params else cursor.execute(sql)
                found = cursor.fetchall()
            except TrinoUserError as exc:
                if exc.error_name == "PERMISSION_DENIED":
                    raise NotVisible(exc.message) from None
                if exc.error_name in ("TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND"):
                    raise MissingTable(exc.message) from None
                raise
            names = [column[0] for column in cursor.description or []]
            return [dict(zip(names, row)) for row in found]
        finally:
            connection.close()


def check_login(user: str, password: str, settings: Settings) -> bool:
    """Whether Trino accepts ``user`` with ``password`` (a refused login is
    in Trino's request log, which the audit loads: ``pipelines.serving.audit``)."""
    from trino.exceptions import HttpError

    if not user or not password:
        return False
    try:
        TrinoReader(user, password, settings).rows("SELECT current_user")
    except HttpError as exc:
        if "401" in str(exc):
            return False
        raise
    return True


def _optional(reader: TrinoReader, sql: str, params: list | None = None) -> list[dict]:
    """Rows, or none when the table does not exist yet (no delivery wrote it)."""
    try:
        return reader.rows(sql, params)
    except MissingTable:
        return []


OPEN_ISSUES_SHOWN = 200


def open_issues(reader: TrinoReader, limit: int = OPEN_ISSUES_SHOWN) -> list[dict]:
    """Open governance issues the user may see, newest first, each with the
    latest answer recorded for it (``governance.issue_events``)."""
    issues = reader.rows(
        "SELECT issue_id, bureau, feed, rule, column_name, source, status, affected_rows, last_affected_rows, "
        "occurrences, first_seen_at, last_seen_at FROM lake.governance.issues WHERE status = 'open' "
        "ORDER BY last_seen_at DESC, issue_id LIMIT " + str(int(limit)))
    latest = latest_answers(_optional(
        reader, "SELECT issue_id, action, at FROM lake.governance.issue_events "
                "WHERE action IN ('acknowledged', 'disputed', 'fixed', 'reopened')"))
    return with_answers(issues, latest)


def with_answers(issues: list[dict], latest: dict[str, tuple]) -> list[dict]:
    """Each issue with its latest answer (``latest_answers``) and whether a
    delivery saw the issue again after it (a "fixed" the next delivery did
    not bear out). Pure."""
    shown = []
    for issue in issues:
        at, action = latest.get(issue["issue_id"], (None, None))
        again = at is not None and issue["last_seen_at"] is not None and at < issue["last_seen_at"]
        shown.append(dict(issue, answer=action, answer_at=at, seen_again=again))
    return shown


def new_since(issues: list[dict], since) -> set[str]:
    """The ids of ``issues`` first seen after ``since`` (the user's previous
    login; none without one). Times compared as UTC. Pure."""
    if since is None:
        return set()
    since = since.replace(tzinfo=None)
    return {i["issue_id"] for i in issues if i.get("first_seen_at") is not None
            and i["first_seen_at"].replace(tzinfo=None) > since}


def latest_answers(events: list[dict]) -> dict[str, tuple]:
    """Issue id -> (time, action) of its latest event among ``events``. Pure."""
    latest: dict[str, tuple] = {}
    for event in events:
        key = (event["at"], event["action"])
        if event["issue_id"] not in latest or key > latest[event["issue_id"]]:
            latest[event["issue_id"]] = key
    return latest


def quarantine_summary(reader: TrinoReader) -> list[dict]:
    """Per feed: quarantined rows, deliveries they came from, the latest."""
    return _optional(reader, "SELECT feed, count(*) AS quarantined_rows, count(DISTINCT _load_id) AS deliveries, "
                             "max(quarantined_at) AS last_quarantined_at FROM lake.governance.quarantine "
                             "GROUP BY feed ORDER BY feed")


def collection(reader: TrinoReader) -> list[dict]:
    """The collection list (归集清单): each feed's cadence, last delivery and timeliness."""
    return _optional(reader, "SELECT feed, bureau, title, cadence, last_delivery_at, last_rows, loads, status "
                             "FROM lake.governance.collection_list ORDER BY bureau, feed")


def issue(reader: TrinoReader, issue_id: str) -> dict | None:
    """One issue the user may see, or None (unknown, or another bureau's)."""
    if not ISSUE_ID.match(issue_id):
        return None
    found = reader.rows("SELECT * FROM lake.governance.issues WHERE issue_id = ?", [issue_id])
    return found[0] if found else None


def issue_history(reader: TrinoReader, issue_id: str) -> list[dict]:
    return _optional(reader, "SELECT at, action, status_after, reason, by_user, department, load_id "
                             "FROM lake.governance.issue_events WHERE issue_id = ? ORDER BY at, event_id",
                     [issue_id])


def sample_references(samples: list[str] | None) -> dict[str, list[int]]:
    """``<file>:<row>`` samples of an issue by file; others (a conflict's
    withheld keys) are left out. Pure."""
    by_file: dict[str, list[int]] = defaultdict(list)
    for sample in samples or []:
        found = SAMPLE_REF.match(sample or "")
        if found:
            by_file[found["file"]].append(int(found["row"]))
    return dict(by_file)


def offending_rows(reader: TrinoReader, feed: str, samples: list[str] | None) -> list[dict]:
    """The quarantined rows an issue's samples name, as the user may see them
    (its own bureau in full; a governor masked as the sharing list says)."""
    rows = []
    for source_file, numbers in sample_references(samples).items():
        marks = ", ".join("?" for _ in numbers)
        rows += _optional(reader, "SELECT _source_file, _row_number, column_name, rule, original_values "
                                  "FROM lake.governance.quarantine WHERE feed = ? AND _source_file = ? "
                                  f"AND _row_number IN ({marks}) ORDER BY _row_number",
                          [feed, source_file, *numbers])
    return rows


def preview(reader: TrinoReader, resource: Resource, columns: list[str], limit: int = 10) -> list[dict]:
    """Up to ``limit`` rows of a catalog resource's ``columns`` as Trino
    gives them to the user: masked, filtered to its town. The caller names
    the columns the sharing list does not deny it (Trino refuses a query
    that reads a denied column, so ``SELECT *`` would fail); Trino still
    decides. Current versions only where the table keeps history."""
    schema, _, table = resource.resource_id.partition(".")
    if not columns:
        return []
    current = " WHERE is_current" if resource.column("is_current") else ""
    return reader.rows(f'SELECT {", ".join(_quoted(n) for n in columns)} FROM lake.{_quoted(schema)}.'
                       f"{_quoted(table)}{current} LIMIT {int(limit)}")


def lineage(resource_id: str, settings: Settings) -> dict[str, list[str]]:
    """Where a resource's rows come from and where they go, from the feed
    contracts, the library specs and the published views: a feed's delivery
    -> ``silver.<feed>`` -> the base libraries built from it -> libraries
    and views built on those. Metadata only. Pure but for reading the specs."""
    from pipelines.library_specs import library_spec_paths, load_library_spec
    from pipelines.settings import PROJECT_ROOT

    specs = {path.stem: load_library_spec(path.stem, settings) for path in library_spec_paths(settings)}
    schema, _, table = resource_id.partition(".")
    upstream, downstream = [], []
    if schema == "silver":
        feeds = [f for spec in specs.values() for f in (s.feed for s in spec.sources.values())
                 if f.replace(".", "_") == table]
        feed = feeds[0] if feeds else table.replace("_", ".", 1)
        upstream.append(f"delivery {feed}")
        downstream += [f"base.{name}" for name, spec in specs.items()
                       if any(s.feed == feed for s in spec.sources.values())]
    elif schema == "base" and table in specs:
        spec = specs[table]
        upstream += sorted({f"silver.{s.feed.replace('.', '_')}" for s in spec.sources.values()})
        upstream += [f"base.{name}" for name in spec.depends_on]
        downstream += [f"base.{name}" for name, other in specs.items() if table in other.depends_on]
    views = PROJECT_ROOT / "sql" / "views"
    for path in sorted(views.glob("*/*.sql")):
        if re.search(rf"\b{re.escape(schema)}\.{re.escape(table)}\b", path.read_text(encoding="utf-8")):
            downstream.append(f"{path.parent.name}.{path.stem} (view)")
    return {"upstream": sorted(dict.fromkeys(upstream)), "downstream": sorted(dict.fromkeys(downstream))}


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def my_requests(reader: TrinoReader) -> list[dict]:
    """The demand list as Trino gives it to the user: its own department's
    requests, or every request for a governor."""
    return _optional(reader, "SELECT request_id, department, resource, columns, purpose, legal_basis, row_scope, "
                             "expires, requested_by, requested_at, status, consents, decided_by, decided_at, "
                             "decision_reason, grant_file FROM lake.governance.demand_list "
                             "ORDER BY requested_at DESC, request_id")


def grants_of(reader: TrinoReader, resource_id: str) -> list[dict]:
    """Grants on a resource the user may see in the sharing list (共享清单):
    its own department's, or every department's for a governor."""
    return _optional(reader, "SELECT department, columns, purpose, row_scope, expires, state "
                             "FROM lake.governance.sharing_list WHERE resource = ? ORDER BY department",
                     [resource_id])


def resource_health(reader: TrinoReader, resource_id: str) -> dict | None:
    """The resource's freshness and its feeds' quality pass rate
    (``governance.resource_health``, every department's to read), or None
    before the first publish computed it."""
    rows = _optional(reader, "SELECT feeds, last_changed_at, last_delivery_at, deliveries, blocked, checks, "
                             "checks_passed, pass_rate, window_days, computed_at "
                             "FROM lake.governance.resource_health WHERE resource_id = ?", [resource_id])
    return rows[0] if rows else None


def scorecard_history(reader: TrinoReader, first: date, before: date) -> list[dict]:
    """Daily scorecard rows from ``first`` up to ``before`` (its own feeds'
    for a bureau, every feed's for a governor)."""
    return _optional(reader, "SELECT day, bureau, feed, completeness, validity, uniqueness, timeliness, "
                             "blocked_loads, open_issues, score FROM lake.governance.scorecard_history "
                             "WHERE day >= ? AND day < ? ORDER BY day, bureau, feed", [first, before])


def scorecard_trend(reader: TrinoReader, days: int = 90) -> list[dict]:
    """Daily scorecard rows of the last ``days`` days with a snapshot (the
    user's own feeds for a bureau)."""
    return _optional(reader, "SELECT day, bureau, feed, score FROM lake.governance.scorecard_history "
                             "WHERE day > (SELECT max(day) FROM lake.governance.scorecard_history) - "
                             f"INTERVAL '{int(days)}' DAY ORDER BY day, bureau, feed")


def scorecard_months(reader: TrinoReader) -> list[str]:
    """The months (``YYYY-MM``) with a stored scorecard, newest first."""
    return [r["month"] for r in _optional(
        reader, "SELECT DISTINCT date_format(day, '%Y-%m') AS month FROM lake.governance.scorecard_history "
                "ORDER BY month DESC")]


# --------------------------------------------------------------------------- the catalog (metadata)

def search_catalog(catalog: Catalog, text: str = "", classification: str = "", share_type: str = "",
                   owner: str = "") -> list[Resource]:
    """Resources whose id, code, name, description or a column's name or
    description holds ``text`` (case-insensitive), with a column of that
    ``classification`` or ``share_type``, of that ``owner`` bureau. Pure."""
    needle = text.strip().lower()
    found = []
    for resource in sorted(catalog.resources.values(), key=lambda r: r.resource_id):
        if owner and resource.owner_bureau != owner:
            continue
        if classification and not any(c.classification == classification for c in resource.columns):
            continue
        if share_type and not any(c.share_type == share_type for c in resource.columns):
            continue
        words = [resource.resource_id, resource.code, resource.name, resource.description]
        words += [w for c in resource.columns for w in (c.name, getattr(c, "description", "") or "")]
        if needle and not any(needle in (w or "").lower() for w in words):
            continue
        found.append(resource)
    return found
