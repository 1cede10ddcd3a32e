"""The five base libraries built from a generated city with the default defect
rates, checked against the generator's ground truth: every true person and
entity exactly once, entity resolution precision and recall, conflicts found
= conflicts injected, history, and an increment equal to a full rebuild."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections import Counter
from datetime import date

import pytest
from deltalake import DeltaTable

from pipelines.contracts import get_contract, load_contracts
from pipelines.dev.evaluate import evaluate_conflicts, evaluate_resolution
from pipelines.ingest.load import ingest_directory, ingest_file
from pipelines.libraries.build import build_libraries, build_ready
from pipelines.library_specs import library_names
from pipelines.reference import id_check_char
from pipelines.settings import get_settings

THRESHOLD = 0.995


@pytest.fixture(scope="module")
def city(built_city):
    """The session's built city (conftest.py). Some tests below write to its lake; the other
    modules work on a copy of the lake as built."""
    return built_city


def current(spark, settings, library):
    return spark.read.format("delta").load(settings.lake_path("base", library)).where("is_current")


def test_every_library_builds_through_its_gate_in_dependency_order(city):
    _, settings, results = city
    assert list(results) == library_names(settings)
    assert library_names(settings).index("population") < library_names(settings).index("legal_person") \
        < library_names(settings).index("credit_rating")
    for name, result in results.items():
        assert result["status"] == "built", (name, result.get("gate"))
        assert result["rows"] > 0 and result["inserted"] == result["rows"]


@pytest.mark.parametrize("library", ["population", "legal_person"])
def test_resolution_precision_and_recall_against_ground_truth(spark, city, library):
    root, settings, _ = city
    report = evaluate_resolution(spark, library, root / "truth", settings)
    print(report)
    assert report["invented"] == 0                       # every golden key is a true subject
    assert report["subject_precision"] >= THRESHOLD
    assert report["subject_recall"] >= THRESHOLD
    assert report["link_precision"] >= THRESHOLD         # no record merged into the wrong subject
    assert report["linked"] > 0 or library == "legal_person"
    table = current(spark, settings, library)
    key = "person_id" if library == "population" else "uscc"
    assert table.count() == table.select(key).distinct().count() == report["golden_records"]


def test_unresolvable_records_wait_for_review_not_merged(spark, city):
    _, settings, results = city
    reviews = spark.read.format("delta").load(settings.lake_path("governance", "match_review"))
    population = reviews.where("library = 'population'")
    assert population.count() == results["population"]["match_review"] > 0
    assert population.where("status = 'open' and reason is not null").count() == population.count()


def test_conflicts_found_equal_conflicts_injected_and_land_on_the_governance_list(spark, city):
    root, settings, results = city
    report = evaluate_conflicts(spark, root / "truth", settings)
    assert report["injected"] > 0
    assert report["found"] == report["found_and_injected"] == report["injected"], report
    with (root / "truth" / "conflicts.csv").open(encoding="utf-8") as handle:
        injected = Counter((r["other_feed"], r["attribute"]) for r in csv.DictReader(handle))
    assert results["legal_person"]["conflicts"] == {
        "tax.taxpayer.legal_representative": injected["tax.taxpayer", "legal_representative"]}
    assert results["population"]["conflicts"] == {
        f"{feed}.{attribute}": n for (feed, attribute), n in injected.items() if attribute in ("gender", "birth_date")}
    issue = (spark.read.format("delta").load(settings.lake_path("governance", "issues"))
             .where("source = 'conflict' and status = 'open'").collect())
    library = {"legal_representative": "legal_person", "gender": "population", "birth_date": "population"}
    assert sorted((i["feed"], i["rule"], i["last_affected_rows"]) for i in issue) == sorted(
        (feed, f"conflict.{library[attribute]}.{attribute}", n) for (feed, attribute), n in injected.items())


def test_legal_person_record_carries_sources_links_and_counts(spark, city):
    root, settings, _ = city
    truth = {r["uscc"]: r for r in csv.DictReader((root / "truth" / "entities.csv").open(encoding="utf-8"))}
    rows = current(spark, settings, "legal_person").collect()
    for row in rows:
        true = truth[row["uscc"]]
        assert row["entity_name"] == true["name"]
        assert row["town_code"] == true["town_code"]
        assert row["domicile_address_code"] == true["address_code"]
        assert row["entity_name_source"] == true["source_feed"]
    assert sum(r["legal_representative_found"] for r in rows) / len(rows) >= 0.99
    assert sum((r["tax_credit_grade"] or "") == truth[r["uscc"]]["tax_credit_grade"] for r in rows) / len(rows) > 0.99
    assert any(r["insured_employees"] > 0 for r in rows)
    assert {r["industry_section"] for r in rows} >= {"C", "F", "S"}


def test_population_addresses_and_marital_status(spark, city):
    root, settings, _ = city
    truth = {r["person_id"]: r for r in csv.DictReader((root / "truth" / "persons.csv").open(encoding="utf-8"))}
    rows = current(spark, settings, "population").where("is_known_to_authority").collect()
    codes = [(r["hukou_address_code"] or r["residence_address_code"], truth[r["person_id"]]["address_code"])
             for r in rows]
    assert sum(found == true for found, true in codes) / len(codes) >= 0.99
    assert {r["marital_status"] for r in rows} >= {"已婚", None}
    assert all(r["residence_town_source"] in (None, "psb.residence_permit") for r in rows)


def test_address_match_rates_are_reported_per_feed(spark, city):
    _, settings, results = city
    rates = {r["feed"]: r for r in results["address"]["report"]}
    assert {"psb.hukou", "psb.residence_permit", "amr.business_registration"} <= set(rates)
    for rate in rates.values():
        assert rate["matched"] <= rate["rows"] and rate["match_rate"] >= 0.99
    assert current(spark, settings, "address").where("grid_code is null").count() == 0


def test_standard_address_keys_are_kept_until_the_standard_addresses_change(spark, city):
    """The matching keys are computed once per live standard-address
    deliveries and code (the signature in the commit), and equal computing
    them afresh; a table whose signature differs is recomputed, not read."""
    from deltalake import DeltaTable

    from pipelines.lake.delta import read_silver
    from pipelines.libraries.address import address_keys_from_lake, standard_address_keys
    from pipelines.libraries.golden import latest_per_key
    from pipelines.libraries.resolution import live_load_ids

    _, settings, _ = city
    path = settings.lake_path("state", "address_keys")
    live = live_load_ids(settings)["nr.standard_address"]
    fresh = standard_address_keys(latest_per_key(
        read_silver(spark, "nr.standard_address", settings, live), "address_code",
        ["town_name", "community", "street", "house_number"]).withColumnRenamed("_key", "address_code"))
    version = DeltaTable(path).version()
    kept = address_keys_from_lake(spark, settings)
    assert DeltaTable(path).version() == version                    # read, not computed again
    assert sorted(map(tuple, kept.collect())) == sorted(map(tuple, fresh.collect()))
    assert set(live) <= set(DeltaTable(path).history(1)[0]["userMetadata"].split("+"))
    # other standard addresses (another signature): recomputed; the stale rows are gone
    spark.createDataFrame([("假地址", "X1")], "match_key string, address_code string").write.format(
        "delta").mode("overwrite").option("userMetadata", "another signature").save(path)
    again = address_keys_from_lake(spark, settings)
    assert DeltaTable(path).version() == version + 2
    assert sorted(map(tuple, again.collect())) == sorted(map(tuple, fresh.collect()))


def test_credit_records_ratings_and_licences_follow_their_sources(spark, city):
    root, settings, _ = city
    records = current(spark, settings, "credit_record")
    assert {r[0] for r in records.select("record_type").distinct().collect()} == {
        "abnormal_operation", "administrative_penalty", "dishonest_debtor", "tax_credit_grade", "inspection_result"}
    ratings = current(spark, settings, "credit_rating")
    # each "double random" inspection of the results feed is one credit record (one per task and entity, not
    # per inspector), with its result; a problem found within a year counts in the grade
    inspected = {(t["task_number"], t["uscc"]): t for t in csv.DictReader(
        (root / "truth" / "last_inspections.csv").open(encoding="utf-8"))}
    kept = {r["record_id"]: r for r in records.where("record_type = 'inspection_result'").collect()}
    assert inspected and set(kept) == {f"inspection_result:{task}:{uscc}" for task, uscc in inspected}
    for (task, uscc), truth in inspected.items():
        record = kept[f"inspection_result:{task}:{uscc}"]
        assert (record["subject_id"], str(record["started_on"]), record["status"]) == (
            uscc, truth["inspected_date"], truth["result"])
    rated = {r["uscc"]: r for r in ratings.collect()}
    for (_, uscc), truth in inspected.items():
        if uscc in rated:
            on = rated[uscc]["rated_on"]           # add_months(as_of, -12): 29 February falls back to the 28th
            year_before = (on.replace(day=28) if (on.month, on.day) == (2, 29) else on).replace(year=on.year - 1)
            counts = truth["result"] in ("发现问题待后续处理", "不配合检查情节严重", "通过登记的住所(经营场所)无法联系") \
                and date.fromisoformat(truth["inspected_date"]) >= year_before
            assert any(r.startswith("inspection_problem_unresolved") for r in rated[uscc]["reasons"]) == counts, uscc
    assert {r[0] for r in ratings.select("risk_grade").distinct().collect()} <= {"A", "B", "C", "D"}
    revoked = ratings.where("registration_status = '吊销'").collect()
    assert revoked and all(r["risk_grade"] == "D" for r in revoked)
    licences = current(spark, settings, "e_licence")
    deregistered = {r["uscc"] for r in csv.DictReader((root / "truth" / "entities.csv").open(encoding="utf-8"))
                    if r["registration_status"] in ("注销", "吊销")}
    for row in licences.where("licence_type = 'business_licence'").collect():
        assert (row["status"] == "revoked") == (row["holder_id"] in deregistered)
    # derived libraries are dated by the build (``now``), not by the machine's clock, and read only the
    # loads the build gives them (the live ones)
    from pipelines.libraries.credit import credit_ratings
    from pipelines.libraries.licence import e_licences

    later = date(2100, 1, 1)
    assert [r[0] for r in credit_ratings(spark, settings, None, later).select("rated_on").distinct().collect()] \
        == [later]
    dated = e_licences(spark, settings, None, later)
    assert dated.where("status = 'expired'").count() > 0
    assert dated.where(f"expires_on < date'{later}' and status <> 'expired' and status <> 'revoked'").count() == 0
    none_live = e_licences(spark, settings, None, later, {"amr.food_licence": [], "hud.construction_permit": []})
    assert {r[0] for r in none_live.select("licence_type").distinct().collect()} == {"business_licence"}


def test_catalog_declares_every_column_of_every_library(spark, city):
    """Unlisted columns would be readable by everyone: the catalog must know them all."""
    from pipelines.serving.catalog import resources_from_libraries

    _, settings, _ = city
    resources = resources_from_libraries(settings)
    for name in library_names(settings):
        table = spark.read.format("delta").load(settings.lake_path("base", name))
        assert {c.name for c in resources[f"base.{name}"].columns} == set(table.columns), name


DAY_TWO_MOVERS = 5


def day_two_movers(truth_rows: list[dict], changed: int = DAY_TWO_MOVERS) -> list[dict]:
    """The residents the day-two hukou delivery moves out (迁出)."""
    return [r for r in truth_rows if r["registration"] == "hukou" and r["population_status"] == "正常"][:changed]


def _day_two_hukou(path, truth_rows, changed: int, new: int) -> tuple[set, set]:
    """A GBK hukou delivery: ``changed`` known hukou persons moved out, ``new`` persons."""
    known = {r["person_id"] for r in truth_rows}
    movers = day_two_movers(truth_rows, changed)
    newcomers, sequence = [], 101
    while len(newcomers) < new:
        body = f"441900199901{sequence % 28 + 1:02d}{sequence:03d}"[:17]
        candidate = body + id_check_char(body)
        sequence += 2
        if candidate not in known:
            newcomers.append(candidate)
    headers = ["身份证号", "姓名", "性别", "民族", "出生日期", "户籍地址", "户号", "与户主关系", "登记日期", "人口状态"]
    with path.open("w", encoding="gb18030", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(headers)
        for r in movers:
            out.writerow([r["person_id"], r["full_name"], r["gender"], r["ethnicity"], r["birth_date"],
                          "东莞市南城街道鸿福路1号", "004000000001", "户主", "2020-01-01", "迁出"])
        for person_id in newcomers:
            gender = "男" if int(person_id[16]) % 2 else "女"
            birth = f"{person_id[6:10]}-{person_id[10:12]}-{person_id[12:14]}"
            out.writerow([person_id, "新市民", gender, "汉族", birth,
                          "东莞市南城街道鸿福路1号", "004000000002", "户主", "2026-11-29", "正常"])
    return {r["person_id"] for r in movers}, set(newcomers)


def test_a_days_delivery_changes_only_its_records_and_equals_a_full_rebuild(spark, city, tmp_path):
    root, settings, _ = city
    path = settings.lake_path("base", "population")
    before = current(spark, settings, "population").select("person_id", "record_hash").collect()
    truth_rows = list(csv.DictReader((root / "truth" / "persons.csv").open(encoding="utf-8")))
    delivery = tmp_path / "hukou_20261129.csv"
    movers, newcomers = _day_two_hukou(delivery, truth_rows, changed=DAY_TWO_MOVERS, new=3)
    assert ingest_file(get_contract("psb.hukou"), delivery, settings=settings, run_gate=False).status == "loaded"

    version_before = DeltaTable(path).version()
    result = build_libraries(spark, ["population"], settings=settings)[0]
    assert (result["changed"], result["inserted"], result["removed"]) == (5, 3, 0)
    assert result["unchanged"] == len(before) - 5
    table = spark.read.format("delta").load(path)
    assert table.count() == len(before) + 5 + 3                  # 5 closed versions kept, 5 + 3 new
    closed = {r["person_id"] for r in table.where("not is_current").collect()}
    assert closed == movers
    now = {r["person_id"]: r for r in table.where("is_current").collect()}
    assert all(now[p]["population_status"] == "迁出" for p in movers) and newcomers <= set(now)
    before_hash = {r["person_id"]: r["record_hash"] for r in before}
    assert all(now[p]["record_hash"] == h for p, h in before_hash.items() if p not in movers)
    # Delta time travel: the version before the build's commit (the day's keys replaced at once) is still there
    assert result["version"] == version_before + 1
    old = spark.read.format("delta").option("versionAsOf", version_before).load(path).where("is_current")
    assert old.count() == len(before) and not old.where(old.person_id.isin(*newcomers)).count()

    # a full rebuild from the same silver into an empty gold layer gives the same current records
    rebuild_home = tmp_path / "rebuild"
    for part in ("silver", "governance"):
        shutil.copytree(settings.local_lake_path(part), rebuild_home / part)
    shutil.rmtree(rebuild_home / "governance" / "conflicts", ignore_errors=True)
    rebuilt_settings = dataclasses.replace(settings, home=str(rebuild_home))
    rebuilt = build_libraries(spark, ["population"], settings=rebuilt_settings)[0]
    assert rebuilt["inserted"] == len(now)
    full = {r["person_id"]: r["record_hash"] for r in current(spark, rebuilt_settings, "population").collect()}
    assert full == {p: r["record_hash"] for p, r in now.items()}


def test_a_blocked_build_leaves_its_table_and_never_releases_its_dependants(spark, city, tmp_path):
    """A library whose gate blocks, built two at once as `govlake build`
    runs: its table and its dependant's stay as they were, and the dependant
    is skipped naming it, never started on the blocked records (a library is
    released to its dependants only once its table is committed)."""
    _, settings, _ = city
    shutil.copytree(settings.home, tmp_path / "lake")
    shutil.copytree(settings.quality_dir, tmp_path / "quality")
    suite = tmp_path / "quality" / "libraries" / "legal_person.yaml"
    suite.write_text(suite.read_text(encoding="utf-8") + (
        "  - {rule: uscc.never, type: expect_column_values_to_match_regex, kwargs: {column: uscc, regex: '^never$'},\n"
        "     blocking: true}\n"), encoding="utf-8")
    (tmp_path / "quality" / "suites" / "base.legal_person.json").unlink()     # rendered from the YAML: made again
    lake = dataclasses.replace(settings, home=str(tmp_path / "lake"), quality_dir=tmp_path / "quality",
                               build_workers=2)
    versions = {name: DeltaTable(lake.lake_path("base", name)).version() for name in ("legal_person", "e_licence")}
    results, unready = build_ready(lambda: spark, ["legal_person", "e_licence"], lake)
    assert not unready
    outcome = {r["library"]: r for r in results}
    assert outcome["legal_person"]["status"] == "blocked"
    assert any(failure.startswith("expect_column_values_to_match_regex(uscc): ") and failure.endswith("(100.0%)")
               for failure in outcome["legal_person"]["gate"]["failures"]), outcome["legal_person"]["gate"]
    assert outcome["e_licence"] == {"library": "e_licence", "status": "skipped", "rows": 0,
                                    "reason": "upstream base.legal_person not built in this run"}
    assert {name: DeltaTable(lake.lake_path("base", name)).version() for name in versions} == versions


def test_gender_and_birth_date_come_from_the_validated_id_number(spark, city):
    """Issue 20: for every person with a valid ID number, golden gender and
    birth_date equal the truth (0 wrong, 0 missing) and say they come from
    the ID number; a rescued row never re-admits a contradicting value."""
    root, settings, _ = city
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        truth = {r["person_id"]: (r["gender"], r["birth_date"]) for r in csv.DictReader(handle)}
    rows = current(spark, settings, "population").select(
        "person_id", "gender", "birth_date", "gender_source", "birth_date_source").collect()
    valid = [r for r in rows if r["person_id"] in truth
             and r["person_id"][:17] + id_check_char(r["person_id"][:17]) == r["person_id"]]
    assert len(valid) > 0.99 * len(rows)
    wrong_gender = [(r["person_id"], r["gender"]) for r in valid if r["gender"] != truth[r["person_id"]][0]]
    wrong_birth = [(r["person_id"], r["birth_date"]) for r in valid
                   if r["birth_date"] is None or r["birth_date"].isoformat() != truth[r["person_id"]][1]]
    assert not wrong_gender, (len(wrong_gender), wrong_gender[:5])
    assert not wrong_birth, (len(wrong_birth), wrong_birth[:5])
    assert {r["gender_source"] for r in valid} == {r["birth_date_source"] for r in valid} == {"id_number"}


def test_planted_id_disagreements_are_open_conflicts_against_the_delivering_bureau(spark, city):
    """Issue 20: every row the generator planted with a gender (or birth date)
    that contradicts its own ID number, quarantined at ingest, is an open
    conflict against the feed that delivered it, with the ID number as the
    authority, and counts on that bureau's governance list."""
    root, settings, _ = city
    attribute_of = {"id_number.gender_parity": "gender", "id_number.birth_date_mismatch": "birth_date"}
    with (root / "truth" / "defects.csv").open(encoding="utf-8") as handle:
        planted = {(r["true_value"], attribute_of[r["rule"]], r["feed"]) for r in csv.DictReader(handle)
                   if r["rule"] in attribute_of}
    assert planted
    rows = (spark.read.format("delta").load(settings.lake_path("governance", "conflicts"))
            .where("library = 'population' and resolved_at is null").collect())
    found = {(r["subject"], r["attribute"], r["other_feed"]): r for r in rows}
    assert planted <= set(found), sorted(planted - set(found))[:5]
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        gender = {r["person_id"]: r["gender"] for r in csv.DictReader(handle)}
    for subject, attribute, feed in planted:
        row = found[subject, attribute, feed]
        assert row["authoritative_feed"] == "id_number" and row["other_column"] == attribute
        if attribute == "gender":
            assert row["authoritative_value"] == gender[subject] != row["other_value"]
    per_bureau = Counter(feed for _, _, feed in planted)
    print({"planted_per_feed": dict(per_bureau), "open_id_conflicts": len(rows)})
    issues = {(i["feed"], i["rule"]): i["last_affected_rows"] for i in
              spark.read.format("delta").load(settings.lake_path("governance", "issues"))
              .where("source = 'conflict' and status = 'open'").collect()}
    for feed, n in per_bureau.items():
        assert issues[feed, "conflict.population.gender"] == n


