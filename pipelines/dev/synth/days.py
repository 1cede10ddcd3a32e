"""A generated city's days after day 0: the change deliveries the bureaus send
each day, with the truth of what happened that day.

Day 0 is ``generate_city``'s output (``deliveries/``, ``truth/``). Day ``k``
(1..D) is the date ``as_of + k`` and writes::

    OUT/days/<k>/<bureau>/<feed>/<file>     that day's change deliveries
    OUT/truth/day-<k>/events.csv            what happened: event, feed, subject, name, detail
    OUT/truth/day-<k>/defects.csv           injected defects, as for day 0
    OUT/truth/day-<k>/files.csv             every delivery and what ingest should do with it

What a day holds, per real city (scale 1.0; smaller scales in proportion, at
least one of each): 300 births (公安局 registers the newborn in hukou), 70
deaths (民政局 death record; 公安局 sets the hukou status to 死亡), 300
hukou moves within the city (a new 户籍地址), 30 moves out (迁出), 1,000 new
residence permits (newcomers), 700 new market entities and 400 dissolved
ones (商事登记: a full registration row with 登记状态 注销), 30 penalties,
2,200 hazard reports and the closing of earlier days' open ones. Shares
follow Dongguan's published yearly figures divided by 365.

On the first day of a month the tax bureau sends its monthly snapshot of the
taxpayer register (``tax.taxpayer``, a ``delivery: snapshot`` feed): the
previous snapshot's lines as they were (defects and all), with the firms
founded since registered (grade M, as for new taxpayers), the dissolved ones
deregistered (注销), 0.1% moved out of the city (their lines gone) and 0.2%
re-graded. So an increment holds a whole register in which few rows differ.

Everything is deterministic for (seed, day). The truth of day 0 is read with
pyarrow and sampled with numpy, so a scale-1.0 day is seconds, not a pass over
ten million Python dicts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from pipelines import reference as ref
from pipelines.dev.synth import vocabulary as voc
from pipelines.dev.synth.city import (
    HUKOU_HEADERS, REAL_GRID_CELLS, TOWN_CODES, City, Corruptor, DefectRates, _check_id, _base31, _person_name,
    make_uscc, rng_for,
)
from pipelines.dev.synth.writers import DefectLog

# monthly changes to the taxpayer register, as shares of its rows
TAX_MONTHLY = {"taxpayer_moved_out": 0.001, "tax_grade_changed": 0.002}
TAX_HEADERS = ["纳税人识别号", "纳税人名称", "法定代表人", "登记状态", "纳税信用等级", "评价年度", "主管税务机关"]

# events per day in the real city (scale 1.0)
DAILY_EVENTS = {"births": 300, "deaths": 70, "moves": 300, "moved_out": 30, "new_permits": 1_000,
                "new_firms": 700, "dissolved_firms": 400, "penalties": 30, "hazards_reported": 2_200}
REGISTRATION_HEADERS = ["统一社会信用代码", "企业名称", "市场主体类型", "法定代表人", "法定代表人证件号",
                        "注册资本(万元)", "成立日期", "登记状态", "住所", "所属镇街", "行业代码", "经营范围",
                        "核准日期"]
PERMIT_HEADERS = ["证件号码", "姓名", "性别", "出生日期", "居住地址", "所属镇街", "联系电话", "登记日期", "有效期至"]
DEATH_HEADERS = ["身份证号", "姓名", "死亡日期", "火化日期", "殡仪馆"]
PENALTY_HEADERS = ["处罚决定书文号", "统一社会信用代码", "当事人名称", "违法行为类型", "处罚内容", "罚款金额(元)",
                   "处罚决定日期", "处罚机关"]
HAZARD_HEADERS = ["事件编号", "网格编码", "上报时间", "隐患类别", "地址", "经度", "纬度", "涉事主体名称",
                  "涉事主体代码", "处置状态", "办结时间"]
EVENT_HEADER = ("event", "feed", "subject", "name", "detail")


@dataclass
class DaysSummary:
    out: str
    days: int
    files: dict[str, int]          # days/<k>/... path -> records
    events: dict[str, int]         # event -> count over all days
    seconds: float

    def as_dict(self) -> dict:
        return {"out": self.out, "days": self.days, "files": self.files, "events": self.events,
                "seconds": self.seconds}


def daily_count(event: str, scale: float) -> int:
    return max(1, round(DAILY_EVENTS[event] * scale))


class _Population:
    """Day 0's persons (truth/persons.csv) as Arrow columns, plus who changed
    since: who is dead, and the ID sequence numbers used per birth date."""

    def __init__(self, truth: Path):
        import numpy as np
        import pyarrow.csv as pacsv

        columns = ["person_id", "full_name", "ethnicity", "registration", "address_code", "population_status"]
        table = pacsv.read_csv(truth / "persons.csv", convert_options=pacsv.ConvertOptions(
            include_columns=columns, column_types={c: "string" for c in columns}))
        self.ids = table["person_id"].to_pylist()
        self.names = table["full_name"].to_pylist()
        self.ethnicities = table["ethnicity"].to_pylist()
        self.hukou = np.asarray(table["registration"].to_numpy(zero_copy_only=False) == "hukou")
        self.alive = np.asarray(table["population_status"].to_numpy(zero_copy_only=False) != "死亡")
        self.address_codes = table["address_code"].to_pylist()
        self.sequence: dict[str, int] = {}
        for person_id in self.ids:
            stem = person_id[:14] + ("男" if int(person_id[16]) % 2 else "女")
            self.sequence[stem] = self.sequence.get(stem, 0) + 1

    def sample(self, rng, count: int, hukou_only: bool = False) -> list[int]:
        """``count`` distinct living persons (hukou ones if asked), drawn with ``rng``."""
        import numpy as np

        eligible = self.alive & self.hukou if hukou_only else self.alive
        candidates = np.flatnonzero(eligible)
        if not len(candidates):
            return []
        chosen = np.random.default_rng(rng.getrandbits(64)).choice(candidates, min(count, len(candidates)),
                                                                    replace=False)
        return sorted(int(i) for i in chosen)

    def new_id(self, division: str, birth: date, gender: str) -> str:
        stem = f"{division}{birth:%Y%m%d}{gender}"
        count = self.sequence.get(stem, 0)
        self.sequence[stem] = count + 1
        return _check_id(f"{division}{birth:%Y%m%d}{2 * count + (1 if gender == '男' else 2):03d}")


def _address_index(code: str) -> int:
    """The Geography index of a standard address code (town code + 3 + 7 digits)."""
    town = TOWN_CODES.index(code[:9])
    return int(code[-7:]) * len(TOWN_CODES) + town


def _previous_snapshot(out: Path, k: int, feed: str) -> tuple[Path, Path] | None:
    """The latest delivery of snapshot ``feed`` before day ``k`` and the
    defects file that labels it, or None."""
    bureau, name = feed.split(".")
    for j in range(k - 1, -1, -1):
        folder = (out / "days" / str(j) if j else out / "deliveries") / bureau / name
        truth = out / "truth" / (f"day-{j}" if j else "") / "defects.csv"
        files = sorted(p for p in folder.glob("*") if p.is_file() and not p.stem.endswith(("_更正", "_corrected")))
        if files:
            return files[-1], truth
    return None


def _tax_snapshot(city: City, out: Path, k: int, rng, founded: list[tuple], dissolved: list[tuple],
                  event) -> bool:
    """Write the month's taxpayer snapshot (see the module docstring);
    ``founded``: (uscc, name, legal representative, town) of firms founded
    since the last snapshot; ``dissolved``: (uscc, name). False when there is
    no earlier snapshot to start from."""
    import json

    from pipelines.dev.synth.writers import Label

    previous = _previous_snapshot(out, k, "tax.taxpayer")
    if previous is None:
        return False
    path, defects = previous
    labels: dict[int, list[Label]] = {}
    with defects.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["feed"] == "tax.taxpayer" and row["file"] == path.name:
                labels.setdefault(int(row["row_number"]), []).append(
                    Label(row["column"], row["defect"], row["expected"], row["rule"], row["true_value"]))
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        record = json.loads(line)
        true_uscc = next((label.true_value for label in labels.get(number, [])
                          if label.column == "纳税人识别号" and label.true_value), None)
        lines.append((record, labels.get(number, []), true_uscc or str(record["纳税人识别号"] or "").strip()))
    gone = {uscc for uscc, _ in dissolved}
    clean = sorted({uscc for record, found, uscc in lines if not found and record["登记状态"] == "正常"
                    and record["纳税信用等级"] and uscc not in gone})
    counts = {name: max(1, round(len(lines) * share)) for name, share in TAX_MONTHLY.items()}
    chosen = rng.sample(clean, min(len(clean), counts["taxpayer_moved_out"] + counts["tax_grade_changed"]))
    moved_out = set(chosen[:counts["taxpayer_moved_out"]])
    regraded = {uscc: None for uscc in chosen[counts["taxpayer_moved_out"]:]}
    names = {uscc: record["纳税人名称"] for record, _, uscc in lines}
    writer = city.writer("tax.taxpayer", TAX_HEADERS, "jsonl", "utf-8", clean=True)
    for record, found, uscc in lines:      # every line of a taxpayer (duplicates too) changes alike
        if uscc in moved_out:
            continue
        if uscc in gone and record["登记状态"] != "注销":
            record = record | {"登记状态": "注销", "纳税信用等级": None}
        elif uscc in regraded:
            if regraded[uscc] is None:
                regraded[uscc] = rng.choice([g for g in "ABMCD" if g != record["纳税信用等级"]])
            record = record | {"纳税信用等级": regraded[uscc]}
        writer.write(record, found)
    for uscc, name, representative, town in founded:
        short = ref.TOWNS[TOWN_CODES[town]].removesuffix("街道").removesuffix("镇")
        writer.write({"纳税人识别号": uscc, "纳税人名称": name, "法定代表人": representative, "登记状态": "正常",
                      "纳税信用等级": "M", "评价年度": city.as_of.year - 1,
                      "主管税务机关": f"国家税务总局东莞市{short}{voc.TAX_AUTHORITIES_SUFFIX}"})
        event("taxpayer_registered", "tax.taxpayer", uscc, name, "M")
    city.close(writer)
    for uscc, name in dissolved:
        if uscc in names:
            event("taxpayer_deregistered", "tax.taxpayer", uscc, name, "注销")
    for uscc in sorted(moved_out):
        event("taxpayer_moved_out", "tax.taxpayer", uscc, names[uscc], "")
    for uscc, grade in sorted(regraded.items()):
        event("tax_grade_changed", "tax.taxpayer", uscc, names[uscc], grade or "")
    return True


def generate_days(out: Path, days: int, scale: float, seed: int = 7, rates: DefectRates | None = None,
                  as_of: date = date(2026, 11, 28)) -> DaysSummary:
    """Write days 1..``days`` of the city generated under ``out`` (its day 0 must exist)."""
    import time

    started = time.monotonic()
    out = Path(out)
    if not (out / "truth" / "persons.csv").exists():
        raise FileNotFoundError(f"{out / 'truth' / 'persons.csv'}: generate day 0 first (govlake synth without --days)")
    rates = rates or DefectRates()
    base = City(out, scale, seed, rates, as_of)
    base.make_entities()
    entities = {e.uscc: e for e in base.entities}
    with (out / "truth" / "entities.csv").open(encoding="utf-8") as handle:
        truth_entities = {row["uscc"]: row for row in csv.DictReader(handle)
                          if row["source_feed"] == "amr.business_registration"}
    live_firms = sorted(u for u, row in truth_entities.items() if row["registration_status"] in ("存续", "在业"))
    population = _Population(out / "truth")
    per_town = max(1, round(REAL_GRID_CELLS * scale / len(TOWN_CODES)))
    open_hazards: list[dict] = []
    files: dict[str, int] = {}
    totals: dict[str, int] = {}
    new_firm_count = 0
    new_names: dict[str, str] = {}                 # firms founded on these days: uscc -> name
    founded: list[tuple] = []                      # since the last taxpayer snapshot
    dissolved: list[tuple] = []
    for k in range(1, days + 1):
        day = as_of + timedelta(days=k)
        city = City(out, scale, seed, rates, day)
        city.geo = base.geo
        city.deliveries = out / "days" / str(k)
        city.truth = out / "truth" / f"day-{k}"
        city.truth.mkdir(parents=True, exist_ok=True)
        city.defect_log = DefectLog(city.truth / "defects.csv")
        rng = rng_for(seed, "day", k)
        corrupt = Corruptor(rng, rates)
        events = []

        def event(name: str, feed: str, subject: str, who: str, detail: str = "") -> None:
            events.append((name, feed, subject, who, detail))

        # ---- 公安局: births, moves, moves out and deaths in hukou; newcomers' permits
        hukou = city.writer("psb.hukou", HUKOU_HEADERS, "csv", "gb18030", crlf=True)
        household = {"number": "", "left": 0}

        def hukou_row(person: dict, p: int) -> None:
            hukou.write(*city.hukou_row(rng, corrupt, person, household, p))

        for b in range(daily_count("births", scale)):
            gender = "男" if rng.random() < 0.52 else "女"
            person = {"gender": gender, "birth": day, "person_id": population.new_id(ref.CITY_DIVISION_CODE, day, gender),
                      "name": _person_name(rng), "address": city.geo.address(rng.randrange(city.geo.n_addresses)),
                      "ethnicity": rng.choice(voc.ETHNICITIES), "status": "正常"}
            hukou_row(person, 10**8 * k + b)
            event("birth", "psb.hukou", person["person_id"], person["name"], person["address"]["address_code"])
        moved = population.sample(rng, daily_count("moves", scale) + daily_count("moved_out", scale), hukou_only=True)
        movers_out = set(moved[:daily_count("moved_out", scale)])
        dying = [p for p in population.sample(rng, daily_count("deaths", scale) * 2) if p not in moved]
        dying = dying[:daily_count("deaths", scale)]
        for p in moved:
            person_id = population.ids[p]
            gender = "男" if int(person_id[16]) % 2 else "女"
            birth = date(int(person_id[6:10]), int(person_id[10:12]), int(person_id[12:14]))
            leaving = p in movers_out
            address = (city.geo.address(_address_index(population.address_codes[p])) if leaving
                       else city.geo.address(rng.randrange(city.geo.n_addresses)))
            hukou_row({"gender": gender, "birth": birth, "person_id": person_id, "name": population.names[p],
                       "ethnicity": population.ethnicities[p], "address": address, "status": "迁出" if leaving else "正常"}, p)
            population.address_codes[p] = address["address_code"]
            event("moved_out" if leaving else "move", "psb.hukou", person_id, population.names[p],
                  address["address_code"])
        death = city.writer("mca.death", DEATH_HEADERS, "csv", "gb18030", crlf=True)
        for p in dying:
            person_id, name = population.ids[p], population.names[p]
            value, labels, _ = corrupt.person_id(person_id, "身份证号")
            death.write({"身份证号": value, "姓名": name, "死亡日期": day.isoformat(), "火化日期": "",
                         "殡仪馆": rng.choice(voc.FUNERAL_HOMES)}, labels)
            if population.hukou[p]:
                gender = "男" if int(person_id[16]) % 2 else "女"
                birth = date(int(person_id[6:10]), int(person_id[10:12]), int(person_id[12:14]))
                hukou_row({"gender": gender, "birth": birth, "person_id": person_id, "name": name,
                           "ethnicity": population.ethnicities[p], "address": city.geo.address(_address_index(population.address_codes[p])),
                           "status": "死亡"}, p)
            population.alive[p] = False
            event("death", "mca.death", person_id, name, day.isoformat())
        permits = city.writer("psb.residence_permit", PERMIT_HEADERS, "xlsx")
        c_permit = Corruptor(rng, rates, xlsx=True)
        for _ in range(daily_count("new_permits", scale)):
            gender = "男" if rng.random() < 0.52 else "女"
            birth = day - timedelta(days=int(rng.triangular(18, 50, 30) * 365.25))
            person_id = population.new_id(rng.choice(voc.OTHER_PROVINCE_DIVISIONS), birth, gender)
            name, address = _person_name(rng), city.geo.address(rng.randrange(city.geo.n_addresses))
            value, labels, _ = c_permit.person_id(person_id, "证件号码")
            permits.write({"证件号码": value, "姓名": name, "性别": gender, "出生日期": birth, "居住地址":
                           city.geo.free_text(address, rng), "所属镇街": address["town_name"],
                           "联系电话": f"1{rng.choice('35789')}{rng.randrange(10**9):09d}", "登记日期": day,
                           "有效期至": day + timedelta(days=365 * 3)}, labels)
            event("new_permit", "psb.residence_permit", person_id, name, address["address_code"])

        # ---- 市场监管局: new and dissolved firms, penalties
        registration = city.writer("amr.business_registration", REGISTRATION_HEADERS, "csv", "gb18030", crlf=True)

        def registration_row(uscc: str, name: str, entity_type: str, rep_name: str, rep_id: str, capital,
                             established: date, status: str, address_index: int, town: int, industry: str,
                             section: str) -> None:
            address = city.geo.address(address_index)
            uscc_value, labels = corrupt.uscc(uscc, "统一社会信用代码")
            rep_value, rep_labels, _ = corrupt.person_id(rep_id, "法定代表人证件号")
            words = voc.INDUSTRY_WORDS[section]
            registration.write({
                "统一社会信用代码": uscc_value, "企业名称": name, "市场主体类型": entity_type, "法定代表人": rep_name,
                "法定代表人证件号": rep_value, "注册资本(万元)": capital, "成立日期": established.isoformat(),
                "登记状态": status, "住所": city.geo.free_text(address, rng), "所属镇街": ref.TOWNS[TOWN_CODES[town]],
                "行业代码": industry, "经营范围": f"一般项目：{rng.choice(words)}；{rng.choice(words)}",
                "核准日期": day.isoformat()}, labels + rep_labels)

        adults = [p for p in population.sample(rng, daily_count("new_firms", scale) * 3)
                  if int(population.ids[p][6:10]) <= day.year - 20][:daily_count("new_firms", scale)]
        for p in adults:
            new_firm_count += 1
            town = rng.randrange(len(TOWN_CODES))
            section = rng.choices(list(voc.SECTION_WEIGHTS), list(voc.SECTION_WEIGHTS.values()))[0]
            uscc = make_uscc("91", "MB" + _base31((new_firm_count * 1_000_003 + seed) % 31 ** 6, 6))
            name = f"东莞市{ref.TOWNS[TOWN_CODES[town]][:2]}{''.join(rng.sample(voc.COMPANY_BRANDS, 2))}新创{new_firm_count}号有限公司"
            registration_row(uscc, name, "有限责任公司", population.names[p], population.ids[p],
                             f"{rng.choice((10, 50, 100))}", day, "存续", city.geo.address_in_town(rng, town), town,
                             rng.choice(voc.INDUSTRY_CODES[section]), section)
            live_firms.append(uscc)
            truth_entities[uscc] = {"legal_representative": population.names[p],
                                    "legal_representative_id": population.ids[p]}
            new_names[uscc] = name
            founded.append((uscc, name, population.names[p], town))
            event("new_firm", "amr.business_registration", uscc, name, population.ids[p])
        closing = sorted(rng.sample(range(len(live_firms)), min(daily_count("dissolved_firms", scale), len(live_firms))))
        for i in reversed(closing):
            uscc = live_firms.pop(i)
            e = entities.get(uscc)
            if e is None:               # founded on an earlier day: only day-0 firms are dissolved
                live_firms.insert(i, uscc)
                continue
            row = truth_entities[uscc]
            registration_row(uscc, e.name, e.entity_type, row["legal_representative"], row["legal_representative_id"],
                             e.capital, e.established, "注销", e.address, e.town, e.industry_code, e.section)
            dissolved.append((uscc, e.name))
            event("dissolved_firm", "amr.business_registration", uscc, e.name, "注销")
        penalty = city.writer("amr.penalty", PENALTY_HEADERS, "csv", "utf-8")
        for n in range(daily_count("penalties", scale)):
            uscc = live_firms[rng.randrange(len(live_firms))]
            name = entities[uscc].name if uscc in entities else new_names[uscc]
            fine = rng.choice((500, 1000, 2000, 5000, 10000, 50000))
            uscc_value, labels = corrupt.uscc(uscc, "统一社会信用代码")
            number = f"东市监罚〔{day.year}〕D{k}-{n + 1}号"
            penalty.write({"处罚决定书文号": number, "统一社会信用代码": uscc_value, "当事人名称": name,
                           "违法行为类型": rng.choice(voc.VIOLATIONS), "处罚内容": f"罚款{fine}元",
                           "罚款金额(元)": f"{fine}.00", "处罚决定日期": day.isoformat(),
                           "处罚机关": "东莞市市场监督管理局"}, labels)
            event("penalty", "amr.penalty", uscc, name, number)

        # ---- 智网: hazards reported today, and earlier days' open ones closed
        hazards = city.writer("grid.hazard_report", HAZARD_HEADERS, "jsonl", "utf-8")
        midnight = datetime.combine(day, datetime.min.time())
        still_open = []
        for report in open_hazards:
            if rng.random() < 0.5:
                closed = midnight + timedelta(minutes=rng.randrange(60 * 24))
                hazards.write(report | {"处置状态": "已办结", "办结时间": closed.strftime("%Y-%m-%d %H:%M:%S")})
                event("hazard_closed", "grid.hazard_report", report["事件编号"], report["涉事主体名称"] or "", "已办结")
            else:
                still_open.append(report)
        open_hazards = still_open
        for n in range(daily_count("hazards_reported", scale)):
            town = rng.randrange(len(TOWN_CODES))
            address = city.geo.address(city.geo.address_in_town(rng, town))
            reported = midnight + timedelta(minutes=rng.randrange(60 * 24))
            uscc = live_firms[rng.randrange(len(live_firms))] if rng.random() < 0.6 else None
            report = {"事件编号": f"SJ{day:%Y%m%d}D{n + 1:06d}",
                      "网格编码": f"{TOWN_CODES[town]}{rng.randrange(per_town) + 1:04d}",
                      "上报时间": reported.strftime("%Y-%m-%d %H:%M:%S"),
                      "隐患类别": rng.choice(voc.HAZARD_CATEGORIES), "地址": city.geo.free_text(address, rng),
                      "经度": address["longitude"], "纬度": address["latitude"],
                      "涉事主体名称": (entities[uscc].name if uscc in entities else new_names[uscc]) if uscc else None,
                      "涉事主体代码": uscc, "处置状态": "待处置", "办结时间": None}
            hazards.write(report)
            open_hazards.append(report)
            event("hazard_reported", "grid.hazard_report", report["事件编号"], report["涉事主体名称"] or "",
                  TOWN_CODES[town])

        for writer in (hukou, death, permits, registration, penalty, hazards):
            city.close(writer)
        # ---- 税务局: the monthly taxpayer snapshot, on the first of the month
        if day.day == 1 and _tax_snapshot(city, out, k, rng_for(seed, "tax-snapshot", k), founded, dissolved,
                                          event):
            founded, dissolved = [], []
        city.defect_log.close()
        with (city.truth / "events.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(EVENT_HEADER)
            writer.writerows(events)
        city.write_files_truth()
        files |= {f"days/{k}/{path}": info.get("records", 0) for path, info in sorted(city.files.items())}
        for name, *_ in events:
            totals[name] = totals.get(name, 0) + 1
    return DaysSummary(str(out), days, files, totals, round(time.monotonic() - started, 2))
