"""Authorization, in one place, for every entry point.

Until key policies are evaluated (the access-control work), the rule is AWS's default
key policy: the key's own account may do everything with its customer managed keys,
and AWS managed keys may be used and read but not managed. Other accounts are denied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.errors import AccessDeniedError

if TYPE_CHECKING:
    from app.identity import Caller
    from domain.keys import Key

AWS_MANAGED_KEY_ACTIONS = frozenset(
    {
        "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext", "DescribeKey", "GetKeyPolicy", "ListKeyPolicies",
        "GetKeyRotationStatus", "ListResourceTags", "ListAliases", "ListKeyRotations",
        "CreateAlias", "UpdateAlias", "DeleteAlias", "CreateGrant",
    }
)  # fmt: skip


def authorize(caller: Caller, action: str, key: Key | None) -> None:
    """Raise AccessDeniedError unless ``caller`` may perform kms:``action`` on ``key``."""
    if key is None:
        return  # account-level actions (CreateKey, ListKeys, ...) on the caller's own account
    if key.account_id == caller.account_id and (
        not key.is_aws_managed or action in AWS_MANAGED_KEY_ACTIONS
    ):
        return
    raise AccessDeniedError(
        f"User: {caller.principal_arn} is not authorized to perform: kms:{action} on "
        f"resource: {key.arn} because no resource-based policy allows the kms:{action} action"
    )