def test_is_deceased_equals_the_truth_where_the_truth_knows(spark, city):
    """Issue 17 item 5: true with a death record, false with a live
    registration (hukou 正常, a residence permit valid on the build date) and
    no death record, null only when nothing is known."""
    root, settings, _ = city
    rows = current(spark, settings, "population").select("person_id", "is_deceased", "valid_from").collect()
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as handle:
        truth = {r["person_id"]: r for r in csv.DictReader(handle)}

    def expected(person: dict, built: date):
        """As of the build that wrote the current version (its valid_from)."""
        if person["death_date"] or person["population_status"] == "死亡":
            return True
        if person["registration"] == "hukou":
            return False if person["population_status"] == "正常" else None
        until = person["permit_valid_until"]
        return False if not until or date.fromisoformat(until) >= built else None

    # the day-two test moves a few residents out, after the truth was written (whether it ran first or not)
    moved = {r["person_id"] for r in day_two_movers(list(truth.values()))}
    pairs = [(r["person_id"], r["is_deceased"], expected(truth[r["person_id"]], r["valid_from"].date())) for r in rows
             if r["person_id"] in truth and r["person_id"] not in moved]
    counts = Counter((found, wanted) for _, found, wanted in pairs)
    print({"is_deceased (found, truth)": {f"{k[0]}, {k[1]}": v for k, v in sorted(counts.items(), key=str)}})
    wrong = [(p, found, wanted) for p, found, wanted in pairs if found != wanted]
    assert counts[True, True] > 0 and counts[False, False] > 0
    assert not wrong, (len(wrong), wrong[:10])


