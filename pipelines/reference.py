"""Reference data the rules need: Dongguan's towns, identifier alphabets.

Towns are the NBS 2022 statistical codes listed in shared/bureau-exports.md.
"""

from __future__ import annotations

# 4 subdistricts, 28 towns, 4 statistical units (not legal towns).
TOWNS: dict[str, str] = {
    "441900003": "东城街道", "441900004": "南城街道", "441900005": "万江街道",
    "441900006": "莞城街道", "441900101": "石碣镇", "441900102": "石龙镇",
    "441900103": "茶山镇", "441900104": "石排镇", "441900105": "企石镇",
    "441900106": "横沥镇", "441900107": "桥头镇", "441900108": "谢岗镇",
    "441900109": "东坑镇", "441900110": "常平镇", "441900111": "寮步镇",
    "441900112": "樟木头镇", "441900113": "大朗镇", "441900114": "黄江镇",
    "441900115": "清溪镇", "441900116": "塘厦镇", "441900117": "凤岗镇",
    "441900118": "大岭山镇", "441900119": "长安镇", "441900121": "虎门镇",
    "441900122": "厚街镇", "441900123": "沙田镇", "441900124": "道滘镇",
    "441900125": "洪梅镇", "441900126": "麻涌镇", "441900127": "望牛墩镇",
    "441900128": "中堂镇", "441900129": "高埗镇", "441900401": "松山湖",
    "441900402": "东莞港", "441900403": "东莞生态园", "441900404": "滨海湾新区",
}
TOWN_CODE_BY_NAME = {name: code for code, name in TOWNS.items()}

CITY_DIVISION_CODE = "441900"
# Retired Dongguan division codes that remain valid inside ID numbers.
RETIRED_CITY_DIVISION_CODES = ("442527", "442502")

# Province-level prefixes of GB/T 2260 division codes (first 2 digits).
PROVINCE_PREFIXES = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34",
    "35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52",
    "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
)

# City bounding box (WGS84) for coordinate rules.
CITY_LONGITUDE = (113.52, 114.25)
CITY_LATITUDE = (22.65, 23.15)

# GB 11643-1999
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

# GB 32100-2015
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# GB/T 4754-2017 sections
INDUSTRY_SECTIONS = {
    "A": "农、林、牧、渔业", "B": "采矿业", "C": "制造业",
    "D": "电力、热力、燃气及水生产和供应业", "E": "建筑业", "F": "批发和零售业",
    "G": "交通运输、仓储和邮政业", "H": "住宿和餐饮业",
    "I": "信息传输、软件和信息技术服务业", "J": "金融业", "K": "房地产业",
    "L": "租赁和商务服务业", "M": "科学研究和技术服务业",
    "N": "水利、环境和公共设施管理业", "O": "居民服务、修理和其他服务业",
    "P": "教育", "Q": "卫生和社会工作", "R": "文化、体育和娱乐业",
    "S": "公共管理、社会保障和社会组织", "T": "国际组织",
}

# Registration statuses (登记状态) of an entity that no longer exists: deregistered, its
# licence revoked, or its registration cancelled. Its licences are revoked with it.
DEREGISTERED = ("注销", "吊销", "撤销")

# The licence_type values of base.e_licence (pipelines/libraries/licence.py).
LICENCE_TYPES = ("business_licence", "food_business_licence", "construction_permit")

# Values that stand for "missing" in bureau exports.
MISSING_TOKENS = ("", "NULL", "null", "Null", "无", "/", "-", "—", "N/A", "n/a")


def id_check_char(first17: str) -> str:
    """GB 11643 check character for 17 digits (pure Python; the Arrow rule
    in ``pipelines.ingest.rules`` and ``libraries.columns`` are vectorised, tested against this and
    python-stdnum)."""
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def uscc_check_char(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    def value(c: str) -> int:
        return int(c) if c.isdigit() else ord(c) - 55

    total = sum(value(c) * w for c, w in zip(first8, ORG_CODE_WEIGHTS))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


# Shapes of standardised values: the Arrow rules (ingest) and the quality suites
# both take them from here, so the gate checks exactly what ingest accepts.
TRIM_CHARS = " \t\r\n\u000b\u000c\u3000\u00a0\ufeff\u200b"
ID_SHAPE = "^[0-9]{17}[0-9X]$"
ID_LEGACY_SHAPE = "^[0-9]{15}$"
EXCEL_MANGLED = "^[0-9](\\.[0-9]+)?E\\+?[0-9]+$"
USCC_CHARS = "0-9A-HJ-NPQRTUWXY"
USCC_SHAPE = f"^[1-9ANY][1-9][0-9]{{6}}[{USCC_CHARS}]{{10}}$"
WKT_POINT = "-?[0-9]+(\\.[0-9]+)?\\s+-?[0-9]+(\\.[0-9]+)?"
WKT_POLYGON = f"^POLYGON\\s*\\(\\(\\s*{WKT_POINT}(\\s*,\\s*{WKT_POINT}){{3,}}\\s*\\)\\)$"
PHONE = "^(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$"
MIN_DATE = "1900-01-01"
MAX_DATE = "2100-12-31"
