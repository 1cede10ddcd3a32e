"""Small, realistic governance tables with planted personal data, for the
attack suite (``secured_lake``) and ``test_governance_access``.

Every value a bureau delivered is planted here as a module constant, so a
test can search every column of every row a user reads for it: the owner
bureau reads its own rows in full, a governor reads every row masked as the
sharing list masks them for a department without a grant, nobody else reads
any row. ``governance.query_audit`` is not written here (the audit log
writes it).

The rows follow what the pipelines write: quarantine ``original_values`` are
keyed by the delivered header (extra headers and a malformed line's ``_row``
included, ``pipelines.ingest.classify.quarantine_table``); issue and quality
``sample_rows`` are ``<file>:<row>`` references, or the subjects (ID
numbers) of a conflict issue (``pipelines.libraries.conflicts``);
``match_review.record`` holds the comparison fields of
``pipelines.libraries.resolution``.
"""

from __future__ import annotations

from datetime import date, datetime

from pipelines.lake.paths import governance_path
from pipelines.lake.tables import GOVERNANCE_TABLES

AT = datetime(2026, 11, 1, 8, 0, 0)
# enforcement certificates of the inspectors a draw sent: nobody reads them through Trino yet
INSPECTOR_CERTIFICATES = ("44190021000007", "44190021000019")
HUKOU_FILE = "psb_hukou_20261101.csv"
HRSS_FILE = "hrss_social_insurance_20261101.xlsx"
MARRIAGE_FILE = "mca_marriage_20261101.csv"
DEATH_FILE = "mca_death_20261101.csv"

# psb.hukou: a quarantined row (bad check character) with a phone under an
# extra header, a row whose ID slipped into 登记日期 (a general column), and
# a malformed line quoting an ID.
HUKOU_ID = "441900197704045671"
HUKOU_NAME = "赵六"
HUKOU_ETHNICITY = "维吾尔"            # 不予共享: only psb may read it
HUKOU_ADDRESS = "东莞市南城街道隐私路6号"
HUKOU_PHONE = "13512345678"          # delivered under an extra header 联系电话
SHIFTED_ID = "441900196606066660"    # delivered under 登记日期 (general, unconditional)
MALFORMED_ID = "441900195511117773"
MALFORMED_LINE = f"{MALFORMED_ID},钱七,男,汉,1955-11-11,东莞市南城街道五路5号,H7,户主"

# hrss.social_insurance: a quarantined row with a contribution base (有条件共享)
HRSS_ID = "441900198808088881"
HRSS_NAME = "孙八"
CONTRIBUTION_BASE = "8888.88元"
# an hrss delivery without a header row, rejected: its first row became the extra headers
MESSAGE_ID = "441900199909099992"
MESSAGE_PHONE = "13698765432"

# mca.marriage: a quarantined row naming both partners
HUSBAND_ID = "441900197007077773"
WIFE_ID = "441900197208088884"
WIFE_NAME = "李妹妹"

# base.population resolution and conflicts
LINKED_ID = "441900198101011115"      # psb.hukou row linked on its own key
MATCHED_ID = "441900196107071236"     # mca.death row matched on name + birth date
REVIEW_NAME = "周九九"
REVIEW_DELIVERED_KEY = "4419001961070712"    # 16 characters: not a valid ID
CANDIDATE_IDS = ("441900196107071236", "441900196107072347")
CONFLICT_ID = "441900197503033338"
CONFLICT_NAME_PSB = "吴十十"
CONFLICT_NAME_MCA = "吴拾拾"
GENDER_CONFLICT_ID = "441900199404044449"

UNMATCHED_ADDRESS = "东莞市南城街道秘密巷9号"           # psb.hukou hukou_address (有条件共享)
PUBLIC_ADDRESS = "东莞市虎门镇公开路1号"               # amr.business_registration domicile_address (无条件)

# what psb (owner of psb.*) reads in full in its own rows
PSB_VALUES = (HUKOU_ID, HUKOU_NAME, HUKOU_ETHNICITY, HUKOU_PHONE, SHIFTED_ID, MALFORMED_ID, LINKED_ID,
              UNMATCHED_ADDRESS)
