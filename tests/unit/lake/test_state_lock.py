"""One build of a library at a time, one snapshot load of a feed at a time
(``lake.paths.state_lock``): a second holder waits for the first."""

from __future__ import annotations

import dataclasses
import threading
import time

from pipelines.lake.paths import state_lock
from pipelines.settings import get_settings


def _settings(tmp_path):
    return dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))


def _second_holder_waits(tmp_path, enter_second) -> list[str]:
    """Hold ``base.population``'s lock, start ``enter_second`` in a thread,
    release after a pause; the order in which things happened."""
    settings = _settings(tmp_path)
    events: list[str] = []
    with state_lock("base.population", settings):
        events.append("first holds")
        second = threading.Thread(target=enter_second, args=(settings, events))
        second.start()
        time.sleep(0.5)                      # the second would be in by now if it did not wait
        events.append("first releases")
    second.join(timeout=10)
    return events


def test_a_second_holder_of_the_same_lock_waits_for_the_first(tmp_path):
    def enter(settings, events):
        with state_lock("base.population", settings):
            events.append("second holds")

    assert _second_holder_waits(tmp_path, enter) == ["first holds", "first releases", "second holds"]
    # another name is another lock: no wait
    settings = _settings(tmp_path)
    with state_lock("base.population", settings), state_lock("base.legal_person", settings):
        pass


def test_a_library_build_takes_its_library_lock(tmp_path, monkeypatch):
    from pipelines.libraries import build

    def fake_build(spark, library, settings, gate, now, full, code_accepted=False):
        return {"library": library}

    monkeypatch.setattr(build, "_build_library", fake_build)

    def enter(settings, events):
        build.build_library(None, "population", settings)
        events.append("build ran")

    assert _second_holder_waits(tmp_path, enter) == ["first holds", "first releases", "build ran"]
