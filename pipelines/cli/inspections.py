"""`govlake inspect` (the "double random, one public" inspection draw, 双随机一公开) and `govlake verify`
(verification instead of documents, 核验): the applications on the base libraries."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import console, emit_json, json_option, require_lake, table


@click.group("inspect")
def inspect_group() -> None:
    """Draw inspections from a plan (schemas/inspections/), verify a draw, publish its notice."""


@inspect_group.command("draw")
@click.option("--plan", "plan_name", required=True,
              help="A plan under schemas/inspections/ (its name) or a plan YAML file.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), required=True,
              help="The random seed (announce it, or draw it in public: anyone can re-run the draw with it).")
@click.option("--replaces", default=None, help="The plan's draw in force that this one replaces (recorded).")
@click.option("--reason", default=None, help="Why the draw in force is replaced (recorded; needed with --replaces).")
@click.option("--by", "drawn_by", default=None, help="Who draws (default: the OS user; recorded).")
@json_option
def draw_command(plan_name: str, seed: int, replaces: str | None, reason: str | None, drawn_by: str | None,
                 as_json: bool) -> None:
    """Draw the entities to inspect per item and grade, and their inspectors.

    Entities in operation from base.legal_person, graded by
    base.credit_rating; inspectors from amr.inspector, never one recused
    for the entity (its legal representative is the inspector or a member
    of their household, or it is their employer) nor one of its inspectors
    last time (its previous draw, its last result in amr.inspection_result).
    The draw, the Delta version of every input and the digest of
    the result are recorded in governance.inspection_draws (the result in
    governance.inspection_assignments): `govlake inspect verify DRAW_ID`
    draws again from the record. Too few inspectors for an item fails the
    draw, naming the item and the shortfall, and writes nothing.

    A plan has one draw in force: another draw of it must say which it
    --replaces and why (--reason), both recorded; the replaced draw's
    assignments no longer count as anyone's last inspection.
    """
    import getpass

    from pipelines.applications.inspection import DrawRefused, DrawShortfall, PlanError, RosterError, draw

    settings = require_lake()
    try:
        record = draw(plan_name, seed, settings, drawn_by or getpass.getuser(), replaces, reason)
    except (PlanError, DrawShortfall, DrawRefused, RosterError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = {k: v for k, v in record.items() if k not in ("plan_text", "input_versions", "items", "not_drawn")}
    summary |= {key: _json(record[key]) for key in ("input_versions", "items", "not_drawn")}
    if as_json:
        emit_json(summary)
        return
    console.print(f"draw {record['draw_id']}: plan {record['plan']}, seed {seed}, "
                  f"{record['entities_drawn']} entities, {record['assignments']} assignments; "
                  f"digest {record['result_digest']}", highlight=False)
    rows = [[item["item"], *(f"{item['drawn'][g]}/{item['in_scope'][g]}" for g in "ABCD")]
            for item in summary["items"]]
    console.print(table("drawn / in scope, by credit grade", ["item", "A", "B", "C", "D"], rows))


@inspect_group.command("verify")
@click.argument("draw_id")
@json_option
def verify_command(draw_id: str, as_json: bool) -> None:
    """Draw DRAW_ID again from its record (plan text, seed, input versions); exit 1 if the digests differ."""
    from pipelines.applications.inspection import (DrawNotReproducible, DrawShortfall, PlanError, RosterError,
                                                   verify_draw)

    settings = require_lake()
    try:
        result = verify_draw(draw_id, settings)
    except (LookupError, PlanError, DrawShortfall, DrawNotReproducible, RosterError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(result)
    else:
        console.print(f"{draw_id}: {'reproduced' if result['reproduced'] else 'NOT reproduced'} "
                      f"(recorded {result['recorded_digest']}, stored {result['stored_digest']}, drawn again "
                      f"{result['digest']}){''.join('; ' + p for p in result['problems'])}", highlight=False)
    if not result["reproduced"]:
        raise SystemExit(1)


@inspect_group.command("notice")
@click.argument("draw_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("notices"),
              show_default=True, help="Folder for <DRAW_ID>.csv and <DRAW_ID>.html.")
@json_option
def notice_command(draw_id: str, out_dir: Path, as_json: bool) -> None:
    """Write the public notice (公示) of a draw: the plan, its items and the entities drawn (no personal data)."""
    from pipelines.applications.inspection import DrawNotReproduced, PlanError, write_public_notice

    settings = require_lake()
    try:
        written = write_public_notice(draw_id, settings, out_dir)
    except (LookupError, PlanError, DrawNotReproduced) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(written)
    else:
        console.print(f"{written['entities']} entities: {written['csv']}, {written['html']}", highlight=False)


def _json(text: str):
    import json

    return json.loads(text)


@click.command("verify")
@click.argument("check", metavar="CHECK")
@click.argument("subject")
@click.option("--department", default=None, help="The asking department's code (catalog/departments.yaml; required).")
@click.option("--purpose", default=None, help="The matter the answer is for (required; logged).")
@click.option("--town", default=None, help="person-alive-in-town: the town (name or 9-digit code).")
@click.option("--licence-type", default=None, help="holds-valid-licence: business_licence, food_business_licence, ...")
@click.option("--by", "asked_by", default=None, help="Who asks (default: the OS user; logged).")
@json_option
def verify_fact_command(check: str, subject: str, department: str | None, purpose: str | None, town: str | None,
                        licence_type: str | None, asked_by: str | None, as_json: bool) -> None:
    """Verification instead of documents (核验): a yes/no answer about a person or entity, never the record.

    CHECK is person-alive-in-town (SUBJECT an ID number, --town), holds-valid-licence
    (SUBJECT a USCC, --licence-type) or entity-good-standing (SUBJECT a USCC: in
    operation, not on the abnormal-operation list, no unperformed dishonest-debtor
    case, business licence valid). Every question is logged in
    governance.verification_log with its department, purpose and answer; one
    without a purpose or a known department, for another check, or from a
    town government about another town is refused, and the refusal is
    logged too.
    """
    import getpass

    from pipelines.applications.verification import VerificationRefused, verify
    from pipelines.serving.catalog import load_departments

    settings = require_lake()
    params = {k: v for k, v in (("town", town), ("licence_type", licence_type)) if v}
    try:
        answer = verify(check, subject, params, department, purpose, asked_by or getpass.getuser(),
                        {code: d.town_code for code, d in load_departments(settings).items()}, settings)
    except VerificationRefused as exc:
        raise click.ClickException(f"refused: {exc}") from None
    if as_json:
        emit_json(answer)
    else:
        console.print(f"{answer['question']}: {'是' if answer['answer'] == 'yes' else '否'} ({answer['answer']})",
                      highlight=False)
