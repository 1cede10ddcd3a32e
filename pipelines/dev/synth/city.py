"""Generate a Dongguan-like city: every bureau export plus its ground truth.

Scale 1.0 is the real city (10.46 million residents, a quarter with hukou;
1.46 million market entities). Persons are streamed in chunks and never held
in memory; entities (1.46 million at scale 1.0) are. Everything is
deterministic for a seed: every random stream is seeded from (seed, name).

Output::

    OUT/deliveries/<bureau>/<feed>/<file>   what the bureaus send
    OUT/truth/persons.csv                   the true persons
    OUT/truth/entities.csv                  the true market entities and social organisations
    OUT/truth/defects.csv                   every injected defect, by file and row
    OUT/truth/files.csv                     every delivery and what ingest should do with it
    OUT/truth/conflicts.csv                 injected cross-bureau disagreements, and
                                            bureau values that contradict the ID number
    OUT/truth/namesakes.csv                 planted namesakes (same name, birth date and town; hard cases)
    OUT/truth/inspectors.csv                the inspectors of amr.inspector, as persons
    OUT/truth/inspector_conflicts.csv       every entity an inspector must not inspect, and why
    OUT/truth/last_inspections.csv          each inspected entity's inspectors of its last inspection
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from pipelines import reference as ref
from pipelines.contracts import get_contract
from pipelines.dev.synth import vocabulary as voc
from pipelines.dev.synth.writers import DefectLog, FeedWriter, FileLayout, Label

log = logging.getLogger(__name__)

REAL_PERSONS = 10_460_000
REAL_MARKET_ENTITIES = 1_460_000
REAL_SOCIAL_ORGS = 6_000
REAL_CONSTRUCTION_PERMITS = 20_000
REAL_HAZARD_REPORTS = 200_000
REAL_GRID_CELLS = 3_600
REAL_INSPECTORS = 3_000           # 执法检查人员 of the market regulator, city and town branches
ADDRESSES_PER_PERSON = 0.3
PERSON_CHUNK = 50_000
TOWN_CODES = tuple(ref.TOWNS)
HUKOU_HEADERS = ["身份证号", "姓名", "性别", "民族", "出生日期", "户籍地址", "户号", "与户主关系", "登记日期", "人口状态"]
_FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")
_SPACES = ("\u3000", "\u00a0", " ")


@dataclass(frozen=True)
class DefectRates:
    """Per-value (or per-row) probabilities of each injected defect."""

    id_excel_mangled: float = 0.002
    id_wrong_check: float = 0.002
    id_impossible_birth: float = 0.001
    id_gender_parity: float = 0.001
    id_lowercase_x: float = 0.3        # of the IDs that end in X
    id_fullwidth: float = 0.003
    id_spaces: float = 0.005
    id_legacy_15: float = 0.003
    uscc_wrong_check: float = 0.002
    uscc_fullwidth: float = 0.002
    uscc_lowercase: float = 0.002
    uscc_spaces: float = 0.003
    date_invalid: float = 0.001
    missing_required: float = 0.001
    missing_token: float = 0.02
    duplicate_row: float = 0.002
    repeated_header: float = 0.0002
    tax_legal_rep_conflict: float = 0.005
    # Hard cases for entity resolution (issue 17), all 0 in the default city
    # and turned on by ``HARD_CASES`` (``govlake synth --hard``); drawn from a
    # random stream of their own, so a city without them is byte for byte the
    # city it always was. Each is labelled in truth/defects.csv.
    id_typo_one: float = 0.0           # one digit of the ID mistyped, or two adjacent swapped (check fails)
    id_typo_two: float = 0.0           # two digits mistyped (check fails)
    id_missing: float = 0.0            # hukou and residence rows: no ID, name + birth date + address only
    uscc_typo_one: float = 0.0
    uscc_typo_two: float = 0.0
    name_variant: float = 0.0          # of the person rows delivered without a usable ID
    company_name_variant: float = 0.0  # of the entity rows delivered without a usable code
    rep_changed: float = 0.0           # of the tax rows delivered without a usable code: the new representative
    address_variant: float = 0.0       # of the free-text addresses: abbreviations, 号楼/栋, order, no community
    namesake: float = 0.0              # of persons: one more with the same name, birth date and town

    def scaled(self, factor: float) -> "DefectRates":
        """All rates times ``factor`` (0 gives a clean city)."""
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})


# ``govlake synth --hard``: the default defects plus the hard cases, at rates
# that give a few thousand unkeyed records at scale 0.05 (truth/defects.csv)
HARD_CASES = replace(DefectRates(), id_typo_one=0.003, id_typo_two=0.0015, id_missing=0.0015,
                     uscc_typo_one=0.003, uscc_typo_two=0.0015, name_variant=0.3, company_name_variant=0.4,
                     rep_changed=0.3, address_variant=0.2, namesake=0.002)
HARD_RATE_NAMES = ("id_typo_one", "id_typo_two", "id_missing", "uscc_typo_one", "uscc_typo_two", "name_variant",
                   "company_name_variant", "rep_changed", "address_variant", "namesake")

# Homophone typos of given-name characters (同音字), as clerks type them from
# what a person says: 王晓明 for 王小明.
HOMOPHONES = dict(pair for a, b in (
    ("伟", "玮"), ("芳", "方"), ("敏", "民"), ("丽", "莉"), ("磊", "雷"), ("军", "君"), ("勇", "永"), ("杰", "洁"),
    ("涛", "滔"), ("明", "铭"), ("兰", "岚"), ("华", "桦"), ("玉", "钰"), ("红", "宏"), ("玲", "琳"), ("彬", "斌"),
    ("鑫", "欣"), ("宇", "雨"), ("浩", "豪"), ("子", "梓"), ("轩", "宣"), ("涵", "寒"), ("怡", "宜"), ("琪", "琦"),
    ("桐", "彤"), ("思", "斯"), ("远", "源"), ("文", "雯"), ("俊", "峻"), ("嘉", "佳"), ("志", "智"), ("建", "健"),
    ("东", "冬"), ("梅", "玫"), ("婷", "庭"), ("颖", "莹"), ("晨", "辰"), ("辉", "晖"), ("鹏", "朋"), ("翔", "祥"),
    ("瑞", "锐"), ("雪", "学"), ("慧", "惠"), ("振", "震"), ("德", "得"), ("荣", "蓉"), ("锦", "金"), ("程", "成"),
    ("鸣", "铭"), ("珍", "真"), ("晓", "小"), ("国", "帼"), ("春", "纯"), ("霞", "夏"), ("燕", "艳"),
) for pair in ((a, b), (b, a)))


@dataclass
class SynthSummary:
    out: str
    scale: float
    seed: int
    persons: int
    market_entities: int
    social_orgs: int
    addresses: int
    files: dict[str, int] = field(default_factory=dict)   # file path -> records
    defects: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def rng_for(seed: int, *parts) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{':'.join(map(str, parts))}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _check_id(body17: str) -> str:
    return body17 + ref.id_check_char(body17)


def make_uscc(prefix2: str, org8: str) -> str:
    """A valid GB 32100 code: authority+type, Dongguan division, org code."""
    org9 = org8 + ref.org_code_check_char(org8)
    first17 = prefix2 + ref.CITY_DIVISION_CODE + org9
    return first17 + ref.uscc_check_char(first17)


def _base31(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 31)
        chars.append(ref.USCC_ALPHABET[digit])
    return "".join(reversed(chars))


def excel_serial(day: date) -> int:
    return (day - date(1899, 12, 30)).days


class Corruptor:
    """Renders true values the way bureau systems deliver them, injecting
    defects at the configured rates and returning their truth labels."""

    def __init__(self, rng: random.Random, rates: DefectRates, xlsx: bool = False):
        self.rng = rng
        self.rates = rates
        self.xlsx = xlsx
        # the hard cases' own stream, seeded from ``rng`` only when a hard rate is on
        self.hard = (random.Random(rng.getrandbits(64))
                     if any(getattr(rates, name) for name in HARD_RATE_NAMES) else None)

    def person_id(self, true_id: str, header: str, allow_gender: bool = False,
                  allow_missing: bool = False) -> tuple[object, list[Label], bool]:
        """Returns (delivered value, labels, flip_gender). ``allow_missing``:
        the row carries a birth date and an address, so it may come without
        an ID at all (hard case ``id_missing``)."""
        rng, rates = self.rng, self.rates
        if self.hard is not None:
            typo = self._id_typo(true_id, header, allow_missing)
            if typo is not None:
                return typo[0], typo[1], False
        roll = rng.random()
        edge = rates.id_excel_mangled
        if roll < edge and true_id[-1] != "X":
            value = float(true_id) if self.xlsx else f"{float(true_id):.5E}"
            return value, [Label(header, "id_excel_mangled", "quarantine", "id_number.excel_mangled", true_id)], False
        edge += rates.id_wrong_check
        if roll < edge:
            wrong = rng.choice([c for c in ref.ID_CHECK_CHARS if c != true_id[-1]])
            return true_id[:17] + wrong, [Label(header, "id_wrong_check", "quarantine", "id_number.check_character", true_id)], False
        edge += rates.id_impossible_birth
        if roll < edge:
            year = true_id[6:10]
            bad = rng.choice((f"{year}0230", f"{year}1301", f"{year}0532", f"{year}1100", "20991231"))
            value = _check_id(true_id[:6] + bad + true_id[14:17])
            return value, [Label(header, "id_impossible_birth_date", "quarantine", "id_number.birth_date", true_id)], False
        edge += rates.id_gender_parity if allow_gender else 0.0
        if roll < edge:
            return true_id, [Label(header, "id_gender_parity", "quarantine", "id_number.gender_parity", true_id)], True
        labels = []
        value = true_id
        if value.endswith("X") and rng.random() < rates.id_lowercase_x:
            value = value[:17] + "x"
            labels.append(Label(header, "id_lowercase_x", "fixed", "", true_id))
        roll = rng.random()
        if roll < rates.id_legacy_15 and true_id[6:8] == "19":
            value = true_id[:6] + true_id[8:17]
            labels = [Label(header, "id_legacy_15", "fixed", "", true_id)]
        elif roll < rates.id_legacy_15 + rates.id_fullwidth:
            value = value.translate(_FULLWIDTH_DIGITS)
            labels.append(Label(header, "id_fullwidth_digits", "fixed", "", true_id))
        if rng.random() < rates.id_spaces:
            value = rng.choice(_SPACES) + value + rng.choice(_SPACES)
            labels.append(Label(header, "id_padded_spaces", "fixed", "", true_id))
        return value, labels, False

    def _id_typo(self, true_id: str, header: str, allow_missing: bool) -> tuple[str, list[Label]] | None:
        """A hard case on an ID, or None: no ID, or one or two digits
        mistyped where ingest finds them by the check character only
        (division digits 3-6 and sequence digits 15-16: the province, birth
        date and gender digit stay right, so no other rule fires first)."""
        hard, rates = self.hard, self.rates
        roll = hard.random()
        if allow_missing and roll < rates.id_missing:
            return "", [Label(header, "id_missing", "quarantine", "required", true_id)]
        roll -= rates.id_missing if allow_missing else 0.0
        if roll >= rates.id_typo_one + rates.id_typo_two:
            return None
        edits = 1 if roll < rates.id_typo_one else 2
        value = _mistyped(hard, true_id, (2, 3, 4, 5, 14, 15), edits, lambda v: ref.id_check_char(v[:17]) != v[17])
        return value, [Label(header, f"id_typo_{'one' if edits == 1 else 'two'}", "quarantine",
                             "id_number.check_character", true_id)]

    def person_name(self, name: str, header: str, unkeyed: bool) -> tuple[str, list[Label]]:
        """The name as a clerk wrote it on a row without a usable ID (hard
        case ``name_variant``): traditional characters, a homophone typo
        (王晓明/王小明), a space or a dot after the surname, or pinyin."""
        return self._variant(name, header, "name_variant", unkeyed, _name_variant)

    def entity_name(self, name: str, header: str, unkeyed: bool) -> tuple[str, list[Label]]:
        """An entity name as another system writes it, on a row without a
        usable code (hard case ``company_name_variant``): 有限公司 for
        有限责任公司 and back, the city in brackets after the brand, or a
        branch suffix."""
        return self._variant(name, header, "company_name_variant", unkeyed, _company_name_variant)

    def address(self, text: str, header: str) -> tuple[str, list[Label]]:
        """A free-text address as written (hard case ``address_variant``)."""
        return self._variant(text, header, "address_variant", True, _address_variant)

    def _variant(self, value: str, header: str, defect: str, applies: bool, make) -> tuple[str, list[Label]]:
        """``value`` as ``make(rng, value)`` writes it, at the rate named
        ``defect``, labelled ``resolved`` (resolution must see through it)."""
        if self.hard is None or not applies or self.hard.random() >= getattr(self.rates, defect):
            return value, []
        written = make(self.hard, value)
        if written == value:
            return value, []
        return written, [Label(header, defect, "resolved", "", value)]

    def uscc(self, true_code: str, header: str) -> tuple[str, list[Label]]:
        rng, rates = self.rng, self.rates
        if self.hard is not None:
            roll = self.hard.random()
            if roll < rates.uscc_typo_one + rates.uscc_typo_two:
                edits = 1 if roll < rates.uscc_typo_one else 2
                value = _mistyped(self.hard, true_code, tuple(range(2, 16)), edits,
                                  lambda v: ref.uscc_check_char(v[:17]) != v[17])
                rule = ("uscc.check_character" if ref.org_code_check_char(value[8:16]) == value[16]
                        else "uscc.organisation_code")
                return value, [Label(header, f"uscc_typo_{'one' if edits == 1 else 'two'}", "quarantine", rule,
                                     true_code)]
        roll = rng.random()
        if roll < rates.uscc_wrong_check:
            wrong = rng.choice([c for c in ref.USCC_ALPHABET if c != true_code[-1]])
            return true_code[:17] + wrong, [Label(header, "uscc_wrong_check", "quarantine", "uscc.check_character", true_code)]
        value, labels = true_code, []
        roll = rng.random()
        if roll < rates.uscc_fullwidth:
            value = value.translate(_FULLWIDTH_DIGITS)
            labels.append(Label(header, "uscc_fullwidth_digits", "fixed", "", true_code))
        elif roll < rates.uscc_fullwidth + rates.uscc_lowercase and any(c.isalpha() for c in value):
            value = value.lower()
            labels.append(Label(header, "uscc_lowercase", "fixed", "", true_code))
        if rng.random() < rates.uscc_spaces:
            value = rng.choice(_SPACES) + value + rng.choice(_SPACES)
            labels.append(Label(header, "uscc_padded_spaces", "fixed", "", true_code))
        return value, labels

    def day(self, value: date | None, header: str, required: bool = False) -> tuple[object, list[Label]]:
        """A date in any of the bureaus' forms; sometimes invalid or missing."""
        rng, rates = self.rng, self.rates
        if value is None:
            return rng.choice(("", "", "NULL", "无", "/", "-")), []
        roll = rng.random()
        if roll < rates.date_invalid:
            bad = rng.choice((f"{value.year}-13-{value.day:02d}", f"{value.year}年2月30日", "2021.02.31", "待定"))
            return bad, [Label(header, "date_invalid", "quarantine", "date.unparseable", value.isoformat())]
        roll -= rates.date_invalid
        if required and roll < rates.missing_required:
            return rng.choice(("", "NULL", "无")), [Label(header, "missing_required", "quarantine", "required", value.isoformat())]
        if not required and roll < rates.missing_token:
            return rng.choice(("", "NULL", "无", "/", "-")), [Label(header, "missing_token", "fixed", "", value.isoformat())]
        if self.xlsx:
            form = rng.random()
            if form < 0.6:
                return value, []
            if form < 0.8:
                return excel_serial(value), []
        form = rng.random()
        if form < 0.55:
            return value.isoformat(), []
        if form < 0.7:
            return f"{value.year}/{value.month}/{value.day}", []
        if form < 0.78:
            return f"{value.year}.{value.month}.{value.day}", []
        if form < 0.9:
            return value.strftime("%Y%m%d"), []
        return f"{value.year}年{value.month}月{value.day}日", []

    def required_text(self, value: str, header: str) -> tuple[str, list[Label]]:
        if self.rng.random() < self.rates.missing_required:
            return self.rng.choice(("", "NULL", "无")), [Label(header, "missing_required", "quarantine", "required", value)]
        return value, []

    def optional_text(self, value: str | None, header: str) -> tuple[str | None, list[Label]]:
        if value and self.rng.random() < self.rates.missing_token:
            return self.rng.choice(("", "NULL", "无", "/", "-")), [Label(header, "missing_token", "fixed", "", value)]
        return value, []


