"""The AWS KMS JSON 1.1 protocol at ``POST /``: a lean ASGI handler.

It authenticates (SigV4), parses and validates the body against AWS's model, calls one
use case of the KeyService, and shapes the answer. It decides nothing itself.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from app.auth.credentials import Caller, IdentityDirectory
from app.auth.sigv4 import IncomingRequest, check_region
from app.aws.errors import aws_error
from app.entrypoints.aws_json.asgi import respond as _respond
from app.entrypoints.aws_json.asymmetric import OPERATIONS as KEY_SPEC_OPERATIONS
from app.entrypoints.aws_json.audit import OPERATIONS as AUDIT_OPERATIONS
from app.entrypoints.aws_json.grants import OPERATIONS as GRANT_OPERATIONS
from app.entrypoints.aws_json.shapes import parse_request
from app.usecases.auditing import Auditor
from app.usecases.keys import CreateKeyRequest, KeyService
from app.usecases.results import KeyDescription, Page
from domain.errors import DomainError, UnknownOperationError

log = logging.getLogger("keyledger.aws")

TARGET_PREFIX = "TrentService."
# Answered with {} before authentication: measures the HTTP stack's ceiling (tools/bench).
NOOP = "Noop"
Operation = Callable[[KeyService, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def key_metadata(key: KeyDescription) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "AWSAccountId": key.account_id,
        "KeyId": key.key_id,
        "Arn": key.arn,
        "CreationDate": _epoch(key.creation_date),
        "Enabled": key.enabled,
        "Description": key.description,
        "KeyUsage": key.key_usage,
        "KeyState": key.key_state,
        "Origin": key.origin,
        "KeyManager": key.key_manager,
        "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec,
        "MultiRegion": key.multi_region,
    }
    algorithm_lists = {
        "EncryptionAlgorithms": key.encryption_algorithms,
        "SigningAlgorithms": key.signing_algorithms,
        "MacAlgorithms": key.mac_algorithms,
        "KeyAgreementAlgorithms": key.key_agreement_algorithms,
        "EncapsulationAlgorithms": key.encapsulation_algorithms,
    }
    metadata.update({name: list(found) for name, found in algorithm_lists.items() if found})
    if key.deletion_date is not None:
        metadata["DeletionDate"] = _epoch(key.deletion_date)
    if key.expiration_model is not None:
        metadata["ExpirationModel"] = key.expiration_model
    if key.valid_to is not None:
        metadata["ValidTo"] = _epoch(key.valid_to)
    if key.current_material_id is not None:
        metadata["CurrentKeyMaterialId"] = key.current_material_id
    return metadata


def _paged(page: Page[Any], name: str, items: list[Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {name: items, "Truncated": page.truncated}
    if page.next_marker:
        answer["NextMarker"] = page.next_marker
    return answer


def _tags(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((t["TagKey"], t["TagValue"]) for t in params.get("Tags") or [])


# --- operations -----------------------------------------------------------------------
async def create_key(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    request = CreateKeyRequest(
        description=params.get("Description") or "",
        key_usage=params.get("KeyUsage"),
        key_spec=params.get("KeySpec"),
        customer_master_key_spec=params.get("CustomerMasterKeySpec"),
        origin=params.get("Origin") or "AWS_KMS",
        policy=params.get("Policy"),
        bypass_policy_lockout_safety_check=bool(params.get("BypassPolicyLockoutSafetyCheck")),
        tags=_tags(params),
        multi_region=bool(params.get("MultiRegion")),
        custom_key_store_id=params.get("CustomKeyStoreId"),
    )
    return {"KeyMetadata": key_metadata(await service.keys.create_key(caller, request))}


async def describe_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return {"KeyMetadata": key_metadata(await service.keys.describe_key(caller, params["KeyId"]))}


async def list_keys(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    page = await service.keys.list_keys(caller, params.get("Limit"), params.get("Marker"))
    return _paged(page, "Keys", [{"KeyId": k.key_id, "KeyArn": k.key_arn} for k in page.items])


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
    return {
        "KeyId": result.key_arn,
        "DeletionDate": _epoch(result.deletion_date),
        "KeyState": result.key_state,
        "PendingWindowInDays": result.pending_window_days,
    }


async def cancel_key_deletion(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return {"KeyId": await service.keys.cancel_key_deletion(caller, params["KeyId"])}


async def encrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    result = await service.crypto.encrypt(
        caller,
        params["KeyId"],
        params["Plaintext"],
        params.get("EncryptionContext"),
        params.get("EncryptionAlgorithm"),
        bool(params.get("DryRun")),
    )
    return {
        "CiphertextBlob": _b64(result.ciphertext),
        "KeyId": result.key_arn,
        "EncryptionAlgorithm": result.algorithm,
    }


async def decrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("CiphertextBlob") is None:
        from domain.errors import ValidationError

        raise ValidationError(
            "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
            "constraint: Member must not be null"
        )
    result = await service.crypto.decrypt(
        caller,
        params["CiphertextBlob"],
        params.get("KeyId"),
        params.get("EncryptionContext"),
        params.get("EncryptionAlgorithm"),
        bool(params.get("DryRun")),
    )
    return {
        "KeyId": result.key_arn,
        "Plaintext": _b64(result.plaintext),
        "EncryptionAlgorithm": result.algorithm,
        "KeyMaterialId": result.material_id,
    }


async def re_encrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("CiphertextBlob") is None:
        from domain.errors import ValidationError

        raise ValidationError(
            "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
            "constraint: Member must not be null"
        )
    result = await service.crypto.re_encrypt(
        caller,
        params["CiphertextBlob"],
        source_key_id=params.get("SourceKeyId"),
        destination_key_id=params["DestinationKeyId"],
        source_context=params.get("SourceEncryptionContext"),
        destination_context=params.get("DestinationEncryptionContext"),
        source_algorithm=params.get("SourceEncryptionAlgorithm"),
        destination_algorithm=params.get("DestinationEncryptionAlgorithm"),
        dry_run=bool(params.get("DryRun")),
    )
    return {
        "CiphertextBlob": _b64(result.ciphertext),
        "SourceKeyId": result.source_key_arn,
        "KeyId": result.key_arn,
        "SourceEncryptionAlgorithm": result.source_algorithm,
        "DestinationEncryptionAlgorithm": result.destination_algorithm,
        "SourceKeyMaterialId": result.source_material_id,
        "DestinationKeyMaterialId": result.destination_material_id,
    }


async def _data_key(
    service: KeyService, caller: Caller, params: dict[str, Any], *, with_plaintext: bool
) -> dict[str, Any]:
    result = await service.crypto.generate_data_key(
        caller,
        params["KeyId"],
        number_of_bytes=params.get("NumberOfBytes"),
        key_spec=params.get("KeySpec"),
        encryption_context=params.get("EncryptionContext"),
        with_plaintext=with_plaintext,
        dry_run=bool(params.get("DryRun")),
    )
    answer: dict[str, Any] = {
        "CiphertextBlob": _b64(result.ciphertext),
        "KeyId": result.key_arn,
        "KeyMaterialId": result.material_id,
    }
    if result.plaintext is not None:
        answer["Plaintext"] = _b64(result.plaintext)
    return answer


async def generate_data_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key(service, caller, params, with_plaintext=True)


async def generate_data_key_without_plaintext(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key(service, caller, params, with_plaintext=False)


async def generate_random(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    if params.get("CustomKeyStoreId"):
        from domain.errors import UnsupportedOperationError

        raise UnsupportedOperationError("Custom key stores are not supported.")
    return {
        "Plaintext": _b64(await service.crypto.generate_random(caller, params.get("NumberOfBytes")))
    }


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
        answer["NextRotationDate"] = _epoch(status.next_rotation_date)
    return answer


async def rotate_key_on_demand(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return {"KeyId": await service.keys.rotate_key_on_demand(caller, params["KeyId"])}


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
            "ValidTo": _epoch(r.valid_to),
        }
        entry = {k: v for k, v in entry.items() if v is not None}
        if r.rotation_type is not None:
            entry["RotationDate"] = _epoch(r.rotation_date)
            entry["RotationType"] = r.rotation_type
        entries.append(entry)
    return _paged(page, "Rotations", entries)


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
            entry["CreationDate"] = _epoch(a.creation_date)
        if a.last_updated:
            entry["LastUpdatedDate"] = _epoch(a.last_updated)
        entries.append(entry)
    return _paged(page, "Aliases", entries)


async def tag_resource(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.keys.tag_resource(caller, params["KeyId"], _tags(params))
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
    return _paged(page, "Tags", tags)


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
    return _paged(page, "PolicyNames", page.items)


OPERATIONS: dict[str, Operation] = {
    "CreateKey": create_key,
    "DescribeKey": describe_key,
    "ListKeys": list_keys,
    "UpdateKeyDescription": update_key_description,
    "EnableKey": enable_key,
    "DisableKey": disable_key,
    "ScheduleKeyDeletion": schedule_key_deletion,
    "CancelKeyDeletion": cancel_key_deletion,
    "Encrypt": encrypt,
    "Decrypt": decrypt,
    "ReEncrypt": re_encrypt,
    "GenerateDataKey": generate_data_key,
    "GenerateDataKeyWithoutPlaintext": generate_data_key_without_plaintext,
    "GenerateRandom": generate_random,
    "EnableKeyRotation": enable_key_rotation,
    "DisableKeyRotation": disable_key_rotation,
    "GetKeyRotationStatus": get_key_rotation_status,
    "RotateKeyOnDemand": rotate_key_on_demand,
    "ListKeyRotations": list_key_rotations,
    "CreateAlias": create_alias,
    "UpdateAlias": update_alias,
    "DeleteAlias": delete_alias,
    "ListAliases": list_aliases,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListResourceTags": list_resource_tags,
    "GetKeyPolicy": get_key_policy,
    "PutKeyPolicy": put_key_policy,
    "ListKeyPolicies": list_key_policies,
    **GRANT_OPERATIONS,
    **KEY_SPEC_OPERATIONS,
    **AUDIT_OPERATIONS,
}


# --- the ASGI handler -------------------------------------------------------------------
class AwsJsonHandler:
    def __init__(
        self,
        service: KeyService,
        identity: IdentityDirectory,
        auditor: Auditor | None,
        regions: Collection[str] | None = None,
    ) -> None:
        """``auditor`` records every call (app.usecases.auditing); None records none."""
        self.service = service
        self.identity = identity
        self.auditor = auditor
        # The Regions served (KEYLEDGER_REGIONS); None serves whatever a caller signs for.
        self.regions = frozenset(regions) if regions is not None else None

    async def answer(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        """Answer the request ``scope`` whose body (within its limit) was read already."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        name = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        if name == NOOP:
            await _respond(send, 200, b"{}", "")
            return
        request_id = str(uuid.uuid4())
        try:
            async with self._audit(name or target, scope, headers, body, request_id) as audit:
                caller = audit.caller = await self._authenticate(scope, headers, body, request_id)
                operation = OPERATIONS.get(name)
                if operation is None:
                    raise UnknownOperationError("")
                params = audit.parameters = parse_request("kms", name, body)
                if params.get("GrantTokens"):  # request context the service's checks read
                    caller = replace(caller, grant_tokens=tuple(params["GrantTokens"]))
                answer = await operation(self.service, caller, params)
            await _respond(send, 200, orjson.dumps(answer), request_id)
        except Exception as error:  # every failure gets AWS's shape, never a bare 500
            await self._fail(send, error, request_id)

    def _audit(
        self,
        name: str,
        scope: dict[str, Any],
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> Any:
        if self.auditor is None:
            return _NotAudited()
        client = scope.get("client") or ("", 0)
        return self.auditor.call(
            name,
            request_id=request_id,
            headers=headers,
            body=body,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            source_ip=client[0],
            user_agent=next((v for k, v in headers if k.lower() == "user-agent"), ""),
        )

    async def _authenticate(
        self, scope: dict[str, Any], headers: list[tuple[str, str]], body: bytes, request_id: str
    ) -> Caller:
        request = IncomingRequest(
            method=scope["method"],
            path=scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0] or "/",
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )
        client = scope.get("client") or ("", 0)
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
        caller = await self.identity.authenticate(
            request, source_ip=client[0], user_agent=user_agent, request_id=request_id
        )
        if self.regions is not None:
            check_region(caller.region, self.regions)
        return caller

    async def _fail(self, send: Any, error: Exception, request_id: str) -> None:
        if isinstance(error, UnknownOperationError):
            code, status, message = "UnknownOperationException", 400, ""
        elif type(error).__name__ == "SerializationError":
            code, status, message = "SerializationException", 400, str(error)
        else:
            code, status, message = aws_error(error)
            if not isinstance(error, DomainError):
                log.error("request %s failed: %s", request_id, type(error).__name__)
        body = orjson.dumps({"__type": code, "message": message})
        await _respond(send, status, body, request_id)


class _NotAudited:
    caller: Caller | None = None
    parameters: Any = None

    async def __aenter__(self) -> _NotAudited:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None
