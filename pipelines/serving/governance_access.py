"""The governance schema under the sharing list (issue 13, item 4).

Governance tables copy values out of the bureaus' feeds: quarantined rows
(``original_values``, ``failures[].value``), matched and reviewed records
(``entity_links.key``, ``match_review.record`` / ``candidate_keys``), the
values in conflict (``conflicts``), unmatched address texts, and the query
text of the audit log. ``governance_rules`` gives every department user the
Trino table rules that keep those values as the sharing list would:

- **Owners.** A bureau reads its own rows in full: the rows of the feeds it
  owns (``split_part(feed, '.', 1)``, which the contracts tie to the owner
  bureau; rows of no bureau's feed, such as ``base.*``, belong to nobody) in
  quarantine, quality_results, quality_approvals, issues, issue_events, load_manifest,
  entity_links, match_review, address_match_rates, unmatched_addresses,
  scorecard_history and collection_list; in ``conflicts`` the rows where one of the two feeds is
  its own, with the other bureau's value masked as the sharing list gives it
  to a department without a grant. Every department reads its own rows of
  demand_list, sharing_list and query_audit (``department`` column), and
  every row of resource_health (counts and times per resource, no values).
- **Governors** (``role: governor``) read every row of every governance
  table, but a value that came from a feed they do not own is shown the way
  the sharing list shows it to a department with no grant
  (``access.decide`` with no grants): unconditional general values as they
  are, sensitive ones masked, conditional and not-shared ones withheld. The
  governor 市政务服务数据管理局 curates the base libraries, but governance rows
  of a library carry values of the bureaus' feeds: they are its own only
  where the source feed is its own (none today), like ``decide`` treats a
  library column with another ``owner_bureau``.
- **Everyone else** gets no rule for a table where they own no rows: the
  catch-all denies it. Governance views (``sql/views/governance``, security
  invoker) get a rule for whoever has a rule on every governance table they
  read.

How a value is masked where it is not the reader's:

- a scalar identifier column (``entity_links.key``, ``conflicts.subject``)
  not shown in full becomes the reader's pseudonym (``pseudonym_expression``:
  joinable across governance tables, never reversible), whatever its share
  type, since without it the tables cannot be read at all;
- inside maps and arrays (a scalar subquery cannot go into a lambda) an
  ID-like value becomes its first 6 characters and 12 asterisks, a phone its
  first 3 and last 4 digits, any other withheld or masked value ``'******'``.
  A withheld map value is replaced, not removed: the keys (headers) say which
  columns a delivery had, which a governor needs to judge a quarantine, and a
  fixed value shows neither the value nor whether there was one;
- map keys and failure columns that match no contract column (extra headers,
  ``_row`` holding a malformed line) are withheld;
- values shown to a non-owner because they are unconditional and general are
  still scrubbed of ID-like digit runs (15 or more digits) and mobile
  numbers: a quarantined row is by definition one whose values may sit in
  the wrong column;
- ``sample_rows`` of issues and quality results are ``<file>:<row>``
  references (kept, scrubbed) or library keys of a conflict issue (withheld,
  ``'******'``: read them as pseudonyms in ``conflicts``);
- another department's SQL text and error messages (``query_audit.query``,
  ``error_message``) are withheld: they can quote any value looked up (a name,
  an ID split across literals), and ``tables_read``/``columns_read`` say what
  was read; other free text that can quote values (load messages, issue
  details, approval reasons, observed values, URIs) is scrubbed of ID-like and
  mobile numbers with ``regexp_replace``, except in the reader's own rows.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import cached_property
from pathlib import Path

from pipelines.serving.access import PHONE_MASK, STATE_ORDER, decide, pseudonym_expression
from pipelines.serving.catalog import Catalog, Department, Resource
from pipelines.serving.trino import ADMIN_USER, CATALOG
from pipelines.settings import PROJECT_ROOT

SCHEMA = "governance"
WITHHELD = "'******'"
ID_TYPES = ("id_number", "id_or_uscc")
KEY_SOURCE = "id_number"      # conflicts.authoritative_feed of a value derived from the subject's ID number
AUTHORITY, OTHER = '"authoritative_feed"', '"other_feed"'

# Tables whose rows belong to the bureau owning the row's feed.
FEED_OWNED_TABLES = ("load_manifest", "quarantine", "quality_results", "quality_approvals", "issues", "issue_events",
                     "collection_list", "entity_links", "match_review", "address_match_rates",
                     "unmatched_addresses", "scorecard_history")
# Tables whose rows belong to the department named in them.
DEPARTMENT_TABLES = ("demand_list", "sharing_list", "query_audit")
# Tables of counts and times about the catalog's resources, no value of any
# delivery in them: every department reads every row, like the catalog itself.
PUBLIC_TABLES = ("resource_health",)

_DIGIT = "[0-9０-９]"
# an 18- or 15-character ID number (or any longer digit run): its first 6 digits kept
_ID_RUN = f"({_DIGIT}{{6}}){_DIGIT}{{9,}}[0-9０-９Xx]?"
# a mainland mobile number: first 3 and last 4 digits kept
_MOBILE = f"([1１][3-9３-９]{_DIGIT}){_DIGIT}{{4}}({_DIGIT}{{4}})"
_FILE_ROW = "^[^:]+:[0-9]+$"


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scrub(value_sql: str) -> str:
    """``value_sql`` (varchar) with ID-like digit runs and mobile numbers masked."""
    return (f"regexp_replace(regexp_replace({value_sql}, '{_ID_RUN}', '$1************'), "
            f"'{_MOBILE}', '$1****$2')")


def id_mask(value_sql: str) -> str:
    """A fixed mask of an ID number that keeps no character beyond the sixth."""
    return f"concat(substr({value_sql}, 1, 6), '************')"


def phone_mask(value_sql: str) -> str:
    return PHONE_MASK.format(value=value_sql)


def header_key(text: str) -> str:
    """A delivered header's matching form, as ``pipelines.ingest.readers`` matches it."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lstrip("\ufeff")


