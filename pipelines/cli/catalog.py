"""`govlake catalog`, `govlake access` and `govlake publish`: what is shared, with whom, and in Trino."""

from __future__ import annotations

import click

from pipelines.cli.common import console, emit_json, json_option, spark_if_written, table


@click.command("publish")
@json_option
def publish_command(as_json: bool) -> None:
    """Register every silver, base and governance Delta table in Trino and create the views.

    Exits 1 when Trino does not answer (`govlake trino up` starts it)."""
    from pipelines.serving.publish import publish
    from pipelines.serving.trino import trino_status

    status = trino_status()
    if not status["answering"]:
        raise click.ClickException(f"Trino does not answer at {status['url']}: start it with `govlake trino up`")
    outcome = publish()
    if as_json:
        emit_json(outcome)
        return
    console.print(f"registered {len(outcome['registered'])}, unchanged {len(outcome['unchanged'])}, "
                  f"unregistered {len(outcome['unregistered'])}, views {len(outcome['views'])}")
    for name in outcome["registered"]:
        console.print(f"  + lake.{name}")


@click.group("catalog")
def catalog_group() -> None:
    """The data resource catalog (数据资源目录): resources, columns, share types."""


@catalog_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="The whole catalog as JSON (the export).")
def catalog_list(as_json: bool) -> None:
    """Every data resource with its provider, cadence and share types."""
    from pipelines.serving.catalog import CatalogError, load_catalog

    try:
        catalog = load_catalog()
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json({"resources": [r.as_dict() for r in catalog.resources.values()],
                    "departments": [vars(d) for d in catalog.departments.values()],
                    "grants": [vars(g) for g in catalog.grants]})
        return
    rows = []
    for r in catalog.resources.values():
        counts = {t: sum(1 for c in r.columns if c.share_type == t) for t in ("unconditional", "conditional",
                                                                             "not_shared")}
        rows.append([r.resource_id, r.code, r.name, r.provider, r.update_cadence, counts["unconditional"],
                     counts["conditional"], counts["not_shared"]])
    console.print(table("Data resource catalog", ["resource", "code", "name", "provider", "cadence",
                                                   "无条件", "有条件", "不予共享"], rows,
                         {"无条件", "有条件", "不予共享"}))


@catalog_group.command("show")
@click.argument("resource_id")
@json_option
def catalog_show(resource_id: str, as_json: bool) -> None:
    """One resource: metadata and every column's classification, grade and share type."""
    from pipelines.serving.catalog import SHARE_TYPE_LABEL, CatalogError, load_catalog

    try:
        resource = load_catalog().resources.get(resource_id)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if resource is None:
        raise click.ClickException(f"no resource {resource_id} (see `govlake catalog list`)")
    if as_json:
        emit_json(resource.as_dict())
        return
    console.print(f"{resource.resource_id} {resource.code} {resource.name}: provider {resource.provider}, "
                  f"{resource.update_cadence}, {resource.format}\n{resource.description}")
    described = any(c.description for c in resource.columns)
    console.print(table("Columns", ["column", "header", "type", "classification", "security grade", "share type"]
                        + (["rule"] if described else []),
                         [[c.name, c.header, c.type, c.classification, c.security_grade,
                           SHARE_TYPE_LABEL[c.share_type]] + ([c.description or "-"] if described else [])
                          for c in resource.columns]))


@click.group("access")
def access_group() -> None:
    """The sharing list compiled into Trino access rules."""


@access_group.command("compile")
@json_option
def access_compile(as_json: bool) -> None:
    """Turn catalog + grants into Trino rules (reloaded within seconds, no restart)."""
    from pipelines.serving.catalog import CatalogError
    from pipelines.serving.rules import compile_rules

    try:
        outcome = compile_rules()
    except CatalogError as exc:
        raise click.ClickException(f"{exc} (the running rules are unchanged)") from None
    if as_json:
        emit_json(outcome)
    else:
        console.print(f"compiled {outcome['table_rules']} table rules for {outcome['users']} users from "
                      f"{outcome['live_grants']} live of {outcome['grants']} grants into {outcome['rules']}")


