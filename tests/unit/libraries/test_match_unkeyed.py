"""``libraries.resolution.match_unkeyed`` on tiny inline frames: blocking on
birth date with surname or town (persons), on the name's core (entities) and
on keys one edit from the delivered one; a record links only to a best
candidate that reaches the threshold, beats the next by the margin and has
no differing name. Everything else goes to review, with the evidence."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines import reference as ref
from pipelines.libraries.resolution import LINK_THRESHOLD, MARGIN, WEIGHTS, key_neighbours, match_unkeyed

FIELDS = "name_key string, birth date, town_code string, rep_key string"
NANCHENG, DONGCHENG = "441900004", "441900003"
D1, D2, D3 = date(1990, 1, 1), date(1985, 5, 5), date(1970, 7, 7)


def person_id(birth: date, sequence: int) -> str:
    body = f"441900{birth:%Y%m%d}{sequence:03d}"
    return body + ref.id_check_char(body)


def typo(key: str, position: int = 3) -> str:
    """``key`` with one digit mistyped (the check character then fails)."""
    digit = "7" if key[position] != "7" else "8"
    return key[:position] + digit + key[position + 1:]


K1, K2, K3, K4 = person_id(D1, 11), person_id(D1, 13), person_id(D2, 21), person_id(D2, 23)
K5, K6 = person_id(D3, 31), person_id(D1, 15)


def run(spark, unkeyed_rows, candidate_rows, profile, materialise=None):
    unkeyed = spark.createDataFrame(unkeyed_rows, f"_record_id string, {FIELDS}, id_key string")
    candidates = spark.createDataFrame(candidate_rows, f"candidate_key string, {FIELDS}")
    links, reviews = match_unkeyed(unkeyed, candidates, profile, materialise)
    return ({r["_record_id"]: r.asDict() for r in links.collect()},
            {r["_record_id"]: r.asDict() for r in reviews.collect()})


@pytest.fixture(scope="module")
def persons(spark):
    unkeyed = [
        ("best", "张三", D1, NANCHENG, None, None),        # K1 agrees on town (6), K2 disagrees (4): K1
        ("only", "赵六一", D1, None, None, None),          # the only key of the name, birth agrees: 6
        ("short", "赵六", D1, None, None, None),            # a two-character name is never "unique": 3 + 2
        ("tie", "李四", D2, None, None, None),             # two candidates, same score
        ("moved", "王五", D3, NANCHENG, None, None),       # the only candidate is in another town: 4, below 5
        ("other_birth", "张三", D2, NANCHENG, None, None),  # same town and birth as 李四 only: the name differs
        ("no_birth", "张三", None, NANCHENG, None, None),   # no birth date, no readable key: cannot block
        ("namesake_typo", "李四", D2, None, None, typo(K4)),  # the namesakes' tie broken by the key: K4
        ("homophone_typo", "张叁", D1, NANCHENG, None, typo(K1, 15)),  # a homophone, key one edit away: K1
        ("homophone", "张叁", D1, NANCHENG, None, None),   # reads as 张三: 3 + 2 + 1 = 6, K2 4: K1
        ("close", "张四", D1, NANCHENG, None, None),       # one character off, another reading: 0 + 2 + 1
        ("close_typo", "张四", D1, NANCHENG, None, typo(K1, 15)),  # 0 + 2 + 1 + 3 (the key) = 6: K1
        ("pinyin", "zhangsan", D1, NANCHENG, None, typo(K1, 15)),  # pinyin 1, birth 2, town 1, key 3: K1
        ("pinyin_alone", "zhangsan", D1, NANCHENG, None, None),    # pinyin 1 + birth 2 + town 1 = 4: review
        ("key_only", "钱七", None, None, None, typo(K5)),   # no birth, another name: the key finds K5, name differs
    ]
    candidates = [
        (K1, "张三", D1, NANCHENG, None), (K2, "张三", D1, DONGCHENG, None),
        (K6, "赵六一", D1, DONGCHENG, None), ("K8", "赵六", D1, DONGCHENG, None),
        (K3, "李四", D2, NANCHENG, None), (K4, "李四", D2, DONGCHENG, None),
        (K5, "王五", D3, DONGCHENG, None),
        ("K7", "王五", D1, NANCHENG, None),           # another birth date: not compared with "moved"
    ]
    # checkpointed once between the comparison and the split, as resolve_records does
    return run(spark, unkeyed, candidates, "person", materialise=lambda frame: frame.localCheckpoint())


def test_the_weights_make_name_and_birth_alone_a_link_and_a_close_name_not():
    """The thresholds as a governor reads them: an exact name and birth date
    link on their own, and so does a homophone (a pinyin input method's
    typo reads as the name); a one-character difference that reads
    otherwise needs the key."""
    threshold = LINK_THRESHOLD["person"]
    assert WEIGHTS["name"]["exact"] + WEIGHTS["birth"]["agree"] == threshold
    assert WEIGHTS["name"]["homophone"] + WEIGHTS["birth"]["agree"] == threshold
    assert WEIGHTS["name"]["close"] + WEIGHTS["birth"]["agree"] + WEIGHTS["town"]["agree"] < threshold
    # a name alone, however rare, never links: the only bearer the candidates know may be a namesake
    assert WEIGHTS["name"]["unique"] < threshold
    assert MARGIN == 2


def test_exactly_one_best_candidate_links_with_its_evidence(persons):
    links, _ = persons
    assert (links["best"]["key"], links["best"]["score"], links["best"]["method"]) == (K1, 6, "person:scored")
    assert links["best"]["evidence"] == "name exact; birth agree; town agree; score 6, next 4"
    # the only 赵六一 among the candidates: a unique name of three characters (4) with its birth date (2)
    assert (links["only"]["key"], links["only"]["score"]) == (K6, 6)
    assert links["only"]["evidence"] == "name unique; birth agree; score 6, next -1"     # 赵六 differs


def test_only_clear_best_candidates_link(persons):
    links, reviews = persons
    assert set(links) == {"best", "only", "short", "namesake_typo", "homophone_typo", "homophone", "close_typo",
                          "pinyin"}
    assert (links["short"]["score"], links["short"]["evidence"]) == (5, "name exact; birth agree; score 5, next -1")
    assert set(reviews) == {"tie", "moved", "other_birth", "no_birth", "close", "key_only", "pinyin_alone"}


def test_a_key_one_edit_away_tells_namesakes_apart(persons):
    links, reviews = persons
    assert links["namesake_typo"]["key"] == K4
    assert "key 1 edit" in links["namesake_typo"]["evidence"]
    assert reviews["tie"]["reason"] == "ambiguous: several candidates score the same"
    assert sorted(reviews["tie"]["candidate_keys"]) == sorted([K3, K4])


def test_a_homophone_reads_as_the_name_a_close_name_needs_the_key_and_pinyin_reads_as_the_name(persons):
    links, reviews = persons
    assert links["homophone_typo"]["key"] == K1 and "name homophone" in links["homophone_typo"]["evidence"]
    assert links["homophone"]["key"] == K1
    assert links["homophone"]["evidence"] == "name homophone; birth agree; town agree; score 6, next 4"
    assert links["close_typo"]["key"] == K1 and links["close_typo"]["evidence"].startswith("name close; ")
    assert reviews["close"]["reason"] == "no candidate scores the 5 a link needs"
    assert reviews["close"]["candidate_keys"][0] == K1       # best first
    assert links["pinyin"]["key"] == K1 and links["pinyin"]["evidence"].startswith("name pinyin")


def test_a_differing_name_is_never_linked_even_on_its_key(persons):
    _, reviews = persons
    assert reviews["key_only"]["candidate_keys"] == [K5]
    assert reviews["key_only"]["evidence"].startswith("name different")
    assert reviews["other_birth"]["candidate_keys"] == [K3]


def test_records_without_a_candidate_say_why(persons):
    _, reviews = persons
    assert reviews["moved"]["reason"] == "no candidate scores the 5 a link needs"
    assert reviews["no_birth"]["reason"] == "too little to match on: birth and a readable key missing"
    assert reviews["no_birth"]["candidate_keys"] == []


def test_links_and_reviews_both_come_from_the_one_materialised_comparison(spark):
    """``materialise`` is applied once, to the comparison both outputs are
    cut from: a comparison it drops a record from is missing from the links
    and the record is reviewed as without candidate."""
    unkeyed = [("best", "张三", D1, NANCHENG, None, None), ("tie", "李四", D2, None, None, None)]
    candidates = [(K1, "张三", D1, NANCHENG, None), (K3, "李四", D2, None, None), (K4, "李四", D2, None, None)]
    links, reviews = run(spark, unkeyed, candidates, "person",
                         materialise=lambda frame: frame.where("_record_id != 'best'"))
    assert links == {}
    assert reviews["best"]["reason"].startswith("no candidate shares a block")
    assert reviews["tie"]["reason"] == "ambiguous: several candidates score the same"


def test_entities_block_on_the_name_core_and_score_town_representative_and_key(spark):
    c1, c2 = "91441900MA4W000037", "91441900MA4W0001XX"
    unkeyed = [
        ("rep", "某某公司", None, None, "甲", None),          # C1 4 (name 3, representative +1), C2 2
        ("both", "某某公司", None, NANCHENG, "乙", None),     # C2 5, C1 3
        ("none", "无此公司", None, NANCHENG, "甲", None),
        ("form", "东莞市鸿福电子科技有限责任公司", None, NANCHENG, None, None),   # a variant (2) in its town (1)
        ("changed_rep", "东莞市鸿福电子科技有限公司", None, None, "丙", typo(c1, 12)),  # 3 + 3 - 1
    ]
    candidates = [(c2, "某某公司", None, NANCHENG, "乙"), ("C1", "某某公司", None, NANCHENG, "甲"),
                  (c1, "东莞市鸿福电子科技有限公司", None, NANCHENG, "丁")]
    links, reviews = run(spark, unkeyed, candidates, "entity")
    assert {k: (r["key"], r["score"]) for k, r in links.items()} == {
        "rep": ("C1", 4), "both": (c2, 5), "form": (c1, 3), "changed_rep": (c1, 5)}
    assert links["form"]["evidence"].startswith("name variant")
    assert reviews["none"]["reason"].startswith("no candidate shares a block (name core")
    assert set(reviews) == {"none"}


def test_a_name_alone_with_a_disagreeing_representative_is_not_linked(spark):
    """Representatives change, so a disagreement is no veto, but an exact
    name (3) less a disagreeing representative (1) is below the threshold."""
    unkeyed = [("mixed", "某某公司", None, None, "乙", None)]
    candidates = [("C1", "某某公司", None, NANCHENG, "甲")]
    links, reviews = run(spark, unkeyed, candidates, "entity")
    assert links == {} and reviews["mixed"]["reason"] == "no candidate scores the 3 a link needs"


def test_a_key_known_in_two_towns_links_a_record_that_agrees_with_one_of_them(spark):
    """A migrant: hukou town Dongcheng, residence-permit town Nancheng. A
    record in Nancheng agrees with one of the key's combinations: it links."""
    unkeyed = [("migrant", "陈七一", D1, NANCHENG, None, None)]
    candidates = [(K1, "陈七一", D1, DONGCHENG, None), (K1, "陈七一", D1, NANCHENG, None)]
    links, reviews = run(spark, unkeyed, candidates, "person")
    assert reviews == {} and (links["migrant"]["key"], links["migrant"]["score"]) == (K1, 7)


