"""The Key aggregate: one KMS key's whole life, as events.

Every method checks AWS's rules for the key's state before it records anything, so a
method that raises has changed nothing. Time is passed in; key material arrives
already wrapped (the domain never sees plaintext material).
"""

from __future__ import annotations

import struct
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from eventsourcing.domain import Aggregate

from domain import key_states
from domain.actors import Actor, ActorRecord
from domain.errors import (
    AlreadyExistsError,
    ExpiredImportTokenError,
    IncorrectKeyMaterialError,
    InvalidImportTokenError,
    InvalidStateError,
    LimitExceededError,
    NotFoundError,
    TagError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.key_specs import EXTERNAL, SYMMETRIC_DEFAULT
from domain.key_states import check_operation_allowed
from domain.multi_region import (
    MultiRegionState,
    check_can_replicate_to,
    check_new_primary,
    not_primary,
)

MAX_TAGS = 50
MAX_ALIASES = 50
MAX_ON_DEMAND_ROTATIONS = 25
DEFAULT_ROTATION_PERIOD_DAYS = 365
AWS_MANAGED_ROTATION_PERIOD_DAYS = 365
MIN_ROTATION_PERIOD_DAYS, MAX_ROTATION_PERIOD_DAYS = 90, 2560
MIN_DELETION_WINDOW_DAYS, MAX_DELETION_WINDOW_DAYS = 7, 30
CUSTOMER = "CUSTOMER"
AWS_MANAGED = "AWS"
IMPORT_PARAMETERS_VALID_FOR = timedelta(hours=24)
MAX_VALID_TO = timedelta(days=365)
KEY_MATERIAL_EXPIRES = "KEY_MATERIAL_EXPIRES"
KEY_MATERIAL_DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"
NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL = "NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"
# In a ReEncryptTo event's request_parameters: [source key id, material version] (not logged).
SOURCE_USE = "_source"
# How the library itself makes an event from its attributes (Mapper.to_domain_event).
_new_object = object.__new__
_set_attribute = object.__setattr__


@dataclass(frozen=True)
class KeyMaterial:
    """One version of a key's material, wrapped under the key's shredding key."""

    version: int  # ordinal written into ciphertext headers
    material_id: str  # AWS's KeyMaterialId: 64 lowercase hex
    wrapped: bytes
    created: datetime
    rotation_type: str | None  # None for the original material; AUTOMATIC or ON_DEMAND
    # True for material imported from outside (Origin EXTERNAL): it is wrapped under a
    # wrapping key of its own, so deleting or expiring it shreds just that material.
    imported: bool = False
    # True for material generated inside a CloudHSM key store's token: it never leaves
    # the token, ``wrapped`` is empty and the token's key is labelled ``material_id``.
    in_store: bool = False


class KeyStoreLocation(TypedDict):
    """Where a key of a custom key store lives: the store, and the cluster (AWS_CLOUDHSM)
    or the external key (EXTERNAL_KEY_STORE) that holds its material."""

    custom_key_store_id: str
    cloud_hsm_cluster_id: str | None
    xks_key_id: str | None


class ImportedMaterialState(TypedDict):
    """Where one imported material stands (AWS's ImportState and expiration)."""

    imported: bool  # False once expired or deleted (PENDING_IMPORT) until re-imported
    expiration_model: str
    valid_to: datetime | None
    description: str


class ImportParameters(TypedDict):
    """What GetParametersForImport issued: the RSA wrapping key, itself wrapped."""

    wrapping_algorithm: str
    wrapping_key_spec: str
    wrapped_private_key: bytes
    valid_to: datetime


@dataclass(frozen=True)
class ImportPlan:
    """Where imported material goes: its version, and whether it waits for a rotation."""

    version: int
    pending_rotation: bool
    import_type: str


_IMPORT_TOKEN = struct.Struct(">4sB16s16sq")
_IMPORT_TOKEN_MAGIC = b"KLIT"


def encode_import_token(key_id: uuid.UUID, token_id: str, valid_to: datetime) -> bytes:
    """The opaque ImportToken: names its key and its parameters (not a secret: the
    parameters live in the key's stream and are usable once, within 24 hours)."""
    return _IMPORT_TOKEN.pack(
        _IMPORT_TOKEN_MAGIC, 1, key_id.bytes, bytes.fromhex(token_id), int(valid_to.timestamp())
    )


def decode_import_token(token: bytes) -> tuple[uuid.UUID, str, datetime]:
    """(key id, token id, valid to), or InvalidImportTokenError for anything malformed."""
    if len(token) != _IMPORT_TOKEN.size:
        raise InvalidImportTokenError("The import token is not valid.")
    magic, version, key_bytes, token_bytes, valid_to = _IMPORT_TOKEN.unpack(token)
    if magic != _IMPORT_TOKEN_MAGIC or version != 1:
        raise InvalidImportTokenError("The import token is not valid.")
    try:
        expires = datetime.fromtimestamp(valid_to, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidImportTokenError("The import token is not valid.") from None
    return uuid.UUID(bytes=key_bytes), token_bytes.hex(), expires


class Key(Aggregate):
    # Class-level defaults serve aggregates restored from snapshots taken before these
    # attributes existed; events always assign new values, never mutate these in place.
    # (Type comments, not annotations: annotations would make them dataclass fields.)
    pending_material = None  # type: KeyMaterial | None
    store = None  # type: KeyStoreLocation | None
    imported_materials = {}  # type: dict[str, ImportedMaterialState]
    import_parameters = {}  # type: dict[str, ImportParameters]
    multi_region = None  # type: MultiRegionState | None

    class Event(Aggregate.Event):
        actor: ActorRecord

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
        # Where a key of a custom key store lives (None for the rest, and for events
        # recorded before custom key stores existed).
        store: KeyStoreLocation | None = None
        # The set a multi-Region key belongs to (None for every other key).
        multi_region: MultiRegionState | None = None

    class Replicated(Created):
        """ReplicateKey created this key, a replica of a multi-Region primary key: with the
        primary's materials (re-wrapped under this key's own wrapping key) and rotation
        schedule; its policy, description and tags are its own."""

        materials: list[KeyMaterial] | None = None
        rotation_enabled: bool = False
        rotation_period_days: int | None = None
        primary_arn: str | None = None

    def __init__(
        self,
        *,
        actor: ActorRecord,
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
        store: KeyStoreLocation | None = None,
        multi_region: MultiRegionState | None = None,
        materials: list[KeyMaterial] | None = None,
        rotation_enabled: bool = False,
        rotation_period_days: int | None = None,
        primary_arn: str | None = None,
    ) -> None:
        self.arn = arn
        self.store = store
        self.multi_region = multi_region
        self.account_id = account_id
        self.region = region
        self.description = description
        self.key_spec = key_spec
        self.key_usage = key_usage
        self.origin = origin
        self.key_manager = key_manager
        self.policy = sys.intern(policy)  # most keys share a few policies: keep one copy
        self.tags = dict(tags)
        self.materials: list[KeyMaterial] = [material] if material else []
        self.pending_material = None
        self.imported_materials = {}
        self.import_parameters = {}
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
        if materials is not None:  # a replica (Replicated)
            self.materials = list(materials)
            self.state = key_states.ENABLED
            self.rotation_enabled = rotation_enabled
            self.rotation_period_days = rotation_period_days
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
        store: KeyStoreLocation | None = None,
        multi_region: MultiRegionState | None = None,
    ) -> Key:
        check_tags(tags, existing={})
        return cls._create(
            cls.Created,
            id=key_id,
            timestamp=now,
            actor=actor.record(),
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
            store=store,
            multi_region=multi_region,
        )

    # --- derived views ---------------------------------------------------------
    @property
    def key_id(self) -> str:
        """The key id callers see: the aggregate id, or a multi-Region key's ``mrk-`` id."""
        if self.multi_region is not None:
            return self.multi_region["key_id"]
        return str(self.id)

    @property
    def is_multi_region_primary(self) -> bool:
        return self.multi_region is not None and self.multi_region["primary_region"] == self.region

    @property
    def is_replica(self) -> bool:
        return self.multi_region is not None and self.multi_region["primary_region"] != self.region

    @property
    def replica_regions(self) -> list[str]:
        """The Regions of the set's replicas (the primary's Region left out)."""
        if self.multi_region is None:
            return []
        primary = self.multi_region["primary_region"]
        return [region for region in self.multi_region["regions"] if region != primary]

    @property
    def creation_date(self) -> datetime:
        return self.created_on

    @property
    def current_material(self) -> KeyMaterial:
        return self.materials[-1]

    def material(self, version: int) -> KeyMaterial | None:
        """A material version that can still be used: not imported material that expired
        or was deleted (its ciphertexts stay unreadable until it is re-imported)."""
        if 1 <= version <= len(self.materials):
            found = self.materials[version - 1]
            if found.imported and not self.is_material_imported(found.material_id):
                return None
            return found
        return None

    @property
    def is_external(self) -> bool:
        return self.origin == EXTERNAL

    def is_material_imported(self, material_id: str) -> bool:
        state = self.imported_materials.get(material_id)
        return state is not None and state["imported"]

    @property
    def current_import(self) -> ImportedMaterialState | None:
        """The current imported material's expiration (DescribeKey's ExpirationModel, ValidTo)."""
        if not self.is_external or not self.materials:
            return None
        return self.imported_materials.get(self.current_material.material_id)

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
        """One cryptographic use of the key: it is also the call's CloudTrail record.

        ``request_parameters`` holds what that record logs beyond the other fields, in
        CloudTrail's lowerCamelCase and never a secret: the KeyId as the caller gave it (key
        id, key ARN, alias name or alias ARN; absent when the call named no key, as Decrypt
        may), ``keySpec``/``numberOfBytes``, ``keyPairSpec``, ``messageType``. ``None`` on
        events recorded before the field existed (class version 1): their record names the
        key by its ARN.

        A ReEncrypt is one call but two uses, one per key, and gets one record: the
        destination's ``ReEncryptTo`` event carries the whole call's parameters (the
        source's ``sourceKeyId``, ``sourceEncryptionContext``, ``sourceEncryptionAlgorithm``)
        and, under ``SOURCE_USE`` (never logged), the source key's id and the material
        version it decrypted with; the source's ``ReEncryptFrom`` event then has no record
        of its own (its ``request_parameters`` is ``{}``).
        """

        class_version = 2

        operation: str
        material_version: int
        encryption_context: dict[str, str]
        algorithm: str
        request_id: str
        request_parameters: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["request_parameters"] = None

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
        request_parameters: dict[str, Any] | None = None,
    ) -> None:
        """Record a cryptographic use. The caller checked the state with check_allowed, and
        gives ``request_parameters`` already shaped as logged (see ``Used``)."""
        context = dict(encryption_context) if encryption_context else {}
        request_id = actor.request_id or ""
        originator_id = self.id
        if type(self) is not Key or not isinstance(originator_id, uuid.UUID):
            # What the fast path below assumes does not hold: the library's way (which
            # refuses a non-UUID id, and a subclass's TOPIC rules).
            self.trigger_event(
                self.Used,
                timestamp=now,
                actor=actor.record(),
                operation=operation,
                material_version=material_version,
                encryption_context=context,
                algorithm=algorithm,
                request_id=request_id,
                request_parameters=request_parameters,
            )
            return
        # The hot path (every Encrypt, Decrypt, GenerateDataKey...): what trigger_event does,
        # without its generic keyword handling and the frozen dataclass's __init__ (~3x the
        # CPU). The attributes go in the dataclass's field order, as its __init__ sets
        # them (the stored JSON follows that order); mutate()'s id and version checks hold
        # by construction.
        if now is None:
            now = Key.Used.create_timestamp()
        version = self.version + 1
        event = _new_object(Key.Used)
        _set_attribute(
            event,
            "__dict__",
            {
                "originator_id": originator_id,
                "originator_version": version,
                "timestamp": now,
                "actor": actor.record(),
                "operation": operation,
                "material_version": material_version,
                "encryption_context": context,
                "algorithm": algorithm,
                "request_id": request_id,
                "request_parameters": request_parameters,
            },
        )
        event.apply(self)
        self.version = version
        self.modified_on = now
        self.pending_events.append(event)

    def record_re_encryption(
        self,
        *,
        destination: Key,
        now: datetime,
        actor: Actor,
        material_version: int,
        source_key_id: str | None,
        source_context: dict[str, str] | None,
        source_algorithm: str,
        destination_key_id: str,
        destination_context: dict[str, str] | None,
        destination_algorithm: str,
    ) -> None:
        """Record a ReEncrypt from this key (``material_version``: the ciphertext's) to
        ``destination`` (possibly this key): a use of each key, with one record."""
        self.record_use(
            operation="ReEncryptFrom",
            now=now,
            actor=actor,
            material_version=material_version,
            encryption_context=source_context,
            algorithm=source_algorithm,
            request_parameters={},
        )
        parameters: dict[str, Any] = {}
        if source_key_id is not None:
            parameters["sourceKeyId"] = source_key_id
        if source_context:
            parameters["sourceEncryptionContext"] = dict(source_context)
        parameters["sourceEncryptionAlgorithm"] = source_algorithm
        parameters["destinationKeyId"] = destination_key_id
        parameters[SOURCE_USE] = [str(self.id), material_version]
        destination.record_use(
            operation="ReEncryptTo",
            now=now,
            actor=actor,
            material_version=destination.current_material.version,
            encryption_context=destination_context,
            algorithm=destination_algorithm,
            request_parameters=parameters,
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
            self.trigger_event(self.Enabled, timestamp=now, actor=actor.record())

    def disable(self, *, now: datetime, actor: Actor) -> None:
        self.check_allowed("DisableKey")
        if self.state != key_states.DISABLED:
            self.trigger_event(self.Disabled, timestamp=now, actor=actor.record())

    class DeletionScheduled(Event):
        deletion_date: datetime
        pending_window_days: int
        # A multi-Region primary key with replicas waits for them (PendingReplicaDeletion);
        # its window starts when the last replica is gone (ReplicaRemoved).
        awaiting_replicas: bool = False

        def apply(self, aggregate: Any) -> None:
            aggregate.pending_window_days = self.pending_window_days
            if self.awaiting_replicas:
                aggregate.state = key_states.PENDING_REPLICA_DELETION
                aggregate.deletion_date = None
                return
            aggregate.state = key_states.PENDING_DELETION
            aggregate.deletion_date = self.deletion_date

    class DeletionCancelled(Event):
        def apply(self, aggregate: Any) -> None:
            usable = bool(aggregate.materials) and (
                not aggregate.is_external
                or aggregate.is_material_imported(aggregate.current_material.material_id)
            )
            aggregate.state = key_states.DISABLED if usable else key_states.PENDING_IMPORT
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
            # AWS's text (as it answered ScheduleKeyDeletion with a window of 1 day).
            raise ValidationError(
                f"PendingWindowInDays must be between {MIN_DELETION_WINDOW_DAYS} and "
                f"{MAX_DELETION_WINDOW_DAYS}"
            )
        self.check_allowed("ScheduleKeyDeletion")
        self.trigger_event(
            self.DeletionScheduled,
            timestamp=now,
            actor=actor.record(),
            deletion_date=now + timedelta(days=pending_window_days),
            pending_window_days=pending_window_days,
            awaiting_replicas=self.is_multi_region_primary and bool(self.replica_regions),
        )

    def cancel_deletion(self, *, now: datetime, actor: Actor) -> None:
        self.check_allowed("CancelKeyDeletion")
        if self.state not in key_states.PENDING:
            raise InvalidStateError(f"{self.arn} is not pending deletion.")
        self.trigger_event(self.DeletionCancelled, timestamp=now, actor=actor.record())

    def is_due_for_deletion(self, now: datetime) -> bool:
        return (
            self.state == key_states.PENDING_DELETION
            and self.deletion_date is not None
            and self.deletion_date <= now
        )

    def destroy_material(self, *, now: datetime, actor: Actor) -> None:
        if not self.is_due_for_deletion(now):
            raise InvalidStateError(f"{self.arn} is not due for deletion.")
        self.trigger_event(self.MaterialDestroyed, timestamp=now, actor=actor.record())

    # --- description, tags, policy ---------------------------------------------
    class DescriptionChanged(Event):
        description: str

        def apply(self, aggregate: Any) -> None:
            aggregate.description = self.description

    def change_description(self, *, now: datetime, actor: Actor, description: str) -> None:
        self.check_allowed("UpdateKeyDescription")
        self.trigger_event(
            self.DescriptionChanged, timestamp=now, actor=actor.record(), description=description
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
        self.trigger_event(self.Tagged, timestamp=now, actor=actor.record(), tags=dict(tags))

    def untag(self, *, now: datetime, actor: Actor, tag_keys: list[str]) -> None:
        self.check_allowed("UntagResource")
        for tag_key in tag_keys:
            check_tag_key(tag_key)
        present = [tag_key for tag_key in dict.fromkeys(tag_keys) if tag_key in self.tags]
        if present:
            self.trigger_event(self.Untagged, timestamp=now, actor=actor.record(), tag_keys=present)

    class PolicyChanged(Event):
        policy_name: str
        policy: str

        def apply(self, aggregate: Any) -> None:
            aggregate.policy = sys.intern(self.policy)

    def put_policy(self, *, now: datetime, actor: Actor, policy: str) -> None:
        self.check_allowed("PutKeyPolicy")
        self.trigger_event(
            self.PolicyChanged,
            timestamp=now,
            actor=actor.record(),
            policy_name="default",
            policy=policy,
        )

    # --- grants (domain.grants holds the values) --------------------------------
    @property
    def grants(self) -> dict[str, dict[str, Any]]:
        """Grant records by grant id, as plain JSON values (keys and snapshots from before
        grants have none; events assign new dicts, never mutate one)."""
        grants: dict[str, dict[str, Any]] = self.__dict__.get("_grants", {})
        return grants

    class GrantCreated(Event):
        grant: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            record = {**self.grant, "creation_date": self.timestamp}
            aggregate._grants = {**aggregate.grants, self.grant["grant_id"]: record}

    class GrantRetired(Event):
        grant_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate._grants = {k: v for k, v in aggregate.grants.items() if k != self.grant_id}

    class GrantRevoked(Event):
        grant_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate._grants = {k: v for k, v in aggregate.grants.items() if k != self.grant_id}

    def create_grant(self, *, now: datetime, actor: Actor, grant: dict[str, Any]) -> None:
        """Record a grant (``domain.grants.Grant.record()``); the caller was authorized."""
        from domain.grants import MAX_GRANTS_PER_KEY

        self.check_allowed("CreateGrant")
        if len(self.grants) >= MAX_GRANTS_PER_KEY:
            raise LimitExceededError(f"The grants limit has been reached for key {self.arn}")
        self.trigger_event(
            self.GrantCreated, timestamp=now, actor=actor.record(), grant=dict(grant)
        )

    def end_grant(self, *, now: datetime, actor: Actor, grant_id: str, revoke: bool) -> None:
        """Retire (by its retiring principal or grantee) or revoke (by policy) a grant."""
        self.check_allowed("RevokeGrant" if revoke else "RetireGrant")
        if grant_id not in self.grants:
            raise NotFoundError(f"Grant ID {grant_id} not found")
        event = self.GrantRevoked if revoke else self.GrantRetired
        self.trigger_event(event, timestamp=now, actor=actor.record(), grant_id=grant_id)

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
        self.trigger_event(
            self.AliasAdded, timestamp=now, actor=actor.record(), alias_name=alias_name
        )

    def remove_alias(self, *, now: datetime, actor: Actor, alias_name: str) -> None:
        if alias_name in self.aliases:
            self.trigger_event(
                self.AliasRemoved, timestamp=now, actor=actor.record(), alias_name=alias_name
            )

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
            pending = aggregate.pending_material
            if pending is not None and pending.material_id == self.material.material_id:
                aggregate.pending_material = None
            if self.material.rotation_type == "ON_DEMAND":
                aggregate.on_demand_rotations += 1

    def _check_rotatable(self, operation: str) -> None:
        if self.is_aws_managed:
            raise UnsupportedOperationError(f"{self.arn} is an AWS managed key.")
        self.check_allowed(operation)
        self.check_rotation_supported()
        if self.is_replica:  # replicas share the primary's rotation
            raise not_primary(self.arn)

    def check_rotation_supported(self) -> None:
        """Automatic and on-demand rotation are for symmetric encryption keys of origin
        AWS_KMS. AWS names another origin, and gives no text for another key spec
        (RotateKeyOnDemand and EnableKeyRotation on an RSA_4096 key, as recorded)."""
        if self.can_rotate_automatically:
            return
        if self.origin != "AWS_KMS":
            raise UnsupportedOperationError(
                f"{self.arn} origin is {self.origin} which is not valid for this operation."
            )
        raise UnsupportedOperationError()

    def rotation_period_for(self, period_days: int | None) -> int:
        """The period EnableKeyRotation sets: the request's, else the key's own, else 365."""
        return period_days or self.rotation_period_days or DEFAULT_ROTATION_PERIOD_DAYS

    def enable_rotation(self, *, now: datetime, actor: Actor, period_days: int | None) -> None:
        self._check_rotatable("EnableKeyRotation")
        period = self.rotation_period_for(period_days)
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
            actor=actor.record(),
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
                actor=actor.record(),
                rotation_enabled=False,
                rotation_period_days=self.rotation_period_days,
                next_rotation_date=None,
            )

    def rotate_on_demand(
        self, *, now: datetime, actor: Actor, material: KeyMaterial | None
    ) -> None:
        """Rotate now: to ``material`` (fresh), or for an imported symmetric key to the
        material imported with ImportType NEW_KEY_MATERIAL (then ``material`` is None)."""
        if self.is_external and self.key_spec == SYMMETRIC_DEFAULT and not self.is_aws_managed:
            self.check_allowed("RotateKeyOnDemand")
            if self.pending_material is None:
                raise InvalidStateError(
                    f"No available key material pending rotation for the key: {self.arn}."
                )
            material = replace(self.pending_material, created=now, rotation_type="ON_DEMAND")
        else:
            self._check_rotatable("RotateKeyOnDemand")
        if material is None:
            raise ValueError("fresh material is needed to rotate a key of origin AWS_KMS")
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
            and not self.is_replica
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
            self.Rotated,
            timestamp=now,
            actor=actor.record(),
            material=material,
            next_rotation_date=next_date,
        )

    # --- multi-Region keys (domain.multi_region) ----------------------------------------
    class ReplicaAdded(Event):
        """ReplicateKey added a replica in ``region`` to the set (recorded on every key
        of the set that was there before; the primary's is the call's record)."""

        region: str
        replica_arn: str
        # True on the primary, whose event is the ReplicateKey call's record; False on
        # the replicas that were there before.
        by_call: bool = True

        def apply(self, aggregate: Any) -> None:
            state = aggregate.multi_region
            regions = sorted({*state["regions"], self.region})
            aggregate.multi_region = {**state, "regions": regions}

    class ReplicaRemoved(Event):
        """A replica's deletion window ended. A primary waiting for its replicas
        (PendingReplicaDeletion) starts its own window when the last one is gone."""

        region: str
        # Set when this key was waiting for its last replica: its own window ends then.
        deletion_date: datetime | None = None

        def apply(self, aggregate: Any) -> None:
            state = aggregate.multi_region
            regions = [region for region in state["regions"] if region != self.region]
            aggregate.multi_region = {**state, "regions": regions}
            if self.deletion_date is not None:
                aggregate.state = key_states.PENDING_DELETION
                aggregate.deletion_date = self.deletion_date

    class PrimaryRegionUpdated(Event):
        """UpdatePrimaryRegion: the set's primary is now the key in ``primary_region``."""

        primary_region: str
        next_rotation_date: datetime | None  # the new primary's; replicas have none
        previous_primary_region: str = ""

        def apply(self, aggregate: Any) -> None:
            aggregate.multi_region = {
                **aggregate.multi_region,
                "primary_region": self.primary_region,
            }
            aggregate.next_rotation_date = self.next_rotation_date

    class Synchronized(Event):
        """The primary's shared properties copied to this replica (AWS's
        SynchronizeMultiRegionKey): a new material after a rotation, the rotation
        schedule. ``material`` is this replica's own wrapped copy."""

        material: KeyMaterial | None
        rotation_enabled: bool
        rotation_period_days: int | None

        def apply(self, aggregate: Any) -> None:
            if self.material is not None:
                aggregate.materials = [*aggregate.materials, self.material]
            aggregate.rotation_enabled = self.rotation_enabled
            aggregate.rotation_period_days = self.rotation_period_days

    def check_can_replicate(self, replica_region: str) -> None:
        """ReplicateKey: an enabled multi-Region primary key, a Region not in its set."""
        if not self.is_multi_region_primary or self.multi_region is None:
            raise not_primary(self.arn)
        self.check_allowed("ReplicateKey")
        check_can_replicate_to(self.multi_region, self.arn, replica_region)

    def replicate(
        self,
        *,
        replica_id: uuid.UUID,
        now: datetime,
        actor: Actor,
        replica_actor: Actor,
        replica_arn: str,
        replica_region: str,
        description: str,
        policy: str,
        tags: dict[str, str],
        materials: list[KeyMaterial],
    ) -> Key:
        """The replica in ``replica_region`` (``materials``: this key's, re-wrapped for
        it), created by ``replica_actor`` (the caller, in the replica's Region). Records
        ReplicaAdded here; the caller records it on the other replicas."""
        self.check_can_replicate(replica_region)
        check_tags(tags, existing={})
        if [m.material_id for m in materials] != [m.material_id for m in self.materials]:
            raise ValueError("a replica has its primary's materials")
        assert self.multi_region is not None
        state = self.multi_region
        replica = Key._create(
            Key.Replicated,
            id=replica_id,
            timestamp=now,
            actor=replica_actor.record(),
            arn=replica_arn,
            account_id=self.account_id,
            region=replica_region,
            description=description,
            key_spec=self.key_spec,
            key_usage=self.key_usage,
            origin=self.origin,
            key_manager=self.key_manager,
            policy=policy,
            tags=tags,
            material=None,
            store=None,
            multi_region=MultiRegionState(
                key_id=state["key_id"],
                primary_region=state["primary_region"],
                regions=sorted({*state["regions"], replica_region}),
            ),
            materials=list(materials),
            rotation_enabled=self.rotation_enabled,
            rotation_period_days=self.rotation_period_days,
            primary_arn=self.arn,
        )
        self.trigger_event(
            self.ReplicaAdded,
            timestamp=now,
            actor=actor.record(),
            region=replica_region,
            replica_arn=replica_arn,
        )
        return replica

    def note_replica_added(self, *, now: datetime, actor: Actor, region: str, arn: str) -> None:
        """Another key of the set records a replica added by ReplicateKey on the primary."""
        self.trigger_event(
            self.ReplicaAdded,
            timestamp=now,
            actor=actor.record(),
            region=region,
            replica_arn=arn,
            by_call=False,
        )

    def note_replica_removed(self, *, now: datetime, actor: Actor, region: str) -> None:
        if self.multi_region is None or region not in self.multi_region["regions"]:
            return
        remaining = [r for r in self.multi_region["regions"] if r != region]
        deletion_date = None
        if self.state == key_states.PENDING_REPLICA_DELETION and remaining == [self.region]:
            deletion_date = now + timedelta(days=self.pending_window_days or 30)
        self.trigger_event(
            self.ReplicaRemoved,
            timestamp=now,
            actor=actor.record(),
            region=region,
            deletion_date=deletion_date,
        )

    def check_can_update_primary(self, primary_region: str, replica_arn: str) -> None:
        """UpdatePrimaryRegion on this key: an enabled primary, a replica in that Region."""
        if not self.is_multi_region_primary or self.multi_region is None:
            raise not_primary(self.arn)
        self.check_allowed("UpdatePrimaryRegion")
        check_new_primary(self.multi_region, primary_region, replica_arn)

    def update_primary_region(self, *, now: datetime, actor: Actor, primary_region: str) -> None:
        """Record the set's new primary on this key (every key of the set records it)."""
        if self.multi_region is None:
            raise ValueError("only a multi-Region key has a primary Region")
        next_date = None
        if primary_region == self.region and self.rotation_enabled and self.rotation_period_days:
            since = self.current_material.created
            next_date = max(since + timedelta(days=self.rotation_period_days), now)
        self.trigger_event(
            self.PrimaryRegionUpdated,
            timestamp=now,
            actor=actor.record(),
            primary_region=primary_region,
            next_rotation_date=next_date,
            previous_primary_region=self.multi_region["primary_region"],
        )

    def synchronize(
        self, *, now: datetime, actor: Actor, primary: Key, material: KeyMaterial | None
    ) -> None:
        """Copy ``primary``'s shared properties to this replica (``material``: the
        primary's newest material re-wrapped for this key, after a rotation)."""
        if not self.is_replica:
            raise ValueError("only a replica is synchronized")
        if material is not None and material.version != len(self.materials) + 1:
            raise ValueError("material version must follow the current one")
        self.trigger_event(
            self.Synchronized,
            timestamp=now,
            actor=actor.record(),
            material=material,
            rotation_enabled=primary.rotation_enabled,
            rotation_period_days=primary.rotation_period_days,
        )

    # --- imported key material (Origin EXTERNAL) ---------------------------------------
    class ImportParametersIssued(Event):
        """GetParametersForImport: a wrapping key pair and token, usable once for 24 hours."""

        token_id: str
        wrapping_algorithm: str
        wrapping_key_spec: str
        wrapped_private_key: bytes
        valid_to: datetime

        def apply(self, aggregate: Any) -> None:
            live = {
                token_id: parameters
                for token_id, parameters in aggregate.import_parameters.items()
                if parameters["valid_to"] > self.timestamp
            }
            live[self.token_id] = ImportParameters(
                wrapping_algorithm=self.wrapping_algorithm,
                wrapping_key_spec=self.wrapping_key_spec,
                wrapped_private_key=self.wrapped_private_key,
                valid_to=self.valid_to,
            )
            aggregate.import_parameters = live

    class MaterialImported(Event):
        """Material imported (or re-imported, possibly with a new expiration)."""

        material: KeyMaterial
        token_id: str
        import_type: str
        pending_rotation: bool  # NEW_KEY_MATERIAL for a key that has material: waits
        expiration_model: str
        valid_to: datetime | None
        description: str

        def apply(self, aggregate: Any) -> None:
            parameters = dict(aggregate.import_parameters)
            parameters.pop(self.token_id, None)
            aggregate.import_parameters = parameters
            if self.pending_rotation:
                aggregate.pending_material = self.material
            else:
                materials = list(aggregate.materials)
                index = self.material.version - 1
                if index < len(materials):
                    materials[index] = self.material  # re-imported: a fresh wrapped copy
                else:
                    materials.append(self.material)
                aggregate.materials = materials
            aggregate.imported_materials = {
                **aggregate.imported_materials,
                self.material.material_id: ImportedMaterialState(
                    imported=True,
                    expiration_model=self.expiration_model,
                    valid_to=self.valid_to,
                    description=self.description,
                ),
            }
            current = aggregate.materials[-1].material_id if aggregate.materials else None
            if (
                aggregate.state == key_states.PENDING_IMPORT
                and current == self.material.material_id
            ):
                aggregate.state = key_states.ENABLED

    class MaterialExpired(Event):
        """The scheduler deleted material whose ValidTo passed (AWS's DeleteExpiredKeyMaterial)."""

        material_id: str
        current: bool

        def apply(self, aggregate: Any) -> None:
            _material_gone(aggregate, self.material_id, self.current)

    class ImportedMaterialDeleted(Event):
        """DeleteImportedKeyMaterial: the material is gone until it is re-imported."""

        material_id: str
        current: bool

        def apply(self, aggregate: Any) -> None:
            _material_gone(aggregate, self.material_id, self.current)

    def _check_external(self, operation: str) -> None:
        if not self.is_external:
            raise UnsupportedOperationError(
                f"{self.arn} origin is {self.origin} which is not valid for this operation."
            )
        self.check_allowed(operation)

    def check_can_import(self, operation: str) -> None:
        """GetParametersForImport, ImportKeyMaterial: EXTERNAL keys not pending deletion."""
        self._check_external(operation)

    def issue_import_parameters(
        self,
        *,
        now: datetime,
        actor: Actor,
        token_id: str,
        wrapping_algorithm: str,
        wrapping_key_spec: str,
        wrapped_private_key: bytes,
    ) -> datetime:
        """Record new import parameters; returns when they stop being valid."""
        self._check_external("GetParametersForImport")
        valid_to = now + IMPORT_PARAMETERS_VALID_FOR
        self.trigger_event(
            self.ImportParametersIssued,
            timestamp=now,
            actor=actor.record(),
            token_id=token_id,
            wrapping_algorithm=wrapping_algorithm,
            wrapping_key_spec=wrapping_key_spec,
            wrapped_private_key=wrapped_private_key,
            valid_to=valid_to,
        )
        return valid_to

    def import_parameters_for(self, token: bytes, now: datetime) -> tuple[str, ImportParameters]:
        """The parameters an ImportToken names: InvalidImportTokenError when it is malformed,
        used, or another key's; ExpiredImportTokenError after its 24 hours."""
        key_id, token_id, valid_to = decode_import_token(token)
        if key_id != self.id:
            raise InvalidImportTokenError("The import token was issued for another KMS key.")
        parameters = self.import_parameters.get(token_id)
        if valid_to <= now or (parameters is not None and parameters["valid_to"] <= now):
            raise ExpiredImportTokenError("The import token has expired.")
        if parameters is None:
            raise InvalidImportTokenError("The import token is not valid or has already been used.")
        return token_id, parameters

    def plan_import(
        self,
        *,
        now: datetime,
        material_id: str,
        import_type: str | None,
        key_material_id: str | None,
        expiration_model: str,
        valid_to: datetime | None,
    ) -> ImportPlan:
        """Check an import against AWS's rules; raises before anything is recorded."""
        self._check_external("ImportKeyMaterial")
        _check_expiration(now, expiration_model, valid_to)
        first = not self.materials
        default_type = NEW_KEY_MATERIAL if first else EXISTING_KEY_MATERIAL
        chosen = import_type or default_type
        if self.key_spec != SYMMETRIC_DEFAULT and (chosen != default_type or key_material_id):
            raise ValidationError(
                "ImportType and KeyMaterialId are valid only for symmetric encryption keys; "
                "other keys can only re-import their one key material."
            )
        pending = self.pending_material
        known = {m.material_id: m for m in self.materials}
        if chosen == NEW_KEY_MATERIAL:
            if key_material_id:
                raise ValidationError(
                    "KeyMaterialId cannot be specified when ImportType is NEW_KEY_MATERIAL."
                )
            if first:
                return ImportPlan(1, False, chosen)
            if material_id in known or (pending and pending.material_id == material_id):
                raise IncorrectKeyMaterialError(
                    "This key material is already associated with the KMS key; import it "
                    "with ImportType EXISTING_KEY_MATERIAL."
                )
            if pending is not None:
                raise InvalidStateError(
                    f"New key material (id: {material_id}) cannot be imported into KMS key "
                    f"{self.arn}, because another key material (id: "
                    f"{pending.material_id}) is pending rotation."
                )
            return ImportPlan(len(self.materials) + 1, True, chosen)
        if first:
            raise IncorrectKeyMaterialError(
                "The KMS key has no key material yet; import with ImportType NEW_KEY_MATERIAL."
            )
        if key_material_id is not None and key_material_id != material_id:
            raise IncorrectKeyMaterialError(
                f"The key material does not match the key material ID {key_material_id}."
            )
        if material_id in known:
            return ImportPlan(known[material_id].version, False, chosen)
        if pending is not None and pending.material_id == material_id:
            return ImportPlan(pending.version, True, chosen)
        raise IncorrectKeyMaterialError(
            "The key material does not match the key material previously imported into "
            "this KMS key."
        )

    def import_material(
        self,
        *,
        now: datetime,
        actor: Actor,
        token_id: str,
        plan: ImportPlan,
        material: KeyMaterial,
        expiration_model: str,
        valid_to: datetime | None,
        description: str,
    ) -> None:
        """Record an import that plan_import accepted."""
        if material.version != plan.version or not material.imported:
            raise ValueError("imported material must follow its plan")
        self.trigger_event(
            self.MaterialImported,
            timestamp=now,
            actor=actor.record(),
            material=material,
            token_id=token_id,
            import_type=plan.import_type,
            pending_rotation=plan.pending_rotation,
            expiration_model=expiration_model,
            valid_to=valid_to if expiration_model == KEY_MATERIAL_EXPIRES else None,
            description=description,
        )

    def imported_material(self, material_id: str) -> KeyMaterial | None:
        """Any material of this key by id, including material pending rotation."""
        for material in [*self.materials, self.pending_material]:
            if material is not None and material.material_id == material_id:
                return material
        return None

    def material_to_delete(self, material_id: str | None) -> KeyMaterial | None:
        """DeleteImportedKeyMaterial's target (default: the current material), or None
        when there is nothing to delete."""
        self._check_external("DeleteImportedKeyMaterial")
        if material_id is None:
            return self.current_material if self.materials else None
        found = self.imported_material(material_id)
        if found is None:
            raise NotFoundError(
                f"Key material {material_id} is not associated with KMS key {self.arn}."
            )
        return found

    def delete_imported_material(self, *, now: datetime, actor: Actor, material_id: str) -> None:
        """Record the deletion (the caller shredded the material first); a no-op when the
        material is already gone."""
        if self.is_material_imported(material_id):
            self.trigger_event(
                self.ImportedMaterialDeleted,
                timestamp=now,
                actor=actor.record(),
                material_id=material_id,
                current=self._is_current(material_id),
            )

    def materials_due_for_expiry(self, now: datetime) -> list[str]:
        return [
            material_id
            for material_id, state in self.imported_materials.items()
            if state["imported"] and state["valid_to"] is not None and state["valid_to"] <= now
        ]

    def expire_material(self, *, now: datetime, actor: Actor, material_id: str) -> None:
        if material_id not in self.materials_due_for_expiry(now):
            raise InvalidStateError(f"Key material {material_id} of {self.arn} is not due.")
        self.trigger_event(
            self.MaterialExpired,
            timestamp=now,
            actor=actor.record(),
            material_id=material_id,
            current=self._is_current(material_id),
        )

    def _is_current(self, material_id: str) -> bool:
        return bool(self.materials) and self.current_material.material_id == material_id


