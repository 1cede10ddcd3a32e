"""govlake's entity resolution and Splink side by side on the same records
(``make bench-er``, issue 17).

The records are what a build of the hard-case city (``govlake synth
--hard``) leaves to entity resolution: every quarantined row of a rescue
source whose key is not valid, with the attributes ``resolution`` compares
(normalised name, birth date, town, representative, the delivered key when
it has a key's length), and the candidates: every validated key the city
knows, with the same attributes. Both are exported once to Parquet
(``export``); each matcher then runs as a process of its own on them and
writes one row per linked record (``run``), scored against the generator's
truth (``score``): precision is correct links over links, recall correct
links over linkable records (whose true key is among the candidates).

Splink (DuckDB backend) is given the same prepared columns and blocking that
finds the same pairs govlake compares (birth date with surname, birth date
with town; name core for entities; for keys, which Splink cannot expand to
their one-edit neighbours, the key's two halves). Its model is trained on
the records themselves, unsupervised, as Splink's documentation sets out:
the prior from deterministic rules, u by random sampling, m by
expectation-maximisation over two blocking rules; a record links to its
best candidate key when the match probability reaches
``SPLINK_THRESHOLD`` and no other key scores the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

LIBRARIES = {"population": "person", "legal_person": "entity"}
KEY_HEADERS = {"population": ("身份证号", "证件号码"), "legal_person": ("统一社会信用代码", "纳税人识别号")}
SPLINK_THRESHOLD = 0.95
RECORD_COLUMNS = ("_record_id", "_source_file", "_row_number", "name_key", "birth", "town_code", "rep_key",
                  "address_key", "phone_key", "delivered_key", "id_key")


def export(spark, settings, truth: Path, out: Path) -> dict:
    """Write ``<out>/<library>/records.parquet``, ``candidates.parquet`` and
    ``truth.csv`` (record id -> true key) from a built lake; returns the
    counts."""
    from pyspark.sql import functions as F

    from pipelines.library_specs import load_library_spec
    from pipelines.libraries.resolution import (
        candidate_keys, live_load_ids, maintained_candidates, maintained_rescued, unkeyed_records)

    live = live_load_ids(settings)
    true_key = _true_keys(truth)
    counts = {}
    for library in LIBRARIES:
        spec = load_library_spec(library, settings)
        folder = out / library
        folder.mkdir(parents=True, exist_ok=True)
        parts = []
        for alias in spec.resolution.rescue:
            rescued = maintained_rescued(spark, spec, alias, settings, live)
            if rescued is not None:
                parts.append(unkeyed_records(spec, alias, rescued).select(*RECORD_COLUMNS))
        records = parts[0]
        for part in parts[1:]:
            records = records.unionByName(part)
        records = records.withColumn("birth", F.col("birth").cast("string")).toPandas()
        candidates = (candidate_keys(maintained_candidates(spark, spec, settings, live))
                      .withColumn("birth", F.col("birth").cast("string")).distinct().toPandas())
        records.to_parquet(folder / "records.parquet", index=False)
        candidates.to_parquet(folder / "candidates.parquet", index=False)
        with (folder / "truth.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("_record_id", "true_key"))
            for row in records.itertuples():
                key = true_key[library].get((row._2, int(row._3)))
                if key:
                    writer.writerow((row._1, key))
        counts[library] = {"records": len(records), "candidates": len(candidates),
                           "candidate_keys": int(candidates["candidate_key"].nunique())}
    return counts


def _true_keys(truth: Path) -> dict[str, dict[tuple[str, int], str]]:
    """Per library: (delivered file, row) -> the key the generator wrote
    before damaging it."""
    found: dict[str, dict] = {library: {} for library in LIBRARIES}
    with (truth / "defects.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["expected"] != "quarantine":
                continue
            for library, headers in KEY_HEADERS.items():
                if row["column"] in headers:
                    found[library][(row["file"], int(row["row_number"]))] = row["true_value"]
    return found


def run_govlake(folder: Path) -> None:
    """``match_unkeyed`` on every library's exported records, in a Spark
    session of this process, reading them as a build reads its tables (a
    columnar scan); links to ``govlake.csv``."""
    from pyspark.sql import functions as F

    from pipelines.libraries.resolution import match_unkeyed
    from pipelines.spark import build_spark_session

    spark = build_spark_session(app_name="govlake-bench-er")
    for library, profile in LIBRARIES.items():
        def read(name: str):
            frame = spark.read.parquet(str(folder / library / f"{name}.parquet"))
            return frame.withColumn("birth", F.col("birth").cast("string").cast("date"))

        links, _ = match_unkeyed(read("records"), read("candidates"), profile,
                                 materialise=lambda frame: frame.localCheckpoint())
        _write_links(folder / library / "govlake.csv", [(r["_record_id"], r["key"]) for r in links.collect()])
    spark.stop()


def splink_settings(profile: str):
    """The Splink model: comparisons and blocking rules for ``profile``."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if profile == "person":
        comparisons = [cl.JaroWinklerAtThresholds("name_key", [0.9, 0.7]), cl.ExactMatch("birth"),
                       cl.ExactMatch("town_code"), cl.ExactMatch("address_key"), cl.ExactMatch("phone_key"),
                       cl.DamerauLevenshteinAtThresholds("id_key", [1, 2])]
        blocking = [block_on("birth", "surname"), block_on("birth", "town_code"), block_on("birth", "in_pinyin"),
                    block_on("substr(id_key, 1, 9)", "substr(id_key, 15, 4)"), block_on("substr(id_key, 7, 12)")]
    else:
        comparisons = [cl.JaroWinklerAtThresholds("name_key", [0.9, 0.7]), cl.ExactMatch("name_core"),
                       cl.ExactMatch("town_code"), cl.ExactMatch("rep_key"),
                       cl.DamerauLevenshteinAtThresholds("id_key", [1, 2])]
        # the code's halves after the registration authority and division (91441900, shared by most firms)
        blocking = [block_on("name_core"), block_on("substr(id_key, 9, 5)"), block_on("substr(id_key, 14, 5)")]
    return SettingsCreator(link_type="link_only", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=blocking, retain_matching_columns=False)