def test_a_namesake_the_candidates_do_not_know_is_not_merged_with_the_one_they_do(spark):
    """Two persons of one name, birth date and town; only one (K1) is a
    candidate. The other's record must not link to K1: its mistyped ID is
    three or more edits from K1's (somebody else's), or, without an ID, its
    address is another house."""
    absent = person_id(D1, 13)
    unkeyed = [("typo", "张三", D1, NANCHENG, None, typo(absent)),
               ("no_id", "张三", D1, NANCHENG, None, None)]
    records = spark.createDataFrame(unkeyed, f"_record_id string, {FIELDS}, id_key string").withColumn(
        "address_key", __import__("pyspark.sql.functions", fromlist=["lit"]).lit("鸿福路12"))
    candidates = spark.createDataFrame([(K1, "张三", D1, NANCHENG, None, "鸿福路8"), ("K9", "李九", D2, None, None, None)],
                                       f"candidate_key string, {FIELDS}, address_key string")
    links, reviews = match_unkeyed(records, candidates, "person")
    assert links.count() == 0
    found = {r["_record_id"]: r["evidence"] for r in reviews.collect()}
    assert {r["reason"] for r in reviews.collect()} == {"the best candidate contradicts it (its name, house or ID)"}
    assert "key different" in found["typo"] and "address differ" in found["typo"]
    assert "address differ" in found["no_id"] and "key" not in found["no_id"]


