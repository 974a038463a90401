"""Auditing the REST API: every /v1 call leaves a record, by app.usecases.auditing
(one Auditor path).

A call that is a KMS operation is recorded like its AWS protocol twin (same event name,
request parameters in AWS's shape); the auditors' trail query as CloudTrail's
LookupEvents. Identity administration is recorded as CloudTrail records IAM's calls
(``iam.amazonaws.com``: CreateUser, PutRolePolicy, CreateAccessKey, ...), and KeyLedger's
own endpoints (accounts, service designations, explain, the denial log, keys as of a time,
reports) under ``keyledger.amazonaws.com``, the prefix of KeyLedger's own actions.

``audited(request, route)`` wraps one route's handler (app.entrypoints.rest.app.LedgerRoute). The
caller becomes known inside the handler (its SigV4 dependency); the record reads it from the
request then. Allowed, denied, failed and refused (validation) calls are all recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.model import Shape
from starlette.requests import Request

from app.aws.model import service_model
from domain.audit import CLOUDTRAIL_SOURCE, IAM_SOURCE, KEYLEDGER_SOURCE, KMS_SOURCE
from domain.identity import principal_arn, root_arn

# REST route (endpoint function name) -> the AWS operation it performs.
OPERATIONS = {
    "create_key": "CreateKey",
    "list_keys": "ListKeys",
    "describe_key": "DescribeKey",
    "update_key": "UpdateKeyDescription",
    "enable_key": "EnableKey",
    "disable_key": "DisableKey",
    "schedule_deletion": "ScheduleKeyDeletion",
    "cancel_deletion": "CancelKeyDeletion",
    "list_aliases": "ListAliases",
    "create_alias": "CreateAlias",
    "update_alias": "UpdateAlias",
    "delete_alias": "DeleteAlias",
    "encrypt": "Encrypt",
    "decrypt": "Decrypt",
    "re_encrypt": "ReEncrypt",
    "generate_data_key": "GenerateDataKey",
    "generate_random": "GenerateRandom",
    "untag_key": "UntagResource",
    "untag_key_many": "UntagResource",
    "list_tags": "ListResourceTags",
    "tag_key": "TagResource",
    "get_policy": "GetKeyPolicy",
    "put_policy": "PutKeyPolicy",
    "get_rotation": "GetKeyRotationStatus",
    "enable_rotation": "EnableKeyRotation",
    "disable_rotation": "DisableKeyRotation",
    "rotate_now": "RotateKeyOnDemand",
    "list_rotations": "ListKeyRotations",
    "key_events": "DescribeKey",
    "get_public_key": "GetPublicKey",
    "sign": "Sign",
    "verify": "Verify",
    "generate_mac": "GenerateMac",
    "verify_mac": "VerifyMac",
    "generate_data_key_pair": "GenerateDataKeyPair",
    "derive_shared_secret": "DeriveSharedSecret",
    "encapsulate": "Encapsulate",
    "decapsulate": "Decapsulate",
    "get_parameters_for_import": "GetParametersForImport",
    "import_key_material": "ImportKeyMaterial",
    "delete_imported_key_material": "DeleteImportedKeyMaterial",
    "create_grant": "CreateGrant",
    "list_grants": "ListGrants",
    "list_retirable_grants": "ListRetirableGrants",
    "retire_grant": "RetireGrant",
    "revoke_grant": "RevokeGrant",
    "key_last_usage": "GetKeyLastUsage",
    "list_custom_key_stores": "DescribeCustomKeyStores",
    "describe_custom_key_store": "DescribeCustomKeyStores",
    "create_custom_key_store": "CreateCustomKeyStore",
    "update_custom_key_store": "UpdateCustomKeyStore",
    "connect_custom_key_store": "ConnectCustomKeyStore",
    "disconnect_custom_key_store": "DisconnectCustomKeyStore",
    "delete_custom_key_store": "DeleteCustomKeyStore",
}
# The auditors' reads are CloudTrail's LookupEvents.
CLOUDTRAIL_OPERATIONS = {"audit_events": "LookupEvents"}


@dataclass(frozen=True)
class AdminCall:
    """The record of a REST call that is no KMS operation: its source and name, its request
    parameters (IAM's members for IAM calls, lowerCamelCase for KeyLedger's own) and what it
    acts on."""

    event_source: str
    event_name: str
    parameters: dict[str, Any]
    resources: list[dict[str, str]] = field(default_factory=list)


Values = dict[str, Any]  # a REST call's path, query and body values
# (values, partition, the owner of an access key id) -> the record's source, name, ...
Describer = Callable[[Values, str, Callable[[str], str]], AdminCall]


def _text(values: Values, name: str) -> str:
    value = values.get(name)
    return value if isinstance(value, str) else ""


def _noun(arn: str) -> str:
    return "Role" if ":role/" in arn else "User"


def _principal_resource(arn: str, kind: str = "") -> list[dict[str, str]]:
    parts = arn.split(":")
    if not arn.startswith("arn:") or len(parts) < 6 or not parts[4]:
        return []
    return [{"arn": arn, "account_id": parts[4], "type": kind or f"AWS::IAM::{_noun(arn)}"}]


def _name_member(arn: str) -> dict[str, str]:
    """IAM's name member for the principal ``arn`` (``UserName`` or ``RoleName``)."""
    return {f"{_noun(arn)}Name": arn.rsplit("/", 1)[-1]}


