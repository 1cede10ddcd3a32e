"""The four lists of the closed loop, each a Delta table in ``governance``:

- demand list (需求清单) ``governance.demand_list``: sharing requests filed by
  departments, pending until every bureau that owns a requested column has
  consented (``consent_request``) and the sharing office approves (which
  writes a grant file under ``catalog/grants/`` recording the consents; the
  rules keeper makes it live within its refresh period, with no other step)
  or rejects; one row per request, updated in place;
- collection list (归集清单) ``governance.collection_list``: per feed, cadence,
  last delivery and on time / late / missing, refreshed by ``refresh_lists``;
- sharing list (共享清单) ``governance.sharing_list``: every grant with its state
  (live / expired), refreshed by ``refresh_lists``;
- governance list (治理清单) ``governance.issues``: see ``pipelines.governance.issues``.

The demand list is written by delta-rs (a MERGE per request: no JVM, so the
portal and the CLI file, consent and decide without Spark); the collection
and sharing lists by Spark (an overwrite per refresh). Read them with
``pipelines.lake.delta.read_table`` (Spark) or ``read_delta_rows``.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import yaml

from pipelines.contracts import load_contracts
from pipelines.governance.collection import collection_status
from pipelines.lake.delta import read_delta_rows, rows_table
from pipelines.lake.paths import governance_path
from pipelines.lake.tables import COLLECTION_DDL, DEMAND_DDL, SHARING_DDL
from pipelines.serving.catalog import CatalogError, load_catalog
from pipelines.settings import Settings, get_settings, utc_now


def _upsert_demand(row: dict, settings: Settings) -> None:
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import TableNotFoundError

    table = rows_table([row], DEMAND_DDL)
    path = governance_path("demand_list", settings)
    try:
        target = DeltaTable(path)
    except TableNotFoundError:
        write_deltalake(path, table, mode="append")
        return
    # with schema evolution: a demand list written before ``consents`` existed gains the column
    (target.merge(table, "t.request_id = s.request_id", source_alias="s", target_alias="t", merge_schema=True)
     .when_matched_update_all().when_not_matched_insert_all().execute())


def demand_rows(settings: Settings | None = None, status: str | None = None) -> list[dict]:
    """The demand list's requests (of one ``status``), newest first."""
    path = governance_path("demand_list", settings or get_settings())
    rows = read_delta_rows(path, [("status", "=", status)] if status else None)
    for row in rows:
        row["consents"] = list(row.get("consents") or [])
    return sorted(rows, key=lambda r: (r["requested_at"], r["request_id"]), reverse=True)


def file_request(department: str, resource: str, columns: list[str], purpose: str, legal_basis: str,
                 expires: date, requested_by: str, row_scope: str | None = None, settings: Settings | None = None) -> dict:
    """A department asks for columns of a resource: a pending entry on the demand list.
    The request is validated against the catalog like a grant."""

    settings = settings or get_settings()
    catalog = load_catalog(settings)
    if department not in catalog.departments:
        raise CatalogError(f"unknown department {department!r}")
    if resource not in catalog.resources:
        raise CatalogError(f"unknown resource {resource!r}")
    unknown = [c for c in columns if catalog.resources[resource].column(c) is None]
    if unknown:
        raise CatalogError(f"{resource} has no column(s) {', '.join(unknown)}")
    now = utc_now()
    request_id = "DR-" + hashlib.sha1(f"{department}|{resource}|{now.isoformat()}".encode()).hexdigest()[:8]
    row = {"request_id": request_id, "department": department, "resource": resource, "columns": list(columns),
           "purpose": purpose, "legal_basis": legal_basis, "row_scope": row_scope, "expires": expires,
           "requested_by": requested_by, "requested_at": now, "status": "pending", "consents": [], "decided_by": None,
           "decided_at": None, "decision_reason": None, "grant_file": None}
    _upsert_demand(row, settings)
    return row


def owning_bureaus(catalog, resource: str, columns: list[str]) -> list[str]:
    """The bureaus whose data the requested columns are: each must consent."""
    found = catalog.resources[resource]
    return sorted(set().union(*(found.value_owners(c) for c in columns)))


def _pending(request_id: str, settings: Settings) -> dict:
    found = read_delta_rows(governance_path("demand_list", settings), [("request_id", "=", request_id)])
    if not found:
        raise LookupError(f"no request {request_id} on the demand list")
    row = found[0]
    if row["status"] != "pending":
        raise ValueError(f"request {request_id} is already {row['status']}")
    row["consents"] = list(row.get("consents") or [])
    return row


