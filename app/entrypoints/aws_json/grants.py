"""AWS JSON 1.1 grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
RevokeGrant. They read the (already validated) members, call one use case, shape the answer.

``OPERATIONS`` is merged into ``app.entrypoints.aws_json.handler.OPERATIONS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.auth.credentials import Caller
from app.usecases.grants import GrantEntry, constraints_from_request
from app.usecases.keys import KeyService
from app.usecases.results import Page
from domain.errors import UnsupportedOperationError, ValidationError

Operation = Callable[[KeyService, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _grant_entry(grant: GrantEntry) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "KeyId": grant.key_arn,
        "GrantId": grant.grant_id,
        "GranteePrincipal": grant.grantee_principal,
        "IssuingAccount": grant.issuing_account,
        "Operations": list(grant.operations),
    }
    if grant.name:
        entry["Name"] = grant.name
    if grant.creation_date is not None:
        entry["CreationDate"] = grant.creation_date.timestamp()
    if grant.retiring_principal:
        entry["RetiringPrincipal"] = grant.retiring_principal
    if grant.constraints:
        entry["Constraints"] = grant.constraints
    return entry


def _grants(page: Page[GrantEntry]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "Grants": [_grant_entry(g) for g in page.items],
        "Truncated": page.truncated,
    }
    if page.next_marker:
        answer["NextMarker"] = page.next_marker
    return answer


def _no_service_principals(p: dict[str, Any], *members: str) -> None:
    for member in members:
        if p.get(member):
            raise UnsupportedOperationError(
                f"{member} is not supported by this KeyLedger version; name an IAM principal."
            )


async def create_grant(s: KeyService, c: Caller, p: dict[str, Any]) -> dict[str, Any]:
    _no_service_principals(p, "GranteeServicePrincipal", "RetiringServicePrincipal")
    if not p.get("GranteePrincipal"):
        raise ValidationError("GranteePrincipal is required.")
    created = await s.create_grant(
        c, p["KeyId"], grantee_principal=p["GranteePrincipal"], operations=p["Operations"],
        retiring_principal=p.get("RetiringPrincipal"),
        constraints=constraints_from_request(p.get("Constraints")), name=p.get("Name"),
        dry_run=bool(p.get("DryRun")),
    )  # fmt: skip
    return {"GrantToken": created.grant_token, "GrantId": created.grant_id}


async def list_grants(s: KeyService, c: Caller, p: dict[str, Any]) -> dict[str, Any]:
    _no_service_principals(p, "GranteeServicePrincipal")
    page = await s.list_grants(
        c, p["KeyId"], grant_id=p.get("GrantId"), grantee_principal=p.get("GranteePrincipal"),
        limit=p.get("Limit"), marker=p.get("Marker"),
    )  # fmt: skip
    return _grants(page)


async def list_retirable_grants(s: KeyService, c: Caller, p: dict[str, Any]) -> dict[str, Any]:
    _no_service_principals(p, "RetiringServicePrincipal")
    page = await s.list_retirable_grants(
        c, p.get("RetiringPrincipal"), p.get("Limit"), p.get("Marker")
    )
    return _grants(page)


async def retire_grant(s: KeyService, c: Caller, p: dict[str, Any]) -> dict[str, Any]:
    await s.retire_grant(
        c, grant_token=p.get("GrantToken"), key_id=p.get("KeyId"), grant_id=p.get("GrantId"),
        dry_run=bool(p.get("DryRun")),
    )  # fmt: skip
    return {}


async def revoke_grant(s: KeyService, c: Caller, p: dict[str, Any]) -> dict[str, Any]:
    await s.revoke_grant(c, p["KeyId"], p["GrantId"], bool(p.get("DryRun")))
    return {}


OPERATIONS: dict[str, Operation] = {
    "CreateGrant": create_grant,
    "ListGrants": list_grants,
    "ListRetirableGrants": list_retirable_grants,
    "RetireGrant": retire_grant,
    "RevokeGrant": revoke_grant,
}
