"""Several libraries built at once, each after those it depends on
(``build.run_by_dependencies``), and a full build alone on the driver
(``build.DriverShare``). Pure: threads and events, no Spark."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pipelines.libraries.build import BuildInterrupted, DriverShare, Released, run_by_dependencies

# the shape of schemas/libraries: two roots, a chain below population
DEPENDS_ON = {"address": [], "population": [], "legal_person": ["population"],
              "credit_record": ["legal_person", "population"], "credit_rating": ["legal_person", "credit_record"],
              "e_licence": ["legal_person"], "grid": []}
ORDER = ["address", "population", "legal_person", "credit_record", "credit_rating", "e_licence", "grid"]


class Recorder:
    """A build that notes when each library started and finished."""

    def __init__(self, status=None, fail=None, hold=None):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.status = status or {}
        self.fail = fail
        self.hold = hold or {}

    def __call__(self, name: str) -> dict:
        with self.lock:
            self.events.append(("start", name))
        if name in self.hold:
            self.hold[name]()
        time.sleep(0.01)
        with self.lock:
            self.events.append(("end", name))
        if name == self.fail:
            raise RuntimeError(f"{name} broke")
        return {"library": name, "status": self.status.get(name, "built")}

    def index(self, event: str, name: str) -> int:
        return self.events.index((event, name))


def test_one_worker_builds_in_the_given_order_one_after_another():
    build = Recorder()
    results = run_by_dependencies(ORDER, DEPENDS_ON, build, workers=1)
    assert [r["library"] for r in results] == ORDER
    assert build.events == [(event, name) for name in ORDER for event in ("start", "end")]


def test_two_workers_start_a_library_only_after_its_dependencies_ended_and_run_independent_ones_together():
    # address and population wait for each other: the barrier breaks (and the test fails) unless both run at once
    together = threading.Barrier(2, timeout=10)
    build = Recorder(hold={"address": together.wait, "population": together.wait})
    results = run_by_dependencies(ORDER, DEPENDS_ON, build, workers=2)
    assert [r["library"] for r in results] == ORDER                    # reported in dependency order
    for name, upstream in DEPENDS_ON.items():
        for other in upstream:
            assert build.index("end", other) < build.index("start", name), (other, name)


def test_a_library_starts_once_its_upstream_has_committed_its_table_while_that_build_still_runs():
    # population releases, then waits (its governance writes) until legal_person has started: the wait
    # times out, and the test fails, unless the release let legal_person start before population ended
    released = Released()
    legal_person_started = threading.Event()

    def population_commits_then_writes_the_rest():
        released("population")
        assert legal_person_started.wait(timeout=10)

    build = Recorder(hold={"population": population_commits_then_writes_the_rest,
                           "legal_person": legal_person_started.set})
    results = run_by_dependencies(["population", "legal_person", "credit_record"], DEPENDS_ON, build, workers=2,
                                  released=released)
    assert [r["status"] for r in results] == ["built"] * 3
    assert build.index("start", "legal_person") < build.index("end", "population")
    # credit_record reads legal_person too, which never released: it waited for that build's end
    assert build.index("start", "credit_record") > build.index("end", "legal_person")


def test_a_library_whose_upstream_was_not_built_is_skipped_with_the_reason_and_so_are_its_dependants():
    build = Recorder(status={"legal_person": "blocked"})
    results = {r["library"]: r for r in run_by_dependencies(ORDER, DEPENDS_ON, build, workers=2)}
    assert results["legal_person"]["status"] == "blocked"
    for name in ("credit_record", "e_licence", "credit_rating"):
        assert results[name]["status"] == "skipped"
        assert ("start", name) not in build.events
    assert results["credit_record"]["reason"] == "upstream base.legal_person not built in this run"
    assert results["credit_rating"]["reason"] == ("upstream base.legal_person, base.credit_record "
                                                  "not built in this run")
    assert results["grid"]["status"] == "built"


def test_a_library_not_ready_before_the_run_skips_its_dependants():
    build = Recorder()
    results = {r["library"]: r for r in run_by_dependencies(
        [n for n in ORDER if n != "population"], DEPENDS_ON, build, workers=2, not_built={"population"})}
    assert "population" not in results
    assert results["legal_person"]["status"] == "skipped"
    assert results["address"]["status"] == "built"


def test_a_failing_build_stops_new_starts_lets_the_running_one_end_and_is_raised_with_what_was_built():
    # population fails while address runs beside it; grid (no upstream) would start next if starts went on
    build = Recorder(fail="population", hold={"address": lambda: time.sleep(0.3)})
    with pytest.raises(RuntimeError, match="population broke") as raised:
        run_by_dependencies(ORDER, DEPENDS_ON, build, workers=2)
    assert ("start", "grid") not in build.events                       # nothing started after the failure
    assert raised.value.__notes__ == ["built before the error (committed): base.address"]


def test_every_failure_is_reported_not_only_the_first():
    both = threading.Barrier(2, timeout=10)

    def fail(name):
        both.wait()                                       # address and population fail together
        raise RuntimeError(f"{name} broke")

    with pytest.raises(RuntimeError, match="broke") as raised:
        run_by_dependencies(ORDER, DEPENDS_ON, fail, workers=2)
    other = "population" if "address" in str(raised.value) else "address"
    assert raised.value.__notes__ == [f"base.{other} failed too: {other} broke"]


def test_one_worker_stops_at_the_first_failure_and_says_what_was_built():
    build = Recorder(fail="population")
    with pytest.raises(RuntimeError, match="population broke") as raised:
        run_by_dependencies(ORDER, DEPENDS_ON, build, workers=1)
    assert build.events == [("start", "address"), ("end", "address"), ("start", "population"), ("end", "population")]
    assert raised.value.__notes__ == ["built before the error (committed): base.address"]


def test_ctrl_c_starts_nothing_more_and_interrupts_the_running_builds_until_they_end():
    # population runs until it is interrupted; Ctrl-C reaches the calling thread while it waits
    share = DriverShare()
    interrupted = threading.Event()
    started = threading.Event()
    calls = []

    def build(name):
        if name == "address":
            started.set()
            if not interrupted.wait(10):
                raise AssertionError("never interrupted")
            raise RuntimeError("job cancelled")
        with share.turn(alone=False):
            pass
        return {"library": name, "status": "built"}

    def interrupt():
        calls.append("interrupt")
        share.stop()
        interrupted.set()

    def ctrl_c():
        started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)              # as the terminal sends it: the calling thread gets it

    threading.Thread(target=ctrl_c).start()
    with pytest.raises(KeyboardInterrupt):
        run_by_dependencies(["address", "grid", "population"], {"address": [], "grid": [], "population": []}, build,
                            workers=2, interrupt=interrupt)
    assert calls and interrupted.is_set()
    with pytest.raises(BuildInterrupted), share.turn(alone=False):     # no build gets the driver after it
        pass


def test_a_full_build_waits_for_the_builds_sharing_the_driver_and_then_runs_alone():
    share = DriverShare()
    events: list[str] = []
    sharing_in = threading.Event()
    release_sharing = threading.Event()

    def sharing():
        with share.turn(alone=False):
            events.append("sharing in")
            sharing_in.set()
            release_sharing.wait(10)
            events.append("sharing out")

    def alone():
        with share.turn(alone=True):
            events.append("alone in")
            time.sleep(0.05)
            events.append("alone out")

    def late_sharing():
        with share.turn(alone=False):
            events.append("late in")

    first = threading.Thread(target=sharing)
    first.start()
    assert sharing_in.wait(10)
    full = threading.Thread(target=alone)
    full.start()
    _until(lambda: share.waiting["alone"] == 1)           # the full build now waits for the driver
    late = threading.Thread(target=late_sharing)
    late.start()
    _until(lambda: share.waiting["sharing"] == 1)         # and a build asking after it waits behind it
    assert events == ["sharing in"]
    release_sharing.set()
    for thread in (first, full, late):
        thread.join(10)
    assert events == ["sharing in", "sharing out", "alone in", "alone out", "late in"]


def test_libraries_that_can_never_start_are_refused_by_name_instead_of_waited_for():
    build = Recorder()
    with pytest.raises(ValueError, match="cannot build a, b: their depends_on never finish"):
        run_by_dependencies(["a", "b"], {"a": ["b"], "b": ["a"]}, build, workers=2)
    assert build.events == []


def _until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