def test_mangled_and_contradicted_ids_keep_what_they_still_say(spark):
    """An ID Excel turned into 4.41900E+17 keeps its division: a candidate of
    another division is not it, and the only bearer of the name in it is
    shown to a governor, not linked (a name alone never links: the person
    may be a namesake the candidates do not know); an ID quarantined for
    another column's contradiction (gender parity) is the key itself."""
    unkeyed = spark.createDataFrame([
        ("mangled_here", "周八一", None, None, None, None, "4.41900E+17"),
        ("mangled_elsewhere", "吴九一", None, None, None, None, "5.32128E+17"),
        ("parity", "郑十一", None, None, None, K5, K5),
    ], f"_record_id string, {FIELDS}, id_key string, delivered_key string")
    candidates = spark.createDataFrame([(K6, "周八一", D1, NANCHENG, None), (K4, "吴九一", D2, NANCHENG, None),
                                        (K5, "郑十一", D3, NANCHENG, None)], f"candidate_key string, {FIELDS}")
    links, reviews = match_unkeyed(unkeyed, candidates, "person")
    linked = {r["_record_id"]: (r["key"], r["evidence"]) for r in links.collect()}
    assert linked == {"parity": (K5, "name unique; key exact; score 8")}
    reviewed = {r["_record_id"]: r for r in reviews.collect()}
    assert (reviewed["mangled_here"]["reason"], reviewed["mangled_here"]["evidence"]) == (
        "no candidate scores the 5 a link needs", "name unique; score 4")
    assert reviewed["mangled_here"]["candidate_keys"] == [K6]
    elsewhere = reviewed["mangled_elsewhere"]
    assert elsewhere["reason"].startswith("no candidate shares a block (birth date and surname, birth date and town, "
                                          "name and ID division")


