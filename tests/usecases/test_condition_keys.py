"""Every AWS KMS condition key a request carries reaches the decision ("AWS KMS condition
keys": kms:DataKeyPairSpec, kms:ReEncryptOnSameKey, kms:EncryptionAlgorithm on ReEncrypt to
an RSA key, kms:WrappingAlgorithm, kms:WrappingKeySpec, kms:ExpirationModel, kms:ValidTo,
kms:ReplicaRegion, kms:PrimaryRegion, kms:MultiRegion, kms:MultiRegionKeyType,
kms:GrantIsForAWSResource on ListGrants and RevokeGrant, kms:RotationPeriodInDays when the
request leaves the period out): a Deny naming the request's value holds, and an Allow naming
another value refuses the call. Without the key in the request context, the Deny never
applied (fail open) and the Allow refused every call."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases.keys import CreateKeyRequest
from app.usecases.multi_region import ReplicateKeyRequest
from domain.errors import AccessDeniedError
from tests.access.policy_builders import aws, document, stmt
from tests.usecases.conftest import ACCOUNT_ID, REGION, call, caller_for

ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
SECOND_REGION, THIRD_REGION = "eu-west-1", "ap-southeast-2"
VIA_EC2 = f"ec2.{REGION}.amazonaws.com"


@pytest.fixture
def app(runtime: InMemoryRuntime) -> Caller:
    """A principal the key policies name; its identity policy allows CreateKey only (which
    ReplicateKey needs in the replica Region)."""
    may_create = document(stmt(action="kms:CreateKey"))
    arn = runtime.identity.create_principal(ACCOUNT_ID, "app", policies={"create": may_create})
    return caller_for(arn)


def _new_key(runtime: InMemoryRuntime, admin: Caller, policy: str, **members: Any) -> str:
    request = CreateKeyRequest(policy=policy, **members)
    return call(runtime.service.keys.create_key(admin, request)).key_id


def _replicate(runtime: InMemoryRuntime, admin: Caller, key: str, region: str, policy: str) -> None:
    request = ReplicateKeyRequest(key_id=key, replica_region=region, policy=policy)
    call(runtime.service.multi_region.replicate_key(admin, request))


def _in_region(caller: Caller, region: str) -> Caller:
    return replace(caller, region=region)


# ==== the operations, each called with the value its condition key takes ====================
Made = dict[str, Any]


def _symmetric(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    return {"key": _new_key(runtime, admin, policy)}


def _data_key_pair(runtime: InMemoryRuntime, app: Caller, made: Made, spec: str) -> None:
    pair = runtime.service.asymmetric.generate_data_key_pair
    call(pair(app, made["key"], spec, None))


def _re_encryption(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    anyone_may = document(stmt(principal=aws(ADMIN)), stmt(principal=aws("*"), action="kms:*"))
    key = _new_key(runtime, admin, policy)
    blob = call(runtime.service.crypto.encrypt(admin, key, b"m", None)).ciphertext
    return {"key": key, "blob": blob, "other": _new_key(runtime, admin, anyone_may)}


def _re_encrypt(runtime: InMemoryRuntime, app: Caller, made: Made, same: str) -> None:
    destination = made["key"] if same == "true" else made["other"]
    re_encrypt = runtime.service.crypto.re_encrypt
    call(
        re_encrypt(
            app,
            made["blob"],
            source_key_id=None,
            destination_key_id=destination,
            source_context=None,
            destination_context=None,
        )
    )


def _rsa_destination(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    anyone_may = document(stmt(principal=aws(ADMIN)), stmt(principal=aws("*"), action="kms:*"))
    source = _new_key(runtime, admin, anyone_may)
    blob = call(runtime.service.crypto.encrypt(admin, source, b"m", None)).ciphertext
    rsa_key = _new_key(runtime, admin, policy, key_spec="RSA_2048", key_usage="ENCRYPT_DECRYPT")
    return {"key": rsa_key, "blob": blob}


def _re_encrypt_to_rsa(runtime: InMemoryRuntime, app: Caller, made: Made, algorithm: str) -> None:
    re_encrypt = runtime.service.crypto.re_encrypt
    call(
        re_encrypt(
            app,
            made["blob"],
            source_key_id=None,
            destination_key_id=made["key"],
            source_context=None,
            destination_context=None,
            destination_algorithm=algorithm,
        )
    )


def _external(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    return {"key": _new_key(runtime, admin, policy, origin="EXTERNAL")}


def _parameters_with(algorithm: str, spec: str) -> Callable[..., None]:
    def run(runtime: InMemoryRuntime, app: Caller, made: Made, value: str) -> None:
        chosen = (value, spec) if algorithm == "" else (algorithm, value)
        call(runtime.service.imported.get_parameters_for_import(app, made["key"], *chosen))

    return run


def _import(runtime: InMemoryRuntime, app: Caller, made: Made, **members: Any) -> None:
    imported = runtime.service.imported
    admin = caller_for(ADMIN)
    parameters = call(
        imported.get_parameters_for_import(admin, made["key"], "RSAES_OAEP_SHA_256", "RSA_2048")
    )
    public_key = serialization.load_der_public_key(parameters.public_key)
    assert isinstance(public_key, rsa.RSAPublicKey)
    sha256 = hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(sha256), algorithm=sha256, label=None)
    wrapped = public_key.encrypt(made.setdefault("material", os.urandom(32)), oaep)
    call(
        imported.import_key_material(app, made["key"], parameters.import_token, wrapped, **members)
    )


def _import_with_model(runtime: InMemoryRuntime, app: Caller, made: Made, model: str) -> None:
    if model == "KEY_MATERIAL_EXPIRES":  # left out: AWS's default is what the policy sees
        in_a_year = runtime.clock.now() + timedelta(days=365)
        _import(runtime, app, made, valid_to=in_a_year, expiration_model=None)
    else:
        _import(runtime, app, made, valid_to=None, expiration_model=model)


def _import_valid_for(runtime: InMemoryRuntime, app: Caller, made: Made, days: str) -> None:
    valid_to = runtime.clock.now().replace(microsecond=0) + timedelta(days=int(days))
    _import(runtime, app, made, valid_to=valid_to, expiration_model="KEY_MATERIAL_EXPIRES")


def _valid_to_limit(runtime: InMemoryRuntime) -> str:
    """kms:ValidTo is Unix time: the limit the ValidTo case's policy names (30 days on)."""
    return str((runtime.clock.now() + timedelta(days=30)).timestamp())