def run_splink(folder: Path) -> dict:
    """Splink on every library's exported records: train, predict, and link
    each record to its best key at ``SPLINK_THRESHOLD``; links to
    ``splink.csv``. Returns the trained model's parameters per library."""
    import pandas as pd
    from splink import DuckDBAPI, Linker, block_on

    models = {}
    for library, profile in LIBRARIES.items():
        records = pd.read_parquet(folder / library / "records.parquet")
        candidates = pd.read_parquet(folder / library / "candidates.parquet")
        left = records.rename(columns={"_record_id": "unique_id"})[
            ["unique_id", "name_key", "birth", "town_code", "rep_key", "address_key", "phone_key", "id_key"]]
        right = candidates.rename(columns={"candidate_key": "id_key"})
        right.insert(0, "unique_id", [f"c{i}" for i in range(len(right))])
        right["key"] = right["id_key"]
        left["key"] = None
        for frame in (left, right):
            frame["surname"] = frame["name_key"].str.slice(0, 1)
            frame["name_core"] = _core_names(frame["name_key"]) if profile == "entity" else None
        # a record's name in pinyin is compared with every candidate of its birth date (as govlake's block)
        left["in_pinyin"] = left["name_key"].str.fullmatch("[a-z]+").map({True: "pinyin"})
        right["in_pinyin"] = "pinyin"
        db = DuckDBAPI()
        linker = Linker([db.register(left, dataset_display_name="records"),
                         db.register(right, dataset_display_name="candidates")], splink_settings(profile),
                        log_level="WARNING")
        if profile == "person":
            linker.training.estimate_probability_two_random_records_match(
                [block_on("name_key", "birth", "town_code")], recall=0.8)
        else:
            linker.training.estimate_probability_two_random_records_match([block_on("name_key")], recall=0.8)
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=7)  # SPLINK_DESCRIPTION says so
        if profile == "person":
            linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth"))
            linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_key"))
        else:
            linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_core"))
            linker.training.estimate_parameters_using_expectation_maximisation(block_on("substr(id_key, 9, 5)"))
        pairs = linker.inference.predict(threshold_match_probability=SPLINK_THRESHOLD).as_pandas_dataframe()
        links = []
        if len(pairs):
            key_of = dict(zip(right["unique_id"], right["key"]))
            record_side = pairs["source_dataset_l"] == "records"
            pairs["record"] = pairs["unique_id_l"].where(record_side, pairs["unique_id_r"])
            pairs["key"] = pairs["unique_id_r"].where(record_side, pairs["unique_id_l"]).map(key_of)
            best = pairs.groupby(["record", "key"])["match_probability"].max().reset_index()
            for record, group in best.groupby("record"):
                top = group["match_probability"].max()
                winners = group[group["match_probability"] == top]["key"].unique()
                if len(winners) == 1:
                    links.append((record, winners[0]))
        _write_links(folder / library / "splink.csv", links)
        models[library] = linker.misc.save_model_to_json() if hasattr(linker, "misc") else {}
    return models