# values of other bureaus' rows: psb never reads them
OTHER_BUREAU_VALUES = (HRSS_ID, HRSS_NAME, CONTRIBUTION_BASE, MESSAGE_ID, MESSAGE_PHONE, HUSBAND_ID, WIFE_ID,
                       WIFE_NAME, MATCHED_ID, REVIEW_NAME, REVIEW_DELIVERED_KEY, *CANDIDATE_IDS,
                       CONFLICT_NAME_MCA)
# a governor never reads any of these, in any column of any row
SECRETS = tuple(dict.fromkeys(PSB_VALUES + OTHER_BUREAU_VALUES + (CONFLICT_ID, CONFLICT_NAME_PSB,
                                                                   GENDER_CONFLICT_ID)))
# ID numbers and phones, which must not show even in part beyond their first 6 (ID) or 3 + 4 (phone) digits
ID_NUMBERS = (HUKOU_ID, SHIFTED_ID, MALFORMED_ID, HRSS_ID, MESSAGE_ID, HUSBAND_ID, WIFE_ID, LINKED_ID,
              MATCHED_ID, *CANDIDATE_IDS, CONFLICT_ID, GENDER_CONFLICT_ID)
PHONES = (HUKOU_PHONE, MESSAGE_PHONE)


def _failure(column, header, rule, value):
    return (column, header, rule, value)


def quarantine_rows() -> list[tuple]:
    hukou = {"身份证号": HUKOU_ID, "姓名": HUKOU_NAME, "性别": "男", "民族": HUKOU_ETHNICITY,
             "出生日期": "1977-04-04", "户籍地址": HUKOU_ADDRESS, "户号": "H6", "与户主关系": "户主",
             "登记日期": "2001-01-01", "人口状态": "正常", "联系电话": HUKOU_PHONE}
    shifted = {"身份证号": None, "姓名": "钱六", "性别": "女", "民族": HUKOU_ETHNICITY, "出生日期": "1966-06-06",
               "户籍地址": "东莞市南城街道六路6号", "户号": "H8", "与户主关系": "户主", "登记日期": SHIFTED_ID,
               "人口状态": "正常"}
    hrss = {"身份证号": HRSS_ID, "姓名": HRSS_NAME, "单位统一社会信用代码": "91441900MA4W000001",
            "单位名称": "东莞某某有限公司", "险种": "养老保险", "参保状态": "正常", "参保日期": "2015-01-01",
            "缴费基数": CONTRIBUTION_BASE}
    marriage = {"登记编号": "J441900-2026-0001", "男方身份证号": HUSBAND_ID, "男方姓名": "李哥哥",
                "女方身份证号": WIFE_ID, "女方姓名": WIFE_NAME, "登记类型": "结婚", "登记日期": "2026-13-01",
                "登记机关": "东莞市民政局"}
    return [
        ("psb.hukou", "L-HUKOU-1", HUKOU_FILE, 3, "id_number", "身份证号", "id_number.check_character",
         [_failure("id_number", "身份证号", "id_number.check_character", HUKOU_ID)], hukou, AT),
        ("psb.hukou", "L-HUKOU-1", HUKOU_FILE, 5, "id_number", "身份证号", "required",
         [_failure("id_number", "身份证号", "required", None),
          _failure("registered_date", "登记日期", "date.parse", SHIFTED_ID)], shifted, AT),
        ("psb.hukou", "L-HUKOU-1", HUKOU_FILE, 7, "_row", "", "malformed_row",
         [_failure("_row", "", "malformed_row", MALFORMED_LINE)], {"_row": MALFORMED_LINE}, AT),
        ("hrss.social_insurance", "L-HRSS-1", HRSS_FILE, 4, "contribution_base_cny", "缴费基数", "decimal.parse",
         [_failure("contribution_base_cny", "缴费基数", "decimal.parse", CONTRIBUTION_BASE)], hrss, AT),
        ("mca.marriage", "L-MCA-1", MARRIAGE_FILE, 2, "registered_date", "登记日期", "date.parse",
         [_failure("registered_date", "登记日期", "date.parse", "2026-13-01"),
          _failure("wife_id_number", "女方身份证号", "id_number.check_character", WIFE_ID)], marriage, AT),
        # odd data: no failures, no values
        ("mca.death", "L-DEATH-1", DEATH_FILE, 9, None, None, None, None, None, AT),
        ("mca.death", "L-DEATH-1", DEATH_FILE, 10, "_row", "", "repeated_header", [], {}, AT),
    ]


