"""Three residence permits the sharing and service tests publish and query as departments."""

from __future__ import annotations

from datetime import date

from pipelines.contracts import get_contract
from pipelines.lake.paths import table_path

# (id_number, full_name, gender, birth_date, residence_address, town_name, phone, registered, valid_until)
PERMITS = [
    ("441900199001011234", "甲", "男", date(1990, 1, 1), "东莞市南城街道一路1号", "南城街道", "13800001111",
     date(2020, 1, 1), date(2030, 1, 1)),
    ("441900199202022345", "乙", "女", date(1992, 2, 2), "东莞市南城街道二路2号", "南城街道", "13900002222",
     date(2021, 1, 1), date(2031, 1, 1)),
    ("441900198803033456", "丙", "男", date(1988, 3, 3), "东莞市虎门镇三路3号", "虎门镇", "13700003333",
     date(2022, 1, 1), date(2032, 1, 1)),
]


def write_permits(spark, settings) -> None:
    """Replace silver.psb_residence_permit with PERMITS."""
    contract = get_contract("psb.residence_permit")
    frame = spark.createDataFrame(PERMITS, "id_number string, full_name string, gender string, birth_date date, "
                                           "residence_address string, town_name string, phone string, "
                                           "registered_date date, valid_until date")
    frame.write.format("delta").mode("overwrite").save(table_path("silver", contract, settings))
