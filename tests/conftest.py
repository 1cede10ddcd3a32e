"""One session-scoped SparkSession; every test lake lives under pytest's tmp dirs."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest

# Isolate the whole test session from the developer's ./lake before anything
# reads the settings.
_SESSION_LAKE = Path(tempfile.mkdtemp(prefix="govlake-test-lake-"))
os.environ["GOVLAKE_HOME"] = str(_SESSION_LAKE)
os.environ.setdefault("GOVLAKE_SPARK_DRIVER_MEMORY", "4g")
# One Airflow home (SQLite metadata, logs) for the session: Airflow fixes its
# configuration when first imported.
os.environ["GOVLAKE_AIRFLOW_HOME"] = str(_SESSION_LAKE.with_name(_SESSION_LAKE.name + "-airflow"))

import logging  # noqa: E402

from pipelines.settings import get_settings  # noqa: E402

logging.getLogger("py4j").setLevel(logging.WARNING)

get_settings.cache_clear()


@pytest.fixture(scope="session")
def spark():
    from pipelines.spark import build_spark_session

    session = build_spark_session(app_name="govlake-tests")
    yield session
    session.stop()


@pytest.fixture
def lake_settings(tmp_path):
    """Settings pointing at a fresh, empty lake for one test."""
    return dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
