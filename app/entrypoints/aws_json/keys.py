"""AWS KMS operations on keys: life cycle, rotation, tags and key policies."""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, epoch, key_metadata, paged, tag_pairs
from app.usecases.keys import CreateKeyRequest, KeyService


async def create_key(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    request = CreateKeyRequest(
        description=params.get("Description") or "",
        key_usage=params.get("KeyUsage"),
        key_spec=params.get("KeySpec"),
        customer_master_key_spec=params.get("CustomerMasterKeySpec"),
        origin=params.get("Origin") or "AWS_KMS",
        policy=params.get("Policy"),
        bypass_policy_lockout_safety_check=bool(params.get("BypassPolicyLockoutSafetyCheck")),
        tags=tag_pairs(params),
        multi_region=bool(params.get("MultiRegion")),
        custom_key_store_id=params.get("CustomKeyStoreId"),
        xks_key_id=params.get("XksKeyId"),
    )
    return {"KeyMetadata": key_metadata(await service.keys.create_key(caller, request))}


async def describe_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return {"KeyMetadata": key_metadata(await service.keys.describe_key(caller, params["KeyId"]))}


async def list_keys(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    page = await service.keys.list_keys(caller, params.get("Limit"), params.get("Marker"))
    return paged(page, "Keys", [{"KeyId": k.key_id, "KeyArn": k.key_arn} for k in page.items])


async def update_key_description(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.update_key_description(caller, params["KeyId"], params["Description"])
    return {}


async def enable_key(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    await service.keys.enable_key(caller, params["KeyId"])
    return {}


async def disable_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.disable_key(caller, params["KeyId"])
    return {}


async def schedule_key_deletion(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.keys.schedule_key_deletion(
        caller, params["KeyId"], params.get("PendingWindowInDays")
    )
    answer: dict[str, Any] = {"KeyId": result.key_arn}
    if result.deletion_date is not None:  # none while a primary waits for its replicas
        answer["DeletionDate"] = epoch(result.deletion_date)
    answer["KeyState"] = result.key_state
    answer["PendingWindowInDays"] = result.pending_window_days
    return answer


async def cancel_key_deletion(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return {"KeyId": await service.keys.cancel_key_deletion(caller, params["KeyId"])}


async def enable_key_rotation(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.enable_key_rotation(
        caller, params["KeyId"], params.get("RotationPeriodInDays")
    )
    return {}


async def disable_key_rotation(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.disable_key_rotation(caller, params["KeyId"])
    return {}


async def get_key_rotation_status(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    status = await service.keys.get_key_rotation_status(caller, params["KeyId"])
    answer: dict[str, Any] = {"KeyId": status.key_id, "KeyRotationEnabled": status.rotation_enabled}
    if status.rotation_period_days is not None:
        answer["RotationPeriodInDays"] = status.rotation_period_days
    if status.next_rotation_date is not None:
        answer["NextRotationDate"] = epoch(status.next_rotation_date)
    return answer


async def rotate_key_on_demand(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    rotated = await service.keys.rotate_key_on_demand(caller, params["KeyId"])
    return {"KeyId": rotated.key_arn}


async def list_key_rotations(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    page = await service.keys.list_key_rotations(
        caller,
        params["KeyId"],
        params.get("IncludeKeyMaterial"),
        params.get("Limit"),
        params.get("Marker"),
    )
    entries = []
    for r in page.items:
        entry: dict[str, Any] = {
            "KeyId": r.key_id,
            "KeyMaterialId": r.material_id,
            "KeyMaterialDescription": r.description or None,
            "ImportState": r.import_state,
            "KeyMaterialState": r.material_state,
            "ExpirationModel": r.expiration_model,
            "ValidTo": epoch(r.valid_to),
        }
        entry = {k: v for k, v in entry.items() if v is not None}
        if r.rotation_type is not None:
            entry["RotationDate"] = epoch(r.rotation_date)
            entry["RotationType"] = r.rotation_type
        entries.append(entry)
    return paged(page, "Rotations", entries)


async def tag_resource(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.tag_resource(caller, params["KeyId"], tag_pairs(params))
    return {}


async def untag_resource(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.untag_resource(caller, params["KeyId"], params["TagKeys"])
    return {}


async def list_resource_tags(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    page = await service.keys.list_resource_tags(
        caller, params["KeyId"], params.get("Limit"), params.get("Marker")
    )
    tags = [{"TagKey": k, "TagValue": v} for k, v in page.items]
    return paged(page, "Tags", tags)


async def get_key_policy(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    policy = await service.keys.get_key_policy(caller, params["KeyId"], params.get("PolicyName"))
    return {"Policy": policy, "PolicyName": "default"}


async def put_key_policy(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.put_key_policy(
        caller,
        params["KeyId"],
        params.get("PolicyName"),
        params["Policy"],
        bypass_lockout=bool(params.get("BypassPolicyLockoutSafetyCheck")),
    )
    return {}


async def list_key_policies(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    page = await service.keys.list_key_policies(
        caller, params["KeyId"], params.get("Limit"), params.get("Marker")
    )
    return paged(page, "PolicyNames", page.items)


OPERATIONS: dict[str, Operation] = {
    "CreateKey": create_key,
    "DescribeKey": describe_key,
    "ListKeys": list_keys,
    "UpdateKeyDescription": update_key_description,
    "EnableKey": enable_key,
    "DisableKey": disable_key,
    "ScheduleKeyDeletion": schedule_key_deletion,
    "CancelKeyDeletion": cancel_key_deletion,
    "EnableKeyRotation": enable_key_rotation,
    "DisableKeyRotation": disable_key_rotation,
    "GetKeyRotationStatus": get_key_rotation_status,
    "RotateKeyOnDemand": rotate_key_on_demand,
    "ListKeyRotations": list_key_rotations,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListResourceTags": list_resource_tags,
    "GetKeyPolicy": get_key_policy,
    "PutKeyPolicy": put_key_policy,
    "ListKeyPolicies": list_key_policies,
}
