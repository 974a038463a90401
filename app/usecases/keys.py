"""Keys and their lifecycle, and the service the adapters call.

Adapters (AWS JSON protocol, REST, CLI) parse input and shape output; everything
decided about a request is decided in the use cases: key resolution, authorization, state
rules, cryptography, and recording the events. Mutations run as commands on the single
writer, so each answer follows the commit of its events.

``KeyService`` is what adapters hold: one use-case object per area, as typed attributes
(``service.keys``, ``service.crypto``, ``service.asymmetric``, ``service.imported``,
``service.grants``, ``service.explain``, ``service.audit``, ``service.jobs``), each built by
app.bootstrap with the collaborators it needs (the KeyResolver among them).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import orjson

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.ports import (
    Clock,
    Command,
    CommandRunner,
    EventHistory,
    KeyDirectory,
    UnitOfWork,
    Vault,
)
from app.usecases.asymmetric import AsymmetricOperations
from app.usecases.auditors import AuditService
from app.usecases.authorization import AccessControl, AccessRequest
from app.usecases.crypto import CryptoOperations
from app.usecases.custom_key_stores import CustomKeyStoreOperations
from app.usecases.explain import ExplainOperations
from app.usecases.external_keys import ExternalKeyOperations
from app.usecases.grants import GrantOperations
from app.usecases.imported import ImportedMaterial, imported_rotation_entries
from app.usecases.key_history import KeyTimeline, key_timeline
from app.usecases.multi_region import (
    MultiRegionOperations,
    note_replica_gone,
    synchronize_replicas,
)
from app.usecases.outside_calls import OutsideCalls
from app.usecases.quotas import RequestQuotas
from app.usecases.resolution import KeyResolver
from app.usecases.results import (
    AliasEntry,
    DeletionScheduled,
    KeyDescription,
    KeyEntry,
    Page,
    RotationEntry,
    RotationStatus,
)
from app.usecases.seeded_keys import SeededKey, seeded_key
from app.usecases.store_keys import StoreKeys, TokenGenerateKey, TokenStore
from domain import key_states
from domain.algorithms import generate_material
from domain.custom_key_stores import (
    AWS_CLOUDHSM,
    EXTERNAL_KEY_STORE,
    CustomKeyStore,
    store_aggregate_id,
)
from domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    CustomKeyStoreNotFoundError,
    InvalidMarkerError,
    InvalidStateError,
    NotFoundError,
    TagError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.identifiers import (
    PREDEFINED_AWS_ALIASES,
    alias_aggregate_id,
    alias_arn,
    key_arn,
    parse_key_reference,
    validate_alias_name,
    validate_new_alias_name,
)
from domain.key_specs import (
    AWS_KMS,
    ENCRYPT_DECRYPT,
    EXTERNAL,
    SUPPORTED_SPECS,
    SYMMETRIC_DEFAULT,
    USAGES_BY_SPEC,
)
from domain.keys import CUSTOMER, Alias, Key, KeyStoreLocation
from domain.multi_region import PRIMARY, new_multi_region_key_id
from domain.policy import default_key_policy, validate_policy_document
from domain.xks import check_external_key

STORE_ORIGINS = (AWS_CLOUDHSM, EXTERNAL_KEY_STORE)

TIMELINE_PAGE = 1000
TIMELINE_MAX_EVENTS = 20_000  # a key page's history: read at most this many events


@dataclass(frozen=True)
class CreateKeyRequest:
    description: str = ""
    key_usage: str | None = None
    key_spec: str | None = None
    customer_master_key_spec: str | None = None
    origin: str = "AWS_KMS"
    policy: str | None = None
    bypass_policy_lockout_safety_check: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    multi_region: bool = False
    custom_key_store_id: str | None = None
    xks_key_id: str | None = None


class KeyLifecycle:
    """CreateKey, DescribeKey, Enable/DisableKey, deletion, rotation, aliases, ListKeys,
    tags, key policies, and a key's event history."""

    def __init__(
        self,
        *,
        runner: CommandRunner,
        resolver: KeyResolver,
        access: AccessControl,
        vault: Vault,
        clock: Clock,
        directory: KeyDirectory,
        history: EventHistory,
        partition: str,
        seeded_keys: bool = False,
    ) -> None:
        self.runner = runner
        self.resolver = resolver
        # Emulator mode: CreateKey honours LocalStack's _custom_id_ / _custom_key_material_.
        self.seeded_keys = seeded_keys
        self.access = access
        self.vault = vault
        self.clock = clock
        self.directory = directory
        self.history = history
        self.partition = partition

    # ==== key lifecycle ===============================================================
    async def create_key(self, caller: Caller, request: CreateKeyRequest) -> KeyDescription:
        key_spec, key_usage = _check_key_spec(request)
        if request.origin not in (AWS_KMS, EXTERNAL, *STORE_ORIGINS):
            raise UnsupportedOperationError(
                f"Origin {request.origin} is not supported by this KeyLedger version."
            )
        _check_store_request(request, key_spec)
        _check_multi_region_request(request)
        if request.policy is not None:
            validate_policy_document(request.policy)
        tags = tags_from_pairs(request.tags)
        seed = SeededKey(key_id=None, material=None, tags=tags)
        if self.seeded_keys:
            seed = seeded_key(
                tags,
                key_spec=key_spec,
                origin_is_kms=request.origin == AWS_KMS and request.custom_key_store_id is None,
                multi_region=request.multi_region,
            )
            tags = seed.tags
        policy = request.policy or default_key_policy(self.partition, caller.account_id)
        material_bytes = seed.material
        if material_bytes is None and request.origin == AWS_KMS and key_spec != SYMMETRIC_DEFAULT:
            # RSA generation takes up to seconds: never on the writer thread.
            material_bytes = await asyncio.to_thread(generate_material, key_spec)

        in_store = secrets.token_hex(32) if request.origin == AWS_CLOUDHSM else None
        key_conditions = {
            "kms:KeySpec": key_spec,
            "kms:KeyUsage": key_usage,
            "kms:KeyOrigin": request.origin,
            "kms:CustomerMasterKeySpec": key_spec,
            "kms:CustomerMasterKeyUsage": key_usage,
            "kms:MultiRegion": str(request.multi_region).lower(),
            "kms:BypassPolicyLockoutSafetyCheck": str(
                request.bypass_policy_lockout_safety_check
            ).lower(),
        }
        if request.multi_region:  # CreateKey makes a set's primary (ReplicateKey its replicas)
            key_conditions["kms:MultiRegionKeyType"] = PRIMARY

        def command(uow: UnitOfWork, calls: OutsideCalls | None) -> KeyDescription:
            self.access.authorize(
                uow,
                caller,
                "CreateKey",
                None,
                AccessRequest(request_tags=tags or None, conditions=key_conditions),
            )
            if tags:  # AWS: creating a key with tags also needs kms:TagResource
                self.access.authorize(
                    uow, caller, "TagResource", None, AccessRequest(request_tags=tags)
                )
            if request.policy is not None:
                self.access.check_policy(
                    uow,
                    caller,
                    request.policy,
                    key=None,
                    key_arn=key_arn(self.partition, caller.region, caller.account_id, "*"),
                    key_account=caller.account_id,
                    bypass_lockout=request.bypass_policy_lockout_safety_check,
                )
            if seed.key_id is not None and uow.get(seed.key_id) is not None:
                raise AlreadyExistsError(f"A key with id {seed.key_id} already exists.")
            store = None
            if request.custom_key_store_id is not None:
                store = self._store_for_key(uow, caller, request, in_store, calls)
            key = self.resolver.new_key(
                uow,
                caller,
                region=caller.region,
                account_id=caller.account_id,
                key_manager=CUSTOMER,
                description=request.description,
                policy=policy,
                tags=tags,
                key_spec=key_spec,
                key_usage=key_usage,
                origin=request.origin,
                material_bytes=material_bytes,
                in_store=in_store,
                store=None if store is None else _location(store, request),
                multi_region_key_id=new_multi_region_key_id() if request.multi_region else None,
                key_uuid=seed.key_id,
            )
            if store is not None:
                store.add_key(
                    now=self.clock.now(),
                    actor=caller.actor(),
                    key_id=key.key_id,
                    xks_key_id=request.xks_key_id,
                )
            return KeyDescription.of(key)

        if request.custom_key_store_id is None:
            return await self.runner.run(lambda uow: command(uow, None))
        calls = self.resolver.stores.calls(caller, "CreateKey")
        try:
            return await calls.run(self.runner, lambda uow: command(uow, calls))
        except Exception:
            if in_store is not None:
                await self.resolver.stores.forget_token_key(calls, in_store)
            raise

    def _store_for_key(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: CreateKeyRequest,
        in_store: str | None,
        calls: OutsideCalls | None,
    ) -> CustomKeyStore:
        """The connected store a new key goes in; for a CloudHSM store, its material is
        generated in the token (an outside call) before the key is recorded; for an
        external key store, the proxy must show the external key usable (an outside call),
        and no other KMS key of the store may use it."""
        assert request.custom_key_store_id is not None and calls is not None
        found = uow.get(
            store_aggregate_id(caller.account_id, caller.region, request.custom_key_store_id)
        )
        if not isinstance(found, CustomKeyStore) or found.deleted:
            raise CustomKeyStoreNotFoundError(
                f"Custom key store {request.custom_key_store_id} not found."
            )
        found.check_key_creation(request.origin)
        if in_store is not None:
            calls.answer(TokenGenerateKey(self.resolver.stores.token_of(found), in_store))
        if request.xks_key_id is not None:
            found.check_external_key_free(request.xks_key_id)
            metadata = self.resolver.stores.external_key_metadata(found, request.xks_key_id, calls)
            check_external_key(request.xks_key_id, metadata)
        return found

    async def describe_key(self, caller: Caller, key_id: str) -> KeyDescription:
        def command(uow: UnitOfWork) -> KeyDescription:
            key = self.resolver.resolve(uow, caller, key_id, "DescribeKey", fresh=True)
            if key.store is None:
                return KeyDescription.of(key)
            return KeyDescription.of(key, self.resolver.stores.key_state(uow, key))

        return await self.runner.run(command)

    async def _change(
        self,
        caller: Caller,
        key_id: str,
        action: str,
        change: Any,
        *,
        allow_alias: bool = False,
        request: AccessRequest | None = None,
    ) -> Key:
        """Resolve a key, check ``action`` on it, and apply ``change(key, now, actor)``."""

        def command(uow: UnitOfWork) -> Key:
            key = self.resolver.resolve(
                uow, caller, key_id, action, allow_alias=allow_alias, request=request
            )
            change(key, self.clock.now(), caller.actor())
            return key

        return await self.runner.run(command)

    async def enable_key(self, caller: Caller, key_id: str) -> None:
        await self._change(
            caller, key_id, "EnableKey", lambda k, now, a: k.enable(now=now, actor=a)
        )

    async def disable_key(self, caller: Caller, key_id: str) -> None:
        await self._change(
            caller, key_id, "DisableKey", lambda k, now, a: k.disable(now=now, actor=a)
        )

    async def update_key_description(self, caller: Caller, key_id: str, description: str) -> None:
        await self._change(
            caller,
            key_id,
            "UpdateKeyDescription",
            lambda k, now, a: k.change_description(now=now, actor=a, description=description),
        )

    async def schedule_key_deletion(
        self, caller: Caller, key_id: str, pending_window_days: int | None
    ) -> DeletionScheduled:
        days = 30 if pending_window_days is None else pending_window_days
        key = await self._change(
            caller,
            key_id,
            "ScheduleKeyDeletion",
            lambda k, now, a: k.schedule_deletion(now=now, actor=a, pending_window_days=days),
            request=AccessRequest(
                conditions={"kms:ScheduleKeyDeletionPendingWindowInDays": str(days)}
            ),
        )
        return DeletionScheduled(key.arn, key.deletion_date, key.state, days)

    async def cancel_key_deletion(self, caller: Caller, key_id: str) -> str:
        key = await self._change(
            caller,
            key_id,
            "CancelKeyDeletion",
            lambda k, now, a: k.cancel_deletion(now=now, actor=a),
        )
        return key.arn

    # ==== rotation =======================================================================
    async def enable_key_rotation(
        self, caller: Caller, key_id: str, period_days: int | None
    ) -> None:
        def access(uow: UnitOfWork) -> AccessRequest:
            # kms:RotationPeriodInDays is the period this call sets, also when the request
            # leaves it out (the key's own, or 365): read from the key before authorizing.
            found = self.resolver.identify(uow, caller, key_id)
            key = uow.get(found) if found is not None else None
            period = key.rotation_period_for(period_days) if isinstance(key, Key) else period_days
            return AccessRequest(
                conditions={"kms:RotationPeriodInDays": str(period)} if period else {}
            )

        await self._change_shared(
            caller,
            key_id,
            "EnableKeyRotation",
            lambda k, now, a: k.enable_rotation(now=now, actor=a, period_days=period_days),
            request=access,
        )

    async def disable_key_rotation(self, caller: Caller, key_id: str) -> None:
        await self._change_shared(
            caller,
            key_id,
            "DisableKeyRotation",
            lambda k, now, a: k.disable_rotation(now=now, actor=a),
        )

    async def _change_shared(
        self,
        caller: Caller,
        key_id: str,
        action: str,
        change: Any,
        *,
        rotated: bool = False,
        request: AccessRequest | Callable[[UnitOfWork], AccessRequest] | None = None,
    ) -> Key:
        """``_change`` of a property a multi-Region primary shares with its replicas: they
        record the same in the same batch. ``request`` may be read from the batch."""

        def command(uow: UnitOfWork) -> Key:
            access = request(uow) if callable(request) else request
            key = self.resolver.resolve(
                uow, caller, key_id, action, allow_alias=False, request=access
            )
            now = self.clock.now()
            change(key, now, caller.actor())
            if key.multi_region is not None:
                synchronize_replicas(uow, self.vault, key, now, rotated=rotated)
            return key

        return await self.runner.run(command)

    async def get_key_rotation_status(self, caller: Caller, key_id: str) -> RotationStatus:
        def command(uow: UnitOfWork) -> RotationStatus:
            key = self.resolver.resolve(uow, caller, key_id, "GetKeyRotationStatus", fresh=True)
            key.check_rotation_supported()
            enabled = key.rotation_enabled and key.state not in key_states.PENDING
            return RotationStatus(
                key.arn,
                enabled,
                key.rotation_period_days if enabled else None,
                key.next_rotation_date if enabled else None,
            )

        return await self.runner.run(command)

    async def rotate_key_on_demand(self, caller: Caller, key_id: str) -> KeyEntry:
        """The rotated key's id and ARN (AWS's RotateKeyOnDemand answers the ARN)."""

        def change(key: Key, now: Any, actor: Any) -> None:
            # An imported key rotates to the material imported for it (NEW_KEY_MATERIAL).
            material = (
                None
                if key.is_external
                else self.vault.new_material(
                    key.id, version=len(key.materials) + 1, now=now, rotation_type="ON_DEMAND"
                )
            )
            key.rotate_on_demand(now=now, actor=actor, material=material)

        key = await self._change_shared(caller, key_id, "RotateKeyOnDemand", change, rotated=True)
        return KeyEntry(key.key_id, key.arn)

    async def list_key_rotations(
        self,
        caller: Caller,
        key_id: str,
        include_key_material: str | None,
        limit: int | None,
        marker: str | None,
    ) -> Page[RotationEntry]:
        def command(uow: UnitOfWork) -> list[RotationEntry]:
            key = self.resolver.resolve(uow, caller, key_id, "ListKeyRotations", allow_alias=False)
            key.check_allowed("ListKeyRotations")
            if key.is_external and key.key_spec == SYMMETRIC_DEFAULT:
                return imported_rotation_entries(key, include_key_material == "ALL_KEY_MATERIAL")
            key.check_rotation_supported()
            first = 0 if include_key_material == "ALL_KEY_MATERIAL" else 1
            return [
                RotationEntry(key.key_id, m.material_id, m.created, m.rotation_type)
                for m in key.materials[first:]
            ]

        return _page(await self.runner.run(command), limit or 100, marker)

    # ==== aliases ========================================================================
    async def create_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        validate_new_alias_name(alias_name)

        def command(uow: UnitOfWork) -> None:
            key = self.resolver.resolve(
                uow, caller, target_key_id, "CreateAlias", allow_alias=False
            )
            _check_customer_managed(key, caller, "CreateAlias")
            alias_id = alias_aggregate_id(caller.account_id, caller.region, alias_name)
            alias: Alias | None = uow.get(alias_id)
            arn = alias_arn(self.partition, caller.region, caller.account_id, alias_name)
            if alias is not None and alias.exists:
                raise AlreadyExistsError(f"An alias with the name {arn} already exists")
            self.resolver.point_alias(
                uow,
                caller,
                alias_name,
                caller.account_id,
                caller.region,
                key,
                alias,
                self.clock.now(),
            )

        await self.runner.run(command)

    async def update_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        validate_new_alias_name(alias_name)

        def command(uow: UnitOfWork) -> None:
            alias_id = alias_aggregate_id(caller.account_id, caller.region, alias_name)
            alias: Alias | None = uow.get(alias_id)
            arn = alias_arn(self.partition, caller.region, caller.account_id, alias_name)
            if alias is None or alias.target_key_id is None:
                raise NotFoundError(f"Alias {arn} is not found.")
            new_key = self.resolver.resolve(
                uow, caller, target_key_id, "UpdateAlias", allow_alias=False
            )
            _check_customer_managed(new_key, caller, "UpdateAlias")
            old_key: Key | None = uow.get(uuid.UUID(alias.target_key_id))
            if old_key is not None and (
                old_key.key_spec != new_key.key_spec or old_key.key_usage != new_key.key_usage
            ):
                raise ValidationError(
                    "Alias can only be updated to a key with the same key type and key usage."
                )
            now, actor = self.clock.now(), caller.actor()
            if old_key is not None and old_key.id == new_key.id:
                return
            new_key.add_alias(now=now, actor=actor, alias_name=alias_name, operation="UpdateAlias")
            alias.retarget(now=now, actor=actor, target_key_id=str(new_key.id), alias_arn=arn)
            if old_key is not None:
                old_key.remove_alias(now=now, actor=actor, alias_name=alias_name)

        await self.runner.run(command)

    async def delete_alias(self, caller: Caller, alias_name: str) -> None:
        validate_alias_name(alias_name)

        def command(uow: UnitOfWork) -> None:
            alias_id = alias_aggregate_id(caller.account_id, caller.region, alias_name)
            alias: Alias | None = uow.get(alias_id)
            arn = alias_arn(self.partition, caller.region, caller.account_id, alias_name)
            if alias is None or alias.target_key_id is None:
                raise NotFoundError(f"Alias {arn} is not found.")
            key: Key | None = uow.get(uuid.UUID(alias.target_key_id))
            if key is not None:
                self.access.authorize(uow, caller, "DeleteAlias", key, alias_name=alias_name)
                _check_customer_managed(key, caller, "DeleteAlias")
            now, actor = self.clock.now(), caller.actor()
            alias.delete(now=now, actor=actor, alias_arn=arn)
            if key is not None:
                key.remove_alias(now=now, actor=actor, alias_name=alias_name)

        await self.runner.run(command)

    async def list_aliases(
        self, caller: Caller, key_id: str | None, limit: int | None, marker: str | None
    ) -> Page[AliasEntry]:
        await self.access.authorize_account_action(caller, "ListAliases")
        target: str | None = None
        if key_id is not None:  # the aliases name a key by its aggregate id (mrk- keys too)
            found = (await self.describe_key(caller, key_id)).key_id
            reference = parse_key_reference(
                found, account_id=caller.account_id, region=caller.region
            )
            target = str(reference.key_uuid)
        after, predefined_after = _decode_alias_marker(marker)
        size = limit or 50
        entries: list[AliasEntry] = []
        if predefined_after is None:  # the account's own aliases come first
            rows = await asyncio.to_thread(self._list_aliases, caller, target, after, size + 1)
            entries = [
                AliasEntry(
                    name,
                    alias_arn(self.partition, caller.region, caller.account_id, name),
                    target_key,
                    created,
                    updated,
                )
                for name, target_key, created, updated in rows[:size]
            ]
            if len(rows) > size:
                return Page(entries, _encode_marker(rows[size - 1][0]))
            if target is not None:
                return Page(entries)
        return await self._with_predefined_aliases(caller, entries, size, predefined_after or "")

    async def _with_predefined_aliases(
        self, caller: Caller, entries: list[AliasEntry], size: int, after: str
    ) -> Page[AliasEntry]:
        """The page filled up with AWS's predefined aliases (those after ``after``) whose
        AWS managed key does not exist yet: AWS lists them without a TargetKeyId."""
        waiting = [
            AliasEntry(name, alias_arn(self.partition, caller.region, caller.account_id, name))
            for name in await self._predefined_aliases_without_key(caller)
            if name > after
        ]
        room = size - len(entries)
        entries = entries + waiting[:room]
        if len(waiting) <= room:
            return Page(entries)
        return Page(entries, _encode_predefined_marker(entries[-1].alias_name if room else ""))

    async def _predefined_aliases_without_key(self, caller: Caller) -> list[str]:
        # One command per alias, sent together: the writer reads them in one round.
        def has_key(name: str) -> Command[bool]:
            def command(uow: UnitOfWork) -> bool:
                alias = uow.get(alias_aggregate_id(caller.account_id, caller.region, name))
                return isinstance(alias, Alias) and alias.exists

            return command

        found = await asyncio.gather(
            *(self.runner.run(has_key(name)) for name in PREDEFINED_AWS_ALIASES)
        )
        pairs = zip(PREDEFINED_AWS_ALIASES, found, strict=True)
        return [name for name, exists in pairs if not exists]

    def _list_aliases(
        self, caller: Caller, target: str | None, after: str | None, limit: int
    ) -> list[Any]:
        self.directory.wait_for_current()
        return self.directory.list_aliases(caller.account_id, caller.region, target, after, limit)

    # ==== listing keys ===================================================================
    async def list_keys(
        self, caller: Caller, limit: int | None, marker: str | None
    ) -> Page[KeyEntry]:
        await self.access.authorize_account_action(caller, "ListKeys")
        after = _decode_marker(marker)
        if after is not None:
            try:
                uuid.UUID(after)
            except ValueError:
                raise InvalidMarkerError("Invalid marker") from None
        size = limit or 100

        def read() -> list[tuple[str, str]]:
            self.directory.wait_for_current()
            return self.directory.list_keys(caller.account_id, caller.region, after, size + 1)

        rows = await asyncio.to_thread(read)
        next_marker = _encode_marker(rows[size - 1][0]) if len(rows) > size else None
        # The key id callers see is the ARN's (a multi-Region key's is its mrk- id).
        entries = [KeyEntry(arn.rsplit("/", 1)[1], arn) for _, arn in rows[:size]]
        return Page(entries, next_marker)

    # ==== tags and policy ================================================================
    async def tag_resource(
        self, caller: Caller, key_id: str, tags: tuple[tuple[str, str], ...]
    ) -> None:
        new_tags = tags_from_pairs(tags)

        def change(key: Key, now: Any, actor: Any) -> None:
            _check_customer_managed(key, caller, "TagResource")
            key.tag(now=now, actor=actor, tags=new_tags)

        await self._change(
            caller, key_id, "TagResource", change, request=AccessRequest(request_tags=new_tags)
        )

    async def untag_resource(self, caller: Caller, key_id: str, tag_keys: list[str]) -> None:
        def change(key: Key, now: Any, actor: Any) -> None:
            _check_customer_managed(key, caller, "UntagResource")
            key.untag(now=now, actor=actor, tag_keys=tag_keys)

        await self._change(
            caller, key_id, "UntagResource", change, request=AccessRequest(tag_keys=tag_keys)
        )

    async def list_resource_tags(
        self, caller: Caller, key_id: str, limit: int | None, marker: str | None
    ) -> Page[tuple[str, str]]:
        key = await self._read(caller, key_id, "ListResourceTags")
        return _page(sorted(key.tags.items()), limit or 50, marker)

    async def _read(self, caller: Caller, key_id: str, action: str) -> Key:
        def command(uow: UnitOfWork) -> Key:
            key = self.resolver.resolve(uow, caller, key_id, action, allow_alias=False, fresh=True)
            key.check_allowed(action)
            return key

        return await self.runner.run(command)

    async def get_key_policy(self, caller: Caller, key_id: str, policy_name: str | None) -> str:
        _check_policy_name(policy_name)
        return (await self._read(caller, key_id, "GetKeyPolicy")).policy

    async def put_key_policy(
        self,
        caller: Caller,
        key_id: str,
        policy_name: str | None,
        policy: str,
        *,
        bypass_lockout: bool = False,
    ) -> None:
        """Replace the key policy. Unless ``bypass_lockout``, the new policy must let the
        caller change it again (AWS's policy lockout safety check)."""
        _check_policy_name(policy_name)
        validate_policy_document(policy)
        access = AccessRequest(
            conditions={"kms:BypassPolicyLockoutSafetyCheck": str(bypass_lockout).lower()}
        )

        def command(uow: UnitOfWork) -> None:
            key = self.resolver.resolve(
                uow, caller, key_id, "PutKeyPolicy", allow_alias=False, request=access
            )
            _check_customer_managed(key, caller, "PutKeyPolicy")
            self.access.check_policy(
                uow,
                caller,
                policy,
                key=key,
                key_arn=key.arn,
                key_account=key.account_id,
                bypass_lockout=bypass_lockout,
            )
            key.put_policy(now=self.clock.now(), actor=caller.actor(), policy=policy)

        await self.runner.run(command)

    async def list_key_policies(
        self, caller: Caller, key_id: str, limit: int | None, marker: str | None
    ) -> Page[str]:
        await self._read(caller, key_id, "ListKeyPolicies")
        return _page(["default"], limit or 100, marker)

    # ==== history ======================================================================
    async def key_history(
        self, caller: Caller, key_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Any]:
        """The key's events after ``after_version``, oldest first, at most ``limit``: a
        keyset read of the key's stream (``originator_version > v ... LIMIT n`` on its
        primary key), so a page costs the same whatever the history's length."""
        key = await self._read(caller, key_id, "DescribeKey")
        history = self.history
        return await asyncio.to_thread(
            lambda: list(history.history(key.id, gt=after_version, limit=limit))
        )

    async def key_timeline(
        self, caller: Caller, key_id: str, *, max_events: int = TIMELINE_MAX_EVENTS
    ) -> KeyTimeline:
        """The key's timeline and policy versions (app.usecases.key_history), authorized as
        DescribeKey: its first ``max_events`` events read a page at a time (a key used a
        million times says it was truncated rather than reading them all)."""
        key = await self._read(caller, key_id, "DescribeKey")
        history = self.history

        def read() -> tuple[list[Any], bool]:
            events: list[Any] = []
            after = 0
            while len(events) < max_events:
                page = list(history.history(key.id, gt=after, limit=TIMELINE_PAGE))
                events.extend(page)
                if len(page) < TIMELINE_PAGE:
                    return events[:max_events], len(events) > max_events
                after = page[-1].originator_version
            return events[:max_events], True

        events, truncated = await asyncio.to_thread(read)
        return key_timeline(events, truncated=truncated)


