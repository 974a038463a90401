"""One evaluator for every authorization decision: key policy, identity policies, grants.

Pure: the caller passes the request (who, what, on which key, with which context), the key
policy, the caller's identity policies and the key's grants; the answer is a Decision that
says whether the request is allowed and which statements or grants decided it.

The rules, as AWS KMS applies them (KMS Developer Guide, "Determining access to a KMS key";
IAM User Guide, "Policy evaluation logic" and "Cross-account policy evaluation logic"):

1. An explicit ``Deny`` that applies (in the key policy or an identity policy) denies, whatever
   else allows. Grants cannot override it.
2. A key policy ``Allow`` naming the caller itself (its ARN, ``"*"``, or its service principal)
   allows a caller of the key's own account.
3. A key policy ``Allow`` naming an account (``arn:aws:iam::<account>:root`` or the bare id)
   delegates to that account's identity policies: the caller of that account is allowed when
   one of its identity policies also allows the action on the key.
4. A caller of another account needs both: a key policy ``Allow`` naming it or its account,
   and an identity policy ``Allow``. Operations AWS does not offer across accounts
   (management operations) are denied to other accounts whatever the policies say.
5. A grant allows its operations to its grantee (under its encryption-context constraints);
   a grant naming an account root delegates to that account's identity policies.
6. Account-level actions (CreateKey, ListKeys, GenerateRandom, ...) have no key: the
   caller's identity policies decide.
7. Otherwise the request is implicitly denied.

A RetireGrant request for a grant is also allowed to the grant's retiring principal, and to
its grantee when the grant includes RetireGrant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from domain.conditions import RequestContext, arn_match, condition_holds, glob_match
from domain.grants import Grant, GrantConstraints
from domain.policy import DENY, PolicyDocument, PrincipalSet, Statement

ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"

# Why a request was denied; each maps to one of AWS's AccessDenied message shapes.
DENIED_EXPLICIT_RESOURCE = "explicit-deny-resource-policy"
DENIED_EXPLICIT_IDENTITY = "explicit-deny-identity-policy"
DENIED_NO_RESOURCE_POLICY = "no-resource-policy-allows"
DENIED_NO_IDENTITY_POLICY = "no-identity-policy-allows"
DENIED_CROSS_ACCOUNT = "not-a-cross-account-operation"

# Operations AWS KMS offers on keys of other accounts (reference §16, "x-acct: yes").
CROSS_ACCOUNT_ACTIONS = frozenset(
    f"kms:{name}"
    for name in (
        "Encrypt",
        "Decrypt",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "DescribeKey",
        "GetKeyRotationStatus",
        "CreateGrant",
        "ListGrants",
        "RetireGrant",
        "RevokeGrant",
        "Sign",
        "Verify",
        "GenerateMac",
        "VerifyMac",
        "GetPublicKey",
        "DeriveSharedSecret",
        "Encapsulate",
        "Decapsulate",
    )
)

KEY_POLICY_SOURCE = "key policy"
PRINCIPAL_SHOWN = {
    "caller": "names the caller",
    "account": "names the caller's account",
    "implicit": "the caller's own policy",
}


@dataclass(frozen=True)
class NewGrant:
    """What a CreateGrant request asks for (a grant may only pass on what it holds)."""

    operations: tuple[str, ...]
    constraints: GrantConstraints | None


@dataclass(frozen=True)
class AuthorizationRequest:
    """One request, as the evaluator sees it."""

    principal_arn: str
    principal_account: str
    action: str  # "kms:Encrypt"
    resource_arn: str  # the key ARN, or "*" for account-level actions
    resource_account: str | None  # the key's account; None for account-level actions
    context: RequestContext = field(default_factory=dict)  # lower-cased condition keys
    encryption_context: Mapping[str, str] | None = None
    service_principal: str | None = None  # set when a trusted service signs for itself
    new_grant: NewGrant | None = None  # CreateGrant
    target_grant: Grant | None = None  # RetireGrant
    # An assumed-role session's role: a policy or grant naming the role names its sessions.
    session_issuer_arn: str | None = None

    def names_caller(self, arn: str | None) -> bool:
        """Whether ``arn`` is the caller: its own ARN, or its session's role."""
        return arn is not None and (
            arn == self.principal_arn
            or (self.session_issuer_arn is not None and arn == self.session_issuer_arn)
        )

    @property
    def cross_account(self) -> bool:
        return self.resource_account is not None and self.resource_account != (
            self.principal_account
        )

    @property
    def operation(self) -> str:
        return self.action.split(":", 1)[-1]

    @cached_property
    def account_root(self) -> str:
        """The root ARN of the caller's account."""
        return _root(self.principal_arn, self.principal_account)