INCREMENT_DAYS = 3


def _all_rows(spark, settings, library):
    """Every version of every record, as comparable tuples (sorted)."""
    frame = spark.read.format("delta").load(settings.lake_path("base", library))
    return sorted(tuple(str(v) for v in row) for row in frame.select(*sorted(frame.columns)).collect())


def _candidates_equal_a_fresh_normalisation(spark, settings, library) -> None:
    """Assert that the builds left the maintained candidate table of
    ``library`` complete (reading it writes nothing), with a marker for
    exactly the live loads of its candidate feeds and the rows normalising
    them afresh gives."""
    from functools import reduce

    from deltalake import DeltaTable

    from pipelines.lake.delta import read_silver
    from pipelines.libraries.incremental import build_digest
    from pipelines.libraries.resolution import candidate_rows, candidates_path, live_load_ids, maintained_candidates
    from pipelines.library_specs import load_library_spec

    spec = load_library_spec(library, settings)
    live = live_load_ids(settings)
    path = candidates_path(library, settings, build_digest(spec, settings))
    version = DeltaTable(path).version()
    kept = maintained_candidates(spark, spec, settings, live)
    assert DeltaTable(path).version() == version
    fresh = reduce(lambda a, b: a.unionByName(b), [
        candidate_rows(spec, feed, read_silver(spark, feed, settings, live[feed]))
        for feed in spec.resolution.candidates if live.get(feed)]).where("name_key is not null")
    assert sorted(map(tuple, kept.collect())) == sorted(map(tuple, fresh.distinct().collect()))   # kept distinct
    loads = {r[0] for r in spark.read.format("delta").load(path).select("_load_id").distinct().collect()}
    assert loads == {load for feed in spec.resolution.candidates for load in live.get(feed, [])}