class DueJobs:
    """The scheduler's work: delete keys whose window ended, rotate keys that are due,
    expire imported material."""

    def __init__(
        self,
        *,
        runner: CommandRunner,
        vault: Vault,
        clock: Clock,
        directory: KeyDirectory,
        imported: ImportedMaterial,
        partition: str,
        stores: StoreKeys,
    ) -> None:
        self.runner = runner
        self.vault = vault
        self.clock = clock
        self.directory = directory
        self.imported = imported
        self.partition = partition
        self.stores = stores
        # Token keys of deleted CloudHSM-store keys, destroyed once the deletion commits.
        self._token_keys: list[tuple[TokenStore, str]] = []

    def run_due_jobs(self) -> int:
        """Delete keys whose window ended, rotate keys that are due, delete imported
        material that expired. Returns jobs done."""
        now = self.clock.now()
        self.directory.wait_for_current()
        done = 0
        jobs = {
            "delete": self._deletion_job,
            "rotate": self._rotation_job,
            "expire": self.imported.expiry_job,
        }
        for key_uuid, job in self.directory.keys_due(now):
            job_function = jobs[job]
            try:
                done += self.runner.run_sync(partial(job_function, key_uuid=key_uuid))
            except (InvalidStateError, NotFoundError):
                continue
            finally:
                self._destroy_token_keys()
        return done

    def _destroy_token_keys(self) -> None:
        while self._token_keys:
            token, label = self._token_keys.pop()
            self.stores.destroy_token_key(token, label)

    def _deletion_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        key: Key | None = uow.get(key_uuid, fresh=True)
        now = self.clock.now()
        if key is None or not key.is_due_for_deletion(now):
            return 0
        # Shred first: if the commit then fails, the key is unusable and the job re-runs.
        self.vault.shred(key.id, now)
        self._leave_store(uow, key, now)
        for alias_name in list(key.aliases):
            alias: Alias | None = uow.get(
                alias_aggregate_id(key.account_id, key.region, alias_name)
            )
            if alias is not None and alias.target_key_id == str(key.id):
                arn = alias_arn(self.partition, key.region, key.account_id, alias_name)
                alias.delete(now=now, actor=SERVICE_ACTOR, alias_arn=arn)
        key.destroy_material(now=now, actor=SERVICE_ACTOR)
        note_replica_gone(uow, key, now)
        return 1

    def _leave_store(self, uow: UnitOfWork, key: Key, now: datetime) -> None:
        """A deleted key leaves its custom key store; its token key goes once this commits."""
        store = self.stores.store_of(uow, key)
        if store is None:
            return
        store.remove_key(now=now, actor=SERVICE_ACTOR, key_id=key.key_id)
        if store.is_cloudhsm:
            token = self.stores.token_of(store)
            labels = [m.material_id for m in key.materials if m.in_store]
            uow.after_commit.append(
                lambda: self._token_keys.extend((token, label) for label in labels)
            )

    def _rotation_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        key: Key | None = uow.get(key_uuid, fresh=True)
        now = self.clock.now()
        if key is None or not key.is_due_for_rotation(now):
            return 0
        material = self.vault.new_material(
            key.id, version=len(key.materials) + 1, now=now, rotation_type="AUTOMATIC"
        )
        key.rotate_automatically(now=now, actor=SERVICE_ACTOR, material=material)
        if key.multi_region is not None:
            synchronize_replicas(uow, self.vault, key, now, rotated=True)
        return 1


