"""What use cases answer: plain values the adapters translate to their wire shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from domain import key_states
from domain.key_specs import SYMMETRIC_DEFAULT, key_algorithms
from domain.keys import Key
from domain.multi_region import PRIMARY, REPLICA


@dataclass(frozen=True)
class RegionalKey:
    arn: str
    region: str


@dataclass(frozen=True)
class MultiRegionConfiguration:
    """AWS's MultiRegionConfiguration: every key of the set answers the whole set."""

    key_type: str  # PRIMARY or REPLICA
    primary: RegionalKey
    replicas: tuple[RegionalKey, ...]

    @classmethod
    def of(cls, key: Key) -> MultiRegionConfiguration | None:
        state = key.multi_region
        if state is None:
            return None
        prefix = key.arn.split(":kms:", 1)[0]  # arn:<partition>
        account, key_id = key.account_id, state["key_id"]

        def regional(region: str) -> RegionalKey:
            return RegionalKey(f"{prefix}:kms:{region}:{account}:key/{key_id}", region)

        return cls(
            PRIMARY if key.is_multi_region_primary else REPLICA,
            regional(state["primary_region"]),
            tuple(regional(region) for region in key.replica_regions),
        )


@dataclass(frozen=True)
class KeyDescription:
    account_id: str
    key_id: str
    arn: str
    creation_date: datetime
    enabled: bool
    description: str
    key_usage: str
    key_state: str
    deletion_date: datetime | None
    origin: str
    key_manager: str
    key_spec: str
    encryption_algorithms: tuple[str, ...]
    multi_region: bool
    current_material_id: str | None
    signing_algorithms: tuple[str, ...] = ()
    mac_algorithms: tuple[str, ...] = ()
    key_agreement_algorithms: tuple[str, ...] = ()
    encapsulation_algorithms: tuple[str, ...] = ()
    expiration_model: str | None = None  # imported material only
    valid_to: datetime | None = None
    custom_key_store_id: str | None = None  # keys in custom key stores only
    cloud_hsm_cluster_id: str | None = None
    xks_key_id: str | None = None
    multi_region_configuration: MultiRegionConfiguration | None = None
    # A primary waiting for its replicas (PendingReplicaDeletion): its window to come.
    pending_deletion_window_days: int | None = None

    @classmethod
    def of(cls, key: Key, state: str | None = None) -> KeyDescription:
        """``state``: the state to report when it differs from the key's own (a key of a
        disconnected custom key store is Unavailable)."""
        algorithms = key_algorithms(key.key_spec, key.key_usage)
        current_import = key.current_import
        if current_import is not None and not current_import["imported"]:
            current_import = None  # expired or deleted: the key is PendingImport
        return cls(
            account_id=key.account_id,
            key_id=key.key_id,
            arn=key.arn,
            creation_date=key.creation_date,
            enabled=(state or key.state) == key_states.ENABLED,
            description=key.description,
            key_usage=key.key_usage,
            key_state=state or key.state,
            deletion_date=key.deletion_date,
            origin=key.origin,
            key_manager=key.key_manager,
            key_spec=key.key_spec,
            encryption_algorithms=algorithms.encryption,
            multi_region=key.multi_region is not None,
            current_material_id=_current_material_id(key),
            signing_algorithms=algorithms.signing,
            mac_algorithms=algorithms.mac,
            key_agreement_algorithms=algorithms.key_agreement,
            encapsulation_algorithms=algorithms.encapsulation,
            expiration_model=current_import["expiration_model"] if current_import else None,
            valid_to=current_import["valid_to"] if current_import else None,
            custom_key_store_id=key.store["custom_key_store_id"] if key.store else None,
            cloud_hsm_cluster_id=key.store["cloud_hsm_cluster_id"] if key.store else None,
            xks_key_id=key.store["xks_key_id"] if key.store else None,
            multi_region_configuration=MultiRegionConfiguration.of(key),
            pending_deletion_window_days=(
                key.pending_window_days
                if key.state == key_states.PENDING_REPLICA_DELETION
                else None
            ),
        )


def _current_material_id(key: Key) -> str | None:
    """AWS shows CurrentKeyMaterialId for symmetric encryption keys only (the keys that
    rotate); HMAC and asymmetric keys, imported or not, have one material and no id shown."""
    if key.key_spec != SYMMETRIC_DEFAULT or not key.materials:
        return None
    return key.current_material.material_id


@dataclass(frozen=True)
class Encrypted:
    ciphertext: bytes
    key_arn: str
    algorithm: str
    material_id: str


@dataclass(frozen=True)
class Decrypted:
    plaintext: bytes
    key_arn: str
    algorithm: str
    material_id: str


@dataclass(frozen=True)
class DataKey:
    ciphertext: bytes
    plaintext: bytes | None
    key_arn: str
    material_id: str


@dataclass(frozen=True)
class ReEncrypted:
    ciphertext: bytes
    source_key_arn: str
    key_arn: str
    source_algorithm: str
    destination_algorithm: str
    source_material_id: str
    destination_material_id: str


@dataclass(frozen=True)
class DeletionScheduled:
    key_arn: str
    deletion_date: datetime | None  # None while a primary waits for its replicas
    key_state: str
    pending_window_days: int


@dataclass(frozen=True)
class RotationStatus:
    key_id: str
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: datetime | None


@dataclass(frozen=True)
class RotationEntry:
    key_id: str
    material_id: str
    rotation_date: datetime
    rotation_type: str | None
    # Imported material only (AWS's RotationsListEntry members for Origin EXTERNAL keys).
    import_state: str | None = None  # IMPORTED or PENDING_IMPORT
    material_state: str | None = None  # CURRENT, NON_CURRENT or PENDING_ROTATION
    expiration_model: str | None = None
    valid_to: datetime | None = None
    description: str | None = None


@dataclass(frozen=True)
class AliasEntry:
    alias_name: str
    alias_arn: str
    # None for a predefined AWS alias whose AWS managed key does not exist yet.
    target_key_id: str | None = None
    creation_date: datetime | None = None
    last_updated: datetime | None = None


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    key_arn: str


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_marker: str | None = None

    @property
    def truncated(self) -> bool:
        return self.next_marker is not None


@dataclass(frozen=True)
class HistoryEvent:
    version: int
    name: str
    timestamp: datetime
    actor: dict[str, object]
    details: dict[str, object] = field(default_factory=dict)
