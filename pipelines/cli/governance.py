"""`govlake governance` (the governance list, conflicts, reviews, scorecard) and
`govlake collection` (the collection list)."""

from __future__ import annotations

import click

from pipelines.cli.common import (console, emit_json, json_option, known_feed, lake_spark, require_lake,
                                  spark_if_written, table, written)


@click.group()
def collection() -> None:
    """The collection list (归集清单)."""


@collection.command("status")
@json_option
def collection_status_command(as_json: bool) -> None:
    """Per feed: cadence, last delivery, rows, and on time / late / missing."""
    from pipelines.contracts import load_contracts
    from pipelines.governance.collection import collection_status

    statuses = collection_status(lake_spark("load_manifest"), load_contracts())
    if as_json:
        emit_json([s.as_dict() for s in statuses])
        return
    colour = {"on_time": "green", "late": "yellow", "missing": "red"}
    rows = [[s.feed, s.bureau, s.title, s.cadence,
             f"{s.last_delivery_at:%Y-%m-%d %H:%M}" if s.last_delivery_at else "-", s.last_file or "-",
             s.last_rows, s.loads, f"[{colour[s.status]}]{s.status}[/{colour[s.status]}]"] for s in statuses]
    console.print(table("Collection list (归集清单)", ["feed", "bureau", "title", "cadence", "last delivery (UTC)",
                                                     "file", "rows", "loads", "status"], rows, {"rows", "loads"}))


@click.group()
def governance() -> None:
    """The governance list (治理清单) and the bureau scorecard."""


@governance.command("list")
@click.option("--bureau", help="Only this owner bureau (e.g. psb).")
@click.option("--feed", help="Only this feed.")
@click.option("--status", type=click.Choice(["open", "closed", "all"]), default="open", show_default=True)
@json_option
def governance_list(bureau: str | None, feed: str | None, status: str, as_json: bool) -> None:
    """Governance issues: one per (bureau, feed, rule), with affected rows and sample rows."""
    from pyspark.sql import functions as F

    from pipelines.lake.delta import read_table

    known_feed(feed)
    rows = []
    if session := spark_if_written("issues"):
        frame = read_table(session, "issues")
        if bureau:
            frame = frame.where(F.col("bureau") == bureau)
        if feed:
            frame = frame.where(F.col("feed") == feed)
        if status != "all":
            frame = frame.where(F.col("status") == status)
        rows = [r.asDict() for r in frame.orderBy("bureau", "feed", F.col("last_affected_rows").desc()).collect()]
    if as_json:
        emit_json(rows)
        return
    console.print(table(f"Governance list (治理清单): {status}", [
        "issue", "bureau", "feed", "rule", "status", "first seen", "last seen", "occurrences", "affected rows",
        "samples"], [[r["issue_id"], r["bureau"], r["feed"], r["rule"], r["status"],
                      f"{r['first_seen_at']:%Y-%m-%d %H:%M}", f"{r['last_seen_at']:%Y-%m-%d %H:%M}",
                      r["occurrences"], r["affected_rows"], ", ".join(r["sample_rows"][:3])] for r in rows],
        {"occurrences", "affected rows"}))


@governance.command("close")
@click.argument("issue_id")
@click.option("--reason", required=True, help="Why the issue is closed (recorded).")
@click.option("--by", "closed_by", default=None, help="Who closes it (default: the OS user).")
def governance_close(issue_id: str, reason: str, closed_by: str | None) -> None:
    """Close a governance issue by hand, with a reason."""
    import getpass

    from pipelines.governance.issues import close_issue

    try:
        issue = close_issue(issue_id, reason, closed_by or getpass.getuser())
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"closed {issue_id} ({issue['feed']} {issue['rule']}): {reason}")


@governance.command("conflicts")
@click.option("--library", help="Only this base library (e.g. legal_person).")
@json_option
def governance_conflicts(library: str | None, as_json: bool) -> None:
    """Open cross-bureau conflicts: a non-authoritative bureau's value that disagrees with the authority's."""
    from pyspark.sql import functions as F

    from pipelines.lake.delta import read_table

    rows = []
    if session := spark_if_written("conflicts"):
        frame = read_table(session, "conflicts").where(F.col("resolved_at").isNull())
        if library:
            frame = frame.where(F.col("library") == library)
        rows = [r.asDict() for r in frame.orderBy("library", "attribute", "subject").collect()]
    if as_json:
        emit_json(rows)
        return
    console.print(table(f"Open conflicts ({len(rows)})", [
        "library", "subject", "attribute", "authority", "authoritative value", "other feed", "other value",
        "first seen"], [[r["library"], r["subject"], r["attribute"], r["authoritative_feed"],
                         r["authoritative_value"], r["other_feed"], r["other_value"],
                         f"{r['first_seen_at']:%Y-%m-%d %H:%M}"] for r in rows[:200]]))


