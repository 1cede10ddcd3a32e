"""The one settings object, read once from ``GOVLAKE_*`` environment variables,
and the one clock (``utc_now``).

No other module reads ``os.environ``. Every path may be a local path or, for
the lake, a filesystem URI that Spark understands (``s3a://``, ``abfss://``):
pointing the lake or the Spark master elsewhere needs no code change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# delta-spark 4.4.1 (the pip package) is pinned, but its Maven jar
# io.delta:delta-spark_4.1_2.13:4.4.1 is not served by Maven Central here
# (404, checked 2026-11-29); 4.4.0 is, and the Python API is the same. Override
# with GOVLAKE_DELTA_PACKAGE once 4.4.1 appears.
DEFAULT_DELTA_MAVEN_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.4.0"


def utc_now() -> datetime:
    """Now as a naive UTC datetime: how every lake table stores time (Spark's
    session time zone is UTC; Arrow and delta-rs read naive values as UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    """Where the lake lives and how Spark runs.

    home: lake root (``GOVLAKE_HOME``, default ``./lake`` under the project).
    spark_master: ``GOVLAKE_SPARK_MASTER`` (default ``local[*]``).
    spark_driver_memory: ``GOVLAKE_SPARK_DRIVER_MEMORY`` (default ``8g``: the
        machine has 24 GiB and Trino and Airflow share it).
    shuffle_partitions: ``GOVLAKE_SHUFFLE_PARTITIONS`` (default 4: 2 cores).
    cache_dir: downloaded jars and Ivy cache (``GOVLAKE_CACHE``, default
        ``./.cache`` under the project, git-ignored).
    schemas_dir / catalog_dir / quality_dir: the declarative folders.
    trino_home: the Trino server's config, data, logs, certificate and
        generated passwords (``GOVLAKE_TRINO_HOME``, default ``./.trino``, git-ignored).
    trino_version / trino_java_home / trino_port / trino_heap: the pinned
        release (476), a Java 24+ home (default: the newest under /usr/lib/jvm),
        the HTTPS port on 127.0.0.1 (8443) and the JVM heap (4G, leaving room for Spark).
    trino_workers / trino_worker_heap: Trino workers beside the coordinator
        (``GOVLAKE_TRINO_WORKERS``, default 0: one node that also runs the
        splits; with N > 0 the coordinator schedules nothing on itself), each
        on 127.0.0.1 at the coordinator's port + 10 + i with its own data
        dir, and its heap (2G).
    airflow_home / airflow_port: where the local Airflow keeps its SQLite
        metadata, logs and config (``GOVLAKE_AIRFLOW_HOME``, default ``./.airflow``,
        git-ignored) and the port its UI/API listens on (127.0.0.1 only).
    airflow_database / airflow_parallelism: Airflow's metadata database,
        ``sqlite`` (default: the embedded one, one task at a time) or
        ``postgres`` (the project's PostgreSQL under the Airflow home, on
        127.0.0.1 at airflow_port + 715; feed DAGs run in parallel), and how
        many tasks run at once (``GOVLAKE_AIRFLOW_PARALLELISM``; 0: 2 on
        SQLite, 4 on PostgreSQL).
    portal_port: the governance portal's HTTPS port on 127.0.0.1 (8445;
        ``GOVLAKE_PORTAL_PORT``); Trino's audit receiver has Trino's port + 1.
    gate_engine: GX's engine for delivery gates (``GOVLAKE_GATE_ENGINE``):
        ``duckdb`` (default: GX's SQL engine on an in-process DuckDB over the
        delivery's Arrow table, 0.7 s for 1M hukou rows) or ``pandas`` (GX's
        pandas engine, same results, ~10-13 s and ~2 GiB per million rows; kept
        as the reference the equivalence test compares against). Library
        gates run on GX's Spark engine. See docs/benchmarks.md.
    ingest_chunk_rows: a CSV delivery with more records than this is read,
        classified and staged in chunks of this many records
        (``GOVLAKE_INGEST_CHUNK_ROWS``, default 2,000,000), so a delivery
        larger than memory loads in bounded memory; smaller ones are handled
        in one piece, in memory (docs/design.md, "Large deliveries").
    gate_memory_limit: the DuckDB memory limit of a gate (``GOVLAKE_GATE_MEMORY_LIMIT``,
        default ``2GB``); beyond it DuckDB spills under the lake's ``tmp/``.
    build_workers: how many base libraries ``govlake build`` builds at once,
        each when those it depends on are built (``GOVLAKE_BUILD_WORKERS``,
        default 2; 1 builds them one after another). A full build runs alone.
    today: the date grants are judged on (``GOVLAKE_TODAY``, YYYY-MM-DD; unset:
        the real date). Tests move the clock past a grant's expiry with it;
        read it through ``Settings.on_date()``.
    rules_refresh_seconds: how often the rules keeper next to Trino recompiles
        the sharing rules and loads the audit log (``GOVLAKE_RULES_REFRESH_SECONDS``,
        default 60): an expired grant stops working within this period.
    spark_cluster_home / spark_cluster_port / spark_cluster_workers /
    spark_worker_memory: the Spark standalone cluster ``govlake cluster up``
        starts on 127.0.0.1 (``GOVLAKE_SPARK_CLUSTER_HOME``, default
        ``./.spark-cluster``, git-ignored: logs, pids, work dirs; master port
        7077; 2 workers of one core each; 3g each). Builds run on it when
        ``GOVLAKE_SPARK_MASTER=spark://127.0.0.1:7077``.
    crash_at: fault injection for the crash tests (``GOVLAKE_CRASH_AT``, unset
        in normal runs): ingest kills its own process at the named point
        (``after_bronze``) with SIGKILL.
    """

    home: str
    spark_master: str
    spark_driver_memory: str
    shuffle_partitions: int
    spark_ui: bool
    cache_dir: Path
    schemas_dir: Path
    catalog_dir: Path
    quality_dir: Path
    delta_package: str = DEFAULT_DELTA_MAVEN_PACKAGE
    trino_home: Path = PROJECT_ROOT / ".trino"
    trino_version: str = "476"
    trino_java_home: str | None = None
    trino_port: int = 8443
    trino_heap: str = "4G"
    trino_workers: int = 0
    trino_worker_heap: str = "2G"
    airflow_home: Path = PROJECT_ROOT / ".airflow"
    airflow_port: int = 8080
    airflow_database: str = "sqlite"
    airflow_parallelism: int = 0
    portal_port: int = 8445
    gate_engine: str = "duckdb"
    ingest_chunk_rows: int = 2_000_000
    gate_memory_limit: str = "2GB"
    build_workers: int = 2
    spark_cluster_home: Path = PROJECT_ROOT / ".spark-cluster"
    spark_cluster_port: int = 7077
    spark_cluster_workers: int = 2
    spark_worker_memory: str = "3g"
    extra_spark_conf: dict[str, str] = field(default_factory=dict)
    crash_at: str | None = None
    today: date | None = None
    rules_refresh_seconds: int = 60

    def on_date(self) -> date:
        """The date grants are judged on: ``today`` if set, else the real date."""
        return self.today or date.today()

    @property
    def lake_is_local(self) -> bool:
        return "://" not in self.home or self.home.startswith("file://")

    def lake_path(self, *parts: str) -> str:
        """A path (or URI) under the lake root."""
        return "/".join([self.home.rstrip("/"), *parts])

    def local_lake_path(self, *parts: str) -> Path:
        """A local filesystem path under the lake root (raw files)."""
        if not self.lake_is_local:
            raise RuntimeError(
                f"GOVLAKE_HOME={self.home} is not a local path: raw-file and "
                "staging storage on object stores is not implemented yet"
            )
        return Path(self.home.removeprefix("file://")).joinpath(*parts)


def _today(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"GOVLAKE_TODAY={text!r} is not a date (YYYY-MM-DD)") from None


def _parse_extra_conf(text: str) -> dict[str, str]:
    """``GOVLAKE_SPARK_CONF="k1=v1,k2=v2"`` passes extra Spark settings."""
    conf = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        conf[key.strip()] = value.strip()
    return conf


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    text = _env(name, default).strip().lower()
    if text not in allowed:
        raise ValueError(f"{name}={text!r}: expected one of {', '.join(allowed)}")
    return text


def _non_negative_int(name: str, default: str) -> int:
    text = _env(name, default)
    if not text.strip().isdigit():
        raise ValueError(f"{name}={text!r}: expected a whole number, 0 or more")
    return int(text)


def _positive_int(name: str, default: str) -> int:
    text = _env(name, default)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name}={text!r}: expected a whole number above 0")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    home = _env("GOVLAKE_HOME", str(PROJECT_ROOT / "lake"))
    if "://" not in home:
        home = str(Path(home).resolve())
    return Settings(
        home=home,
        spark_master=_env("GOVLAKE_SPARK_MASTER", "local[*]"),
        spark_driver_memory=_env("GOVLAKE_SPARK_DRIVER_MEMORY", "8g"),
        shuffle_partitions=int(_env("GOVLAKE_SHUFFLE_PARTITIONS", "4")),
        spark_ui=_env("GOVLAKE_SPARK_UI", "false").lower() in {"1", "true", "yes"},
        cache_dir=Path(_env("GOVLAKE_CACHE", str(PROJECT_ROOT / ".cache"))).resolve(),
        schemas_dir=Path(_env("GOVLAKE_SCHEMAS", str(PROJECT_ROOT / "schemas"))),
        catalog_dir=Path(_env("GOVLAKE_CATALOG", str(PROJECT_ROOT / "catalog"))),
        quality_dir=Path(_env("GOVLAKE_QUALITY", str(PROJECT_ROOT / "quality"))),
        delta_package=_env("GOVLAKE_DELTA_PACKAGE", DEFAULT_DELTA_MAVEN_PACKAGE),
        trino_home=Path(_env("GOVLAKE_TRINO_HOME", str(PROJECT_ROOT / ".trino"))).resolve(),
        trino_version=_env("GOVLAKE_TRINO_VERSION", "476"),
        trino_java_home=os.environ.get("GOVLAKE_TRINO_JAVA_HOME") or None,
        trino_port=int(_env("GOVLAKE_TRINO_PORT", "8443")),
        trino_heap=_env("GOVLAKE_TRINO_HEAP", "4G"),
        trino_workers=_non_negative_int("GOVLAKE_TRINO_WORKERS", "0"),
        trino_worker_heap=_env("GOVLAKE_TRINO_WORKER_HEAP", "2G"),
        airflow_home=Path(_env("GOVLAKE_AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))).resolve(),
        airflow_port=int(_env("GOVLAKE_AIRFLOW_PORT", "8080")),
        airflow_database=_choice("GOVLAKE_AIRFLOW_DATABASE", "sqlite", ("sqlite", "postgres")),
        airflow_parallelism=_non_negative_int("GOVLAKE_AIRFLOW_PARALLELISM", "0"),
        portal_port=int(_env("GOVLAKE_PORTAL_PORT", "8445")),
        gate_engine=_env("GOVLAKE_GATE_ENGINE", "duckdb"),
        ingest_chunk_rows=_positive_int("GOVLAKE_INGEST_CHUNK_ROWS", "2000000"),
        gate_memory_limit=_env("GOVLAKE_GATE_MEMORY_LIMIT", "2GB"),
        build_workers=_positive_int("GOVLAKE_BUILD_WORKERS", "2"),
        spark_cluster_home=Path(_env("GOVLAKE_SPARK_CLUSTER_HOME", str(PROJECT_ROOT / ".spark-cluster"))).resolve(),
        spark_cluster_port=_positive_int("GOVLAKE_SPARK_CLUSTER_PORT", "7077"),
        spark_cluster_workers=_positive_int("GOVLAKE_SPARK_CLUSTER_WORKERS", "2"),
        spark_worker_memory=_env("GOVLAKE_SPARK_WORKER_MEMORY", "3g"),
        extra_spark_conf=_parse_extra_conf(os.environ.get("GOVLAKE_SPARK_CONF", "")),
        crash_at=_env("GOVLAKE_CRASH_AT", "") or None,
        today=_today(_env("GOVLAKE_TODAY", "")),
        rules_refresh_seconds=int(_env("GOVLAKE_RULES_REFRESH_SECONDS", "60")),
    )


_ENVIRONMENT_NAMES = {
    "home": "GOVLAKE_HOME", "cache_dir": "GOVLAKE_CACHE", "schemas_dir": "GOVLAKE_SCHEMAS",
    "catalog_dir": "GOVLAKE_CATALOG", "quality_dir": "GOVLAKE_QUALITY", "trino_home": "GOVLAKE_TRINO_HOME",
    "trino_version": "GOVLAKE_TRINO_VERSION", "trino_java_home": "GOVLAKE_TRINO_JAVA_HOME",
    "trino_port": "GOVLAKE_TRINO_PORT", "trino_heap": "GOVLAKE_TRINO_HEAP",
    "trino_workers": "GOVLAKE_TRINO_WORKERS", "trino_worker_heap": "GOVLAKE_TRINO_WORKER_HEAP",
    "airflow_home": "GOVLAKE_AIRFLOW_HOME", "airflow_port": "GOVLAKE_AIRFLOW_PORT",
    "airflow_database": "GOVLAKE_AIRFLOW_DATABASE", "airflow_parallelism": "GOVLAKE_AIRFLOW_PARALLELISM",
    "portal_port": "GOVLAKE_PORTAL_PORT", "today": "GOVLAKE_TODAY",
    "rules_refresh_seconds": "GOVLAKE_RULES_REFRESH_SECONDS", "gate_engine": "GOVLAKE_GATE_ENGINE",
    "ingest_chunk_rows": "GOVLAKE_INGEST_CHUNK_ROWS", "gate_memory_limit": "GOVLAKE_GATE_MEMORY_LIMIT",
    "build_workers": "GOVLAKE_BUILD_WORKERS", "spark_master": "GOVLAKE_SPARK_MASTER",
    "spark_cluster_home": "GOVLAKE_SPARK_CLUSTER_HOME", "spark_cluster_port": "GOVLAKE_SPARK_CLUSTER_PORT",
    "spark_cluster_workers": "GOVLAKE_SPARK_CLUSTER_WORKERS", "spark_worker_memory": "GOVLAKE_SPARK_WORKER_MEMORY",
}


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``GOVLAKE_*`` variables that make a child process's ``get_settings()``
    see ``settings`` (its paths, ports, clock and refresh period): how a
    background service started from a test or a CLI inherits them."""
    found = {}
    for name, variable in _ENVIRONMENT_NAMES.items():
        value = getattr(settings, name)
        if value is not None:
            found[variable] = value.isoformat() if isinstance(value, date) else str(value)
    return found