# a person whose first delivery (day 1) carries an ID with a wrong check
# character and whose valid ID arrives on day 2: the day-1 record waits for
# review, and day 2's incremental build has to match it again (its block changed)
LATE_NAME, LATE_BIRTH, LATE_TOWN = "测试晚到", "19310203", "谢岗镇"
LATE_ID = f"441900{LATE_BIRTH}991"
LATE_ID += id_check_char(LATE_ID)


def _plant_late_candidate(days_root) -> None:
    """Append the late person's hukou rows to days 1 (bad ID) and 2 (valid ID)."""
    wrong = LATE_ID[:-1] + ("0" if LATE_ID[-1] != "0" else "1")
    for day, id_number in ((1, wrong), (2, LATE_ID)):
        (path,) = (days_root / "days" / str(day) / "psb" / "hukou").glob("*.csv")
        birth = f"{LATE_BIRTH[:4]}-{LATE_BIRTH[4:6]}-{LATE_BIRTH[6:]}"
        row = [id_number, LATE_NAME, "男", "汉族", birth, f"东莞市{LATE_TOWN}测试路1号", "199900000001", "户主",
               birth, "正常"]
        with path.open("ab") as handle:
            handle.write((",".join(row) + "\r\n").encode("gb18030"))


def _resolution_rows(spark, settings, table: str) -> list[tuple]:
    """governance.<table> (entity_links, match_review) as sorted tuples, without ``found_at``
    (an open review keeps the time it was first found; a full build finds it again)."""
    frame = spark.read.format("delta").load(settings.lake_path("governance", table))
    columns = sorted(c for c in frame.columns if c != "found_at")
    return sorted(tuple(str(v) for v in row) for row in frame.select(*columns).collect())


