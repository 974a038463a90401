"""The XKS Proxy API's operations on KeyLedger's own keys (hold-your-own-key for an AWS KMS
external key store, or another KeyLedger): GetKeyMetadata, Encrypt and Decrypt with raw
AES-256-GCM, the spec's additional data and a separate tag.

Each is a command on the single writer, like app.usecases.crypto: the key is resolved and
the caller authorized (KeyResolver; kms:DescribeKey, kms:Encrypt, kms:Decrypt), its state
and usage checked, the material read from the Vault, and a ``Used`` event (operation
``XksEncrypt`` or ``XksDecrypt``) recorded; the answer goes out only once it commits.

``externalKeyId`` names a key of the caller's account: a key id, or an alias name without
its ``alias/`` prefix. The ciphertext metadata KeyLedger returns is the material version
(domain.xks), so ciphertexts decrypt after the key rotates.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from app.auth.credentials import Caller
from app.ports import CommandRunner, UnitOfWork
from app.usecases.authorization import AccessRequest
from app.usecases.resolution import KeyResolver
from domain import key_states, xks
from domain.errors import (
    InvalidCiphertextError,
    InvalidKeyUsageError,
    NotFoundError,
    ValidationError,
)
from domain.key_specs import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT
from domain.keys import Key

# The Used events' operations: the key's history tells a use through XKS from a KMS call.
XKS_ENCRYPT = "XksEncrypt"
XKS_DECRYPT = "XksDecrypt"


@dataclass(frozen=True)
class ExternalKeyMetadata:
    key_spec: str
    key_usage: tuple[str, ...]
    key_status: str  # ENABLED or DISABLED


@dataclass(frozen=True)
class ExternalCiphertext:
    ciphertext: bytes
    iv: bytes
    tag: bytes
    ciphertext_metadata: bytes
    integrity_value: bytes | None  # when asked for


class ExternalKeyOperations:
    def __init__(self, *, runner: CommandRunner, resolver: KeyResolver) -> None:
        self.runner = runner
        self.resolver = resolver

    async def metadata(self, caller: Caller, external_key_id: str) -> ExternalKeyMetadata:
        key_id = key_reference(external_key_id)
        resolver = self.resolver

        def command(uow: UnitOfWork) -> ExternalKeyMetadata:
            key = resolver.resolve(uow, caller, key_id, "DescribeKey")
            _check_aes(key)
            enabled = key.state == key_states.ENABLED
            return ExternalKeyMetadata(
                xks.KEY_SPEC, ("ENCRYPT", "DECRYPT"), "ENABLED" if enabled else "DISABLED"
            )

        return await self.runner.run(command)

    async def encrypt(
        self,
        caller: Caller,
        external_key_id: str,
        plaintext: bytes,
        aad: bytes | None,
        *,
        integrity: bool,
        logged: dict[str, Any],
    ) -> ExternalCiphertext:
        """AES-256-GCM under the key's current material; with ``integrity`` the CDIV,
        computed before the result is decrypted once more to check it (Appendix C)."""
        key_id = key_reference(external_key_id)
        _check_size(plaintext, "plaintext")
        resolver = self.resolver
        access = AccessRequest(None, SYMMETRIC_DEFAULT)

        def command(uow: UnitOfWork) -> ExternalCiphertext:
            key = resolver.resolve(uow, caller, key_id, "Encrypt", request=access)
            _check_usable(key, "Encrypt")
            material = key.current_material
            cipher = resolver.vault.cipher(key.id, material)
            if cipher is None:
                raise _not_found(key)
            meta = xks.material_metadata(material.version)
            gcm_aad = xks.gcm_aad(aad, meta)
            iv = os.urandom(xks.IV_BYTES)
            sealed = cipher.encrypt(iv, plaintext, gcm_aad)
            ciphertext, tag = sealed[: -xks.TAG_BYTES], sealed[-xks.TAG_BYTES :]
            value = xks.integrity_value(aad, meta, iv, ciphertext, tag) if integrity else None
            if integrity:
                cipher.decrypt(iv, ciphertext + tag, gcm_aad)  # raises if anything flipped
            _record(resolver, key, XKS_ENCRYPT, caller, material.version, external_key_id, logged)
            return ExternalCiphertext(ciphertext, iv, tag, meta, value)

        return await self.runner.run(command)

    async def decrypt(
        self,
        caller: Caller,
        external_key_id: str,
        ciphertext: ExternalCiphertext,
        aad: bytes | None,
        *,
        logged: dict[str, Any],
    ) -> bytes:
        key_id = key_reference(external_key_id)
        _check_size(ciphertext.ciphertext, "ciphertext")
        if len(ciphertext.iv) not in (12, 16) or len(ciphertext.tag) != xks.TAG_BYTES:
            raise InvalidCiphertextError(
                "The initialization vector must be 12 or 16 bytes, the tag 16 bytes."
            )
        version = xks.material_version(ciphertext.ciphertext_metadata)
        resolver = self.resolver
        access = AccessRequest(None, SYMMETRIC_DEFAULT)

        def command(uow: UnitOfWork) -> bytes:
            key = resolver.resolve(uow, caller, key_id, "Decrypt", request=access)
            _check_usable(key, "Decrypt")
            material = key.material(version) if version is not None else None
            if material is None:
                raise InvalidCiphertextError()
            cipher = resolver.vault.cipher(key.id, material)
            if cipher is None:
                raise InvalidCiphertextError()
            gcm_aad = xks.gcm_aad(aad, ciphertext.ciphertext_metadata)
            try:
                plaintext = _gcm_decrypt(cipher, ciphertext, gcm_aad)
            except InvalidTag:
                raise InvalidCiphertextError() from None
            _record(resolver, key, XKS_DECRYPT, caller, material.version, external_key_id, logged)
            return plaintext

        return await self.runner.run(command)


def key_reference(external_key_id: str) -> str:
    """The KeyId an externalKeyId names: a key id as is, else ``alias/<externalKeyId>``."""
    if not xks.is_external_key_id(external_key_id):
        raise ValidationError("externalKeyId must be 1 to 128 of [A-Za-z0-9._-]")
    try:
        uuid.UUID(external_key_id)
    except ValueError:
        return f"alias/{external_key_id}"
    return external_key_id


def _gcm_decrypt(cipher: Any, ciphertext: ExternalCiphertext, aad: bytes) -> bytes:
    if len(ciphertext.iv) != xks.IV_BYTES:  # KeyLedger writes 12-byte IVs only
        raise InvalidTag()
    plaintext: bytes = cipher.decrypt(ciphertext.iv, ciphertext.ciphertext + ciphertext.tag, aad)
    return plaintext


def _check_size(data: bytes, member: str) -> None:
    if len(data) > xks.MAX_DATA:
        raise ValidationError(f"{member} is longer than {xks.MAX_DATA} bytes")


def _check_aes(key: Key) -> None:
    if key.key_spec != SYMMETRIC_DEFAULT or key.key_usage != ENCRYPT_DECRYPT:
        raise InvalidKeyUsageError(f"{key.arn} is not an AES-256 encryption key.")
    if key.store is not None:
        # Its material is in a token, or is only one of its two backing keys: raw AES-GCM
        # with it here would skip the rest.
        raise InvalidKeyUsageError(f"{key.arn} is in a custom key store.")


def _check_usable(key: Key, operation: str) -> None:
    key.check_allowed(operation)  # disabled, pending deletion or import: AWS's errors
    _check_aes(key)


def _not_found(key: Key) -> Exception:
    return NotFoundError(f"Key '{key.arn}' does not exist")


def _record(
    resolver: KeyResolver,
    key: Key,
    operation: str,
    caller: Caller,
    version: int,
    external_key_id: str,
    logged: dict[str, Any],
) -> None:
    """The use, durable before the answer; its record logs the externalKeyId and the
    proxy request's metadata (never a plaintext, ciphertext, AAD, IV or tag)."""
    key.record_use(
        operation=operation,
        now=resolver.clock.now(),
        actor=caller.actor(),
        material_version=version,
        encryption_context=None,
        algorithm=xks.AES_GCM,
        request_parameters={"externalKeyId": external_key_id, **logged},
    )