def manifest_rows() -> list[tuple]:
    # load_id, feed, bureau, source_file, raw_path, sha256, size_bytes, encoding, status, replaces_load_id,
    # rows_read, rows_loaded, rows_quarantined, rows_duplicate, extra_headers, missing_columns, message, event_at
    return [
        ("L-HUKOU-1", "psb.hukou", "psb", HUKOU_FILE, f"raw/psb/hukou/{'a' * 64}.csv", "a" * 64, 1024, "gbk",
         "loaded", None, 10, 7, 3, 0, ["联系电话"], [], "7 rows loaded, 3 quarantined", AT),
        ("L-HRSS-1", "hrss.social_insurance", "hrss", HRSS_FILE, f"raw/hrss/social_insurance/{'b' * 64}.xlsx",
         "b" * 64, 2048, "utf-8", "loaded", None, 5, 4, 1, 0, [], [], "4 rows loaded, 1 quarantined", AT),
        ("L-HRSS-2", "hrss.social_insurance", "hrss", "hrss_social_insurance_20261102.xlsx",
         f"raw/hrss/social_insurance/{'c' * 64}.xlsx", "c" * 64, 512, "utf-8", "rejected", None, 0, 0, 0, 0,
         [MESSAGE_ID, "王五"], ["身份证号", "姓名"], f"row 5 has 9 values for 8 headers: {MESSAGE_ID},王五,{MESSAGE_PHONE}", AT),
        ("L-MCA-1", "mca.marriage", "mca", MARRIAGE_FILE, f"raw/mca/marriage/{'d' * 64}.csv", "d" * 64, 900,
         "utf-8", "loaded", None, 3, 2, 1, 0, [], [], "2 rows loaded, 1 quarantined", AT),
    ]


def issue_rows() -> list[tuple]:
    # issue_id, bureau, feed, rule, column_name, source, status, first_seen_at, last_seen_at, first_load_id,
    # last_load_id, occurrences, affected_rows, last_affected_rows, sample_rows, detail, closed_at, closed_by,
    # closed_reason
    return [
        ("GI-psb000001", "psb", "psb.hukou", "id_number.check_character", "id_number", "quarantine", "open",
         AT, AT, "L-HUKOU-1", "L-HUKOU-1", 1, 1, 1, [f"{HUKOU_FILE}:3"], "ingest rule id_number.check_character",
         None, None, None),
        ("GI-hrss00001", "hrss", "hrss.social_insurance", "contribution_base_cny.parse", "contribution_base_cny",
         "quarantine", "open", AT, AT, "L-HRSS-1", "L-HRSS-1", 1, 1, 1, [f"{HRSS_FILE}:4"],
         "ingest rule decimal.parse", None, None, None),
        ("GI-mca000001", "mca", "mca.death", "conflict.population.full_name", "full_name", "conflict", "open",
         AT, AT, "base.population@20261101T080000", "base.population@20261101T080000", 1, 1, 1, [CONFLICT_ID],
         "1 subjects where mca.death.full_name disagrees with the authoritative psb.hukou (see governance.conflicts)",
         None, None, None),
        ("GI-psb000002", "psb", "psb.residence_permit", "conflict.population.gender", "gender", "conflict",
         "closed", AT, AT, "base.population@20261101T080000", "base.population@20261101T080000", 1, 1, 1,
         [GENDER_CONFLICT_ID], "1 subjects where psb.residence_permit.gender disagrees with id_number", AT,
         "governor_li", f"checked with the holder of {GENDER_CONFLICT_ID}"),
        # odd data: no samples at all
        ("GI-mca000002", "mca", "mca.marriage", "registered_date.parse", "registered_date", "quarantine", "open",
         AT, AT, "L-MCA-1", "L-MCA-1", 1, 1, 1, None, None, None, None, None),
    ]


