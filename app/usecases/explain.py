"""Explain, beyond AWS: why a principal may or may not do something, now or as of a past time.

The answer comes from the same evaluator that authorizes requests,
with its trace turned on: every statement of the key policy and of the principal's identity
policies (which parts matched, which condition failed) and every grant. Given a past time,
the key (its policy and grants) and the principal (its identity policies) are rebuilt from
their events up to that time, so the answer is the one KeyLedger would have given then.

Who may ask: the caller must be allowed kms:GetKeyPolicy on the key (and nothing for an
account-level action), and iam:SimulatePrincipalPolicy on the principal when it asks about
someone else, who must be of its own account unless it belongs to the operator account.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.auth.credentials import Caller
from app.ports import Clock, CommandRunner, EventHistory, UnitOfWork
from app.usecases.authorization import AccessControl, AccessRequest, iso_time
from app.usecases.resolution import KeyResolver
from domain.errors import NotFoundError, ValidationError
from domain.identifiers import alias_aggregate_id, parse_key_reference, principal_aggregate_id
from domain.identity import Principal
from domain.keys import Alias, Key
from domain.policy import IAM_PRINCIPAL, KEY_POLICY, parse_policy
from domain.policy_evaluation import (
    AuthorizationRequest,
    Decision,
    NewGrant,
    denial_message,
    evaluate,
)


@dataclass(frozen=True)
class ExplainQuery:
    principal_arn: str
    action: str  # "kms:Decrypt" or "Decrypt"
    key_id: str | None = None  # id, ARN, alias or alias ARN; None for account-level actions
    encryption_context: Mapping[str, str] | None = None
    algorithm: str | None = None
    source_ip: str | None = None
    via_service: str | None = None  # "ec2.amazonaws.com" or "ec2.us-east-1.amazonaws.com"
    region: str | None = None
    grant_operations: Sequence[str] | None = None  # for kms:CreateGrant
    conditions: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    at: datetime | None = None


@dataclass(frozen=True)
class Explanation:
    principal_arn: str
    principal_found: bool
    action: str
    resource_arn: str
    as_of: datetime
    decision: Decision
    message: str | None  # AWS's AccessDenied message, when denied
    key_version: int | None  # the key's event version the answer rests on
    context: dict[str, list[str]]  # the condition keys the request carried


class ExplainOperations:
    def __init__(
        self,
        *,
        runner: CommandRunner,
        resolver: KeyResolver,
        access: AccessControl,
        clock: Clock,
        history: EventHistory,
        partition: str,
        operator_account: str | None,
    ) -> None:
        """``operator_account``: the account whose principals may administer (and explain)
        every account (KEYLEDGER_DEFAULT_ACCOUNT_ID)."""
        self.runner = runner
        self.resolver = resolver
        self.access = access
        self.clock = clock
        self.history = history
        self.partition = partition
        self.operator_account = operator_account

    async def explain_access(self, caller: Caller | None, query: ExplainQuery) -> Explanation:
        """Explain ``query``. ``caller`` None is the local operator (the CLI), who may ask
        about any principal and key without being authorized."""
        if not IAM_PRINCIPAL.match(query.principal_arn):
            raise ValidationError(f"'{query.principal_arn}' is not a principal ARN.")
        action = query.action if ":" in query.action else f"kms:{query.action}"
        principal_account = query.principal_arn.split(":")[4]
        if caller is not None and query.principal_arn != caller.principal_arn:
            if principal_account != caller.account_id and caller.account_id != (
                self.operator_account
            ):
                self.access.deny(
                    caller,
                    "iam:SimulatePrincipalPolicy",
                    query.principal_arn,
                    f"User: {caller.principal_arn} is not authorized to perform: "
                    f"iam:SimulatePrincipalPolicy on resource: {query.principal_arn} because "
                    "principals of another account can only be explained from the operator "
                    "account",
                )
            await self.access.authorize_account_action(
                caller, "iam:SimulatePrincipalPolicy", resource_arn=query.principal_arn
            )
        now = self.clock.now()
        at = query.at
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # a time without a zone is UTC, as in AWS's APIs
        if at is not None and at >= now:
            at = None  # the future is answered as now

        def command(uow: UnitOfWork) -> tuple[Key | None, Principal | None]:
            key = None
            if query.key_id is not None and caller is not None:
                key = self.resolver.resolve(uow, caller, query.key_id, "GetKeyPolicy", fresh=True)
            elif query.key_id is not None:
                key = _operator_key(uow, query.key_id, principal_account, query.region)
            principal = self.access.principal(uow, query.principal_arn)
            return key, principal

        key, principal = await self.runner.run(command)
        if at is not None:
            key, principal = await asyncio.to_thread(self._as_of, key, query.principal_arn, at)
        subject = _subject(query, principal_account, key, caller)
        request = AccessRequest(
            encryption_context=query.encryption_context,
            algorithm=query.algorithm,
            new_grant=(
                NewGrant(tuple(query.grant_operations), None) if query.grant_operations else None
            ),
            conditions=dict(query.conditions)
            | (
                {"kms:GrantOperations": tuple(query.grant_operations)}
                if query.grant_operations
                else {}
            ),
        )
        alias = query.key_id if query.key_id and "alias/" in query.key_id else None
        alias_name = ("alias/" + alias.split("alias/", 1)[1]) if alias else None
        authorization: AuthorizationRequest = self.access.request_for(
            subject, action, key, request, alias_name=alias_name, now=at or now
        )
        decision = evaluate(
            authorization,
            key_policy=parse_policy(key.policy, kind=KEY_POLICY, partition=self.partition)
            if key is not None
            else None,
            identity_policies=self.access.identity_policies(principal),
            grants=AccessControl.grants_of(key),
            explain=True,
        )
        return Explanation(
            principal_arn=query.principal_arn,
            principal_found=principal is not None,
            action=action,
            resource_arn=authorization.resource_arn,
            as_of=at or now,
            decision=decision,
            message=None if decision.allowed else denial_message(authorization, decision),
            key_version=key.version if key is not None else None,
            context={name: list(values) for name, values in sorted(authorization.context.items())},
        )

    def _as_of(
        self, key: Key | None, principal_arn: str, at: datetime
    ) -> tuple[Key | None, Principal | None]:
        """The key and the principal as their events left them at ``at``."""
        then_key = None
        if key is not None:
            then_key = self._replay(key.id, at)
            if then_key is None:
                raise NotFoundError(f"Key '{key.arn}' did not exist at {iso_time(at)}")
        then_principal = self._replay(principal_aggregate_id(principal_arn), at)
        return then_key, then_principal if isinstance(then_principal, Principal) else None

    def _replay(self, aggregate_id: uuid.UUID, at: datetime) -> Any:
        aggregate: Any = None
        event: Any
        for event in self.history.history(aggregate_id):
            if event.timestamp > at:
                break
            aggregate = event.mutate(aggregate)
        return aggregate


def _operator_key(uow: UnitOfWork, key_id: str, account_id: str, region: str | None) -> Key:
    """Any account's key, for the local operator: by id or ARN, or alias (ARN) name."""
    ref = parse_key_reference(key_id, account_id=account_id, region=region or "us-east-1")
    target = ref.key_uuid
    if ref.is_alias:
        alias: Alias | None = uow.get(alias_aggregate_id(ref.account_id, ref.region, ref.name))
        target = uuid.UUID(alias.target_key_id) if alias and alias.target_key_id else None
    key = uow.get(target, fresh=True) if target else None
    if not isinstance(key, Key) or key.is_deleted:
        raise NotFoundError(f"Key '{key_id}' does not exist")
    return key


def _subject(
    query: ExplainQuery, account_id: str, key: Key | None, caller: Caller | None
) -> Caller:
    """The principal being explained, as a caller with the request context given."""
    region = query.region or (
        key.region if key is not None else caller.region if caller else "us-east-1"
    )
    via = query.via_service or ""
    if via and via.count(".") == 2:  # "ec2.amazonaws.com": AWS puts the Region in it
        via = f"{via.split('.', 1)[0]}.{region}.amazonaws.com"
    return Caller(
        account_id=account_id,
        principal_arn=query.principal_arn,
        access_key_id="",
        region=region,
        source_ip=query.source_ip or "",
        request_id="explain",
        via_service=via,
        service_principal_arn="(explain)" if via else "",
    )
