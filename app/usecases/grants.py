"""Grant use cases: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.

A grant is state of its key (events on the key's stream), created,
retired and revoked by commands on the writer, so it takes effect, or stops taking effect,
with the very next request; grant tokens are accepted at once and checked for forgery.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from app.auth.credentials import Caller
from app.ports import Clock, CommandRunner, KeyDirectory, UnitOfWork
from app.usecases.authorization import AccessControl, AccessRequest
from app.usecases.resolution import KeyResolver
from app.usecases.results import Page
from domain.errors import (
    DryRunSucceededError,
    InvalidArnError,
    InvalidMarkerError,
    NotFoundError,
    ValidationError,
)
from domain.grants import (
    Grant,
    GrantConstraints,
    check_grant_id,
    check_grant_operations,
)
from domain.identifiers import parse_key_reference, principal_aggregate_id
from domain.identity import Principal
from domain.key_specs import SYMMETRIC_DEFAULT
from domain.keys import Key
from domain.policy import IAM_PRINCIPAL
from domain.policy_evaluation import NewGrant

DRY_RUN_MESSAGE = "The request would have succeeded, but the DryRun option is set."


@dataclass(frozen=True)
class CreatedGrant:
    grant_id: str
    grant_token: str


@dataclass(frozen=True)
class GrantEntry:
    key_arn: str
    grant_id: str
    name: str
    creation_date: datetime | None
    grantee_principal: str
    retiring_principal: str | None
    issuing_account: str
    operations: tuple[str, ...]
    constraints: dict[str, dict[str, str]] | None


def _for_aws_resource(caller: Caller) -> str:
    """kms:GrantIsForAWSResource: an AWS service integrated with KMS calls for the caller."""
    return "true" if caller.via_service else "false"


def _grant_request(caller: Caller) -> AccessRequest:
    """ListGrants and RevokeGrant carry kms:GrantIsForAWSResource too (AWS KMS condition keys)."""
    return AccessRequest(conditions={"kms:GrantIsForAWSResource": _for_aws_resource(caller)})


def _entry(key_arn: str, grant: Grant) -> GrantEntry:
    return GrantEntry(
        key_arn,
        grant.grant_id,
        grant.name,
        grant.creation_date,
        grant.grantee_principal,
        grant.retiring_principal,
        grant.issuing_account,
        grant.operations,
        grant.constraints.record() if grant.constraints else None,
    )


def _marker(after: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": after})).decode()


def _after(marker: str | None) -> Any:
    if marker is None:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(marker.encode()))["after"]
    except (ValueError, TypeError, KeyError):
        raise InvalidMarkerError("Invalid marker") from None


class GrantOperations:
    def __init__(
        self,
        *,
        runner: CommandRunner,
        resolver: KeyResolver,
        access: AccessControl,
        clock: Clock,
        directory: KeyDirectory,
        partition: str,
    ) -> None:
        self.runner = runner
        self.resolver = resolver
        self.access = access
        self.clock = clock
        self.directory = directory
        self.partition = partition

    # ==== CreateGrant =============================================================================
    async def create_grant(
        self,
        caller: Caller,
        key_id: str,
        *,
        grantee_principal: str,
        operations: list[str],
        retiring_principal: str | None = None,
        constraints: GrantConstraints | None = None,
        name: str | None = None,
        dry_run: bool = False,
    ) -> CreatedGrant:
        """Create a grant (or, for a retried Name with the same parameters, return it)."""
        wanted = tuple(dict.fromkeys(operations))
        for principal in (grantee_principal, retiring_principal):
            if principal is not None and not IAM_PRINCIPAL.match(principal):
                raise ValidationError(f"Principal '{principal}' is not a valid principal ARN.")
        conditions: dict[str, str | tuple[str, ...]] = {
            "kms:GrantOperations": wanted,
            "kms:GranteePrincipal": grantee_principal,
            "kms:GrantIsForAWSResource": _for_aws_resource(caller),
        }
        if retiring_principal is not None:
            conditions["kms:RetiringPrincipal"] = retiring_principal
        if constraints is not None:
            conditions["kms:GrantConstraintType"] = constraints.types
        access = AccessRequest(new_grant=NewGrant(wanted, constraints), conditions=conditions)

        def command(uow: UnitOfWork) -> CreatedGrant:
            key = self.resolver.resolve(
                uow, caller, key_id, "CreateGrant", allow_alias=False, request=access
            )
            check_grant_operations(wanted, key.key_spec, key.key_usage)
            if constraints is not None and key.key_spec != SYMMETRIC_DEFAULT:
                raise ValidationError(
                    f"Grant constraints are not supported for KMS keys with key spec "
                    f"{key.key_spec}."
                )
            for principal in (grantee_principal, retiring_principal):
                _check_principal_exists(uow, principal)
            key.check_allowed("CreateGrant")
            if dry_run:
                raise DryRunSucceededError(DRY_RUN_MESSAGE)
            grant = Grant(
                grant_id=secrets.token_hex(32),
                key_id=key.key_id,
                name=name or "",
                grantee_principal=grantee_principal,
                retiring_principal=retiring_principal,
                operations=wanted,
                constraints=constraints,
                issuing_account=f"arn:{self.partition}:iam::{caller.account_id}:root",
            )
            if name:
                for existing in AccessControl.grants_of(key):
                    if existing.name == name and existing.same_request(grant):
                        return CreatedGrant(
                            existing.grant_id,
                            self.access.issue_grant_token(key.id, existing.grant_id),
                        )
            key.create_grant(now=self.clock.now(), actor=caller.actor(), grant=grant.record())
            return CreatedGrant(
                grant.grant_id, self.access.issue_grant_token(key.id, grant.grant_id)
            )

        return await self.runner.run(command)

    # ==== ListGrants ==============================================================================
    async def list_grants(
        self,
        caller: Caller,
        key_id: str,
        *,
        grant_id: str | None = None,
        grantee_principal: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> Page[GrantEntry]:
        after = _after(marker)
        if grant_id is not None:
            check_grant_id(grant_id)

        def command(uow: UnitOfWork) -> tuple[str, list[Grant]]:
            key = self.resolver.resolve(
                uow,
                caller,
                key_id,
                "ListGrants",
                allow_alias=False,
                fresh=True,
                request=_grant_request(caller),
            )
            return key.arn, list(AccessControl.grants_of(key))

        key_arn, grants = await self.runner.run(command)
        grants = [
            g
            for g in grants
            if (grant_id is None or g.grant_id == grant_id)
            and (grantee_principal is None or g.grantee_principal == grantee_principal)
        ]
        grants.sort(key=lambda g: (g.creation_date or datetime.min, g.grant_id))
        start = int(after) if isinstance(after, int) else 0
        size = limit or 50
        page = grants[start : start + size]
        next_marker = _marker(start + size) if start + size < len(grants) else None
        return Page([_entry(key_arn, g) for g in page], next_marker)

    # ==== ListRetirableGrants =====================================================================
    async def list_retirable_grants(
        self,
        caller: Caller,
        retiring_principal: str | None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> Page[GrantEntry]:
        """Grants anywhere whose retiring principal is ``retiring_principal`` (which must be
        in the caller's account); IAM-authorized (kms:ListRetirableGrants)."""
        if not retiring_principal:
            raise ValidationError("RetiringPrincipal is required.")
        principal_account = _principal_account(retiring_principal)
        after = _after(marker)
        if after is not None and not (
            isinstance(after, list) and len(after) == 2 and all(isinstance(a, str) for a in after)
        ):
            raise InvalidMarkerError("Invalid marker")
        await self.access.authorize_account_action(caller, "ListRetirableGrants")
        if principal_account != caller.account_id:
            self.access.deny(
                caller,
                "kms:ListRetirableGrants",
                "*",
                f"User: {caller.principal_arn} is not authorized to perform: "
                f"kms:ListRetirableGrants for {retiring_principal} because the retiring "
                "principal must be in the caller's account",
            )
        size = limit or 50
        rows = await asyncio.to_thread(self._retirable_rows, retiring_principal, after, size + 1)
        entries = [_retirable_entry(row) for row in rows[:size]]
        next_marker = (
            _marker([str(rows[size - 1][0]), rows[size - 1][1]]) if len(rows) > size else None
        )
        return Page(entries, next_marker)

    def _retirable_rows(self, principal: str, after: Any, limit: int) -> list[Any]:
        self.directory.wait_for_current()
        return self.directory.retirable_grants(principal, after, limit)

    # ==== RetireGrant and RevokeGrant ==========================================================
    async def retire_grant(
        self,
        caller: Caller,
        *,
        grant_token: str | None = None,
        key_id: str | None = None,
        grant_id: str | None = None,
        dry_run: bool = False,
    ) -> None:
        """Retire by token, or by key (id or ARN) and grant id. Allowed to the grant's
        retiring principal, to its grantee when it includes RetireGrant, and to the key's
        account as its policies say."""
        token_key: uuid.UUID | None = None
        if grant_token is not None:
            token = self.access.read_grant_token(grant_token)
            token_key, grant_id = token.key_id, token.grant_id
        elif key_id is None or grant_id is None:
            raise ValidationError("Specify either GrantToken, or both KeyId and GrantId.")
        assert grant_id is not None
        check_grant_id(grant_id)

        def command(uow: UnitOfWork) -> None:
            key = self._find_key(uow, caller, token_key, key_id)
            record = key.grants.get(grant_id)
            if record is None:
                raise NotFoundError(f"Grant ID {grant_id} not found")
            grant = Grant.from_record(record)
            self.access.authorize(
                uow, caller, "RetireGrant", key, AccessRequest(target_grant=grant)
            )
            if dry_run:
                raise DryRunSucceededError(DRY_RUN_MESSAGE)
            key.end_grant(
                now=self.clock.now(), actor=caller.actor(), grant_id=grant_id, revoke=False
            )

        await self.runner.run(command)

    def _find_key(
        self, uow: UnitOfWork, caller: Caller, key_uuid: uuid.UUID | None, key_id: str | None
    ) -> Key:
        """The key a RetireGrant names, found as KeyResolver.resolve finds it (authorization
        follows)."""
        if key_uuid is None:
            assert key_id is not None
            ref = parse_key_reference(
                key_id, account_id=caller.account_id, region=caller.region, allow_alias=False
            )
            key_uuid = ref.key_uuid
            expected: tuple[str, str] | None = (ref.account_id, ref.region)
        else:
            expected = None
        found = uow.get(key_uuid, fresh=True) if key_uuid else None
        if (
            not isinstance(found, Key)
            or found.is_deleted
            or (expected is not None and (found.account_id, found.region) != expected)
        ):
            raise NotFoundError(f"Key '{key_id or key_uuid}' does not exist")
        return found

    async def revoke_grant(
        self, caller: Caller, key_id: str, grant_id: str, dry_run: bool = False
    ) -> None:
        """Revoke a grant at once; authorized by the key policy and identity policies."""
        check_grant_id(grant_id)

        def command(uow: UnitOfWork) -> None:
            key = self.resolver.resolve(
                uow,
                caller,
                key_id,
                "RevokeGrant",
                allow_alias=False,
                request=_grant_request(caller),
            )
            if grant_id not in key.grants:
                raise NotFoundError(f"Grant ID {grant_id} not found")
            if dry_run:
                raise DryRunSucceededError(DRY_RUN_MESSAGE)
            key.end_grant(
                now=self.clock.now(), actor=caller.actor(), grant_id=grant_id, revoke=True
            )

        await self.runner.run(command)


def _retirable_entry(row: Any) -> GrantEntry:
    (
        _key_id,
        grant_id,
        key_arn,
        name,
        grantee,
        retiring,
        operations,
        constraints,
        issuing,
        created,
    ) = row
    return GrantEntry(
        key_arn,
        grant_id,
        name,
        created,
        grantee,
        retiring,
        issuing,
        tuple(operations),
        constraints or None,
    )


def _principal_account(principal: str) -> str:
    """The account of a principal ARN a caller named; InvalidArnException (the error AWS
    lists for ListRetirableGrants) for anything else."""
    if not IAM_PRINCIPAL.fullmatch(principal):
        raise InvalidArnError(f"Invalid arn {principal}")
    return principal.split(":")[4]  # the pattern guarantees arn:partition:service::account:


def _check_principal_exists(uow: UnitOfWork, principal: str | None) -> None:
    """Users and roles named in a grant must exist (accounts are always valid)."""
    if principal is None or principal.endswith(":root"):
        return
    if not isinstance(uow.get(principal_aggregate_id(principal)), Principal):
        raise ValidationError(f"Principal '{principal}' does not exist.")


def constraints_from_request(member: Mapping[str, Any] | None) -> GrantConstraints | None:
    """GrantConstraints from the AWS request member (SourceArn is not supported)."""
    if not member:
        return None
    if member.get("SourceArn"):
        raise ValidationError("Constraints.SourceArn is not supported by this KeyLedger version.")
    return GrantConstraints.of(
        member.get("EncryptionContextEquals"), member.get("EncryptionContextSubset")
    )