@governance.command("reviews")
@click.option("--library", help="Only this base library (population or legal_person).")
@json_option
def governance_reviews(library: str | None, as_json: bool) -> None:
    """The review queue: records entity resolution could not link safely and nobody has decided yet.

    Each row shows the review ID to decide with (`govlake governance review ID ...`),
    why it waits, the values it was compared on, its candidate keys (best first)
    and the evidence against the best one (which attributes agreed and how, the scores).
    """
    from pipelines.governance.reviews import open_reviews

    rows = open_reviews(require_lake(), library) if written("match_review") else []
    if as_json:
        emit_json(rows)
        return
    console.print(table(f"Match review ({len(rows)} undecided)", [
        "review", "library", "feed", "file:row", "reason", "name", "birth", "town", "delivered key", "candidates",
        "evidence (best candidate)"],
        [[r["review_id"], r["library"], r["feed"], f"{r['_source_file']}:{r['_row_number']}", r["reason"],
          r["record"].get("name_key"), r["record"].get("birth"), r["record"].get("town_code"),
          r["record"].get("delivered_key"), ", ".join((r["candidate_keys"] or [])[:3]), r.get("evidence") or ""]
         for r in rows[:200]]))


@governance.command("review")
@click.argument("review_id")
@click.option("--accept", "candidate_key", default=None, help="Link the record to this candidate key.")
@click.option("--new-person", is_flag=True, help="The record is nobody the libraries know: keep it out, unlinked.")
@click.option("--reject", is_flag=True, help="The record is unusable (needs --reason).")
@click.option("--undo", is_flag=True, help="Withdraw the review's decision; the next build matches it again.")
@click.option("--reason", default=None, help="Why (required for --reject and --undo; recorded).")
@click.option("--by", "decided_by", default=None, help="Who decides (default: the OS user; recorded).")
def governance_review(review_id: str, candidate_key: str | None, new_person: bool, reject: bool, undo: bool,
                      reason: str | None, decided_by: str | None) -> None:
    """Decide a match review: --accept KEY, --new-person, --reject --reason, or --undo --reason.

    The decision is kept in governance.review_decisions (who, when, why) and every
    later build applies it: the record leaves the queue and gets the decided link.
    """
    import getpass

    from pipelines.governance.reviews import ReviewRefused, decide

    chosen = [name for name, on in (("accept", candidate_key is not None), ("new_person", new_person),
                                    ("reject", reject), ("undo", undo)) if on]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --accept KEY, --new-person, --reject, --undo")
    try:
        row = decide(review_id, chosen[0], decided_by or getpass.getuser(), candidate_key, reason, require_lake())
    except ReviewRefused as exc:
        raise click.ClickException(f"refused: {exc}") from None
    console.print(f"review {review_id} ({row['library']}, {row['feed']} row {row['_row_number']}): {chosen[0]}"
                  f"{' ' + candidate_key if candidate_key else ''}; applied by the next build of {row['library']}",
                  highlight=False)


@governance.command("scorecard")
@json_option
def governance_scorecard(as_json: bool) -> None:
    """Per bureau and feed: completeness, validity, uniqueness, timeliness, open issues."""
    from pipelines.contracts import load_contracts
    from pipelines.governance.reports import scorecard

    card = scorecard(lake_spark("load_manifest"), load_contracts())
    if as_json:
        emit_json([row.as_dict() for row in card])
        return

    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    console.print(table("Bureau scorecard", ["bureau", "feed", "last load", "status", "completeness", "validity",
                                             "uniqueness", "timeliness", "blocked loads", "open issues",
                                             "open reviews", "decided"],
                        [[r.bureau, r.feed, r.last_load_id or "-", r.last_status or "-", pct(r.completeness),
                          pct(r.validity), pct(r.uniqueness), r.timeliness, r.blocked_loads, r.open_issues,
                          r.open_reviews, r.reviews_decided] for r in card],
                        {"completeness", "validity", "uniqueness", "blocked loads", "open issues", "open reviews",
                         "decided"}))
