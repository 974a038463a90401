"""Custom key stores (AWS's CloudHSM key stores and external key stores), as events.

``CustomKeyStore`` is one store's life: created, updated, connected (asynchronously:
CONNECTING, then CONNECTED or FAILED with a ConnectionErrorCode), disconnected, deleted.
``CustomKeyStoreIndex`` is one account and Region's stores: what must be unique among
them (names, clusters, proxy URIs, VPC endpoint services), their order and their quota.
Every method checks AWS's rules before it records; secrets arrive already sealed (the
domain never sees a KeyStorePassword or an XKS secret access key).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.actors import Actor, ActorRecord
from domain.errors import (
    CloudHsmClusterInUseError,
    CustomKeyStoreHasCMKsError,
    CustomKeyStoreInvalidStateError,
    CustomKeyStoreNameInUseError,
    IncorrectOriginError,
    LimitExceededError,
    XksKeyAlreadyInUseError,
    XksProxyUriEndpointInUseError,
    XksProxyUriInUseError,
    XksProxyVpcEndpointServiceInUseError,
)
from domain.identifiers import NAMESPACE

AWS_CLOUDHSM = "AWS_CLOUDHSM"
EXTERNAL_KEY_STORE = "EXTERNAL_KEY_STORE"
CONNECTED, CONNECTING, FAILED = "CONNECTED", "CONNECTING", "FAILED"
DISCONNECTED, DISCONNECTING = "DISCONNECTED", "DISCONNECTING"
PUBLIC_ENDPOINT, VPC_ENDPOINT_SERVICE = "PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"
# AWS's quota: custom key stores per account and Region (not adjustable).
MAX_STORES_PER_REGION = 10
# What a connected external key store may change (AWS's UpdateCustomKeyStore: its name,
# XksProxyAuthenticationCredential and XksProxyUriPath "when it is in the CONNECTED or
# DISCONNECTED state"; its endpoint, connectivity and VPC endpoint service only when
# DISCONNECTED).
XKS_CHANGEABLE_WHILE_CONNECTED = frozenset({"name", "xks_access_key_id", "xks_uri_path"})
# What says how an external key store reaches its proxy ("secret": its credential's).
PROXY_SETTINGS = frozenset(
    {
        "xks_uri_endpoint",
        "xks_uri_path",
        "xks_connectivity",
        "xks_vpc_endpoint_service_name",
        "xks_vpc_endpoint_service_owner",
        "xks_access_key_id",
        "secret",
    }
)


def new_store_id() -> str:
    """AWS's form: ``cks-`` and 17 lowercase hex digits."""
    return "cks-" + secrets.token_hex(9)[:17]


def store_aggregate_id(account_id: str, region: str, store_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"custom-key-store:{account_id}:{region}:{store_id}")


def index_aggregate_id(account_id: str, region: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"custom-key-stores:{account_id}:{region}")


def proxy_checked_on_creation(settings: dict[str, str]) -> bool:
    """AWS asks an external key store's proxy (GetHealthStatus) before it creates the store
    with PUBLIC_ENDPOINT connectivity; one with VPC_ENDPOINT_SERVICE connectivity is first
    reached when it is connected."""
    return settings.get("xks_connectivity") == PUBLIC_ENDPOINT


def _invalid_state(store_id: str, state: str, operation: str) -> CustomKeyStoreInvalidStateError:
    return CustomKeyStoreInvalidStateError(
        f"{operation} is not valid for custom key store {store_id} in connection state {state}."
    )


