"""AWS KMS operations on multi-Region keys: ReplicateKey, UpdatePrimaryRegion.

``OPERATIONS`` is merged into ``app.entrypoints.aws_json.handler.OPERATIONS``.
"""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, key_metadata, tag_pairs
from app.usecases.keys import KeyService
from app.usecases.multi_region import ReplicateKeyRequest


async def replicate_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    request = ReplicateKeyRequest(
        key_id=params["KeyId"],
        replica_region=params["ReplicaRegion"],
        policy=params.get("Policy"),
        bypass_policy_lockout_safety_check=bool(params.get("BypassPolicyLockoutSafetyCheck")),
        description=params.get("Description") or "",
        tags=tag_pairs(params),
    )
    replicated = await service.multi_region.replicate_key(caller, request)
    return {
        "ReplicaKeyMetadata": key_metadata(replicated.replica),
        "ReplicaPolicy": replicated.policy,
        "ReplicaTags": [{"TagKey": k, "TagValue": v} for k, v in replicated.tags.items()],
    }


async def update_primary_region(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.multi_region.update_primary_region(
        caller, params["KeyId"], params["PrimaryRegion"]
    )
    return {}


OPERATIONS: dict[str, Operation] = {
    "ReplicateKey": replicate_key,
    "UpdatePrimaryRegion": update_primary_region,
}
