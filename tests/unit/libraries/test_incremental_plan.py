"""When a library build may be incremental, and why not (issue 15 item 2). Pure."""

from __future__ import annotations

import dataclasses

from pipelines.libraries.incremental import BuildState, plan_build, replacement_chains, spec_feeds, unfinished
from pipelines.library_specs import load_library_spec
from pipelines.settings import get_settings

SPEC = load_library_spec("population")


def state(as_of="2026-12-02", loads=None, upstream=None, digest=SPEC.digest, silver=None) -> BuildState:
    loads = loads if loads is not None else {"psb.hukou": ["hukou-1"], "mca.death": ["death-1"]}
    return BuildState(library="population", built_at=f"{as_of}T20:00:00+00:00", as_of=as_of, spec_digest=digest,
                      loads=loads, upstream=upstream or {"address": 3},
                      silver=silver if silver is not None else {feed: 1 for feed in loads},
                      snapshot_feeds=["hrss.social_insurance"])


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
    assert replaced.reason == ("1 delivery of the last build is no longer live and not replaced with recorded "
                               "changes (withdrawn, or replaced before change tables), e.g. hukou-1")
    derived = dataclasses.replace(SPEC, kind="derived")
    assert plan_build(derived, now, state(), True, False).reason == ("this derived library is rebuilt in full "
                                                                     "(no incremental.touched)")
    touched = dataclasses.replace(derived, touched_keys="pipelines.libraries.licence:e_licence_touched")
    assert plan_build(touched, state("2026-12-03", loads={"psb.hukou": ["hukou-1", "hukou-2"],
                                                          "mca.death": ["death-1"]}),
                      state(), True, False).mode == "incremental"


def test_an_unfinished_state_holds_the_loads_of_both_builds():
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-2"], "mca.death": ["death-1"]})
    written = unfinished(now, state())
    assert written.finished is False and written.loads == {"psb.hukou": ["hukou-1", "hukou-2"],
                                                           "mca.death": ["death-1"]}
    assert "nr.standard_address" in spec_feeds(SPEC)       # address codes: read for every key


def test_specs_declare_what_else_an_incremental_build_recomputes():
    assert SPEC.dated_keys == "pipelines.libraries.enrich:permits_lapsed"
    assert load_library_spec("legal_person").references == (("population", "legal_representative_id"),)
    # the derived libraries built incrementally name their touched keys and reference every upstream
    for name in ("credit_record", "credit_rating", "e_licence", "enterprise_profile", "supervision_risk"):
        derived = load_library_spec(name)
        assert derived.touched_keys and {n for n, _ in derived.references} == set(derived.depends_on)
    assert load_library_spec("address").touched_keys is None


def test_an_incremental_derived_library_must_reference_every_upstream(tmp_path):
    import shutil

    import pytest

    from pipelines.library_specs import LibrarySpecError
    from pipelines.settings import PROJECT_ROOT

    spec = PROJECT_ROOT / "schemas" / "libraries" / "e_licence.yaml"
    text = spec.read_text(encoding="utf-8").replace("  references: {legal_person: holder_id}\n", "")
    shutil.copytree(PROJECT_ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "schemas" / "libraries" / "e_licence.yaml").write_text(text, encoding="utf-8")
    settings = dataclasses.replace(get_settings(), schemas_dir=tmp_path / "schemas")
    with pytest.raises(LibrarySpecError, match="incremental.references: every library of depends_on needs one"):
        load_library_spec("e_licence", settings)


def test_a_delivery_replaced_with_recorded_changes_keeps_the_build_incremental():
    """A snapshot that superseded a delivery the last build saw: only its
    change rows are touched (``diffed_loads``), not every row. A correction
    of a changes feed keeps the build incremental too, but touches all its
    keys: its rows rank as the newest of their keys."""
    before = state(loads={"psb.hukou": ["hukou-1"], "hrss.social_insurance": ["ins-1"]})
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-1"], "hrss.social_insurance": ["ins-2"]})
    plan = plan_build(SPEC, now, before, True, False, replacements={"ins-1": "ins-2"})
    assert (plan.mode, plan.new_loads) == ("incremental", ["ins-2"])
    assert (plan.change_loads, plan.diffed_loads) == (["ins-2"], ["ins-2"])
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-2"], "mca.death": ["death-1"]})
    plan = plan_build(SPEC, now, state(), True, False, replacements={"hukou-1": "hukou-2"})
    assert (plan.mode, plan.change_loads, plan.diffed_loads) == ("incremental", ["hukou-2"], [])
    # withdrawn: nothing replaced it
    assert plan_build(SPEC, now, state(), True, False, replacements={}).mode == "full"
    # replaced by a delivery that is itself no longer live, and nothing after it
    assert plan_build(SPEC, now, state(), True, False, replacements={"hukou-1": "hukou-x"}).mode == "full"


