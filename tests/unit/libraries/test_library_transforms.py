"""Pure library transforms on tiny inline frames (moved from
tests/integration/test_libraries.py: they need no ingested city)."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import functions as F

from pipelines.settings import get_settings


def test_address_matching_and_grid_assignment_on_tiny_frames(spark):
    from pipelines.libraries.address import assign_grid_cells, match_addresses, standard_address_keys

    standard = spark.createDataFrame([
        ("A1", "南城街道", "鸿福社区", "鸿福路", "99号"), ("A2", "南城街道", "元美社区", "鸿福路", "101号"),
        ("A3", "东城街道", "东泰社区", "东城路", "1号"), ("A4", "东城街道", "花园村", "东城路", "1号")],
        "address_code string, town_name string, community string, street string, house_number string")
    keys = standard_address_keys(standard)
    texts = spark.createDataFrame([
        ("广东省东莞市南城街道鸿福社区鸿福路99号",), ("东莞市南城街道鸿福路９９号,3栋",), ("东莞市 南城街道鸿福路101号2栋",),
        ("东莞市东城街道东城路1号",), ("东莞市东城街道花园村东城路1号",), ("东莞市南城街道不存在路1号",)], "text string")
    matched = {r["text"]: r["code"] for r in match_addresses(texts, "text", keys, "code").collect()}
    found = [matched[r["text"]] for r in texts.collect()]
    # the short form of A3/A4 names two addresses: ambiguous, so unmatched; the full form matches
    assert found == ["A1", "A1", "A2", None, "A4", None]
    cells = spark.createDataFrame([
        ("G1", "441900004", "POLYGON((113.0 22.0, 113.5 22.0, 113.5 22.5, 113.0 22.5, 113.0 22.0))",
         113.0, 113.5, 22.0, 22.5),
        ("G2", "441900004", "POLYGON((113.5 22.0, 114.0 22.0, 113.5 22.5, 113.5 22.0))", 113.5, 114.0, 22.0, 22.5)],
        "grid_code string, town_code string, boundary_wkt string, min_longitude double, max_longitude double, "
        "min_latitude double, max_latitude double")
    points = spark.createDataFrame([("P1", "441900004", 113.2, 22.2), ("P2", "441900004", 113.6, 22.1),
                                    ("P3", "441900004", 113.9, 22.4)],
                                   "address_code string, town_code string, longitude double, latitude double")
    assigned_frame = assign_grid_cells(points, cells)
    assigned = {r["address_code"]: r["grid_code"] for r in assigned_frame.collect()}
    assert assigned == {"P1": "G1", "P2": "G2", "P3": None}   # P3 is in G2's box but outside its triangle
    # the ray casting (a higher-order function, interpreted) is tested only where the box holds the point
    condition = next(line for line in assigned_frame._jdf.queryExecution().executedPlan().toString().splitlines()
                     if "aggregate(" in line)
    assert condition.index("min_longitude") < condition.index("aggregate("), condition


def test_credit_rating_rules_on_a_tiny_frame(spark):
    from pipelines.libraries.credit import load_rule_set, rate_entities

    rule_set = load_rule_set(get_settings())
    entities = spark.createDataFrame([("U1", "甲", "存续"), ("U2", "乙", "存续"), ("U3", "丙", "吊销"),
                                      ("U4", "丁", "注销"), ("U5", "戊", "存续")],
                                     "uscc string, entity_name string, registration_status string")
    schema = ("record_type string, subject_type string, subject_id string, started_on date, ended_on date, "
              "status string, grade string")
    records = spark.createDataFrame([
        ("tax_credit_grade", "legal_person", "U1", date(2025, 1, 1), None, "evaluated", "A"),
        ("abnormal_operation", "legal_person", "U2", date(2026, 1, 1), None, "listed", None),
        ("administrative_penalty", "legal_person", "U2", date(2026, 2, 1), None, "decided", None),
        ("dishonest_debtor", "legal_person", "U5", date(2026, 3, 1), None, "全部未履行", None),
    ], schema)
    rated = {r["uscc"]: r for r in rate_entities(entities, records, rule_set, F.lit(date(2026, 11, 28))).collect()}
    assert "U4" not in rated                                   # deregistered: not supervised
    assert (rated["U1"]["risk_score"], rated["U1"]["risk_grade"]) == (105, "A")
    assert (rated["U2"]["risk_score"], rated["U2"]["risk_grade"]) == (55, "D")
    assert rated["U3"]["risk_grade"] == "D" and "override licence_revoked" in rated["U3"]["reasons"]
    assert (rated["U5"]["risk_score"], rated["U5"]["risk_grade"]) == (40, "D")
    assert all(r["rule_set_version"] == rule_set.version for r in rated.values())


def test_history_keeps_what_we_knew_on_a_date(spark, tmp_path):
    from datetime import datetime

    from pipelines.libraries.golden import merge_with_history

    path = str(tmp_path / "gold")
    schema = "person_id string, full_name string, full_name_source string, full_name_load_id string"
    day1, day2 = datetime(2026, 11, 27), datetime(2026, 11, 28)
    first = merge_with_history(spark, spark.createDataFrame(
        [("A", "张三", "psb.hukou", "l1"), ("B", "李四", "psb.hukou", "l1")], schema), path, "person_id", day1)
    assert first == {"inserted": 2, "changed": 0, "unchanged": 0, "removed": 0}
    second = merge_with_history(spark, spark.createDataFrame(
        [("A", "张叁", "psb.hukou", "l2"), ("B", "李四", "psb.hukou", "l2"), ("C", "王五", "mca.death", "l2")],
        schema), path, "person_id", day2)
    assert second == {"inserted": 1, "changed": 1, "unchanged": 1, "removed": 0}
    table = spark.read.format("delta").load(path)

    def known_on(moment):
        return {r["person_id"]: r["full_name"] for r in table.where(
            (F.col("valid_from") <= moment) & (F.col("valid_to").isNull() | (F.col("valid_to") > moment))).collect()}

    assert known_on(day1) == {"A": "张三", "B": "李四"}
    assert known_on(day2) == {"A": "张叁", "B": "李四", "C": "王五"}
    # the same records again (a new delivery, same values): nothing to write, no commit
    from deltalake import DeltaTable

    version = DeltaTable(path).version()
    same = merge_with_history(spark, spark.createDataFrame(
        [("A", "张叁", "psb.hukou", "l3"), ("B", "李四", "psb.hukou", "l3"), ("C", "王五", "mca.death", "l3")],
        schema), path, "person_id", datetime(2026, 11, 29))
    assert same == {"inserted": 0, "changed": 0, "unchanged": 3, "removed": 0}
    assert DeltaTable(path).version() == version
    # an incremental build: touched A (changed) and B (no source knows it now); C is not compared
    day4 = datetime(2026, 11, 30)
    touched = spark.createDataFrame([("A",), ("B",)], "_key string")
    fourth = merge_with_history(spark, spark.createDataFrame([("A", "张三丰", "psb.hukou", "l4")], schema), path,
                                "person_id", day4, touched=touched)
    assert fourth == {"inserted": 0, "changed": 1, "unchanged": 1, "removed": 1}
    table = spark.read.format("delta").load(path)
    assert known_on(day4) == {"A": "张三丰", "C": "王五"}
    assert known_on(day2) == {"A": "张叁", "B": "李四", "C": "王五"}
    assert table.count() == 5
    # a day's merge is one commit (the keys' rows replaced, deletion vectors for the old ones): every
    # version a reader can see has exactly one current row per key, the gone key's closed one aside
    parts = [c["userMetadata"].split(": ")[-1] for c in reversed(DeltaTable(path).history())
             if (c.get("userMetadata") or "").startswith("govlake merge")]
    assert parts == ["replaced keys", "replaced keys"]
    for version in range(1, DeltaTable(path).version() + 1):
        then = spark.read.format("delta").option("versionAsOf", version).load(path).where("is_current")
        assert then.groupBy("person_id").count().where("count > 1").count() == 0, version
        assert then.count() in (2, 3)


def test_a_merge_in_one_commit_leaves_the_rows_of_the_three_commit_merge(spark, tmp_path, monkeypatch):
    """A day's few keys are replaced in one commit (``_replace_keys``); a
    full rebuild's many keys go through three (``_apply_diff``). Both leave
    the same rows, history included, whatever the keys did: changed, new,
    gone, unchanged, or came back after they left."""
    from datetime import datetime

    from pipelines.libraries import golden
    from pipelines.libraries.golden import merge_with_history

    schema = "person_id string, full_name string, full_name_load_id string"
    days = [([("A", "张三", "l1"), ("B", "李四", "l1"), ("C", "王五", "l1")], None),
            ([("A", "张叁", "l2"), ("D", "赵六", "l2")], ["A", "B", "D"]),           # A changed, B gone, D new
            ([("B", "李四", "l3"), ("C", "王五", "l3")], ["B", "C"]),                # B back, C the same
            ([("A", "张三丰", "l4"), ("B", "李肆", "l4"), ("E", "钱七", "l4")], None)]  # every key compared

    def merged(path, replace_keys):
        monkeypatch.setattr(golden, "REPLACE_KEYS", replace_keys)
        counts = []
        for day, (rows, touched) in enumerate(days, start=1):
            keys = spark.createDataFrame([(k,) for k in touched], "_key string") if touched else None
            counts.append(merge_with_history(spark, spark.createDataFrame(rows, schema), path, "person_id",
                                             datetime(2026, 12, day), touched=keys))
        table = spark.read.format("delta").load(path)
        return counts, sorted(tuple(map(str, r)) for r in table.collect())

    one_commit = golden.REPLACE_KEYS
    one, three = merged(str(tmp_path / "one"), one_commit), merged(str(tmp_path / "three"), 0)
    assert one == three
    assert one[0] == [{"inserted": 3, "changed": 0, "unchanged": 0, "removed": 0},
                      {"inserted": 1, "changed": 1, "unchanged": 1, "removed": 1},
                      {"inserted": 1, "changed": 0, "unchanged": 3, "removed": 0},
                      {"inserted": 1, "changed": 2, "unchanged": 0, "removed": 2}]   # C and D end
    assert len(one[1]) == 9          # 3, then A's new version and D, B back, A's, B's and E's versions
    # the one commit also replaces rows closed at its own time: a merge not after the last one is refused
    monkeypatch.setattr(golden, "REPLACE_KEYS", one_commit)
    with pytest.raises(ValueError, match="is not after the last one"):
        merge_with_history(spark, spark.createDataFrame([("A", "张三", "l5")], schema), str(tmp_path / "one"),
                           "person_id", datetime(2026, 12, 4), touched=spark.createDataFrame([("A",)], "_key string"))
    # and the predicate, kept in the commit's log entry, names no key
    from deltalake import DeltaTable

    predicates = [c["operationParameters"]["predicate"] for c in DeltaTable(str(tmp_path / "one")).history()
                  if c["operation"] == "WRITE" and "predicate" in (c.get("operationParameters") or {})]
    assert len(predicates) == 3 and not [p for p in predicates if "'A'" in p or "'B'" in p], predicates


def test_the_record_hash_tells_a_value_moved_to_another_column_and_older_tables_are_rehashed(spark, tmp_path):
    """The hash is 64 bits of the attributes by name: nulls are skipped, so
    without the names a value moving from one column to another would look
    unchanged. A table written with the old SHA-256 hex hash is rehashed
    once, history too, and the same records then change nothing."""
    from datetime import datetime

    from deltalake import DeltaTable

    from pipelines.libraries.golden import merge_with_history, record_hash

    moved = spark.createDataFrame([("A", "东城", None), ("A", None, "东城")],
                                  "person_id string, hukou_town string, residence_town string")
    first, second = [r[0] for r in moved.select(record_hash(["residence_town", "hukou_town"])).collect()]
    assert first != second and isinstance(first, int)
    # the same attributes in another order hash alike: the names are sorted
    assert moved.select(record_hash(["hukou_town", "residence_town"])).first()[0] == first

    path = str(tmp_path / "gold")
    # rated_on is unversioned: a record with only another date is the same version
    schema = ("person_id string, full_name string, full_name_source string, full_name_load_id string, "
              "rated_on date")
    rows = [("A", "张三", "psb.hukou", "l1", date(2026, 11, 1)), ("B", "李四", "psb.hukou", "l1", date(2026, 11, 1))]
    past = [("A", "张山", "psb.hukou", "l0", date(2026, 10, 1))]     # A's closed version: history is kept

    def stored(data, current, valid_to):
        return spark.createDataFrame(data, schema).select(
            "*", F.sha2(F.to_json(F.struct("full_name", "full_name_source")), 256).alias("record_hash"),
            F.lit(datetime(2026, 10, 1) if not current else datetime(2026, 11, 1)).alias("valid_from"),
            F.lit(valid_to).cast("timestamp").alias("valid_to"), F.lit(current).alias("is_current"))

    stored(rows, True, None).unionByName(stored(past, False, datetime(2026, 11, 1))).write.format("delta").save(path)
    again = [row[:4] + (date(2026, 11, 2),) for row in rows]
    same = merge_with_history(spark, spark.createDataFrame(again, schema), path, "person_id", datetime(2026, 11, 2),
                              unversioned=("rated_on",))
    assert same == {"inserted": 0, "changed": 0, "unchanged": 2, "removed": 0}
    table = spark.read.format("delta").load(path)
    assert dict(table.dtypes)["record_hash"] == "bigint"
    assert sorted((r["person_id"], r["full_name"], r["is_current"]) for r in table.collect()) == [
        ("A", "张三", True), ("A", "张山", False), ("B", "李四", True)]
    # the rehash (and turning deletion vectors on) are the commits: the merge wrote nothing
    assert "MERGE" not in [c["operation"] for c in DeltaTable(path).history()]
    touched = spark.createDataFrame([("A",)], "_key string")
    changed = merge_with_history(spark, spark.createDataFrame([("A", "张叁", "psb.hukou", "l2", None)], schema), path,
                                 "person_id", datetime(2026, 11, 3), unversioned=("rated_on",), touched=touched)
    assert changed == {"inserted": 0, "changed": 1, "unchanged": 1, "removed": 0}
    # readers of the table's changes see the merge, not the rehash
    from pipelines.libraries.incremental import versions_changing_rows

    merged = sorted(c["version"] for c in DeltaTable(path).history()
                    if (c.get("userMetadata") or "").startswith("govlake merge"))
    assert versions_changing_rows(path, 0) == merged and len(merged) == 1     # the keys' rows replaced


def test_each_merge_logs_the_keys_it_opened_changed_and_closed(spark, tmp_path, monkeypatch):
    """What legal_person reads instead of comparing two versions of
    base.population; a missing entry means the log is not used."""
    import dataclasses
    from datetime import datetime

    from pipelines.libraries import golden
    from pipelines.libraries.golden import merge_with_history
    from pipelines.libraries.incremental import key_changes_path, logged_key_changes

    settings = dataclasses.replace(get_settings(), home=str(tmp_path))
    path, log = settings.lake_path("base", "population"), key_changes_path("population", settings)
    schema = "person_id string, full_name string"

    def merge(rows, day, touched=None):
        keys = spark.createDataFrame([(k,) for k in touched], "_key string") if touched else None
        return merge_with_history(spark, spark.createDataFrame(rows, schema), path, "person_id",
                                  datetime(2026, 11, day), touched=keys, key_changes=log)

    merge([("A", "张三"), ("B", "李四")], 1)                          # version 0: the table is created
    merge([("A", "张叁"), ("B", "李四"), ("C", "王五")], 2)               # version 1: A changed, C appeared
    assert merge([("A", "张叁")], 3, touched=["A", "B"])["removed"] == 1   # version 2: B left
    assert merge([("A", "张叁")], 4, touched=["A"])["changed"] == 0       # nothing changed: no version 3
    entries = {(r["version"], r["key"], r["change"]) for r in spark.read.format("delta").load(log).collect()}
    assert entries == {(1, "A", "changed"), (1, "C", "appeared"), (2, "B", "left")}

    def logged(before):
        found = logged_key_changes(spark, "population", before, settings)
        return None if found is None else sorted(r["_key"] for r in found.collect())

    assert (logged(0), logged(1), logged(2)) == (["B", "C"], ["B"], [])
    # a merge of many keys commits in three parts (closed copies, changes in place, new keys); the
    # closed copies' commit changes no current record, and its entry has no key
    monkeypatch.setattr(golden, "REPLACE_KEYS", 0)
    merge([("A", "张三"), ("D", "赵六")], 5, touched=["A", "D"])          # versions 3-5
    entries = {(r["version"], r["key"], r["change"]) for r in spark.read.format("delta").load(log).collect()
               if r["version"] > 2}
    assert entries == {(3, None, "copies"), (4, "A", "changed"), (5, "D", "appeared")}
    assert (logged(2), logged(3)) == (["D"], ["D"])
    # a merge whose entry was not written (the process died after its commit): the log is not used
    spark.read.format("delta").load(log).where("version != 2").write.format("delta").mode("overwrite").save(log)
    assert logged(1) is None and logged(0) is None and logged(2) == ["D"]


def test_is_deceased_true_with_a_death_record_false_with_a_live_registration_else_null(spark):
    """Issue 17 item 5, on one person per case."""
    from pipelines.libraries.enrich import is_deceased

    records = spark.createDataFrame([
        ("P1", ["psb.hukou", "mca.death"], "正常"),        # a death record outweighs a live hukou
        ("P2", ["psb.hukou"], "死亡"),                    # hukou says so
        ("P3", ["psb.hukou"], "正常"),                    # live hukou
        ("P4", ["psb.hukou"], "迁出"),                    # moved out, no permit: unknown
        ("P5", ["psb.residence_permit"], None),           # permit valid on the build date
        ("P6", ["psb.residence_permit"], None),           # permit expired
        ("P7", ["psb.residence_permit"], None),           # permit without an expiry date
        ("P8", ["hrss.social_insurance"], None),          # known only to another bureau
        ("P9", ["mca.death"], None)],                     # only the death record
        "person_id string, known_to array<string>, population_status string")
    permits = spark.createDataFrame([
        ("P5", date(2027, 1, 1)), ("P6", date(2026, 11, 30)), ("P6", date(2026, 12, 1)), ("P7", None)],
        "id_number string, valid_until date")
    got = {r["person_id"]: r["is_deceased"] for r in is_deceased(records, permits, date(2026, 12, 3)).collect()}
    assert got == {"P1": True, "P2": True, "P3": False, "P4": None, "P5": False, "P6": None, "P7": False,
                   "P8": None, "P9": True}
    without = {r["person_id"]: r["is_deceased"] for r in is_deceased(records, None, date(2026, 12, 3)).collect()}
    assert without["P5"] is None and without["P3"] is False and without["P9"] is True


def test_a_snapshot_source_picks_a_keys_record_by_its_values_not_its_row(spark):
    """Two rows of one key in a register: a changes feed takes the later row,
    a snapshot feed the same row whatever their order (a register that only
    reorders its rows has no change rows, so the incremental build must agree)."""
    from datetime import datetime

    from pipelines.libraries.golden import latest_per_key

    at = datetime(2026, 12, 1)
    rows = [("U1", "甲公司", "L1", at, 1), ("U1", "甲有限公司", "L1", at, 2)]
    schema = "uscc string, name string, _load_id string, _ingested_at timestamp, _row_number long"

    def pick(ordered, by_content):
        frame = spark.createDataFrame(ordered, schema)
        return latest_per_key(frame, "uscc", ["name"], by_content=by_content).first()["name"]

    swapped = [(u, n, load, t, 3 - r) for u, n, load, t, r in rows]        # the same rows, the other order
    assert (pick(rows, False), pick(swapped, False)) == ("甲有限公司", "甲公司")
    assert pick(rows, True) == pick(swapped, True)


def test_a_merge_that_died_after_its_closed_copies_is_undone_by_the_next(spark, tmp_path, monkeypatch):
    """The closed copies are the first of a merge's commits; when the changes
    in place never follow (the process died), the next merge deletes them
    first, and the table ends as if the unfinished merge had not run."""
    from datetime import datetime

    from delta.tables import DeltaMergeBuilder

    from pipelines.libraries import golden
    from pipelines.libraries.golden import merge_with_history

    schema = "person_id string, full_name string"

    def merge(path, rows, day):
        return merge_with_history(spark, spark.createDataFrame(rows, schema), path, "person_id",
                                  datetime(2026, 11, day))

    def killed(self):
        raise RuntimeError("killed between the closed copies and the changes in place")

    # the three commits are a merge of more keys than one commit replaces (a full rebuild's)
    monkeypatch.setattr(golden, "REPLACE_KEYS", 0)

    def run(path, dies):
        merge(path, [("A", "张三"), ("B", "李四")], 1)
        if dies:
            with monkeypatch.context() as patch:
                patch.setattr(DeltaMergeBuilder, "execute", killed)
                with pytest.raises(RuntimeError, match="killed"):
                    merge(path, [("A", "张叁"), ("B", "李四")], 2)
            table = spark.read.format("delta").load(path)
            assert sorted((r["full_name"], r["is_current"]) for r in table.where("person_id = 'A'").collect()) == [
                ("张三", False), ("张三", True)]                   # the old version twice
        assert merge(path, [("A", "张叁"), ("B", "李四"), ("C", "王五")], 3) == {
            "inserted": 1, "changed": 1, "unchanged": 1, "removed": 0}
        table = spark.read.format("delta").load(path)
        return sorted(tuple(map(str, r)) for r in table.select("person_id", "full_name", "valid_from", "valid_to",
                                                                "is_current").collect())

    assert run(str(tmp_path / "died"), dies=True) == run(str(tmp_path / "clean"), dies=False)
