"""Decisions on match reviews that last (issue 17, item 4).

Entity resolution sends a record it cannot link safely to
``governance.match_review`` (pipelines/libraries/resolution.py); every build
rewrites that table. A reviewer's decision goes to another table,
``governance.review_decisions``, append-only, one row per decision:

- ``accept`` a key: the record joins that person or entity (link method
  ``review_accepted``); the key is one of the review's candidates, or a
  current key of the library the reviewer found by other means (most
  reviews wait because nothing matched), with the reason saying how;
- ``new_person``: the record is nobody the libraries know (``review_new_person``):
  it stays out of the libraries, which are keyed by ID number and USCC, and
  out of the queue;
- ``reject`` with a reason: the record is unusable (``review_rejected``);
- ``undo``: the last decision no longer holds; the next build matches the
  record again (and, if still unsure, puts it back in the queue).

Every build applies the live decisions (the latest row per review, unless
it is an ``undo``): decided records leave the queue and get the decided
link, so a decision outlives every rebuild of match_review. The queue
(``open_reviews``) shows only undecided records. The table is the audit of
the decisions (who, when, why); nothing in it is ever changed or removed.

A review is named by a short, stable ID (``review_id``: library, source and
the values compared), the same in every build that finds it and in every
delivery that repeats the record (a snapshot register delivered again).
"""

from __future__ import annotations

import hashlib
import logging

from pipelines.lake.delta import append_rows, read_delta_rows
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import REVIEW_DECISIONS_DDL
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)
DECISIONS = ("accept", "new_person", "reject")
LINK_METHODS = {"accept": "review_accepted", "new_person": "review_new_person", "reject": "review_rejected"}


class ReviewRefused(ValueError):
    """A decision that is not recorded; the message says why."""


EVIDENCE = ("name_key", "birth", "town_code", "rep_key", "delivered_key")     # match_review.record's keys


def review_id(library: str, source_alias: str, record: dict) -> str:
    """The review's short, stable ID: 12 hex characters of the sha256 of its
    library, source and the values it was compared on (``record``), not of
    its load and row: a register delivered again whole (a snapshot) or a
    corrected delivery carries the same record under a new load, and the
    decision must still hold. ``apply_decisions`` computes the same in Spark."""
    text = "|".join([library, source_alias, *[(record or {}).get(name) or "" for name in EVIDENCE]])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _latest(settings: Settings, library: str | None = None) -> dict[str, dict]:
    """review_id -> its latest decision row, an ``undo`` included."""
    filters = [("library", "=", library)] if library else None
    latest: dict[str, dict] = {}
    for row in sorted(read_delta_rows(governance_path("review_decisions", settings), filters),
                      key=lambda r: r["decided_at"]):
        latest[row["review_id"]] = row
    return latest


def live_decisions(settings: Settings, library: str | None = None) -> dict[str, dict]:
    """review_id -> its live decision (the latest row, unless an ``undo``)."""
    return {rid: row for rid, row in _latest(settings, library).items() if row["decision"] != "undo"}


def decisions_digest(settings: Settings, library: str) -> str:
    """A digest of ``library``'s live decisions: a build whose digest differs
    from its last one's applies them (pipelines.libraries.incremental)."""
    live = sorted((rid, row["decision"], row["candidate_key"] or "") for rid, row in
                  live_decisions(settings, library).items())
    return hashlib.sha256(repr(live).encode()).hexdigest() if live else ""


def _reviews(settings: Settings, library: str | None) -> list[dict]:
    filters = [("library", "=", library)] if library else None
    rows = read_delta_rows(governance_path("match_review", settings), filters)
    for row in rows:
        if isinstance(row["record"], list):           # Arrow gives a map as (key, value) pairs
            row["record"] = dict(row["record"])
        row["review_id"] = review_id(row["library"], row["source_alias"], row["record"])
    return rows


def open_reviews(settings: Settings | None = None, library: str | None = None) -> list[dict]:
    """The queue: match_review's records without a live decision, with their
    ID, reason, evidence (``record``: the values compared) and candidates."""
    settings = settings or get_settings()
    decided = live_decisions(settings, library)
    return sorted((r for r in _reviews(settings, library) if r["review_id"] not in decided),
                  key=lambda r: (r["library"], r["feed"], r["_source_file"], r["_row_number"]))