@dataclass(frozen=True)
class StatementRef:
    source: str  # "key policy" or "identity policy <name>"
    index: int
    sid: str | None
    effect: str

    def describe(self) -> str:
        label = f"'{self.sid}'" if self.sid else f"#{self.index + 1}"
        return f"{self.effect} statement {label} of the {self.source}"


@dataclass(frozen=True)
class StatementTrace:
    """How one statement fared: which parts matched, and whether it applies."""

    statement: StatementRef
    principal: str  # "caller", "caller's account", "not named", or "implicit"
    action_matches: bool
    resource_matches: bool
    failed_condition: str | None
    applies: bool


@dataclass(frozen=True)
class GrantTrace:
    grant_id: str
    name: str
    grantee_principal: str
    applies: bool
    why_not: str | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    outcome: str  # ALLOWED, EXPLICIT_DENY or IMPLICIT_DENY
    reason: str  # one sentence, for people
    denial: str | None = None  # one of the DENIED_* codes
    statements: tuple[StatementRef, ...] = ()  # the statements that decided it
    grants: tuple[str, ...] = ()  # the grant ids that decided it
    via: str | None = None  # "retiring principal" / "grantee" for RetireGrant
    trace: tuple[StatementTrace, ...] = ()  # every statement (explain=True only)
    grant_trace: tuple[GrantTrace, ...] = ()


def denial_message(request: AuthorizationRequest, decision: Decision) -> str:
    """AWS's AccessDeniedException message for a denied request."""
    action = request.action
    head = (
        f"User: {request.principal_arn} is not authorized to perform: {action} on resource: "
        f"{request.resource_arn}"
    )
    if decision.denial == DENIED_EXPLICIT_RESOURCE:
        return f"{head} with an explicit deny in a resource-based policy"
    if decision.denial == DENIED_EXPLICIT_IDENTITY:
        return f"{head} with an explicit deny in an identity-based policy"
    if decision.denial == DENIED_NO_IDENTITY_POLICY:
        return f"{head} because no identity-based policy allows the {action} action"
    if decision.denial == DENIED_CROSS_ACCOUNT:
        return f"{head} because {action} is not available on keys of another account"
    return f"{head} because no resource-based policy allows the {action} action"


# ==== matching one statement ================================================================
def _principal_match(principals: PrincipalSet, request: AuthorizationRequest) -> str | None:
    """ "caller" when the set names the caller, "account" when it names its account root."""
    if principals.any or request.principal_arn in principals.aws:
        return "caller"
    if request.session_issuer_arn is not None and request.session_issuer_arn in principals.aws:
        return "caller"
    if request.service_principal is not None and request.service_principal in principals.services:
        return "caller"
    if principals.aws and request.account_root in principals.aws:
        return "account"
    return None


def _root(principal_arn: str, account_id: str) -> str:
    partition = principal_arn.split(":", 2)[1] if principal_arn.startswith("arn:") else "aws"
    return f"arn:{partition}:iam::{account_id}:root"


def _statement_principal(statement: Statement, request: AuthorizationRequest) -> str | None:
    if statement.principal is not None:
        return _principal_match(statement.principal, request)
    if statement.not_principal is not None:
        # NotPrincipal applies to everyone it does not name (by ARN or by account root).
        excluded = _principal_match(statement.not_principal, request)
        return None if excluded is not None else "caller"
    return "implicit"  # identity policies: the statement is the caller's own


def _action_matches(statement: Statement, action: str) -> bool:
    hit = False
    for pattern in statement.actions:
        if glob_match(pattern, action, ignore_case=True):
            hit = True
            break
    return not hit if statement.not_action else hit


def _resource_matches(statement: Statement, resource: str) -> bool:
    hit = False
    for pattern in statement.resources:
        if pattern == "*" or (resource != "*" and arn_match(pattern, resource)):
            hit = True
            break
    return not hit if statement.not_resource else hit