def quality_rows() -> list[tuple]:
    # run_id, load_id, feed, bureau, suite, expectation_type, column_name, expectation, rule, blocking, success,
    # element_count, unexpected_count, unexpected_percent, observed_value, kwargs, sample_rows, validated_at
    return [
        ("L-HUKOU-1@20261101T080000", "L-HUKOU-1", "psb.hukou", "psb", "psb_hukou",
         "expect_column_values_to_not_be_null", "full_name", "full_name is present", "full_name.present", True,
         False, 10, 1, 10.0, None, '{"column": "full_name", "mostly": 0.99}', [f"{HUKOU_FILE}:5"], AT),
        ("L-HRSS-1@20261101T080000", "L-HRSS-1", "hrss.social_insurance", "hrss", "hrss_social_insurance",
         "expect_column_values_to_be_between", "contribution_base_cny", "contribution base in range",
         "contribution_base_cny.range", False, False, 5, 1, 20.0, None, '{"column": "contribution_base_cny"}',
         [f"{HRSS_FILE}:4", HRSS_ID], AT),
    ]


def approval_rows() -> list[tuple]:
    return [("L-HRSS-1", "hrss.social_insurance", "hrss", "hrss_officer",
             f"row 4 ({HRSS_ID}) confirmed with the employer", 4, "contribution base out of range", AT)]


def link_rows() -> list[tuple]:
    # library, feed, source_alias, _load_id, _source_file, _row_number, key, method, score, evidence
    return [
        ("population", "psb.hukou", "psb.hukou", "L-HUKOU-1", HUKOU_FILE, 11, LINKED_ID, "key", None, None),
        ("population", "mca.death", "mca.death", "L-DEATH-1", DEATH_FILE, 3, MATCHED_ID,
         "person:scored", 6, "name exact; birth agree; town agree; score 6"),
        ("legal_person", "amr.business_registration", "amr.business_registration", "L-AMR-1", "amr.csv", 2,
         "91441900MA4W000001", "key", None, None),
        ("population", "mca.death", "mca.death", "L-DEATH-1", DEATH_FILE, 12, None, "key", None, None),
    ]


def review_rows() -> list[tuple]:
    # library, feed, source_alias, _load_id, _source_file, _row_number, reason, record, candidate_keys, status,
    # found_at, evidence
    record = {"name_key": REVIEW_NAME, "birth": "1961-07-07", "town_code": "441900004", "rep_key": None,
              "delivered_key": REVIEW_DELIVERED_KEY}
    return [
        ("population", "mca.death", "mca.death", "L-DEATH-1", DEATH_FILE, 4,
         "ambiguous: several candidates score the same", record, list(CANDIDATE_IDS), "open", AT,
         "name exact; birth agree; score 5, next 5"),
        ("population", "mca.death", "mca.death", "L-DEATH-1", DEATH_FILE, 5, "too little to match on",
         {}, [], "open", AT, None),
        ("population", "mca.death", "mca.death", "L-DEATH-1", DEATH_FILE, 6, "too little to match on",
         None, None, "open", AT, None),
    ]


def conflict_rows() -> list[tuple]:
    # library, subject, attribute, authoritative_feed, authoritative_value, authoritative_load_id, other_feed,
    # other_column, other_value, other_load_id, first_seen_at, last_seen_at, resolved_at
    return [
        ("population", CONFLICT_ID, "full_name", "psb.hukou", CONFLICT_NAME_PSB, "L-HUKOU-0", "mca.death",
         "full_name", CONFLICT_NAME_MCA, "L-DEATH-1", AT, AT, None),
        ("population", GENDER_CONFLICT_ID, "gender", "id_number", "男", "L-PERMIT-0", "psb.residence_permit",
         "gender", "女", "L-PERMIT-0", AT, AT, AT),
    ]


# feed scores by day: psb's two feeds average 85, 86, 87 (86 for November), hrss 95, mca 75; a
# day of October, which November's ranking leaves out
SCORES = {("psb", "psb.hukou"): (90, 92, 94), ("psb", "psb.residence_permit"): (80, 80, 80),
          ("hrss", "hrss.social_insurance"): (95, 95, 95), ("mca", "mca.death"): (70, 75, 80)}
NOVEMBER_RANKING = [("hrss", 95.0, 1), ("psb", 86.0, 2), ("mca", 75.0, 3)]


