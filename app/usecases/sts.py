"""AWS STS: who the caller is (GetCallerIdentity), and temporary credentials of a role
(AssumeRole), authorized by the role's trust policy as IAM does.

The session is self-contained (domain/sts.py): its token is MACed under a key the vault
holds, so every process verifies it without a read; its secret is derived, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NoReturn

from app.ports import UnitOfWork
from app.usecases.authorization import AccessControl, AccessRequest
from domain.identifiers import principal_aggregate_id
from domain.identity import Principal, principal_id
from domain.policy import TRUST_POLICY, parse_policy
from domain.policy_evaluation import evaluate
from domain.sts import (
    RoleSession,
    encode_session_token,
    role_of,
    session_duration,
    session_secret,
    start_session,
)

if TYPE_CHECKING:
    from app.auth.credentials import Caller

ASSUME_ROLE = "sts:AssumeRole"


@dataclass(frozen=True)
class CallerIdentity:
    """GetCallerIdentity's answer."""

    user_id: str
    account: str
    arn: str


@dataclass(frozen=True)
class TemporaryCredentials:
    """AssumeRole's answer: the secret is shown only here."""

    session: RoleSession
    secret_access_key: str
    session_token: str


class SecurityTokenService:
    def __init__(self, access: AccessControl) -> None:
        self.access = access

    async def get_caller_identity(self, caller: Caller) -> CallerIdentity:
        """Who signed the request; needs no permission (AWS: it cannot be denied). Runs a
        command all the same so that the call is recorded with the others of its batch."""
        await self.access.runner.run(lambda uow: None)
        return CallerIdentity(_user_id(caller), caller.account_id, caller.principal_arn)

    async def assume_role(
        self,
        caller: Caller,
        role_arn: str,
        session_name: str,
        duration_seconds: int | None = None,
        external_id: str | None = None,
    ) -> TemporaryCredentials:
        """Temporary credentials of ``role_arn`` when its trust policy (and, for a trust in
        the caller's account, the caller's identity policies) allow the caller
        sts:AssumeRole; AccessDeniedError otherwise, as IAM answers (never saying whether
        the role exists)."""
        partition, account, role_name = role_of(role_arn)

        def command(uow: UnitOfWork) -> RoleSession:
            role = uow.get(principal_aggregate_id(role_arn), fresh=True)
            role = self._authorize(uow, caller, role_arn, account, role, external_id)
            seconds = session_duration(
                duration_seconds,
                role_maximum=role.max_session_duration,
                chained=caller.session is not None,
            )
            return start_session(
                account_id=account,
                partition=partition,
                role_name=role_name,
                role_id=principal_id(role_arn),
                session_name=session_name,
                now=self.access.clock.now(),
                seconds=seconds,
            )

        session = await self.access.runner.run(command)
        mac = self.access.vault.session_token_mac
        return TemporaryCredentials(
            session=session,
            secret_access_key=session_secret(session.access_key_id, mac),
            session_token=encode_session_token(session, mac),
        )

    def _authorize(
        self,
        uow: UnitOfWork,
        caller: Caller,
        role_arn: str,
        account: str,
        role: object,
        external_id: str | None,
    ) -> Principal:
        """The role, once its trust policy lets the caller assume it (else denied)."""
        message = (
            f"User: {caller.principal_arn} is not authorized to perform: {ASSUME_ROLE} "
            f"on resource: {role_arn}"
        )
        if not isinstance(role, Principal) or role.principal_type != "role":
            self._deny(caller, role_arn, message)
        if role.trust_policy is None:
            self._deny(caller, role_arn, message)
        conditions = {"sts:ExternalId": external_id} if external_id is not None else {}
        request = self.access.request_for(
            caller,
            ASSUME_ROLE,
            None,
            AccessRequest(conditions=conditions),
            resource_arn=role_arn,
        )
        request = replace(request, resource_account=account)
        trust = parse_policy(
            role.trust_policy,
            kind=TRUST_POLICY,
            source="trust policy",
            partition=self.access.partition,
        )
        principal = self.access.principal(uow, caller.policy_principal_arn)
        decision = evaluate(
            request,
            key_policy=trust,
            identity_policies=self.access.identity_policies(principal),
        )
        if not decision.allowed:
            self._deny(caller, role_arn, message)
        return role

    def _deny(self, caller: Caller, role_arn: str, message: str) -> NoReturn:
        self.access.deny(caller, ASSUME_ROLE, role_arn, message)


def _user_id(caller: Caller) -> str:
    """GetCallerIdentity's UserId: AIDA... for a user, AROA...:SESSION for a role session,
    the account id for the account root."""
    if caller.session is not None:
        return caller.session.assumed_role_id
    if caller.principal_arn.endswith(":root"):
        return caller.account_id
    return principal_id(caller.principal_arn)