@access_group.command("check")
@click.option("--user", "user", required=True)
@click.option("--table", "table", required=True, help="<schema>.<table>, e.g. silver.psb_hukou")
@json_option
def access_check(user: str, table: str, as_json: bool) -> None:
    """Explain what USER can see of TABLE, column by column, and why."""
    from dataclasses import asdict

    from pipelines.serving.access import explain

    try:
        decision = explain(user, table)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(asdict(decision))
        return
    console.print(f"{user} ({decision.department or 'no department'}) on {table}: {decision.reason}"
                  + (f"; row filter {decision.row_filter}" if decision.row_filter else ""))
    console.print(table("Columns", ["column", "sees", "why"],
                         [[name, c.state, c.reason] for name, c in decision.columns.items()]))


@access_group.command("request")
@click.option("--department", required=True)
@click.option("--resource", required=True, help="<schema>.<table>")
@click.option("--columns", required=True, help="Comma-separated column names.")
@click.option("--purpose", required=True)
@click.option("--legal-basis", required=True)
@click.option("--expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--row-scope", type=click.Choice(["all", "own_town"]), default=None,
              help="Default: own_town for a town government, all for anyone else.")
@click.option("--by", "requested_by", default=None, help="Who files it (default: the OS user).")
def access_request(department, resource, columns, purpose, legal_basis, expires, row_scope, requested_by) -> None:
    """File a sharing request: a pending entry on the demand list (需求清单)."""
    import getpass

    from pipelines.serving.catalog import CatalogError
    from pipelines.serving.requests import file_request

    try:
        row = file_request(department, resource, [c.strip() for c in columns.split(",") if c.strip()],
                           purpose, legal_basis, expires.date(), requested_by or getpass.getuser(), row_scope)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"filed {row['request_id']}: {department} asks for {resource} ({columns}); pending")


def _decide(request_id: str, approve: bool, reason: str, decided_by: str | None) -> None:
    import getpass

    from pipelines.serving.requests import decide_request

    try:
        row = decide_request(request_id, approve, decided_by or getpass.getuser(), reason)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{request_id} {row['status']}" + (f": grant written to {row['grant_file']}; live once the "
                                                      "rules keeper next compiles (`govlake trino up` runs it)"
                                                      if approve else ""))


@access_group.command("consent")
@click.argument("request_id")
@click.option("--by", "consented_by", required=True, help="A user of a bureau that owns requested columns.")
def access_consent(request_id: str, consented_by: str) -> None:
    """An owning bureau consents to a pending request (needed before approval)."""
    from pipelines.serving.requests import consent_request

    try:
        row = consent_request(request_id, consented_by)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{request_id}: consents {'; '.join(row['consents'])}")


@access_group.command("approve")
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--by", "decided_by", default=None)
def access_approve(request_id: str, reason: str, decided_by: str | None) -> None:
    """Approve a pending request: it becomes a grant file under catalog/grants/."""
    _decide(request_id, True, reason, decided_by)


@access_group.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--by", "decided_by", default=None)
def access_reject(request_id: str, reason: str, decided_by: str | None) -> None:
    """Reject a pending request (recorded on the demand list)."""
    _decide(request_id, False, reason, decided_by)


@access_group.command("requests")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="all")
@json_option
def access_requests(status: str, as_json: bool) -> None:
    """The demand list (需求清单)."""
    from pyspark.sql import functions as F

    from pipelines.lake.delta import read_table

    rows = []
    if session := spark_if_written("demand_list"):
        frame = read_table(session, "demand_list")
        if status != "all":
            frame = frame.where(F.col("status") == status)
        rows = [r.asDict() for r in frame.orderBy("requested_at").collect()]
    if as_json:
        emit_json(rows)
        return
    console.print(table("Demand list (需求清单)", ["request", "department", "resource", "columns", "status",
                                                  "decided by", "grant"],
                         [[r["request_id"], r["department"], r["resource"], ",".join(r["columns"]), r["status"],
                           r["decided_by"] or "-", r["grant_file"] or "-"] for r in rows]))
