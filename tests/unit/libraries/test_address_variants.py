"""``address.address_match_key`` reads the ways bureaus write one address
alike (the hard cases of ``govlake synth --hard``): 东莞 without 市, the town
without 镇/街道, no city at all, 号楼 / 栋 / 号之一 for the house number."""

from __future__ import annotations

import pytest

from pipelines.libraries.address import address_match_key

STANDARD = "长安镇新塘鸿福路12号"


@pytest.mark.parametrize("written", [
    "广东省东莞市长安镇新塘鸿福路12号", "东莞市长安镇新塘鸿福路12号", "东莞长安新塘鸿福路12号", "长安镇新塘鸿福路12号",
    "东莞市长安镇新塘鸿福路12号楼", "东莞市长安镇新塘鸿福路12栋", "东莞市长安镇新塘鸿福路12号之一",
    "东莞市长安镇新塘鸿福路12号3栋", "东莞市长安镇新塘鸿福路12号,3栋"])
def test_the_ways_one_address_is_written_share_its_key(spark, written):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([(written, STANDARD)], "written string, standard string")
    row = frame.select(address_match_key(F.col("written")).alias("a"), address_match_key(F.col("standard")).alias("b"))
    a, b = row.first()
    assert a == b == STANDARD


def test_the_towns_named_after_the_city_keep_their_name(spark):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([("东莞市东莞港港湾路3号",), ("东莞港港湾路3号",), ("东莞东莞生态园园区路1号",)], "t string")
    assert [r[0] for r in frame.select(address_match_key(F.col("t"))).collect()] == [
        "东莞港港湾路3号", "东莞港港湾路3号", "东莞生态园园区路1号"]