def _material_gone(aggregate: Any, material_id: str, current: bool) -> None:
    state = aggregate.imported_materials.get(material_id)
    if state is not None:
        aggregate.imported_materials = {
            **aggregate.imported_materials,
            material_id: {**state, "imported": False},
        }
    pending = aggregate.pending_material
    if pending is not None and pending.material_id == material_id:
        aggregate.pending_material = None
    if current and aggregate.state in (key_states.ENABLED, key_states.DISABLED):
        aggregate.state = key_states.PENDING_IMPORT


def _check_expiration(now: datetime, expiration_model: str, valid_to: datetime | None) -> None:
    if expiration_model == KEY_MATERIAL_EXPIRES:
        if valid_to is None:
            raise ValidationError(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
            )
        if valid_to <= now:
            raise ValidationError("The validTo date must be in the future.")
        if valid_to > now + MAX_VALID_TO:
            raise ValidationError("The validTo date must be no more than 365 days in the future.")
    elif valid_to is not None:
        raise ValidationError(
            "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"
        )


def check_tag_key(tag_key: str) -> None:
    """The ``aws:`` prefix is AWS's, in any case (``AWS:key1`` is refused, as recorded)."""
    if tag_key[:4].lower() == "aws:":
        raise TagError("Tags beginning with aws: are reserved")


