"""AWS KMS alias operations."""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, epoch, paged
from app.usecases.keys import KeyService


async def create_alias(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.create_alias(caller, params["AliasName"], params["TargetKeyId"])
    return {}


async def update_alias(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.update_alias(caller, params["AliasName"], params["TargetKeyId"])
    return {}


async def delete_alias(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.delete_alias(caller, params["AliasName"])
    return {}


async def list_aliases(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    page = await service.keys.list_aliases(
        caller, params.get("KeyId"), params.get("Limit"), params.get("Marker")
    )
    entries = []
    for a in page.items:
        entry: dict[str, Any] = {"AliasName": a.alias_name, "AliasArn": a.alias_arn}
        if a.target_key_id:
            entry["TargetKeyId"] = a.target_key_id
        if a.creation_date:
            entry["CreationDate"] = epoch(a.creation_date)
        if a.last_updated:
            entry["LastUpdatedDate"] = epoch(a.last_updated)
        entries.append(entry)
    return paged(page, "Aliases", entries)


OPERATIONS: dict[str, Operation] = {
    "CreateAlias": create_alias,
    "UpdateAlias": update_alias,
    "DeleteAlias": delete_alias,
    "ListAliases": list_aliases,
}
