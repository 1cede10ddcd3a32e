"""One build of a library at a time, one snapshot load of a feed at a time
(``lake.paths.state_lock``): a second holder waits for the first."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from pipelines.lake.paths import state_lock
from pipelines.settings import get_settings


def _settings(tmp_path):
    return dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))


def _while_held(tmp_path, name: str, enter_second) -> tuple[list[str], list[str]]:
    """Hold the lock ``name``, run ``enter_second(settings, events)`` in a
    thread, release once it has started and had time to get in: (what had
    happened while the lock was held, everything in order)."""
    settings = _settings(tmp_path)
    events: list[str] = []
    started = threading.Event()

    def second():
        started.set()
        enter_second(settings, events)

    with state_lock(name, settings):
        events.append("first holds")
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert started.wait(timeout=10)
        time.sleep(0.5)                      # without a lock the second is in long before this
        while_held = list(events)
        events.append("first releases")
    thread.join(timeout=10)
    assert not thread.is_alive(), "the second holder never got the lock"
    return while_held, events


@pytest.mark.parametrize("lock,name", [("state_lock", "base.population"), ("feed_lock", "psb.hukou")])
def test_a_second_holder_of_the_same_lock_waits_for_the_first(tmp_path, lock, name):
    from pipelines.ingest.load import feed_lock

    take = {"state_lock": state_lock, "feed_lock": feed_lock}[lock]

    def enter(settings, events):
        with take(name, settings):
            events.append("second holds")

    while_held, events = _while_held(tmp_path, name, enter)
    assert while_held == ["first holds"]
    assert events == ["first holds", "first releases", "second holds"]


def test_another_name_is_another_lock(tmp_path):
    def enter(settings, events):
        with state_lock("base.legal_person", settings):
            events.append("second holds")

    while_held, _ = _while_held(tmp_path, "base.population", enter)
    assert while_held == ["first holds", "second holds"]


def test_a_library_build_takes_its_library_lock(tmp_path, monkeypatch):
    from pipelines.libraries import build

    monkeypatch.setattr(build, "_build_library", lambda spark, library, *args: {"library": library})

    def enter(settings, events):
        build.build_library(None, "population", settings)
        events.append("build ran")

    while_held, events = _while_held(tmp_path, "base.population", enter)
    assert while_held == ["first holds"] and events[-1] == "build ran"