def _create_account(values: Values, partition: str, _owner: Callable[[str], str]) -> AdminCall:
    account = _text(values, "account_id")
    resources = (
        [
            {
                "arn": root_arn(partition, account),
                "account_id": account,
                "type": "AWS::Organizations::Account",
            }
        ]
        if account
        else []
    )
    parameters = {"accountId": values.get("account_id"), "accountName": values.get("name")}
    return AdminCall(KEYLEDGER_SOURCE, "CreateAccount", parameters, resources)


def _create_principal(values: Values, partition: str, _owner: Callable[[str], str]) -> AdminCall:
    kind = values.get("type") or "user"
    noun = "Role" if kind == "role" else "User"
    account, name = _text(values, "account_id"), _text(values, "name")
    arn = principal_arn(partition, account, str(kind), name) if account and name else ""
    return AdminCall(
        IAM_SOURCE, f"Create{noun}", {f"{noun}Name": values.get("name")}, _principal_resource(arn)
    )


def _principal_policy(verb: str) -> Describer:
    def describe(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
        arn = _text(values, "arn")  # the policy text is the event's to log, when it is put
        parameters = {**_name_member(arn), "PolicyName": values.get("policy_name")}
        return AdminCall(
            IAM_SOURCE, f"{verb}{_noun(arn)}Policy", parameters, _principal_resource(arn)
        )

    return describe


def _put_trust_policy(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
    arn = _text(values, "arn")  # the policy text is the event's to log
    return AdminCall(
        IAM_SOURCE, "UpdateAssumeRolePolicy", _name_member(arn), _principal_resource(arn)
    )


def _get_principal(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
    arn = _text(values, "arn")
    return AdminCall(IAM_SOURCE, f"Get{_noun(arn)}", _name_member(arn), _principal_resource(arn))


def _designate_service(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
    arn = _text(values, "arn")
    parameters = {"principalArn": arn, "serviceName": values.get("service_name")}
    return AdminCall(
        KEYLEDGER_SOURCE, "DesignateServicePrincipal", parameters, _principal_resource(arn)
    )


def _create_access_key(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
    arn = _text(values, "arn")
    return AdminCall(
        IAM_SOURCE,
        "CreateAccessKey",
        {"UserName": arn.rsplit("/", 1)[-1]},
        _principal_resource(arn, "AWS::IAM::AccessKey"),
    )


def _deactivate_access_key(
    values: Values, _partition: str, owner: Callable[[str], str]
) -> AdminCall:
    access_key_id = _text(values, "access_key_id")
    arn = owner(access_key_id) if access_key_id else ""
    parameters = {"AccessKeyId": access_key_id, "Status": "Inactive"}
    if arn:
        parameters["UserName"] = arn.rsplit("/", 1)[-1]
    return AdminCall(
        IAM_SOURCE, "UpdateAccessKey", parameters, _principal_resource(arn, "AWS::IAM::AccessKey")
    )


def _keyledger(event_name: str, members: dict[str, str], resource: str = "") -> Describer:
    """A KeyLedger endpoint: ``members`` maps AWS-style member names to REST value names;
    ``resource`` names the value (a principal or key ARN) the record's resource is."""

    def describe(values: Values, _partition: str, _owner: Callable[[str], str]) -> AdminCall:
        parameters = {member: values.get(name) for member, name in members.items()}
        arn = _text(values, resource) if resource else ""
        resources = _principal_resource(arn) if ":iam::" in arn else []
        if ":kms:" in arn and len(arn.split(":")) > 5:
            resources = [{"arn": arn, "account_id": arn.split(":")[4]}]
        return AdminCall(KEYLEDGER_SOURCE, event_name, parameters, resources)

    return describe


# REST route -> how its record reads (identity administration, KeyLedger's own endpoints).
ADMIN_CALLS: dict[str, Describer] = {
    "create_account": _create_account,
    "create_principal": _create_principal,
    "put_principal_policy": _principal_policy("Put"),
    "delete_principal_policy": _principal_policy("Delete"),
    "designate_service": _designate_service,
    "put_trust_policy": _put_trust_policy,
    "create_access_key": _create_access_key,
    "deactivate_access_key": _deactivate_access_key,
    "get_principal": _get_principal,
    "explain": _keyledger(
        "ExplainAccess",
        {
            "principalArn": "principal_arn",
            "action": "action",
            "keyId": "key_id",
            "encryptionContext": "encryption_context",
            "encryptionAlgorithm": "encryption_algorithm",
            "sourceIp": "source_ip",
            "viaService": "via_service",
            "region": "region",
            "grantOperations": "grant_operations",
            "conditionKeys": "condition_keys",
            "at": "at",
        },
        "principal_arn",
    ),
    "list_denials": _keyledger(
        "ListAccessDenials",
        {"principalArn": "principal_arn", "resourceArn": "resource_arn", "limit": "limit"},
    ),
    "key_as_of": _keyledger("GetKeyAsOf", {"keyId": "key_id", "at": "at"}, "key_id"),
    "compliance_report": _keyledger(
        "GetComplianceReport",
        {
            "reportName": "name",
            "format": "format",
            "days": "days",
            "key": "key",
            "month": "month",
            "cryptoperiod": "cryptoperiod",
            "account": "account",
        },
    ),
    # The verifiable ledger's evidence (app/entrypoints/rest/ledger.py).
    "get_checkpoint": _keyledger("GetLedgerCheckpoint", {"size": "size"}),
    "get_checkpoint_note": _keyledger("GetLedgerCheckpoint", {"size": "size"}),
    "list_checkpoints": _keyledger("ListLedgerCheckpoints", {"after": "after", "limit": "limit"}),
    "get_public_keys": _keyledger("GetLedgerPublicKey", {}),
    "prove_inclusion": _keyledger(
        "GetLedgerInclusionProof", {"position": "position", "eventId": "event_id", "size": "size"}
    ),
    "prove_consistency": _keyledger("GetLedgerConsistencyProof", {"from": "from", "to": "to"}),
    # The root key's custody (app/entrypoints/rest/sys.py): a seal and a rotation are signed
    # (the rotation's own RotateRootKey service events say when it started and completed).
    "seal": _keyledger("Seal", {}),
    "rotate_root_key": _keyledger(
        "RotateRootKey",
        {"batchSize": "batch_size", "newShamirSet": "new_set", "toRootKeyId": "to"},
    ),
}
# Routes no caller can be named for, so no record can be attributed: the unseal (the share
# is its credential, and while sealed no signature can be checked) and the seal status.
# The service logs every unseal step instead (never the share); docs/key-custody.md.
UNATTRIBUTED_CALLS = frozenset({"unseal", "seal_status"})


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
        values = {
            **values,
            "Tags": [{"TagKey": k, "TagValue": v} for k, v in values["tags"].items()],
        }
        values.pop("tags")
    if "tag_key" in values and operation == "UntagResource":
        tag_keys = values.pop("tag_key")
        values["TagKeys"] = tag_keys if isinstance(tag_keys, list) else [tag_keys]
    shaped: dict[str, Any] = _aws_shaped(shape, values)
    return shaped


@contextlib.asynccontextmanager
async def audited(
    request: Request,
    endpoint_name: str,
    authenticate: Callable[[Request], Awaitable[Any]] | None = None,
) -> AsyncIterator[None]:
    """Record the REST call ``endpoint_name`` handles. ``authenticate`` (the routes' SigV4
    dependency) is tried first, so that a call refused before its dependencies run (a body
    that is not JSON) is recorded under the request id its answer carries."""
    runtime = getattr(request.app.state, "runtime", None)
    auditor = getattr(runtime, "auditor", None)
    operation = OPERATIONS.get(endpoint_name)
    source = KMS_SOURCE
    if operation is None and endpoint_name in CLOUDTRAIL_OPERATIONS:
        operation, source = CLOUDTRAIL_OPERATIONS[endpoint_name], CLOUDTRAIL_SOURCE
    admin = ADMIN_CALLS.get(endpoint_name)
    if auditor is None or (operation is None and admin is None):
        yield
        return
    values = await _values(request)
    described = None
    if admin is not None:
        identity = runtime.identity  # type: ignore[union-attr]
        if isinstance(values.get("access_key_id"), str):  # its owner, read off the loop
            await identity.credential_async(values["access_key_id"])

        def owner(access_key_id: str) -> str:
            credential = identity.cached_credential(access_key_id)
            return credential.principal_arn if credential is not None else ""

        described = admin(values, identity.partition, owner)
        operation, source = described.event_name, described.event_source
    assert operation is not None
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    call = auditor.call(
        operation,
        event_source=source,
        request_id="",
        headers=headers,
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        source_ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    call.resolve_caller = lambda: getattr(request.state, "caller", None)
    if authenticate is not None:
        with contextlib.suppress(Exception):  # the route's own dependency answers failures
            await authenticate(request)
    if described is not None:
        call.parameters = described.parameters
        call.resources = described.resources
    elif source == KMS_SOURCE:
        call.parameters = rest_parameters(operation, values)
    async with call:
        caller = call.caller  # a KMS call counts against its quota as its AWS twin does
        if source == KMS_SOURCE and caller is not None and runtime is not None:
            runtime.service.quotas.admit(caller, operation, call.parameters or {})
        yield


async def _values(request: Request) -> Values:
    """A REST call's path, query and body values (a repeated query value as a list)."""
    values: Values = {}
    for name in request.query_params:
        given = request.query_params.getlist(name)
        values[name] = given[0] if len(given) == 1 else given
    values.update(request.path_params)
    with contextlib.suppress(Exception):  # an unreadable body is the route's to refuse
        body = await request.json() if await request.body() else {}
        if isinstance(body, dict):
            values.update(body)
    return values