def _failed_condition(statement: Statement, context: RequestContext) -> str | None:
    for condition in statement.conditions:
        if not condition_holds(condition, context):
            return condition.describe()
    return None


class _Found:
    """Statements that apply, sorted by what they can do."""

    __slots__ = (
        "identity_allows",
        "identity_denies",
        "key_allows_account",
        "key_allows_caller",
        "resource_denies",
        "trace",
    )

    def __init__(self) -> None:
        self.resource_denies: list[StatementRef] = []
        self.identity_denies: list[StatementRef] = []
        self.key_allows_caller: list[StatementRef] = []
        self.key_allows_account: list[StatementRef] = []
        self.identity_allows: list[StatementRef] = []
        self.trace: list[StatementTrace] = []


# Statement references, built once per parsed document (documents are cached by text).
_REFS: dict[int, tuple[PolicyDocument, tuple[StatementRef, ...]]] = {}


def _refs(policy: PolicyDocument) -> tuple[StatementRef, ...]:
    found = _REFS.get(id(policy))
    if found is not None and found[0] is policy:
        return found[1]
    refs = tuple(StatementRef(policy.source, s.index, s.sid, s.effect) for s in policy.statements)
    if len(_REFS) > 8192:
        _REFS.clear()
    _REFS[id(policy)] = (policy, refs)
    return refs


def _scan(
    policy: PolicyDocument,
    request: AuthorizationRequest,
    found: _Found,
    *,
    key_policy: bool,
    explain: bool,
) -> None:
    for statement, ref in zip(policy.statements, _refs(policy), strict=True):
        principal = _statement_principal(statement, request)
        action_ok = _action_matches(statement, request.action)
        resource_ok = _resource_matches(statement, request.resource_arn)
        failed = None
        if (principal is not None and action_ok and resource_ok) or explain:
            failed = _failed_condition(statement, request.context)
        applies = principal is not None and action_ok and resource_ok and failed is None
        if explain:
            shown = PRINCIPAL_SHOWN.get(principal or "", "not named")
            found.trace.append(StatementTrace(ref, shown, action_ok, resource_ok, failed, applies))
        if not applies:
            continue
        if statement.effect == DENY:
            (found.resource_denies if key_policy else found.identity_denies).append(ref)
        elif not key_policy:
            found.identity_allows.append(ref)
        elif principal == "account":
            found.key_allows_account.append(ref)
        else:
            found.key_allows_caller.append(ref)


# ==== grants =================================================================================
def _grant_applies(
    grant: Grant, request: AuthorizationRequest, identity_allows: bool
) -> tuple[bool, str | None]:
    operation = request.operation
    if request.names_caller(grant.grantee_principal):
        pass
    elif grant.grantee_principal == _root(request.principal_arn, request.principal_account):
        if not identity_allows:
            return False, "names the caller's account, and no identity policy allows the action"
    else:
        return False, "the grantee is another principal"
    if operation not in grant.operations:
        return False, f"does not include {operation}"
    if not grant.allows_operation(operation, request.encryption_context):
        return False, "its encryption context constraint is not met"
    if operation == "CreateGrant" and request.new_grant is not None:
        wanted = set(request.new_grant.operations)
        if not wanted <= set(grant.operations):
            return False, "the new grant asks for operations this grant does not hold"
        constraints = request.new_grant.constraints
        if not (constraints or GrantConstraints()).at_least_as_strict_as(grant.constraints):
            return False, "the new grant's constraints are looser than this grant's"
    return True, None