def consent_request(request_id: str, consented_by: str, settings: Settings | None = None) -> dict:
    """An owning bureau's user consents to sharing its columns (recorded on the
    request as ``bureau=<code> by=<user> at=<time>``). Refused for a user of a
    bureau that owns none of the requested columns."""
    settings = settings or get_settings()
    row = _pending(request_id, settings)
    catalog = load_catalog(settings)
    owners = owning_bureaus(catalog, row["resource"], row["columns"])
    bureau = next((d.bureau for d in catalog.departments.values() if consented_by in d.users), None)
    if bureau not in owners:
        raise ValueError(f"{consented_by} cannot consent to {request_id}: the columns it asks for belong to "
                         f"{', '.join(owners)}, not to {bureau or 'no bureau'}")
    row["consents"] = [c for c in row["consents"] if not c.startswith(f"bureau={bureau} ")] + [
        f"bureau={bureau} by={consented_by} at={utc_now():%Y-%m-%dT%H:%M:%SZ}"]
    _upsert_demand(row, settings)
    return row


def decide_request(request_id: str, approve: bool, decided_by: str, reason: str,
                   settings: Settings | None = None) -> dict:
    """Approve (writes ``catalog/grants/<request id>.yaml``) or reject a pending
    request. Approval needs the consent of every bureau that owns a requested
    column; the grant is live as soon as the rules keeper next compiles."""
    settings = settings or get_settings()
    if not reason.strip():
        raise ValueError("a decision needs a reason")
    row = _pending(request_id, settings)
    if approve:
        owners = owning_bureaus(load_catalog(settings), row["resource"], row["columns"])
        consented = {c.split()[0].removeprefix("bureau=") for c in row["consents"]}
        missing = [b for b in owners if b not in consented]
        if missing:
            raise ValueError(f"request {request_id} needs the consent of {', '.join(missing)} first "
                             f"(govlake access consent {request_id} --by <a user of {missing[0]}>)")
    row.update(status="approved" if approve else "rejected", decided_by=decided_by, decided_at=utc_now(),
               decision_reason=reason)
    if approve:
        grant_path = Path(settings.catalog_dir) / "grants" / f"{request_id.lower()}.yaml"
        grant = {"department": row["department"], "resource": row["resource"], "columns": row["columns"],
                 "purpose": row["purpose"], "legal_basis": row["legal_basis"], "expires": row["expires"],
                 "approver": decided_by, "consent": row["consents"]}
        if row["row_scope"]:
            grant["row_scope"] = row["row_scope"]
        grant_path.parent.mkdir(parents=True, exist_ok=True)
        partial = grant_path.with_suffix(".yaml.partial")     # the keeper never reads half a file
        partial.write_text(
            f"# Approved from demand-list request {request_id} on {row['decided_at']:%Y-%m-%d}: {reason}\n"
            + yaml.safe_dump({"grants": [grant]}, allow_unicode=True, sort_keys=False), encoding="utf-8")
        partial.replace(grant_path)
        row["grant_file"] = f"catalog/grants/{grant_path.name}"
    _upsert_demand(row, settings)
    return row


def refresh_lists(spark, settings: Settings | None = None, on: date | None = None) -> dict:
    """Rewrite the collection and sharing lists from the manifest and the grants."""

    settings = settings or get_settings()
    on = on or settings.on_date()
    now = utc_now()
    collection = [s.as_dict() | {"last_delivery_at": s.last_delivery_at, "refreshed_at": now}
                  for s in collection_status(spark, load_contracts(settings.schemas_dir), settings)]
    catalog = load_catalog(settings)
    sharing = [{"department": g.department, "resource": g.resource, "columns": g.columns, "purpose": g.purpose,
                "legal_basis": g.legal_basis, "row_scope": g.scope_for(catalog.departments[g.department]),
                "expires": g.expires,
                "approver": g.approver, "state": "live" if g.is_live(on) else "expired", "source": g.source,
                "refreshed_at": now} for g in catalog.grants]
    for name, rows, ddl in (("collection_list", collection, COLLECTION_DDL), ("sharing_list", sharing, SHARING_DDL)):
        (spark.createDataFrame(rows, ddl).write.format("delta").mode("overwrite")
         .option("overwriteSchema", "true").save(governance_path(name, settings)))
    return {"collection_list": len(collection), "sharing_list": len(sharing)}