def test_daily_change_deliveries_built_incrementally_equal_full_rebuilds(spark, city, tmp_path):
    """Issue 15 items 1-2: three days of generated change deliveries (births,
    deaths, moves, new permits, new and dissolved firms; on day 3, 1
    December, the month's taxpayer snapshot, which supersedes day 0's
    register and is built from its change rows) applied to two copies
    of the built city, one built incrementally and one with --full at the
    same build times: every current and historical row of base.population,
    base.legal_person and the derived credit_record, credit_rating,
    e_licence, enterprise_profile and supervision_risk (built from their
    touched keys: new rows, upstream key changes, the date) is the same, and so are governance.conflicts; the
    incremental builds recomputed only the touched keys, and the day's truth
    is in the library."""
    from datetime import timedelta

    from deltalake import DeltaTable

    from pipelines.dev.synth.days import generate_days
    from pipelines.libraries.incremental import compared_key_changes, logged_key_changes
    from pipelines.settings import utc_now

    root, settings, _ = city
    days_root = tmp_path / "city"
    shutil.copytree(root / "truth", days_root / "truth")
    # the month's taxpayer snapshot (day 3 is 1 December) starts from day 0's
    shutil.copytree(root / "deliveries" / "tax", days_root / "deliveries" / "tax")
    summary = generate_days(days_root, INCREMENT_DAYS, scale=0.002, seed=3)
    _plant_late_candidate(days_root)
    assert all(summary.events[event] >= INCREMENT_DAYS for event in
               ("birth", "death", "move", "new_permit", "new_firm", "dissolved_firm"))
    assert all(summary.events[event] >= 1 for event in
               ("taxpayer_registered", "taxpayer_moved_out", "tax_grade_changed"))
    lakes = {}
    for mode in ("incremental", "full"):
        home = tmp_path / mode
        for part in ("silver", "governance", "base", "state", "raw", "changes"):
            if settings.local_lake_path(part).exists():
                shutil.copytree(settings.local_lake_path(part), home / part)
        lakes[mode] = dataclasses.replace(settings, home=str(home))
    golden, derived = ["population", "legal_person"], ["credit_record", "credit_rating", "e_licence",
                                                        "enterprise_profile", "supervision_risk"]
    libraries = golden + derived
    touched = Counter()
    started = utc_now()
    for day in range(1, INCREMENT_DAYS + 1):
        now = started + timedelta(days=day)
        built = {}
        versions_before = {library: DeltaTable(lakes["incremental"].lake_path("base", library)).version()
                           for library in libraries}
        for mode, lake in lakes.items():
            loads = ingest_directory(days_root / "days" / str(day), load_contracts(), settings=lake, run_gate=False)
            assert {r.status for r in loads} == {"loaded"}, [(r.source_file, r.status) for r in loads]
            snapshots = [r for r in loads if r.feed == "tax.taxpayer"]
            if snapshots:   # it supersedes day 0's register; what differs went to the change table
                assert len(snapshots[0].superseded_load_ids) == 1
                assert 0 < snapshots[0].changes["added"] < snapshots[0].rows_loaded // 10
            if mode == "full":
                results = build_libraries(spark, libraries, settings=lake, now=now, full=True)
            else:   # as `govlake build` runs: two at once (credit_record and e_licence), a session each
                results, unready = build_ready(lambda: spark, libraries, dataclasses.replace(lake, build_workers=2),
                                               now=now)
                assert not unready
            built[mode] = {r["library"]: r for r in results}
        for library in libraries:
            increment, full = built["incremental"][library], built["full"][library]
            assert (increment["mode"], full["mode"]) == ("incremental", "full"), increment["mode_reason"]
            assert (0 if library in derived else 1) <= increment["touched_keys"] < full["rows"] // 10
            touched[library] += increment["touched_keys"]
            counts = ("inserted", "changed", "removed", "unchanged")
            assert [increment[c] for c in counts] == [full[c] for c in counts]
            assert _all_rows(spark, lakes["incremental"], library) == _all_rows(spark, lakes["full"], library)
            # the day's keys are replaced in one commit: their old current rows deleted with deletion
            # vectors, no data file rewritten (copy-on-write rewrote every file holding a touched key, so
            # about the whole table each day); their closed and new versions appended; a build that
            # changed nothing commits nothing
            commits = [c for c in DeltaTable(lakes["incremental"].lake_path("base", library)).history()
                       if c["version"] > versions_before[library]]
            if increment["inserted"] or increment["changed"] or increment["removed"]:
                [replaced] = commits
                assert replaced["operation"] == "WRITE"
                assert int(replaced["operationMetrics"]["numDeletedRows"]) == (increment["changed"]
                                                                            + increment["removed"])
                # only the closed and new versions were written: no unchanged row was copied
                assert _rows_written(lakes["incremental"].lake_path("base", library), replaced["version"]) == (
                    2 * increment["changed"] + increment["removed"] + increment["inserted"])
            else:
                assert increment["version"] == versions_before[library]
        conflicts = [sorted(tuple(map(str, r)) for r in spark.read.format("delta")
                            .load(lake.lake_path("governance", "conflicts")).collect()) for lake in lakes.values()]
        assert conflicts[0] == conflicts[1]
        # entity resolution matched only the records that could have a new result, with the same outcome
        for table in ("entity_links", "match_review"):
            assert _resolution_rows(spark, lakes["incremental"], table) == _resolution_rows(spark, lakes["full"], table)
        links, reviews = ([r.asDict() for r in spark.read.format("delta").load(
            lakes["incremental"].lake_path("governance", table)).where("library = 'population'").collect()]
            for table in ("entity_links", "match_review"))
        late_links = [(r["method"], r["score"]) for r in links if r["key"] == LATE_ID]
        late_reviews = [r["reason"] for r in reviews if (r["record"] or {}).get("name_key") == LATE_NAME]
        if day == 1:    # nobody born that day in Xiegang has the name: no candidate to link
            assert not late_links and len(late_reviews) == 1
            assert late_reviews[0].startswith(("no candidate shares a block", "the best candidate contradicts it"))
        else:       # day 2's valid ID links the day-1 record (day 2's own row is keyed: no link row): the
            # only one of the name (4), its birth date (2), town (1) and house (1), its key's 17 digits (4: only
            # the check character was wrong)
            assert not late_reviews and late_links == [("person:scored", 12)], (late_reviews, late_links)
        # the persons who appeared or left today, as legal_person read them: population's key-change
        # log covers the day and names exactly the keys comparing the two versions finds
        logged = logged_key_changes(spark, "population", versions_before["population"], lakes["incremental"])
        compared = compared_key_changes(spark, "population", "person_id", versions_before["population"],
                                        lakes["incremental"])
        assert logged is not None and sorted(logged.collect()) == sorted(compared.collect()) != []
    # resolution's candidates, kept per load across the days (the taxpayer snapshot's predecessor
    # deleted), equal normalising every live row of the candidate feeds afresh
    for library in golden:      # kept per load, and made afresh by every --full build
        _candidates_equal_a_fresh_normalisation(spark, lakes["incremental"], library)
        _candidates_equal_a_fresh_normalisation(spark, lakes["full"], library)
    # built again the same day with nothing new delivered: nothing is recomputed, no table version is made
    again = build_libraries(spark, libraries, settings=lakes["incremental"], now=now)
    assert [(r["mode"], r["version"]) for r in again] == [("unchanged", built["incremental"][r["library"]]["version"])
                                                          for r in again], [r["mode_reason"] for r in again]
    # ... and reports the current rows its last build counted, which are the table's
    assert {r["library"]: r["rows"] for r in again} == {
        r["library"]: spark.read.format("delta").load(lakes["incremental"].lake_path("base", r["library"]))
        .where("is_current").count() for r in again}
    # the derived libraries were built from the touched keys alone (and equal the full builds above)
    assert all(touched[library] for library in derived), touched
    # base.address's match-rate report measures each delivery once (day 0's were measured when the city
    # was built): after three days it equals the report measured over all of silver at once
    from pipelines.lake.delta import read_table
    from pipelines.libraries.address import address_keys_from_lake, address_match_report, report_after_build

    lake = lakes["incremental"]
    reported = report_after_build(spark, lake)
    rates, unmatched = address_match_report(spark, address_keys_from_lake(spark, lake), lake)
    assert sorted((r["feed"], r["column_name"], r["rows"], r["matched"]) for r in reported) == sorted(
        (r["feed"], r["column_name"], r["rows"], r["matched"]) for r in rates.collect())
    assert sorted(map(tuple, read_table(spark, "unmatched_addresses", lake).collect())) == sorted(
        map(tuple, unmatched.collect()))
    measured = spark.read.format("delta").load(lake.lake_path("state", "address_report", "rates"))
    assert measured.count() == measured.select("feed", "load_id").distinct().count() > 7

    persons = {r["person_id"]: r for r in current(spark, lakes["incremental"], "population").collect()}
    entities = {r["uscc"]: r for r in current(spark, lakes["incremental"], "legal_person").collect()}
    events = [row for day in range(1, INCREMENT_DAYS + 1)
              for row in csv.DictReader((days_root / "truth" / f"day-{day}" / "events.csv").open(encoding="utf-8"))]
    checked = Counter()
    for event in events:
        subject = event["subject"]
        if event["event"] in ("birth", "new_permit") and subject in persons:
            checked[event["event"]] += 1
        elif event["event"] == "death" and subject in persons:
            assert persons[subject]["is_deceased"] is True, subject
            checked["death"] += 1
        elif event["event"] == "dissolved_firm" and subject in entities:
            assert entities[subject]["registration_status"] == "注销", subject
            checked["dissolved_firm"] += 1
        elif event["event"] == "new_firm" and subject in entities:
            assert entities[subject]["legal_representative_id"] == event["detail"]
            checked["new_firm"] += 1
        elif event["event"] == "taxpayer_registered" and subject in entities:
            assert entities[subject]["tax_credit_grade"] == "M", subject
            checked[event["event"]] += 1
        elif event["event"] == "tax_grade_changed" and subject in entities:
            assert entities[subject]["tax_credit_grade"] == event["detail"], subject
            checked[event["event"]] += 1
        elif event["event"] == "taxpayer_moved_out" and subject in entities:
            # gone from the register: the snapshot superseded the row that said otherwise
            assert entities[subject]["tax_registration_status"] is None, subject
            assert entities[subject]["tax_credit_grade"] is None, subject
            checked[event["event"]] += 1
        elif event["event"] == "taxpayer_deregistered" and subject in entities:
            assert entities[subject]["tax_registration_status"] == "注销", subject
            checked[event["event"]] += 1
    # a subject whose key a defect mangled may be missing; the others are all there
    for event in ("birth", "new_permit", "death", "dissolved_firm", "new_firm", "taxpayer_registered",
                  "taxpayer_moved_out", "tax_grade_changed", "taxpayer_deregistered"):
        assert checked[event] >= summary.events.get(event, 0) - 1, (event, checked, summary.events)
    # a commit no build made that changes rows (here an operator's DELETE) makes the next build count
    # the current rows again instead of reporting the last build's count
    from delta.tables import DeltaTable as SparkTable

    licences = lakes["incremental"].lake_path("base", "e_licence")
    key = spark.read.format("delta").load(licences).where("is_current").select("licence_key").first()[0]
    rows = spark.read.format("delta").load(licences).where("is_current").count()
    SparkTable.forPath(spark, licences).delete(f"is_current AND licence_key = '{key}'")
    [after] = build_libraries(spark, ["e_licence"], settings=lakes["incremental"], now=now)
    assert (after["mode"], after["rows"]) == ("unchanged", rows - 1), after


