"""Identity administration over the API: accounts, users and roles, their inline policies,
access keys and service designations, authorized like IAM.

Each use case names the IAM action AWS would check (``iam:CreateUser``, ``iam:PutRolePolicy``,
``iam:CreateAccessKey``, ...) on the principal's ARN, and the caller's identity policies
decide (the bootstrap administrator's AdministratorAccess allows them all). A caller
administers its own account only; principals of the operator account
(KEYLEDGER_DEFAULT_ACCOUNT_ID) may administer every account, and only they may create
accounts and designate trusted service principals. The ``keyledger`` CLI, which talks to the
database directly, needs no authorization.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.auth.credentials import Caller, IdentityDirectory, PrincipalInfo
from app.ports import DenialRecord
from app.usecases.authorization import AccessControl
from domain.identity import check_account_id, principal_arn, root_arn

OPERATOR_ONLY = "principals of the operator account alone may perform it"


class IdentityAdministration:
    def __init__(
        self, identity: IdentityDirectory, access: AccessControl, operator_account: str
    ) -> None:
        self.identity = identity
        self.access = access
        self.operator_account = operator_account

    async def _authorize(
        self, caller: Caller, action: str, resource_arn: str, account_id: str | None
    ) -> None:
        """Identity policies decide; across accounts only from the operator account."""
        operator = caller.account_id == self.operator_account
        if not operator and account_id != caller.account_id:
            why = OPERATOR_ONLY if account_id is None else "it concerns another account"
            self.access.deny(
                caller,
                action,
                resource_arn,
                f"User: {caller.principal_arn} is not authorized to perform: {action} on "
                f"resource: {resource_arn} because {why}",
            )
        await self.access.authorize_account_action(caller, action, resource_arn=resource_arn)

    async def authorize_operator_action(self, caller: Caller, action: str) -> None:
        """An action on the service itself (``keyledger:Seal``): operator account only."""
        await self._authorize(
            caller, action, root_arn(self.identity.partition, self.operator_account), None
        )

    @staticmethod
    def _kind(arn: str) -> str:
        return "Role" if ":role/" in arn else "User"

    @staticmethod
    def _account(arn: str) -> str:
        parts = arn.split(":")
        return parts[4] if len(parts) > 4 else ""

    # ---- accounts and principals -------------------------------------------------------------
    async def create_account(self, caller: Caller, account_id: str, name: str = "") -> str:
        check_account_id(account_id)
        await self._authorize(
            caller,
            "organizations:CreateAccount",
            root_arn(self.identity.partition, account_id),
            None,
        )
        return await asyncio.to_thread(self.identity.create_account, account_id, name)

    async def create_principal(
        self,
        caller: Caller,
        account_id: str,
        name: str,
        principal_type: str = "user",
        policies: dict[str, str] | None = None,
        trust_policy: str | None = None,
        max_session_duration: int | None = None,
    ) -> str:
        check_account_id(account_id)
        arn = principal_arn(self.identity.partition, account_id, principal_type, name)
        action = "iam:CreateRole" if principal_type == "role" else "iam:CreateUser"
        await self._authorize(caller, action, arn, account_id)
        if policies:
            await self._authorize(caller, f"iam:Put{self._kind(arn)}Policy", arn, account_id)
        if trust_policy is not None:
            await self._authorize(caller, "iam:UpdateAssumeRolePolicy", arn, account_id)
        return await asyncio.to_thread(
            self.identity.create_principal,
            account_id,
            name,
            principal_type,
            policies=policies,
            actor=caller.actor(),
            trust_policy=trust_policy,
            max_session_duration=max_session_duration,
        )

    async def get_principal(self, caller: Caller, arn: str) -> PrincipalInfo:
        await self._authorize(caller, f"iam:Get{self._kind(arn)}", arn, self._account(arn))
        return await asyncio.to_thread(self.identity.principal, arn)

    async def put_policy(self, caller: Caller, arn: str, policy_name: str, policy: str) -> None:
        await self._authorize(caller, f"iam:Put{self._kind(arn)}Policy", arn, self._account(arn))
        await asyncio.to_thread(
            self.identity.put_principal_policy, arn, policy_name, policy, actor=caller.actor()
        )

    async def delete_policy(self, caller: Caller, arn: str, policy_name: str) -> None:
        await self._authorize(caller, f"iam:Delete{self._kind(arn)}Policy", arn, self._account(arn))
        await asyncio.to_thread(
            self.identity.delete_principal_policy, arn, policy_name, actor=caller.actor()
        )

    async def set_trust_policy(
        self, caller: Caller, arn: str, policy: str, max_session_duration: int | None = None
    ) -> None:
        """Who may assume the role ``arn`` (STS AssumeRole), and for how long at most."""
        await self._authorize(caller, "iam:UpdateAssumeRolePolicy", arn, self._account(arn))
        await asyncio.to_thread(
            self.identity.set_trust_policy,
            arn,
            policy,
            max_session_duration=max_session_duration,
            actor=caller.actor(),
        )

    async def designate_service(self, caller: Caller, arn: str, service_name: str | None) -> None:
        await self._authorize(caller, "keyledger:DesignateServicePrincipal", arn, None)
        await asyncio.to_thread(
            self.identity.designate_service, arn, service_name, actor=caller.actor()
        )

    # ---- access keys -------------------------------------------------------------------------
    async def create_access_key(self, caller: Caller, arn: str) -> tuple[str, str]:
        await self._authorize(caller, "iam:CreateAccessKey", arn, self._account(arn))
        return await asyncio.to_thread(self.identity.create_access_key, arn, actor=caller.actor())

    async def deactivate_access_key(self, caller: Caller, access_key_id: str) -> None:
        owner = await asyncio.to_thread(self.identity.access_key_owner, access_key_id)
        await self._authorize(caller, "iam:UpdateAccessKey", owner, self._account(owner))
        await asyncio.to_thread(
            self.identity.deactivate_access_key, access_key_id, actor=caller.actor()
        )

    # ---- the denial log ----------------------------------------------------------------------
    async def denials(
        self,
        caller: Caller,
        *,
        principal_arn: str | None = None,
        resource_arn: str | None = None,
        limit: int = 100,
    ) -> list[DenialRecord]:
        """Recorded denials, newest first: of the caller's account, or any from the operator's."""
        await self.access.authorize_account_action(caller, "cloudtrail:LookupEvents")
        account = None if caller.account_id == self.operator_account else caller.account_id
        found: list[DenialRecord] = await asyncio.to_thread(
            self.access.denials.query,
            principal_arn=principal_arn,
            resource_arn=resource_arn,
            account_id=account,
            limit=limit,
        )
        return found


def principal_public(info: PrincipalInfo) -> dict[str, Any]:
    return {
        "arn": info.arn,
        "account_id": info.account_id,
        "type": info.principal_type,
        "name": info.name,
        "policies": info.policies,
        "service_name": info.service_name,
        "trust_policy": info.trust_policy,
        "max_session_duration": info.max_session_duration,
    }