def _core_names(names):
    """``matching.entity_trunk_name`` of ``entity_core_name`` on a pandas
    Series (the same rules, in Python regular expressions), so Splink blocks
    on the same name core govlake does."""
    from pipelines.libraries.matching import BRANCH_SUFFIX, CITY_MARKS, LEGAL_FORM

    core = names.str.replace(LEGAL_FORM[0], LEGAL_FORM[1], regex=False)
    for mark in CITY_MARKS:
        core = core.str.replace(mark, "", regex=True)
    return core.str.replace(BRANCH_SUFFIX, "", regex=True)


def _write_links(path: Path, links: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("_record_id", "key"))
        writer.writerows(sorted(links))


SPLINK_DESCRIPTION = (
    "link_only between the records and the candidates (DuckDB backend). Persons: JaroWinklerAtThresholds(name_key, "
    "[0.9, 0.7]), ExactMatch(birth), ExactMatch(town_code), ExactMatch(address_key), ExactMatch(phone_key), "
    "DamerauLevenshteinAtThresholds(id_key, [1, 2]); blocking for predictions: birth+surname, birth+town_code, "
    "birth for a record whose name is in pinyin, "
    "ID characters 1-9 with 15-18, ID characters 7-18. Entities: JaroWinklerAtThresholds(name_key, [0.9, 0.7]), "
    "ExactMatch(name_core), ExactMatch(town_code), ExactMatch(rep_key), DamerauLevenshteinAtThresholds(id_key, "
    "[1, 2]); blocking: name_core, code characters 9-13, code characters 14-18. Training: the prior from "
    "deterministic rules (name+birth+town for persons, name for entities, recall 0.8), u by random sampling "
    "(1e6 pairs, seed 7), m by expectation-maximisation blocked on birth then name_key (persons), name_core then "
    f"code characters 9-13 (entities). A record links to its best key at match probability >= {SPLINK_THRESHOLD} "
    "when no other key scores the same. Inputs: the same prepared columns govlake compares (normalised names, "
    "birth dates, town codes, road-and-number address keys, phone digits, delivered keys). Differences that "
    "remain: each candidate row is a record of its own to Splink (a key scores its best row, where govlake "
    "combines the known levels of a key's rows), and Splink compares a name in pinyin with Jaro-Winkler, "
    "without govlake's reading of the candidate's name; both matchers compare birth dates read from mistyped "
    "IDs (the export does not carry govlake's flag for them).")


def govlake_description() -> str:
    """The weights, threshold and margin of ``resolution.match_unkeyed``, as run."""
    from pipelines.libraries.resolution import ENTITY_BLOCKS, LINK_THRESHOLD, MARGIN, PERSON_BLOCKS, VETOES, WEIGHTS

    return (f"weights {WEIGHTS}; a key scores the best known level of each attribute over its candidate rows; "
            f"link at score >= {LINK_THRESHOLD} with a margin of {MARGIN} over the next key and "
            f"no veto {VETOES}; blocks {list(PERSON_BLOCKS)} (persons), {list(ENTITY_BLOCKS)} (entities), and keys "
            "one edit from the delivered one")


