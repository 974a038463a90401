"""Aliases and grants through the use cases on the in-memory ledger: an alias names a key
wherever a KeyId does, follows UpdateAlias and is gone after DeleteAlias; a grant lets its
grantee use a key its policies do not open to it, until it is retired or revoked."""

from __future__ import annotations

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases.keys import CreateKeyRequest
from domain.errors import AccessDeniedError, AlreadyExistsError, NotFoundError
from domain.identifiers import PREDEFINED_AWS_ALIASES
from tests.usecases.conftest import ACCOUNT_ID, call, caller_for, used_operations


def test_an_alias_is_created_pointed_resolved_and_deleted(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys, crypto = runtime.service.keys, runtime.service.crypto
    other = call(keys.create_key(admin, CreateKeyRequest())).key_id
    call(keys.create_alias(admin, "alias/payments", symmetric_key))
    with pytest.raises(AlreadyExistsError):
        call(keys.create_alias(admin, "alias/payments", other))
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:alias/payments"
    for name in ("alias/payments", alias_arn):
        assert call(keys.describe_key(admin, name)).key_id == symmetric_key
    sealed = call(crypto.encrypt(admin, "alias/payments", b"by alias", None))
    assert sealed.key_arn.endswith(symmetric_key)
    listed = call(keys.list_aliases(admin, None, None, None)).items
    # AWS's predefined aliases follow, without a key until their AWS managed key exists.
    assert [(a.alias_name, a.target_key_id) for a in listed] == [
        ("alias/payments", symmetric_key),
        *[(name, None) for name in PREDEFINED_AWS_ALIASES],
    ]

    call(keys.update_alias(admin, "alias/payments", other))
    assert call(crypto.encrypt(admin, "alias/payments", b"x", None)).key_arn.endswith(other)
    assert call(crypto.decrypt(admin, sealed.ciphertext, None, None)).plaintext == b"by alias"
    by_key = call(keys.list_aliases(admin, other, None, None)).items
    assert [a.alias_name for a in by_key] == ["alias/payments"]
    assert call(keys.list_aliases(admin, symmetric_key, None, None)).items == []

    call(keys.delete_alias(admin, "alias/payments"))
    with pytest.raises(NotFoundError):
        call(crypto.encrypt(admin, "alias/payments", b"x", None))
    assert [a.alias_name for a in call(keys.list_aliases(admin, None, None, None)).items] == list(
        PREDEFINED_AWS_ALIASES
    )
    call(keys.create_alias(admin, "alias/payments", symmetric_key))  # the name is free again
    assert call(keys.describe_key(admin, "alias/payments")).key_id == symmetric_key
    assert [a.target_key_id for a in call(keys.list_aliases(admin, None, None, None)).items] == [
        symmetric_key,
        *[None for _ in PREDEFINED_AWS_ALIASES],
    ]
    # Only the uses are Used events of the keys; alias changes are events of their own.
    assert used_operations(runtime, symmetric_key) == ["Encrypt", "Decrypt"]
    assert used_operations(runtime, other) == ["Encrypt"]


def test_a_grant_opens_a_key_to_its_grantee_until_retired(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    grants, crypto = runtime.service.grants, runtime.service.crypto
    app_arn = runtime.identity.create_principal(ACCOUNT_ID, "app")
    app = caller_for(app_arn)
    with pytest.raises(AccessDeniedError):  # no identity policy, no grant
        call(crypto.encrypt(app, symmetric_key, b"x", None))
    assert runtime.denials.query(principal_arn=app_arn)[0].action == "kms:Encrypt"

    created = call(
        grants.create_grant(
            admin,
            symmetric_key,
            grantee_principal=app_arn,
            operations=["Encrypt", "Decrypt"],
            retiring_principal=app_arn,
            name="app-grant",
        )
    )
    sealed = call(crypto.encrypt(app, symmetric_key, b"granted", None))
    assert call(crypto.decrypt(app, sealed.ciphertext, None, None)).plaintext == b"granted"
    with pytest.raises(AccessDeniedError):  # only the operations granted
        call(runtime.service.keys.disable_key(app, symmetric_key))
    listed = call(grants.list_grants(admin, symmetric_key)).items
    assert [(g.grant_id, g.grantee_principal, g.name) for g in listed] == [
        (created.grant_id, app_arn, "app-grant")
    ]
    retirable = call(grants.list_retirable_grants(admin, app_arn)).items
    assert [g.grant_id for g in retirable] == [created.grant_id]

    call(grants.retire_grant(app, grant_token=created.grant_token))
    with pytest.raises(AccessDeniedError):
        call(crypto.decrypt(app, sealed.ciphertext, None, None))
    assert call(grants.list_grants(admin, symmetric_key)).items == []
    assert call(grants.list_retirable_grants(admin, app_arn)).items == []
    assert used_operations(runtime, symmetric_key) == ["Encrypt", "Decrypt"]
    denied = [record.action for record in runtime.denials.query(principal_arn=app_arn)]
    assert denied == ["kms:Decrypt", "kms:DisableKey", "kms:Encrypt"]  # newest first


def test_a_revoked_grant_ends_at_once(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    grants, crypto = runtime.service.grants, runtime.service.crypto
    app_arn = runtime.identity.create_principal(ACCOUNT_ID, "worker")
    created = call(
        grants.create_grant(admin, symmetric_key, grantee_principal=app_arn, operations=["Encrypt"])
    )
    call(crypto.encrypt(caller_for(app_arn), symmetric_key, b"x", None))
    call(grants.revoke_grant(admin, symmetric_key, created.grant_id))
    with pytest.raises(AccessDeniedError):
        call(crypto.encrypt(caller_for(app_arn), symmetric_key, b"x", None))