def test_a_chain_of_replacements_touches_every_change_on_the_way():
    """hukou-1 (seen) was replaced by hukou-2 (never built), then by hukou-3:
    the changes of both are touched; hukou-3 was compared with a delivery the
    last build never saw, so every row it carries is touched too."""
    assert replacement_chains(["hukou-1"], {"hukou-1": "hukou-2", "hukou-2": "hukou-3"}, {"hukou-3"}) == (
        [], ["hukou-2", "hukou-3"])
    assert replacement_chains(["a"], {"a": "b", "b": "a"}, {"c"}) == (["a"], [])      # a loop explains nothing
    now = state("2026-12-03", loads={"psb.hukou": ["hukou-3"], "mca.death": ["death-1"]})
    plan = plan_build(SPEC, now, state(), True, False, replacements={"hukou-1": "hukou-2", "hukou-2": "hukou-3"})
    assert (plan.mode, plan.change_loads, plan.diffed_loads) == ("incremental", ["hukou-2", "hukou-3"], [])


def test_a_library_with_nothing_new_to_read_is_left_as_it_is():
    """The hourly hazard report changes no library: each build after it is
    ``unchanged`` (or, for base.address, reruns only its match-rate report);
    a date-dependent library is rebuilt when the date moves on, an undated
    one is not; a changed upstream library rebuilds."""
    from pipelines.libraries.address import MATCHED_ADDRESS_COLUMNS

    address = load_library_spec("address")
    assert set(address.report_reads) == {feed for feed, _ in MATCHED_ADDRESS_COLUMNS}   # the spec says what the code reads
    assert not address.reads_date

    def address_state(as_of, hazards):
        loads = {feed: [f"{feed}-1"] for feed in spec_feeds(address)} | {"grid.hazard_report": hazards}
        return dataclasses.replace(state(as_of, loads=loads), library="address", upstream={})

    before = address_state("2026-12-02", ["h-1"])
    same = plan_build(address, address_state("2026-12-03", ["h-1"]), before, True, False, changed_upstream=[])
    assert (same.mode, same.reason) == ("unchanged", "nothing it reads changed since the last build")
    report = plan_build(address, address_state("2026-12-03", ["h-1", "h-2"]), before, True, False,
                        changed_upstream=[])
    assert (report.mode, report.reason) == ("report", "only feeds its report reads changed (grid.hazard_report)")
    # a write to silver that no manifest event vouches for (a load that died) is looked at
    assert plan_build(address, address_state("2026-12-03", ["h-1"]), dataclasses.replace(
        before, silver=before.silver | {"nr.standard_address": 0}), True, False, changed_upstream=[]).mode == "full"
    # population reads the date (permits lapse): unchanged only within the same day
    assert plan_build(SPEC, state(), state(), True, False, changed_upstream=[]).mode == "unchanged"
    assert plan_build(SPEC, state("2026-12-03"), state(), True, False, changed_upstream=[]).mode == "incremental"
    assert plan_build(SPEC, state(), state(), True, False, changed_upstream=["address"]).mode == "incremental"
    rating = load_library_spec("credit_rating")
    assert rating.reads_date
    rated = dataclasses.replace(state(loads={f: ["x"] for f in spec_feeds(rating)}), library="credit_rating")
    # a new day alone: the grades a rule reads the date for are computed again (credit_rating_touched)
    assert plan_build(rating, dataclasses.replace(rated, as_of="2026-12-03"), rated, True, False,
                      changed_upstream=[]).mode == "incremental"
    assert plan_build(rating, rated, rated, True, False, changed_upstream=[]).mode == "unchanged"


