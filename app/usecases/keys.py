"""The application service: one method per use case, behind every adapter.

Adapters (AWS JSON protocol, REST, CLI) parse input and shape output; everything
decided about a request is decided here: key resolution, authorization, state rules,
cryptography, and recording the events. Mutations run as commands on the single
writer, so each answer follows the commit of its events.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from psycopg_pool import ConnectionPool

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.infrastructure.clock import Clock
from app.infrastructure.vault import Vault
from app.infrastructure.writer import LedgerWriter, UnitOfWork
from app.usecases.asymmetric import AsymmetricOperations, imported_rotation_entries
from app.usecases.authorization import AccessControl, AccessRequest, default_algorithm
from app.usecases.explain import ExplainOperations
from app.usecases.grants import GrantOperations
from app.usecases.results import (
    AliasEntry,
    DataKey,
    Decrypted,
    DeletionScheduled,
    Encrypted,
    KeyDescription,
    KeyEntry,
    Page,
    ReEncrypted,
    RotationEntry,
    RotationStatus,
)
from domain import key_states
from domain.algorithms import generate_material
from domain.ciphertext import open_blob, read_header, seal
from domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    DryRunSucceededError,
    IncorrectKeyError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidMarkerError,
    InvalidStateError,
    NotFoundError,
    TagError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.identifiers import (
    AWS_MANAGED_ALIAS_PREFIX,
    KeyReference,
    alias_aggregate_id,
    alias_arn,
    key_arn,
    parse_key_reference,
    validate_alias_name,
)
from domain.key_specs import (
    AWS_KMS,
    DATA_KEY_SPECS,
    ENCRYPT_DECRYPT,
    EXTERNAL,
    SUPPORTED_SPECS,
    SYMMETRIC_DEFAULT,
    USAGES_BY_SPEC,
)
from domain.keys import AWS_MANAGED, CUSTOMER, Alias, Key
from domain.policy import aws_managed_key_policy, default_key_policy, validate_policy_document
from projections import queries
from projections.key_directory import KeyDirectoryProjection

MAX_PLAINTEXT = 4096


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


class KeyService(AsymmetricOperations, GrantOperations, ExplainOperations):
    audit_queries: Any = None  # app.usecases.auditors.AuditService, set by the runtime

    def __init__(
        self,
        *,
        writer: LedgerWriter,
        vault: Vault,
        clock: Clock,
        pool: ConnectionPool,
        directory: KeyDirectoryProjection,
        partition: str,
    ) -> None:
        self.writer = writer
        self.vault = vault
        self.clock = clock
        self.pool = pool
        self.directory = directory
        self.partition = partition
        self.access = AccessControl(
            writer=writer, vault=vault, clock=clock, pool=pool, partition=partition
        )

    # ==== key resolution =============================================================
    def _arn(self, ref: KeyReference) -> str:
        if ref.is_alias:
            return alias_arn(self.partition, ref.region, ref.account_id, ref.name)
        return key_arn(self.partition, ref.region, ref.account_id, ref.name)

    def _resolve(
        self,
        uow: UnitOfWork,
        caller: Caller,
        key_id: str,
        action: str,
        *,
        allow_alias: bool = True,
        fresh: bool = False,
        request: AccessRequest | None = None,
    ) -> Key:
        """Find the key a KeyId member names and check the caller may ``action`` it.

        A key of another account is found only by its key ARN or alias ARN (a bare id or
        alias name means the caller's own account); its key policy then decides.
        """
        ref = parse_key_reference(
            key_id, account_id=caller.account_id, region=caller.region, allow_alias=allow_alias
        )
        if ref.region != caller.region:  # an ARN naming another Region
            raise NotFoundError(f"Invalid arn {ref.region}")
        if ref.is_alias:
            key = self._key_for_alias(uow, caller, ref)
        else:
            found = uow.get(uuid.UUID(ref.name), fresh=fresh)
            if (
                found is None
                or not isinstance(found, Key)
                or found.account_id != ref.account_id
                or found.region != ref.region
            ):
                raise NotFoundError(f"Key '{self._arn(ref)}' does not exist")
            key = found
        if key.is_deleted:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        alias_name = ref.name if ref.is_alias else None
        self.access.authorize(uow, caller, action, key, request, alias_name=alias_name)
        return key

    def _key_for_alias(self, uow: UnitOfWork, caller: Caller, ref: KeyReference) -> Key:
        alias: Alias | None = uow.get(alias_aggregate_id(ref.account_id, ref.region, ref.name))
        if alias is not None and alias.target_key_id is not None:
            key: Key | None = uow.get(uuid.UUID(alias.target_key_id))
            if key is not None and not key.is_deleted:
                return key
        if ref.name.startswith(AWS_MANAGED_ALIAS_PREFIX) and ref.account_id == caller.account_id:
            return self._create_aws_managed_key(uow, caller, ref, alias)
        raise NotFoundError(f"Alias {self._arn(ref)} is not found.")

    def _create_aws_managed_key(
        self, uow: UnitOfWork, caller: Caller, ref: KeyReference, alias: Alias | None
    ) -> Key:
        """AWS managed keys come into being on first use of their predefined alias."""
        service = ref.name.removeprefix(AWS_MANAGED_ALIAS_PREFIX)
        now = self.clock.now()
        key = self._new_key(
            uow, caller, region=ref.region, account_id=ref.account_id, key_manager=AWS_MANAGED,
            description=f"Default key that protects my {service} data when no other key is "
            "defined",
            policy=aws_managed_key_policy(self.partition, ref.account_id, service, ref.region),
            tags={}, key_spec=SYMMETRIC_DEFAULT, key_usage=ENCRYPT_DECRYPT, origin="AWS_KMS",
        )  # fmt: skip
        self._point_alias(uow, caller, ref.name, ref.account_id, ref.region, key, alias, now)
        return key

    def _new_key(
        self,
        uow: UnitOfWork,
        caller: Caller,
        *,
        region: str,
        account_id: str,
        key_manager: str,
        description: str,
        policy: str,
        tags: dict[str, str],
        key_spec: str,
        key_usage: str,
        origin: str,
        material_bytes: bytes | None = None,
    ) -> Key:
        """A new key with fresh material (``material_bytes``, or AES-256 when None); keys of
        Origin EXTERNAL start without material, PendingImport."""
        key_uuid = self.vault.new_key_id()  # its wrapping key is stored already
        now = self.clock.now()
        material = (
            None
            if origin == EXTERNAL
            else self.vault.new_material(
                key_uuid, version=1, now=now, rotation_type=None, plaintext=material_bytes
            )
        )
        key = Key.create(
            key_id=key_uuid, now=now, actor=caller.actor(),
            arn=key_arn(self.partition, region, account_id, str(key_uuid)),
            account_id=account_id, region=region, description=description, key_spec=key_spec,
            key_usage=key_usage, origin=origin, key_manager=key_manager, policy=policy,
            tags=tags, material=material,
        )  # fmt: skip
        uow.add(key)
        return key

    def _point_alias(
        self,
        uow: UnitOfWork,
        caller: Caller,
        alias_name: str,
        account_id: str,
        region: str,
        key: Key,
        alias: Alias | None,
        now: Any,
    ) -> None:
        actor = caller.actor()
        arn = alias_arn(self.partition, region, account_id, alias_name)
        if alias is None:
            alias = Alias.create(
                alias_id=alias_aggregate_id(account_id, region, alias_name), now=now,
                actor=actor, alias_name=alias_name, account_id=account_id, region=region,
                target_key_id=key.key_id,
            )  # fmt: skip
            uow.add(alias)
        elif alias.target_key_id is None:
            alias.assign(now=now, actor=actor, target_key_id=key.key_id, alias_arn=arn)
        else:
            alias.retarget(now=now, actor=actor, target_key_id=key.key_id, alias_arn=arn)
        key.add_alias(now=now, actor=actor, alias_name=alias_name, operation="CreateAlias")

    # ==== key lifecycle ===============================================================
    async def create_key(self, caller: Caller, request: CreateKeyRequest) -> KeyDescription:
        key_spec, key_usage = _check_key_spec(request)
        if request.origin not in (AWS_KMS, EXTERNAL):
            raise UnsupportedOperationError(
                f"Origin {request.origin} is not supported by this KeyLedger version."
            )
        if request.multi_region:
            raise UnsupportedOperationError("Multi-Region keys are not supported yet.")
        if request.custom_key_store_id:
            raise UnsupportedOperationError("Custom key stores are not supported.")
        if request.policy is not None:
            validate_policy_document(request.policy)
        tags = tags_from_pairs(request.tags)
        policy = request.policy or default_key_policy(self.partition, caller.account_id)
        material_bytes = None
        if request.origin == AWS_KMS and key_spec != SYMMETRIC_DEFAULT:
            # RSA generation takes up to seconds: never on the writer thread.
            material_bytes = await asyncio.to_thread(generate_material, key_spec)

        key_conditions = {
            "kms:KeySpec": key_spec, "kms:KeyUsage": key_usage, "kms:KeyOrigin": request.origin,
            "kms:CustomerMasterKeySpec": key_spec, "kms:CustomerMasterKeyUsage": key_usage,
            "kms:MultiRegion": "false",
            "kms:BypassPolicyLockoutSafetyCheck": str(
                request.bypass_policy_lockout_safety_check
            ).lower(),
        }  # fmt: skip

        def command(uow: UnitOfWork) -> KeyDescription:
            self.access.authorize(
                uow, caller, "CreateKey", None,
                AccessRequest(request_tags=tags or None, conditions=key_conditions),
            )  # fmt: skip
            if tags:  # AWS: creating a key with tags also needs kms:TagResource
                self.access.authorize(
                    uow, caller, "TagResource", None, AccessRequest(request_tags=tags)
                )
            if request.policy is not None:
                self.access.check_policy(
                    uow, caller, request.policy, key=None,
                    key_arn=key_arn(self.partition, caller.region, caller.account_id, "*"),
                    key_account=caller.account_id,
                    bypass_lockout=request.bypass_policy_lockout_safety_check,
                )  # fmt: skip
            key = self._new_key(
                uow, caller, region=caller.region, account_id=caller.account_id,
                key_manager=CUSTOMER, description=request.description, policy=policy,
                tags=tags, key_spec=key_spec, key_usage=key_usage, origin=request.origin,
                material_bytes=material_bytes,
            )  # fmt: skip
            return KeyDescription.of(key)

        return await self.writer.run(command)

    async def describe_key(self, caller: Caller, key_id: str) -> KeyDescription:
        def command(uow: UnitOfWork) -> KeyDescription:
            return KeyDescription.of(self._resolve(uow, caller, key_id, "DescribeKey", fresh=True))

        return await self.writer.run(command)

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
            key = self._resolve(
                uow, caller, key_id, action, allow_alias=allow_alias, request=request
            )
            change(key, self.clock.now(), caller.actor())
            return key

        return await self.writer.run(command)

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
            caller, key_id, "UpdateKeyDescription",
            lambda k, now, a: k.change_description(now=now, actor=a, description=description),
        )  # fmt: skip

    async def schedule_key_deletion(
        self, caller: Caller, key_id: str, pending_window_days: int | None
    ) -> DeletionScheduled:
        days = 30 if pending_window_days is None else pending_window_days
        key = await self._change(
            caller, key_id, "ScheduleKeyDeletion",
            lambda k, now, a: k.schedule_deletion(now=now, actor=a, pending_window_days=days),
            request=AccessRequest(
                conditions={"kms:ScheduleKeyDeletionPendingWindowInDays": str(days)}
            ),
        )  # fmt: skip
        assert key.deletion_date is not None
        return DeletionScheduled(key.arn, key.deletion_date, key.state, days)

    async def cancel_key_deletion(self, caller: Caller, key_id: str) -> str:
        key = await self._change(
            caller, key_id, "CancelKeyDeletion",
            lambda k, now, a: k.cancel_deletion(now=now, actor=a),
        )  # fmt: skip
        return key.arn

    # ==== rotation =======================================================================
    async def enable_key_rotation(
        self, caller: Caller, key_id: str, period_days: int | None
    ) -> None:
        period = {"kms:RotationPeriodInDays": str(period_days)} if period_days else {}
        await self._change(
            caller, key_id, "EnableKeyRotation",
            lambda k, now, a: k.enable_rotation(now=now, actor=a, period_days=period_days),
            request=AccessRequest(conditions=period),
        )  # fmt: skip

    async def disable_key_rotation(self, caller: Caller, key_id: str) -> None:
        await self._change(
            caller, key_id, "DisableKeyRotation",
            lambda k, now, a: k.disable_rotation(now=now, actor=a),
        )  # fmt: skip

    async def get_key_rotation_status(self, caller: Caller, key_id: str) -> RotationStatus:
        def command(uow: UnitOfWork) -> RotationStatus:
            key = self._resolve(uow, caller, key_id, "GetKeyRotationStatus", fresh=True)
            if not key.can_rotate_automatically:
                raise UnsupportedOperationError(
                    f"{key.arn} key spec is {key.key_spec} which is not valid for this operation."
                )
            enabled = key.rotation_enabled and key.state != key_states.PENDING_DELETION
            return RotationStatus(
                key.arn,
                enabled,
                key.rotation_period_days if enabled else None,
                key.next_rotation_date if enabled else None,
            )

        return await self.writer.run(command)

    async def rotate_key_on_demand(self, caller: Caller, key_id: str) -> str:
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

        key = await self._change(caller, key_id, "RotateKeyOnDemand", change)
        return key.key_id

    async def list_key_rotations(
        self,
        caller: Caller,
        key_id: str,
        include_key_material: str | None,
        limit: int | None,
        marker: str | None,
    ) -> Page[RotationEntry]:
        def command(uow: UnitOfWork) -> list[RotationEntry]:
            key = self._resolve(uow, caller, key_id, "ListKeyRotations", allow_alias=False)
            key.check_allowed("ListKeyRotations")
            if key.is_external and key.key_spec == SYMMETRIC_DEFAULT:
                return imported_rotation_entries(key, include_key_material == "ALL_KEY_MATERIAL")
            if not key.can_rotate_automatically:
                raise UnsupportedOperationError(
                    f"{key.arn} key spec is {key.key_spec} which is not valid for this operation."
                )
            first = 0 if include_key_material == "ALL_KEY_MATERIAL" else 1
            return [
                RotationEntry(key.key_id, m.material_id, m.created, m.rotation_type)
                for m in key.materials[first:]
            ]

        return _page(await self.writer.run(command), limit or 100, marker)

    # ==== cryptography ===================================================================
    def _seal(
        self, key: Key, plaintext: bytes, context: Mapping[str, str] | None
    ) -> tuple[bytes, str]:
        material = key.current_material
        cipher = self.vault.cipher(key.id, material)
        if cipher is None:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        blob = seal(
            cipher, key_id=key.id, material_version=material.version, plaintext=plaintext,
            encryption_context=context, nonce=os.urandom(12),
        )  # fmt: skip
        return blob, material.material_id

    def _check_usable(self, key: Key, operation: str, dry_run: bool) -> None:
        """For the symmetric paths: the key's state, usage and spec allow ``operation``."""
        key.check_allowed(operation)
        if key.key_usage != ENCRYPT_DECRYPT:
            raise InvalidKeyUsageError(
                f"{key.arn} key usage is {key.key_usage} which is not valid for {operation}."
            )
        if key.key_spec != SYMMETRIC_DEFAULT:
            raise InvalidKeyUsageError(
                f"Algorithm {SYMMETRIC_DEFAULT} is incompatible with key spec {key.key_spec}."
                if operation in ("Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo")
                else f"{key.arn} key spec is {key.key_spec} which is not valid for {operation}."
            )
        if dry_run:
            raise DryRunSucceededError(
                "The request would have succeeded, but the DryRun option is set."
            )

    async def encrypt(
        self,
        caller: Caller,
        key_id: str,
        plaintext: bytes,
        encryption_context: dict[str, str] | None,
        algorithm: str | None = None,
        dry_run: bool = False,
    ) -> Encrypted:
        _check_plaintext(plaintext)
        if algorithm not in (None, SYMMETRIC_DEFAULT):  # RSAES_OAEP_*: an RSA key
            return await self.encrypt_asymmetric(
                caller, key_id, plaintext, encryption_context, algorithm, dry_run
            )
        _check_symmetric_algorithm(algorithm, "encryptionAlgorithm")

        access = AccessRequest(encryption_context, default_algorithm(algorithm))

        def command(uow: UnitOfWork) -> Encrypted:
            key = self._resolve(uow, caller, key_id, "Encrypt", request=access)
            self._check_usable(key, "Encrypt", dry_run)
            blob, material_id = self._seal(key, plaintext, encryption_context)
            self._record(
                key, "Encrypt", caller, key.current_material.version, encryption_context,
                {"keyId": key_id},
            )  # fmt: skip
            return Encrypted(blob, key.arn, SYMMETRIC_DEFAULT, material_id)

        return await self.writer.run(command)

    def _record(
        self,
        key: Key,
        operation: str,
        caller: Caller,
        material_version: int,
        encryption_context: dict[str, str] | None,
        request_parameters: dict[str, Any],
    ) -> None:
        """Record a use; ``request_parameters``: what its record logs besides the context
        and algorithm (domain.keys.Key.Used), the KeyId as the caller gave it first."""
        key.record_use(
            operation=operation, now=self.clock.now(), actor=caller.actor(),
            material_version=material_version, encryption_context=encryption_context,
            request_parameters=request_parameters,
        )  # fmt: skip

    def _open(
        self,
        uow: UnitOfWork,
        caller: Caller,
        blob: bytes,
        key_id: str | None,
        context: dict[str, str] | None,
        action: str,
        *,
        any_region: bool = False,
    ) -> tuple[Key, int]:
        """Find the key that sealed ``blob`` and check the caller may ``action`` it."""
        access = AccessRequest(context, SYMMETRIC_DEFAULT)
        header = read_header(blob)
        key: Key | None = uow.get(header.key_id)
        if key is None or not isinstance(key, Key):
            raise InvalidCiphertextError()
        if key_id is not None:
            # ReEncrypt may name a source in another Region of this deployment by its ARN.
            scope = caller
            if any_region and key_id.startswith("arn:"):
                ref = parse_key_reference(
                    key_id, account_id=caller.account_id, region=caller.region
                )
                scope = Caller(**{**caller.__dict__, "region": ref.region})
            named = self._resolve(uow, scope, key_id, action, request=access)
            if named.id != key.id:
                raise IncorrectKeyError(
                    "The key ID in the request does not identify a CMK that can perform this "
                    "operation."
                )
        if key.is_deleted:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        if key.region != caller.region and not any_region:
            raise InvalidCiphertextError()
        if key_id is None:  # a named key was authorized when it was resolved
            self.access.authorize(uow, caller, action, key, access)
        return key, header.material_version

    def _decrypt_blob(
        self, key: Key, blob: bytes, material_version: int, context: dict[str, str] | None
    ) -> tuple[bytes, str]:
        material = key.material(material_version)
        if material is None:
            raise InvalidCiphertextError()
        cipher = self.vault.cipher(key.id, material)
        if cipher is None:
            raise InvalidCiphertextError()
        return open_blob(cipher, blob, context), material.material_id

    async def decrypt(
        self,
        caller: Caller,
        blob: bytes,
        key_id: str | None,
        encryption_context: dict[str, str] | None,
        algorithm: str | None = None,
        dry_run: bool = False,
    ) -> Decrypted:
        if algorithm not in (None, SYMMETRIC_DEFAULT):  # RSAES_OAEP_*: an RSA key
            return await self.decrypt_asymmetric(
                caller, blob, key_id, encryption_context, algorithm, dry_run
            )
        _check_symmetric_algorithm(algorithm, "encryptionAlgorithm")
        read_header(blob)  # a malformed blob fails before any key is touched

        def command(uow: UnitOfWork) -> Decrypted:
            key, version = self._open(uow, caller, blob, key_id, encryption_context, "Decrypt")
            self._check_usable(key, "Decrypt", dry_run)
            plaintext, material_id = self._decrypt_blob(key, blob, version, encryption_context)
            self._record(
                key, "Decrypt", caller, version, encryption_context,
                {} if key_id is None else {"keyId": key_id},
            )  # fmt: skip
            return Decrypted(plaintext, key.arn, SYMMETRIC_DEFAULT, material_id)

        return await self.writer.run(command)

    async def re_encrypt(
        self,
        caller: Caller,
        blob: bytes,
        *,
        source_key_id: str | None,
        destination_key_id: str,
        source_context: dict[str, str] | None,
        destination_context: dict[str, str] | None,
        source_algorithm: str | None = None,
        destination_algorithm: str | None = None,
        dry_run: bool = False,
    ) -> ReEncrypted:
        if {source_algorithm, destination_algorithm} - {None, SYMMETRIC_DEFAULT}:
            return await self.re_encrypt_asymmetric(
                caller, blob, source_key_id=source_key_id,
                destination_key_id=destination_key_id, source_context=source_context,
                destination_context=destination_context, source_algorithm=source_algorithm,
                destination_algorithm=destination_algorithm, dry_run=dry_run,
            )  # fmt: skip
        _check_symmetric_algorithm(source_algorithm, "sourceEncryptionAlgorithm")
        _check_symmetric_algorithm(destination_algorithm, "destinationEncryptionAlgorithm")
        read_header(blob)

        def command(uow: UnitOfWork) -> ReEncrypted:
            # The source may live in another Region of this deployment (snapshot copy).
            source, version = self._open(
                uow, caller, blob, source_key_id, source_context, "ReEncryptFrom", any_region=True
            )
            destination = self._resolve_destination(
                uow, caller, destination_key_id,
                request=AccessRequest(destination_context, SYMMETRIC_DEFAULT),
            )  # fmt: skip
            self._check_usable(source, "ReEncryptFrom", False)
            self._check_usable(destination, "ReEncryptTo", dry_run)
            plaintext, source_material = self._decrypt_blob(source, blob, version, source_context)
            new_blob, material_id = self._seal(destination, plaintext, destination_context)
            source.record_re_encryption(
                destination=destination, now=self.clock.now(), actor=caller.actor(),
                material_version=version, source_key_id=source_key_id,
                source_context=source_context, source_algorithm=SYMMETRIC_DEFAULT,
                destination_key_id=destination_key_id, destination_context=destination_context,
                destination_algorithm=SYMMETRIC_DEFAULT,
            )  # fmt: skip
            return ReEncrypted(
                new_blob, source.arn, destination.arn, SYMMETRIC_DEFAULT, SYMMETRIC_DEFAULT,
                source_material, material_id,
            )  # fmt: skip

        return await self.writer.run(command)

    def _resolve_destination(
        self, uow: UnitOfWork, caller: Caller, key_id: str, request: AccessRequest | None = None
    ) -> Key:
        """A destination may be named by ARN in another Region of this deployment."""
        if key_id.startswith("arn:"):
            ref = parse_key_reference(key_id, account_id=caller.account_id, region=caller.region)
            if ref.region != caller.region:
                regional = Caller(**{**caller.__dict__, "region": ref.region})
                return self._resolve(uow, regional, key_id, "ReEncryptTo", request=request)
        return self._resolve(uow, caller, key_id, "ReEncryptTo", request=request)

    async def generate_data_key(
        self,
        caller: Caller,
        key_id: str,
        *,
        number_of_bytes: int | None,
        key_spec: str | None,
        encryption_context: dict[str, str] | None,
        with_plaintext: bool = True,
        dry_run: bool = False,
    ) -> DataKey:
        size = _data_key_size(number_of_bytes, key_spec)
        operation = "GenerateDataKey" if with_plaintext else "GenerateDataKeyWithoutPlaintext"

        access = AccessRequest(encryption_context, SYMMETRIC_DEFAULT)

        def command(uow: UnitOfWork) -> DataKey:
            key = self._resolve(uow, caller, key_id, operation, request=access)
            self._check_usable(key, operation, dry_run)
            data_key = os.urandom(size)
            blob, material_id = self._seal(key, data_key, encryption_context)
            given: dict[str, Any] = {"keyId": key_id}
            if key_spec is not None:
                given["keySpec"] = key_spec
            else:
                given["numberOfBytes"] = number_of_bytes
            self._record(
                key, operation, caller, key.current_material.version, encryption_context, given
            )
            return DataKey(blob, data_key if with_plaintext else None, key.arn, material_id)

        return await self.writer.run(command)

    async def generate_random(self, caller: Caller, number_of_bytes: int | None) -> bytes:
        if number_of_bytes is None:
            raise ValidationError("NumberOfBytes is required.")
        await self.access.authorize_account_action(caller, "GenerateRandom")
        return os.urandom(number_of_bytes)

    # ==== aliases ========================================================================
    async def create_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        validate_alias_name(alias_name)

        def command(uow: UnitOfWork) -> None:
            key = self._resolve(uow, caller, target_key_id, "CreateAlias", allow_alias=False)
            _check_customer_managed(key, caller, "CreateAlias")
            alias_id = alias_aggregate_id(caller.account_id, caller.region, alias_name)
            alias: Alias | None = uow.get(alias_id)
            arn = alias_arn(self.partition, caller.region, caller.account_id, alias_name)
            if alias is not None and alias.exists:
                raise AlreadyExistsError(f"An alias with the name {arn} already exists")
            self._point_alias(
                uow, caller, alias_name, caller.account_id, caller.region, key, alias,
                self.clock.now(),
            )  # fmt: skip

        await self.writer.run(command)

    async def update_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        validate_alias_name(alias_name)

        def command(uow: UnitOfWork) -> None:
            alias_id = alias_aggregate_id(caller.account_id, caller.region, alias_name)
            alias: Alias | None = uow.get(alias_id)
            arn = alias_arn(self.partition, caller.region, caller.account_id, alias_name)
            if alias is None or alias.target_key_id is None:
                raise NotFoundError(f"Alias {arn} is not found.")
            new_key = self._resolve(uow, caller, target_key_id, "UpdateAlias", allow_alias=False)
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
            alias.retarget(now=now, actor=actor, target_key_id=new_key.key_id, alias_arn=arn)
            if old_key is not None:
                old_key.remove_alias(now=now, actor=actor, alias_name=alias_name)

        await self.writer.run(command)

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

        await self.writer.run(command)

    async def list_aliases(
        self, caller: Caller, key_id: str | None, limit: int | None, marker: str | None
    ) -> Page[AliasEntry]:
        await self.access.authorize_account_action(caller, "ListAliases")
        target: str | None = None
        if key_id is not None:
            target = (await self.describe_key(caller, key_id)).key_id
        after = _decode_marker(marker)
        size = limit or 50
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
        next_marker = _encode_marker(rows[size - 1][0]) if len(rows) > size else None
        return Page(entries, next_marker)

    def _list_aliases(
        self, caller: Caller, target: str | None, after: str | None, limit: int
    ) -> list[Any]:
        self.directory.wait_for_current()
        return queries.list_aliases(
            self.pool, caller.account_id, caller.region, target, after, limit
        )

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
            return queries.list_keys(self.pool, caller.account_id, caller.region, after, size + 1)

        rows = await asyncio.to_thread(read)
        next_marker = _encode_marker(rows[size - 1][0]) if len(rows) > size else None
        return Page([KeyEntry(k, arn) for k, arn in rows[:size]], next_marker)

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
            key = self._resolve(uow, caller, key_id, action, allow_alias=False, fresh=True)
            key.check_allowed(action)
            return key

        return await self.writer.run(command)

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
            key = self._resolve(
                uow, caller, key_id, "PutKeyPolicy", allow_alias=False, request=access
            )
            _check_customer_managed(key, caller, "PutKeyPolicy")
            self.access.check_policy(
                uow, caller, policy, key=key, key_arn=key.arn, key_account=key.account_id,
                bypass_lockout=bypass_lockout,
            )  # fmt: skip
            key.put_policy(now=self.clock.now(), actor=caller.actor(), policy=policy)

        await self.writer.run(command)

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
        events = self.writer.ledger.events
        return await asyncio.to_thread(
            lambda: list(events.get(key.id, gt=after_version, limit=limit))
        )

    # ==== scheduled work =================================================================
    def run_due_jobs(self) -> int:
        """Delete keys whose window ended, rotate keys that are due, delete imported
        material that expired. Returns jobs done."""
        now = self.clock.now()
        self.directory.wait_for_current()
        done = 0
        jobs = {"delete": self._deletion_job, "rotate": self._rotation_job,
                "expire": self._expiry_job}  # fmt: skip
        for key_uuid, job in queries.keys_due(self.pool, now):
            job_function = jobs[job]
            try:
                done += self.writer.run_sync(partial(job_function, key_uuid=key_uuid))
            except (InvalidStateError, NotFoundError):
                continue
        return done

    def _deletion_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        key: Key | None = uow.get(key_uuid, fresh=True)
        now = self.clock.now()
        if key is None or not key.is_due_for_deletion(now):
            return 0
        # Shred first: if the commit then fails, the key is unusable and the job re-runs.
        self.vault.shred(key.id, now)
        for alias_name in list(key.aliases):
            alias: Alias | None = uow.get(
                alias_aggregate_id(key.account_id, key.region, alias_name)
            )
            if alias is not None and alias.target_key_id == key.key_id:
                arn = alias_arn(self.partition, key.region, key.account_id, alias_name)
                alias.delete(now=now, actor=SERVICE_ACTOR, alias_arn=arn)
        key.destroy_material(now=now, actor=SERVICE_ACTOR)
        return 1

    def _rotation_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        key: Key | None = uow.get(key_uuid, fresh=True)
        now = self.clock.now()
        if key is None or not key.is_due_for_rotation(now):
            return 0
        material = self.vault.new_material(
            key.id, version=len(key.materials) + 1, now=now, rotation_type="AUTOMATIC"
        )
        key.rotate_automatically(now=now, actor=SERVICE_ACTOR, material=material)
        return 1


# ==== checks that need no key ==========================================================
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


def _check_plaintext(plaintext: bytes) -> None:
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValidationError(
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_PLAINTEXT}"
        )


def _check_symmetric_algorithm(algorithm: str | None, member: str) -> None:
    if algorithm not in (None, SYMMETRIC_DEFAULT):
        raise InvalidKeyUsageError(
            f"Algorithm {algorithm} is incompatible with key spec {SYMMETRIC_DEFAULT}."
        )


def _data_key_size(number_of_bytes: int | None, key_spec: str | None) -> int:
    if (number_of_bytes is None) == (key_spec is None):
        raise ValidationError("Please specify either number of bytes or key spec.")
    if key_spec is not None:
        return DATA_KEY_SPECS[key_spec]
    assert number_of_bytes is not None
    return number_of_bytes


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