def decide(review: str, decision: str, decided_by: str, candidate_key: str | None = None,
           reason: str | None = None, settings: Settings | None = None) -> dict:
    """Record ``decision`` (accept | new_person | reject | undo) on review
    ``review``; returns the decision row. ``ReviewRefused`` naming why for an
    unknown or already decided review, an accepted key that is neither one
    of its candidates nor a current key of the library (or is one without a
    reason), a rejection or an undo without a reason, or an undo of a review
    with no live decision."""
    settings = settings or get_settings()
    if decision not in (*DECISIONS, "undo"):
        raise ReviewRefused(f"no decision {decision!r}: one of {', '.join(DECISIONS)} or undo")
    if decision in ("reject", "undo") and not (reason or "").strip():
        raise ReviewRefused(f"{'a rejection' if decision == 'reject' else 'undoing a decision'} needs --reason")
    latest = _latest(settings)
    live = {rid: row for rid, row in latest.items() if row["decision"] != "undo"}
    if decision == "undo":
        if review not in live:
            raise ReviewRefused(f"review {review} has no decision to undo")
        row = dict(live[review], decision="undo", candidate_key=None)
    else:
        if review in live:
            raise ReviewRefused(f"review {review} is already decided ({live[review]['decision']} by "
                                f"{live[review]['decided_by']}); undo it first")
        found = [r for r in _reviews(settings, None) if r["review_id"] == review]
        if not found:
            # decided, built (it left match_review), then undone: decided again before the next build
            found = [dict(latest[review], candidate_keys=[])] if review in latest else []
        if not found:
            raise ReviewRefused(f"no open review {review} (`govlake governance reviews` lists them)")
        open_review = found[0]
        if decision == "accept" and candidate_key not in (open_review["candidate_keys"] or []):
            _check_found_elsewhere(open_review, candidate_key, reason, settings)
        if decision != "accept" and candidate_key:
            raise ReviewRefused("only --accept takes a candidate key")
        row = {name: open_review[name] for name in ("library", "feed", "source_alias", "_load_id", "_row_number")}
        row |= {"review_id": review, "decision": decision, "candidate_key": candidate_key if decision == "accept"
                else None}
    row |= {"reason": (reason or "").strip() or None, "decided_by": decided_by, "decided_at": utc_now()}
    append_rows(governance_path("review_decisions", settings), [row], REVIEW_DECISIONS_DDL)
    log.info("review %s: %s by %s (%s)", review, decision, decided_by, row["reason"])
    return row


def _check_found_elsewhere(review: dict, key: str | None, reason: str | None, settings: Settings) -> None:
    """A key that is not among the review's candidates may be accepted when
    the reviewer found the subject by other means (most reviews wait because
    nothing matched: a missing birth date, a mangled ID): it must be a current
    key of the library, and the reason says how it was found."""
    from pipelines.lake.delta import read_arrow_at
    from pipelines.library_specs import load_library_spec

    candidates = ", ".join(review["candidate_keys"] or []) or "none"
    if not key:
        raise ReviewRefused(f"--accept needs a key: review {review['review_id']}'s candidates are {candidates}")
    column = load_library_spec(review["library"], settings).key
    found, _ = read_arrow_at(settings.lake_path("base", review["library"]), [column, "is_current"],
                             equal_to=(column, key))
    if found is None or not any(row["is_current"] for row in found.to_pylist()):
        raise ReviewRefused(f"{key!r} is neither a candidate of review {review['review_id']} ({candidates}) nor a "
                            f"current {column} of base.{review['library']}")
    if not (reason or "").strip():
        raise ReviewRefused(f"{key!r} is not a candidate of review {review['review_id']} ({candidates}): accepting "
                            "it needs --reason (how the record was found to be that subject)")


def decided_counts(settings: Settings) -> dict[str, int]:
    """feed -> how many of its records carry a live decision (the bureau scorecard)."""
    counts: dict[str, int] = {}
    for row in live_decisions(settings).values():
        counts[row["feed"]] = counts.get(row["feed"], 0) + 1
    return counts
