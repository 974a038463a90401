"""Accounts, principals and their access keys (who may sign requests)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import ValidationError
from domain.identifiers import ACCOUNT_ID_PATTERN

PRINCIPAL_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{1,64}$")
PRINCIPAL_TYPES = ("user", "role")


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
    """An IAM-style user or role; identity policies arrive with the access-control work."""

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
            cls.Created, id=aggregate_id, timestamp=now, arn=arn, account_id=account_id,
            principal_type=principal_type, name=name,
        )  # fmt: skip


class AccessKey(Aggregate):
    """An access key pair; the secret is stored wrapped under the root key, never in clear."""

    class Created(Aggregate.Created):
        access_key_id: str
        principal_arn: str
        account_id: str
        wrapped_secret: bytes

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
    ) -> AccessKey:
        return cls._create(
            cls.Created, id=aggregate_id, timestamp=now, access_key_id=access_key_id,
            principal_arn=principal_arn, account_id=account_id, wrapped_secret=wrapped_secret,
        )  # fmt: skip

    class Deactivated(Aggregate.Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.active = False

    def deactivate(self, *, now: datetime) -> None:
        if self.active:
            self.trigger_event(self.Deactivated, timestamp=now)
