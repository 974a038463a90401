"""The evaluator as a table: one request, its policies and grants, the decision AWS makes.

Every case names the AWS rule it checks. Sources: IAM User Guide "Policy evaluation logic",
"Cross-account policy evaluation logic", "IAM JSON policy elements" (Principal, NotPrincipal,
Action, NotAction, Resource, NotResource, Condition), "Condition operators", "Multivalued
context keys"; KMS Developer Guide "Key policies" (default key policy, delegation to IAM),
"Allowing users in other accounts to use a KMS key", "Grants in AWS KMS", "Grant
constraints", "AWS KMS condition keys", "Determining access to a KMS key". Pure and fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from domain.grants import Grant, GrantConstraints
from domain.policy import PolicyDocument
from domain.policy_evaluation import (
    ALLOWED,
    DENIED_CROSS_ACCOUNT,
    DENIED_EXPLICIT_IDENTITY,
    DENIED_EXPLICIT_RESOURCE,
    DENIED_NO_IDENTITY_POLICY,
    DENIED_NO_RESOURCE_POLICY,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    AuthorizationRequest,
    NewGrant,
    evaluate,
)
from tests.access.policy_builders import (
    ADMIN_ROLE,
    ALICE,
    BOB,
    CAROL_B,
    COPIER,
    DAVE_C,
    KEY,
    OTHER_KEY,
    ROOT_A,
    ROOT_B,
    ROOT_C,
    A,
    B,
    allow_identity,
    aws,
    default_key_policy,
    grant,
    identity_policy,
    key_policy,
    request,
    stmt,
)

ALLOW, XDENY, DENY = ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY
EC2_VIA = "ec2.us-east-1.amazonaws.com"

# Rules, as the cases cite them.
R_DEFAULT = "KMS default key policy: the account root gets kms:*, delegating to IAM policies"
R_IAM_NEEDED = "KMS: with the root delegation, an IAM policy must also allow the caller"
R_IAM_ONLY_IF_ENABLED = "KMS: IAM policies take effect only if the key policy allows the account"
R_DIRECT = "KMS: a key policy statement naming the principal allows it without an IAM policy"
R_ACCOUNT_ID = "IAM Principal: a bare 12-digit account id means that account's root"
R_STAR_PRINCIPAL = 'IAM Principal: "*" (or {"AWS": "*"}) is every principal'
R_EXPLICIT = "IAM evaluation: an explicit Deny in any applicable policy overrides every Allow"
R_IMPLICIT = "IAM evaluation: without an applicable Allow the request is implicitly denied"
R_NOT_PRINCIPAL = "IAM NotPrincipal: the statement applies to every principal not listed"
R_SERVICE = "IAM Principal: a Service principal matches the service calling for itself"
R_ACTION = "IAM Action: names match case-insensitively, with * and ? wildcards"
R_NOT_ACTION = "IAM NotAction: the statement applies to every action not listed"
R_RESOURCE = "IAM Resource: ARNs match component by component, with * and ? wildcards"
R_NOT_RESOURCE = "IAM NotResource: the statement applies to every resource not listed"
R_KEY_RESOURCE = 'KMS key policy: Resource "*" means the key the policy is attached to'
R_CROSS = "Cross-account: the key policy and the caller's identity policy must both allow"
R_CROSS_OPS = "KMS: only operations marked 'cross-account use: yes' work on another account's key"
R_ACCOUNT_LEVEL = "KMS: CreateKey, ListKeys, GenerateRandom... are authorized by IAM policy alone"
R_COND_AND = "IAM Condition: several operators, and several keys, are ANDed"
R_COND_OR = "IAM Condition: several values for one key are ORed"
R_STRING = "IAM condition operators: String operators"
R_NEGATED_MISSING = "IAM: a negated operator is true when the key is absent from the request"
R_MISSING = "IAM: a positive operator is false when the key is absent from the request"
R_ARN = "IAM condition operators: ARN operators (ArnEquals behaves as ArnLike)"
R_BOOL = "IAM condition operators: Bool"
R_NULL = "IAM condition operators: Null tests whether the key is present"
R_NUMERIC = "IAM condition operators: Numeric operators"
R_DATE = "IAM condition operators: Date operators (ISO 8601 or epoch seconds)"
R_IP = "IAM condition operators: IpAddress / NotIpAddress (CIDR)"
R_IF_EXISTS = "IAM: ...IfExists is true when the key is absent, else the operator decides"
R_FOR_ALL = "IAM ForAllValues: every request value must match (true for an absent key)"
R_FOR_ANY = "IAM ForAnyValue: at least one request value must match (false for an absent key)"
R_MULTI = "IAM: a multivalued key without a set qualifier matches when any value matches"
R_KMS_KEYS = "KMS condition keys"
R_GRANT = "KMS grants: a grant allows its grantee its operations"
R_GRANT_CONSTRAINT = "KMS grant constraints: EncryptionContextEquals / Subset"
R_GRANT_CREATE = "KMS: a grant with CreateGrant passes on only its operations, as strict"
R_RETIRE = "KMS RetireGrant: the retiring principal, or the grantee if the grant says so"
R_SEED = "Cross-account snapshot copy (the mission's policy)"


@dataclass
class Case:
    id: str
    rule: str
    expected: str
    request: AuthorizationRequest
    key: PolicyDocument | None = field(default_factory=default_key_policy)
    identity: tuple[PolicyDocument, ...] = ()
    grants: tuple[Grant, ...] = ()
    denial: str | None = None


def direct(**condition: Any) -> PolicyDocument:
    """A key policy naming ALICE directly, with a condition block."""
    return key_policy(stmt(principal=aws(ALICE), condition=condition or None))


def ctx(**values: Any) -> AuthorizationRequest:
    """ALICE decrypting KEY with these condition keys (``__`` stands for ``:``)."""
    return request(conditions={k.replace("__", ":"): v for k, v in values.items()})


KMS_ALL = allow_identity()
SEED = key_policy(
    stmt(principal=aws(ROOT_A), sid="Enable IAM User Permissions"),
    stmt(
        sid="Allow use of the key with destination account",
        principal=aws(COPIER),
        action=["kms:Decrypt", "kms:CreateGrant"],
        condition={"StringEquals": {"kms:ViaService": EC2_VIA, "kms:CallerAccount": B}},
    ),
)
COPIER_IAM = allow_identity(action=["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"])
VIA_EC2 = {"kms:ViaService": EC2_VIA, "kms:CallerAccount": B}
NOW = "2026-06-01T12:00:00Z"
IN_US_EAST_1 = {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
TEAM_PAYMENTS = {"StringEquals": {"aws:ResourceTag/team": "payments"}}
ONLY_TEAM_TAG = {"aws:TagKeys": ["team"]}
USERS_OF_A = f"arn:aws:iam::{A}:user/*"
ABC = ["a", "b", "c"]

CASES: list[Case] = [
    # ---- the default key policy and delegation to IAM -------------------------------------------
    Case("default-policy-and-iam-allow", R_DEFAULT, ALLOW, request(), identity=(KMS_ALL,)),
    Case(
        "default-policy-without-iam-policy",
        R_IAM_NEEDED,
        DENY,
        request(),
        denial=DENIED_NO_IDENTITY_POLICY,
    ),
    Case(
        "default-policy-iam-allows-other-action",
        R_IAM_NEEDED,
        DENY,
        request(),
        identity=(allow_identity("kms:Encrypt"),),
        denial=DENIED_NO_IDENTITY_POLICY,
    ),
    Case(
        "iam-names-the-key", R_DEFAULT, ALLOW, request(), identity=(allow_identity(resource=KEY),)
    ),
    Case(
        "iam-names-another-key",
        R_IAM_NEEDED,
        DENY,
        request(),
        identity=(allow_identity(resource=OTHER_KEY),),
    ),
    Case(
        "iam-names-the-accounts-keys",
        R_RESOURCE,
        ALLOW,
        request(),
        identity=(allow_identity(resource=f"arn:aws:kms:*:{A}:key/*"),),
    ),
    Case(
        "iam-names-another-accounts-keys",
        R_RESOURCE,
        DENY,
        request(),
        identity=(allow_identity(resource=f"arn:aws:kms:*:{B}:key/*"),),
    ),
    Case(
        "iam-without-root-delegation",
        R_IAM_ONLY_IF_ENABLED,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(BOB))),
        identity=(KMS_ALL,),
        denial=DENIED_NO_RESOURCE_POLICY,
    ),
    Case(
        "key-policy-names-the-caller",
        R_DIRECT,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE))),
    ),
    Case(
        "key-policy-bare-account-id-with-iam",
        R_ACCOUNT_ID,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(A))),
        identity=(KMS_ALL,),
    ),
    Case(
        "key-policy-bare-account-id-without-iam",
        R_ACCOUNT_ID,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(A))),
    ),
    Case(
        "key-policy-star-principal",
        R_STAR_PRINCIPAL,
        ALLOW,
        request(),
        key=key_policy(stmt(principal="*")),
    ),
    Case(
        "key-policy-aws-star-principal",
        R_STAR_PRINCIPAL,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws("*"))),
    ),
    Case(
        "key-policy-names-another-user",
        R_IMPLICIT,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(BOB))),
        denial=DENIED_NO_RESOURCE_POLICY,
    ),
    Case(
        "key-policy-names-a-role",
        R_DIRECT,
        ALLOW,
        request(principal=ADMIN_ROLE),
        key=key_policy(stmt(principal=aws(ADMIN_ROLE))),
    ),
    Case(
        "key-policy-principal-list",
        R_DIRECT,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(BOB, ALICE))),
    ),
    Case(
        "key-policy-role-is-not-the-user",
        R_IMPLICIT,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(f"arn:aws:iam::{A}:role/alice"))),
    ),
    Case(
        "key-policy-other-root-does-not-cover-caller",
        R_IMPLICIT,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ROOT_C))),
        identity=(KMS_ALL,),
    ),
    Case(
        "key-policy-allows-another-action",
        R_IMPLICIT,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:Encrypt")),
    ),
    # ---- explicit deny --------------------------------------------------------------------------
    Case(
        "key-deny-beats-key-allow",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(
            stmt(principal=aws(ALICE)), stmt("Deny", principal=aws(ALICE), action="kms:Decrypt")
        ),
        denial=DENIED_EXPLICIT_RESOURCE,
    ),
    Case(
        "iam-deny-beats-key-allow",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE))),
        identity=(identity_policy(stmt("Deny", action="kms:Decrypt")),),
        denial=DENIED_EXPLICIT_IDENTITY,
    ),
    Case(
        "key-deny-beats-delegation",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(
            stmt(principal=aws(ROOT_A)), stmt("Deny", principal=aws(ALICE), action="kms:Decrypt")
        ),
        identity=(KMS_ALL,),
        denial=DENIED_EXPLICIT_RESOURCE,
    ),
    Case(
        "iam-deny-beats-iam-allow",
        R_EXPLICIT,
        XDENY,
        request(),
        identity=(KMS_ALL, identity_policy(stmt("Deny", action="kms:Decrypt"), name="deny")),
    ),
    Case(
        "deny-star-principal",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(
            stmt(principal=aws(ALICE)), stmt("Deny", principal="*", action="kms:Decrypt")
        ),
    ),
    Case(
        "deny-other-action-does-not-apply",
        R_EXPLICIT,
        ALLOW,
        request(),
        key=key_policy(
            stmt(principal=aws(ALICE)),
            stmt("Deny", principal="*", action="kms:ScheduleKeyDeletion"),
        ),
    ),
    Case(
        "deny-with-failed-condition-does-not-apply",
        R_EXPLICIT,
        ALLOW,
        ctx(aws__SourceIp="10.0.0.1"),
        key=key_policy(
            stmt(principal=aws(ALICE)),
            stmt("Deny", principal="*", condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        ),
    ),
    Case(
        "deny-with-met-condition-applies",
        R_EXPLICIT,
        XDENY,
        ctx(aws__SourceIp="192.0.2.1"),
        key=key_policy(
            stmt(principal=aws(ALICE)),
            stmt("Deny", principal="*", condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        ),
    ),
    Case(
        "deny-account-root-covers-its-users",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE)), stmt("Deny", principal=aws(ROOT_A))),
    ),
    Case(
        "deny-beats-grant",
        R_EXPLICIT,
        XDENY,
        request(),
        key=key_policy(stmt("Deny", principal="*", action="kms:Decrypt")),
        grants=(grant(ALICE, ["Decrypt"]),),
    ),
    Case(
        "deny-not-action-hits-decrypt",
        R_NOT_ACTION,
        XDENY,
        request(),
        key=key_policy(
            stmt(principal=aws(ALICE)), stmt("Deny", principal="*", not_action="kms:Describe*")
        ),
    ),
    Case(
        "deny-not-action-spares-describe",
        R_NOT_ACTION,
        ALLOW,
        request("kms:DescribeKey"),
        key=key_policy(
            stmt(principal=aws(ALICE)), stmt("Deny", principal="*", not_action="kms:Describe*")
        ),
    ),
    Case(
        "deny-not-principal-spares-the-named",
        R_NOT_PRINCIPAL,
        ALLOW,
        request(),
        key=key_policy(stmt(principal="*"), stmt("Deny", not_principal=aws(ALICE))),
    ),
    Case(
        "deny-not-principal-hits-the-others",
        R_NOT_PRINCIPAL,
        XDENY,
        request(principal=BOB),
        key=key_policy(stmt(principal="*"), stmt("Deny", not_principal=aws(ALICE))),
    ),
    Case(
        "deny-not-principal-account-root-spares-its-users",
        R_NOT_PRINCIPAL,
        ALLOW,
        request(),
        key=key_policy(stmt(principal="*"), stmt("Deny", not_principal=aws(ROOT_A))),
    ),
    Case(
        "iam-deny-on-other-key-does-not-apply",
        R_EXPLICIT,
        ALLOW,
        request(),
        identity=(KMS_ALL, identity_policy(stmt("Deny", resource=OTHER_KEY), name="d")),
    ),
    Case(
        "key-deny-on-cross-account-caller",
        R_EXPLICIT,
        XDENY,
        request(principal=CAROL_B),
        key=key_policy(
            stmt(principal=aws(ROOT_B)), stmt("Deny", principal=aws(ROOT_B), action="kms:Decrypt")
        ),
        identity=(KMS_ALL,),
    ),
    Case(
        "allow-not-principal-allows-the-others",
        R_NOT_PRINCIPAL,
        ALLOW,
        request(),
        key=key_policy(stmt(not_principal=aws(BOB))),
    ),
    # ---- principals -----------------------------------------------------------------------------
    Case(
        "service-principal-calling-for-itself",
        R_SERVICE,
        ALLOW,
        request(principal=f"arn:aws:iam::{A}:user/ec2-svc", service_principal="ec2.amazonaws.com"),
        key=key_policy(stmt(principal={"Service": "ec2.amazonaws.com"})),
    ),
    Case(
        "other-service-principal",
        R_SERVICE,
        DENY,
        request(principal=f"arn:aws:iam::{A}:user/s3-svc", service_principal="s3.amazonaws.com"),
        key=key_policy(stmt(principal={"Service": "ec2.amazonaws.com"})),
    ),
    Case(
        "service-principal-not-a-plain-user",
        R_SERVICE,
        DENY,
        request(),
        key=key_policy(stmt(principal={"Service": "ec2.amazonaws.com"})),
    ),
    # ---- actions --------------------------------------------------------------------------------
    Case(
        "action-exact",
        R_ACTION,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:Decrypt")),
    ),
    Case(
        "action-case-insensitive",
        R_ACTION,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="KMS:decrypt")),
    ),
    Case(
        "action-prefix-wildcard",
        R_ACTION,
        ALLOW,
        request("kms:ReEncryptFrom"),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:Re*")),
    ),
    Case(
        "action-reencrypt-star-covers-to",
        R_ACTION,
        ALLOW,
        request("kms:ReEncryptTo"),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:ReEncrypt*")),
    ),
    Case(
        "action-question-mark",
        R_ACTION,
        ALLOW,
        request("kms:Encrypt"),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:?ncrypt")),
    ),
    Case(
        "action-star-every-service",
        R_ACTION,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="*")),
    ),
    Case(
        "action-other-service",
        R_ACTION,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="s3:*")),
    ),
    Case(
        "action-list",
        R_ACTION,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action=["kms:Encrypt", "kms:Decrypt"])),
    ),
    Case(
        "action-generate-data-key-star",
        R_ACTION,
        ALLOW,
        request("kms:GenerateDataKeyWithoutPlaintext"),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:GenerateDataKey*")),
    ),
    Case(
        "action-describe-star-not-decrypt",
        R_ACTION,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), action="kms:Describe*")),
    ),
    Case(
        "not-action-allows-the-rest",
        R_NOT_ACTION,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), not_action="kms:ScheduleKeyDeletion")),
    ),
    Case(
        "not-action-excludes-the-named",
        R_NOT_ACTION,
        DENY,
        request("kms:ScheduleKeyDeletion"),
        key=key_policy(stmt(principal=aws(ALICE), not_action="kms:ScheduleKeyDeletion")),
    ),
    Case(
        "iam-action-wildcard",
        R_ACTION,
        ALLOW,
        request("kms:GenerateDataKey"),
        identity=(allow_identity("kms:Generate*"),),
    ),
    # ---- resources ------------------------------------------------------------------------------
    Case(
        "key-policy-resource-star",
        R_KEY_RESOURCE,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource="*")),
    ),
    Case(
        "key-policy-resource-the-key",
        R_RESOURCE,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource=KEY)),
    ),
    Case(
        "key-policy-resource-another-key",
        R_RESOURCE,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource=OTHER_KEY)),
    ),
    Case(
        "resource-wildcard-key-id",
        R_RESOURCE,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource=f"arn:aws:kms:us-east-1:{A}:key/*")),
    ),
    Case(
        "resource-wildcard-other-region",
        R_RESOURCE,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource=f"arn:aws:kms:eu-west-1:{A}:key/*")),
    ),
    Case(
        "resource-wildcard-region-part",
        R_RESOURCE,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), resource=f"arn:aws:kms:us-*-1:{A}:key/*")),
    ),
    Case(
        "resource-alias-arn-is-not-the-key",
        R_RESOURCE,
        DENY,
        request(),
        identity=(allow_identity(resource=f"arn:aws:kms:us-east-1:{A}:alias/*"),),
    ),
    Case(
        "not-resource-excludes-the-key",
        R_NOT_RESOURCE,
        DENY,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), not_resource=KEY)),
    ),
    Case(
        "not-resource-other-key",
        R_NOT_RESOURCE,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ALICE), not_resource=OTHER_KEY)),
    ),
    Case(
        "iam-resource-list",
        R_RESOURCE,
        ALLOW,
        request(),
        identity=(allow_identity(resource=[OTHER_KEY, KEY]),),
    ),
    # ---- cross-account use ----------------------------------------------------------------------
    Case(
        "cross-account-root-and-iam",
        R_CROSS,
        ALLOW,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_A)), stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-key-only",
        R_CROSS,
        DENY,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        denial=DENIED_NO_IDENTITY_POLICY,
    ),
    Case(
        "cross-account-iam-only",
        R_CROSS,
        DENY,
        request(principal=CAROL_B),
        identity=(KMS_ALL,),
        denial=DENIED_NO_RESOURCE_POLICY,
    ),
    Case(
        "cross-account-role-named-no-iam",
        R_CROSS,
        DENY,
        request(principal=COPIER),
        key=key_policy(stmt(principal=aws(COPIER))),
        denial=DENIED_NO_IDENTITY_POLICY,
    ),
    Case(
        "cross-account-role-named-with-iam",
        R_CROSS,
        ALLOW,
        request(principal=COPIER),
        key=key_policy(stmt(principal=aws(COPIER))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-star-principal-no-iam",
        R_CROSS,
        DENY,
        request(principal=DAVE_C),
        key=key_policy(stmt(principal="*")),
    ),
    Case(
        "cross-account-star-principal-with-iam",
        R_CROSS,
        ALLOW,
        request(principal=DAVE_C),
        key=key_policy(stmt(principal="*")),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-disable-key-refused",
        R_CROSS_OPS,
        DENY,
        request("kms:DisableKey", principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
        denial=DENIED_CROSS_ACCOUNT,
    ),
    Case(
        "cross-account-put-key-policy-refused",
        R_CROSS_OPS,
        DENY,
        request("kms:PutKeyPolicy", principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
        denial=DENIED_CROSS_ACCOUNT,
    ),
    Case(
        "cross-account-describe-key",
        R_CROSS_OPS,
        ALLOW,
        request("kms:DescribeKey", principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-create-grant",
        R_CROSS_OPS,
        ALLOW,
        request("kms:CreateGrant", principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-reencrypt-from",
        R_CROSS_OPS,
        ALLOW,
        request("kms:ReEncryptFrom", principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-iam-names-own-keys-only",
        R_CROSS,
        DENY,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(allow_identity(resource=f"arn:aws:kms:*:{B}:key/*"),),
    ),
    Case(
        "cross-account-iam-names-the-key",
        R_CROSS,
        ALLOW,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(allow_identity(resource=KEY),),
    ),
    Case(
        "cross-account-other-root-named",
        R_CROSS,
        DENY,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_C))),
        identity=(KMS_ALL,),
    ),
    Case(
        "cross-account-iam-deny",
        R_EXPLICIT,
        XDENY,
        request(principal=CAROL_B),
        key=key_policy(stmt(principal=aws(ROOT_B))),
        identity=(KMS_ALL, identity_policy(stmt("Deny", action="kms:Decrypt"), name="d")),
    ),
    Case(
        "cross-account-grant-to-role",
        R_GRANT,
        ALLOW,
        request(principal=COPIER),
        grants=(grant(COPIER, ["Decrypt"]),),
    ),
    # ---- account-level actions ------------------------------------------------------------------
    Case(
        "create-key-iam-allow",
        R_ACCOUNT_LEVEL,
        ALLOW,
        request("kms:CreateKey", resource=None),
        key=None,
        identity=(KMS_ALL,),
    ),
    Case(
        "create-key-no-iam",
        R_ACCOUNT_LEVEL,
        DENY,
        request("kms:CreateKey", resource=None),
        key=None,
        denial=DENIED_NO_IDENTITY_POLICY,
    ),
    Case(
        "list-keys-list-star",
        R_ACCOUNT_LEVEL,
        ALLOW,
        request("kms:ListKeys", resource=None),
        key=None,
        identity=(allow_identity("kms:List*"),),
    ),
    Case(
        "generate-random-needs-its-action",
        R_ACCOUNT_LEVEL,
        DENY,
        request("kms:GenerateRandom", resource=None),
        key=None,
        identity=(allow_identity("kms:Encrypt"),),
    ),
    Case(
        "create-key-explicit-deny",
        R_EXPLICIT,
        XDENY,
        request("kms:CreateKey", resource=None),
        key=None,
        identity=(KMS_ALL, identity_policy(stmt("Deny", action="kms:CreateKey"))),
    ),
    Case(
        "create-key-key-resource-pattern",
        R_ACCOUNT_LEVEL,
        DENY,
        request("kms:CreateKey", resource=None),
        key=None,
        identity=(allow_identity(resource=f"arn:aws:kms:*:{A}:key/*"),),
    ),
    Case(
        "create-key-region-condition",
        R_ACCOUNT_LEVEL,
        ALLOW,
        request("kms:CreateKey", resource=None, conditions={"aws:RequestedRegion": "us-east-1"}),
        key=None,
        identity=(allow_identity(condition=IN_US_EAST_1),),
    ),
    # ---- String operators -----------------------------------------------------------------------
    Case(
        "string-equals",
        R_STRING,
        ALLOW,
        ctx(aws__ResourceTag_team="finance"),
        key=direct(StringEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-equals-mismatch",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="hr"),
        key=direct(StringEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-equals-case-sensitive-values",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="Finance"),
        key=direct(StringEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-equals-key-names-case-insensitive",
        R_STRING,
        ALLOW,
        ctx(AWS__RESOURCETAG_TEAM="x"),
        key=direct(StringEquals={"aws:resourcetag_team": "x"}),
    ),
    Case(
        "string-equals-any-listed-value",
        R_COND_OR,
        ALLOW,
        ctx(aws__ResourceTag_team="hr"),
        key=direct(StringEquals={"aws:ResourceTag_team": ["finance", "hr"]}),
    ),
    Case(
        "string-equals-missing-key",
        R_MISSING,
        DENY,
        ctx(),
        key=direct(StringEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-not-equals-different",
        R_STRING,
        ALLOW,
        ctx(aws__ResourceTag_team="hr"),
        key=direct(StringNotEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-not-equals-same",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="finance"),
        key=direct(StringNotEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-not-equals-missing-key",
        R_NEGATED_MISSING,
        ALLOW,
        ctx(),
        key=direct(StringNotEquals={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-not-equals-any-listed",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="hr"),
        key=direct(StringNotEquals={"aws:ResourceTag_team": ["finance", "hr"]}),
    ),
    Case(
        "string-equals-ignore-case",
        R_STRING,
        ALLOW,
        ctx(aws__ResourceTag_team="FINANCE"),
        key=direct(StringEqualsIgnoreCase={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-not-equals-ignore-case",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="FINANCE"),
        key=direct(StringNotEqualsIgnoreCase={"aws:ResourceTag_team": "finance"}),
    ),
    Case(
        "string-like-star",
        R_STRING,
        ALLOW,
        ctx(aws__ResourceTag_team="finance-eu"),
        key=direct(StringLike={"aws:ResourceTag_team": "finance-*"}),
    ),
    Case(
        "string-like-question-mark",
        R_STRING,
        ALLOW,
        ctx(aws__ResourceTag_team="team7"),
        key=direct(StringLike={"aws:ResourceTag_team": "team?"}),
    ),
    Case(
        "string-like-no-match",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="team42"),
        key=direct(StringLike={"aws:ResourceTag_team": "team?"}),
    ),
    Case(
        "string-not-like",
        R_STRING,
        DENY,
        ctx(aws__ResourceTag_team="finance-eu"),
        key=direct(StringNotLike={"aws:ResourceTag_team": "finance-*"}),
    ),
    Case(
        "string-not-like-missing-key",
        R_NEGATED_MISSING,
        ALLOW,
        ctx(),
        key=direct(StringNotLike={"aws:ResourceTag_team": "finance-*"}),
    ),
    Case(
        "two-keys-are-anded",
        R_COND_AND,
        DENY,
        ctx(aws__ResourceTag_team="a", aws__ResourceTag_env="x"),
        key=direct(StringEquals={"aws:ResourceTag_team": "a", "aws:ResourceTag_env": "prod"}),
    ),
    Case(
        "two-keys-both-hold",
        R_COND_AND,
        ALLOW,
        ctx(aws__ResourceTag_team="a", aws__ResourceTag_env="prod"),
        key=direct(StringEquals={"aws:ResourceTag_team": "a", "aws:ResourceTag_env": "prod"}),
    ),
    Case(
        "two-operators-are-anded",
        R_COND_AND,
        DENY,
        ctx(aws__ResourceTag_team="a", aws__SourceIp="192.0.2.1"),
        key=direct(
            StringEquals={"aws:ResourceTag_team": "a"}, IpAddress={"aws:SourceIp": "10.0.0.0/8"}
        ),
    ),
    # ---- ARN operators --------------------------------------------------------------------------
    Case(
        "arn-equals",
        R_ARN,
        ALLOW,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnEquals={"aws:PrincipalArn": ALICE}),
    ),
    Case(
        "arn-like-resource-wildcard",
        R_ARN,
        ALLOW,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnLike={"aws:PrincipalArn": f"arn:aws:iam::{A}:user/*"}),
    ),
    Case(
        "arn-like-account-wildcard",
        R_ARN,
        ALLOW,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnLike={"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}),
    ),
    Case(
        "arn-like-other-type",
        R_ARN,
        DENY,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnLike={"aws:PrincipalArn": f"arn:aws:iam::{A}:role/*"}),
    ),
    Case(
        "arn-equals-with-wildcard",
        R_ARN,
        ALLOW,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnEquals={"aws:PrincipalArn": f"arn:aws:iam::{A}:user/al*"}),
    ),
    Case(
        "arn-not-like-matching",
        R_ARN,
        DENY,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnNotLike={"aws:PrincipalArn": f"arn:aws:iam::{A}:user/*"}),
    ),
    Case(
        "arn-not-equals-missing-key",
        R_NEGATED_MISSING,
        ALLOW,
        ctx(),
        key=direct(ArnNotEquals={"aws:SourceArn": "arn:aws:s3:::bucket"}),
    ),
    Case(
        "arn-like-wildcard-stays-in-its-part",
        R_ARN,
        DENY,
        ctx(aws__PrincipalArn=ALICE),
        key=direct(ArnLike={"aws:PrincipalArn": "arn:aws:*:user/alice"}),
    ),
    # ---- Bool and Null --------------------------------------------------------------------------
    Case(
        "bool-true",
        R_BOOL,
        ALLOW,
        ctx(kms__GrantIsForAWSResource="true"),
        key=direct(Bool={"kms:GrantIsForAWSResource": True}),
    ),
    Case(
        "bool-string-value",
        R_BOOL,
        ALLOW,
        ctx(kms__GrantIsForAWSResource="true"),
        key=direct(Bool={"kms:GrantIsForAWSResource": "True"}),
    ),
    Case(
        "bool-mismatch",
        R_BOOL,
        DENY,
        ctx(kms__GrantIsForAWSResource="false"),
        key=direct(Bool={"kms:GrantIsForAWSResource": True}),
    ),
    Case(
        "bool-missing-key",
        R_MISSING,
        DENY,
        ctx(),
        key=direct(Bool={"aws:MultiFactorAuthPresent": True}),
    ),
    Case(
        "bool-if-exists-missing-key",
        R_IF_EXISTS,
        ALLOW,
        ctx(),
        key=direct(BoolIfExists={"aws:MultiFactorAuthPresent": False}),
    ),
    Case(
        "null-true-key-absent",
        R_NULL,
        ALLOW,
        ctx(),
        key=direct(Null={"kms:EncryptionContextKeys": True}),
    ),
    Case(
        "null-true-key-present",
        R_NULL,
        DENY,
        ctx(kms__EncryptionContextKeys=["a"]),
        key=direct(Null={"kms:EncryptionContextKeys": True}),
    ),
    Case(
        "null-false-key-present",
        R_NULL,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["a"]),
        key=direct(Null={"kms:EncryptionContextKeys": "false"}),
    ),
    Case(
        "null-false-key-absent",
        R_NULL,
        DENY,
        ctx(),
        key=direct(Null={"kms:EncryptionContextKeys": "false"}),
    ),
    # ---- Numeric operators ----------------------------------------------------------------------
    Case(
        "numeric-equals",
        R_NUMERIC,
        ALLOW,
        ctx(kms__RotationPeriodInDays="90"),
        key=direct(NumericEquals={"kms:RotationPeriodInDays": 90}),
    ),
    Case(
        "numeric-equals-decimal-forms",
        R_NUMERIC,
        ALLOW,
        ctx(kms__RotationPeriodInDays="90.0"),
        key=direct(NumericEquals={"kms:RotationPeriodInDays": "90"}),
    ),
    Case(
        "numeric-not-equals",
        R_NUMERIC,
        DENY,
        ctx(kms__RotationPeriodInDays="90"),
        key=direct(NumericNotEquals={"kms:RotationPeriodInDays": 90}),
    ),
    Case(
        "numeric-less-than",
        R_NUMERIC,
        ALLOW,
        ctx(kms__ScheduleKeyDeletionPendingWindowInDays="7"),
        key=direct(NumericLessThan={"kms:ScheduleKeyDeletionPendingWindowInDays": 8}),
    ),
    Case(
        "numeric-less-than-boundary",
        R_NUMERIC,
        DENY,
        ctx(kms__ScheduleKeyDeletionPendingWindowInDays="8"),
        key=direct(NumericLessThan={"kms:ScheduleKeyDeletionPendingWindowInDays": 8}),
    ),
    Case(
        "numeric-less-than-equals-boundary",
        R_NUMERIC,
        ALLOW,
        ctx(kms__ScheduleKeyDeletionPendingWindowInDays="8"),
        key=direct(NumericLessThanEquals={"kms:ScheduleKeyDeletionPendingWindowInDays": 8}),
    ),
    Case(
        "numeric-greater-than",
        R_NUMERIC,
        ALLOW,
        ctx(kms__RotationPeriodInDays="365"),
        key=direct(NumericGreaterThan={"kms:RotationPeriodInDays": 180}),
    ),
    Case(
        "numeric-greater-than-equals-boundary",
        R_NUMERIC,
        ALLOW,
        ctx(kms__RotationPeriodInDays="180"),
        key=direct(NumericGreaterThanEquals={"kms:RotationPeriodInDays": 180}),
    ),
    Case(
        "numeric-not-a-number",
        R_NUMERIC,
        DENY,
        ctx(kms__RotationPeriodInDays="soon"),
        key=direct(NumericGreaterThan={"kms:RotationPeriodInDays": 1}),
    ),
    # ---- Date operators -------------------------------------------------------------------------
    Case(
        "date-less-than",
        R_DATE,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateLessThan={"aws:CurrentTime": "2027-01-01T00:00:00Z"}),
    ),
    Case(
        "date-less-than-passed",
        R_DATE,
        DENY,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateLessThan={"aws:CurrentTime": "2026-01-01T00:00:00Z"}),
    ),
    Case(
        "date-greater-than",
        R_DATE,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateGreaterThan={"aws:CurrentTime": "2026-01-01"}),
    ),
    Case(
        "date-equals-epoch-and-iso",
        R_DATE,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateEquals={"aws:CurrentTime": 1780315200}),
    ),
    Case(
        "date-not-equals",
        R_DATE,
        DENY,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateNotEquals={"aws:CurrentTime": NOW}),
    ),
    Case(
        "date-less-than-equals-boundary",
        R_DATE,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateLessThanEquals={"aws:CurrentTime": NOW}),
    ),
    Case(
        "date-greater-than-equals-offset",
        R_DATE,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateGreaterThanEquals={"aws:CurrentTime": "2026-06-01T14:00:00+02:00"}),
    ),
    Case(
        "date-unparseable",
        R_DATE,
        DENY,
        ctx(aws__CurrentTime="yesterday"),
        key=direct(DateLessThan={"aws:CurrentTime": "2027-01-01T00:00:00Z"}),
    ),
    # ---- IP addresses ---------------------------------------------------------------------------
    Case(
        "ip-in-cidr",
        R_IP,
        ALLOW,
        ctx(aws__SourceIp="10.1.2.3"),
        key=direct(IpAddress={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    Case(
        "ip-outside-cidr",
        R_IP,
        DENY,
        ctx(aws__SourceIp="192.0.2.1"),
        key=direct(IpAddress={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    Case(
        "ip-single-address",
        R_IP,
        ALLOW,
        ctx(aws__SourceIp="203.0.113.7"),
        key=direct(IpAddress={"aws:SourceIp": "203.0.113.7"}),
    ),
    Case(
        "ip-any-of-several-ranges",
        R_COND_OR,
        ALLOW,
        ctx(aws__SourceIp="192.168.1.1"),
        key=direct(IpAddress={"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}),
    ),
    Case(
        "not-ip-address-outside",
        R_IP,
        ALLOW,
        ctx(aws__SourceIp="192.0.2.1"),
        key=direct(NotIpAddress={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    Case(
        "not-ip-address-inside",
        R_IP,
        DENY,
        ctx(aws__SourceIp="10.9.9.9"),
        key=direct(NotIpAddress={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    Case(
        "ip-v6-range",
        R_IP,
        ALLOW,
        ctx(aws__SourceIp="2001:db8::1"),
        key=direct(IpAddress={"aws:SourceIp": "2001:db8::/32"}),
    ),
    Case(
        "ip-v4-against-v6-range",
        R_IP,
        DENY,
        ctx(aws__SourceIp="10.0.0.1"),
        key=direct(IpAddress={"aws:SourceIp": "2001:db8::/32"}),
    ),
    Case(
        "not-ip-address-missing-key",
        R_NEGATED_MISSING,
        ALLOW,
        ctx(),
        key=direct(NotIpAddress={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    # ---- IfExists -------------------------------------------------------------------------------
    Case(
        "string-equals-if-exists-absent",
        R_IF_EXISTS,
        ALLOW,
        ctx(),
        key=direct(StringEqualsIfExists={"kms:ViaService": EC2_VIA}),
    ),
    Case(
        "string-equals-if-exists-mismatch",
        R_IF_EXISTS,
        DENY,
        ctx(kms__ViaService="s3.us-east-1.amazonaws.com"),
        key=direct(StringEqualsIfExists={"kms:ViaService": EC2_VIA}),
    ),
    Case(
        "string-equals-if-exists-match",
        R_IF_EXISTS,
        ALLOW,
        ctx(kms__ViaService=EC2_VIA),
        key=direct(StringEqualsIfExists={"kms:ViaService": EC2_VIA}),
    ),
    Case(
        "numeric-if-exists-absent",
        R_IF_EXISTS,
        ALLOW,
        ctx(),
        key=direct(NumericLessThanIfExists={"kms:RotationPeriodInDays": 100}),
    ),
    Case(
        "ip-address-if-exists-absent",
        R_IF_EXISTS,
        ALLOW,
        ctx(),
        key=direct(IpAddressIfExists={"aws:SourceIp": "10.0.0.0/8"}),
    ),
    # ---- set qualifiers and multivalued keys ----------------------------------------------------
    Case(
        "for-all-values-subset",
        R_FOR_ALL,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["a", "b"]),
        key=direct(**{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ABC}}),
    ),
    Case(
        "for-all-values-extra-value",
        R_FOR_ALL,
        DENY,
        ctx(kms__EncryptionContextKeys=["a", "z"]),
        key=direct(**{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}}),
    ),
    Case(
        "for-all-values-absent-key",
        R_FOR_ALL,
        ALLOW,
        ctx(),
        key=direct(**{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}),
    ),
    Case(
        "for-all-values-string-like",
        R_FOR_ALL,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["app:x", "app:y"]),
        key=direct(**{"ForAllValues:StringLike": {"kms:EncryptionContextKeys": "app:*"}}),
    ),
    Case(
        "for-all-values-string-not-equals",
        R_FOR_ALL,
        DENY,
        ctx(kms__EncryptionContextKeys=["a", "secret"]),
        key=direct(**{"ForAllValues:StringNotEquals": {"kms:EncryptionContextKeys": "secret"}}),
    ),
    Case(
        "for-any-value-one-matches",
        R_FOR_ANY,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["x", "b"]),
        key=direct(**{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "b"}}),
    ),
    Case(
        "for-any-value-none-matches",
        R_FOR_ANY,
        DENY,
        ctx(kms__EncryptionContextKeys=["x", "y"]),
        key=direct(**{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "b"}}),
    ),
    Case(
        "for-any-value-absent-key",
        R_FOR_ANY,
        DENY,
        ctx(),
        key=direct(**{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "b"}}),
    ),
    Case(
        "for-any-value-string-not-equals",
        R_FOR_ANY,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["a", "secret"]),
        key=direct(**{"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": "secret"}}),
    ),
    Case(
        "for-all-values-if-exists",
        R_FOR_ALL,
        ALLOW,
        ctx(),
        key=direct(**{"ForAllValues:StringEqualsIfExists": {"aws:TagKeys": "team"}}),
    ),
    Case(
        "multivalued-plain-any-value",
        R_MULTI,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["x", "b"]),
        key=direct(StringEquals={"kms:EncryptionContextKeys": "b"}),
    ),
    Case(
        "multivalued-plain-negated",
        R_MULTI,
        DENY,
        ctx(kms__EncryptionContextKeys=["x", "b"]),
        key=direct(StringNotEquals={"kms:EncryptionContextKeys": "b"}),
    ),
    # ---- KMS and AWS condition keys -------------------------------------------------------------
    Case(
        "kms-caller-account",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__CallerAccount=A),
        key=direct(StringEquals={"kms:CallerAccount": A}),
    ),
    Case(
        "kms-caller-account-other",
        R_KMS_KEYS,
        DENY,
        ctx(kms__CallerAccount=A),
        key=direct(StringEquals={"kms:CallerAccount": B}),
    ),
    Case(
        "kms-via-service",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__ViaService=EC2_VIA),
        key=direct(StringEquals={"kms:ViaService": EC2_VIA}),
    ),
    Case(
        "kms-via-service-direct-call",
        R_KMS_KEYS,
        DENY,
        ctx(),
        key=direct(StringEquals={"kms:ViaService": EC2_VIA}),
    ),
    Case(
        "kms-via-service-any-region",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__ViaService="ec2.eu-west-2.amazonaws.com"),
        key=direct(StringLike={"kms:ViaService": "ec2.*.amazonaws.com"}),
    ),
    Case(
        "kms-encryption-context-value",
        R_KMS_KEYS,
        ALLOW,
        ctx(**{"kms:EncryptionContext:department": "finance"}),
        key=direct(StringEquals={"kms:EncryptionContext:Department": "finance"}),
    ),
    Case(
        "kms-encryption-context-value-case-sensitive",
        R_KMS_KEYS,
        DENY,
        ctx(**{"kms:EncryptionContext:department": "Finance"}),
        key=direct(StringEquals={"kms:EncryptionContext:Department": "finance"}),
    ),
    Case(
        "kms-encryption-context-keys-required",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__EncryptionContextKeys=["order", "tenant"]),
        key=direct(**{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}}),
    ),
    Case(
        "kms-encryption-algorithm",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__EncryptionAlgorithm="SYMMETRIC_DEFAULT"),
        key=direct(StringEquals={"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    ),
    Case(
        "kms-encryption-algorithm-other",
        R_KMS_KEYS,
        DENY,
        ctx(kms__EncryptionAlgorithm="RSAES_OAEP_SHA_1"),
        key=direct(StringEquals={"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    ),
    Case(
        "kms-grant-operations-subset",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__GrantOperations=["Decrypt", "Encrypt"]),
        key=direct(
            **{
                "ForAllValues:StringEquals": {
                    "kms:GrantOperations": ["Decrypt", "Encrypt", "DescribeKey"]
                }
            }
        ),
    ),
    Case(
        "kms-grant-operations-too-many",
        R_KMS_KEYS,
        DENY,
        ctx(kms__GrantOperations=["Decrypt", "CreateGrant"]),
        key=direct(**{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}),
    ),
    Case(
        "kms-grant-is-for-aws-resource",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__GrantIsForAWSResource="true"),
        key=direct(Bool={"kms:GrantIsForAWSResource": "true"}),
    ),
    Case(
        "kms-request-alias",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__RequestAlias="alias/finance"),
        key=direct(StringEquals={"kms:RequestAlias": "alias/finance"}),
    ),
    Case(
        "kms-request-alias-by-key-id",
        R_KMS_KEYS,
        DENY,
        ctx(),
        key=direct(StringEquals={"kms:RequestAlias": "alias/finance"}),
    ),
    Case(
        "kms-resource-aliases",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__ResourceAliases=["alias/a", "alias/finance"]),
        key=direct(**{"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/fin*"}}),
    ),
    Case(
        "kms-key-spec",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__KeySpec="SYMMETRIC_DEFAULT"),
        key=direct(StringEquals={"kms:KeySpec": "SYMMETRIC_DEFAULT"}),
    ),
    Case(
        "kms-key-usage",
        R_KMS_KEYS,
        DENY,
        ctx(kms__KeyUsage="ENCRYPT_DECRYPT"),
        key=direct(StringEquals={"kms:KeyUsage": "SIGN_VERIFY"}),
    ),
    Case(
        "kms-key-origin",
        R_KMS_KEYS,
        ALLOW,
        ctx(kms__KeyOrigin="AWS_KMS"),
        key=direct(StringEquals={"kms:KeyOrigin": "AWS_KMS"}),
    ),
    Case(
        "aws-principal-arn",
        R_KMS_KEYS,
        ALLOW,
        ctx(aws__PrincipalArn=ALICE),
        key=key_policy(
            stmt(principal="*", condition={"ArnLike": {"aws:PrincipalArn": USERS_OF_A}})
        ),
    ),
    Case(
        "aws-principal-account",
        R_KMS_KEYS,
        DENY,
        ctx(aws__PrincipalAccount=A),
        key=key_policy(
            stmt(principal="*", condition={"StringEquals": {"aws:PrincipalAccount": B}})
        ),
    ),
    Case(
        "aws-source-ip",
        R_KMS_KEYS,
        ALLOW,
        ctx(aws__SourceIp="10.0.0.5"),
        key=direct(IpAddress={"aws:SourceIp": "10.0.0.0/24"}),
    ),
    Case(
        "aws-current-time",
        R_KMS_KEYS,
        ALLOW,
        ctx(aws__CurrentTime=NOW),
        key=direct(DateGreaterThan={"aws:CurrentTime": "2020-01-01T00:00:00Z"}),
    ),
    Case(
        "aws-resource-tag",
        R_KMS_KEYS,
        ALLOW,
        ctx(**{"aws:ResourceTag/team": "payments"}),
        identity=(allow_identity(condition=TEAM_PAYMENTS),),
    ),
    Case(
        "aws-resource-tag-missing",
        R_KMS_KEYS,
        DENY,
        ctx(),
        identity=(allow_identity(condition=TEAM_PAYMENTS),),
    ),
    Case(
        "aws-request-tag",
        R_KMS_KEYS,
        ALLOW,
        request(
            "kms:TagResource", conditions={"aws:RequestTag/team": "a", "aws:TagKeys": ["team"]}
        ),
        identity=(allow_identity(condition={"StringEquals": {"aws:RequestTag/team": "a"}}),),
    ),
    Case(
        "aws-tag-keys-for-all-values",
        R_KMS_KEYS,
        DENY,
        request("kms:TagResource", conditions={"aws:TagKeys": ["team", "owner"]}),
        identity=(allow_identity(condition={"ForAllValues:StringEquals": ONLY_TEAM_TAG}),),
    ),
    # ---- grants ---------------------------------------------------------------------------------
    Case(
        "grant-allows-its-grantee",
        R_GRANT,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(ROOT_A))),
        grants=(grant(ALICE, ["Decrypt"]),),
    ),
    Case(
        "grant-other-operation",
        R_GRANT,
        DENY,
        request("kms:Encrypt"),
        grants=(grant(ALICE, ["Decrypt"]),),
    ),
    Case(
        "grant-other-grantee",
        R_GRANT,
        DENY,
        request(principal=BOB),
        grants=(grant(ALICE, ["Decrypt"]),),
    ),
    Case(
        "grant-equals-constraint-met",
        R_GRANT_CONSTRAINT,
        ALLOW,
        request(encryption_context={"order": "42"}),
        grants=(grant(ALICE, ["Decrypt"], equals={"order": "42"}),),
    ),
    Case(
        "grant-equals-constraint-extra-pair",
        R_GRANT_CONSTRAINT,
        DENY,
        request(encryption_context={"order": "42", "tenant": "t"}),
        grants=(grant(ALICE, ["Decrypt"], equals={"order": "42"}),),
    ),
    Case(
        "grant-equals-keys-case-insensitive",
        R_GRANT_CONSTRAINT,
        ALLOW,
        request(encryption_context={"Order": "42"}),
        grants=(grant(ALICE, ["Decrypt"], equals={"order": "42"}),),
    ),
    Case(
        "grant-subset-constraint-met",
        R_GRANT_CONSTRAINT,
        ALLOW,
        request(encryption_context={"order": "42", "tenant": "t"}),
        grants=(grant(ALICE, ["Decrypt"], subset={"order": "42"}),),
    ),
    Case(
        "grant-subset-values-case-sensitive",
        R_GRANT_CONSTRAINT,
        DENY,
        request(encryption_context={"order": "ABC"}),
        grants=(grant(ALICE, ["Decrypt"], subset={"order": "abc"}),),
    ),
    Case(
        "grant-subset-without-context",
        R_GRANT_CONSTRAINT,
        DENY,
        request(),
        grants=(grant(ALICE, ["Decrypt"], subset={"order": "42"}),),
    ),
    Case(
        "grant-constraint-not-applied-to-describe",
        R_GRANT_CONSTRAINT,
        ALLOW,
        request("kms:DescribeKey"),
        grants=(grant(ALICE, ["DescribeKey"], equals={"order": "42"}),),
    ),
    Case(
        "grant-to-account-root-without-iam",
        R_GRANT,
        DENY,
        request(),
        grants=(grant(ROOT_A, ["Decrypt"]),),
    ),
    Case(
        "grant-to-account-root-with-iam",
        R_GRANT,
        ALLOW,
        request(),
        key=key_policy(stmt(principal=aws(BOB))),
        identity=(KMS_ALL,),
        grants=(grant(ROOT_A, ["Decrypt"]),),
    ),
    Case(
        "grant-create-grant-fewer-operations",
        R_GRANT_CREATE,
        ALLOW,
        request("kms:CreateGrant", new_grant=NewGrant(("Decrypt",), None)),
        grants=(grant(ALICE, ["Decrypt", "CreateGrant"]),),
    ),
    Case(
        "grant-create-grant-more-operations",
        R_GRANT_CREATE,
        DENY,
        request("kms:CreateGrant", new_grant=NewGrant(("Decrypt", "Encrypt"), None)),
        grants=(grant(ALICE, ["Decrypt", "CreateGrant"]),),
    ),
    Case(
        "grant-create-grant-looser-constraints",
        R_GRANT_CREATE,
        DENY,
        request("kms:CreateGrant", new_grant=NewGrant(("Decrypt",), None)),
        grants=(grant(ALICE, ["Decrypt", "CreateGrant"], subset={"tenant": "t"}),),
    ),
    Case(
        "grant-create-grant-stricter-constraints",
        R_GRANT_CREATE,
        ALLOW,
        request(
            "kms:CreateGrant",
            new_grant=NewGrant(
                ("Decrypt",), GrantConstraints.of(None, {"tenant": "t", "order": "1"})
            ),
        ),
        grants=(grant(ALICE, ["Decrypt", "CreateGrant"], subset={"tenant": "t"}),),
    ),
    Case(
        "retire-by-retiring-principal",
        R_RETIRE,
        ALLOW,
        request(
            "kms:RetireGrant",
            principal=CAROL_B,
            target_grant=grant(BOB, ["Decrypt"], retiring=CAROL_B),
        ),
        key=default_key_policy(),
    ),
    Case(
        "retire-by-grantee-with-retire-grant",
        R_RETIRE,
        ALLOW,
        request(
            "kms:RetireGrant", principal=BOB, target_grant=grant(BOB, ["Decrypt", "RetireGrant"])
        ),
    ),
    Case(
        "retire-by-grantee-without-retire-grant",
        R_RETIRE,
        DENY,
        request("kms:RetireGrant", principal=BOB, target_grant=grant(BOB, ["Decrypt"])),
    ),
    Case(
        "retire-by-key-account-policy",
        R_RETIRE,
        ALLOW,
        request("kms:RetireGrant", target_grant=grant(BOB, ["Decrypt"])),
        identity=(KMS_ALL,),
    ),
    # ---- the cross-account snapshot copy --------------------------------------------------------
    Case(
        "seed-copier-decrypts-via-ec2",
        R_SEED,
        ALLOW,
        request(principal=COPIER, conditions=VIA_EC2),
        key=SEED,
        identity=(COPIER_IAM,),
    ),
    Case(
        "seed-copier-creates-grant-via-ec2",
        R_SEED,
        ALLOW,
        request("kms:CreateGrant", principal=COPIER, conditions=VIA_EC2),
        key=SEED,
        identity=(COPIER_IAM,),
    ),
    Case(
        "seed-copier-calling-directly",
        R_SEED,
        DENY,
        request(principal=COPIER, conditions={"kms:CallerAccount": B}),
        key=SEED,
        identity=(COPIER_IAM,),
        denial=DENIED_NO_RESOURCE_POLICY,
    ),
    Case(
        "seed-copier-via-another-service",
        R_SEED,
        DENY,
        request(
            principal=COPIER, conditions={**VIA_EC2, "kms:ViaService": "s3.us-east-1.amazonaws.com"}
        ),
        key=SEED,
        identity=(COPIER_IAM,),
    ),
    Case(
        "seed-copier-via-ec2-in-another-region",
        R_SEED,
        DENY,
        request(
            principal=COPIER,
            conditions={**VIA_EC2, "kms:ViaService": "ec2.eu-west-1.amazonaws.com"},
        ),
        key=SEED,
        identity=(COPIER_IAM,),
    ),
    Case(
        "seed-copier-without-identity-policy",
        R_SEED,
        DENY,
        request(principal=COPIER, conditions=VIA_EC2),
        key=SEED,
    ),
    Case(
        "seed-other-user-of-b-via-ec2",
        R_SEED,
        DENY,
        request(principal=CAROL_B, conditions=VIA_EC2),
        key=SEED,
        identity=(KMS_ALL,),
    ),
    Case(
        "seed-copier-may-not-encrypt",
        R_SEED,
        DENY,
        request("kms:Encrypt", principal=COPIER, conditions=VIA_EC2),
        key=SEED,
        identity=(KMS_ALL,),
    ),
    Case(
        "seed-copier-may-not-reencrypt-from",
        R_SEED,
        DENY,
        request("kms:ReEncryptFrom", principal=COPIER, conditions=VIA_EC2),
        key=SEED,
        identity=(KMS_ALL,),
    ),
    Case(
        "seed-principal-of-a-third-account",
        R_SEED,
        DENY,
        request(principal=DAVE_C, conditions={**VIA_EC2, "kms:CallerAccount": "777788889999"}),
        key=SEED,
        identity=(KMS_ALL,),
    ),
    Case(
        "seed-key-account-keeps-its-access", R_SEED, ALLOW, request(), key=SEED, identity=(KMS_ALL,)
    ),
    Case(
        "seed-grant-lets-copier-reencrypt",
        R_SEED,
        ALLOW,
        request("kms:ReEncryptFrom", principal=COPIER),
        key=SEED,
        grants=(grant(COPIER, ["ReEncryptFrom"]),),
    ),
]


def test_the_table_has_at_least_150_cases_with_unique_ids() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_policy_evaluation(case: Case) -> None:
    decision = evaluate(
        case.request,
        key_policy=case.key,
        identity_policies=case.identity,
        grants=case.grants,
        explain=True,
    )

    assert decision.outcome == case.expected, f"{case.rule}: {decision.reason}"
    assert decision.allowed == (case.expected == ALLOW)
    if case.denial is not None:
        assert decision.denial == case.denial, decision.reason
    if decision.outcome == EXPLICIT_DENY:
        assert decision.statements and all(s.effect == "Deny" for s in decision.statements)
    if decision.allowed:
        assert decision.statements or decision.grants, "an allow names what allowed it"
