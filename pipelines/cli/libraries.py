"""`govlake build` and `govlake show`: the base libraries."""

from __future__ import annotations

import sys

import click

from pipelines.cli.common import console, emit_json, err_console, json_option, spark, table


def _library_choices() -> list[str]:
    from pipelines.library_specs import library_spec_paths

    return [path.stem for path in library_spec_paths()]


@click.command("build")
@click.option("--library", "libraries", multiple=True, type=click.Choice(_library_choices()),
              help="A base library to build (repeatable). Default: all, in dependency order.")
@click.option("--full", is_flag=True, help="Recompute every key (default: only the keys the deliveries since "
                                           "the last build touched, where its recorded state allows).")
@click.option("--accept-code-change", "accept_code", is_flag=True,
              help="The build code changed since the last builds without changing what they compute: keep them "
                   "incremental (refused, and recorded, where anything else changed; needs --reason).")
@click.option("--reason", default=None, help="Why the code change leaves the records as they were (recorded).")
@click.option("--by", "decided_by", default=None, help="Who accepts it (default: the OS user).")
@click.option("--in-process", is_flag=True, help="Build in this process even when the lake's build service is up.")
@json_option
def build_command(libraries: tuple[str, ...], full: bool, accept_code: bool, reason: str | None,
                  decided_by: str | None, in_process: bool, as_json: bool) -> None:
    """Build or refresh base libraries from silver (gated; history kept; only changes written).

    A golden library is built incrementally: the keys the deliveries since
    its last build carry, and those that depend on them, are recomputed and
    merged (the table's "mode" column says which, and why). --full
    recomputes every key; both give the same records. A library none of
    whose inputs changed since its last build is left as it is (mode
    "unchanged"; "report" when only its report's feeds changed).

    A library whose authoritative source feeds have no silver table yet (or
    whose upstream library is not built) is skipped with the reason, before
    any Spark work; the others build. Exits 1 if a library was skipped or
    blocked by its gate; with --library, a library that cannot be built fails.

    A change of the build code (pipelines/libraries, ...) makes the next
    build of every library a full one, since rows left alone were computed
    by the old code. --accept-code-change --reason R records an operator's
    word that it computes the same records (a refactoring, a speed-up the
    incremental-equals-full test covers): the builds stay incremental. It is
    refused, and the refusal recorded, for a library whose spec, contracts,
    suite, rules or reference data (pipelines/reference.py) changed too, or
    whose last build did not finish. The decisions are kept in
    <lake>/state/build_overrides.

    When the lake's build service is up (`govlake builder up`), the build
    runs there, in a driver kept warm between builds; one that runs other
    code or settings than this command is replaced first. Otherwise, or
    with --in-process, it runs in this process.
    """
    from pipelines.libraries.build import BuildRefused, build_ready, os_user
    from pipelines.libraries.service import ServiceError, build_through_service

    if (reason is not None or decided_by is not None) and not accept_code:
        raise click.UsageError("--reason and --by go with --accept-code-change")
    if accept_code and full:
        raise click.UsageError("--accept-code-change keeps builds incremental; --full recomputes every key")
    try:
        through = None if in_process else build_through_service(
            None, list(libraries) or None, full, (reason or "", decided_by) if accept_code else None,
            echo=lambda line: err_console.print(line, highlight=False, markup=False))
        if through is not None:
            results, skipped = through.results, through.skipped
            err_console.print(f"built by the build service (pid {through.pid})", highlight=False)
        else:
            results, skipped = build_ready(spark, list(libraries) or None, full=full,
                                           accept_code=(reason or "", decided_by or os_user() or "unknown")
                                           if accept_code else None)
    except (BuildRefused, ServiceError) as exc:
        raise click.ClickException(str(exc)) from None
    if libraries and skipped:
        raise click.ClickException("; ".join(check.describe() for check in skipped))
    for check in skipped:
        err_console.print(f"[yellow]{check.describe()}[/yellow]", highlight=False)
    for result in results:
        if result["status"] == "skipped":
            err_console.print(f"[yellow]base.{result['library']} skipped: {result['reason']}[/yellow]", highlight=False)
    if as_json:
        emit_json(results + [{"library": r.library, "status": "skipped", "rows": 0,
                              "missing_feeds": r.missing_feeds, "missing_libraries": r.missing_libraries}
                             for r in skipped])
    else:
        rows = [[r["library"], r["status"], r.get("mode", "-"), r["rows"], r.get("inserted", "-"),
                 r.get("changed", "-"), r.get("removed", "-"), r.get("unchanged", "-"), r.get("seconds", "-")]
                for r in results]
        rows += [[r.library, "skipped", "-", "-", "-", "-", "-", "-", "-"] for r in skipped]
        console.print(table("Base libraries", ["library", "status", "mode", "records", "new", "changed", "closed",
                                               "unchanged", "seconds"], rows,
                            {"records", "new", "changed", "closed", "unchanged", "seconds"}))
        for r in results:
            if r.get("mode") in ("unchanged", "report"):
                console.print(f"  base.{r['library']}: left as it is ({r['mode_reason']})"
                              + ("; its report was rerun" if r["mode"] == "report" else ""))
            elif r.get("mode"):
                console.print(f"  base.{r['library']}: {r['mode']} build ({r['mode_reason']})"
                              + (f", {r['touched_keys']:,} keys recomputed" if "touched_keys" in r else ""))
            for failure in r.get("gate", {}).get("failures", []):
                console.print(f"  base.{r['library']}: {failure}")
            if r.get("conflicts"):
                console.print(f"  base.{r['library']} conflicts: "
                              + ", ".join(f"{k} ({v})" for k, v in sorted(r["conflicts"].items())))
            if "match_review" in r:
                console.print(f"  base.{r['library']}: {r['entity_links']} quarantined records resolved, "
                              f"{r['match_review']} waiting in governance.match_review")
            for rate in r.get("report", []):
                console.print(f"  address match {rate['feed']}.{rate['column_name']}: "
                              f"{rate['matched']}/{rate['rows']} ({rate['match_rate']:.2%})")
    if skipped or any(r["status"] != "built" for r in results):
        sys.exit(1)