def _header_key_sql(value_sql: str) -> str:
    return f"replace(regexp_replace(normalize({value_sql}, NFKC), '\\s', ''), U&'\\FEFF', '')"


def _case(subject: str, branches: list[tuple[str, str]], default: str) -> str:
    if not branches:
        return default
    whens = " ".join(f"WHEN {_literal(value)} THEN {result}" for value, result in branches)
    return f"CASE {subject} {whens} ELSE {default} END"


def _strictest(*states: str) -> str:
    return max(states, key=STATE_ORDER.index)


class _Reader:
    """One department user and what the sharing list (no grants) shows them."""

    def __init__(self, catalog: Catalog, department: Department, user: str):
        self.catalog = catalog
        self.department = department
        self.user = user
        self._states: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------ the catalog

    @cached_property
    def contracts(self) -> dict:
        """Contracts of the feeds the catalog publishes (their headers and synonyms)."""
        from pipelines.contracts import load_contracts

        return {feed: c for feed, c in load_contracts().items() if f"silver.{c.slug}" in self.catalog.resources}

    @cached_property
    def libraries(self) -> dict:
        """Library specs of the catalog's base libraries, by library name."""
        from pipelines.library_specs import LibrarySpecError, load_library_spec

        found = {}
        for resource_id in self.catalog.resources:
            schema, _, library = resource_id.partition(".")
            if schema != "base":
                continue
            try:
                found[library] = load_library_spec(library)
            except (LibrarySpecError, OSError):
                continue
        return found

    @property
    def bureau(self) -> str | None:
        return self.department.bureau

    @cached_property
    def owns_feeds(self) -> bool:
        return bool(self.bureau) and any(c.bureau == self.bureau for c in self.contracts.values())

    def owns(self, feed_sql: str) -> str:
        """SQL: is the row of the feed in ``feed_sql`` the reader's own?"""
        if not self.bureau:
            return "false"
        return f"coalesce(split_part({feed_sql}, '.', 1) = {_literal(self.bureau)}, false)"

    def states(self, resource: Resource) -> dict[str, str]:
        """Column -> full | masked | denied for this reader without any grant."""
        if resource.resource_id not in self._states:
            # no grants, so no date matters: what a department without a grant sees
            decision = decide(self.user, resource, self.catalog.departments, [], date.min)
            self._states[resource.resource_id] = {n: d.state for n, d in decision.columns.items()}
        return self._states[resource.resource_id]

    def feed_column(self, feed: str, column: str) -> tuple[str, object | None]:
        """(state, catalog column) of a feed's contract column; denied if unknown."""
        resource = self.catalog.resources.get(f"silver.{feed.replace('.', '_')}")
        found = resource.column(column) if resource else None
        if found is None:
            return "denied", None
        return self.states(resource).get(column, "denied"), found

    def library_column(self, library: str, column: str) -> tuple[str, object | None]:
        resource = self.catalog.resources.get(f"base.{library}")
        found = resource.column(column) if resource and column else None
        if found is None:
            return "denied", None
        return self.states(resource).get(column, "denied"), found

    # ------------------------------------------------------------ value masks

    @staticmethod
    def kind(state: str, column) -> str:
        """How a value is shown: full | id | phone | withheld (what a lambda can compute)."""
        if state == "full":
            return "full"
        if state == "masked" and getattr(column, "type", None) in ID_TYPES:
            return "id"
        if state == "masked" and getattr(column, "type", None) == "phone":
            return "phone"
        return "withheld"

    def feed_kind(self, feed: str, column: str) -> str:
        return self.kind(*self.feed_column(feed, column))

    @staticmethod
    def shown(kind: str, value_sql: str, scrubbed: bool = True) -> str:
        if kind == "full":
            return scrub(value_sql) if scrubbed else value_sql
        if kind == "id":
            return id_mask(value_sql)
        if kind == "phone":
            return phone_mask(value_sql)
        return WITHHELD

    def by_kind(self, key_sql: str, value_sql: str, kinds: dict[str, str], scrubbed: bool = True) -> str:
        """``value_sql`` shown as ``kinds[<value of key_sql>]`` says; withheld for any other key."""
        whens = []
        for kind in ("full", "id", "phone"):
            keys = sorted(k for k, v in kinds.items() if v == kind)
            if keys:
                listed = ", ".join(_literal(k) for k in keys)
                whens.append(f"WHEN {key_sql} IN ({listed}) THEN {self.shown(kind, value_sql, scrubbed)}")
        if not whens:
            return WITHHELD
        return f"CASE {' '.join(whens)} ELSE {WITHHELD} END"

    def key_value(self, library: str, value_sql: str) -> tuple[str, bool]:
        """A library key outside a lambda: in full if the reader may see it,
        else the reader's pseudonym. Returns (sql, needs the pseudonym key)."""
        spec = self.libraries.get(library)
        state, _ = self.library_column(library, spec.key if spec else "")
        if state == "full":
            return value_sql, False
        return pseudonym_expression(value_sql, self.department.code), True

    def key_in_lambda(self, library: str, value_sql: str) -> str:
        spec = self.libraries.get(library)
        state, column = self.library_column(library, spec.key if spec else "")
        if state == "full":
            return value_sql
        if column is None or getattr(column, "type", None) in ID_TYPES:
            return id_mask(value_sql)
        return WITHHELD

    def pseudonymised_key(self, library_sql: str, value_sql: str) -> tuple[str, bool]:
        """``value_sql`` (a library key) per library: shown where the reader may
        see the key, else (one expression for every other library, and for an
        unknown one) the reader's pseudonym."""
        shown = sorted(lib for lib in self.libraries if not self.key_value(lib, value_sql)[1])
        pseudonym = pseudonym_expression(value_sql, self.department.code)
        if not shown:
            return pseudonym, True
        listed = ", ".join(_literal(lib) for lib in shown)
        return f"CASE WHEN {library_sql} IN ({listed}) THEN {value_sql} ELSE {pseudonym} END", True

    # ------------------------------------------------------------ per table

    def rule(self, table: str, columns: list[dict] | None = None, row_filter: str | None = None) -> dict:
        rule = {"user": f"^{re.escape(self.user)}$", "catalog": CATALOG, "schema": f"^{SCHEMA}$",
                "table": f"^{table}$", "privileges": ["SELECT"], "columns": columns or []}
        if row_filter:
            rule["filter"] = row_filter
        return rule

    @staticmethod
    def mask(name: str, sql: str, needs_key: bool = False) -> dict:
        entry = {"name": name, "mask": sql}
        if needs_key:
            entry["mask_environment"] = {"user": ADMIN_USER}
        return entry

    def unless_own(self, feed_sql: str, masked_sql: str, value_sql: str) -> str:
        if not self.bureau:
            return masked_sql
        return f"CASE WHEN {self.owns(feed_sql)} THEN {value_sql} ELSE {masked_sql} END"

    def text_masks(self, names: list[str], feed_column: str = '"feed"') -> list[dict]:
        """Free text scrubbed of ID-like and mobile numbers, except in own rows."""
        return [self.mask(n, self.unless_own(feed_column, scrub(_quoted(n)), _quoted(n))) for n in names]

    def feed_map_mask(self, map_sql: str) -> str:
        """original_values: each delivered header's value as its contract column allows."""
        branches = []
        for feed, contract in sorted(self.contracts.items()):
            if contract.bureau == self.bureau:
                branches.append((feed, map_sql))
                continue
            kinds = {header_key(h): self.feed_kind(feed, c.name) for c in contract.columns for h in c.headers}
            inner = self.by_kind(_header_key_sql("gk"), "gv", kinds)
            branches.append((feed, f"transform_values({map_sql}, (gk, gv) -> {inner})"))
        return _case('"feed"', branches, f"transform_values({map_sql}, (gk, gv) -> {WITHHELD})")

    def failures_mask(self, array_sql: str) -> str:
        """quarantine.failures: each failure's delivered value as its column allows."""
        def row(value: str) -> str:
            return (f"IF(gf IS NULL, NULL, CAST(ROW(gf.column_name, gf.header, gf.rule, {value}) AS "
                    f"ROW(column_name varchar, header varchar, rule varchar, value varchar)))")

        branches = []
        for feed, contract in sorted(self.contracts.items()):
            if contract.bureau == self.bureau:
                branches.append((feed, array_sql))
                continue
            kinds = {c.name: self.feed_kind(feed, c.name) for c in contract.columns}
            branches.append((feed, f"transform({array_sql}, gf -> {row(self.by_kind('gf.column_name', 'gf.value', kinds))})"))
        return _case('"feed"', branches, f"transform({array_sql}, gf -> {row(WITHHELD)})")

    def samples_mask(self) -> str:
        """sample_rows: ``file:row`` references kept (scrubbed), anything else withheld."""
        masked = (f"transform(\"sample_rows\", gs -> CASE WHEN regexp_like(gs, '{_FILE_ROW}') "
                  f"THEN {scrub('gs')} ELSE {WITHHELD} END)")
        return self.unless_own('"feed"', masked, '"sample_rows"')

    def record_mask(self) -> str:
        """match_review.record: name_key, birth, town_code, rep_key, delivered_key
        as the source columns they come from allow (``resolution._fields``)."""
        branches = []
        for library, spec in sorted(self.libraries.items()):
            if not spec.resolution:
                continue
            for feed, mapping in sorted(spec.resolution.candidates.items()):
                key = mapping.get("key")
                fields = {
                    "name_key": [mapping.get("name")],
                    # the delivered birth date, else the one in the delivered ID number
                    "birth": [mapping.get("birth"), key] if spec.resolution.profile == "person" else [],
                    "town_code": [mapping.get("town")],
                    "rep_key": [mapping.get("representative")],
                    "delivered_key": [key],
                }
                kinds = {}
                for field, sources in fields.items():
                    found = [self.feed_column(feed, s) for s in sources if s]
                    if not found:
                        continue        # always null: no source column
                    state = _strictest(*(f[0] for f in found))
                    kinds[field] = self.kind(state, found[0][1] if field == "delivered_key" else None) \
                        if state != "full" else "full"
                inner = self.by_kind("gk", "gv", kinds)
                branches.append((f"{library}|{feed}", f'transform_values("record", (gk, gv) -> {inner})'))
        masked = _case("concat(\"library\", '|', \"feed\")", branches,
                       f"transform_values(\"record\", (gk, gv) -> {WITHHELD})")
        return self.unless_own('"feed"', masked, '"record"')

    def candidates_mask(self) -> str:
        branches = [(library, f"transform(\"candidate_keys\", gs -> {self.key_in_lambda(library, 'gs')})")
                    for library in sorted(self.libraries)]
        masked = _case('"library"', branches, f"transform(\"candidate_keys\", gs -> {id_mask('gs')})")
        return self.unless_own('"feed"', masked, '"candidate_keys"')

    def address_mask(self) -> str:
        branches = []
        for feed, contract in sorted(self.contracts.items()):
            kinds = {c.name: self.feed_kind(feed, c.name) for c in contract.columns}
            branches.append((feed, self.by_kind('"column_name"', '"address_text"', kinds)))
        return self.unless_own('"feed"', _case('"feed"', branches, WITHHELD), '"address_text"')

    def conflict_value_masks(self) -> list[dict]:
        """conflicts: each side's value as its source allows the reader."""
        authority = []
        for library in sorted(self.libraries):
            resource = self.catalog.resources[f"base.{library}"]
            states = self.states(resource)
            kinds = {c.name: self.kind(states[c.name], c) for c in resource.columns}
            authority.append((library, self.by_kind('"attribute"', '"authoritative_value"', kinds, scrubbed=False)))
        authority_sql = _case('"library"', authority, WITHHELD)
        others = []
        for feed, contract in sorted(self.contracts.items()):
            kinds = {c.name: self.feed_kind(feed, c.name) for c in contract.columns}
            others.append((feed, self.by_kind('"other_column"', '"other_value"', kinds)))
        other_sql = _case(OTHER, others, WITHHELD)
        if self.bureau:
            own_other = self.owns(OTHER)
            own_authority = (f"({self.owns(AUTHORITY)} OR ({AUTHORITY} = {_literal(KEY_SOURCE)} "
                             f"AND {own_other}))")
            authority_sql = f'CASE WHEN {own_authority} THEN "authoritative_value" ELSE {authority_sql} END'
            other_sql = f'CASE WHEN {own_other} THEN "other_value" ELSE {other_sql} END'
        return [self.mask("authoritative_value", authority_sql), self.mask("other_value", other_sql)]

    def owns_conflict(self) -> str:
        """SQL: is one of the two feeds of a conflicts row the reader's own?"""
        return f"({self.owns(OTHER)} OR {self.owns(AUTHORITY)})"

    # ------------------------------------------------------------ the rules

    def governor_rules(self) -> list[dict]:
        own_conflict = self.owns_conflict()
        subject, subject_key = self.pseudonymised_key('"library"', '"subject"')
        if self.bureau:
            subject = f"CASE WHEN {own_conflict} THEN \"subject\" ELSE {subject} END"
        key, key_key = self.pseudonymised_key('"library"', '"key"')
        key = self.unless_own('"feed"', key, '"key"')
        own_query = f"coalesce(\"department\" = {_literal(self.department.code)}, false)"
        # Another department's SQL text and error messages can quote any value it
        # looked up (names, IDs split across literals, dates): a governor sees who
        # read which tables and columns (tables_read, columns_read), not the text.
        audit = [self.mask(n, f"CASE WHEN {own_query} THEN {_quoted(n)} ELSE {WITHHELD} END")
                 for n in ("query", "error_message")]
        uri = _quoted("http_uri")
        audit.append(self.mask("http_uri", f"CASE WHEN {own_query} THEN {uri} ELSE {scrub(uri)} END"))
        return [
            # extra headers are header names, unless a delivery came without a header row
            self.rule("load_manifest", self.text_masks(["message"]) + [self.mask("extra_headers", self.unless_own(
                '"feed"', f'transform("extra_headers", gs -> {scrub("gs")})', '"extra_headers"'))]),
            self.rule("quarantine", [self.mask("original_values", self.feed_map_mask('"original_values"')),
                                     self.mask("failures", self.failures_mask('"failures"'))]),
            self.rule("quality_results", [self.mask("sample_rows", self.samples_mask())]
                      + self.text_masks(["observed_value", "kwargs"])),
            self.rule("quality_approvals", self.text_masks(["reason", "blocking_failures"])),
            self.rule("issues", [self.mask("sample_rows", self.samples_mask())]
                      + self.text_masks(["detail", "closed_reason"])),
            self.rule("issue_events", self.text_masks(["reason"])),
            self.rule("demand_list"),
            self.rule("sharing_list"),
            self.rule("collection_list"),
            self.rule("query_audit", audit),
            self.rule("conflicts", [self.mask("subject", subject, subject_key)] + self.conflict_value_masks()),
            self.rule("entity_links", [self.mask("key", key, key_key)]),
            self.rule("match_review", [self.mask("record", self.record_mask()),
                                       self.mask("candidate_keys", self.candidates_mask())]),
            self.rule("address_match_rates"),
            self.rule("scorecard_history"),
            *[self.rule(table) for table in PUBLIC_TABLES],
            self.rule("unmatched_addresses", [self.mask("address_text", self.address_mask())]),
        ]

    def department_rules(self) -> list[dict]:
        mine = f"\"department\" = {_literal(self.department.code)}"
        rules = [self.rule(table, row_filter=mine) for table in DEPARTMENT_TABLES]
        rules += [self.rule(table) for table in PUBLIC_TABLES]
        if not self.owns_feeds:
            return rules
        # A bureau's own rows, in full, except the library keys in them that did not
        # come from its own delivery: a key found by matching, and the candidate
        # keys of a record left for review, are other people's IDs from the library.
        key, key_needs = self.pseudonymised_key('"library"', '"key"')
        matched_key = f"CASE WHEN \"method\" = 'key' THEN \"key\" ELSE {key} END"
        branches = [(library, f"transform(\"candidate_keys\", gs -> {self.key_in_lambda(library, 'gs')})")
                    for library in sorted(self.libraries)]
        candidates = _case('"library"', branches, f"transform(\"candidate_keys\", gs -> {id_mask('gs')})")
        masked = {"entity_links": [self.mask("key", matched_key, key_needs)],
                  "match_review": [self.mask("candidate_keys", candidates)]}
        rules += [self.rule(table, masked.get(table), row_filter=self.owns('"feed"')) for table in FEED_OWNED_TABLES]
        own_conflict = self.owns_conflict()
        rules.append(self.rule("conflicts", self.conflict_value_masks(), own_conflict))
        return rules


def governance_views(views_dir: Path | None = None) -> dict[str, set[str]]:
    """Each governance view and the governance tables it reads."""
    from pipelines.serving.tables import view_files

    views_dir = views_dir or PROJECT_ROOT / "sql" / "views"
    found = {}
    for schema, view, path in view_files(views_dir):
        if schema != SCHEMA:
            continue
        text = path.read_text(encoding="utf-8")
        found[view] = set(re.findall(rf"\b{CATALOG}\.{SCHEMA}\.(\w+)", text, flags=re.IGNORECASE))
    return found


def governance_rules(catalog: Catalog, department: Department, user: str) -> list[dict]:
    """The Trino table rules of ``user`` (of ``department``) on the governance
    schema; see the module docstring. [] where the department owns no rows."""
    reader = _Reader(catalog, department, user)
    rules = reader.governor_rules() if department.role == "governor" else reader.department_rules()
    tables = {r["table"].strip("^$") for r in rules}
    for view, reads in sorted(governance_views().items()):
        if reads and reads <= tables:
            rules.append(reader.rule(view))
    return rules