def check_tags(tags: dict[str, str], *, existing: dict[str, str]) -> None:
    for tag_key in tags:
        check_tag_key(tag_key)
    if len({**existing, **tags}) > MAX_TAGS:
        raise TagError("Too many tags")


class Alias(Aggregate):
    """An alias name in one account and Region; its id derives from the name (unique)."""

    class Event(Aggregate.Event):
        actor: ActorRecord

    class Created(Event, Aggregate.Created):
        alias_name: str
        account_id: str
        region: str
        target_key_id: str

    def __init__(
        self,
        *,
        actor: ActorRecord,
        alias_name: str,
        account_id: str,
        region: str,
        target_key_id: str,
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
            cls.Created,
            id=alias_id,
            timestamp=now,
            actor=actor.record(),
            alias_name=alias_name,
            account_id=account_id,
            region=region,
            target_key_id=target_key_id,
        )

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
        self.trigger_event(
            self.Retargeted, timestamp=now, actor=actor.record(), target_key_id=target_key_id
        )

    def retarget(self, *, now: datetime, actor: Actor, target_key_id: str, alias_arn: str) -> None:
        if not self.exists:
            raise NotFoundError(f"Alias {alias_arn} is not found.")
        self.trigger_event(
            self.Retargeted, timestamp=now, actor=actor.record(), target_key_id=target_key_id
        )

    def delete(self, *, now: datetime, actor: Actor, alias_arn: str) -> None:
        if not self.exists:
            raise NotFoundError(f"Alias {alias_arn} is not found.")
        self.trigger_event(self.Deleted, timestamp=now, actor=actor.record())