@click.group("show")
def show_group() -> None:
    """One golden record with each attribute's source (a governor's debugging view)."""


def _show_record(library: str, value: str, as_json: bool) -> None:
    from pipelines.lake.delta import table_exists
    from pipelines.libraries.show import golden_record
    from pipelines.settings import get_settings

    settings = get_settings()
    if not table_exists(settings.lake_path("base", library)):   # before Spark starts
        raise click.ClickException(f"base.{library} is not built yet: run `govlake build`")
    try:
        shown = golden_record(spark(), library, value)
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    record = shown["record"]
    if as_json:
        emit_json(record | {"conflicts": shown["conflicts"]})
        return
    console.print(f"{value}: known to {', '.join(record['known_to'])}; valid from {record['valid_from']}"
                  + ("" if record["is_known_to_authority"] else " (not known to the authoritative bureau)"))
    console.print(table("Attributes", ["attribute", "value", "source", "load"],
                        [[a["name"], a["value"], a["source"] or "-", a["load_id"] or "-"]
                         for a in shown["attributes"]]))
    if shown["computed"]:
        console.print(table("Computed", ["column", "value"], [[c["column"], c["value"]] for c in shown["computed"]]))
    for c in shown["conflicts"]:
        console.print(f"[yellow]conflict[/yellow] {c['attribute']}: {c['authoritative_feed']} says "
                      f"{c['authoritative_value']!r}, {c['other_feed']} says {c['other_value']!r} "
                      f"(since {c['first_seen_at']})")


@show_group.command("person")
@click.argument("person_id")
@json_option
def show_person(person_id: str, as_json: bool) -> None:
    """The current base.population record of PERSON_ID and where each value came from."""
    _show_record("population", person_id, as_json)


@show_group.command("entity")
@click.argument("uscc")
@json_option
def show_entity(uscc: str, as_json: bool) -> None:
    """The enterprise profile of USCC (企业全景画像) in sections, then its
    base.legal_person record with each value's source, and its conflicts."""
    from pipelines.lake.delta import table_exists
    from pipelines.libraries.show import enterprise_profile
    from pipelines.settings import get_settings

    if not table_exists(get_settings().lake_path("base", "enterprise_profile")):
        _show_record("legal_person", uscc, as_json)
        return
    try:
        profile = enterprise_profile(spark(), uscc)
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if as_json:
        emit_json(profile)
        return
    titles = {"registration": "登记 Registration", "place": "地址与网格 Address and grid",
              "legal_representative": "法定代表人 Legal representative", "credit": "信用 Credit",
              "records": "处罚·异常·失信 Penalties, abnormal list, dishonest debtor",
              "licences": f"证照 Licences (as of {profile['as_of']})", "hazards": "网格隐患 Grid hazards",
              "inspections": "双随机检查 Inspections"}
    console.print(f"{uscc}: {profile['registration']['entity_name']}")
    for section, title in titles.items():
        rows = [[name, _shown(value)] for name, value in profile[section].items()]
        console.print(table(title, ["field", "value"], rows))
    employees = profile["employees"]
    console.print(table(f"参保 Insured employees: {employees['insured_employees']} now", ["month end", "insured"],
                        [[m["month_end"], _shown(m["insured_employees"])] for m in employees["trend"]]))
    _show_record("legal_person", uscc, as_json)


def _shown(value) -> str:
    """A profile value for the terminal: lists and hazard categories joined, null as '-'."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return "; ".join(f"{v['category']} {v['open']} open / {v['closed']} closed" if isinstance(v, dict) else str(v)
                         for v in value) or "-"
    return str(value)


@show_group.command("risk")
@click.argument("town")
@click.option("--level", "levels", multiple=True, type=click.Choice(["high", "medium", "low"]),
              help="Levels to list (repeatable; default high and medium).")
@json_option
def show_risk(town: str, levels: tuple[str, ...], as_json: bool) -> None:
    """The risk list of TOWN (a town code or name): its supervised entities at
    the levels asked (base.supervision_risk), highest points first, each with
    the rules that held."""
    from pipelines.lake.delta import table_exists
    from pipelines.libraries.risk import town_risk_list
    from pipelines.settings import get_settings

    settings = get_settings()
    if not table_exists(settings.lake_path("base", "supervision_risk")):     # before Spark starts
        raise click.ClickException("base.supervision_risk is not built yet: run `govlake build`")
    try:
        rows = town_risk_list(spark(), settings, town, levels or ("high", "medium"))
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if as_json:
        emit_json(rows)
        return
    console.print(table(f"风险清单 Risk list: {town} ({len(rows)} entities)",
                        ["uscc", "name", "grid", "level", "points", "reasons"],
                        [[r["uscc"], r["entity_name"], r["grid_code"] or "-", r["risk_level"], r["risk_points"],
                          "; ".join(r["risk_reasons"])] for r in rows]))
