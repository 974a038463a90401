"""AWS JSON 1.1 grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
RevokeGrant. They read the (already validated) members, call one use case, shape the answer.

``OPERATIONS`` is merged into ``app.entrypoints.aws_json.handler.OPERATIONS``.
"""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation
from app.usecases.grants import GrantEntry, constraints_from_request
from app.usecases.keys import KeyService
from app.usecases.results import Page
from domain.errors import UnsupportedOperationError, ValidationError


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


def _no_service_principals(params: dict[str, Any], *members: str) -> None:
    for member in members:
        if params.get(member):
            raise UnsupportedOperationError(
                f"{member} is not supported by this KeyLedger version; name an IAM principal."
            )


async def create_grant(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    _no_service_principals(params, "GranteeServicePrincipal", "RetiringServicePrincipal")
    if not params.get("GranteePrincipal"):
        raise ValidationError("GranteePrincipal is required.")
    created = await service.grants.create_grant(
        caller,
        params["KeyId"],
        grantee_principal=params["GranteePrincipal"],
        operations=params["Operations"],
        retiring_principal=params.get("RetiringPrincipal"),
        constraints=constraints_from_request(params.get("Constraints")),
        name=params.get("Name"),
        dry_run=bool(params.get("DryRun")),
    )
    return {"GrantToken": created.grant_token, "GrantId": created.grant_id}


async def list_grants(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    _no_service_principals(params, "GranteeServicePrincipal")
    page = await service.grants.list_grants(
        caller,
        params["KeyId"],
        grant_id=params.get("GrantId"),
        grantee_principal=params.get("GranteePrincipal"),
        limit=params.get("Limit"),
        marker=params.get("Marker"),
    )
    return _grants(page)


async def list_retirable_grants(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    _no_service_principals(params, "RetiringServicePrincipal")
    page = await service.grants.list_retirable_grants(
        caller, params.get("RetiringPrincipal"), params.get("Limit"), params.get("Marker")
    )
    return _grants(page)


async def retire_grant(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.grants.retire_grant(
        caller,
        grant_token=params.get("GrantToken"),
        key_id=params.get("KeyId"),
        grant_id=params.get("GrantId"),
        dry_run=bool(params.get("DryRun")),
    )
    return {}


async def revoke_grant(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.grants.revoke_grant(
        caller, params["KeyId"], params["GrantId"], bool(params.get("DryRun"))
    )
    return {}


OPERATIONS: dict[str, Operation] = {
    "CreateGrant": create_grant,
    "ListGrants": list_grants,
    "ListRetirableGrants": list_retirable_grants,
    "RetireGrant": retire_grant,
    "RevokeGrant": revoke_grant,
}
