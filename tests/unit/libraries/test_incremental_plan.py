"""When a library build may be incremental, and why not (issue 15 item 2). Pure."""

from __future__ import annotations

import dataclasses

from pipelines.libraries.incremental import BuildState, plan_build, spec_feeds, unfinished
from pipelines.library_specs import load_library_spec

SPEC = load_library_spec("population")


def state(as_of="2026-12-02", loads=None, upstream=None, digest=SPEC.digest) -> BuildState:
    return BuildState(library="population", built_at=f"{as_of}T20:00:00+00:00", as_of=as_of, spec_digest=digest,
                      loads=loads if loads is not None else {"psb.hukou": ["hukou-1"], "mca.death": ["death-1"]},
                      upstream=upstream or {"address": 3})


def test_new_deliveries_since_the_last_build_are_an_incremental_build():
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-1", "hukou-2"], "mca.death": ["death-1", "death-2"]})
    plan = plan_build(SPEC, now, state(), path_exists=True, full=False)
    assert (plan.mode, plan.new_loads) == ("incremental", ["death-2", "hukou-2"])
    assert plan.reason == "2 new deliveries since the last build"


def test_whatever_the_state_cannot_vouch_for_is_a_full_build():
    now = state("2026-12-03")
    cases = {
        "asked for (--full)": plan_build(SPEC, now, state(), True, full=True),
        "first build": plan_build(SPEC, now, None, True, False),
        "first build ": plan_build(SPEC, now, state(), False, False),       # the table was removed
        "the library spec, its feeds' contracts, its suite or the build code changed since the last build":
            plan_build(SPEC, now, state(digest="old"), True, False),
        "the build date is before the last build's": plan_build(SPEC, state("2026-12-01"), state(), True, False),
        "base.population changed since the last build":
            plan_build(SPEC, now, state(), True, False, ["base.population changed since the last build"]),
        "the last build did not finish": plan_build(SPEC, now, unfinished(state(), None), True, False),
        "nr.standard_address delivered since the last build: every key's computed columns read it": plan_build(
            SPEC, state("2026-12-03", loads={"psb.hukou": ["hukou-1"], "mca.death": ["death-1"],
                                             "nr.standard_address": ["address-2"]}), state(), True, False),
    }
    for reason, plan in cases.items():
        assert (plan.mode, plan.reason) == ("full", reason.strip())
    replaced = plan_build(SPEC, state("2026-12-03", loads={"psb.hukou": ["hukou-1b"], "mca.death": ["death-1"]}),
                          state(), True, False)
    assert replaced.mode == "full"
    assert replaced.reason == "1 delivery of the last build is no longer live (replaced or withdrawn), e.g. hukou-1"
    derived = dataclasses.replace(SPEC, kind="derived")
    assert plan_build(derived, now, state(), True, False).reason == "derived libraries are rebuilt in full"


def test_an_unfinished_state_holds_the_loads_of_both_builds():
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-2"], "mca.death": ["death-1"]})
    written = unfinished(now, state())
    assert written.finished is False and written.loads == {"psb.hukou": ["hukou-1", "hukou-2"],
                                                           "mca.death": ["death-1"]}
    assert "nr.standard_address" in spec_feeds(SPEC)       # address codes: read for every key


def test_specs_declare_what_else_an_incremental_build_recomputes():
    assert SPEC.dated_keys == "pipelines.libraries.enrich:permits_lapsed"
    assert load_library_spec("legal_person").references == (("population", "legal_representative_id"),)
