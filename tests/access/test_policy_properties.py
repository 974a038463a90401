"""Properties of the evaluator over random policies, grants and requests (hypothesis).

AWS's evaluation is monotone in the right directions: an explicit Deny can only take
access away, and so can removing an Allow. Adding a grant can only give access.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.grants import Grant
from domain.policy import PolicyDocument
from domain.policy_evaluation import AuthorizationRequest, evaluate
from tests.access.policy_builders import (
    ALICE,
    BOB,
    CAROL_B,
    COPIER,
    KEY,
    OTHER_KEY,
    ROOT_A,
    ROOT_B,
    A,
    aws,
    grant,
    identity_policy,
    key_policy,
    request,
    stmt,
)

PRINCIPALS = [ALICE, BOB, CAROL_B, COPIER]
STATEMENT_PRINCIPALS = [aws(ALICE), aws(BOB), aws(ROOT_A), aws(ROOT_B), aws(COPIER), "*"]
ACTIONS = [
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:DisableKey",
    "kms:RetireGrant",
]
ACTION_PATTERNS = [
    "kms:*",
    "*",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:Re*",
    "kms:Describe*",
    ["kms:Decrypt", "kms:CreateGrant"],
    "kms:Disable*",
]
OPERATIONS = [action.split(":")[1] for action in ACTIONS]
RESOURCES = ["*", KEY, OTHER_KEY, f"arn:aws:kms:*:{A}:key/*"]
CONDITIONS: list[dict[str, Any] | None] = [
    None,
    {"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}},
    {"StringEquals": {"kms:CallerAccount": A}},
    {"StringNotEquals": {"kms:EncryptionContext:tenant": "a"}},
    {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "order"]}},
    {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}},
    {"Null": {"kms:ViaService": "true"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"BoolIfExists": {"kms:GrantIsForAWSResource": "true"}},
]
CONTEXT_ENTRIES = {
    "kms:ViaService": "ec2.us-east-1.amazonaws.com",
    "kms:CallerAccount": A,
    "kms:EncryptionContext:tenant": "a",
    "kms:EncryptionContextKeys": ["tenant"],
    "aws:SourceIp": "10.1.1.1",
    "kms:GrantIsForAWSResource": "true",
}


@st.composite
def statements(draw: Any, *, effect: str | None = None, key: bool) -> dict[str, Any]:
    chosen_effect = effect or draw(st.sampled_from(["Allow", "Deny"]))
    kwargs: dict[str, Any] = {
        "resource": draw(st.sampled_from(RESOURCES)),
        "condition": draw(st.sampled_from(CONDITIONS)),
    }
    if draw(st.booleans()):
        kwargs["action"] = draw(st.sampled_from(ACTION_PATTERNS))
    else:
        kwargs["not_action"] = draw(st.sampled_from(ACTION_PATTERNS))
    if key:
        if draw(st.integers(0, 5)) == 0:
            kwargs["not_principal"] = draw(st.sampled_from(STATEMENT_PRINCIPALS[:-1]))
        else:
            kwargs["principal"] = draw(st.sampled_from(STATEMENT_PRINCIPALS))
    return stmt(chosen_effect, **kwargs)


# Never matches anything: keeps every document non-empty when statements are removed.
PADDING = stmt(principal=aws("arn:aws:iam::999999999999:root"), action="kms:Nothing")


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    key_statements = draw(st.lists(statements(key=True), max_size=4))
    identity_statements = draw(st.lists(statements(key=False), max_size=3))
    grants = [
        grant(
            draw(st.sampled_from([ALICE, BOB, CAROL_B, COPIER, ROOT_A])),
            draw(st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3)),
            grant_id=f"{number:064x}",
        )
        for number in range(draw(st.integers(0, 2)))
    ]
    principal = draw(st.sampled_from(PRINCIPALS))
    action = draw(st.sampled_from(ACTIONS))
    entries = draw(st.lists(st.sampled_from(sorted(CONTEXT_ENTRIES)), unique=True))
    conditions = {name: CONTEXT_ENTRIES[name] for name in entries}
    return {
        "key": key_statements,
        "identity": identity_statements,
        "grants": grants,
        "request": request(
            action,
            principal=principal,
            conditions=conditions,
            encryption_context={"tenant": "a"} if entries else None,
        ),
    }


def decide(
    key_statements: list[dict[str, Any]],
    identity_statements: list[dict[str, Any]],
    grants: list[Grant],
    authorization: AuthorizationRequest,
) -> bool:
    key: PolicyDocument = key_policy(PADDING, *key_statements)
    identity = [identity_policy(stmt(action="kms:Nothing"), *identity_statements)]
    return evaluate(
        authorization, key_policy=key, identity_policies=identity, grants=grants
    ).allowed


@settings(max_examples=150, deadline=None)
@given(scenarios(), statements(effect="Deny", key=True), st.booleans())
def test_adding_a_deny_never_widens_access(
    scenario: dict[str, Any], deny: dict[str, Any], to_key_policy: bool
) -> None:
    before = decide(scenario["key"], scenario["identity"], scenario["grants"], scenario["request"])
    if to_key_policy:
        after = decide(
            [*scenario["key"], deny], scenario["identity"], scenario["grants"], scenario["request"]
        )
    else:
        identity_deny = {k: v for k, v in deny.items() if k not in ("Principal", "NotPrincipal")}
        after = decide(
            scenario["key"],
            [*scenario["identity"], identity_deny],
            scenario["grants"],
            scenario["request"],
        )
    assert not after or before


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.data())
def test_removing_an_allow_never_widens_access(scenario: dict[str, Any], data: Any) -> None:
    before = decide(scenario["key"], scenario["identity"], scenario["grants"], scenario["request"])
    places = [("key", i) for i, s in enumerate(scenario["key"]) if s["Effect"] == "Allow"]
    places += [
        ("identity", i) for i, s in enumerate(scenario["identity"]) if s["Effect"] == "Allow"
    ]
    if not places:
        return
    where, index = data.draw(st.sampled_from(places))
    trimmed = {name: list(scenario[name]) for name in ("key", "identity")}
    del trimmed[where][index]
    after = decide(trimmed["key"], trimmed["identity"], scenario["grants"], scenario["request"])
    assert not after or before


@settings(max_examples=120, deadline=None)
@given(scenarios(), st.sampled_from([ALICE, BOB, CAROL_B, COPIER]), st.sampled_from(ACTIONS))
def test_adding_a_grant_never_narrows_access(
    scenario: dict[str, Any], grantee: str, operation: str
) -> None:
    before = decide(scenario["key"], scenario["identity"], scenario["grants"], scenario["request"])
    extra = grant(grantee, [operation.split(":")[1]], grant_id="f" * 64)
    after = decide(
        scenario["key"], scenario["identity"], [*scenario["grants"], extra], scenario["request"]
    )
    assert after or not before


@settings(max_examples=120, deadline=None)
@given(scenarios())
def test_an_explicit_deny_always_names_a_deny_statement(scenario: dict[str, Any]) -> None:
    key = key_policy(PADDING, *scenario["key"])
    identity = [identity_policy(stmt(action="kms:Nothing"), *scenario["identity"])]
    decision = evaluate(
        scenario["request"], key_policy=key, identity_policies=identity, grants=scenario["grants"]
    )
    if decision.outcome == "ExplicitDeny":
        assert decision.statements and all(s.effect == "Deny" for s in decision.statements)
    else:
        assert all(s.effect == "Allow" for s in decision.statements)
