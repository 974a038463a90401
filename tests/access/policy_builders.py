"""Small builders for policy documents, requests and grants (shared by the access tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from domain.grants import Grant, GrantConstraints
from domain.policy import IDENTITY_POLICY, KEY_POLICY, PolicyDocument, parse_policy
from domain.policy_evaluation import AuthorizationRequest, NewGrant

A, B, C = "111122223333", "444455556666", "777788889999"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY = f"arn:aws:kms:us-east-1:{A}:key/{KEY_ID}"
OTHER_KEY = f"arn:aws:kms:us-east-1:{A}:key/0987dcba-09ba-87dc-65fe-0987654321ba"
ROOT_A, ROOT_B, ROOT_C = (f"arn:aws:iam::{account}:root" for account in (A, B, C))
ALICE = f"arn:aws:iam::{A}:user/alice"
BOB = f"arn:aws:iam::{A}:user/bob"
ADMIN_ROLE = f"arn:aws:iam::{A}:role/KeyAdmin"
COPIER = f"arn:aws:iam::{B}:role/snapshot-copier"
CAROL_B = f"arn:aws:iam::{B}:user/carol"
DAVE_C = f"arn:aws:iam::{C}:user/dave"


def stmt(
    effect: str = "Allow",
    *,
    principal: Any = None,
    not_principal: Any = None,
    action: Any = "kms:*",
    not_action: Any = None,
    resource: Any = "*",
    not_resource: Any = None,
    condition: Mapping[str, Any] | None = None,
    sid: str | None = None,
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": effect}
    if sid:
        statement["Sid"] = sid
    if principal is not None:
        statement["Principal"] = principal
    if not_principal is not None:
        statement["NotPrincipal"] = not_principal
    if not_action is not None:
        statement["NotAction"] = not_action
    else:
        statement["Action"] = action
    if not_resource is not None:
        statement["NotResource"] = not_resource
    else:
        statement["Resource"] = resource
    if condition:
        statement["Condition"] = dict(condition)
    return statement


def aws(*arns: str) -> dict[str, Any]:
    return {"AWS": list(arns) if len(arns) > 1 else arns[0]}


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def key_policy(*statements: dict[str, Any]) -> PolicyDocument:
    return parse_policy(document(*statements), kind=KEY_POLICY)


def identity_policy(*statements: dict[str, Any], name: str = "inline") -> PolicyDocument:
    return parse_policy(
        document(*statements), kind=IDENTITY_POLICY, source=f"identity policy {name}"
    )


def default_key_policy(account: str = A) -> PolicyDocument:
    """AWS's default key policy: the account root may do kms:* (delegates to IAM)."""
    return key_policy(stmt(principal=aws(f"arn:aws:iam::{account}:root"), sid="Enable IAM"))


def allow_identity(action: Any = "kms:*", resource: Any = "*", **kwargs: Any) -> PolicyDocument:
    return identity_policy(stmt(action=action, resource=resource, **kwargs))


def context(values: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """A request context from condition keys as AWS names them (case-insensitive)."""
    return {
        name.lower(): (value,) if isinstance(value, str) else tuple(value)
        for name, value in values.items()
    }


def account_of(arn: str) -> str:
    return arn.split(":")[4]


def request(
    action: str = "kms:Decrypt",
    *,
    principal: str = ALICE,
    resource: str | None = KEY,
    conditions: Mapping[str, Any] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    service_principal: str | None = None,
    new_grant: NewGrant | None = None,
    target_grant: Grant | None = None,
) -> AuthorizationRequest:
    return AuthorizationRequest(
        principal_arn=principal,
        principal_account=account_of(principal),
        action=action,
        resource_arn=resource or "*",
        resource_account=account_of(resource) if resource else None,
        context=context(conditions or {}),
        encryption_context=encryption_context,
        service_principal=service_principal,
        new_grant=new_grant,
        target_grant=target_grant,
    )


def grant(
    grantee: str,
    operations: Sequence[str],
    *,
    grant_id: str = "a" * 64,
    retiring: str | None = None,
    equals: Mapping[str, str] | None = None,
    subset: Mapping[str, str] | None = None,
) -> Grant:
    return Grant(
        grant_id=grant_id,
        key_id=KEY_ID,
        name="",
        grantee_principal=grantee,
        retiring_principal=retiring,
        operations=tuple(operations),
        constraints=GrantConstraints.of(equals, subset),
        issuing_account=ROOT_A,
    )
