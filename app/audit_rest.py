"""Auditing the REST API: each /v1 call that is a KMS operation is recorded like its AWS
protocol twin (same event name, request parameters in AWS's shape), by app.audit.

``audited(request, route)`` wraps one route's handler (app.rest.LedgerRoute). The caller
becomes known inside the handler (its SigV4 dependency); the record reads it from the
request then. Routes that are no KMS operation (identity administration, explain) are
not wrapped here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from botocore.model import Shape
from starlette.requests import Request

from app.aws_shapes import service_model
from domain.audit import CLOUDTRAIL_SOURCE, KMS_SOURCE

# REST route (endpoint function name) -> the AWS operation it performs.
OPERATIONS = {
    "create_key": "CreateKey", "list_keys": "ListKeys", "describe_key": "DescribeKey",
    "update_key": "UpdateKeyDescription", "enable_key": "EnableKey", "disable_key": "DisableKey",
    "schedule_deletion": "ScheduleKeyDeletion", "cancel_deletion": "CancelKeyDeletion",
    "list_aliases": "ListAliases", "create_alias": "CreateAlias", "update_alias": "UpdateAlias",
    "delete_alias": "DeleteAlias", "encrypt": "Encrypt", "decrypt": "Decrypt",
    "re_encrypt": "ReEncrypt", "generate_data_key": "GenerateDataKey",
    "generate_random": "GenerateRandom", "untag_key": "UntagResource",
    "untag_key_many": "UntagResource", "list_tags": "ListResourceTags", "tag_key": "TagResource",
    "get_policy": "GetKeyPolicy", "put_policy": "PutKeyPolicy",
    "get_rotation": "GetKeyRotationStatus", "enable_rotation": "EnableKeyRotation",
    "disable_rotation": "DisableKeyRotation", "rotate_now": "RotateKeyOnDemand",
    "list_rotations": "ListKeyRotations", "key_events": "DescribeKey",
    "get_public_key": "GetPublicKey", "sign": "Sign", "verify": "Verify",
    "generate_mac": "GenerateMac", "verify_mac": "VerifyMac",
    "generate_data_key_pair": "GenerateDataKeyPair", "derive_shared_secret": "DeriveSharedSecret",
    "encapsulate": "Encapsulate", "decapsulate": "Decapsulate",
    "get_parameters_for_import": "GetParametersForImport",
    "import_key_material": "ImportKeyMaterial",
    "delete_imported_key_material": "DeleteImportedKeyMaterial",
    "create_grant": "CreateGrant", "list_grants": "ListGrants",
    "list_retirable_grants": "ListRetirableGrants", "retire_grant": "RetireGrant",
    "revoke_grant": "RevokeGrant", "key_last_usage": "GetKeyLastUsage",
}  # fmt: skip
# The auditors' reads are CloudTrail's LookupEvents.
CLOUDTRAIL_OPERATIONS = {"audit_events": "LookupEvents"}


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _aws_shaped(shape: Shape, value: Any) -> Any:
    """REST values (snake_case members) in the AWS operation's shape (CamelCase members);
    map keys (encryption contexts, tags) are kept as they are."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members  # type: ignore[attr-defined]
        shaped = {}
        for name, item in value.items():
            member_name = name if name in members else _camel(str(name))
            if member_name in members:
                shaped[member_name] = _aws_shaped(members[member_name], item)
        return shaped
    if shape.type_name == "list" and isinstance(value, list):
        return [_aws_shaped(shape.member, item) for item in value]  # type: ignore[attr-defined]
    return value


def rest_parameters(operation: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """A REST call's path, query and body values as the AWS operation's request members."""
    model = service_model("kms")
    if operation not in model.operation_names:
        return None
    shape = model.operation_model(operation).input_shape
    if shape is None:
        return {}
    if (
        "tags" in values
        and isinstance(values["tags"], dict)
        and operation in ("CreateKey", "TagResource")
    ):  # REST tags are a map; AWS's a list of pairs
        values = {**values, "Tags": [{"TagKey": k, "TagValue": v}
                                     for k, v in values["tags"].items()]}  # fmt: skip
        values.pop("tags")
    if "tag_key" in values and operation == "UntagResource":
        tag_keys = values.pop("tag_key")
        values["TagKeys"] = tag_keys if isinstance(tag_keys, list) else [tag_keys]
    shaped: dict[str, Any] = _aws_shaped(shape, values)
    return shaped


@contextlib.asynccontextmanager
async def audited(request: Request, endpoint_name: str) -> AsyncIterator[None]:
    """Record the REST call ``endpoint_name`` handles (when it is a KMS or audit operation)."""
    runtime = getattr(request.app.state, "runtime", None)
    auditor = getattr(runtime, "auditor", None)
    operation = OPERATIONS.get(endpoint_name)
    source = KMS_SOURCE
    if operation is None and endpoint_name in CLOUDTRAIL_OPERATIONS:
        operation, source = CLOUDTRAIL_OPERATIONS[endpoint_name], CLOUDTRAIL_SOURCE
    if auditor is None or operation is None:
        yield
        return
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    call = auditor.call(
        operation, event_source=source, request_id="", headers=headers,
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        source_ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )  # fmt: skip
    call.resolve_caller = lambda: getattr(request.state, "caller", None)
    values: dict[str, Any] = {**request.query_params, **request.path_params}
    if source == KMS_SOURCE:
        with contextlib.suppress(Exception):  # an unreadable body is the route's to refuse
            body = await request.json() if await request.body() else {}
            if isinstance(body, dict):
                values.update(body)
        call.parameters = rest_parameters(operation, values)
    async with call:
        yield