@dataclass(frozen=True, slots=True)
class KeyService:
    """What adapters call: the use cases by area (no logic of its own)."""

    keys: KeyLifecycle
    crypto: CryptoOperations
    asymmetric: AsymmetricOperations
    imported: ImportedMaterial
    grants: GrantOperations
    explain: ExplainOperations
    audit: AuditService
    custom_key_stores: CustomKeyStoreOperations
    jobs: DueJobs
    access: AccessControl
    external: ExternalKeyOperations  # the XKS Proxy API KeyLedger serves
    multi_region: MultiRegionOperations
    quotas: RequestQuotas  # checked by adapters once a call is authenticated and parsed


# ==== checks that need no key ==========================================================
def _check_store_request(request: CreateKeyRequest, key_spec: str) -> None:
    """CreateKey's custom key store members: CustomKeyStoreId with Origin AWS_CLOUDHSM or
    EXTERNAL_KEY_STORE (and XksKeyId with the latter), symmetric encryption keys only."""
    in_store = request.origin in STORE_ORIGINS
    if in_store and not request.custom_key_store_id:
        raise ValidationError(f"CustomKeyStoreId is required when Origin is {request.origin}.")
    if request.custom_key_store_id and not in_store:
        raise UnsupportedOperationError(
            f"Origin {request.origin} is not valid for a KMS key in a custom key store."
        )
    if (request.xks_key_id is not None) != (request.origin == EXTERNAL_KEY_STORE):
        raise ValidationError(
            "XksKeyId is required when Origin is EXTERNAL_KEY_STORE, and valid only then."
        )
    if in_store and (key_spec != SYMMETRIC_DEFAULT or request.multi_region):
        raise UnsupportedOperationError(
            f"KeySpec {key_spec} is not valid for a KMS key in a custom key store."
        )


