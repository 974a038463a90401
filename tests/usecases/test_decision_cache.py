"""Allow decisions are remembered (app.usecases.authorization, issue 17), and never outlive
what made them: a remembered caller is refused at once when the key policy, an identity
policy or a grant stops allowing it, and a decision that reads the request (a Condition, a
grant's encryption-context constraint) is made afresh for every request."""

from __future__ import annotations

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from domain.errors import AccessDeniedError
from domain.grants import GrantConstraints
from tests.access.policy_builders import aws, document, stmt
from tests.usecases.conftest import ACCOUNT_ID, call, caller_for

ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"
ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"


def _policy(*extra: dict[str, object]) -> str:
    """The administrator keeps the key; ``extra`` statements decide the others."""
    return document(stmt(principal=aws(ADMIN), sid="admin"), *extra)


def _encrypts(
    runtime: InMemoryRuntime, who: Caller, key_id: str, context: dict[str, str] | None = None
) -> bool:
    try:
        call(runtime.service.crypto.encrypt(who, key_id, b"x", context))
    except AccessDeniedError:
        return False
    return True


def test_a_remembered_caller_is_refused_once_the_key_policy_stops_naming_it(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    app = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "app"))
    keys = runtime.service.keys
    allows_app = stmt(principal=aws(app.principal_arn), action="kms:Encrypt", sid="app")
    call(keys.put_key_policy(admin, symmetric_key, "default", _policy(allows_app)))
    assert _encrypts(runtime, app, symmetric_key)
    assert _encrypts(runtime, app, symmetric_key)  # now answered from the remembered allow

    call(keys.put_key_policy(admin, symmetric_key, "default", _policy()))
    assert not _encrypts(runtime, app, symmetric_key)
    call(keys.put_key_policy(admin, symmetric_key, "default", _policy(allows_app)))
    assert _encrypts(runtime, app, symmetric_key)


def test_a_remembered_caller_is_refused_once_its_identity_policy_is_gone(
    runtime: InMemoryRuntime, symmetric_key: str
) -> None:
    """The default key policy delegates to the account's identity policies."""
    arn = runtime.identity.create_principal(ACCOUNT_ID, "reporting")
    app = caller_for(arn)
    runtime.identity.put_principal_policy(
        arn, "encrypt", document(stmt(action="kms:Encrypt", resource="*"))
    )
    assert _encrypts(runtime, app, symmetric_key)
    assert _encrypts(runtime, app, symmetric_key)

    runtime.identity.delete_principal_policy(arn, "encrypt")
    assert not _encrypts(runtime, app, symmetric_key)


def test_a_remembered_grantee_is_refused_once_its_grant_is_revoked(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    grants = runtime.service.grants
    app = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "worker"))
    created = call(
        grants.create_grant(
            admin, symmetric_key, grantee_principal=app.principal_arn, operations=["Encrypt"]
        )
    )
    assert _encrypts(runtime, app, symmetric_key)
    assert _encrypts(runtime, app, symmetric_key)

    call(grants.revoke_grant(admin, symmetric_key, created.grant_id))
    assert not _encrypts(runtime, app, symmetric_key)


def test_a_condition_is_checked_for_every_request(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    app = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "billing"))
    only_billing = stmt(
        principal=aws(app.principal_arn),
        action="kms:Encrypt",
        condition={"StringEquals": {"kms:EncryptionContext:purpose": "billing"}},
        sid="billing only",
    )
    call(
        runtime.service.keys.put_key_policy(admin, symmetric_key, "default", _policy(only_billing))
    )
    for _ in range(2):
        assert _encrypts(runtime, app, symmetric_key, {"purpose": "billing"})
        assert not _encrypts(runtime, app, symmetric_key, {"purpose": "payroll"})
        assert not _encrypts(runtime, app, symmetric_key)


def test_a_grants_encryption_context_constraint_is_checked_for_every_request(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    app = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "exporter"))
    call(
        runtime.service.grants.create_grant(
            admin,
            symmetric_key,
            grantee_principal=app.principal_arn,
            operations=["Encrypt"],
            constraints=GrantConstraints.of({"purpose": "export"}, None),
        )
    )
    for _ in range(2):
        assert _encrypts(runtime, app, symmetric_key, {"purpose": "export"})
        assert not _encrypts(runtime, app, symmetric_key, {"purpose": "other"})


@pytest.mark.parametrize("other_action", ["kms:Decrypt", "kms:DisableKey"])
def test_an_allow_for_one_action_allows_no_other(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str, other_action: str
) -> None:
    app = caller_for(runtime.identity.create_principal(ACCOUNT_ID, "writer"))
    allows_app = stmt(principal=aws(app.principal_arn), action="kms:Encrypt", sid="app")
    call(runtime.service.keys.put_key_policy(admin, symmetric_key, "default", _policy(allows_app)))
    sealed = call(runtime.service.crypto.encrypt(app, symmetric_key, b"x", None))
    with pytest.raises(AccessDeniedError):
        if other_action == "kms:Decrypt":
            call(runtime.service.crypto.decrypt(app, sealed.ciphertext, None, None))
        else:
            call(runtime.service.keys.disable_key(app, symmetric_key))