def test_key_neighbours_find_every_single_typo_and_swap_and_only_valid_keys():
    true = person_id(D1, 11)
    for position in range(17):
        for digit in "0123456789":
            if digit == true[position]:
                continue
            delivered = true[:position] + digit + true[position + 1:]
            assert (delivered, true) in key_neighbours([delivered], "person")
    swapped = true[:4] + true[5] + true[4] + true[6:]
    if swapped != true:
        assert (swapped, true) in key_neighbours([swapped], "person")
    wrong_check = true[:17] + ("1" if true[17] != "1" else "2")
    assert (wrong_check, true) in key_neighbours([wrong_check], "person")
    assert all(ref.id_check_char(other[:17]) == other[17] for _, other in key_neighbours([wrong_check], "person"))
    code = "91441900MA4W000037"
    mistyped = code[:10] + "5" + code[11:]
    assert (mistyped, code) in key_neighbours([mistyped], "entity")
    assert key_neighbours(["4.41900E+17", None, ""], "person") == []


def test_key_neighbours_replace_a_character_no_key_can_hold():
    """An X typed among an ID's digits, or swapped with the check X; an O for
    a 0 in a credit code; a check character no code ends in."""
    true = next(person_id(D1, n) for n in range(1, 400, 2) if person_id(D1, n).endswith("X"))
    assert (true[:3] + "X" + true[4:], true) in key_neighbours([true[:3] + "X" + true[4:]], "person")
    swapped = true[:16] + "X" + true[16]
    assert (swapped, true) in key_neighbours([swapped], "person")
    code = "91441900MA4W000037"
    letter_o = code[:12] + "O" + code[13:]          # 0 at 13 typed as the letter O
    assert (letter_o, code) in key_neighbours([letter_o], "entity")
    assert key_neighbours([code[:17] + "I"], "entity") == [(code[:17] + "I", code)]


def test_a_row_that_confirms_the_house_outweighs_a_stale_one_and_a_namesake_is_vetoed(spark):
    """T has a row naming this house and a stale one naming another: T is
    not contradicted and links. A namesake N's only registration names
    another house: N is vetoed, ranks by that row, and the person whose
    insurance row says nothing against the record links."""
    t, o, n, p = person_id(D1, 41), person_id(D1, 43), person_id(D2, 45), person_id(D2, 47)
    unkeyed = spark.createDataFrame([("moved", "孙小美", D1, NANCHENG, None, None, "鸿福路12"),
                                     ("twin", "周大同", D2, NANCHENG, None, None, "鸿福路12")],
                                    f"_record_id string, {FIELDS}, id_key string, address_key string")
    candidates = spark.createDataFrame([
        (t, "孙小美", D1, NANCHENG, None, "鸿福路12"), (t, "孙小美", D1, NANCHENG, None, "东纵路3"),
        (o, "孙小美", D1, None, None, None),
        (n, "周大同", D2, NANCHENG, None, "东纵路3"), (n, "周大同", D2, None, None, None),
        (p, "周大同", D2, None, None, None)], f"candidate_key string, {FIELDS}, address_key string")
    links, reviews = match_unkeyed(unkeyed, candidates, "person")
    found = {r["_record_id"]: (r["key"], r["evidence"]) for r in links.collect()}
    assert found["moved"] == (t, "name exact; birth agree; town agree; address agree; score 7, next 5")
    # N: 3 + 2 + 1 - 3 = 3 by its vetoing row; P: 3 + 2 = 5
    assert found["twin"] == (p, "name exact; birth agree; score 5, next 3")
    assert reviews.count() == 0


