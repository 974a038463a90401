"""The Key aggregate: one KMS key's whole life, as events.

Every method checks AWS's rules for the key's state before it records anything, so a
method that raises has changed nothing. Time is passed in; key material arrives
already wrapped (the domain never sees plaintext material).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain import key_states
from domain.errors import (
    AlreadyExistsError,
    InvalidStateError,
    LimitExceededError,
    NotFoundError,
    TagError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.key_specs import SYMMETRIC_DEFAULT
from domain.key_states import check_operation_allowed

Actor = dict[str, Any]
"""Who asked, for auditors: principal ARN, account, access key id, request id, source IP."""

MAX_TAGS = 50
MAX_ALIASES = 50
MAX_ON_DEMAND_ROTATIONS = 25
DEFAULT_ROTATION_PERIOD_DAYS = 365
AWS_MANAGED_ROTATION_PERIOD_DAYS = 365
MIN_ROTATION_PERIOD_DAYS, MAX_ROTATION_PERIOD_DAYS = 90, 2560
MIN_DELETION_WINDOW_DAYS, MAX_DELETION_WINDOW_DAYS = 7, 30
CUSTOMER = "CUSTOMER"
AWS_MANAGED = "AWS"


@dataclass(frozen=True)
class KeyMaterial:
    """One version of a key's material, wrapped under the key's shredding key."""

    version: int  # ordinal written into ciphertext headers
    material_id: str  # AWS's KeyMaterialId: 64 lowercase hex
    wrapped: bytes
    created: datetime
    rotation_type: str | None  # None for the original material; AUTOMATIC or ON_DEMAND


class Key(Aggregate):
    class Event(Aggregate.Event):
        actor: Actor

    class Created(Event, Aggregate.Created):
        arn: str
        account_id: str
        region: str
        description: str
        key_spec: str
        key_usage: str
        origin: str
        key_manager: str
        policy: str
        tags: dict[str, str]
        material: KeyMaterial | None

    def __init__(
        self,
        *,
        actor: Actor,
        arn: str,
        account_id: str,
        region: str,
        description: str,
        key_spec: str,
        key_usage: str,
        origin: str,
        key_manager: str,
        policy: str,
        tags: dict[str, str],
        material: KeyMaterial | None,
    ) -> None:
        self.arn = arn
        self.account_id = account_id
        self.region = region
        self.description = description
        self.key_spec = key_spec
        self.key_usage = key_usage
        self.origin = origin
        self.key_manager = key_manager
        self.policy = policy
        self.tags = dict(tags)
        self.materials: list[KeyMaterial] = [material] if material else []
        self.state = key_states.ENABLED if material else key_states.PENDING_IMPORT
        self.deletion_date: datetime | None = None
        self.pending_window_days: int | None = None
        self.aliases: list[str] = []
        is_aws_managed = key_manager == AWS_MANAGED
        self.rotation_enabled = is_aws_managed
        self.rotation_period_days: int | None = (
            AWS_MANAGED_ROTATION_PERIOD_DAYS if is_aws_managed else None
        )
        self.next_rotation_date: datetime | None = (
            self.created_on + timedelta(days=AWS_MANAGED_ROTATION_PERIOD_DAYS)
            if is_aws_managed
            else None
        )
        self.on_demand_rotations = 0
        self.last_used_at: datetime | None = None
        self.last_used_operation: str | None = None
        self.last_used_request_id: str | None = None

    @classmethod
    def create(
        cls,
        *,
        key_id: uuid.UUID,
        now: datetime,
        actor: Actor,
        arn: str,
        account_id: str,
        region: str,
        description: str,
        key_spec: str,
        key_usage: str,
        origin: str,
        key_manager: str,
        policy: str,
        tags: dict[str, str],
        material: KeyMaterial | None,
    ) -> Key:
        check_tags(tags, existing={})
        return cls._create(
            cls.Created,
            id=key_id,
            timestamp=now,
            actor=actor,
            arn=arn,
            account_id=account_id,
            region=region,
            description=description,
            key_spec=key_spec,
            key_usage=key_usage,
            origin=origin,
            key_manager=key_manager,
            policy=policy,
            tags=tags,
            material=material,
        )

    # --- derived views ---------------------------------------------------------
    @property
    def key_id(self) -> str:
        return str(self.id)

    @property
    def creation_date(self) -> datetime:
        return self.created_on

    @property
    def current_material(self) -> KeyMaterial:
        return self.materials[-1]

    def material(self, version: int) -> KeyMaterial | None:
        if 1 <= version <= len(self.materials):
            return self.materials[version - 1]
        return None

    @property
    def is_deleted(self) -> bool:
        return self.state == key_states.DELETED

    @property
    def is_aws_managed(self) -> bool:
        return self.key_manager == AWS_MANAGED

    @property
    def can_rotate_automatically(self) -> bool:
        return self.key_spec == SYMMETRIC_DEFAULT and self.origin == "AWS_KMS"

    def check_allowed(self, operation: str) -> None:
        check_operation_allowed(self.state, operation, self.arn)

    # --- cryptographic use -----------------------------------------------------
    class Used(Event):
        operation: str
        material_version: int
        encryption_context: dict[str, str]
        algorithm: str
        request_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.last_used_at = self.timestamp
            aggregate.last_used_operation = self.operation
            aggregate.last_used_request_id = self.request_id

    def record_use(
        self,
        *,
        operation: str,
        now: datetime,
        actor: Actor,
        material_version: int,
        encryption_context: dict[str, str] | None,
        algorithm: str = SYMMETRIC_DEFAULT,
    ) -> None:
        """Record a cryptographic use. The caller checked the state with check_allowed."""
        self.trigger_event(
            self.Used,
            timestamp=now,
            actor=actor,
            operation=operation,
            material_version=material_version,
            encryption_context=dict(encryption_context or {}),
            algorithm=algorithm,
            request_id=str(actor.get("request_id", "")),
        )

    # --- lifecycle -------------------------------------------------------------
    class Enabled(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.state = key_states.ENABLED

    class Disabled(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.state = key_states.DISABLED

    def enable(self, *, now: datetime, actor: Actor) -> None:
        self.check_allowed("EnableKey")
        if self.state != key_states.ENABLED:
            self.trigger_event(self.Enabled, timestamp=now, actor=actor)

    def disable(self, *, now: datetime, actor: Actor) -> None:
        self.check_allowed("DisableKey")
        if self.state != key_states.DISABLED:
            self.trigger_event(self.Disabled, timestamp=now, actor=actor)

    class DeletionScheduled(Event):
        deletion_date: datetime
        pending_window_days: int

        def apply(self, aggregate: Any) -> None:
            aggregate.state = key_states.PENDING_DELETION
            aggregate.deletion_date = self.deletion_date
            aggregate.pending_window_days = self.pending_window_days

    class DeletionCancelled(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.state = key_states.DISABLED
            aggregate.deletion_date = None
            aggregate.pending_window_days = None

    class MaterialDestroyed(Event):
        """The deletion window ended: the key's shredding key is gone, and the key with it."""

        def apply(self, aggregate: Any) -> None:
            aggregate.state = key_states.DELETED
            aggregate.aliases = []
            aggregate.next_rotation_date = None

    def schedule_deletion(self, *, now: datetime, actor: Actor, pending_window_days: int) -> None:
        if not MIN_DELETION_WINDOW_DAYS <= pending_window_days <= MAX_DELETION_WINDOW_DAYS:
            raise ValidationError(
                f"PendingWindowInDays value of {pending_window_days} is not valid. "
                f"It must be between {MIN_DELETION_WINDOW_DAYS} and {MAX_DELETION_WINDOW_DAYS}."
            )
        self.check_allowed("ScheduleKeyDeletion")
        self.trigger_event(
            self.DeletionScheduled,
            timestamp=now,
            actor=actor,
            deletion_date=now + timedelta(days=pending_window_days),
            pending_window_days=pending_window_days,
        )

    def cancel_deletion(self, *, now: datetime, actor: Actor) -> None:
        self.check_allowed("CancelKeyDeletion")
        if self.state != key_states.PENDING_DELETION:
            raise InvalidStateError(f"{self.arn} is not pending deletion.")
        self.trigger_event(self.DeletionCancelled, timestamp=now, actor=actor)

    def is_due_for_deletion(self, now: datetime) -> bool:
        return (
            self.state == key_states.PENDING_DELETION
            and self.deletion_date is not None
            and self.deletion_date <= now
        )

    def destroy_material(self, *, now: datetime, actor: Actor) -> None:
        if not self.is_due_for_deletion(now):
            raise InvalidStateError(f"{self.arn} is not due for deletion.")
        self.trigger_event(self.MaterialDestroyed, timestamp=now, actor=actor)

    # --- description, tags, policy ---------------------------------------------
    class DescriptionChanged(Event):
        description: str

        def apply(self, aggregate: Any) -> None:
            aggregate.description = self.description

    def change_description(self, *, now: datetime, actor: Actor, description: str) -> None:
        self.check_allowed("UpdateKeyDescription")
        self.trigger_event(
            self.DescriptionChanged, timestamp=now, actor=actor, description=description
        )

    class Tagged(Event):
        tags: dict[str, str]

        def apply(self, aggregate: Any) -> None:
            aggregate.tags.update(self.tags)

    class Untagged(Event):
        tag_keys: list[str]

        def apply(self, aggregate: Any) -> None:
            for tag_key in self.tag_keys:
                aggregate.tags.pop(tag_key, None)

    def tag(self, *, now: datetime, actor: Actor, tags: dict[str, str]) -> None:
        self.check_allowed("TagResource")
        check_tags(tags, existing=self.tags)
        self.trigger_event(self.Tagged, timestamp=now, actor=actor, tags=dict(tags))

    def untag(self, *, now: datetime, actor: Actor, tag_keys: list[str]) -> None:
        self.check_allowed("UntagResource")
        for tag_key in tag_keys:
            if tag_key.startswith("aws:"):
                raise TagError("Tags beginning with aws: are reserved")
        present = [tag_key for tag_key in dict.fromkeys(tag_keys) if tag_key in self.tags]
        if present:
            self.trigger_event(self.Untagged, timestamp=now, actor=actor, tag_keys=present)

    class PolicyChanged(Event):
        policy_name: str
        policy: str

        def apply(self, aggregate: Any) -> None:
            aggregate.policy = self.policy

    def put_policy(self, *, now: datetime, actor: Actor, policy: str) -> None:
        self.check_allowed("PutKeyPolicy")
        self.trigger_event(
            self.PolicyChanged, timestamp=now, actor=actor, policy_name="default", policy=policy
        )

    # --- aliases ---------------------------------------------------------------
    class AliasAdded(Event):
        alias_name: str

        def apply(self, aggregate: Any) -> None:
            aggregate.aliases = sorted({*aggregate.aliases, self.alias_name})

    class AliasRemoved(Event):
        alias_name: str

        def apply(self, aggregate: Any) -> None:
            aggregate.aliases = [a for a in aggregate.aliases if a != self.alias_name]

    def add_alias(self, *, now: datetime, actor: Actor, alias_name: str, operation: str) -> None:
        self.check_allowed(operation)
        if len(self.aliases) >= MAX_ALIASES:
            raise LimitExceededError(f"Too many aliases for key {self.arn}")
        self.trigger_event(self.AliasAdded, timestamp=now, actor=actor, alias_name=alias_name)

    def remove_alias(self, *, now: datetime, actor: Actor, alias_name: str) -> None:
        if alias_name in self.aliases:
            self.trigger_event(self.AliasRemoved, timestamp=now, actor=actor, alias_name=alias_name)

    # --- rotation --------------------------------------------------------------
    class RotationScheduleChanged(Event):
        rotation_enabled: bool
        rotation_period_days: int | None
        next_rotation_date: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.rotation_enabled = self.rotation_enabled
            aggregate.rotation_period_days = self.rotation_period_days
            aggregate.next_rotation_date = self.next_rotation_date

    class Rotated(Event):
        material: KeyMaterial
        next_rotation_date: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.materials.append(self.material)
            aggregate.next_rotation_date = self.next_rotation_date
            if self.material.rotation_type == "ON_DEMAND":
                aggregate.on_demand_rotations += 1

    def _check_rotatable(self, operation: str) -> None:
        if self.is_aws_managed:
            raise UnsupportedOperationError(f"{self.arn} is an AWS managed key.")
        self.check_allowed(operation)
        if not self.can_rotate_automatically:
            raise UnsupportedOperationError(
                f"{self.arn} origin is {self.origin} which is not valid for this operation."
                if self.origin != "AWS_KMS"
                else f"{self.arn} key spec is {self.key_spec} which is not valid for this "
                "operation."
            )

    def enable_rotation(self, *, now: datetime, actor: Actor, period_days: int | None) -> None:
        self._check_rotatable("EnableKeyRotation")
        period = period_days or self.rotation_period_days or DEFAULT_ROTATION_PERIOD_DAYS
        if not MIN_ROTATION_PERIOD_DAYS <= period <= MAX_ROTATION_PERIOD_DAYS:
            raise ValidationError(
                f"1 validation error detected: Value '{period}' at 'rotationPeriodInDays' "
                f"failed to satisfy constraint: Member must have value "
                + (
                    f"greater than or equal to {MIN_ROTATION_PERIOD_DAYS}"
                    if period < MIN_ROTATION_PERIOD_DAYS
                    else f"less than or equal to {MAX_ROTATION_PERIOD_DAYS}"
                )
            )
        # The period counts from the latest rotation, or from creation.
        since = self.current_material.created
        self.trigger_event(
            self.RotationScheduleChanged,
            timestamp=now,
            actor=actor,
            rotation_enabled=True,
            rotation_period_days=period,
            next_rotation_date=max(since + timedelta(days=period), now),
        )

    def disable_rotation(self, *, now: datetime, actor: Actor) -> None:
        self._check_rotatable("DisableKeyRotation")
        if self.rotation_enabled:
            self.trigger_event(
                self.RotationScheduleChanged,
                timestamp=now,
                actor=actor,
                rotation_enabled=False,
                rotation_period_days=self.rotation_period_days,
                next_rotation_date=None,
            )

    def rotate_on_demand(self, *, now: datetime, actor: Actor, material: KeyMaterial) -> None:
        self._check_rotatable("RotateKeyOnDemand")
        if self.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
            raise LimitExceededError(
                "The on-demand rotations limit has been reached for the given keyId. "
                f"No more on-demand rotations can be performed for this key: {self.arn}"
            )
        self._rotate(now=now, actor=actor, material=material)

    def is_due_for_rotation(self, now: datetime) -> bool:
        return (
            self.state == key_states.ENABLED
            and self.rotation_enabled
            and self.next_rotation_date is not None
            and self.next_rotation_date <= now
        )

    def rotate_automatically(self, *, now: datetime, actor: Actor, material: KeyMaterial) -> None:
        if not self.is_due_for_rotation(now):
            raise InvalidStateError(f"{self.arn} is not due for rotation.")
        self._rotate(now=now, actor=actor, material=material)

    def _rotate(self, *, now: datetime, actor: Actor, material: KeyMaterial) -> None:
        if material.version != len(self.materials) + 1:
            raise ValueError("material version must follow the current one")
        next_date = (
            now + timedelta(days=self.rotation_period_days)
            if self.rotation_enabled and self.rotation_period_days
            else None
        )
        if material.rotation_type == "ON_DEMAND":
            next_date = self.next_rotation_date  # on-demand leaves the automatic schedule

        self.trigger_event(
            self.Rotated, timestamp=now, actor=actor, material=material,
            next_rotation_date=next_date,
        )  # fmt: skip