def scorecard_rows() -> list[tuple]:
    # day, bureau, feed, completeness, validity, uniqueness, timeliness, blocked_loads, open_issues,
    # open_reviews, score, taken_at
    rows = [(date(2026, 10, 31), "psb", "psb.hukou", 0.1, 0.1, 0.1, "missing", 3, 9, 0, 10.0, AT)]
    for (bureau, feed), scores in SCORES.items():
        for day, score in zip((1, 2, 3), scores):
            rows.append((date(2026, 11, day), bureau, feed, 0.99, 0.98, 1.0, "on_time", 0, 1, 0, float(score), AT))
    return rows


def governance_rows() -> dict[str, list[tuple]]:
    """Rows of every governance table written here, as tuples in DDL order."""
    return {
        "load_manifest": manifest_rows(),
        "quarantine": quarantine_rows(),
        "quality_results": quality_rows(),
        "quality_approvals": approval_rows(),
        "issues": issue_rows(),
        # psb disputes its issue quoting the ID it holds right; a governor closed psb's conflict issue
        "issue_events": [("GE-psb00000001", "GI-psb000001", "psb", "psb.hukou", "disputed", "open",
                          f"{HUKOU_ID} is right: its check character was mistyped by the form", "psb_analyst", "psb",
                          None, AT),
                         ("GE-psb00000002", "GI-psb000002", "psb", "psb.residence_permit", "closed", "closed",
                          f"checked with the holder of {GENDER_CONFLICT_ID}", "governor_li", "dsj", None, AT)],
        "scorecard_history": scorecard_rows(),
        "demand_list": [("REQ-0001", "hrss", "silver.psb_hukou", ["full_name"], "参保核查", "社会保险法",
                         "all", date(2027, 12, 31), "hrss_officer", AT, "pending", [], None, None, None, None)],
        "sharing_list": [("hrss", "silver.psb_residence_permit", ["id_number", "full_name"], "参保核查",
                          "社会保险法", "all", date(2027, 12, 31), "governor_li", "live",
                          "catalog/grants/hrss.yaml:3", AT)],
        "collection_list": [("psb.hukou", "psb", "户籍人口", "daily", AT, HUKOU_FILE, 10, 1, "on_time", AT),
                            ("hrss.social_insurance", "hrss", "社保参保", "monthly", AT, HRSS_FILE, 5, 2,
                             "on_time", AT)],
        "conflicts": conflict_rows(),
        "entity_links": link_rows(),
        "match_review": review_rows(),
        "address_match_rates": [("psb.hukou", "hukou_address", 10, 9, 0.9, AT),
                                ("amr.business_registration", "domicile_address", 4, 3, 0.75, AT)],
        "unmatched_addresses": [("psb.hukou", "hukou_address", UNMATCHED_ADDRESS, 1),
                                ("amr.business_registration", "domicile_address", PUBLIC_ADDRESS, 1)],
        # the inspection draw's record and result: who inspects whom, before the inspection
        "inspection_draws": [("amr-2026-12-20261201T080000-abcdef", "amr-2026-12", "抽查计划", "0" * 64,
                              "plan: amr-2026-12", True, "2026.12", 20261201, "{}", "[]", 1, 2, "{}", "1" * 64,
                              None, None, "amr_inspector", AT)],
        "inspection_assignments": [("amr-2026-12-20261201T080000-abcdef", "amr-2026-12", 0, "food-safety",
                                    "91441900MA4W000001", "东莞市某某餐饮有限公司", "C", slot, certificate, AT)
                                   for slot, certificate in enumerate(INSPECTOR_CERTIFICATES)],
        # a verification (核验): whom a department asked about, and why
        "verification_log": [(AT, "nancheng", "nancheng_officer", "person-alive-in-town", HUKOU_ID,
                              '{"town": "441900004"}', "低保申请核验", "yes", None, "{}")],
    }


def write_governance_samples(spark, settings) -> dict[str, int]:
    """Write the sample rows into ``governance/<table>`` of ``settings``' lake
    (Spark Delta, overwrite, the schemas of ``GOVERNANCE_TABLES``).
    ``query_audit`` is left alone. Returns rows written per table."""
    written = {}
    for table, rows in governance_rows().items():
        frame = spark.createDataFrame(rows, GOVERNANCE_TABLES[table])
        (frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
         .save(governance_path(table, settings)))
        written[table] = len(rows)
    return written
