"""Fixtures for access-control behaviour: more accounts and principals, each with a client."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.aws.conftest import ON_BEHALF_OF, client_on_behalf_of, raw
from tests.conftest import ACCOUNT_ID, REGION, Service

ADMIN_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any = "kms:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


KMS_ALL = policy(allow())


def root(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:root"


def key_policy_doc(*statements: dict[str, Any], account_id: str = ACCOUNT_ID) -> str:
    """A key policy: the default root statement (delegation to IAM), then ``statements``."""
    default = {
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": root(account_id)},
        "Action": "kms:*",
        "Resource": "*",
    }
    return policy(default, *statements)


@dataclass
class Principal:
    arn: str
    account_id: str
    access_key_id: str
    secret: str
    kms: Any


@dataclass
class Identities:
    service: Service

    def account(self) -> str:
        account_id = "".join(secrets.choice("0123456789") for _ in range(12))
        self.service.runtime.identity.create_account(account_id)
        return account_id

    def principal(
        self,
        account_id: str = ACCOUNT_ID,
        *,
        name: str | None = None,
        role: bool = False,
        policies: dict[str, str] | None = None,
        service_name: str | None = None,
    ) -> Principal:
        identity = self.service.runtime.identity
        arn = identity.create_principal(
            account_id,
            name or f"p-{uuid.uuid4().hex[:10]}",
            "role" if role else "user",
            policies=policies,
            service_name=service_name,
        )
        access_key_id, secret = identity.create_access_key(arn)
        client = self.service.client("kms", access_key_id=access_key_id, secret_access_key=secret)
        return Principal(arn, account_id, access_key_id, secret, client)

    def acting_for(self, service_principal: Principal, principal_arn: str) -> Any:
        """A client of ``service_principal`` signing on behalf of ``principal_arn``."""
        return client_on_behalf_of(
            self.service,
            service_principal.access_key_id,
            service_principal.secret,
            principal_arn,
        )


@pytest.fixture
def identities(service: Service) -> Identities:
    return Identities(service)


@pytest.fixture
def new_key(kms: Any) -> Callable[..., dict[str, Any]]:
    """Create a key in the administrator's account (optionally with a policy)."""

    def create(**kwargs: Any) -> dict[str, Any]:
        return dict(kms.create_key(**kwargs)["KeyMetadata"])

    return create


__all__ = ["ON_BEHALF_OF", "REGION", "Identities", "Principal", "raw"]
