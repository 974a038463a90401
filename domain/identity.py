"""Accounts, principals and their access keys (who may sign requests)."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from eventsourcing.domain import Aggregate

from domain.actors import Actor, ActorRecord
from domain.errors import NotFoundError, ValidationError
from domain.identifiers import ACCOUNT_ID_PATTERN
from domain.policy import (
    IDENTITY_POLICY,
    SERVICE_PRINCIPAL,
    TRUST_POLICY,
    validate_policy_document,
)
from domain.sts import DEFAULT_MAX_SESSION_DURATION, check_max_session_duration

PRINCIPAL_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{1,64}$")
POLICY_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{1,128}$")
PRINCIPAL_TYPES = ("user", "role")
MAX_INLINE_POLICIES = 10


@lru_cache(maxsize=65536)
def principal_id(arn: str) -> str:
    """A stable principal id in AWS's style (AIDA... users, AROA... roles)."""
    prefix = "AROA" if ":role/" in arn else "AIDA"
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()
    return prefix + digest[:17]


def root_arn(partition: str, account_id: str) -> str:
    return f"arn:{partition}:iam::{account_id}:root"


def principal_arn(partition: str, account_id: str, principal_type: str, name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:{principal_type}/{name}"


def check_account_id(account_id: str) -> None:
    if not ACCOUNT_ID_PATTERN.match(account_id):
        raise ValidationError(f"Account id '{account_id}' must be 12 digits.")


def check_principal_name(name: str) -> None:
    if not PRINCIPAL_NAME_PATTERN.match(name):
        raise ValidationError(
            f"Principal name '{name}' must be 1-64 characters of letters, digits and +=,.@_-"
        )


class Account(Aggregate):
    class Created(Aggregate.Created):
        account_id: str
        name: str

    def __init__(self, *, account_id: str, name: str) -> None:
        self.account_id = account_id
        self.name = name

    @classmethod
    def create(
        cls, *, aggregate_id: uuid.UUID, now: datetime, account_id: str, name: str
    ) -> Account:
        check_account_id(account_id)
        return cls._create(
            cls.Created, id=aggregate_id, timestamp=now, account_id=account_id, name=name
        )


class Principal(Aggregate):
    """An IAM-style user or role, with its inline identity policies.

    A principal may also be designated a trusted service principal (``ec2.amazonaws.com``):
    it may then sign requests on behalf of other principals (kms:ViaService).
    """

    class Created(Aggregate.Created):
        arn: str
        account_id: str
        principal_type: str
        name: str

    def __init__(self, *, arn: str, account_id: str, principal_type: str, name: str) -> None:
        self.arn = arn
        self.account_id = account_id
        self.principal_type = principal_type
        self.name = name

    @classmethod
    def create(
        cls,
        *,
        aggregate_id: uuid.UUID,
        now: datetime,
        arn: str,
        account_id: str,
        principal_type: str,
        name: str,
    ) -> Principal:
        if principal_type not in PRINCIPAL_TYPES:
            raise ValidationError(f"Principal type must be one of {', '.join(PRINCIPAL_TYPES)}")
        check_principal_name(name)
        return cls._create(
            cls.Created,
            id=aggregate_id,
            timestamp=now,
            arn=arn,
            account_id=account_id,
            principal_type=principal_type,
            name=name,
        )

    # Read through properties: principals recorded before policies existed have none.
    @property
    def policies(self) -> dict[str, str]:
        """Inline identity policies by name (documents as JSON text)."""
        policies: dict[str, str] = self.__dict__.get("_policies", {})
        return policies

    @property
    def service_name(self) -> str | None:
        """The service this principal stands for (``ec2.amazonaws.com``), if it is trusted."""
        service: str | None = self.__dict__.get("_service_name")
        return service

    @property
    def trust_policy(self) -> str | None:
        """A role's trust policy (who may assume it); None: nobody may."""
        policy: str | None = self.__dict__.get("_trust_policy")
        return policy

    @property
    def max_session_duration(self) -> int:
        """The longest session (seconds) AssumeRole may give of this role."""
        seconds: int = self.__dict__.get("_max_session_duration", DEFAULT_MAX_SESSION_DURATION)
        return seconds

    class TrustPolicySet(Aggregate.Event):
        actor: ActorRecord
        policy: str
        max_session_duration: int

        def apply(self, aggregate: Any) -> None:
            aggregate._trust_policy = self.policy
            aggregate._max_session_duration = self.max_session_duration

    def set_trust_policy(
        self,
        *,
        now: datetime,
        actor: Actor,
        policy: str,
        max_session_duration: int | None = None,
    ) -> None:
        """Set who may assume this role (IAM's UpdateAssumeRolePolicy), and for how long."""
        if self.principal_type != "role":
            raise ValidationError(f"Only roles have a trust policy; {self.arn} is a user.")
        validate_policy_document(policy, kind=TRUST_POLICY, source="trust policy")
        seconds = max_session_duration or self.max_session_duration
        check_max_session_duration(seconds)
        if (policy, seconds) != (self.trust_policy, self.max_session_duration):
            self.trigger_event(
                self.TrustPolicySet,
                timestamp=now,
                actor=actor.record(),
                policy=policy,
                max_session_duration=seconds,
            )

    class PolicyPut(Aggregate.Event):
        actor: ActorRecord
        policy_name: str
        policy: str

        def apply(self, aggregate: Any) -> None:
            aggregate._policies = {**aggregate.policies, self.policy_name: self.policy}

    class PolicyDeleted(Aggregate.Event):
        actor: ActorRecord
        policy_name: str

        def apply(self, aggregate: Any) -> None:
            remaining = {k: v for k, v in aggregate.policies.items() if k != self.policy_name}
            aggregate._policies = remaining

    class ServiceDesignated(Aggregate.Event):
        actor: ActorRecord
        service_name: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate._service_name = self.service_name

    def put_policy(self, *, now: datetime, actor: Actor, policy_name: str, policy: str) -> None:
        """Create or replace an inline identity policy (validated; no Principal element)."""
        if not POLICY_NAME_PATTERN.match(policy_name):
            raise ValidationError(
                f"Policy name '{policy_name}' must be 1-128 letters, digits and +=,.@_-"
            )
        validate_policy_document(
            policy, kind=IDENTITY_POLICY, source=f"identity policy {policy_name}"
        )
        if policy_name not in self.policies and len(self.policies) >= MAX_INLINE_POLICIES:
            raise ValidationError(f"A principal may have at most {MAX_INLINE_POLICIES} policies.")
        if self.policies.get(policy_name) != policy:
            self.trigger_event(
                self.PolicyPut,
                timestamp=now,
                actor=actor.record(),
                policy_name=policy_name,
                policy=policy,
            )

    def delete_policy(self, *, now: datetime, actor: Actor, policy_name: str) -> None:
        if policy_name not in self.policies:
            raise NotFoundError(f"The principal {self.arn} has no policy named {policy_name}.")
        self.trigger_event(
            self.PolicyDeleted, timestamp=now, actor=actor.record(), policy_name=policy_name
        )

    def designate_service(self, *, now: datetime, actor: Actor, service_name: str | None) -> None:
        """Trust this principal as ``service_name`` (None: no longer a service principal)."""
        if service_name is not None and not (
            SERVICE_PRINCIPAL.match(service_name) and service_name.endswith(".amazonaws.com")
        ):
            raise ValidationError(
                f"Service principal '{service_name}' must look like ec2.amazonaws.com."
            )
        if service_name != self.service_name:
            self.trigger_event(
                self.ServiceDesignated,
                timestamp=now,
                actor=actor.record(),
                service_name=service_name,
            )


class AccessKey(Aggregate):
    """An access key pair; the secret is stored wrapped under the root key, never in clear."""

    class Created(Aggregate.Created):
        access_key_id: str
        principal_arn: str
        account_id: str
        wrapped_secret: bytes
        actor: ActorRecord  # who issued it (the audit trail's CreateAccessKey record)

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["actor"] = {}  # issued before keys recorded their issuer

    def __init__(
        self, *, access_key_id: str, principal_arn: str, account_id: str, wrapped_secret: bytes
    ) -> None:
        self.access_key_id = access_key_id
        self.principal_arn = principal_arn
        self.account_id = account_id
        self.wrapped_secret = wrapped_secret
        self.active = True

    @classmethod
    def create(
        cls,
        *,
        aggregate_id: uuid.UUID,
        now: datetime,
        access_key_id: str,
        principal_arn: str,
        account_id: str,
        wrapped_secret: bytes,
        actor: Actor | None = None,
    ) -> AccessKey:
        return cls._create(
            cls.Created,
            id=aggregate_id,
            timestamp=now,
            access_key_id=access_key_id,
            principal_arn=principal_arn,
            account_id=account_id,
            wrapped_secret=wrapped_secret,
            actor=actor.record() if actor is not None else {},
        )

    class Deactivated(Aggregate.Event):
        actor: ActorRecord  # who deactivated it

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["actor"] = {}

        def apply(self, aggregate: Any) -> None:
            aggregate.active = False

    def deactivate(self, *, now: datetime, actor: Actor | None = None) -> None:
        if self.active:
            record = actor.record() if actor is not None else {}
            self.trigger_event(self.Deactivated, timestamp=now, actor=record)
