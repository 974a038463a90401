"""REST routes (/v1/audit) for auditors: the audit trail (filters, paging, JSON lines and CSV
export), any key as of any time, a key's last use, and the compliance reports.

Thin, like app/entrypoints/rest/app.py: each route turns its query into plain values, calls one use
case of app/usecases/auditors.py and shapes the answer. Who may ask is decided there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.bootstrap import Runtime
from app.entrypoints.cli.audit_export import csv_lines, jsonl_lines
from app.entrypoints.rest.deps import ERROR_RESPONSES, CallerDep, LedgerRoute
from app.entrypoints.rest.schemas import MAX_KEY_ID
from app.usecases.auditors import AuditService
from domain.errors import InternalError, ValidationError
from projections.audit_queries import AuditFilter

router = APIRouter(prefix="/v1/audit", route_class=LedgerRoute, responses=ERROR_RESPONSES)


async def audit_service(request: Request) -> AuditService:
    runtime: Runtime = request.app.state.runtime
    if runtime.audit_service is None:
        raise InternalError("the audit trail is not available")
    return runtime.audit_service


AuditDep = Annotated[AuditService, Depends(audit_service)]
AuditKeyId = Annotated[str, Path(min_length=1, max_length=MAX_KEY_ID, description="Key id or ARN.")]


class MaterialPublic(BaseModel):
    version: int
    material_id: str
    created: datetime
    rotation_type: str | None
    imported: bool


class KeyAsOfPublic(BaseModel):
    key_id: str
    arn: str
    account_id: str
    region: str
    as_of: datetime
    version: int
    last_changed: datetime
    key_state: str
    enabled: bool
    description: str
    key_spec: str
    key_usage: str
    origin: str
    key_manager: str
    creation_date: datetime
    deletion_date: datetime | None
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: datetime | None
    materials: list[MaterialPublic]
    aliases: list[str]
    tags: dict[str, str]
    policy: str
    grants: list[dict[str, Any]]
    last_used_at: datetime | None
    last_used_operation: str | None
    custom_key_store_id: str | None = None
    cloud_hsm_cluster_id: str | None = None
    xks_key_id: str | None = None


class LastUsagePublic(BaseModel):
    key_id: str
    key_arn: str
    key_creation_date: datetime
    tracking_start_date: datetime
    operation: str | None
    timestamp: datetime | None
    cloudtrail_event_id: str | None
    request_id: str | None


def _filter(
    principal_arn: str | None,
    key: str | None,
    event_name: str | None,
    error_code: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    source_ip: str | None,
    encryption_context_key: str | None,
    read_only: bool | None,
    event_source: str | None,
    username: str | None,
    access_key_id: str | None,
    event_id: str | None,
) -> AuditFilter:
    return AuditFilter(
        principal_arn=principal_arn,
        resource=key,
        event_name=event_name,
        error_code=error_code,
        start=start_time,
        end=end_time,
        source_ip=source_ip,
        encryption_context_key=encryption_context_key,
        read_only=read_only,
        event_source=event_source,
        username=username,
        access_key_id=access_key_id,
        event_id=event_id,
    )


@router.get("/events", tags=["audit"], response_model=None)
async def audit_events(
    caller: CallerDep,
    audit: AuditDep,
    principal_arn: str | None = None,
    key: Annotated[str | None, Query(description="Key id or key ARN.")] = None,
    event_name: str | None = None,
    error_code: Annotated[
        str | None, Query(description="As the record writes it (AccessDenied); * for any.")
    ] = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    source_ip: str | None = None,
    encryption_context_key: str | None = None,
    read_only: bool | None = None,
    event_source: str | None = None,
    username: str | None = None,
    access_key_id: str | None = None,
    event_id: str | None = None,
    account: Annotated[
        str | None, Query(description="One account's records (operator account only).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    next_token: Annotated[str | None, Query(max_length=1024)] = None,
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Response:
    """The audit trail, newest first: CloudTrail records matching every filter given.

    ``json`` pages (``limit``, ``next_token``); ``jsonl`` and ``csv`` export every matching
    record, oldest first.
    """
    query = _filter(
        principal_arn,
        key,
        event_name,
        error_code,
        start_time,
        end_time,
        source_ip,
        encryption_context_key,
        read_only,
        event_source,
        username,
        access_key_id,
        event_id,
    )
    query = replace(query, recipient_account=account)
    if format != "json":
        rows = await audit.export(caller, query)
        if format == "jsonl":
            return StreamingResponse(jsonl_lines(rows), media_type="application/x-ndjson")
        return StreamingResponse(
            csv_lines(rows),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="audit-events.csv"'},
        )
    page = await audit.lookup(caller, query, limit, next_token)
    body = b'{"events":[' + b",".join(row.record.encode() for row in page.rows) + b"]"
    body += b',"next_token":' + orjson.dumps(page.next_token) + b"}"
    return Response(body, media_type="application/json")


@router.get("/keys/{key_id:path}/as-of", tags=["audit"])
async def key_as_of(
    key_id: AuditKeyId,
    caller: CallerDep,
    audit: AuditDep,
    at: Annotated[datetime, Query(description="ISO 8601; without a zone it is UTC.")],
) -> KeyAsOfPublic:
    """The key's state, policy and grants as they were at ``at``, from its events."""
    found = await audit.key_as_of(caller, key_id, at)
    return KeyAsOfPublic.model_validate(
        {
            **vars(found),
            "materials": [vars(m) for m in found.materials],
            "aliases": list(found.aliases),
            "grants": [_plain(g) for g in found.grants],
        }
    )


@router.get("/keys/{key_id:path}/last-usage", tags=["audit"])
async def key_last_usage(key_id: AuditKeyId, caller: CallerDep, audit: AuditDep) -> LastUsagePublic:
    """GetKeyLastUsage: the key's last successful cryptographic operation."""
    usage = await audit.key_last_usage(caller, key_id)
    return LastUsagePublic.model_validate(vars(usage))


@router.get("/reports/{name}", tags=["audit"], response_model=None)
async def compliance_report(
    name: str,
    caller: CallerDep,
    audit: AuditDep,
    format: Literal["json", "csv"] = "json",
    days: Annotated[int, Query(ge=0, le=36500, description="unused-keys: days unused")] = 90,
    key: Annotated[str | None, Query(description="who-can-decrypt: key id or ARN")] = None,
    month: Annotated[str | None, Query(description="cost: YYYY-MM (default: now)")] = None,
    cryptoperiod: Annotated[
        list[str] | None, Query(description="cryptoperiod: KEY_TYPE=DAYS (repeatable)")
    ] = None,
    account: Annotated[str | None, Query(description="One account (operator account only).")] = (
        None
    ),
) -> Response:
    """A compliance report: security-hub, cis-rotation, pending-deletion, unused-keys,
    cryptoperiod, who-can-decrypt, inventory, cost, custom-key-stores (which keys live in
    which store) or unavailable-keys (keys of stores that are not connected)."""
    periods: dict[str, int] = {}
    for item in cryptoperiod or []:
        kind, _, days_text = item.partition("=")
        if not days_text.isdigit():
            raise ValidationError(f"cryptoperiod takes KEY_TYPE=DAYS, not '{item}'")
        periods[kind] = int(days_text)
    found = await audit.report(
        caller,
        name,
        days=days,
        key=key,
        month=month,
        cryptoperiods=periods or None,
        account=account,
    )
    if format == "csv":
        return Response(
            found.as_csv(),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )
    return Response(found.as_json(), media_type="application/json")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
