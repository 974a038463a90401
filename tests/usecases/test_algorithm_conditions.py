"""The algorithm a request names is a condition key a policy can allow or deny by (AWS KMS
condition keys kms:SigningAlgorithm, kms:MessageType, kms:MacAlgorithm,
kms:EncryptionAlgorithm): a Deny on it holds, and an Allow needs it."""

from __future__ import annotations

import hashlib

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases.keys import CreateKeyRequest
from domain.errors import AccessDeniedError
from tests.access.policy_builders import aws, document, stmt
from tests.usecases.conftest import ACCOUNT_ID, call, caller_for

ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"


def _key(runtime: InMemoryRuntime, admin: Caller, spec: str, usage: str, *extra: dict) -> str:
    policy = document(stmt(principal=aws(ADMIN), sid="admin"), *extra)
    request = CreateKeyRequest(key_spec=spec, key_usage=usage, policy=policy)
    return call(runtime.service.keys.create_key(admin, request)).key_id


def _allowed_unless(caller: Caller, action: str, key: str, value: str) -> list[dict]:
    """An Allow of ``action`` for ``caller`` and a Deny of it when condition ``key`` is
    ``value``."""
    condition = {"StringEquals": {key: value}}
    return [
        stmt(principal=aws(caller.principal_arn), action=action, sid="allow"),
        stmt("Deny", principal=aws(caller.principal_arn), action=action, condition=condition),
    ]


@pytest.fixture
def app(runtime: InMemoryRuntime) -> Caller:
    return caller_for(runtime.identity.create_principal(ACCOUNT_ID, "signer"))


def test_a_deny_on_the_message_type_holds(
    runtime: InMemoryRuntime, admin: Caller, app: Caller
) -> None:
    key = _key(
        runtime,
        admin,
        "ECC_NIST_P256",
        "SIGN_VERIFY",
        *_allowed_unless(app, "kms:Sign", "kms:MessageType", "DIGEST"),
    )
    sign = runtime.service.asymmetric.sign
    call(sign(app, key, b"a message", "RAW", "ECDSA_SHA_256"))
    digest = hashlib.sha256(b"a message").digest()
    with pytest.raises(AccessDeniedError):
        call(sign(app, key, digest, "DIGEST", "ECDSA_SHA_256"))


def test_an_allow_needs_the_signing_algorithm_it_names(
    runtime: InMemoryRuntime, admin: Caller, app: Caller
) -> None:
    key = _key(
        runtime,
        admin,
        "RSA_2048",
        "SIGN_VERIFY",
        stmt(
            principal=aws(app.principal_arn),
            action="kms:Sign",
            condition={"StringEquals": {"kms:SigningAlgorithm": "RSASSA_PSS_SHA_256"}},
            sid="pss only",
        ),
    )
    sign = runtime.service.asymmetric.sign
    call(sign(app, key, b"m", None, "RSASSA_PSS_SHA_256"))
    with pytest.raises(AccessDeniedError):
        call(sign(app, key, b"m", None, "RSASSA_PKCS1_V1_5_SHA_256"))


def test_a_deny_on_the_mac_algorithm_holds(
    runtime: InMemoryRuntime, admin: Caller, app: Caller
) -> None:
    key = _key(
        runtime,
        admin,
        "HMAC_256",
        "GENERATE_VERIFY_MAC",
        *_allowed_unless(app, "kms:GenerateMac", "kms:MacAlgorithm", "HMAC_SHA_256"),
    )
    with pytest.raises(AccessDeniedError):
        call(runtime.service.asymmetric.generate_mac(app, key, b"m", "HMAC_SHA_256"))


def test_an_rsa_encryption_allow_needs_the_algorithm_it_names(
    runtime: InMemoryRuntime, admin: Caller, app: Caller
) -> None:
    key = _key(
        runtime,
        admin,
        "RSA_2048",
        "ENCRYPT_DECRYPT",
        stmt(
            principal=aws(app.principal_arn),
            action=["kms:Encrypt", "kms:Decrypt"],
            condition={"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
            sid="sha-256 only",
        ),
    )
    crypto = runtime.service.crypto
    sealed = call(crypto.encrypt(app, key, b"m", None, "RSAES_OAEP_SHA_256"))
    with pytest.raises(AccessDeniedError):
        call(crypto.encrypt(app, key, b"m", None, "RSAES_OAEP_SHA_1"))
    opened = call(crypto.decrypt(app, sealed.ciphertext, key, None, "RSAES_OAEP_SHA_256"))
    assert opened.plaintext == b"m"