def test_an_unreadable_ids_agreeing_digits_and_a_birth_date_read_from_a_typo(spark):
    """An ID with an impossible birth date keeps its division, year and
    sequence (+4, more than one edit); a birth date read from a mistyped ID
    is not held against the key the typo came from."""
    k = person_id(D1, 51)                       # born 1990-01-01
    impossible = k[:6] + "19900230" + k[14:17]
    impossible += ref.id_check_char(impossible)
    day_typo = k[:13] + "2" + k[14:]            # 19900102: a real date, the check character fails
    assert ref.id_check_char(day_typo[:17]) != day_typo[17]
    unkeyed = spark.createDataFrame([
        ("impossible", "钱多", None, None, None, impossible, False),
        ("day_typo", "钱多", date(1990, 1, 2), None, None, day_typo, True),
    ], f"_record_id string, {FIELDS}, id_key string, _birth_from_key boolean")
    candidates = spark.createDataFrame([(k, "钱多", D1, NANCHENG, None)], f"candidate_key string, {FIELDS}")
    links, _ = match_unkeyed(unkeyed, candidates, "person")
    found = {r["_record_id"]: (r["key"], r["evidence"]) for r in links.collect()}
    assert found["impossible"] == (k, "name exact; key division, birth year and sequence agree; score 7")
    assert found["day_typo"] == (k, "name exact; key 1 edit; score 6")


def test_a_branch_alone_is_no_evidence(spark):
    """东莞市鸿福贸易有限公司长安分公司 shares its trunk with the firm, but a
    branch is a firm of its own: only the code one edit away links it."""
    code = "91441900MA4W000037"
    unkeyed = spark.createDataFrame([
        ("branch", "东莞市鸿福贸易有限公司长安分公司", None, NANCHENG, "甲", None),
        ("branch_typo", "东莞市鸿福贸易有限公司长安分公司", None, None, None, code[:12] + "9" + code[13:]),
    ], f"_record_id string, {FIELDS}, id_key string")
    candidates = spark.createDataFrame([(code, "东莞市鸿福贸易有限公司", None, NANCHENG, "甲")],
                                       f"candidate_key string, {FIELDS}")
    links, reviews = match_unkeyed(unkeyed, candidates, "entity")
    assert {r["_record_id"]: r["key"] for r in links.collect()} == {"branch_typo": code}
    assert [r["evidence"] for r in reviews.collect()] == ["name branch; town agree; representative agree; score 2"]


def test_the_seventeen_digits_outweigh_a_namesake_two_edits_away(spark):
    """Only the check character is wrong: the 17 digits that say who it is
    agree with K (+4). The namesake of the same birth date differs in its
    sequence digits (two edits, +2): K links by the margin."""
    k = person_id(D1, 61)
    namesake = next(person_id(D1, n) for n in (63, 65, 67, 69) if person_id(D1, n)[17] != k[17])
    wrong_check = k[:17] + ("1" if k[17] != "1" else "2")
    unkeyed = spark.createDataFrame([("check", "郭然", D1, None, None, wrong_check)],
                                    f"_record_id string, {FIELDS}, id_key string")
    candidates = spark.createDataFrame([(k, "郭然", D1, NANCHENG, None), (namesake, "郭然", D1, NANCHENG, None)],
                                       f"candidate_key string, {FIELDS}")
    links, reviews = match_unkeyed(unkeyed, candidates, "person")
    assert [(r["key"], r["evidence"]) for r in links.collect()] == [
        (k, "name exact; birth agree; key check character; score 9, next 7")]


def test_an_unreadable_ids_digits_with_the_birth_date_delivered_beside_spell_the_key(spark):
    """An ID whose birth digits are impossible (20991231), on a row that
    delivered the birth date in a column of its own: division, that date
    and sequence make K's key (+4), so a homophone of the name links."""
    k = person_id(D2, 81)
    impossible = k[:6] + "20991231" + k[14:17]
    impossible += ref.id_check_char(impossible)
    unkeyed = spark.createDataFrame([("permit", "王佳庭", D2, None, None, impossible, False)],
                                    f"_record_id string, {FIELDS}, id_key string, _birth_from_key boolean")
    candidates = spark.createDataFrame([(k, "王佳婷", D2, None, None), (person_id(D2, 83), "王佳婷", D3, None, None)],
                                       f"candidate_key string, {FIELDS}")
    links, _ = match_unkeyed(unkeyed, candidates, "person")
    assert [(r["key"], r["evidence"]) for r in links.collect()] == [
        (k, "name homophone; birth agree; key division and sequence agree, the birth date delivered beside; "
            "score 9")]


