"""Reports for governors: the bureau scorecard, its daily history and the
monthly ranking of bureaus (数据质量通报), and the quality report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime

from pipelines.contracts import Contract
from pipelines.governance.collection import collection_status
from pipelines.governance.reviews import decided_counts, open_reviews
from pipelines.lake.delta import read_table
from pipelines.lake.manifest import read_manifest
from pipelines.quality.gate import data_docs_index
from pipelines.settings import Settings, get_settings


@dataclass
class ScorecardRow:
    bureau: str
    feed: str
    last_load_id: str | None
    last_status: str | None
    completeness: float | None     # required cells present (not missing) in the last delivery
    validity: float | None         # rows loaded / rows delivered (duplicates excluded)
    uniqueness: float | None       # 1 - (duplicate rows + repeated keys) / rows read
    timeliness: str                # on_time | late | missing (collection list)
    blocked_loads: int
    open_issues: int
    open_reviews: int = 0          # its records waiting for a reviewer (governance.match_review, undecided)
    reviews_decided: int = 0       # its records a reviewer decided (governance.review_decisions, live)

    def as_dict(self) -> dict:
        return asdict(self)


def scorecard(spark, contracts: dict[str, Contract], settings: Settings | None = None,
              now: datetime | None = None) -> list[ScorecardRow]:
    """Per bureau and feed: the four quality dimensions and open issues."""
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    manifest = read_manifest(spark, settings)
    latest = {row["feed"]: row for row in manifest.where(F.col("status").isin("loaded", "blocked")).groupBy("feed")
              .agg(F.max_by(F.struct(*manifest.columns), "event_at").alias("last")).select("feed", "last.*")
              .collect()}
    blocked = {row["feed"]: row["n"] for row in
               manifest.where(F.col("status") == "blocked").groupBy("feed").agg(F.count("*").alias("n")).collect()}
    last_ids = [row["load_id"] for row in latest.values()]
    results = read_table(spark, "quality_results", settings).where(F.col("load_id").isin(last_ids or [""])).collect()
    repeated_keys = {row["load_id"]: int(row["unexpected_count"] or 0)
                     for row in results if row["rule"].endswith(".unique")}
    required_missing = _required_cells_missing(spark, last_ids, settings)
    issues = {row["feed"]: row["n"] for row in read_table(spark, "issues", settings).where(F.col("status") == "open")
              .groupBy("feed").agg(F.count("*").alias("n")).collect()}
    timeliness = {s.feed: s.status for s in collection_status(spark, contracts, settings, now)}
    waiting: dict[str, int] = {}
    for review in open_reviews(settings):
        waiting[review["feed"]] = waiting.get(review["feed"], 0) + 1
    decided = decided_counts(settings)
    card = []
    for feed, contract in sorted(contracts.items()):
        last = latest.get(feed)
        completeness = validity = uniqueness = None
        if last and last["rows_read"]:
            delivered = max(1, last["rows_read"] - (last["rows_duplicate"] or 0))
            required = [c for c in contract.columns if c.required]
            if required:
                cells = delivered * len(required)
                completeness = round(1 - required_missing.get(last["load_id"], 0) / cells, 4)
            validity = round((last["rows_loaded"] or 0) / delivered, 4)
            repeats = (last["rows_duplicate"] or 0) + repeated_keys.get(last["load_id"], 0)
            uniqueness = round(1 - repeats / last["rows_read"], 4)
        card.append(ScorecardRow(
            bureau=contract.bureau, feed=feed, last_load_id=last["load_id"] if last else None,
            last_status=last["status"] if last else None, completeness=completeness, validity=validity,
            uniqueness=uniqueness, timeliness=timeliness.get(feed, "missing"),
            blocked_loads=blocked.get(feed, 0), open_issues=issues.get(feed, 0),
            open_reviews=waiting.get(feed, 0), reviews_decided=decided.get(feed, 0)))
    return card


# A feed's score for a day, 0-100: the mean of its quality dimensions that are
# known (completeness, validity, uniqueness; none before a first delivery) and
# its timeliness (on time 1, late 0.5, missing 0), less 2 points per open issue
# of the feed (at most 20): issues that stay open, answered or not, cost until a
# delivery or a governor closes them. A bureau's score is the mean of its
# feeds' (so the penalty is per feed, not per bureau).
TIMELINESS_SCORE = {"on_time": 1.0, "late": 0.5, "missing": 0.0}
ISSUE_PENALTY, ISSUE_PENALTY_CAP = 2.0, 20.0


def feed_score(row: ScorecardRow) -> float:
    parts = [v for v in (row.completeness, row.validity, row.uniqueness) if v is not None]
    parts.append(TIMELINESS_SCORE.get(row.timeliness, 0.0))
    penalty = min(ISSUE_PENALTY_CAP, ISSUE_PENALTY * row.open_issues)
    return round(max(0.0, 100 * sum(parts) / len(parts) - penalty), 2)


def snapshot_scorecard(spark, contracts: dict[str, Contract], settings: Settings | None = None,
                       day: date | None = None, now: datetime | None = None) -> list[dict]:
    """Store the scorecard as it stands in ``governance.scorecard_history``
    for ``day`` (default: today), replacing that day's rows, so a rerun of
    the day's DAG leaves one snapshot. Returns the rows written."""
    from deltalake import write_deltalake
    from deltalake.exceptions import TableNotFoundError

    from pipelines.lake.delta import rows_table
    from pipelines.lake.paths import governance_path
    from pipelines.lake.tables import SCORECARD_HISTORY_DDL
    from pipelines.settings import utc_now

    settings = settings or get_settings()
    taken_at = now or utc_now()
    day = day or settings.on_date()
    rows = [{"day": day, "bureau": r.bureau, "feed": r.feed, "completeness": r.completeness, "validity": r.validity,
             "uniqueness": r.uniqueness, "timeliness": r.timeliness, "blocked_loads": r.blocked_loads,
             "open_issues": r.open_issues, "open_reviews": r.open_reviews, "score": feed_score(r),
             "taken_at": taken_at} for r in scorecard(spark, contracts, settings, now)]
    path = governance_path("scorecard_history", settings)
    table = rows_table(rows, SCORECARD_HISTORY_DDL)
    try:
        write_deltalake(path, table, mode="overwrite", predicate=f"day = '{day.isoformat()}'")
    except TableNotFoundError:
        write_deltalake(path, table, mode="append")
    return rows