class Geography:
    """Towns, communities, roads and standard addresses, by formula.

    Address ``i`` lies in town ``i % 36``; its community, road and number
    follow from ``i`` so no address is stored and none repeats.
    """

    COMMUNITIES_PER_TOWN = 20
    ROADS_PER_TOWN = 50

    def __init__(self, seed: int, n_addresses: int):
        rng = rng_for(seed, "geography")
        self.n_addresses = n_addresses
        self.communities = [
            [self._community_name(rng, k) for k in range(self.COMMUNITIES_PER_TOWN)] for _ in TOWN_CODES
        ]
        self.roads = [self._road_names(rng) for _ in TOWN_CODES]
        lon0, lon1 = ref.CITY_LONGITUDE
        lat0, lat1 = ref.CITY_LATITUDE
        self.centres = []
        for t in range(len(TOWN_CODES)):
            row, col = divmod(t, 6)
            self.centres.append((lon0 + (col + 0.5) * (lon1 - lon0) / 6, lat0 + (row + 0.5) * (lat1 - lat0) / 6))
        self.cell_size = ((lon1 - lon0) / 6, (lat1 - lat0) / 6)

    @staticmethod
    def _community_name(rng: random.Random, k: int) -> str:
        word = "".join(rng.sample(voc.COMMUNITY_WORDS, 2))
        return word + ("社区" if k < 12 else "村")

    @classmethod
    def _road_names(cls, rng: random.Random) -> list[str]:
        """A town's road names, distinct (a road and number identify an address in a town)."""
        names: list[str] = []
        while len(names) < cls.ROADS_PER_TOWN:
            name = "".join(rng.sample(voc.ROAD_WORDS, 2)) + rng.choice(voc.ROAD_SUFFIXES)
            if name not in names:
                names.append(name)
        return names

    def address(self, i: int) -> dict:
        town = i % len(TOWN_CODES)
        rest = i // len(TOWN_CODES)
        # house numbers run along roads, unique per road in a town; a road
        # crosses several communities
        road = rest % self.ROADS_PER_TOWN
        number = rest // self.ROADS_PER_TOWN + 1
        community = (road * 7 + (number - 1) // 8) % self.COMMUNITIES_PER_TOWN
        town_code = TOWN_CODES[town]
        code_prefix = 200 + community - 12 if community >= 12 else 1 + community
        mix = (i * 2654435761) % 1000003
        lon_c, lat_c = self.centres[town]
        return {
            "index": i,
            "address_code": f"{town_code}{code_prefix:03d}{i // len(TOWN_CODES):07d}",
            "town_code": town_code,
            "town_name": ref.TOWNS[town_code],
            "community": self.communities[town][community],
            "road": self.roads[town][road],
            "number": f"{number}号",
            "longitude": round(lon_c + ((mix % 1000) / 1000 - 0.5) * self.cell_size[0] * 0.9, 6),
            "latitude": round(lat_c + ((mix // 1000 % 1000) / 1000 - 0.5) * self.cell_size[1] * 0.9, 6),
        }

    def address_in_town(self, rng: random.Random, town: int) -> int:
        per_town = max(1, self.n_addresses // len(TOWN_CODES))
        return min(self.n_addresses - 1, rng.randrange(per_town) * len(TOWN_CODES) + town)

    @staticmethod
    def standard_text(a: dict) -> str:
        return f"广东省东莞市{a['town_name']}{a['community']}{a['road']}{a['number']}"

    @staticmethod
    def free_text(a: dict, rng: random.Random) -> str:
        """How other bureaus write the same address (city → town → road → number)."""
        if rng.random() < 0.2:
            return f"东莞市{a['town_name']}{a['community']}{a['road']}{a['number']}"
        return f"东莞市{a['town_name']}{a['road']}{a['number']}"


@dataclass
class Entity:
    uscc: str
    name: str
    entity_type: str
    status: str
    section: str
    industry_code: str
    town: int
    address: int
    established: date
    capital: str | None
    rep_id: str = ""
    rep_name: str = ""
    clean: bool = False     # its registration is delivered without defects (an inspector's relation to it)


# truth/entity_records.csv: every record the generator made about a market
# entity, as it is true (not as delivered), for the enterprise profile's
# figures. kind: penalty | abnormal | dishonest | food_licence |
# construction_permit | hazard | insured; on / until: its dates (decided,
# listed / removed, filed, issued / valid until, reported / closed, insured);
# address_code: where a hazard was reported; clean: its row was delivered
# without a planted defect (a defective one may be quarantined or rescued).
ENTITY_RECORD_COLUMNS = ("uscc", "kind", "key", "on", "until", "status", "category", "address_code", "clean")


def _random_day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange(max(1, (end - start).days)))


def _unkeyed(labels: list[Label]) -> bool:
    """Whether a row's key labels leave it without a usable key (quarantined)."""
    return any(label.expected == "quarantine" and label.defect.startswith(("id_", "uscc_")) for label in labels)


def _mistyped(rng: random.Random, code: str, positions: tuple[int, ...], edits: int, invalid) -> str:
    """``code`` with ``edits`` mistakes at ``positions`` (one: a digit
    replaced or two neighbours swapped; two: two digits replaced), drawn
    until ``invalid(value)``: a typo the check character does not catch
    would be another valid code, which is not this hard case."""
    while True:
        chars = list(code)
        if edits == 1 and rng.random() < 0.4:
            i = rng.choice([p for p in positions if p + 1 in positions and code[p] != code[p + 1]] or positions)
            if i + 1 in positions:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
            else:
                chars[i] = rng.choice([d for d in "0123456789" if d != code[i]])
        else:
            for i in rng.sample(positions, edits):
                chars[i] = rng.choice([d for d in "0123456789" if d != code[i]])
        value = "".join(chars)
        if value != code and invalid(value):
            return value


def _name_variant(rng: random.Random, name: str) -> str:
    kind = rng.choice(("traditional", "homophone", "homophone", "separator", "pinyin"))
    if kind == "traditional":
        table = voc.traditional_forms()
        if any(c in table for c in name):
            return "".join(table.get(c, c) for c in name)
        kind = "homophone"
    if kind == "homophone":
        places = [i for i in range(1, len(name)) if name[i] in HOMOPHONES]
        if places:
            i = rng.choice(places)
            return name[:i] + HOMOPHONES[name[i]] + name[i + 1:]
        kind = "separator"
    if kind == "separator":
        return name[0] + rng.choice(("·", "•", " ", ".")) + name[1:]
    from pypinyin import lazy_pinyin

    syllables = lazy_pinyin(name)
    return (syllables[0] + " " + "".join(syllables[1:])).title() if rng.random() < 0.7 else " ".join(
        syllables).upper()


def _company_name_variant(rng: random.Random, name: str) -> str:
    kind = rng.choice(("legal_form", "brackets", "branch"))
    if kind == "legal_form" and "有限责任公司" in name:
        return name.replace("有限责任公司", "有限公司")
    if kind == "legal_form" and name.endswith("有限公司") and "股份" not in name:
        return name.removesuffix("有限公司") + "有限责任公司"
    if kind in ("legal_form", "brackets") and name.startswith("东莞市") and "公司" in name:
        head, tail = name.removeprefix("东莞市").split("有限", 1) if "有限" in name else (name[3:], "")
        return f"{head}（东莞）有限{tail}" if tail else f"{head}（东莞）"
    return name + rng.choice(("东莞分公司", "长安分公司", "第一分店", "（分部）"))


def _address_variant(rng: random.Random, text: str) -> str:
    kind = rng.choice(("abbreviated", "building", "no_city", "typo"))
    if kind == "abbreviated":
        return text.replace("东莞市", "东莞", 1).replace("镇", "", 1).replace("街道", "", 1)
    if kind == "building" and text.endswith("号"):
        return text.removesuffix("号") + rng.choice(("号楼", "栋", "号之一"))
    if kind == "no_city":
        return text.removeprefix("东莞市").removeprefix("广东省东莞市")
    i = rng.randrange(len(text) // 2, len(text))
    return text[:i] + text[i + 1:]


def _person_name(rng: random.Random) -> str:
    surname = voc.SURNAMES[min(int(rng.expovariate(1 / 18)), len(voc.SURNAMES) - 1)]
    return surname + "".join(rng.choice(voc.GIVEN_CHARS) for _ in range(1 if rng.random() < 0.25 else 2))


def _birth_date(rng: random.Random, as_of: date, migrant: bool) -> date:
    age = rng.triangular(18, 50, 30) if migrant and rng.random() < 0.85 else rng.triangular(0, 92, 35)
    return as_of - timedelta(days=int(age * 365.25) + rng.randrange(365))


class City:
    """One generation run; see ``generate_city``."""

    def __init__(self, out: Path, scale: float, seed: int, rates: DefectRates, as_of: date):
        self.out = out
        self.scale = scale
        self.seed = seed
        self.rates = rates
        self.as_of = as_of
        self.stamp = as_of.strftime("%Y%m%d")
        self.n_persons = max(200, round(REAL_PERSONS * scale))
        self.n_market = max(40, round(REAL_MARKET_ENTITIES * scale))
        self.n_social = max(5, round(REAL_SOCIAL_ORGS * scale))
        self.n_inspectors = max(30, round(REAL_INSPECTORS * scale))
        self.geo = Geography(seed, max(360, round(self.n_persons * ADDRESSES_PER_PERSON)))
        self.deliveries = out / "deliveries"
        self.truth = out / "truth"
        self.files: dict[str, dict] = {}
        self.entities: list[Entity] = []
        self.conflicts = None                       # truth/conflicts.csv, open during run()

    # ------------------------------------------------------------------ plumbing
    def writer(self, feed: str, headers: list[str], file_type: str, encoding: str = "utf-8",
               suffix: str = "", layout: FileLayout | None = None, crlf: bool = False, clean: bool = False,
               expected: str = "loaded", replaces: str = "") -> FeedWriter:
        bureau, name = feed.split(".")
        ext = {"csv": ".csv", "xlsx": ".xlsx", "jsonl": ".jsonl"}[file_type]
        path = self.deliveries / bureau / name / f"{name}_{self.stamp}{suffix}{ext}"
        writer = FeedWriter(
            feed=feed, path=path, headers=headers, file_type=file_type, encoding=encoding,
            defects=self.defect_log, rng=rng_for(self.seed, "writer", feed, suffix),
            crlf=crlf, layout=layout or FileLayout(),
            repeated_header_rate=0.0 if clean else self.rates.repeated_header,
            duplicate_rate=0.0 if clean else self.rates.duplicate_row,
        )
        self.files[str(path.relative_to(self.deliveries))] = {
            "feed": feed, "expected_status": expected, "replaces_file": replaces,
            "layout": ";".join(filter(None, [
                "reordered" if writer.layout.reorder else "",
                *(f"extra:{h}" for h in writer.layout.extra_headers),
                *(f"missing:{h}" for h in writer.layout.drop_headers),
            ])),
        }
        return writer

    def close(self, writer: FeedWriter) -> None:
        records = writer.close()
        first = str(writer.paths[0].relative_to(self.deliveries)) if hasattr(writer, "paths") else str(
            writer.path.relative_to(self.deliveries))
        self.files[first]["records"] = records
        for extra in getattr(writer, "paths", [])[1:]:
            self.files[str(extra.relative_to(self.deliveries))] = dict(self.files[first], records=-1)

    # ------------------------------------------------------------------ run
    def run(self) -> SynthSummary:
        started = time.monotonic()
        if self.deliveries.exists():
            shutil.rmtree(self.deliveries)
        self.truth.mkdir(parents=True, exist_ok=True)
        self.defect_log = DefectLog(self.truth / "defects.csv")
        conflicts_handle = (self.truth / "conflicts.csv").open("w", encoding="utf-8", newline="")
        self.conflicts = csv.writer(conflicts_handle)
        self.conflicts.writerow(("subject", "attribute", "authoritative_feed", "authoritative_value",
                                 "other_feed", "other_value"))
        records_handle = (self.truth / "entity_records.csv").open("w", encoding="utf-8", newline="")
        self.entity_records = csv.writer(records_handle)
        self.entity_records.writerow(ENTITY_RECORD_COLUMNS)
        self.write_addresses()
        self.write_grid()
        self.make_entities()
        self.write_persons()
        self.make_inspectors()
        self.write_entity_feeds()
        self.write_special_deliveries()
        self.defect_log.close()
        conflicts_handle.close()
        records_handle.close()
        self.conflicts = None
        self.write_files_truth()
        defects = sum(1 for _ in (self.truth / "defects.csv").open(encoding="utf-8")) - 1
        return SynthSummary(
            out=str(self.out), scale=self.scale, seed=self.seed, persons=self.n_persons,
            market_entities=self.n_market, social_orgs=self.n_social, addresses=self.geo.n_addresses,
            files={k: v.get("records", 0) for k, v in sorted(self.files.items())},
            defects=defects, seconds=round(time.monotonic() - started, 2),
        )

    def write_files_truth(self) -> None:
        """``truth/files.csv``: every delivery written and what ingest should do with it."""
        with (self.truth / "files.csv").open("w", encoding="utf-8", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(("file", "feed", "expected_status", "replaces_file", "records", "layout"))
            for path, info in sorted(self.files.items()):
                out.writerow((path, info["feed"], info["expected_status"], info["replaces_file"],
                              info.get("records", 0), info["layout"]))

    # ------------------------------------------------------------------ geography
    def write_addresses(self) -> None:
        headers = ["地址编码", "镇街代码", "镇街", "村社区", "街路巷", "门牌号", "楼栋", "标准地址", "经度", "纬度"]
        writer = self.writer("nr.standard_address", headers, "csv", "utf-8")
        rng = rng_for(self.seed, "addresses")
        for i in range(self.geo.n_addresses):
            a = self.geo.address(i)
            writer.write({
                "地址编码": a["address_code"], "镇街代码": a["town_code"], "镇街": a["town_name"],
                "村社区": a["community"], "街路巷": a["road"], "门牌号": a["number"],
                "楼栋": f"{rng.randint(1, 12)}栋" if rng.random() < 0.3 else "",
                "标准地址": self.geo.standard_text(a), "经度": a["longitude"], "纬度": a["latitude"],
            })
        self.close(writer)

    def write_grid(self) -> None:
        headers = ["网格编码", "网格名称", "镇街代码", "网格边界", "网格员"]
        writer = self.writer("grid.cell", headers, "csv", "utf-8")
        rng = rng_for(self.seed, "grid")
        per_town = max(1, round(REAL_GRID_CELLS * self.scale / len(TOWN_CODES)))
        self.grid_codes: list[list[str]] = []
        for t, town_code in enumerate(TOWN_CODES):
            lon_c, lat_c = self.geo.centres[t]
            w, h = self.geo.cell_size
            side = max(1, int(per_town ** 0.5 + 0.999))
            codes = []
            for k in range(per_town):
                r, c = divmod(k, side)
                x0 = lon_c - w / 2 + c * w / side
                y0 = lat_c - h / 2 + r * h / side
                x1, y1 = x0 + w / side, y0 + h / side
                polygon = f"POLYGON(({x0:.6f} {y0:.6f}, {x1:.6f} {y0:.6f}, {x1:.6f} {y1:.6f}, {x0:.6f} {y1:.6f}, {x0:.6f} {y0:.6f}))"
                code = f"{town_code}{k + 1:04d}"
                codes.append(code)
                writer.write({"网格编码": code, "网格名称": f"{ref.TOWNS[town_code]}第{k + 1}网格",
                              "镇街代码": town_code, "网格边界": polygon, "网格员": _person_name(rng)})
            self.grid_codes.append(codes)
        self.close(writer)

    # ------------------------------------------------------------------ entities
    def make_entities(self) -> None:
        rng = rng_for(self.seed, "entities")
        names: set[str] = set()
        sections = list(voc.SECTION_WEIGHTS)
        weights = list(voc.SECTION_WEIGHTS.values())
        space = 31 ** 6
        stride = 1_000_003  # coprime with 31**6: index -> unique organisation code
        for j in range(self.n_market):
            kind = rng.random()
            if kind < 0.47:
                entity_type = rng.choices(("有限责任公司", "股份有限公司", "个人独资企业", "合伙企业"), (90, 3, 4, 3))[0]
                prefix = "91"
            elif kind < 0.99:
                entity_type, prefix = "个体工商户", "92"
            else:
                entity_type, prefix = "农民专业合作社", "93"
            section = "A" if prefix == "93" else rng.choices(sections, weights)[0]
            town = rng.randrange(len(TOWN_CODES))
            org8 = "MA" + _base31((j * stride + self.seed) % space, 6)
            name = self._entity_name(rng, entity_type, section, town, names)
            status = rng.choices(("存续", "在业", "吊销", "注销"), (80, 5, 5, 10))[0]
            capital = None if prefix == "92" and rng.random() < 0.7 else f"{rng.choice((10, 50, 100, 200, 500, 1000, 3000)) * rng.randint(1, 5)}"
            self.entities.append(Entity(
                uscc=make_uscc(prefix, org8), name=name, entity_type=entity_type, status=status,
                section=section, industry_code=rng.choice(voc.INDUSTRY_CODES[section]), town=town,
                address=self.geo.address_in_town(rng, town),
                established=_random_day(rng, date(1990, 1, 1), self.as_of - timedelta(days=30)),
                capital=capital,
            ))
        self.social_orgs: list[Entity] = []
        for k in range(self.n_social):
            org_type = rng.choices(("社会团体", "民办非企业单位", "基金会"), (50, 47, 3))[0]
            prefix = {"社会团体": "51", "民办非企业单位": "52", "基金会": "53"}[org_type]
            town = rng.randrange(len(TOWN_CODES))
            org8 = "MJ" + _base31((k * stride + self.seed) % space, 6)
            base = f"东莞市{ref.TOWNS[TOWN_CODES[town]][:2]}{''.join(rng.sample(voc.COMPANY_BRANDS, 2))}"
            name = base + {"社会团体": "商会", "民办非企业单位": "培训中心", "基金会": "慈善基金会"}[org_type]
            while name in names:
                name = base + rng.choice(voc.GIVEN_CHARS) + name[len(base):]
            names.add(name)
            self.social_orgs.append(Entity(
                uscc=make_uscc(prefix, org8), name=name, entity_type=org_type,
                status=rng.choices(("正常", "注销", "撤销"), (90, 8, 2))[0], section="S",
                industry_code="S9521", town=town, address=self.geo.address_in_town(rng, town),
                established=_random_day(rng, date(1995, 1, 1), self.as_of), capital=None,
            ))
        # Legal representatives are persons; person p represents the entities in rep_of[p].
        self.rep_of: dict[int, list[int]] = {}
        for j in range(len(self.entities) + len(self.social_orgs)):
            self.rep_of.setdefault(rng.randrange(self.n_persons), []).append(j)

    def _entity_name(self, rng: random.Random, entity_type: str, section: str, town: int, names: set[str]) -> str:
        town_short = ref.TOWNS[TOWN_CODES[town]].removesuffix("街道").removesuffix("镇")
        for attempt in range(50):
            brand = "".join(rng.choice(voc.COMPANY_BRANDS + voc.GIVEN_CHARS) for _ in range(2 + attempt // 10))
            word = rng.choice(voc.INDUSTRY_WORDS[section])
            if entity_type == "个体工商户":
                name = f"东莞市{town_short}{brand}{word}"
            elif entity_type == "农民专业合作社":
                name = f"东莞市{town_short}{brand}农业专业合作社"
            else:
                suffix = {"有限责任公司": "有限公司", "股份有限公司": "股份有限公司",
                          "个人独资企业": "（个人独资）", "合伙企业": "（有限合伙）"}[entity_type]
                if rng.random() < 0.1:
                    brackets = ("（", "）") if rng.random() < 0.5 else ("(", ")")
                    name = f"{brand}{word}{brackets[0]}东莞{brackets[1]}{suffix}"
                else:
                    name = f"东莞市{brand}{word}{suffix}"
            if name not in names:
                names.add(name)
                return name
        raise RuntimeError("could not find a unique entity name")  # pragma: no cover

    # ------------------------------------------------------------------ persons
    def new_person(self, rng: random.Random, p: int, sequence: dict[str, int], hukou_share: float = 0.25) -> dict:
        """Person ``p``: a valid, unique GB 11643 ID (``sequence`` counts the
        sequence numbers used per division, birth date and gender)."""
        is_hukou = rng.random() < hukou_share
        gender = "男" if rng.random() < 0.52 else "女"
        birth = _birth_date(rng, self.as_of, migrant=not is_hukou)
        if is_hukou:
            division = ref.CITY_DIVISION_CODE
            if birth.year < 1985 and rng.random() < 0.3:
                division = "442527"
            elif 1985 <= birth.year <= 1988 and rng.random() < 0.5:
                division = "442502"
        else:
            division = rng.choice(voc.OTHER_PROVINCE_DIVISIONS)
        crowded = 0
        while True:
            key = f"{division}{birth:%Y%m%d}{gender}"
            count = sequence.get(key, 0)
            sequence[key] = count + 1
            seq = 2 * count + (1 if gender == "男" else 2)
            if seq <= 999:
                break
            crowded += 1
            if crowded % 30:
                birth += timedelta(days=1)  # a crowded birthday: move one day on
            else:
                # a month of full birthdays (only files of tens of millions
                # reach it): a person born elsewhere, as many residents are
                division = rng.choice(voc.OTHER_PROVINCE_DIVISIONS)
        age = (self.as_of - birth).days / 365.25
        dead = rng.random() < (0.002 + 0.0004 * max(0.0, age - 50))
        death_date = _random_day(rng, self.as_of - timedelta(days=3 * 365), self.as_of) if dead else None
        if death_date and death_date <= birth:
            dead, death_date = False, None
        return {
            "is_hukou": is_hukou, "gender": gender, "birth": birth, "age": age,
            "person_id": _check_id(f"{division}{birth:%Y%m%d}{seq:03d}"), "name": _person_name(rng),
            "address": self.geo.address(rng.randrange(self.geo.n_addresses)),
            "phone": f"1{rng.choice('35789')}{rng.randrange(10**9):09d}",
            "ethnicity": rng.choice(voc.ETHNICITIES), "dead": dead, "death_date": death_date,
            "status": "死亡" if dead else ("迁出" if rng.random() < 0.01 else "正常"),
        }

    def namesake_id(self, corrupt: Corruptor, true_id: str, header: str) -> tuple[str, list[Label]]:
        """A planted namesake's own registration row, delivered without a
        usable ID half the time (no ID, or one digit mistyped), so that
        resolution has to tell the two apart (and must not merge them)."""
        if corrupt.hard.random() < 0.5:
            return true_id, []
        if corrupt.hard.random() < 0.5:
            return "", [Label(header, "id_missing", "quarantine", "required", true_id)]
        value = _mistyped(corrupt.hard, true_id, (2, 3, 4, 5, 14, 15), 1,
                          lambda v: ref.id_check_char(v[:17]) != v[17])
        return value, [Label(header, "id_typo_one", "quarantine", "id_number.check_character", true_id)]

    def namesake(self, rng: random.Random, like: dict, sequence: dict[str, int]) -> dict:
        """A second person with ``like``'s name, birth date, gender, division
        and town (hard case ``namesake``): a different ID, nothing else to
        tell them apart by."""
        person = dict(like)
        division, key = like["person_id"][:6], f"{like['person_id'][:6]}{like['birth']:%Y%m%d}{like['gender']}"
        count = sequence.get(key, 0)
        sequence[key] = count + 1
        seq = 2 * count + (1 if like["gender"] == "男" else 2)
        if seq > 999:
            return None
        town = TOWN_CODES.index(like["address"]["town_code"])
        person.update(person_id=_check_id(f"{division}{like['birth']:%Y%m%d}{seq:03d}"),
                      address=self.geo.address(self.geo.address_in_town(rng, town)),
                      phone=f"1{rng.choice('35789')}{rng.randrange(10**9):09d}", namesake_of=like["person_id"])
        return person

    def planted_id_conflict(self, person: dict, feed: str) -> None:
        """A delivered gender that contradicts the (true) ID number's sequence
        digit (defect ``id_gender_parity``): ingest quarantines the row, and
        the build records it in governance.conflicts against ``feed``, the ID
        number being the authority (issue 20)."""
        if self.conflicts is None:
            return
        flipped = "女" if person["gender"] == "男" else "男"
        self.conflicts.writerow((person["person_id"], "gender", "id_number", person["gender"], feed, flipped))

    def hukou_row(self, rng: random.Random, corrupt: Corruptor, person: dict, household: dict, p: int) -> tuple[dict, list]:
        """One 户籍人口 record as 公安局 exports it, with its defect labels."""
        if household["left"] == 0:
            household.update(number=f"{person['address']['town_code'][-3:]}{p:09d}",
                             left=rng.choice((1, 2, 3, 3, 4, 5)))
            relation = "户主"
        else:
            relation = rng.choice(voc.RELATIONS_AFTER_HEAD)
        household["left"] -= 1
        gender, birth = person["gender"], person["birth"]
        value, labels, flip = corrupt.person_id(person["person_id"], "身份证号", allow_gender=True,
                                                allow_missing=True)
        if person.get("namesake_of") and corrupt.hard is not None and not labels:
            value, labels = self.namesake_id(corrupt, person["person_id"], "身份证号")
        birth_text, birth_labels = corrupt.day(birth, "出生日期", required=True)
        reg_text, reg_labels = corrupt.day(_random_day(rng, max(birth, date(1985, 1, 1)), self.as_of), "登记日期")
        name_text, name_labels = corrupt.required_text(person["name"], "姓名")
        if not name_labels:
            name_text, name_labels = corrupt.person_name(name_text, "姓名", _unkeyed(labels))
        address_text, address_labels = corrupt.address(self.geo.free_text(person["address"], rng), "户籍地址")
        if flip:
            self.planted_id_conflict(person, "psb.hukou")
        return {
            "身份证号": value, "姓名": name_text, "性别": ("女" if gender == "男" else "男") if flip else gender,
            "民族": person["ethnicity"], "出生日期": birth_text,
            "户籍地址": address_text, "户号": household["number"],
            "与户主关系": relation, "登记日期": reg_text, "人口状态": person["status"],
        }, labels + birth_labels + reg_labels + name_labels + address_labels

    def write_persons(self) -> None:
        rates = self.rates
        hukou = self.writer("psb.hukou", HUKOU_HEADERS, "csv", "gb18030", crlf=True)
        residence = self.writer("psb.residence_permit", ["证件号码", "姓名", "性别", "出生日期", "居住地址",
                                                          "所属镇街", "联系电话", "登记日期", "有效期至"], "xlsx")
        death = self.writer("mca.death", ["身份证号", "姓名", "死亡日期", "火化日期", "殡仪馆"], "csv", "gb18030",
                            crlf=True, layout=FileLayout(drop_headers=("殡仪馆",)))
        marriage = self.writer("mca.marriage", ["登记编号", "男方身份证号", "男方姓名", "女方身份证号", "女方姓名",
                                                "登记类型", "登记日期", "登记机关"], "csv", "utf-8-sig")
        insurance = self.writer("hrss.social_insurance", ["身份证号", "姓名", "单位统一社会信用代码", "单位名称",
                                                          "险种", "参保状态", "参保日期", "缴费基数"], "csv",
                                "gb18030", crlf=True, layout=FileLayout(extra_headers=("备注",)))
        self.court = self.writer("court.dishonest_debtor", ["案号", "被执行人名称", "证件号码", "立案日期", "发布日期",
                                                            "履行情况", "执行法院"], "csv", "utf-8")
        self.court_cases = 0
        truth_handle = (self.truth / "persons.csv").open("w", encoding="utf-8", newline="")
        truth = csv.writer(truth_handle)
        namesakes_handle = (self.truth / "namesakes.csv").open("w", encoding="utf-8", newline="")
        namesakes = csv.writer(namesakes_handle)
        namesakes.writerow(("person_id", "namesake_of", "full_name", "birth_date", "town_code"))
        truth.writerow(("person_id", "full_name", "gender", "birth_date", "ethnicity", "registration",
                        "town_code", "address_code", "phone", "population_status", "death_date",
                        "employer_uscc", "permit_valid_until"))
        sequence: dict[str, int] = {}
        pending_reps: list[int] = []
        singles = {"男": [], "女": []}
        household = {"number": "", "left": 0}
        marriage_count = 0
        employers = self.entities
        # Inspectors come from hukou households drawn at their first member
        # (a stream of their own, ~2 households per inspector needed); every
        # member's hukou and insurance rows are delivered clean, so each
        # relation of an inspector to an entity is one the lake can see.
        self.inspector_households: list[list[dict]] = []
        household_draw = rng_for(self.seed, "inspector-households")
        share = min(1.0, 2.0 * self.n_inspectors / max(1.0, 0.078 * self.n_persons))
        members: list[dict] | None = None
        for chunk_start in range(0, self.n_persons, PERSON_CHUNK):
            rng = rng_for(self.seed, "persons", chunk_start)
            c_hukou = Corruptor(rng, rates)
            c_res = Corruptor(rng, rates, xlsx=True)
            c_clean = Corruptor(rng, rates.scaled(0.0))
            twin_draw = rng_for(self.seed, "namesakes", chunk_start) if rates.namesake else None
            previous = None
            for p in range(chunk_start, min(self.n_persons, chunk_start + PERSON_CHUNK)):
                person = None
                if twin_draw is not None and previous is not None and twin_draw.random() < rates.namesake:
                    person = self.namesake(twin_draw, previous, sequence)
                    if person is not None:
                        namesakes.writerow((person["person_id"], previous["person_id"], person["name"],
                                            person["birth"].isoformat(), person["address"]["town_code"]))
                person = person or self.new_person(rng, p, sequence)
                previous = person if not person.get("namesake_of") else None
                is_hukou, gender, birth, person_id, name = (
                    person["is_hukou"], person["gender"], person["birth"], person["person_id"], person["name"])
                age, address, phone, ethnicity = person["age"], person["address"], person["phone"], person["ethnicity"]
                dead, death_date, status = person["dead"], person["death_date"], person["status"]
                # the residence permit's expiry as delivered: blank without a
                # permit or when the delivery carries no readable date
                permit_valid_until = ""
                member = None
                if is_hukou and household["left"] == 0:      # the first member of a new household
                    members = [] if household_draw.random() < share else None
                    if members is not None:
                        self.inspector_households.append(members)
                if is_hukou and members is not None:
                    member = {"person_id": person_id, "name": name, "age": age, "dead": dead, "status": status,
                              "employer": ""}
                    members.append(member)
                c_person = c_clean if member is not None else c_hukou

                if p in self.rep_of or pending_reps:
                    if age >= 20 and not dead:
                        for j in self.rep_of.pop(p, []) + pending_reps:
                            target = self.entities[j] if j < len(self.entities) else self.social_orgs[j - len(self.entities)]
                            target.rep_id, target.rep_name = person_id, name
                        pending_reps = []
                    else:
                        pending_reps += self.rep_of.pop(p, [])

                if is_hukou:
                    hukou.write(*self.hukou_row(rng, c_person, person, household, p))
                    if member is not None:
                        member["household_number"] = household["number"]
                elif not dead:
                    value, labels, flip = c_res.person_id(person_id, "证件号码", allow_gender=True,
                                                          allow_missing=True)
                    if person.get("namesake_of") and c_res.hard is not None and not labels:
                        value, labels = self.namesake_id(c_res, person_id, "证件号码")
                    if flip:
                        self.planted_id_conflict(person, "psb.residence_permit")
                    registered = _random_day(rng, self.as_of - timedelta(days=3 * 365), self.as_of)
                    birth_value, birth_labels = c_res.day(birth, "出生日期", required=True)
                    reg_value, reg_labels = c_res.day(registered, "登记日期")
                    until_value, until_labels = c_res.day(registered + timedelta(days=365 * 3), "有效期至")
                    if not until_labels:
                        permit_valid_until = (registered + timedelta(days=365 * 3)).isoformat()
                    phone_value, phone_labels = c_res.optional_text(phone, "联系电话")
                    name_value, name_labels = c_res.person_name(name, "姓名", _unkeyed(labels))
                    address_value, address_labels = c_res.address(self.geo.free_text(address, rng), "居住地址")
                    residence.write({
                        "证件号码": value, "姓名": name_value,
                        "性别": ("女" if gender == "男" else "男") if flip else gender,
                        "出生日期": birth_value, "居住地址": address_value,
                        "所属镇街": address["town_name"], "联系电话": phone_value,
                        "登记日期": reg_value, "有效期至": until_value,
                    }, labels + birth_labels + reg_labels + until_labels + phone_labels + name_labels
                        + address_labels)

                if dead:
                    value, labels, _ = c_hukou.person_id(person_id, "身份证号")
                    death_text, death_labels = c_hukou.day(death_date, "死亡日期", required=True)
                    cremation = death_date + timedelta(days=rng.randint(1, 7))
                    cremation_text, cremation_labels = c_hukou.day(min(cremation, self.as_of), "火化日期")
                    name_value, name_labels = c_hukou.person_name(name, "姓名", _unkeyed(labels))
                    death.write({"身份证号": value, "姓名": name_value, "死亡日期": death_text,
                                 "火化日期": cremation_text, "殡仪馆": rng.choice(voc.FUNERAL_HOMES)},
                                labels + death_labels + cremation_labels + name_labels)

                employer = ""
                if not dead and 18 <= age < 60 and rng.random() < 0.6:
                    entity = employers[rng.randrange(len(employers))]
                    employer = entity.uscc
                    if member is not None:
                        member["employer"] = employer
                    value, labels, _ = c_person.person_id(person_id, "身份证号")
                    started = _random_day(rng, max(birth + timedelta(days=18 * 366), date(2000, 1, 1)), self.as_of)
                    uscc_value, uscc_labels = c_person.uscc(entity.uscc, "单位统一社会信用代码")
                    base = f"{rng.randint(2300, 30000)}.00"
                    status_ins = rng.choices(("参保缴费", "暂停缴费", "终止参保"), (90, 5, 5))[0]
                    kinds = ["养老保险", "医疗保险"] + [k for k, share in (("工伤保险", 0.6), ("失业保险", 0.4),
                                                                     ("生育保险", 0.3)) if rng.random() < share]
                    name_value, name_labels = c_person.person_name(name, "姓名", _unkeyed(labels))
                    for kind in kinds:
                        date_text, date_labels = c_person.day(started, "参保日期")
                        insurance.write({"身份证号": value, "姓名": name_value, "单位统一社会信用代码": uscc_value,
                                         "单位名称": entity.name, "险种": kind, "参保状态": status_ins,
                                         "参保日期": date_text, "缴费基数": base},
                                        labels + uscc_labels + date_labels + name_labels)
                    self.entity_records.writerow((entity.uscc, "insured", person_id, started, "", status_ins, "",
                                                  "", not (labels + uscc_labels)))

                if not dead and 22 <= age <= 60 and rng.random() < 0.02:
                    singles[gender].append((person_id, name))
                    if singles["男"] and singles["女"]:
                        husband, wife = singles["男"].pop(), singles["女"].pop()
                        marriage_count += 1
                        h_value, h_labels, _ = c_hukou.person_id(husband[0], "男方身份证号")
                        w_value, w_labels, _ = c_hukou.person_id(wife[0], "女方身份证号")
                        when, when_labels = c_hukou.day(
                            _random_day(rng, self.as_of - timedelta(days=5 * 365), self.as_of), "登记日期", required=True)
                        marriage.write({
                            "登记编号": f"J441900-{marriage_count:08d}", "男方身份证号": h_value,
                            "男方姓名": husband[1], "女方身份证号": w_value, "女方姓名": wife[1],
                            "登记类型": "结婚" if rng.random() < 0.85 else "离婚", "登记日期": when,
                            "登记机关": "东莞市民政局婚姻登记处",
                        }, h_labels + w_labels + when_labels)

                if not dead and age >= 20 and rng.random() < 0.003:
                    self.write_court_case(rng, c_hukou, name, person_id, is_person=True)

                truth.writerow((person_id, name, gender, birth.isoformat(), ethnicity,
                                "hukou" if is_hukou else "residence", address["town_code"],
                                address["address_code"], phone, status,
                                death_date.isoformat() if death_date else "", employer, permit_valid_until))
        for j in pending_reps + [j for js in self.rep_of.values() for j in js]:
            target = self.entities[j] if j < len(self.entities) else self.social_orgs[j - len(self.entities)]
            target.rep_id, target.rep_name = person_id, name
        truth_handle.close()
        namesakes_handle.close()
        for writer in (hukou, residence, death, marriage, insurance):
            self.close(writer)

    def make_inspectors(self) -> None:
        """The roster of amr.inspector, drawn from the inspector households of
        ``write_persons``: one eligible member (25-58, alive, 正常) of each
        until there are ``n_inspectors``. Relations are planted on top of the
        ones that occur anyway: a quarter of inspectors become the legal
        representative of some operating firm, a quarter have a household
        member who does. Every entity represented by a member of an
        inspector's household is delivered clean (``Entity.clean``); the truth
        of whom each inspector must not inspect is written after all planting
        (``write_inspector_truth``)."""
        rng = rng_for(self.seed, "inspectors")
        operating = [e for e in self.entities if e.status in ("存续", "在业")]
        categories = ("食品", "特种设备", "价格", "广告", "综合")
        self.inspectors: list[dict] = []
        for household in self.inspector_households:
            if len(self.inspectors) >= self.n_inspectors:
                break
            eligible = [m for m in household if not m["dead"] and m["status"] == "正常" and 25 <= m["age"] <= 58]
            if not eligible:
                continue
            person = rng.choice(eligible)
            town = rng.randrange(len(TOWN_CODES))
            inspector = dict(person, household=household,
                             certificate_number=f"44190021{len(self.inspectors) + 1:06d}",
                             department="东莞市市场监督管理局" if rng.random() < 0.3
                             else f"东莞市市场监督管理局{ref.TOWNS[TOWN_CODES[town]]}分局",
                             town_name=ref.TOWNS[TOWN_CODES[town]],
                             category=rng.choices(categories, (30, 15, 15, 10, 30))[0],
                             duty_status="在岗" if rng.random() < 0.92 else "离岗")
            self.inspectors.append(inspector)
            others = [m for m in household if m is not person and not m["dead"] and m["age"] >= 20]
            relatives = [person] if rng.random() < 0.25 else []
            if others and rng.random() < 0.25:
                relatives.append(rng.choice(others))
            for relative in relatives:
                firm = rng.choice(operating)
                firm.rep_id, firm.rep_name = relative["person_id"], relative["name"]
        in_households = {m["person_id"] for household in self.inspector_households for m in household}
        for entity in self.entities + self.social_orgs:
            if entity.rep_id in in_households:
                entity.clean = True

    def write_inspectors(self) -> None:
        """amr.inspector (clean: its subject is the draw, not ingest's repairs)
        and its truth: ``inspectors.csv``, and ``inspector_conflicts.csv`` with
        every entity each inspector must not be assigned to (回避): one they
        represent (legal_representative), one a member of their household
        (same 户号) represents (household_legal_representative), their
        employer by social insurance (employer)."""
        writer = self.writer("amr.inspector", ["执法证号", "姓名", "身份证号", "所属部门", "所属镇街", "执法类别",
                                               "在岗状态"], "csv", "utf-8", clean=True)
        represented: dict[str, list[str]] = {}
        for entity in self.entities + self.social_orgs:
            if entity.clean:
                represented.setdefault(entity.rep_id, []).append(entity.uscc)
        with (self.truth / "inspectors.csv").open("w", encoding="utf-8", newline="") as roster, \
                (self.truth / "inspector_conflicts.csv").open("w", encoding="utf-8", newline="") as conflicts:
            roster_out, conflicts_out = csv.writer(roster), csv.writer(conflicts)
            roster_out.writerow(("certificate_number", "person_id", "full_name", "household_number", "department",
                                 "town_name", "enforcement_category", "duty_status", "employer_uscc"))
            conflicts_out.writerow(("certificate_number", "uscc", "relation", "related_person_id"))
            for inspector in self.inspectors:
                writer.write({"执法证号": inspector["certificate_number"], "姓名": inspector["name"],
                              "身份证号": inspector["person_id"], "所属部门": inspector["department"],
                              "所属镇街": inspector["town_name"], "执法类别": inspector["category"],
                              "在岗状态": inspector["duty_status"]}, [])
                roster_out.writerow((inspector["certificate_number"], inspector["person_id"], inspector["name"],
                                     inspector["household_number"], inspector["department"], inspector["town_name"],
                                     inspector["category"], inspector["duty_status"], inspector["employer"]))
                # one row per entity, the first relation in this order (the order the draw states them in)
                rows: dict[str, tuple[str, str]] = {}
                for uscc in represented.get(inspector["person_id"], []):
                    rows.setdefault(uscc, ("legal_representative", inspector["person_id"]))
                for member in inspector["household"]:
                    if member["person_id"] != inspector["person_id"]:
                        for uscc in represented.get(member["person_id"], []):
                            rows.setdefault(uscc, ("household_legal_representative", member["person_id"]))
                if inspector["employer"]:
                    rows.setdefault(inspector["employer"], ("employer", inspector["person_id"]))
                for uscc, (relation, related) in sorted(rows.items()):
                    conflicts_out.writerow((inspector["certificate_number"], uscc, relation, related))
        self.close(writer)
        self.write_inspection_results()

    def write_inspection_results(self) -> None:
        """amr.inspection_result: the last period's inspections (about 2% of
        the operating entities, by two on-duty inspectors each, within the
        three months before day 0), clean, and ``truth/last_inspections.csv``
        with each entity's inspectors of its latest inspection (the ones a new
        draw must not send again), its task number and result."""
        rng = rng_for(self.seed, "inspection-results")
        on_duty = [i for i in self.inspectors if i["duty_status"] == "在岗"]
        if len(on_duty) < 2:
            return
        writer = self.writer("amr.inspection_result", ["抽查任务编号", "抽查事项", "统一社会信用代码", "检查对象名称",
                                                       "检查日期", "检查结果", "执法证号", "公示日期"],
                             "csv", "utf-8", clean=True)
        results = get_contract("amr.inspection_result").column("result").values
        items = ("食品经营者落实食品安全主体责任情况检查", "经营者明码标价和价格行为检查", "企业公示信息情况检查")
        with (self.truth / "last_inspections.csv").open("w", encoding="utf-8", newline="") as handle:
            truth = csv.writer(handle)
            truth.writerow(("uscc", "inspected_date", "certificate_numbers", "task_number", "result"))
            for k, entity in enumerate(e for e in self.entities if e.status in ("存续", "在业")):
                if rng.random() >= 0.02:
                    continue
                inspected = self.as_of - timedelta(days=rng.randint(7, 90))
                pair = sorted(i["certificate_number"] for i in rng.sample(on_duty, 2))
                task = f"SJ{inspected:%Y%m}{k:07d}"
                result, item = rng.choices(results, (70, 15, 5, 6, 1, 3))[0], rng.choice(items)
                for certificate in pair:
                    writer.write({"抽查任务编号": task, "抽查事项": item,
                                  "统一社会信用代码": entity.uscc, "检查对象名称": entity.name,
                                  "检查日期": inspected.isoformat(), "检查结果": result, "执法证号": certificate,
                                  "公示日期": (inspected + timedelta(days=20)).isoformat()}, [])
                truth.writerow((entity.uscc, inspected.isoformat(), ";".join(pair), task, result))
        self.close(writer)

    def write_court_case(self, rng: random.Random, corrupt: Corruptor, name: str, code: str,
                         is_person: bool) -> None:
        self.court_cases += 1
        filed = _random_day(rng, self.as_of - timedelta(days=4 * 365), self.as_of - timedelta(days=30))
        if is_person:
            value, labels, _ = corrupt.person_id(code, "证件号码")
        else:
            value, labels = corrupt.uscc(code, "证件号码")
        filed_text, filed_labels = corrupt.day(filed, "立案日期", required=True)
        published_text, published_labels = corrupt.day(filed + timedelta(days=rng.randint(20, 200)), "发布日期")
        case = {
            "案号": f"（{filed.year}）粤19{rng.randint(71, 73)}执{self.court_cases}号", "被执行人名称": name,
            "证件号码": value, "立案日期": filed_text, "发布日期": published_text,
            "履行情况": rng.choices(("全部未履行", "部分履行", "全部履行"), (70, 20, 10))[0],
            "执行法院": rng.choice(voc.COURTS),
        }
        self.court.write(case, labels + filed_labels + published_labels)
        if not is_person:
            self.entity_records.writerow((code, "dishonest", case["案号"], filed, "", case["履行情况"], "", "",
                                          not (labels + filed_labels + published_labels)))

    # ------------------------------------------------------------------ entity feeds
    def write_entity_feeds(self) -> None:
        rng = rng_for(self.seed, "entity-feeds")
        corrupt = Corruptor(rng, self.rates)
        corrupt_xlsx = Corruptor(rng, self.rates, xlsx=True)
        self.write_registration(rng, corrupt)
        self.write_social_orgs(rng, corrupt)
        self.write_tax(rng, corrupt)
        self.write_abnormal(rng, corrupt)
        self.write_penalties(rng, corrupt)
        self.write_food_licences(rng, corrupt_xlsx)
        for entity in self.entities:
            if entity.entity_type != "个体工商户" and rng.random() < 0.005:
                self.write_court_case(rng, corrupt, entity.name, entity.uscc, is_person=False)
        self.close(self.court)
        self.write_construction(rng, corrupt)
        self.write_hazards(rng, corrupt)
        self.write_inspectors()
        self.write_entity_truth()

    def write_registration(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["统一社会信用代码", "企业名称", "市场主体类型", "法定代表人", "法定代表人证件号", "注册资本(万元)",
                   "成立日期", "登记状态", "住所", "所属镇街", "行业代码", "经营范围", "核准日期"]
        writer = self.writer("amr.business_registration", headers, "csv", "gb18030", crlf=True)
        clean = Corruptor(rng, self.rates.scaled(0.0))
        for e in self.entities:
            address = self.geo.address(e.address)
            c = clean if e.clean else corrupt
            uscc, labels = c.uscc(e.uscc, "统一社会信用代码")
            rep_id, rep_labels, _ = c.person_id(e.rep_id, "法定代表人证件号")
            established, est_labels = c.day(e.established, "成立日期", required=True)
            approved, app_labels = c.day(_random_day(rng, e.established, self.as_of), "核准日期")
            words = voc.INDUSTRY_WORDS[e.section]
            scope = f"一般项目：{rng.choice(words)}；{rng.choice(words)}，销售：{rng.choice(words)}"
            if rng.random() < 0.05:
                scope += f",{rng.choice(words)}"
            if rng.random() < 0.02:
                scope += f"\n许可项目：{rng.choice(words)}"
            domicile = self.geo.free_text(address, rng)
            if rng.random() < 0.03:
                domicile += f",{rng.randint(1, 9)}栋"
            domicile, domicile_labels = c.address(domicile, "住所")
            name, name_labels = c.entity_name(e.name, "企业名称", _unkeyed(labels))
            labels = labels + domicile_labels + name_labels
            writer.write({
                "统一社会信用代码": uscc, "企业名称": name, "市场主体类型": e.entity_type,
                "法定代表人": e.rep_name, "法定代表人证件号": rep_id, "注册资本(万元)": e.capital,
                "成立日期": established, "登记状态": e.status, "住所": domicile,
                "所属镇街": ref.TOWNS[TOWN_CODES[e.town]], "行业代码": e.industry_code,
                "经营范围": scope, "核准日期": approved,
            }, labels + rep_labels + est_labels + app_labels)
        self.close(writer)

    def write_social_orgs(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["统一社会信用代码", "组织名称", "组织类型", "法定代表人", "法定代表人身份证号", "成立日期", "登记状态", "住所"]
        writer = self.writer("mca.social_org", headers, "csv", "utf-8")
        clean = Corruptor(rng, self.rates.scaled(0.0))
        for e in self.social_orgs:
            c = clean if e.clean else corrupt
            uscc, labels = c.uscc(e.uscc, "统一社会信用代码")
            rep_id, rep_labels, _ = c.person_id(e.rep_id, "法定代表人身份证号")
            established, est_labels = c.day(e.established, "成立日期")
            name, name_labels = c.entity_name(e.name, "组织名称", _unkeyed(labels))
            labels = labels + name_labels
            writer.write({
                "统一社会信用代码": uscc, "组织名称": name, "组织类型": e.entity_type, "法定代表人": e.rep_name,
                "法定代表人身份证号": rep_id, "成立日期": established, "登记状态": e.status,
                "住所": self.geo.free_text(self.geo.address(e.address), rng),
            }, labels + rep_labels + est_labels)
        self.close(writer)

    def write_tax(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["纳税人识别号", "纳税人名称", "法定代表人", "登记状态", "纳税信用等级", "评价年度", "主管税务机关"]
        writer = self.writer("tax.taxpayer", headers, "jsonl", "utf-8")
        self.tax_grade: dict[str, str] = {}
        for e in self.entities:
            if e.entity_type == "个体工商户" and rng.random() > 0.3:
                continue
            uscc, labels = corrupt.uscc(e.uscc, "纳税人识别号")
            status = {"存续": "正常", "在业": "正常", "吊销": "非正常", "注销": "注销"}[e.status]
            grade = None if status == "注销" else rng.choices("ABMCD", (10, 50, 25, 10, 5))[0]
            if grade:
                self.tax_grade[e.uscc] = grade
            name = e.name
            if ("（" in name or "(" in name) and rng.random() < 0.3:
                name = name.translate(str.maketrans("（）()", "()（）"))
            rep = e.rep_name
            name, name_labels = corrupt.entity_name(name, "纳税人名称", _unkeyed(labels))
            labels = labels + name_labels
            if corrupt.hard is not None and _unkeyed(labels) and corrupt.hard.random() < self.rates.rep_changed:
                # the representative changed after registration's delivery: tax has the new one
                rep = _person_name(corrupt.hard)
                labels.append(Label("法定代表人", "rep_changed", "resolved", "", e.rep_name))
            elif rng.random() < self.rates.tax_legal_rep_conflict:
                rep = _person_name(rng)
                if rep != e.rep_name:
                    self.conflicts.writerow((e.uscc, "legal_representative", "amr.business_registration",
                                             e.rep_name, "tax.taxpayer", rep))
            town_short = ref.TOWNS[TOWN_CODES[e.town]].removesuffix("街道").removesuffix("镇")
            writer.write({
                "纳税人识别号": uscc, "纳税人名称": name, "法定代表人": rep, "登记状态": status,
                "纳税信用等级": grade, "评价年度": self.as_of.year - 1,
                "主管税务机关": f"国家税务总局东莞市{town_short}{voc.TAX_AUTHORITIES_SUFFIX}",
            }, labels)
        self.close(writer)

    def write_abnormal(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["统一社会信用代码", "企业名称", "列入原因", "列入日期", "移出日期", "决定机关"]
        writer = self.writer("amr.abnormal_list", headers, "csv", "utf-8", layout=FileLayout(reorder=True))
        for e in self.entities:
            if e.status == "注销" or rng.random() > 0.05:
                continue
            uscc, labels = corrupt.uscc(e.uscc, "统一社会信用代码")
            listed = _random_day(rng, max(e.established, self.as_of - timedelta(days=3 * 365)), self.as_of)
            listed_text, listed_labels = corrupt.day(listed, "列入日期", required=True)
            removed = listed + timedelta(days=rng.randint(30, 400)) if rng.random() < 0.4 else None
            removed_text, removed_labels = corrupt.day(removed if removed and removed <= self.as_of else None, "移出日期")
            writer.write({"统一社会信用代码": uscc, "企业名称": e.name, "列入原因": rng.choice(voc.ABNORMAL_REASONS),
                          "列入日期": listed_text, "移出日期": removed_text, "决定机关": "东莞市市场监督管理局"},
                         labels + listed_labels + removed_labels)
            shown_removed = removed if removed and removed <= self.as_of else None
            self.entity_records.writerow((e.uscc, "abnormal", "", listed, shown_removed or "",
                                          "removed" if shown_removed else "listed", "", "",
                                          not (labels + listed_labels + removed_labels)))
        self.close(writer)

    def write_penalties(self, rng: random.Random, corrupt: Corruptor) -> None:
        """The original delivery has defects; its correction (``_更正``)
        carries the same decisions, clean, and replaces it."""
        headers = ["处罚决定书文号", "统一社会信用代码", "当事人名称", "违法行为类型", "处罚内容", "罚款金额(元)",
                   "处罚决定日期", "处罚机关"]
        original = self.writer("amr.penalty", headers, "csv", "utf-8", expected="replaced")
        corrected = self.writer("amr.penalty", headers, "csv", "utf-8", suffix="_更正", clean=True,
                                replaces=original.path.name)
        clean = Corruptor(rng, self.rates.scaled(0.0))
        count = 0
        for e in self.entities:
            if rng.random() > 0.02:
                continue
            count += 1
            decided = _random_day(rng, max(e.established, self.as_of - timedelta(days=3 * 365)), self.as_of)
            fine = rng.choice((500, 1000, 2000, 5000, 10000, 50000))
            base = {"处罚决定书文号": f"东市监罚〔{decided.year}〕{count}号", "当事人名称": e.name,
                    "违法行为类型": rng.choice(voc.VIOLATIONS), "处罚内容": f"罚款{fine}元",
                    "罚款金额(元)": f"{fine}.00", "处罚机关": "东莞市市场监督管理局"}
            uscc, labels = corrupt.uscc(e.uscc, "统一社会信用代码")
            decided_text, decided_labels = corrupt.day(decided, "处罚决定日期", required=True)
            original.write(base | {"统一社会信用代码": uscc, "处罚决定日期": decided_text}, labels + decided_labels)
            clean_date, _ = clean.day(decided, "处罚决定日期", required=True)
            corrected.write(base | {"统一社会信用代码": e.uscc, "处罚决定日期": clean_date})
            # the correction replaces the original: what is loaded is clean
            self.entity_records.writerow((e.uscc, "penalty", base["处罚决定书文号"], decided, "", "decided", "", "",
                                          True))
        self.close(original)
        self.close(corrected)

    def write_food_licences(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["许可证编号", "经营者名称", "统一社会信用代码", "经营场所", "主体业态", "发证日期", "有效期至", "发证机关", "状态"]
        writer = self.writer("amr.food_licence", headers, "xlsx")
        count = 0
        for e in self.entities:
            if e.section not in ("H", "F") or rng.random() > 0.5:
                continue
            count += 1
            issued = _random_day(rng, max(e.established, self.as_of - timedelta(days=5 * 365)), self.as_of)
            uscc, labels = corrupt.uscc(e.uscc, "统一社会信用代码")
            issued_value, issued_labels = corrupt.day(issued, "发证日期", required=True)
            until_value, until_labels = corrupt.day(issued + timedelta(days=5 * 365), "有效期至", required=True)
            licence = {
                "许可证编号": f"JY{rng.choice('123')}441900{count:07d}", "经营者名称": e.name,
                "统一社会信用代码": uscc,
                "经营场所": self.geo.free_text(self.geo.address(e.address), rng),
                "主体业态": rng.choice(voc.FOOD_FORMATS), "发证日期": issued_value, "有效期至": until_value,
                "发证机关": "东莞市市场监督管理局", "状态": "有效" if rng.random() < 0.95 else "注销",
            }
            writer.write(licence, labels + issued_labels + until_labels)
            self.entity_records.writerow((e.uscc, "food_licence", licence["许可证编号"], issued,
                                          issued + timedelta(days=5 * 365), licence["状态"], "", "",
                                          not (labels + issued_labels + until_labels)))
        self.close(writer)

    def write_construction(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["施工许可证编号", "项目名称", "建设单位", "建设单位统一社会信用代码", "施工单位统一社会信用代码",
                   "建设地址", "发证日期", "合同金额(万元)"]
        writer = self.writer("hud.construction_permit", headers, "csv", "gb18030", crlf=True)
        companies = [e for e in self.entities if e.uscc.startswith("91")]
        builders = [e for e in companies if e.section in ("K", "C", "L")] or companies
        contractors = [e for e in companies if e.section == "E"] or companies
        for k in range(max(10, round(REAL_CONSTRUCTION_PERMITS * self.scale))):
            builder, contractor = rng.choice(builders), rng.choice(contractors)
            issued = _random_day(rng, self.as_of - timedelta(days=3 * 365), self.as_of)
            b_uscc, b_labels = corrupt.uscc(builder.uscc, "建设单位统一社会信用代码")
            c_uscc, c_labels = corrupt.uscc(contractor.uscc, "施工单位统一社会信用代码")
            issued_text, issued_labels = corrupt.day(issued, "发证日期", required=True)
            address = self.geo.address(self.geo.address_in_town(rng, builder.town))
            permit = f"441900{issued:%Y%m%d}{k + 1:05d}01"
            self.entity_records.writerow((builder.uscc, "construction_permit", permit, issued, "", "", "", "",
                                          not (b_labels + c_labels + issued_labels)))
            writer.write({
                "施工许可证编号": permit,
                "项目名称": f"{builder.name.removesuffix('有限公司')}{rng.choice(('厂房', '办公楼', '宿舍楼', '仓库'))}项目",
                "建设单位": builder.name, "建设单位统一社会信用代码": b_uscc, "施工单位统一社会信用代码": c_uscc,
                "建设地址": self.geo.free_text(address, rng) + ("，一期" if rng.random() < 0.1 else ""),
                "发证日期": issued_text, "合同金额(万元)": f"{rng.randint(50, 50000)}.{rng.randint(0, 99):02d}",
            }, b_labels + c_labels + issued_labels)
        self.close(writer)

    def write_hazards(self, rng: random.Random, corrupt: Corruptor) -> None:
        headers = ["事件编号", "网格编码", "上报时间", "隐患类别", "地址", "经度", "纬度", "涉事主体名称",
                   "涉事主体代码", "处置状态", "办结时间"]
        writer = self.writer("grid.hazard_report", headers, "jsonl", "utf-8")
        for k in range(max(20, round(REAL_HAZARD_REPORTS * self.scale))):
            town = rng.randrange(len(TOWN_CODES))
            address = self.geo.address(self.geo.address_in_town(rng, town))
            reported = datetime.combine(self.as_of, datetime.min.time()) - timedelta(minutes=rng.randrange(60 * 24 * 90))
            status = rng.choices(("待处置", "处置中", "已办结"), (10, 20, 70))[0]
            closed = reported + timedelta(hours=rng.randint(1, 240)) if status == "已办结" else None
            subject = rng.choice(self.entities) if rng.random() < 0.6 else None
            form = "%Y-%m-%d %H:%M:%S" if rng.random() < 0.7 else "%Y/%m/%d %H:%M"
            labels = []
            code = None
            if subject:
                code, labels = corrupt.uscc(subject.uscc, "涉事主体代码")
            # the main stream's draws first, in the order they always came (the rest of the city stays as it was)
            grid_code, category = rng.choice(self.grid_codes[town]), rng.choice(voc.HAZARD_CATEGORIES)
            text = self.geo.free_text(address, rng)
            at = rng_for(self.seed, "hazard-at", k)
            premises = at.random()
            # found at an entity's own premises, named (half of those naming one) or not (a fifth of the
            # others): the grid worker's app records the standard address
            host = subject if subject and premises < 0.5 else (
                at.choice(self.entities) if not subject and premises < 0.2 else None)
            if host:
                address = self.geo.address(host.address)
                grid_code, text = at.choice(self.grid_codes[host.town]), self.geo.standard_text(address)
            event = f"SJ{reported:%Y%m%d}{k + 1:06d}"
            writer.write({
                "事件编号": event, "网格编码": grid_code,
                "上报时间": reported.strftime(form), "隐患类别": category,
                "地址": text, "经度": address["longitude"], "纬度": address["latitude"],
                "涉事主体名称": subject.name if subject else None, "涉事主体代码": code,
                "处置状态": status, "办结时间": closed.strftime(form) if closed else None,
            }, labels)
            self.entity_records.writerow((subject.uscc if subject else "", "hazard", event,
                                          reported.isoformat(sep=" "), closed.isoformat(sep=" ") if closed else "",
                                          status, category, address["address_code"], not labels))
        self.close(writer)

    def write_entity_truth(self) -> None:
        with (self.truth / "entities.csv").open("w", encoding="utf-8", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(("uscc", "name", "entity_type", "registration_status", "legal_representative",
                          "legal_representative_id", "town_code", "address_code", "industry_code",
                          "established_date", "tax_credit_grade", "source_feed"))
            for e in self.entities + self.social_orgs:
                out.writerow((e.uscc, e.name, e.entity_type, e.status, e.rep_name, e.rep_id,
                              TOWN_CODES[e.town], self.geo.address(e.address)["address_code"], e.industry_code,
                              e.established.isoformat(), self.tax_grade.get(e.uscc, ""),
                              "mca.social_org" if e.section == "S" else "amr.business_registration"))

    # ------------------------------------------------------------------ special deliveries
    def write_special_deliveries(self) -> None:
        """A file missing a required column, and a byte-identical resend."""
        headers = ["案号", "被执行人名称", "立案日期", "发布日期", "履行情况", "执行法院"]
        broken = self.writer("court.dishonest_debtor", headers, "csv", "utf-8", suffix="_补充", clean=True,
                             expected="rejected")
        rng = rng_for(self.seed, "special")
        for k in range(10):
            broken.write({"案号": f"（{self.as_of.year}）粤1971执补{k + 1}号", "被执行人名称": _person_name(rng),
                          "立案日期": self.as_of.isoformat(), "发布日期": "", "履行情况": "全部未履行",
                          "执行法院": voc.COURTS[0]})
        self.close(broken)
        source = self.deliveries / "mca" / "marriage" / f"marriage_{self.stamp}.csv"
        resend = source.with_name(f"marriage_{self.stamp}_重发.csv")
        shutil.copyfile(source, resend)
        info = self.files[str(source.relative_to(self.deliveries))]
        self.files[str(resend.relative_to(self.deliveries))] = dict(info, expected_status="already_loaded",
                                                                    replaces_file="")


def generate_city(out: Path, scale: float = 0.002, seed: int = 7, rates: DefectRates | None = None,
                  as_of: date = date(2026, 11, 28)) -> SynthSummary:
    """Write a synthetic city's deliveries and ground truth under ``out``."""
    city = City(Path(out), scale, seed, rates or DefectRates(), as_of)
    summary = city.run()
    log.info("synthetic city: %d persons, %d entities, %d files, %d defects in %.1fs",
             summary.persons, summary.market_entities, len(summary.files), summary.defects, summary.seconds)
    return summary


def write_hukou_export(out: Path, rows: int, seed: int = 7, rates: DefectRates | None = None,
                       as_of: date = date(2026, 11, 28)) -> Path:
    """One 公安局 household-registration export of ``rows`` residents (GB18030,
    CRLF, defects at ``rates``), without the rest of the city: for benchmarks
    and fault tests. Labels go to ``out/truth/defects.csv``."""
    scale = rows / (REAL_PERSONS * 0.25)
    city = City(Path(out), scale, seed, rates or DefectRates(), as_of)
    city.truth.mkdir(parents=True, exist_ok=True)
    city.defect_log = DefectLog(city.truth / "defects.csv")
    writer = city.writer("psb.hukou", HUKOU_HEADERS, "csv", "gb18030", crlf=True)
    sequence: dict[str, int] = {}
    household = {"number": "", "left": 0}
    for chunk_start in range(0, rows, PERSON_CHUNK):
        rng = rng_for(seed, "hukou-export", chunk_start)
        corrupt = Corruptor(rng, city.rates)
        for p in range(chunk_start, min(rows, chunk_start + PERSON_CHUNK)):
            person = city.new_person(rng, p, sequence, hukou_share=1.0)
            writer.write(*city.hukou_row(rng, corrupt, person, household, p))
    writer.close()
    city.defect_log.close()
    return writer.path