def test_a_full_build_for_changed_code_names_the_files_and_an_operator_may_accept_code_alone():
    """The state keeps a digest per part (spec, contracts, suite, rules, code
    files): a full build's reason names what changed. An operator's
    acceptance keeps the build incremental only where code alone changed,
    and only for the digest accepted."""
    from pipelines.libraries.incremental import (
        build_digest, changed_parts, code_change_acceptance, digest_parts, is_code_part, parts_digest,
    )

    settings = get_settings()
    parts = digest_parts(SPEC, settings)
    assert {"schemas/libraries/population.yaml", "pipelines/libraries/golden.py", "schemas/feeds/psb/hukou.yaml",
            "quality/libraries/population.yaml", "pipelines/reference.py"} <= set(parts)
    assert build_digest(SPEC, settings) == parts_digest(parts)
    assert is_code_part("pipelines/libraries/golden.py") and is_code_part("pipelines/ingest/rules.py")
    assert not any(map(is_code_part, ("schemas/feeds/psb/hukou.yaml", "pipelines/reference.py",
                                      "schemas/libraries/population.yaml", "quality/libraries/population.yaml")))
    assert changed_parts({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == ["a", "b", "c"]

    def built(changed: dict[str, str], finished: bool = True) -> BuildState:
        now_parts = {name: digest for name, digest in (parts | changed).items() if digest is not None}
        return dataclasses.replace(state(digest=parts_digest(now_parts)), digest_parts=now_parts, finished=finished)

    code = {"pipelines/libraries/golden.py": "old", "pipelines/libraries/gone.py": "old",    # a file removed since
            "pipelines/libraries/matching.py": None}                                       # a file added since
    previous = built(code)
    now = dataclasses.replace(built({}), as_of="2026-12-03", built_at="2026-12-03T20:00:00+00:00",
                              loads={"psb.hukou": ["hukou-1", "hukou-2"], "mca.death": ["death-1"]})
    files = ["pipelines/libraries/golden.py", "pipelines/libraries/gone.py", "pipelines/libraries/matching.py"]
    plan = plan_build(SPEC, now, previous, True, False)
    assert (plan.mode, plan.reason) == ("full", "the library spec, its feeds' contracts, its suite or the build "
                                                f"code changed since the last build ({', '.join(files)})")
    assert code_change_acceptance(previous, now) == (files, None)
    accepted = plan_build(SPEC, now, previous, True, False, accepted_digest=now.spec_digest)
    assert (accepted.mode, accepted.new_loads) == ("incremental", ["hukou-2"])
    assert accepted.reason == (f"1 new deliveries since the last build; the change of {', '.join(files)} accepted "
                               "as leaving the records as they were")
    # accepted to another digest (the code changed again after the operator's word): full
    assert plan_build(SPEC, now, previous, True, False, accepted_digest=previous.spec_digest).mode == "full"
    # a contract or the reference data changed too: refused, and the plan stays full
    for data in ("schemas/feeds/psb/hukou.yaml", "pipelines/reference.py"):
        mixed = built({"pipelines/libraries/golden.py": "old", data: "old"})
        assert code_change_acceptance(mixed, now)[1] == ("not only build code changed since its last build: "
                                                         f"{data} (what the records are made of)")
        assert plan_build(SPEC, now, mixed, True, False, accepted_digest=now.spec_digest).mode == "full"
    unfinished_build = built({"pipelines/libraries/golden.py": "old"}, finished=False)
    assert "did not finish" in code_change_acceptance(unfinished_build, now)[1]
    assert plan_build(SPEC, now, unfinished_build, True, False, accepted_digest=now.spec_digest).mode == "full"
    # a state that does not say what it was made of: written before per-part digests, or parts and digest disagree
    for unknown in (dataclasses.replace(previous, digest_parts={}), dataclasses.replace(previous, spec_digest="x"),
                    dataclasses.replace(previous, digest_parts=now.digest_parts)):
        assert "does not say which files" in code_change_acceptance(unknown, now)[1]
        assert plan_build(SPEC, now, unknown, True, False, accepted_digest=now.spec_digest).mode == "full"
    assert code_change_acceptance(None, now) == ([], "it has no finished build to compare with")
    assert code_change_acceptance(now, now) == ([], None)          # nothing changed: nothing to accept


def test_a_state_written_by_a_later_version_is_still_read(tmp_path):
    """A rollback meets state files with fields it does not know: they are left out."""
    import json

    from pipelines.libraries.incremental import read_state, write_state

    settings = dataclasses.replace(get_settings(), home=str(tmp_path))
    write_state(state(), settings)
    path = tmp_path / "state" / "builds" / "population.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"added_later": 1}))
    assert read_state("population", settings) == state()