class CustomKeyStore(Aggregate):
    """One custom key store. ``settings`` holds the store's non-secret configuration in
    plain values: ``cluster_id``, ``trust_anchor`` (CloudHSM); ``xks_uri_endpoint``,
    ``xks_uri_path``, ``xks_connectivity``, ``xks_vpc_endpoint_service_name``,
    ``xks_vpc_endpoint_service_owner``, ``xks_access_key_id`` (external). ``sealed_secret``
    is the KeyStorePassword or the XKS secret access key, sealed by the vault. ``key_ids``
    are its KMS keys; ``external_keys`` maps each external key an external key store's KMS
    key uses (XksKeyId) to that KMS key."""

    # For stores recorded before external keys existed (events assign, never mutate).
    external_keys = {}  # type: dict[str, str]

    class Event(Aggregate.Event):
        actor: ActorRecord

    class Created(Event, Aggregate.Created):
        store_id: str
        account_id: str
        region: str
        name: str
        store_type: str
        settings: dict[str, str]
        sealed_secret: bytes

    def __init__(
        self,
        *,
        actor: ActorRecord,
        store_id: str,
        account_id: str,
        region: str,
        name: str,
        store_type: str,
        settings: dict[str, str],
        sealed_secret: bytes,
    ) -> None:
        self.store_id = store_id
        self.account_id = account_id
        self.region = region
        self.name = name
        self.store_type = store_type
        self.settings = dict(settings)
        self.sealed_secret = sealed_secret
        self.connection_state = DISCONNECTED
        self.connection_error_code: str | None = None
        self.deleted = False
        self.key_ids: frozenset[str] = frozenset()

    @classmethod
    def create(
        cls,
        *,
        aggregate_id: uuid.UUID,
        now: datetime,
        actor: Actor,
        store_id: str,
        account_id: str,
        region: str,
        name: str,
        store_type: str,
        settings: dict[str, str],
        sealed_secret: bytes,
    ) -> CustomKeyStore:
        return cls._create(
            cls.Created,
            id=aggregate_id,
            timestamp=now,
            actor=actor.record(),
            store_id=store_id,
            account_id=account_id,
            region=region,
            name=name,
            store_type=store_type,
            settings=settings,
            sealed_secret=sealed_secret,
        )

    @property
    def creation_date(self) -> datetime:
        return self.created_on

    @property
    def is_cloudhsm(self) -> bool:
        return self.store_type == AWS_CLOUDHSM

    # --- configuration -----------------------------------------------------------------
    class Updated(Event):
        name: str
        settings: dict[str, str]
        sealed_secret: bytes | None  # None: unchanged

        def apply(self, aggregate: Any) -> None:
            aggregate.name = self.name
            aggregate.settings = dict(self.settings)
            if self.sealed_secret is not None:
                aggregate.sealed_secret = self.sealed_secret

    def changes(
        self, *, name: str | None, settings: dict[str, str], secret_given: bool
    ) -> frozenset[str]:
        """What an update would change (``name``, ``secret``, settings), once checked
        against what AWS allows in the store's state; empty when nothing.

        A CloudHSM key store changes only when DISCONNECTED; a connected external key store
        may change its name, its proxy credential and its proxy URI path, nothing else."""
        new_settings = {**self.settings, **settings}
        changed = {k for k, v in new_settings.items() if self.settings.get(k) != v}
        if name is not None and name != self.name:
            changed.add("name")
        if secret_given:
            changed.add("secret")
        if changed and self.connection_state != DISCONNECTED:
            allowed = set() if self.is_cloudhsm else XKS_CHANGEABLE_WHILE_CONNECTED | {"secret"}
            if not changed <= allowed:
                raise _invalid_state(self.store_id, self.connection_state, "UpdateCustomKeyStore")
        return frozenset(changed)

    def proxy_checked_on_update(self, changed: frozenset[str], settings: dict[str, str]) -> bool:
        """Whether AWS asks the proxy (GetHealthStatus, with the new values) before this
        update: one that changes how an external key store reaches its proxy (endpoint,
        path, connectivity, VPC endpoint service, credential), when the store then has
        PUBLIC_ENDPOINT connectivity, or is CONNECTED (its proxy is reached as its keys
        reach it). A new name alone asks nothing."""
        if self.is_cloudhsm or not changed & PROXY_SETTINGS:
            return False
        connectivity = {**self.settings, **settings}.get("xks_connectivity")
        return connectivity == PUBLIC_ENDPOINT or self.connection_state == CONNECTED

    def update(
        self,
        *,
        now: datetime,
        actor: Actor,
        name: str | None,
        settings: dict[str, str],
        sealed_secret: bytes | None,
    ) -> bool:
        """Apply the changes AWS allows in the store's state (``changes``); False when
        nothing changes."""
        if not self.changes(name=name, settings=settings, secret_given=sealed_secret is not None):
            return False
        self.trigger_event(
            self.Updated,
            timestamp=now,
            actor=actor.record(),
            name=self.name if name is None else name,
            settings={**self.settings, **settings},
            sealed_secret=sealed_secret,
        )
        return True

    # --- connection --------------------------------------------------------------------
    class ConnectionRequested(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.connection_state = CONNECTING
            aggregate.connection_error_code = None

    class Connected(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.connection_state = CONNECTED
            aggregate.connection_error_code = None

    class ConnectionFailed(Event):
        error_code: str

        def apply(self, aggregate: Any) -> None:
            aggregate.connection_state = FAILED
            aggregate.connection_error_code = self.error_code

    class Disconnected(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.connection_state = DISCONNECTED
            aggregate.connection_error_code = None

    def request_connection(self, *, now: datetime, actor: Actor) -> bool:
        """ConnectCustomKeyStore: True when a connection must now be attempted. AWS: valid
        in every state but DISCONNECTING and FAILED (a failed store is disconnected first);
        on a CONNECTED or CONNECTING store it succeeds and changes nothing."""
        if self.connection_state in (DISCONNECTING, FAILED):
            raise _invalid_state(self.store_id, self.connection_state, "ConnectCustomKeyStore")
        if self.connection_state != DISCONNECTED:
            return False
        self.trigger_event(self.ConnectionRequested, timestamp=now, actor=actor.record())
        return True

    def connection_settled(self, *, now: datetime, actor: Actor, error_code: str | None) -> None:
        """The outcome of the attempt started by ``request_connection`` (ignored when the
        store was disconnected meanwhile)."""
        if self.connection_state != CONNECTING:
            return
        if error_code is None:
            self.trigger_event(self.Connected, timestamp=now, actor=actor.record())
        else:
            self.trigger_event(
                self.ConnectionFailed, timestamp=now, actor=actor.record(), error_code=error_code
            )

    def disconnect(self, *, now: datetime, actor: Actor) -> None:
        """DisconnectCustomKeyStore: valid in every state but DISCONNECTING and DISCONNECTED."""
        if self.connection_state in (DISCONNECTING, DISCONNECTED):
            raise _invalid_state(self.store_id, self.connection_state, "DisconnectCustomKeyStore")
        self.trigger_event(self.Disconnected, timestamp=now, actor=actor.record())

    # --- its keys ----------------------------------------------------------------------
    class KeyAdded(Event):
        key_id: str
        # An external key store's key: the external key it uses (XksKeyId). None for a
        # CloudHSM key store's, and in events recorded before external keys existed.
        xks_key_id: str | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.key_ids = aggregate.key_ids | {self.key_id}
            if self.xks_key_id is not None:
                aggregate.external_keys = {**aggregate.external_keys, self.xks_key_id: self.key_id}

    class KeyRemoved(Event):
        key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.key_ids = aggregate.key_ids - {self.key_id}
            aggregate.external_keys = {
                xks_key_id: key_id
                for xks_key_id, key_id in aggregate.external_keys.items()
                if key_id != self.key_id
            }

    def check_external_key_free(self, xks_key_id: str) -> None:
        """AWS: each KMS key of an external key store uses an external key of its own
        (a key deleted from the store frees its external key)."""
        user = self.external_keys.get(xks_key_id)
        if user is not None:
            raise XksKeyAlreadyInUseError(
                f"The external key {xks_key_id} is already associated with KMS key {user} in"
                f" custom key store {self.store_id}."
            )

    def check_key_creation(self, origin: str) -> None:
        """CreateKey in this store: its type must match the Origin, and it must be
        CONNECTED (AWS: CustomKeyStoreInvalidStateException otherwise)."""
        expected = AWS_CLOUDHSM if self.is_cloudhsm else EXTERNAL_KEY_STORE
        if origin != expected:
            raise IncorrectOriginError(
                f"Origin {origin} is not valid for custom key store {self.store_id} of type"
                f" {self.store_type}."
            )
        self.check_connected("CreateKey")

    def check_connected(self, operation: str) -> None:
        """CreateKey and GenerateRandom need a CONNECTED store."""
        if self.connection_state != CONNECTED:
            raise _invalid_state(self.store_id, self.connection_state, operation)

    def add_key(
        self, *, now: datetime, actor: Actor, key_id: str, xks_key_id: str | None = None
    ) -> None:
        """A KMS key now lives in this store (an external key store's: on ``xks_key_id``)."""
        if xks_key_id is not None:
            self.check_external_key_free(xks_key_id)
        self.trigger_event(
            self.KeyAdded,
            timestamp=now,
            actor=actor.record(),
            key_id=key_id,
            xks_key_id=xks_key_id,
        )

    def remove_key(self, *, now: datetime, actor: Actor, key_id: str) -> None:
        if key_id in self.key_ids:
            self.trigger_event(self.KeyRemoved, timestamp=now, actor=actor.record(), key_id=key_id)

    # --- deletion ----------------------------------------------------------------------
    class Deleted(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.deleted = True

    def delete(self, *, now: datetime, actor: Actor) -> None:
        """DeleteCustomKeyStore: only DISCONNECTED, and only once it holds no KMS key."""
        if self.connection_state != DISCONNECTED:
            raise _invalid_state(self.store_id, self.connection_state, "DeleteCustomKeyStore")
        if self.key_ids:
            raise CustomKeyStoreHasCMKsError(
                f"Custom key store {self.store_id} still contains KMS keys. Delete them first."
            )
        self.trigger_event(self.Deleted, timestamp=now, actor=actor.record())


class CustomKeyStoreIndex(Aggregate):
    """An account and Region's custom key stores, in creation order, with what must be
    unique among them. ``entries`` maps a store id to its unique attributes: ``name``,
    ``cluster_id``, ``xks_uri`` (endpoint + path), ``xks_uri_endpoint`` (VPC
    connectivity), ``xks_vpc_endpoint_service_name``."""

    class Event(Aggregate.Event):
        actor: ActorRecord

    class Created(Event, Aggregate.Created):
        account_id: str
        region: str

    def __init__(self, *, actor: ActorRecord, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self.entries: dict[str, dict[str, str]] = {}

    @classmethod
    def create(
        cls, *, aggregate_id: uuid.UUID, now: datetime, actor: Actor, account_id: str, region: str
    ) -> CustomKeyStoreIndex:
        return cls._create(
            cls.Created,
            id=aggregate_id,
            timestamp=now,
            actor=actor.record(),
            account_id=account_id,
            region=region,
        )

    class Entered(Event):
        store_id: str
        entry: dict[str, str]

        def apply(self, aggregate: Any) -> None:
            aggregate.entries = {**aggregate.entries, self.store_id: dict(self.entry)}

    class Removed(Event):
        store_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.entries = {k: v for k, v in aggregate.entries.items() if k != self.store_id}

    def store_named(self, name: str) -> str | None:
        return next((sid for sid, e in self.entries.items() if e.get("name") == name), None)

    def check_unique(self, store_id: str, entry: dict[str, str]) -> None:
        """AWS's uniqueness rules, against every other store of the account and Region."""
        for other_id, other in self.entries.items():
            if other_id == store_id:
                continue
            if other.get("name") == entry.get("name"):
                raise CustomKeyStoreNameInUseError(
                    f"A custom key store with name {entry['name']} already exists."
                )
            for member, error, what in (
                ("cluster_id", CloudHsmClusterInUseError, "CloudHSM cluster"),
                ("xks_uri", XksProxyUriInUseError, "XKS proxy URI"),
                ("xks_uri_endpoint", XksProxyUriEndpointInUseError, "XKS proxy URI endpoint"),
                (
                    "xks_vpc_endpoint_service_name",
                    XksProxyVpcEndpointServiceInUseError,
                    "VPC endpoint service",
                ),
            ):
                value = entry.get(member)
                if value and other.get(member) == value:
                    raise error(
                        f"The {what} {value} is already associated with custom key store"
                        f" {other_id}."
                    )

    def check_entry(self, store_id: str, entry: dict[str, str]) -> None:
        """What ``enter`` checks, without entering: AWS's quota and uniqueness rules."""
        if store_id not in self.entries and len(self.entries) >= MAX_STORES_PER_REGION:
            raise LimitExceededError(
                f"You have reached the limit of {MAX_STORES_PER_REGION} custom key stores"
                " in this Region."
            )
        self.check_unique(store_id, entry)

    def enter(self, *, now: datetime, actor: Actor, store_id: str, entry: dict[str, str]) -> None:
        """A new store, or a store's changed attributes."""
        self.check_entry(store_id, entry)
        if self.entries.get(store_id) == entry:
            return
        self.trigger_event(
            self.Entered, timestamp=now, actor=actor.record(), store_id=store_id, entry=entry
        )

    def remove(self, *, now: datetime, actor: Actor, store_id: str) -> None:
        if store_id in self.entries:
            self.trigger_event(self.Removed, timestamp=now, actor=actor.record(), store_id=store_id)


def unique_entry(name: str, settings: dict[str, str]) -> dict[str, str]:
    """What of a store's name and settings the index keeps unique."""
    entry = {"name": name}
    if settings.get("cluster_id"):
        entry["cluster_id"] = settings["cluster_id"]
    endpoint = settings.get("xks_uri_endpoint")
    if endpoint:
        entry["xks_uri"] = endpoint + settings.get("xks_uri_path", "")
        if settings.get("xks_connectivity") == VPC_ENDPOINT_SERVICE:
            # Each store with VPC connectivity needs its own private DNS name and service.
            entry["xks_uri_endpoint"] = endpoint
            service = settings.get("xks_vpc_endpoint_service_name")
            if service:
                entry["xks_vpc_endpoint_service_name"] = service
    return entry