def check_tags(tags: dict[str, str], *, existing: dict[str, str]) -> None:
    for tag_key in tags:
        if tag_key.startswith("aws:"):
            raise TagError("Tags beginning with aws: are reserved")
    if len({**existing, **tags}) > MAX_TAGS:
        raise TagError("Too many tags")


class Alias(Aggregate):
    """An alias name in one account and Region; its id derives from the name (unique)."""

    class Event(Aggregate.Event):
        actor: Actor

    class Created(Event, Aggregate.Created):
        alias_name: str
        account_id: str
        region: str
        target_key_id: str

    def __init__(
        self, *, actor: Actor, alias_name: str, account_id: str, region: str, target_key_id: str
    ) -> None:
        self.alias_name = alias_name
        self.account_id = account_id
        self.region = region
        self.target_key_id: str | None = target_key_id
        self.last_updated: datetime = self.created_on

    @classmethod
    def create(
        cls,
        *,
        alias_id: uuid.UUID,
        now: datetime,
        actor: Actor,
        alias_name: str,
        account_id: str,
        region: str,
        target_key_id: str,
    ) -> Alias:
        return cls._create(
            cls.Created, id=alias_id, timestamp=now, actor=actor, alias_name=alias_name,
            account_id=account_id, region=region, target_key_id=target_key_id,
        )  # fmt: skip

    @property
    def exists(self) -> bool:
        return self.target_key_id is not None

    class Retargeted(Event):
        target_key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.target_key_id = self.target_key_id
            aggregate.last_updated = self.timestamp

    class Deleted(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.target_key_id = None
            aggregate.last_updated = self.timestamp

    def assign(self, *, now: datetime, actor: Actor, target_key_id: str, alias_arn: str) -> None:
        """Re-create a deleted alias (its id is the name's, so the stream continues)."""
        if self.exists:
            raise AlreadyExistsError(f"An alias with the name {alias_arn} already exists")
        self.trigger_event(self.Retargeted, timestamp=now, actor=actor, target_key_id=target_key_id)

    def retarget(self, *, now: datetime, actor: Actor, target_key_id: str, alias_arn: str) -> None:
        if not self.exists:
            raise NotFoundError(f"Alias {alias_arn} is not found.")
        self.trigger_event(self.Retargeted, timestamp=now, actor=actor, target_key_id=target_key_id)

    def delete(self, *, now: datetime, actor: Actor, alias_arn: str) -> None:
        if not self.exists:
            raise NotFoundError(f"Alias {alias_arn} is not found.")
        self.trigger_event(self.Deleted, timestamp=now, actor=actor)
