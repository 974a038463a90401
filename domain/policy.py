"""Key policy documents: the default policy and structural validation.

Evaluation (who may do what) arrives with the access-control work; today the
document is validated, stored and versioned through PolicyChanged events.
"""

from __future__ import annotations

import json
from typing import Any

from domain.errors import LimitExceededError, MalformedPolicyDocumentError

MAX_POLICY_BYTES = 32_768
STATEMENT_ELEMENTS = frozenset(
    {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
     "NotResource", "Condition"}
)  # fmt: skip
VERSIONS = ("2012-10-17", "2008-10-17")


def default_key_policy(partition: str, account_id: str) -> str:
    document = {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    return json.dumps(document, indent=2)


def aws_managed_key_policy(partition: str, account_id: str, service: str, region: str) -> str:
    document = {
        "Version": "2012-10-17",
        "Id": f"auto-{service}",
        "Statement": [
            {
                "Sid": f"Allow access through {service} for all principals in the account",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:CreateGrant", "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": account_id,
                        "kms:ViaService": f"{service}.{region}.amazonaws.com",
                    }
                },
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*",
            },
        ],
    }  # fmt: skip
    return json.dumps(document, indent=2)


def validate_policy_document(policy: str) -> None:
    """Raise MalformedPolicyDocumentError (or LimitExceededError) for a bad document."""
    if len(policy.encode("utf-8")) > MAX_POLICY_BYTES:
        raise LimitExceededError("Policy document exceeds the maximum size of 32768 bytes.")
    try:
        document = json.loads(policy)
    except ValueError:
        raise MalformedPolicyDocumentError("The policy is not valid JSON.") from None
    if not isinstance(document, dict):
        raise MalformedPolicyDocumentError("The policy must be a JSON object.")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicyDocumentError(f"Policy has invalid element(s): {sorted(unknown)}")
    if "Version" in document and document["Version"] not in VERSIONS:
        raise MalformedPolicyDocumentError("The policy Version is not supported.")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise MalformedPolicyDocumentError("The policy must contain at least one Statement.")
    for statement in statements:
        _validate_statement(statement)


def _validate_statement(statement: Any) -> None:
    if not isinstance(statement, dict):
        raise MalformedPolicyDocumentError("Each policy Statement must be a JSON object.")
    unknown = set(statement) - STATEMENT_ELEMENTS
    if unknown:
        raise MalformedPolicyDocumentError(f"Statement has invalid element(s): {sorted(unknown)}")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise MalformedPolicyDocumentError("Statement Effect must be Allow or Deny.")
    _exactly_one(statement, "Principal", "NotPrincipal")
    _exactly_one(statement, "Action", "NotAction")
    _exactly_one(statement, "Resource", "NotResource")
    for name in ("Action", "NotAction", "Resource", "NotResource"):
        if name in statement:
            _string_or_strings(statement[name], name)
    for name in ("Principal", "NotPrincipal"):
        if name in statement:
            _validate_principal(statement[name])
    condition = statement.get("Condition")
    if condition is not None and not (
        isinstance(condition, dict) and all(isinstance(v, dict) for v in condition.values())
    ):
        raise MalformedPolicyDocumentError("Statement Condition must map operators to objects.")


def _exactly_one(statement: dict[str, Any], name: str, negated: str) -> None:
    if (name in statement) == (negated in statement):
        raise MalformedPolicyDocumentError(
            f"Statement must contain exactly one of {name}, {negated}."
        )


def _string_or_strings(value: Any, name: str) -> None:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise MalformedPolicyDocumentError(f"Statement {name} must be a string or list of strings.")


def _validate_principal(value: Any) -> None:
    if value == "*":
        return
    if not isinstance(value, dict) or not value:
        raise MalformedPolicyDocumentError('Statement Principal must be "*" or an object.')
    for kind, names in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise MalformedPolicyDocumentError(f"Principal type {kind} is not valid.")
        _string_or_strings(names, "Principal")