def _location(store: CustomKeyStore, request: CreateKeyRequest) -> KeyStoreLocation:
    return KeyStoreLocation(
        custom_key_store_id=store.store_id,
        cloud_hsm_cluster_id=store.settings.get("cluster_id") if store.is_cloudhsm else None,
        xks_key_id=request.xks_key_id,
    )


def _check_multi_region_request(request: CreateKeyRequest) -> None:
    """Multi-Region keys: AWS_KMS or EXTERNAL origin, never in a custom key store. Keys of
    origin EXTERNAL are not multi-Region in KeyLedger yet (their replicas need imports)."""
    if not request.multi_region:
        return
    if request.custom_key_store_id is not None or request.origin in STORE_ORIGINS:
        # AWS's text as moto and LocalStack do not record it; the rule is AWS's.
        raise UnsupportedOperationError(
            "CustomKeyStoreId and MultiRegion cannot both be specified."
        )
    if request.origin == EXTERNAL:
        raise UnsupportedOperationError(
            "Multi-Region keys with imported key material are not supported by this "
            "KeyLedger version."
        )


def _check_key_spec(request: CreateKeyRequest) -> tuple[str, str]:
    if request.key_spec and request.customer_master_key_spec:
        raise ValidationError(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
            "CustomerMasterKeySpec is deprecated."
        )
    key_spec = request.key_spec or request.customer_master_key_spec or SYMMETRIC_DEFAULT
    # AWS validates the combination first; only a valid one may be unsupported here.
    key_usage = request.key_usage or (ENCRYPT_DECRYPT if key_spec == SYMMETRIC_DEFAULT else None)
    if key_usage is None:
        raise ValidationError(
            "You must specify a KeyUsage value for all KMS keys except for symmetric "
            "encryption keys."
        )
    if key_usage not in USAGES_BY_SPEC.get(key_spec, (key_usage,)):
        raise ValidationError(f"KeyUsage {key_usage} is not compatible with KeySpec {key_spec}")
    spec = SUPPORTED_SPECS.get(key_spec)
    if spec is None or key_usage not in spec.usages:
        raise UnsupportedOperationError(
            f"KeySpec {key_spec} is not supported by this KeyLedger version."
        )
    return key_spec, key_usage