def _rotating_every_90_days(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    key = _new_key(runtime, admin, policy)
    call(runtime.service.keys.enable_key_rotation(admin, key, 90))
    return {"key": key}


def _enable_rotation(runtime: InMemoryRuntime, app: Caller, made: Made, days: str) -> None:
    period = None if days == "left out" else int(days)  # left out: the key keeps its 90
    call(runtime.service.keys.enable_key_rotation(app, made["key"], period))


def _primary(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    return {"key": _new_key(runtime, admin, policy, multi_region=True)}


def _replicate_to(runtime: InMemoryRuntime, app: Caller, made: Made, region: str) -> None:
    request = ReplicateKeyRequest(key_id=made["key"], replica_region=region)  # default policy
    call(runtime.service.multi_region.replicate_key(app, request))


def _set_of_three(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    key = _new_key(runtime, admin, policy, multi_region=True)
    for region in (SECOND_REGION, THIRD_REGION):
        _replicate(runtime, admin, key, region, policy)
    return {"key": key}


def _update_primary(runtime: InMemoryRuntime, app: Caller, made: Made, region: str) -> None:
    call(runtime.service.multi_region.update_primary_region(app, made["key"], region))


def _single_and_multi(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    multi = _new_key(runtime, admin, policy, multi_region=True)
    return {"true": multi, "false": _new_key(runtime, admin, policy)}


def _describe(runtime: InMemoryRuntime, app: Caller, made: Made, kind: str) -> None:
    call(runtime.service.keys.describe_key(app, made[kind]))


def _primary_and_replica(runtime: InMemoryRuntime, admin: Caller, policy: str) -> Made:
    key = _new_key(runtime, admin, policy, multi_region=True)
    _replicate(runtime, admin, key, SECOND_REGION, policy)
    return {"key": key}


def _describe_by_type(runtime: InMemoryRuntime, app: Caller, made: Made, key_type: str) -> None:
    region = REGION if key_type == "PRIMARY" else SECOND_REGION
    call(runtime.service.keys.describe_key(_in_region(app, region), made["key"]))


def _via_service(app: Caller, for_aws_resource: str) -> Caller:
    return replace(app, via_service=VIA_EC2) if for_aws_resource == "true" else app


def _list_grants(runtime: InMemoryRuntime, app: Caller, made: Made, via: str) -> None:
    call(runtime.service.grants.list_grants(_via_service(app, via), made["key"]))


def _revoke_grant(runtime: InMemoryRuntime, app: Caller, made: Made, via: str) -> None:
    grants = runtime.service.grants
    created = call(
        grants.create_grant(
            caller_for(ADMIN), made["key"], grantee_principal=ADMIN, operations=["Encrypt"]
        )
    )
    call(grants.revoke_grant(_via_service(app, via), made["key"], created.grant_id))


@dataclass(frozen=True)
class Case:
    """``action`` with condition ``operator`` on ``key`` naming ``named`` (or what
    ``policy_value`` computes): a call with ``matching`` satisfies it, one with ``other``
    does not."""

    key: str
    action: str
    operator: str
    named: str
    matching: str
    other: str
    make: Callable[[InMemoryRuntime, Caller, str], Made]
    run: Callable[[InMemoryRuntime, Caller, Made, str], None]
    policy_value: Callable[[InMemoryRuntime], str] | None = None

    def condition(self, runtime: InMemoryRuntime) -> dict[str, Any]:
        named = self.policy_value(runtime) if self.policy_value else self.named
        return {self.operator: {self.key: named}}


CASES = [
    Case(
        "kms:DataKeyPairSpec",
        "kms:GenerateDataKeyPair",
        "StringEquals",
        "ECC_NIST_P256",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        _symmetric,
        _data_key_pair,
    ),
    Case(
        "kms:ReEncryptOnSameKey",
        "kms:ReEncrypt*",
        "Bool",
        "true",
        "true",
        "false",
        _re_encryption,
        _re_encrypt,
    ),
    Case(
        "kms:EncryptionAlgorithm",
        "kms:ReEncryptTo",
        "StringEquals",
        "RSAES_OAEP_SHA_256",
        "RSAES_OAEP_SHA_256",
        "RSAES_OAEP_SHA_1",
        _rsa_destination,
        _re_encrypt_to_rsa,
    ),
    Case(
        "kms:WrappingAlgorithm",
        "kms:GetParametersForImport",
        "StringEquals",
        "RSAES_OAEP_SHA_256",
        "RSAES_OAEP_SHA_256",
        "RSAES_OAEP_SHA_1",
        _external,
        _parameters_with("", "RSA_2048"),
    ),
    Case(
        "kms:WrappingKeySpec",
        "kms:GetParametersForImport",
        "StringEquals",
        "RSA_2048",
        "RSA_2048",
        "RSA_3072",
        _external,
        _parameters_with("RSAES_OAEP_SHA_256", ""),
    ),
    Case(
        "kms:ExpirationModel",
        "kms:ImportKeyMaterial",
        "StringEquals",
        "KEY_MATERIAL_EXPIRES",
        "KEY_MATERIAL_EXPIRES",
        "KEY_MATERIAL_DOES_NOT_EXPIRE",
        _external,
        _import_with_model,
    ),
    Case(
        "kms:ValidTo",
        "kms:ImportKeyMaterial",
        "NumericLessThanEquals",
        "",
        "10",
        "60",
        _external,
        _import_valid_for,
        policy_value=_valid_to_limit,
    ),
    Case(
        "kms:RotationPeriodInDays",
        "kms:EnableKeyRotation",
        "NumericLessThan",
        "180",
        "left out",
        "200",
        _rotating_every_90_days,
        _enable_rotation,
    ),
    Case(
        "kms:ReplicaRegion",
        "kms:ReplicateKey",
        "StringEquals",
        SECOND_REGION,
        SECOND_REGION,
        THIRD_REGION,
        _primary,
        _replicate_to,
    ),
    Case(
        "kms:PrimaryRegion",
        "kms:UpdatePrimaryRegion",
        "StringEquals",
        SECOND_REGION,
        SECOND_REGION,
        THIRD_REGION,
        _set_of_three,
        _update_primary,
    ),
    Case(
        "kms:MultiRegion",
        "kms:DescribeKey",
        "Bool",
        "true",
        "true",
        "false",
        _single_and_multi,
        _describe,
    ),
    Case(
        "kms:MultiRegionKeyType",
        "kms:DescribeKey",
        "StringEquals",
        "REPLICA",
        "REPLICA",
        "PRIMARY",
        _primary_and_replica,
        _describe_by_type,
    ),
    Case(
        "kms:GrantIsForAWSResource",
        "kms:ListGrants",
        "Bool",
        "false",
        "false",
        "true",
        _symmetric,
        _list_grants,
    ),
    Case(
        "kms:GrantIsForAWSResource",
        "kms:RevokeGrant",
        "Bool",
        "false",
        "false",
        "true",
        _symmetric,
        _revoke_grant,
    ),
]
IDS = [f"{case.key}-{case.action}" for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_deny_on_the_condition_key_holds(
    runtime: InMemoryRuntime, admin: Caller, app: Caller, case: Case
) -> None:
    policy = document(
        stmt(principal=aws(ADMIN), sid="admin"),
        stmt(principal=aws(app.principal_arn), action=case.action, sid="allow"),
        stmt(
            "Deny",
            principal=aws(app.principal_arn),
            action=case.action,
            condition=case.condition(runtime),
        ),
    )
    made = case.make(runtime, admin, policy)

    with pytest.raises(AccessDeniedError):
        case.run(runtime, app, made, case.matching)
    case.run(runtime, app, made, case.other)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_allow_needs_the_value_it_names(
    runtime: InMemoryRuntime, admin: Caller, app: Caller, case: Case
) -> None:
    policy = document(
        stmt(principal=aws(ADMIN), sid="admin"),
        stmt(
            principal=aws(app.principal_arn),
            action=case.action,
            condition=case.condition(runtime),
            sid="only when",
        ),
    )
    made = case.make(runtime, admin, policy)

    with pytest.raises(AccessDeniedError):
        case.run(runtime, app, made, case.other)
    case.run(runtime, app, made, case.matching)


@pytest.mark.parametrize(
    ("key_type", "refused", "allowed"),
    [("PRIMARY", "create", "replicate"), ("REPLICA", "replicate", "create")],
)
def test_create_key_carries_the_multi_region_key_type_it_creates(
    runtime: InMemoryRuntime, admin: Caller, key_type: str, refused: str, allowed: str
) -> None:
    """CreateKey with MultiRegion makes a PRIMARY; ReplicateKey needs CreateKey for a REPLICA."""
    deny = stmt(
        "Deny",
        action="kms:CreateKey",
        condition={"StringEquals": {"kms:MultiRegionKeyType": key_type}},
    )
    policies = {"create": document(stmt(action="kms:CreateKey"), deny)}
    creator = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "c", policies=policies))
    policy = document(stmt(principal=aws(ADMIN)), stmt(principal=aws(creator.principal_arn)))
    primary = _new_key(runtime, admin, policy, multi_region=True)

    def attempt(what: str) -> None:
        if what == "create":
            call(runtime.service.keys.create_key(creator, CreateKeyRequest(multi_region=True)))
        else:
            made = {"key": primary}
            _replicate_to(runtime, creator, made, SECOND_REGION)

    with pytest.raises(AccessDeniedError):
        attempt(refused)
    attempt(allowed)


def test_update_primary_region_needs_the_permission_on_the_replica_too(
    runtime: InMemoryRuntime, admin: Caller, app: Caller
) -> None:
    """AWS: kms:UpdatePrimaryRegion on the primary key and on the replica key."""
    may_update = document(stmt(principal=aws(ADMIN)), stmt(principal=aws(app.principal_arn)))
    admin_only = document(stmt(principal=aws(ADMIN)))
    key = _new_key(runtime, admin, may_update, multi_region=True)
    _replicate(runtime, admin, key, SECOND_REGION, admin_only)
    _replicate(runtime, admin, key, THIRD_REGION, may_update)

    with pytest.raises(AccessDeniedError):
        call(runtime.service.multi_region.update_primary_region(app, key, SECOND_REGION))
    call(runtime.service.multi_region.update_primary_region(app, key, THIRD_REGION))
