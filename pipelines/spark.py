"""The one SparkSession entry point.

The Delta jars are resolved once through Spark's own package resolution
(``spark.jars.packages`` with an Ivy cache inside the project); after that the
resolved jars are used from the cache, so later runs work offline.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()

JAR_LIST_NAME = "govlake-delta-jars.txt"


def _ivy_dir(settings: Settings) -> Path:
    return settings.cache_dir / "ivy"


# Resolve from Maven Central only (Ivy's default ibiblio root), never from a
# half-filled ~/.m2 (Ivy then finds a pom without its jar and fails).
_IVY_SETTINGS = """<ivysettings>
  <settings defaultResolver="central"/>
  <caches defaultCacheDir="{cache}"/>
  <resolvers>
    <ibiblio name="central" m2compatible="true"/>
  </resolvers>
</ivysettings>
"""

# Jars Spark itself ships; pulling Delta's copies would only clash.
_PROVIDED_BY_SPARK = (
    "org.scala-lang:scala-library",
    "org.slf4j:slf4j-api",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-annotations",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "org.roaringbitmap:RoaringBitmap",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.locationtech.jts:jts-core",
    "io.airlift:aircompressor",
    "com.google.code.findbugs:jsr305",
)


def cached_delta_jars(settings: Settings) -> list[Path] | None:
    """The jars a previous resolution left in the cache, or None if incomplete."""
    listing = _ivy_dir(settings) / JAR_LIST_NAME
    if not listing.exists():
        return None
    lines = listing.read_text().split("\n")
    if not lines or lines[0] != settings.delta_package:
        return None
    jars = [_ivy_dir(settings) / "jars" / name for name in lines[1:] if name]
    return jars if jars and all(jar.exists() for jar in jars) else None


def _record_resolved_jars(settings: Settings) -> None:
    jars_dir = _ivy_dir(settings) / "jars"
    names = sorted(p.name for p in jars_dir.glob("*.jar"))
    if any(name.startswith("io.delta_delta-spark") for name in names):
        (_ivy_dir(settings) / JAR_LIST_NAME).write_text(
            "\n".join([settings.delta_package, *names]) + "\n"
        )


# HotSpot's compilers only for code hotter than its defaults. Every Spark
# query brings classes of its own (whole-stage codegen), and the compilers
# compiled them whenever they warmed up: on a daily build at scale 1.0
# (some 700 small queries) C2's thread took 121-148 of the JVM's 249-296 CPU
# seconds on two cores. With C2's thresholds ten times the defaults: 61 of
# 181 (docs/design.md, "Several libraries at once"). The compilers were still
# a third of the JVM's CPU (a flight recording of day 4's build: 50,000
# methods compiled, 124 s of compile time, mostly C1's); with every
# threshold scaled four times more (CompileThresholdScaling, which scales the
# C2 thresholds below too) the build took 2-8 % less CPU, its time within
# the machine's noise (docs/benchmarks.md, not yet an A/B of its own).
# C1 alone (TieredStopAtLevel=1) was 24 % slower: long scans need C2.
# GOVLAKE_SPARK_CONF's spark.driver.extraJavaOptions replaces this line.
LATE_JIT = ("-XX:Tier4InvocationThreshold=50000", "-XX:Tier4MinInvocationThreshold=6000",
            "-XX:Tier4CompileThreshold=150000", "-XX:Tier4BackEdgeThreshold=400000",
            "-XX:CompileThresholdScaling=4")


CLUSTER_HOST = "127.0.0.1"


def master_url(settings: Settings) -> str:
    """The URL of the standalone cluster ``govlake cluster up`` starts (``pipelines.spark_cluster``)."""
    return f"spark://{CLUSTER_HOST}:{settings.spark_cluster_port}"


def cluster_conf_dir(settings: Settings) -> Path:
    """The cluster's ``SPARK_CONF_DIR``: its ``spark-defaults.conf`` (0600)
    holds the shared secret every daemon and application authenticates with."""
    return settings.spark_cluster_home / "conf"


def cluster_application_conf(settings: Settings) -> dict[str, str]:
    """What a driver needs to run on a standalone master (any ``spark://``
    master): executors of one core with the worker's memory and the project's
    Python on the executors; on this project's own cluster also a driver on
    loopback and authentication (the secret itself is read from the
    cluster's ``spark-defaults.conf``: ``build_spark_session``). A remote
    master needs a driver its executors can reach: ``GOVLAKE_SPARK_CONF``'s
    ``spark.driver.host`` (docs/deployment.md)."""
    conf = {"spark.executor.cores": "1", "spark.executor.memory": settings.spark_worker_memory,
            "spark.pyspark.python": sys.executable}
    if settings.spark_master == master_url(settings):
        conf |= {"spark.authenticate": "true", "spark.driver.bindAddress": CLUSTER_HOST,
                 "spark.driver.host": CLUSTER_HOST}
    return conf


def build_spark_session(settings: Settings | None = None, app_name: str = "govlake",
                        java_options: tuple[str, ...] = ()):
    """Return the process's SparkSession with Delta Lake enabled.

    Local ``local[*]`` by default, driver memory and shuffle partitions from
    settings; ``java_options`` added to the driver JVM's; any
    ``GOVLAKE_SPARK_CONF`` entries are applied last.
    """
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = (
            SparkSession.builder.appName(app_name)
            .master(settings.spark_master)
            .config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
            .config("spark.default.parallelism", str(settings.shuffle_partitions))
            .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config(
                "spark.sql.catalog.spark_catalog",
                "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            )
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            # Spark 4 refuses GBK/GB18030 without this; our parser decodes
            # those itself, but ad-hoc reads of raw files need it.
            .config("spark.sql.legacy.javaCharsets", "true")
            .config("spark.ui.enabled", str(settings.spark_ui).lower())
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.databricks.delta.snapshotPartitions", "2")
            .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
            .config("spark.driver.extraJavaOptions",
                    " ".join(["-Dderby.system.home=" + str(settings.cache_dir / "derby"), *LATE_JIT, *java_options]))
        )
        if settings.spark_master.startswith("local"):
            # A local driver listens on loopback only (its block manager, RPC and
            # UI): the JVM that pyspark launches reads SPARK_LOCAL_IP from the
            # environment it inherits. A cluster master needs a reachable driver.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = (builder.config("spark.driver.bindAddress", "127.0.0.1")
                       .config("spark.driver.host", "127.0.0.1"))
        elif settings.spark_master.startswith("spark://"):
            for key, value in cluster_application_conf(settings).items():
                builder = builder.config(key, value)
            if settings.spark_master == master_url(settings):
                os.environ.setdefault("SPARK_LOCAL_IP", CLUSTER_HOST)
                # spark-submit reads the secret from the cluster's spark-defaults.conf
                # (0600): pyspark puts every builder setting on the JVM's command line
                os.environ["SPARK_CONF_DIR"] = str(cluster_conf_dir(settings))
        jars = cached_delta_jars(settings)
        if jars:
            builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
        else:
            log.info("resolving %s through Spark (first run; cached after)", settings.delta_package)
            ivy = _ivy_dir(settings)
            ivy.mkdir(parents=True, exist_ok=True)
            ivy_settings = ivy / "ivysettings.xml"
            ivy_settings.write_text(_IVY_SETTINGS.format(cache=ivy / "cache"))
            builder = (
                builder.config("spark.jars.packages", settings.delta_package)
                .config("spark.jars.ivy", str(ivy))
                .config("spark.jars.ivySettings", str(ivy_settings))
                .config("spark.jars.excludes", ",".join(_PROVIDED_BY_SPARK))
            )
        for key, value in settings.extra_spark_conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        if not jars:
            _record_resolved_jars(settings)
        return spark