def test_a_namesakes_permit_with_another_phone_is_not_outweighed_by_its_insurance_row(spark):
    """A planted namesake: the record (a residence permit without an ID,
    its address unreadable) and the key known to the candidates share the
    name, birth date and town. That key's own permit names another phone
    (-2); its insurance row says nothing about phones, and no longer hides
    the permit's disagreement: 3 + 2 + 1 - 2 = 4, review. A key whose
    permit names the record's phone links."""
    k, other = person_id(D1, 91), person_id(D2, 93)
    fields = f"{FIELDS}, id_key string, phone_key string"
    unkeyed = spark.createDataFrame([("twin", "朱锦军", D1, NANCHENG, None, None, "13800000001"),
                                     ("same", "王红", D2, NANCHENG, None, None, "13900000002")],
                                    f"_record_id string, {fields}")
    candidates = spark.createDataFrame([
        (k, "朱锦军", D1, NANCHENG, None, "13800000009"), (k, "朱锦军", D1, None, None, None),
        (other, "王红", D2, NANCHENG, None, "13900000002"),
        (person_id(D3, 99), "朱锦军", D3, None, None, None),      # the name is not unique
    ], f"candidate_key string, {FIELDS}, phone_key string")
    links, reviews = match_unkeyed(unkeyed, candidates, "person")
    assert [(r["_record_id"], r["key"], r["evidence"]) for r in links.collect()] == [
        ("same", other, "name exact; birth agree; town agree; phone agree; score 8")]
    [twin] = reviews.collect()
    assert (twin["reason"], twin["evidence"]) == ("no candidate scores the 5 a link needs",
                                                 "name exact; birth agree; town agree; phone differ; score 4")


def test_a_name_in_pinyin_is_compared_with_every_candidate_of_its_birth_date(spark):
    """A name in pinyin has no surname character to block on, and the
    person's candidate rows here have no town: the birth date alone finds
    the candidate, and its reading with the key two edits away links it."""
    k = person_id(D3, 95)
    two_edits = typo(typo(k, 3), 16)
    unkeyed = spark.createDataFrame([("pinyin", "chenggangzhi", D3, DONGCHENG, None, two_edits)],
                                    f"_record_id string, {FIELDS}, id_key string")
    candidates = spark.createDataFrame([(k, "程刚志", D3, None, None), (person_id(D3, 97), "李四", D3, None, None)],
                                       f"candidate_key string, {FIELDS}")
    links, _ = match_unkeyed(unkeyed, candidates, "person")
    [(key, evidence)] = [(r["key"], r["evidence"]) for r in links.collect()]
    assert key == k and evidence.startswith("name pinyin; birth agree; key 2 edits; score 5, next ")


def test_phone_numbers_compare_by_their_digits(spark):
    """Full-width digits, spaces, dashes and a +86 country code fold away;
    fewer than seven digits is no phone."""
    from pyspark.sql import functions as F

    from pipelines.libraries.resolution import _phone_key

    texts = ["+86 138 0013 8000", "１３８００１３８０００", "138-0013-8000", "0769-22221111", "110", None]
    frame = spark.createDataFrame([(t,) for t in texts], "phone string")
    assert [r[0] for r in frame.select(_phone_key(F.col("phone"))).collect()] == [
        "13800138000", "13800138000", "13800138000", "076922221111", None, None]


def test_a_key_with_the_exact_name_in_one_row_and_a_homophone_in_another_shows_the_exact_name(spark):
    """Levels of one weight: the one listed first is the evidence shown."""
    k = person_id(D2, 101)
    unkeyed = spark.createDataFrame([("both", "王伟", D2, None, None, None)], f"_record_id string, {FIELDS}, id_key string")
    candidates = spark.createDataFrame([(k, "王玮", D2, None, None), (k, "王伟", D2, None, None)],
                                       f"candidate_key string, {FIELDS}")
    links, _ = match_unkeyed(unkeyed, candidates, "person")
    assert [(r["key"], r["evidence"]) for r in links.collect()] == [(k, "name exact; birth agree; score 5")]