def _check_policy_name(policy_name: str | None) -> None:
    if policy_name not in (None, "default"):
        raise NotFoundError("No such policy exists")


def _check_customer_managed(key: Key, caller: Caller, action: str) -> None:
    if key.is_aws_managed:
        raise AccessDeniedError(
            f"User: {caller.principal_arn} is not authorized to perform: kms:{action} on "
            f"resource: {key.arn} because no resource-based policy allows the kms:{action} "
            "action"
        )


def tags_from_pairs(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag_key, tag_value in pairs:
        if tag_key in tags:
            raise TagError("Duplicate tag keys")
        tags[tag_key] = tag_value
    return tags


# ==== paging ===========================================================================
def _encode_marker(after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": after})).decode()


def _encode_predefined_marker(after: str) -> str:
    """A ListAliases marker within AWS's predefined aliases (listed after the account's)."""
    return base64.urlsafe_b64encode(orjson.dumps({"after": after, "predefined": True})).decode()


def _decode_alias_marker(marker: str | None) -> tuple[str | None, str | None]:
    """(the last alias of the account listed, or the last predefined alias listed: None
    while the account's own aliases are still being listed)."""
    after = _decode_marker(marker)
    if marker is None or after is None:
        return None, None
    predefined = orjson.loads(base64.urlsafe_b64decode(marker.encode())).get("predefined")
    return (None, after) if predefined is True else (after, None)


def _decode_marker(marker: str | None) -> str | None:
    if marker is None:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(marker.encode()))
        after = value["after"]
    except (ValueError, TypeError, KeyError):
        raise InvalidMarkerError("Invalid marker") from None
    if not isinstance(after, str | int):
        raise InvalidMarkerError("Invalid marker")
    return str(after)


def _page(items: list[Any], limit: int, marker: str | None) -> Page[Any]:
    start = 0
    if marker is not None:
        decoded = _decode_marker(marker)
        if decoded is None or not (decoded.isascii() and decoded.isdigit()):
            raise InvalidMarkerError("Invalid marker")
        start = int(decoded)
    end = start + limit
    next_marker = _encode_marker(str(end)) if end < len(items) else None
    return Page(items[start:end], next_marker)
