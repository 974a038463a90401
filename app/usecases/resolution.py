"""Key resolution, shared by every use case that touches a key: find the key a KeyId names
(by id, ARN, alias or alias ARN; an AWS managed key comes into being on first use of its
alias), authorize the caller on it, and the symmetric ciphertext and material helpers
(seal, open, decrypt a blob, check usable, record a use).

One object (``KeyResolver``) held by each area's use-case class (app.usecases.keys, crypto,
asymmetric, imported, grants, explain), passed in by the constructor.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.auth.credentials import Caller
from app.ports import Clock, NeedsOutsideCall, UnitOfWork, Vault
from app.usecases.authorization import (
    AccessControl,
    AccessRequest,
    ConditionValue,
    symmetric_request,
)
from app.usecases.outside_calls import OutsideCalls
from app.usecases.store_keys import StoreKeys
from domain import algorithms
from domain.ciphertext import MULTI_REGION_FORMAT, CiphertextHeader, open_blob, read_header, seal
from domain.errors import (
    DomainError,
    DryRunSucceededError,
    IncorrectKeyError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from domain.identifiers import (
    AWS_MANAGED_ALIAS_PREFIX,
    KeyReference,
    alias_aggregate_id,
    alias_arn,
    key_arn,
    multi_region_aggregate_id,
    parse_key_reference,
)
from domain.key_specs import ENCRYPT_DECRYPT, EXTERNAL, SYMMETRIC_DEFAULT
from domain.keys import AWS_MANAGED, Alias, Key, KeyMaterial, KeyStoreLocation
from domain.multi_region import key_id_bytes, key_id_from_bytes, primary_state
from domain.policy import aws_managed_key_policy

DRY_RUN_MESSAGE = "The request would have succeeded, but the DryRun option is set."
# KeyId members kept parsed (_reference), when no longer than an alias ARN can be (an
# alias name is at most 256 characters); the model lets a KeyId reach 2,048.
REFERENCE_CACHE_SIZE = 4096
LONGEST_KEPT_REFERENCE = 512


# ==== checks of a resolved key ==============================================================
def check_key_use(key: Key, operation: str, usage: str) -> None:
    """State first, then usage (AWS's order)."""
    key.check_allowed(operation)
    if key.key_usage != usage:
        raise InvalidKeyUsageError(
            f"{key.arn} key usage is {key.key_usage} which is not valid for {operation}."
        )


def refuse_encryption_context(context: Mapping[str, str] | None) -> None:
    """Asymmetric keys take no encryption context."""
    if context:
        raise ValidationError("EncryptionContext is not supported with asymmetric KMS keys.")


def stop_if_dry_run(dry_run: bool) -> None:
    if dry_run:
        raise DryRunSucceededError(DRY_RUN_MESSAGE)


def is_symmetric_algorithm(algorithm: str | None) -> bool:
    return algorithm in (None, SYMMETRIC_DEFAULT)


class KeyResolver:
    def __init__(
        self,
        *,
        access: AccessControl,
        vault: Vault,
        clock: Clock,
        partition: str,
        stores: StoreKeys,
    ) -> None:
        self.access = access
        self.vault = vault
        self.clock = clock
        self.partition = partition
        self.stores = stores

    # ==== finding keys ===================================================================
    def arn(self, ref: KeyReference) -> str:
        if ref.is_alias:
            return alias_arn(self.partition, ref.region, ref.account_id, ref.name)
        return key_arn(self.partition, ref.region, ref.account_id, ref.name)

    def resolve(
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
        ref, key_uuid = _reference(key_id, caller.account_id, caller.region, allow_alias)
        if ref.region != caller.region:  # an ARN naming another Region
            raise NotFoundError(f"Invalid arn {ref.region}")
        key = self._find(uow, caller, ref, key_uuid, fresh=fresh, create=True)
        alias_name = ref.name if key_uuid is None else None
        self.access.authorize(uow, caller, action, key, request, alias_name=alias_name)
        return key

    def _find(
        self,
        uow: UnitOfWork,
        caller: Caller,
        ref: KeyReference,
        key_uuid: uuid.UUID | None,
        *,
        fresh: bool,
        create: bool,
    ) -> Key:
        """``key_uuid``: ``ref.key_uuid`` (None for an alias), as ``_reference`` gives it."""
        if key_uuid is None:
            if create:
                key = self._key_for_alias(uow, caller, ref)
            else:
                alias = uow.get(alias_aggregate_id(ref.account_id, ref.region, ref.name))
                target = alias.target_key_id if isinstance(alias, Alias) else None
                found_key = uow.get(uuid.UUID(target)) if target is not None else None
                if not isinstance(found_key, Key):
                    raise NotFoundError(f"Alias {self.arn(ref)} is not found.")
                key = found_key
        else:
            found = uow.get(key_uuid, fresh=fresh)
            if (
                found is None
                or not isinstance(found, Key)
                or found.account_id != ref.account_id
                or found.region != ref.region
            ):
                raise NotFoundError(f"Key '{self.arn(ref)}' does not exist")
            key = found
        if key.is_deleted:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        return key

    def identify(self, uow: UnitOfWork, caller: Caller, key_id: str) -> uuid.UUID | None:
        """The key a KeyId names (in any Region, by ARN), found without authorizing or
        creating anything; None when it names none (resolving it later raises the error)."""
        try:
            ref, key_uuid = _reference(key_id, caller.account_id, caller.region, True)
            return self._find(uow, caller, ref, key_uuid, fresh=False, create=False).id
        except DomainError:
            return None

    def resolve_destination(
        self, uow: UnitOfWork, caller: Caller, key_id: str, request: AccessRequest | None = None
    ) -> Key:
        """ReEncrypt's destination may be named by ARN in another Region of this deployment."""
        if key_id.startswith("arn:"):
            ref = parse_key_reference(key_id, account_id=caller.account_id, region=caller.region)
            if ref.region != caller.region:
                regional = Caller(**{**caller.__dict__, "region": ref.region})
                return self.resolve(uow, regional, key_id, "ReEncryptTo", request=request)
        return self.resolve(uow, caller, key_id, "ReEncryptTo", request=request)

    def _key_for_alias(self, uow: UnitOfWork, caller: Caller, ref: KeyReference) -> Key:
        alias: Alias | None = uow.get(alias_aggregate_id(ref.account_id, ref.region, ref.name))
        if alias is not None and alias.target_key_id is not None:
            key: Key | None = uow.get(uuid.UUID(alias.target_key_id))
            if key is not None and not key.is_deleted:
                return key
        if ref.name.startswith(AWS_MANAGED_ALIAS_PREFIX) and ref.account_id == caller.account_id:
            return self._create_aws_managed_key(uow, caller, ref, alias)
        raise NotFoundError(f"Alias {self.arn(ref)} is not found.")

    def _create_aws_managed_key(
        self, uow: UnitOfWork, caller: Caller, ref: KeyReference, alias: Alias | None
    ) -> Key:
        """AWS managed keys come into being on first use of their predefined alias."""
        service = ref.name.removeprefix(AWS_MANAGED_ALIAS_PREFIX)
        now = self.clock.now()
        key = self.new_key(
            uow,
            caller,
            region=ref.region,
            account_id=ref.account_id,
            key_manager=AWS_MANAGED,
            description=f"Default key that protects my {service} data when no other key is defined",
            policy=aws_managed_key_policy(self.partition, ref.account_id, service, ref.region),
            tags={},
            key_spec=SYMMETRIC_DEFAULT,
            key_usage=ENCRYPT_DECRYPT,
            origin="AWS_KMS",
        )
        self.point_alias(uow, caller, ref.name, ref.account_id, ref.region, key, alias, now)
        return key

    # ==== new keys and aliases ===========================================================
    def new_key(
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
        in_store: str | None = None,
        store: KeyStoreLocation | None = None,
        multi_region_key_id: str | None = None,
        key_uuid: uuid.UUID | None = None,
    ) -> Key:
        """A new key with fresh material (``material_bytes``, or AES-256 when None); keys of
        Origin EXTERNAL start without material, PendingImport. A key of a CloudHSM key
        store has its material in the token, labelled ``in_store`` (its material id). With
        ``multi_region_key_id`` (``mrk-...``), the primary key of a new multi-Region set.
        ``key_uuid``: an id the caller chose (emulator mode's ``_custom_id_``), not taken."""
        if key_uuid is not None:
            public_id = str(key_uuid)
        elif multi_region_key_id is None:
            key_uuid = self.vault.new_key_id()  # its wrapping key is stored already
            public_id = str(key_uuid)
        else:
            key_uuid = multi_region_aggregate_id(multi_region_key_id, region)
            public_id = multi_region_key_id
        now = self.clock.now()
        material: KeyMaterial | None
        if in_store is not None:
            material = KeyMaterial(1, in_store, b"", now, None, in_store=True)
        elif origin == EXTERNAL:
            material = None
        else:
            material = self.vault.new_material(
                key_uuid, version=1, now=now, rotation_type=None, plaintext=material_bytes
            )
        key = Key.create(
            key_id=key_uuid,
            now=now,
            actor=caller.actor(),
            arn=key_arn(self.partition, region, account_id, public_id),
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
            multi_region=(
                None if multi_region_key_id is None else primary_state(multi_region_key_id, region)
            ),
        )
        uow.add(key)
        return key

    def point_alias(
        self,
        uow: UnitOfWork,
        caller: Caller,
        alias_name: str,
        account_id: str,
        region: str,
        key: Key,
        alias: Alias | None,
        now: datetime,
    ) -> None:
        actor = caller.actor()
        arn = alias_arn(self.partition, region, account_id, alias_name)
        if alias is None:
            alias = Alias.create(
                alias_id=alias_aggregate_id(account_id, region, alias_name),
                now=now,
                actor=actor,
                alias_name=alias_name,
                account_id=account_id,
                region=region,
                target_key_id=str(key.id),
            )
            uow.add(alias)
        elif alias.target_key_id is None:
            alias.assign(now=now, actor=actor, target_key_id=str(key.id), alias_arn=arn)
        else:
            alias.retarget(now=now, actor=actor, target_key_id=str(key.id), alias_arn=arn)
        key.add_alias(now=now, actor=actor, alias_name=alias_name, operation="CreateAlias")

    # ==== symmetric ciphertexts ==========================================================
    def check_usable(
        self, key: Key, operation: str, dry_run: bool, uow: UnitOfWork | None = None
    ) -> None:
        """For the symmetric paths: the key's state, usage and spec allow ``operation``
        (and, for a key in a custom key store, that store is connected: ``uow`` given)."""
        if key.store is not None and uow is not None:
            self.stores.check_available(uow, key)
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
            raise DryRunSucceededError(DRY_RUN_MESSAGE)

    @staticmethod
    def check_material_version(key: Key, material_version: int) -> None:
        """The material version a ciphertext's header names is one the key has (read from
        the key's state, no material unwrapped: a dry run of Decrypt checks it too)."""
        if key.material(material_version) is None:
            raise InvalidCiphertextError()

    def seal(
        self,
        key: Key,
        plaintext: bytes,
        context: Mapping[str, str] | None,
        *,
        uow: UnitOfWork | None = None,
        calls: OutsideCalls | None = None,
    ) -> tuple[bytes, str]:
        """Seal under the key's current material; a key in a custom key store needs the
        batch (``uow``) and the request's outside calls. A key in an external key store
        seals twice: its own material's blob, then the proxy's encryption of it."""
        material = key.current_material
        external = key.store is not None and key.store["xks_key_id"] is not None
        if external and (calls is None or uow is None):  # run again with outside calls
            raise NeedsOutsideCall(None)
        cipher = self._cipher(key, material, uow, calls)
        if cipher is None:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        nonce = calls.nonce if calls is not None else os.urandom(12)
        if key.multi_region is None:
            blob = seal(
                cipher,
                key_id=key.id,
                material_version=material.version,
                plaintext=plaintext,
                encryption_context=context,
                nonce=nonce,
            )
        else:  # named by its mrk- id, so that any key of the set opens it (format 3)
            blob = seal(
                cipher,
                key_id=uuid.UUID(bytes=key_id_bytes(key.multi_region["key_id"])),
                material_version=material.version,
                plaintext=plaintext,
                encryption_context=context,
                nonce=nonce,
                format_version=MULTI_REGION_FORMAT,
            )
        if external:
            assert uow is not None and calls is not None
            blob = self.stores.seal_external(uow, key, material.version, blob, calls)
        return blob, material.material_id

    def _cipher(
        self,
        key: Key,
        material: KeyMaterial,
        uow: UnitOfWork | None,
        calls: OutsideCalls | None,
    ) -> Any:
        if not material.in_store:
            return self.vault.cipher(key.id, material)
        if uow is None:
            raise InvalidStateError(f"{key.arn} is unavailable.")
        return self.stores.cipher(uow, key, material.material_id, calls)

    def open(
        self,
        uow: UnitOfWork,
        caller: Caller,
        blob: bytes,
        key_id: str | None,
        context: dict[str, str] | None,
        action: str,
        *,
        any_region: bool = False,
        conditions: Mapping[str, ConditionValue] | None = None,
    ) -> tuple[Key, int]:
        """Find the key that sealed ``blob`` and check the caller may ``action`` it
        (``conditions``: the request's further condition keys)."""
        access = (
            AccessRequest(context, SYMMETRIC_DEFAULT, conditions=conditions)
            if conditions
            else symmetric_request(context)
        )
        header = read_header(blob)
        scope = _opening_scope(caller, key_id, any_region)
        key: Key | None = uow.get(_sealing_key_id(header, scope.region))
        if key is None or not isinstance(key, Key):
            raise InvalidCiphertextError()
        if key_id is not None:
            named = self.resolve(uow, scope, key_id, action, request=access)
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

    def decrypt_blob(
        self,
        key: Key,
        blob: bytes,
        material_version: int,
        context: dict[str, str] | None,
        *,
        uow: UnitOfWork | None = None,
        calls: OutsideCalls | None = None,
    ) -> tuple[bytes, str]:
        material = key.material(material_version)
        if material is None:
            raise InvalidCiphertextError()
        if key.store is not None and key.store["xks_key_id"] is not None:
            if uow is None:
                raise InvalidStateError(f"{key.arn} is unavailable.")
            # Proxy first, then the key's own material. (Every other key refuses a format
            # 2 blob at open_blob: its header is not format 1's, so the tag fails.)
            blob = self.stores.open_external(uow, key, blob, calls)
        cipher = self._cipher(key, material, uow, calls)
        if cipher is None:
            raise InvalidCiphertextError()
        return open_blob(cipher, blob, context), material.material_id

    # ==== recording uses =================================================================
    def record(
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
            operation=operation,
            now=self.clock.now(),
            actor=caller.actor(),
            material_version=material_version,
            encryption_context=encryption_context,
            request_parameters=request_parameters,
        )

    def record_use(
        self,
        key: Key,
        operation: str,
        caller: Caller,
        algorithm: str,
        key_id: str,
        **logged: str,
    ) -> None:
        """Record a use of the current material with ``algorithm``; its record logs
        ``key_id`` as given, the algorithm, and ``logged`` (lowerCamelCase members, never a
        secret)."""
        key.record_use(
            operation=operation,
            now=self.clock.now(),
            actor=caller.actor(),
            material_version=key.current_material.version,
            encryption_context=None,
            algorithm=algorithm,
            request_parameters={"keyId": key_id, **logged},
        )

    # ==== asymmetric and HMAC material ===================================================
    def material_bytes(self, key: Key) -> bytes:
        material = key.current_material
        raw = self.vault.unwrap_material(key.id, material)
        if raw is None:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        return raw

    def private_key(self, key: Key) -> Any:
        return algorithms.load_private_key(key.key_spec, self.material_bytes(key))


def _reference(
    key_id: str, account_id: str, region: str, allow_alias: bool
) -> tuple[KeyReference, uuid.UUID | None]:
    """A KeyId member parsed (domain.identifiers.parse_key_reference), with the aggregate
    id it names (None for an alias). Pure, so kept for the references in use: the same
    few arrive on every call. One that fails raises every time (lru_cache keeps none)."""
    if len(key_id) > LONGEST_KEPT_REFERENCE:  # no real one: not worth the memory
        return _parsed_reference(key_id, account_id, region, allow_alias)
    return _kept_reference(key_id, account_id, region, allow_alias)


def _parsed_reference(
    key_id: str, account_id: str, region: str, allow_alias: bool
) -> tuple[KeyReference, uuid.UUID | None]:
    ref = parse_key_reference(key_id, account_id=account_id, region=region, allow_alias=allow_alias)
    return ref, ref.key_uuid


_kept_reference = lru_cache(maxsize=REFERENCE_CACHE_SIZE)(_parsed_reference)


def sealing_key_id(caller: Caller, blob: bytes, key_id: str | None, any_region: bool) -> uuid.UUID:
    """The aggregate id of the key that opens ``blob`` for ``caller`` (as ``open`` finds
    it), read from its header alone."""
    return _sealing_key_id(read_header(blob), _opening_scope(caller, key_id, any_region).region)


def _opening_scope(caller: Caller, key_id: str | None, any_region: bool) -> Caller:
    """ReEncrypt may name a source in another Region of this deployment by its ARN."""
    if key_id is not None and any_region and key_id.startswith("arn:"):
        ref = parse_key_reference(key_id, account_id=caller.account_id, region=caller.region)
        return Caller(**{**caller.__dict__, "region": ref.region})
    return caller


def _sealing_key_id(header: CiphertextHeader, region: str) -> uuid.UUID:
    """The aggregate that opens a blob: the one its header names, or for a multi-Region
    key's blob (format 3) the key of the set in ``region``."""
    if header.multi_region:
        return multi_region_aggregate_id(key_id_from_bytes(header.key_id.bytes), region)
    return header.key_id
