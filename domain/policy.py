"""Policy documents: the default key policies, validation, and parsing into statements.

Key policies (one per key, stored and versioned through PolicyChanged events) and identity
policies (inline policies of users and roles) share the IAM policy grammar; the evaluator
(domain.policy_evaluation) reads the parsed form. Parsing is cached by document text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from domain.conditions import NULL, Condition, condition_value_text, parse_operator
from domain.errors import LimitExceededError, MalformedPolicyDocumentError

MAX_POLICY_BYTES = 32_768
MAX_IDENTITY_POLICY_BYTES = 10_240
KEY_POLICY, IDENTITY_POLICY = "key", "identity"
# A role's trust policy (who may assume it): a resource policy on the role, with a
# Principal in every statement and no Resource (IAM: "Has prohibited field Resource").
TRUST_POLICY = "trust"
ALLOW, DENY = "Allow", "Deny"
INVALID_PRINCIPALS = "Policy contains a statement with one or more invalid principals."
ACTION_PATTERN = re.compile(r"^(\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+)$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
# Principals are named exactly: no wildcards except "*" on its own.
IAM_PRINCIPAL = re.compile(
    r"^arn:aws[a-z-]*:(iam::\d{12}:(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)"
    r"|sts::\d{12}:assumed-role/[\w+=,.@/-]+)$"
)
SERVICE_PRINCIPAL = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")
CONDITION_KEY = re.compile(r"^[A-Za-z0-9-]+:[^\s]+$")
STATEMENT_ELEMENTS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
VERSIONS = ("2012-10-17", "2008-10-17")


@dataclass(frozen=True)
class PrincipalSet:
    """The principals a statement names: everyone, AWS principal ARNs (account ids become
    their root ARNs), and service principals."""

    any: bool = False
    aws: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Statement:
    index: int
    sid: str | None
    effect: str
    principal: PrincipalSet | None
    not_principal: PrincipalSet | None
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    @property
    def label(self) -> str:
        return f"'{self.sid}'" if self.sid else f"#{self.index + 1}"


@dataclass(frozen=True)
class PolicyDocument:
    source: str  # "key policy" or "identity policy <name>"
    kind: str  # KEY_POLICY or IDENTITY_POLICY
    version: str | None
    statements: tuple[Statement, ...]

    @cached_property
    def unconditional(self) -> bool:
        """Whether no statement has a Condition: its verdict on a request then depends
        only on the principal, action and resource (the authorization decision cache)."""
        return not any(statement.conditions for statement in self.statements)

    def named_principals(self) -> frozenset[str]:
        """Every AWS principal ARN the document names (for the principals-exist check)."""
        names: set[str] = set()
        for statement in self.statements:
            for principals in (statement.principal, statement.not_principal):
                if principals is not None:
                    names.update(principals.aws)
        return frozenset(names)


def administrator_policy() -> str:
    """An AdministratorAccess-like identity policy: every action on every resource."""
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AdministratorAccess", "Effect": "Allow", "Action": "*", "Resource": "*"}
        ],
    }
    return json.dumps(document, indent=2)


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
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
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
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*",
            },
        ],
    }
    return json.dumps(document, indent=2)


def validate_policy_document(
    policy: str, *, kind: str = KEY_POLICY, source: str = "key policy"
) -> PolicyDocument:
    """Validate a policy as it enters the system (CreateKey, PutKeyPolicy, an identity
    policy put): MalformedPolicyDocumentError (or LimitExceededError) for a bad one.

    Beyond the grammar of parse_policy, every string of a new policy must be Unicode text:
    JSON's escapes can spell a lone surrogate ("\\ud800") that the request's own parser
    never sees (the document is one string member) and no store, log or answer can encode.
    Policies already stored are parsed as they were accepted.
    """
    _refuse_lone_surrogates(policy)
    return parse_policy(policy, kind=kind, source=source)


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
NOT_UNICODE = "The policy contains a string that is not valid Unicode (a lone surrogate)."


def _refuse_lone_surrogates(policy: str) -> None:
    if _SURROGATE.search(policy):
        raise MalformedPolicyDocumentError(NOT_UNICODE)
    if not _SURROGATE_ESCAPE.search(policy):
        return  # no escape can spell one (the usual case: no parsing)
    try:
        document = json.loads(policy)
    except (ValueError, RecursionError):
        return  # parse_policy says what is wrong with it
    pending: list[Any] = [document]
    while pending:  # not recursive: a document may nest as deep as json.loads goes
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise MalformedPolicyDocumentError(NOT_UNICODE)
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def parse_policy(
    policy: str, *, kind: str = KEY_POLICY, source: str = "key policy", partition: str = "aws"
) -> PolicyDocument:
    """Validate a policy document and return its statements, ready for evaluation.

    Key policies must name a Principal (or NotPrincipal) in every statement; identity
    policies must not. Raises MalformedPolicyDocumentError for bad JSON, unknown elements,
    wrong types, unknown condition operators and malformed principals, actions or resources;
    LimitExceededError over the size quota (32 KB key policies, 10 KB identity policies).
    """
    return _parse_cached(policy, kind, source, partition)


@lru_cache(maxsize=4096)
def _parse_cached(policy: str, kind: str, source: str, partition: str) -> PolicyDocument:
    limit = MAX_POLICY_BYTES if kind == KEY_POLICY else MAX_IDENTITY_POLICY_BYTES
    if len(policy.encode("utf-8")) > limit:
        raise LimitExceededError(f"Policy document exceeds the maximum size of {limit} bytes.")
    try:
        document = json.loads(policy)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than it can go
        raise MalformedPolicyDocumentError("The policy is not valid JSON.") from None
    if not isinstance(document, dict):
        raise MalformedPolicyDocumentError("The policy must be a JSON object.")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicyDocumentError(f"Policy has invalid element(s): {sorted(unknown)}")
    version = document.get("Version")
    if version is not None and version not in VERSIONS:
        raise MalformedPolicyDocumentError("The policy Version is not supported.")
    if "Id" in document and not isinstance(document["Id"], str):
        raise MalformedPolicyDocumentError("The policy Id must be a string.")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise MalformedPolicyDocumentError("The policy must contain at least one Statement.")
    parsed = tuple(
        _parse_statement(statement, index, kind, partition)
        for index, statement in enumerate(statements)
    )
    return PolicyDocument(source=source, kind=kind, version=version, statements=parsed)


def _parse_statement(statement: Any, index: int, kind: str, partition: str) -> Statement:
    if not isinstance(statement, dict):
        raise MalformedPolicyDocumentError("Each policy Statement must be a JSON object.")
    unknown = set(statement) - STATEMENT_ELEMENTS
    if unknown:
        raise MalformedPolicyDocumentError(f"Statement has invalid element(s): {sorted(unknown)}")
    sid = statement.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise MalformedPolicyDocumentError("Statement Sid must be a string.")
    effect = statement.get("Effect")
    if effect not in (ALLOW, DENY):
        raise MalformedPolicyDocumentError("Statement Effect must be Allow or Deny.")
    if kind in (KEY_POLICY, TRUST_POLICY):
        _exactly_one(statement, "Principal", "NotPrincipal")
    elif "Principal" in statement or "NotPrincipal" in statement:
        raise MalformedPolicyDocumentError("Identity policies must not specify a Principal.")
    _exactly_one(statement, "Action", "NotAction")
    if kind == TRUST_POLICY:
        if "Resource" in statement or "NotResource" in statement:
            raise MalformedPolicyDocumentError("Has prohibited field Resource")
        statement = {**statement, "Resource": "*"}  # the role it is attached to
    _exactly_one(statement, "Resource", "NotResource")
    action_name = "Action" if "Action" in statement else "NotAction"
    actions = _strings(statement[action_name], action_name)
    for action in actions:
        if not ACTION_PATTERN.match(action):
            raise MalformedPolicyDocumentError(f"Statement {action_name} '{action}' is not valid.")
    resource_name = "Resource" if "Resource" in statement else "NotResource"
    resources = _strings(statement[resource_name], resource_name)
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise MalformedPolicyDocumentError(
                f"Statement {resource_name} '{resource}' is not an ARN."
            )
    principal = not_principal = None
    if "Principal" in statement:
        principal = _parse_principal(statement["Principal"], partition)
    if "NotPrincipal" in statement:
        not_principal = _parse_principal(statement["NotPrincipal"], partition)
    return Statement(
        index=index,
        sid=sid,
        effect=effect,
        principal=principal,
        not_principal=not_principal,
        actions=actions,
        not_action=action_name == "NotAction",
        resources=resources,
        not_resource=resource_name == "NotResource",
        conditions=_parse_conditions(statement.get("Condition")),
    )


def _exactly_one(statement: dict[str, Any], name: str, negated: str) -> None:
    if (name in statement) == (negated in statement):
        raise MalformedPolicyDocumentError(
            f"Statement must contain exactly one of {name}, {negated}."
        )


def _strings(value: Any, name: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise MalformedPolicyDocumentError(f"Statement {name} must be a string or list of strings.")
    return tuple(values)


def _parse_principal(value: Any, partition: str) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(any=True)
    if not isinstance(value, dict) or not value:
        raise MalformedPolicyDocumentError('Statement Principal must be "*" or an object.')
    aws: set[str] = set()
    services: set[str] = set()
    any_principal = False
    for principal_type, names in value.items():
        if principal_type not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise MalformedPolicyDocumentError(f"Principal type {principal_type} is not valid.")
        for name in _strings(names, "Principal"):
            if principal_type == "AWS":
                if name == "*":
                    any_principal = True
                elif ACCOUNT_ID.match(name):
                    aws.add(f"arn:{partition}:iam::{name}:root")
                elif IAM_PRINCIPAL.match(name):
                    aws.add(name)
                else:
                    raise MalformedPolicyDocumentError(INVALID_PRINCIPALS)
            elif principal_type == "Service":
                if not SERVICE_PRINCIPAL.match(name):
                    raise MalformedPolicyDocumentError(INVALID_PRINCIPALS)
                services.add(name)
            # Federated and CanonicalUser principals never sign requests here.
    return PrincipalSet(any=any_principal, aws=frozenset(aws), services=frozenset(services))


def _parse_conditions(condition: Any) -> tuple[Condition, ...]:
    if condition is None:
        return ()
    if not isinstance(condition, dict) or not all(isinstance(v, dict) for v in condition.values()):
        raise MalformedPolicyDocumentError("Statement Condition must map operators to objects.")
    parsed: list[Condition] = []
    for operator, tests in condition.items():
        operator_parts = parse_operator(operator)
        if operator_parts is None:
            raise MalformedPolicyDocumentError(f"Condition operator {operator} is not valid.")
        base, qualifier, if_exists = operator_parts
        for key, raw in tests.items():
            if not key or not CONDITION_KEY.match(key):
                raise MalformedPolicyDocumentError(f"Condition key '{key}' is not valid.")
            items = raw if isinstance(raw, list) else [raw]
            texts = [condition_value_text(item) for item in items]
            if not texts or any(text is None for text in texts):
                raise MalformedPolicyDocumentError(
                    f"Condition {operator} {key} must have string, number or boolean values."
                )
            values = tuple(text for text in texts if text is not None)
            if base == NULL and any(v.lower() not in ("true", "false") for v in values):
                raise MalformedPolicyDocumentError("Null conditions take true or false.")
            parsed.append(Condition(operator, base, qualifier, if_exists, key.lower(), values))
    return tuple(parsed)