def _rows_written(path: str, version: int) -> int:
    """Rows in the data files the commit at ``version`` of the Delta table at
    ``path`` wrote, from the commit's own log entry (a file kept in place
    with a new deletion vector is not written again): a commit that
    rewrote a file (copy-on-write) wrote its unchanged rows again."""
    import json
    from pathlib import Path

    actions = [json.loads(line) for line in (Path(path) / "_delta_log" / f"{version:020d}.json").open()]
    removed = {a["remove"]["path"] for a in actions if "remove" in a}
    return sum(json.loads(a["add"]["stats"])["numRecords"] for a in actions
               if "add" in a and a["add"]["path"] not in removed)


def test_upstream_key_changes_without_a_covering_log_include_the_keys_that_left(spark, tmp_path):
    """A derived library reads an upstream's changed keys from its key-change
    log; where the log misses a commit (a merge that died before its entry),
    every key current then or now counts, so a key that left is still
    recomputed (and closed). With no commit since, no log is needed."""
    from pyspark.sql import functions as F

    from pipelines.libraries.golden import merge_with_history
    from pipelines.libraries.incremental import changed_upstream_keys, logged_key_changes

    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    path = settings.lake_path("base", "legal_person")
    merge_with_history(spark, spark.createDataFrame([("A", "x"), ("B", "y"), ("C", "z")], "uscc string, name string"),
                       path, "uscc")
    before = DeltaTable(path).version()
    assert logged_key_changes(spark, "legal_person", before, settings).collect() == []     # no log, no change
    # B leaves and C changes, and the merge writes no log entry
    merge_with_history(spark, spark.createDataFrame([("C", "z2")], "uscc string, name string"), path, "uscc",
                       touched=spark.createDataFrame([("B",), ("C",)], "_key string"))
    assert logged_key_changes(spark, "legal_person", before, settings) is None
    keys = {r[0] for r in changed_upstream_keys(spark, "legal_person", "uscc", before, settings).collect()}
    assert keys == {"A", "B", "C"}
    # with the log, only what changed
    log = settings.lake_path("state", "key_changes", "legal_person")
    version = DeltaTable(path).version()
    merge_with_history(spark, spark.createDataFrame([("A", "x2")], "uscc string, name string"), path, "uscc",
                       touched=spark.createDataFrame([("A",)], "_key string"), key_changes=log)
    logged = changed_upstream_keys(spark, "legal_person", "uscc", version, settings)
    assert {r[0] for r in logged.collect()} == {"A"}
    assert spark.read.format("delta").load(log).where(F.col("change") == "changed").count() == 1
