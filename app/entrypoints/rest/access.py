"""REST routes (/v1) of identity and access: the admin API for accounts, users, roles, their
policies and access keys; grants; the explain API; and the denial log.

Thin, like app/entrypoints/rest/app.py: each route turns its body into plain values, calls one use
case (IdentityAdministration, or a KeyService grant or explain use case) and shapes the answer.
Authorization happens behind them, never here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from app.bootstrap import Runtime
from app.entrypoints.rest.deps import ERROR_RESPONSES, CallerDep, LedgerRoute, ServiceDep
from app.entrypoints.rest.schemas import MAX_KEY_ID, MAX_POLICY, EncryptionContext, RequestBody
from app.usecases.explain import ExplainQuery
from app.usecases.grants import GrantEntry
from app.usecases.identities import IdentityAdministration, principal_public
from domain.grants import GRANT_OPERATIONS, GrantConstraints

router = APIRouter(prefix="/v1", route_class=LedgerRoute, responses=ERROR_RESPONSES)
NO_CONTENT: dict[str, Any] = {"status_code": 204, "response_class": Response}
GrantOperation = Literal[GRANT_OPERATIONS]  # type: ignore[valid-type]


async def administration(request: Request) -> IdentityAdministration:
    runtime: Runtime = request.app.state.runtime
    return IdentityAdministration(
        runtime.identity, runtime.service.access, runtime.settings.default_account_id
    )


AdminDep = Annotated[IdentityAdministration, Depends(administration)]


# ==== bodies ==============================================================================
class AccountCreate(RequestBody):
    account_id: str = Field(pattern=r"^\d{12}$", examples=["444455556666"])
    name: str = Field("", max_length=64)


class AccountPublic(BaseModel):
    account_id: str
    root_arn: str


class PrincipalCreate(RequestBody):
    account_id: str = Field(pattern=r"^\d{12}$")
    name: str = Field(min_length=1, max_length=64, examples=["app"])
    type: Literal["user", "role"] = "user"
    policies: dict[str, str] = Field(
        default_factory=dict, description="Inline identity policies by name (JSON text)."
    )
    trust_policy: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_POLICY,
        description="Roles only: who may assume the role (STS AssumeRole), as on IAM.",
    )
    max_session_duration: int | None = Field(
        None, ge=3600, le=43200, description="Roles only: the longest session, in seconds."
    )


class TrustPolicyPut(RequestBody):
    policy: str = Field(min_length=1, max_length=MAX_POLICY)
    max_session_duration: int | None = Field(None, ge=3600, le=43200)


class PrincipalPublic(BaseModel):
    arn: str
    account_id: str
    type: str
    name: str
    policies: dict[str, str]
    service_name: str | None = Field(
        None, description="Set when the principal is a trusted service principal."
    )
    trust_policy: str | None = None
    max_session_duration: int | None = None


class PolicyPut(RequestBody):
    policy: str = Field(min_length=1, max_length=MAX_POLICY)


class ServiceDesignation(RequestBody):
    service_name: str | None = Field(
        description="e.g. ec2.amazonaws.com; null to stop trusting the principal as a service."
    )


class AccessKeyPublic(BaseModel):
    access_key_id: str
    secret_access_key: str = Field(description="Shown only in this answer.")


class ExplainRequest(RequestBody):
    principal_arn: str = Field(examples=["arn:aws:iam::444455556666:role/snapshot-copier"])
    action: str = Field(min_length=1, max_length=128, examples=["kms:Decrypt"])
    key_id: str | None = Field(None, min_length=1, max_length=MAX_KEY_ID)
    encryption_context: EncryptionContext | None = None
    encryption_algorithm: str | None = None
    source_ip: str | None = None
    via_service: str | None = Field(None, examples=["ec2.amazonaws.com"])
    region: str | None = None
    grant_operations: list[GrantOperation] | None = None
    condition_keys: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Further condition keys, as AWS names them."
    )
    at: datetime | None = Field(
        None, strict=False, description="Answer as of this past time (ISO 8601)."
    )


class StatementPublic(BaseModel):
    source: str
    index: int
    sid: str | None
    effect: str


class StatementTracePublic(StatementPublic):
    principal: str
    action_matches: bool
    resource_matches: bool
    failed_condition: str | None
    applies: bool


class GrantTracePublic(BaseModel):
    grant_id: str
    name: str
    grantee_principal: str
    applies: bool
    why_not: str | None


class ExplainResult(BaseModel):
    allowed: bool
    decision: str = Field(description="Allow, ExplicitDeny or ImplicitDeny.")
    reason: str
    message: str | None = Field(None, description="AWS's AccessDenied message, when denied.")
    principal_arn: str
    principal_found: bool
    action: str
    resource_arn: str
    as_of: datetime
    key_version: int | None
    statements: list[StatementPublic] = Field(description="The statements that decided it.")
    grants: list[str] = Field(description="The grants that decided it.")
    evaluated: list[StatementTracePublic]
    evaluated_grants: list[GrantTracePublic]
    context: dict[str, list[str]]


class ConstraintsBody(RequestBody):
    encryption_context_equals: EncryptionContext | None = None
    encryption_context_subset: EncryptionContext | None = None


class GrantCreate(RequestBody):
    key_id: str = Field(min_length=1, max_length=MAX_KEY_ID)
    grantee_principal: str = Field(min_length=1, max_length=256)
    operations: list[GrantOperation] = Field(min_length=1)
    retiring_principal: str | None = Field(None, min_length=1, max_length=256)
    constraints: ConstraintsBody | None = None
    name: str | None = Field(None, min_length=1, max_length=256, pattern=r"^[a-zA-Z0-9:/_-]+$")
    dry_run: bool = False


class GrantCreatedPublic(BaseModel):
    grant_id: str
    grant_token: str


class GrantPublic(BaseModel):
    key_arn: str
    grant_id: str
    name: str
    creation_date: datetime | None
    grantee_principal: str
    retiring_principal: str | None
    issuing_account: str
    operations: list[str]
    constraints: dict[str, dict[str, str]] | None


class GrantList(BaseModel):
    grants: list[GrantPublic]
    next_marker: str | None = None
    truncated: bool = False


class GrantRetire(RequestBody):
    grant_token: str | None = Field(None, min_length=1, max_length=8192)
    key_id: str | None = Field(None, min_length=1, max_length=MAX_KEY_ID)
    grant_id: str | None = Field(None, min_length=1, max_length=128)
    dry_run: bool = False


class DenialPublic(BaseModel):
    denied_at: datetime
    request_id: str
    principal_arn: str
    account_id: str
    action: str
    resource_arn: str
    error_code: str
    message: str
    source_ip: str
    access_key_id: str
    via_service: str


class DenialList(BaseModel):
    denials: list[DenialPublic]


# ==== identities ============================================================================
@router.post("/iam/accounts", status_code=201, tags=["identity"])
async def create_account(body: AccountCreate, caller: CallerDep, admin: AdminDep) -> AccountPublic:
    """Create an account (operator account only)."""
    root = await admin.create_account(caller, body.account_id, body.name)
    return AccountPublic(account_id=body.account_id, root_arn=root)


@router.post("/iam/principals", status_code=201, tags=["identity"])
async def create_principal(
    body: PrincipalCreate, caller: CallerDep, admin: AdminDep
) -> PrincipalPublic:
    """Create a user or role. It may do nothing until an identity policy allows it."""
    arn = await admin.create_principal(
        caller,
        body.account_id,
        body.name,
        body.type,
        body.policies or None,
        trust_policy=body.trust_policy,
        max_session_duration=body.max_session_duration,
    )
    return PrincipalPublic(**principal_public(await admin.get_principal(caller, arn)))


@router.put("/iam/principals/{arn:path}/policies/{policy_name}", **NO_CONTENT, tags=["identity"])
async def put_principal_policy(
    arn: str, policy_name: str, body: PolicyPut, caller: CallerDep, admin: AdminDep
) -> None:
    """Create or replace an inline identity policy."""
    await admin.put_policy(caller, arn, policy_name, body.policy)


@router.delete("/iam/principals/{arn:path}/policies/{policy_name}", **NO_CONTENT, tags=["identity"])
async def delete_principal_policy(
    arn: str, policy_name: str, caller: CallerDep, admin: AdminDep
) -> None:
    await admin.delete_policy(caller, arn, policy_name)


@router.put("/iam/principals/{arn:path}/trust-policy", **NO_CONTENT, tags=["identity"])
async def put_trust_policy(
    arn: str, body: TrustPolicyPut, caller: CallerDep, admin: AdminDep
) -> None:
    """Set who may assume a role (STS AssumeRole), and its longest session."""
    await admin.set_trust_policy(caller, arn, body.policy, body.max_session_duration)


@router.put("/iam/principals/{arn:path}/service", **NO_CONTENT, tags=["identity"])
async def designate_service(
    arn: str, body: ServiceDesignation, caller: CallerDep, admin: AdminDep
) -> None:
    """Trust the principal as a service that may act on behalf of others (operator only)."""
    await admin.designate_service(caller, arn, body.service_name)


@router.post("/iam/principals/{arn:path}/access-keys", status_code=201, tags=["identity"])
async def create_access_key(arn: str, caller: CallerDep, admin: AdminDep) -> AccessKeyPublic:
    access_key_id, secret = await admin.create_access_key(caller, arn)
    return AccessKeyPublic(access_key_id=access_key_id, secret_access_key=secret)


@router.post("/iam/access-keys/{access_key_id}/deactivate", **NO_CONTENT, tags=["identity"])
async def deactivate_access_key(access_key_id: str, caller: CallerDep, admin: AdminDep) -> None:
    await admin.deactivate_access_key(caller, access_key_id)


@router.get("/iam/principals/{arn:path}", tags=["identity"])
async def get_principal(arn: str, caller: CallerDep, admin: AdminDep) -> PrincipalPublic:
    return PrincipalPublic(**principal_public(await admin.get_principal(caller, arn)))


# ==== explain and the denial log =============================================================
@router.post("/authz/explain", tags=["access"])
async def explain(body: ExplainRequest, caller: CallerDep, service: ServiceDep) -> ExplainResult:
    """Would ``principal_arn`` be allowed ``action`` on the key, and why (or as of ``at``)?"""
    query = ExplainQuery(
        principal_arn=body.principal_arn,
        action=body.action,
        key_id=body.key_id,
        encryption_context=body.encryption_context,
        algorithm=body.encryption_algorithm,
        source_ip=body.source_ip,
        via_service=body.via_service,
        region=body.region,
        grant_operations=body.grant_operations,
        conditions=body.condition_keys,
        at=body.at,
    )
    answer = await service.explain.explain_access(caller, query)
    decision = answer.decision
    return ExplainResult(
        allowed=decision.allowed,
        decision=decision.outcome,
        reason=decision.reason,
        message=answer.message,
        principal_arn=answer.principal_arn,
        principal_found=answer.principal_found,
        action=answer.action,
        resource_arn=answer.resource_arn,
        as_of=answer.as_of,
        key_version=answer.key_version,
        statements=[StatementPublic(**vars(s)) for s in decision.statements],
        grants=list(decision.grants),
        evaluated=[
            StatementTracePublic(
                **vars(t.statement),
                principal=t.principal,
                action_matches=t.action_matches,
                resource_matches=t.resource_matches,
                failed_condition=t.failed_condition,
                applies=t.applies,
            )
            for t in decision.trace
        ],
        evaluated_grants=[GrantTracePublic(**vars(g)) for g in decision.grant_trace],
        context=answer.context,
    )


@router.get("/authz/denials", tags=["access"])
async def list_denials(
    caller: CallerDep,
    admin: AdminDep,
    principal_arn: str | None = None,
    resource_arn: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DenialList:
    """Denied requests, newest first (the caller's account's; every account's for the
    operator account)."""
    records = await admin.denials(
        caller, principal_arn=principal_arn, resource_arn=resource_arn, limit=limit
    )
    return DenialList(denials=[DenialPublic(**vars(r)) for r in records])


# ==== grants ===================================================================================
def _grant_public(entry: GrantEntry) -> GrantPublic:
    return GrantPublic(**{**vars(entry), "operations": list(entry.operations)})


@router.post("/grants", status_code=201, tags=["grants"])
async def create_grant(
    body: GrantCreate, caller: CallerDep, service: ServiceDep
) -> GrantCreatedPublic:
    constraints = (
        GrantConstraints.of(
            body.constraints.encryption_context_equals, body.constraints.encryption_context_subset
        )
        if body.constraints
        else None
    )
    created = await service.grants.create_grant(
        caller,
        body.key_id,
        grantee_principal=body.grantee_principal,
        operations=list(body.operations),
        retiring_principal=body.retiring_principal,
        constraints=constraints,
        name=body.name,
        dry_run=body.dry_run,
    )
    return GrantCreatedPublic(grant_id=created.grant_id, grant_token=created.grant_token)


@router.get("/grants", tags=["grants"])
async def list_grants(
    caller: CallerDep,
    service: ServiceDep,
    key_id: Annotated[str, Query(min_length=1, max_length=MAX_KEY_ID)],
    grant_id: str | None = None,
    grantee_principal: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    marker: str | None = None,
) -> GrantList:
    page = await service.grants.list_grants(
        caller,
        key_id,
        grant_id=grant_id,
        grantee_principal=grantee_principal,
        limit=limit,
        marker=marker,
    )
    return GrantList(
        grants=[_grant_public(g) for g in page.items],
        next_marker=page.next_marker,
        truncated=page.truncated,
    )


@router.get("/grants/retirable", tags=["grants"])
async def list_retirable_grants(
    caller: CallerDep,
    service: ServiceDep,
    retiring_principal: Annotated[str, Query(min_length=1, max_length=256)],
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    marker: str | None = None,
) -> GrantList:
    page = await service.grants.list_retirable_grants(caller, retiring_principal, limit, marker)
    return GrantList(
        grants=[_grant_public(g) for g in page.items],
        next_marker=page.next_marker,
        truncated=page.truncated,
    )


@router.post("/grants/retire", **NO_CONTENT, tags=["grants"])
async def retire_grant(body: GrantRetire, caller: CallerDep, service: ServiceDep) -> None:
    """Retire a grant by its token, or by key and grant id."""
    await service.grants.retire_grant(
        caller,
        grant_token=body.grant_token,
        key_id=body.key_id,
        grant_id=body.grant_id,
        dry_run=body.dry_run,
    )


@router.delete("/grants/{grant_id}", **NO_CONTENT, tags=["grants"])
async def revoke_grant(
    grant_id: str,
    caller: CallerDep,
    service: ServiceDep,
    key_id: Annotated[str, Query(min_length=1, max_length=MAX_KEY_ID)],
    dry_run: Annotated[bool, Query(description="Check everything, revoke nothing (412).")] = False,
) -> None:
    await service.grants.revoke_grant(caller, key_id, grant_id, dry_run)