def misses_by_defect(folder: Path, matcher: str, truth: Path) -> dict:
    """Per library: the wrong links and the missed linkable records, counted
    by the defects the generator planted on each (file, row)."""
    import collections

    import pandas as pd

    labels = collections.defaultdict(set)
    ignored = {"address_variant", "missing_token", "id_lowercase_x", "duplicate_row"}
    with (truth / "defects.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["defect"] not in ignored:
                labels[(row["file"], int(row["row_number"]))].add(row["defect"])
    out = {}
    for library in LIBRARIES:
        base = folder / library
        records = pd.read_parquet(base / "records.parquet", columns=["_record_id", "_source_file", "_row_number"])
        true_key = dict(list(csv.reader((base / "truth.csv").open(encoding="utf-8")))[1:])
        links = dict(list(csv.reader((base / f"{matcher}.csv").open(encoding="utf-8")))[1:])
        keys = set(pd.read_parquet(base / "candidates.parquet", columns=["candidate_key"])["candidate_key"])
        wrong, missed = collections.Counter(), collections.Counter()
        for record, source_file, row_number in records.itertuples(index=False):
            kinds = "+".join(sorted(labels[(source_file, int(row_number))])) or "none"
            linked, true = links.get(record), true_key.get(record)
            if linked and linked != true:
                wrong[kinds] += 1
            elif not linked and true in keys:
                missed[kinds] += 1
        out[library] = {"wrong": dict(wrong.most_common()), "missed": dict(missed.most_common())}
    return out


def namesakes_merged(folder: Path, matcher: str, truth: Path) -> int:
    """Person records ``matcher`` linked to the planted namesake of their
    true person (``truth/namesakes.csv``: same name, birth date and town)."""
    pairs = list(csv.DictReader((truth / "namesakes.csv").open(encoding="utf-8")))
    other_of = {r["person_id"]: r["namesake_of"] for r in pairs} | {r["namesake_of"]: r["person_id"] for r in pairs}
    base = folder / "population"
    true_key = dict(list(csv.reader((base / "truth.csv").open(encoding="utf-8")))[1:])
    links = dict(list(csv.reader((base / f"{matcher}.csv").open(encoding="utf-8")))[1:])
    return sum(1 for record, key in links.items() if key == other_of.get(true_key.get(record)))


def score(folder: Path, matcher: str) -> dict:
    """Precision, recall and F1 of ``matcher``'s links (``<matcher>.csv``)
    per library, against the truth: linkable records are those whose true
    key is among the candidates. ``recall_identifiable`` counts only the
    linkable records that carry something beyond a name: a birth date
    (delivered, or read from the ID) or a key of a key's length (every
    entity record: a firm's registered name is its own). The others
    (an ID that Excel turned into 4.41900E+17 on a social-insurance row,
    which has no birth-date column) say only a name and an employer; a
    name alone never links, so they wait for a governor."""
    import pandas as pd

    out = {}
    for library in LIBRARIES:
        base = folder / library
        truth = dict(csv.reader((base / "truth.csv").open(encoding="utf-8")))
        truth.pop("_record_id", None)
        keys = set(pd.read_parquet(base / "candidates.parquet", columns=["candidate_key"])["candidate_key"])
        links = dict(csv.reader((base / f"{matcher}.csv").open(encoding="utf-8")))
        links.pop("_record_id", None)
        records = pd.read_parquet(base / "records.parquet", columns=["_record_id", "name_key", "birth", "id_key"])
        # a firm's registered name is its own (the registry refuses a second in its area): every entity counts
        more_than_a_name = set(records["_record_id"] if library == "legal_person" else
                               records["_record_id"][records["birth"].notna() | records["id_key"].notna()])
        correct = sum(1 for record, key in links.items() if truth.get(record) == key)
        linkable = sum(1 for key in truth.values() if key in keys)
        identifiable = [record for record, key in truth.items() if key in keys and record in more_than_a_name]
        found = sum(1 for record in identifiable if links.get(record) == truth[record])
        precision = correct / len(links) if links else 1.0
        recall = correct / linkable if linkable else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out["person" if library == "population" else "entity"] = {
            "precision": round(precision, 6), "recall": round(recall, 6), "f1": round(f1, 6),
            "recall_identifiable": round(found / len(identifiable), 6) if identifiable else 1.0,
            "links": len(links), "correct": correct, "linkable": linkable, "identifiable": len(identifiable)}
    return out


def prepare(scale: float, seed: int, root: Path, lake: Path, folder: Path) -> dict:
    """The hard-case city at ``scale`` generated under ``root``, ingested
    and built (address, population, legal_person) into the lake ``lake``,
    and what resolution compares exported to ``folder``; returns the counts."""
    import dataclasses

    from pipelines.contracts import load_contracts
    from pipelines.dev.synth.city import HARD_CASES, generate_city
    from pipelines.ingest.load import ingest_directory
    from pipelines.libraries.build import build_libraries
    from pipelines.settings import get_settings
    from pipelines.spark import build_spark_session

    settings = dataclasses.replace(get_settings(), home=str(lake))
    summary = generate_city(root, scale=scale, seed=seed, rates=HARD_CASES)
    ingest_directory(root / "deliveries", load_contracts(), settings=settings, run_gate=False)
    spark = build_spark_session(app_name="govlake-bench-er-prepare")
    build_libraries(spark, ["address", "population", "legal_person"], settings=settings)
    counts = export(spark, settings, root / "truth", folder)
    return {"records": counts, "persons": summary.persons,
            "entities": summary.market_entities + summary.social_orgs}


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.dev.er_compare {govlake,splink} FOLDER``: one
    matcher on the exported records, as a process of its own; prints its
    wall seconds as JSON on the last line. ``prepare FOLDER --scale S
    --seed N --city DIR --lake DIR``: make the records (``prepare``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.dev.er_compare", description=main.__doc__)
    parser.add_argument("matcher", choices=("govlake", "splink", "prepare"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--city", type=Path)
    parser.add_argument("--lake", type=Path)
    args = parser.parse_args(argv)
    if args.matcher == "prepare":
        print(json.dumps(prepare(args.scale, args.seed, args.city, args.lake, args.folder), ensure_ascii=False))
        return 0
    started = time.perf_counter()
    models = run_govlake(args.folder) if args.matcher == "govlake" else run_splink(args.folder)
    seconds = time.perf_counter() - started
    if models:
        (args.folder / "splink_models.json").write_text(json.dumps(models, ensure_ascii=False, indent=1,
                                                                   default=str), encoding="utf-8")
    print(json.dumps({"matcher": args.matcher, "seconds": round(seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