def bureau_days(history: list[dict]) -> dict[str, dict[date, float]]:
    """Bureau -> day -> the bureau's score that day (its feeds' mean). Pure."""
    by_bureau: dict[str, dict[date, list[float]]] = {}
    for row in history:
        if row.get("score") is not None:
            by_bureau.setdefault(row["bureau"], {}).setdefault(row["day"], []).append(float(row["score"]))
    return {bureau: {day: round(sum(s) / len(s), 2) for day, s in sorted(days.items())}
            for bureau, days in by_bureau.items()}


def timeliness_grid(history: list[dict]) -> tuple[list[date], list[tuple[str, list[str | None]]]]:
    """(days, [(feed, timeliness per day or None)]) of scorecard snapshots:
    the timeliness heat map's cells. Pure."""
    days = sorted({r["day"] for r in history})
    cells = {(r["feed"], r["day"]): r["timeliness"] for r in history}
    feeds = sorted({r["feed"] for r in history})
    return days, [(feed, [cells.get((feed, day)) for day in days]) for feed in feeds]


def monthly_ranking(history: list[dict], month: str) -> list[dict]:
    """The ranking of bureaus for ``month`` (``YYYY-MM``) from the daily
    snapshots of ``governance.scorecard_history`` (dicts): each bureau's mean
    daily score over the month's snapshot days, its first and last day's
    score, and its rank (1 is best; ties share a rank, ordered by bureau). Pure."""
    ranking = []
    for bureau, days in bureau_days([r for r in history if r["day"].strftime("%Y-%m") == month]).items():
        scores = list(days.values())
        ranking.append({"bureau": bureau, "score": round(sum(scores) / len(scores), 2), "days": len(scores),
                        "first": scores[0], "last": scores[-1], "change": round(scores[-1] - scores[0], 2)})
    ranking.sort(key=lambda r: (-r["score"], r["bureau"]))
    for position, row in enumerate(ranking):
        same = position and ranking[position - 1]["score"] == row["score"]
        row["rank"] = ranking[position - 1]["rank"] if same else position + 1
    return ranking


def _required_cells_missing(spark, load_ids: list[str], settings: Settings) -> dict[str, int]:
    """Cells of required columns that arrived empty, per load (quarantine rule ``required``)."""
    from pyspark.sql import functions as F

    if not load_ids:
        return {}
    rows = (read_table(spark, "quarantine", settings).where(F.col("_load_id").isin(load_ids))
            .select("_load_id", F.explode("failures").alias("failure"))
            .where(F.col("failure.rule") == "required")
            .groupBy("_load_id").count().collect())
    return {row["_load_id"]: row["count"] for row in rows}


def quality_report(spark, settings: Settings | None = None, worst: int = 3) -> dict:
    """Per feed: validated loads, expectation pass rate, blocked loads and the
    worst failing expectations (by unexpected percent), plus the Data Docs path."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    results = read_table(spark, "quality_results", settings)
    per_feed = {row["feed"]: row.asDict() for row in results.groupBy("feed", "bureau").agg(
        F.countDistinct("load_id").alias("validated_loads"),
        F.count("*").alias("evaluations"),
        F.round(F.avg(F.col("success").cast("double")), 4).alias("pass_rate"),
        F.sum((~F.col("success") & F.col("blocking")).cast("int")).alias("blocking_failures"),
        F.sum((~F.col("success") & ~F.col("blocking")).cast("int")).alias("warnings"),
    ).collect()}
    ranked = Window.partitionBy("feed").orderBy(F.col("unexpected_percent").desc_nulls_last(), "expectation")
    for row in (results.where(~F.col("success"))
                .groupBy("feed", "expectation", "rule", "blocking")
                .agg(F.max("unexpected_percent").alias("unexpected_percent"), F.count("*").alias("failed_runs"))
                .withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= worst)
                .orderBy("feed", "rank").collect()):
        per_feed[row["feed"]].setdefault("worst", []).append(
            {"expectation": row["expectation"], "rule": row["rule"], "blocking": row["blocking"],
             "unexpected_percent": row["unexpected_percent"], "failed_runs": row["failed_runs"]})
    manifest = read_manifest(spark, settings)
    blocked = manifest.where(F.col("status") == "blocked").select("load_id", "feed", "source_file", "message")
    blocked_rows = [row.asDict() for row in blocked.orderBy("feed").collect()]
    for row in blocked_rows:
        per_feed.setdefault(row["feed"], {"feed": row["feed"]}).setdefault("blocked_loads", []).append(row["load_id"])
    docs = data_docs_index(settings)
    return {
        "data_docs": str(docs) if docs.exists() else None,
        "feeds": [per_feed[feed] | {"worst": per_feed[feed].get("worst", []),
                                    "blocked_loads": per_feed[feed].get("blocked_loads", [])}
                  for feed in sorted(per_feed)],
        "blocked": blocked_rows,
    }