# ==== the decision ===========================================================================
def evaluate(
    request: AuthorizationRequest,
    *,
    key_policy: PolicyDocument | None,
    identity_policies: Sequence[PolicyDocument] = (),
    grants: Sequence[Grant] = (),
    explain: bool = False,
) -> Decision:
    """Decide ``request``. ``key_policy`` is None for account-level actions (no key)."""
    found = _Found()
    if key_policy is not None:
        _scan(key_policy, request, found, key_policy=True, explain=explain)
    for policy in identity_policies:
        _scan(policy, request, found, key_policy=False, explain=explain)
    trace = tuple(found.trace)

    def decide(allowed: bool, outcome: str, reason: str, **kwargs: Any) -> Decision:
        return Decision(allowed, outcome, reason, trace=trace, **kwargs)

    # 1. An explicit deny wins.
    for denies, code in (
        (found.resource_denies, DENIED_EXPLICIT_RESOURCE),
        (found.identity_denies, DENIED_EXPLICIT_IDENTITY),
    ):
        if denies:
            reason = f"explicitly denied by the {denies[0].describe()}"
            return decide(False, EXPLICIT_DENY, reason, denial=code, statements=tuple(denies))
    identity_allows = bool(found.identity_allows)

    # 6. Account-level actions: identity policies alone.
    if key_policy is None:
        if identity_allows:
            reason = f"allowed by the {found.identity_allows[0].describe()}"
            return decide(True, ALLOWED, reason, statements=tuple(found.identity_allows))
        reason = "no identity policy of the caller allows the action"
        return decide(False, IMPLICIT_DENY, reason, denial=DENIED_NO_IDENTITY_POLICY)

    if request.cross_account and request.action not in CROSS_ACCOUNT_ACTIONS:
        reason = f"{request.action} cannot be used on a key of another account"
        return decide(False, IMPLICIT_DENY, reason, denial=DENIED_CROSS_ACCOUNT)

    # RetireGrant: the grant itself names who may retire it.
    target = request.target_grant
    if target is not None and request.action == "kms:RetireGrant":
        retired = (target.grant_id,)
        if request.names_caller(target.retiring_principal):
            reason = f"the caller is the retiring principal of grant {target.grant_id}"
            return decide(True, ALLOWED, reason, grants=retired, via="retiring principal")
        if request.names_caller(target.grantee_principal) and ("RetireGrant" in target.operations):
            reason = f"grant {target.grant_id} lets its grantee retire it"
            return decide(True, ALLOWED, reason, grants=retired, via="grantee")
        if target.retiring_principal == request.account_root and identity_allows:
            reason = (
                f"grant {target.grant_id} names the caller's account as retiring principal, "
                "and an identity policy allows it"
            )
            statements = tuple(found.identity_allows)
            return decide(True, ALLOWED, reason, grants=retired, statements=statements)

    key_allows = found.key_allows_caller or found.key_allows_account
    if not request.cross_account:
        # 2. The key policy names the caller.
        if found.key_allows_caller:
            reason = f"allowed by the {found.key_allows_caller[0].describe()}"
            return decide(True, ALLOWED, reason, statements=tuple(found.key_allows_caller))
        # 3. The key policy delegates to the account's identity policies.
        if found.key_allows_account and identity_allows:
            refs = (found.key_allows_account[0], found.identity_allows[0])
            reason = (
                f"the {refs[0].describe()} delegates to the account's identity policies, "
                f"and the {refs[1].describe()} allows it"
            )
            return decide(True, ALLOWED, reason, statements=refs)
    elif key_allows and identity_allows:
        # 4. Another account: the key policy and the caller's identity policy must both allow.
        refs = (key_allows[0], found.identity_allows[0])
        reason = (
            f"cross-account: the {refs[0].describe()} and the {refs[1].describe()} both allow it"
        )
        return decide(True, ALLOWED, reason, statements=refs)

    # 5. Grants. (A grant's RetireGrant operation covers only that grant: see above.)
    grant_traces: list[GrantTrace] = []
    for grant in grants if request.action != "kms:RetireGrant" else ():
        applies, why_not = _grant_applies(grant, request, identity_allows)
        if explain:
            grant_traces.append(
                GrantTrace(grant.grant_id, grant.name, grant.grantee_principal, applies, why_not)
            )
        if applies:
            reason = f"allowed by grant {grant.grant_id}"
            return decide(
                True, ALLOWED, reason, grants=(grant.grant_id,), grant_trace=tuple(grant_traces)
            )

    # 7. Implicit deny: say which half was missing.
    if key_allows:
        reason = (
            "the key policy allows the caller's account, but no identity policy of the caller "
            "allows the action"
        )
        denial = DENIED_NO_IDENTITY_POLICY
    else:
        reason = "no key policy statement and no grant allows the caller"
        denial = DENIED_NO_RESOURCE_POLICY
    return decide(False, IMPLICIT_DENY, reason, denial=denial, grant_trace=tuple(grant_traces))
