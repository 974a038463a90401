"""Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext)
and GenerateRandom, with symmetric keys and with RSA keys (RSAES-OAEP).

Each is a command on the single writer: resolve the key (app.usecases.resolution), check
state, usage, algorithm and sizes in AWS's order, do the cryptography, record a ``Used``
event, and answer only after that event commits. A check that fails raises before anything
is recorded.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.auth.credentials import Caller
from app.ports import Command, CommandRunner, UnitOfWork
from app.usecases.authorization import AccessControl, AccessRequest, symmetric_request
from app.usecases.outside_calls import OutsideCalls, run_with_outside_calls
from app.usecases.resolution import (
    KeyResolver,
    check_key_use,
    is_symmetric_algorithm,
    refuse_encryption_context,
    sealing_key_id,
    stop_if_dry_run,
)
from app.usecases.results import DataKey, Decrypted, Encrypted, ReEncrypted
from app.usecases.store_keys import TokenRandom
from domain import algorithms
from domain.ciphertext import read_header
from domain.errors import ValidationError
from domain.key_specs import DATA_KEY_SPECS, ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT

MAX_PLAINTEXT = 4096
T = TypeVar("T")


class CryptoOperations:
    def __init__(
        self, *, runner: CommandRunner, resolver: KeyResolver, access: AccessControl
    ) -> None:
        self.runner = runner
        self.resolver = resolver
        self.access = access

    # ==== Encrypt ========================================================================
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
        if not is_symmetric_algorithm(algorithm):  # RSAES_OAEP_*: an RSA key
            assert algorithm is not None
            return await self._encrypt_rsa(
                caller, key_id, plaintext, encryption_context, algorithm, dry_run
            )
        resolver = self.resolver
        access = symmetric_request(encryption_context)  # the algorithm is SYMMETRIC_DEFAULT

        def command_with(calls: OutsideCalls | None) -> Command[Encrypted]:
            def command(uow: UnitOfWork) -> Encrypted:
                key = resolver.resolve(uow, caller, key_id, "Encrypt", request=access)
                resolver.check_usable(key, "Encrypt", dry_run, uow)
                blob, material_id = resolver.seal(
                    key, plaintext, encryption_context, uow=uow, calls=calls
                )
                resolver.record(
                    key,
                    "Encrypt",
                    caller,
                    key.current_material.version,
                    encryption_context,
                    {"keyId": key_id},
                )
                return Encrypted(blob, key.arn, SYMMETRIC_DEFAULT, material_id)

            return command

        return await self._run(command_with, caller, "Encrypt")

    def _run(
        self,
        command_with: Callable[[OutsideCalls | None], Command[T]],
        caller: Caller,
        operation: str,
    ) -> Awaitable[T]:
        perform = self.resolver.stores.perform
        return run_with_outside_calls(self.runner, command_with, perform, caller, operation)

    async def _encrypt_rsa(
        self,
        caller: Caller,
        key_id: str,
        plaintext: bytes,
        encryption_context: dict[str, str] | None,
        algorithm: str,
        dry_run: bool,
    ) -> Encrypted:
        """Plain RSAES-OAEP: anyone with the public key decrypts it with any library."""
        resolver = self.resolver

        def command(uow: UnitOfWork) -> Encrypted:
            key = resolver.resolve(
                uow, caller, key_id, "Encrypt", request=AccessRequest(None, algorithm)
            )
            check_key_use(key, "Encrypt", ENCRYPT_DECRYPT)
            chosen = algorithms.check_rsa_encryption(key.key_spec, algorithm, plaintext)
            refuse_encryption_context(encryption_context)
            stop_if_dry_run(dry_run)
            ciphertext = algorithms.rsa_encrypt(
                resolver.private_key(key).public_key(), chosen, plaintext
            )
            resolver.record_use(key, "Encrypt", caller, chosen, key_id)
            return Encrypted(ciphertext, key.arn, chosen, key.current_material.material_id)

        return await self.runner.run(command)

    # ==== Decrypt ========================================================================
    async def decrypt(
        self,
        caller: Caller,
        blob: bytes,
        key_id: str | None,
        encryption_context: dict[str, str] | None,
        algorithm: str | None = None,
        dry_run: bool = False,
    ) -> Decrypted:
        if not is_symmetric_algorithm(algorithm):  # RSAES_OAEP_*: an RSA key
            assert algorithm is not None
            return await self._decrypt_rsa(
                caller, blob, key_id, encryption_context, algorithm, dry_run
            )
        read_header(blob)  # a malformed blob fails before any key is touched
        resolver = self.resolver

        def command_with(calls: OutsideCalls | None) -> Command[Decrypted]:
            def command(uow: UnitOfWork) -> Decrypted:
                key, version = resolver.open(
                    uow, caller, blob, key_id, encryption_context, "Decrypt"
                )
                resolver.check_usable(key, "Decrypt", False, uow)
                resolver.check_material_version(key, version)
                stop_if_dry_run(dry_run)  # the blob's tag needs the material: never opened
                plaintext, material_id = resolver.decrypt_blob(
                    key, blob, version, encryption_context, uow=uow, calls=calls
                )
                resolver.record(
                    key,
                    "Decrypt",
                    caller,
                    version,
                    encryption_context,
                    {} if key_id is None else {"keyId": key_id},
                )
                return Decrypted(plaintext, key.arn, SYMMETRIC_DEFAULT, material_id)

            return command

        return await self._run(command_with, caller, "Decrypt")

    async def _decrypt_rsa(
        self,
        caller: Caller,
        ciphertext: bytes,
        key_id: str | None,
        encryption_context: dict[str, str] | None,
        algorithm: str,
        dry_run: bool,
    ) -> Decrypted:
        if key_id is None:
            raise ValidationError(
                f"KeyId is required when EncryptionAlgorithm is {algorithm}: an asymmetric "
                "ciphertext does not name its key."
            )
        resolver = self.resolver

        def command(uow: UnitOfWork) -> Decrypted:
            key = resolver.resolve(
                uow, caller, key_id, "Decrypt", request=AccessRequest(None, algorithm)
            )
            check_key_use(key, "Decrypt", ENCRYPT_DECRYPT)
            chosen = algorithms.check_rsa_encryption(key.key_spec, algorithm, None)
            refuse_encryption_context(encryption_context)
            algorithms.check_rsa_ciphertext(key.key_spec, ciphertext)
            stop_if_dry_run(dry_run)
            plaintext = algorithms.rsa_decrypt(resolver.private_key(key), chosen, ciphertext)
            resolver.record_use(key, "Decrypt", caller, chosen, key_id)
            return Decrypted(plaintext, key.arn, chosen, key.current_material.material_id)

        return await self.runner.run(command)

    # ==== ReEncrypt ======================================================================
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
        """Decrypt under the source key and encrypt under the destination, either of them
        symmetric (a KeyLedger ciphertext blob) or RSA (plain RSAES-OAEP). The source may
        live in another Region of this deployment (snapshot copy), as may the destination
        when named by ARN. Both keys are found and authorized before either is checked."""
        symmetric_source = is_symmetric_algorithm(source_algorithm)
        symmetric_destination = is_symmetric_algorithm(destination_algorithm)
        if symmetric_source:
            read_header(blob)
        elif source_key_id is None:
            raise ValidationError(
                f"SourceKeyId is required when SourceEncryptionAlgorithm is {source_algorithm}."
            )
        resolver = self.resolver

        def command_with(calls: OutsideCalls | None) -> Command[ReEncrypted]:
            return lambda uow: command(uow, calls)

        def command(uow: UnitOfWork, calls: OutsideCalls | None) -> ReEncrypted:
            # Both halves carry kms:ReEncryptOnSameKey, so it is known before either is
            # authorized: the key that sealed the blob (or SourceKeyId) is the destination.
            source_id: uuid.UUID | None
            if symmetric_source:
                source_id = sealing_key_id(caller, blob, source_key_id, any_region=True)
            else:
                assert source_key_id is not None
                source_id = resolver.identify(uow, caller, source_key_id)
            same_key = (
                source_id is not None
                and resolver.identify(uow, caller, destination_key_id) == source_id
            )
            conditions = {"kms:ReEncryptOnSameKey": "true" if same_key else "false"}
            version = 0
            if symmetric_source:
                source, version = resolver.open(
                    uow,
                    caller,
                    blob,
                    source_key_id,
                    source_context,
                    "ReEncryptFrom",
                    any_region=True,
                    conditions=conditions,
                )
            else:
                assert source_key_id is not None
                source = resolver.resolve(
                    uow,
                    caller,
                    source_key_id,
                    "ReEncryptFrom",
                    request=AccessRequest(None, source_algorithm, conditions=conditions),
                )
            destination_request = (
                AccessRequest(destination_context, SYMMETRIC_DEFAULT, conditions=conditions)
                if symmetric_destination
                else AccessRequest(None, destination_algorithm, conditions=conditions)
            )
            destination = resolver.resolve_destination(
                uow, caller, destination_key_id, request=destination_request
            )
            if symmetric_source:
                resolver.check_usable(source, "ReEncryptFrom", False, uow)
                resolver.check_material_version(source, version)
                source_chosen = SYMMETRIC_DEFAULT
            else:
                check_key_use(source, "ReEncryptFrom", ENCRYPT_DECRYPT)
                source_chosen = algorithms.check_rsa_encryption(
                    source.key_spec, source_algorithm, None
                )
                refuse_encryption_context(source_context)
                algorithms.check_rsa_ciphertext(source.key_spec, blob)
                version = source.current_material.version
            if symmetric_destination:
                resolver.check_usable(destination, "ReEncryptTo", dry_run, uow)
                destination_chosen = SYMMETRIC_DEFAULT
            else:
                check_key_use(destination, "ReEncryptTo", ENCRYPT_DECRYPT)
                destination_chosen = algorithms.check_rsa_encryption(
                    destination.key_spec, destination_algorithm, None
                )
                refuse_encryption_context(destination_context)
                stop_if_dry_run(dry_run)

            if symmetric_source:
                plaintext, source_material = resolver.decrypt_blob(
                    source, blob, version, source_context, uow=uow, calls=calls
                )
            else:
                plaintext = algorithms.rsa_decrypt(
                    resolver.private_key(source), source_chosen, blob
                )
                source_material = source.current_material.material_id
            if symmetric_destination:
                new_blob, material_id = resolver.seal(
                    destination, plaintext, destination_context, uow=uow, calls=calls
                )
            else:
                algorithms.check_rsa_encryption(destination.key_spec, destination_chosen, plaintext)
                new_blob = algorithms.rsa_encrypt(
                    resolver.private_key(destination).public_key(), destination_chosen, plaintext
                )
                material_id = destination.current_material.material_id
            source.record_re_encryption(
                destination=destination,
                now=resolver.clock.now(),
                actor=caller.actor(),
                material_version=version,
                source_key_id=source_key_id,
                source_context=source_context,
                source_algorithm=source_chosen,
                destination_key_id=destination_key_id,
                destination_context=destination_context,
                destination_algorithm=destination_chosen,
            )
            return ReEncrypted(
                new_blob,
                source.arn,
                destination.arn,
                source_chosen,
                destination_chosen,
                source_material,
                material_id,
            )

        return await self._run(command_with, caller, "ReEncrypt")

    # ==== GenerateDataKey and GenerateRandom =============================================
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
        access = symmetric_request(encryption_context)
        resolver = self.resolver
        data_key = os.urandom(size)  # here: a command run again seals the same data key

        def command_with(calls: OutsideCalls | None) -> Command[DataKey]:
            return lambda uow: command(uow, calls)

        def command(uow: UnitOfWork, calls: OutsideCalls | None) -> DataKey:
            key = resolver.resolve(uow, caller, key_id, operation, request=access)
            resolver.check_usable(key, operation, dry_run, uow)
            blob, material_id = resolver.seal(
                key, data_key, encryption_context, uow=uow, calls=calls
            )
            given: dict[str, Any] = {"keyId": key_id}
            if key_spec is not None:
                given["keySpec"] = key_spec
            else:
                given["numberOfBytes"] = number_of_bytes
            resolver.record(
                key, operation, caller, key.current_material.version, encryption_context, given
            )
            return DataKey(blob, data_key if with_plaintext else None, key.arn, material_id)

        return await self._run(command_with, caller, operation)

    async def generate_random(
        self, caller: Caller, number_of_bytes: int | None, custom_key_store_id: str | None = None
    ) -> bytes:
        """Random bytes: from the operating system's generator, or from a CloudHSM key
        store's token when ``custom_key_store_id`` names one."""
        if number_of_bytes is None:
            raise ValidationError("NumberOfBytes is required.")
        if custom_key_store_id is None:
            await self.access.authorize_account_action(caller, "GenerateRandom")
            return os.urandom(number_of_bytes)
        stores, size = self.resolver.stores, number_of_bytes

        def command(uow: UnitOfWork, calls: OutsideCalls) -> bytes:
            self.access.authorize(uow, caller, "GenerateRandom", None)
            store = stores.store_for_random(uow, caller, custom_key_store_id)
            return bytes(calls.answer(TokenRandom(stores.token_of(store), size)))

        calls = stores.calls(caller, "GenerateRandom")
        return await calls.run(self.runner, lambda uow: command(uow, calls))


def _check_plaintext(plaintext: bytes) -> None:
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValidationError(
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_PLAINTEXT}"
        )


def _data_key_size(number_of_bytes: int | None, key_spec: str | None) -> int:
    if (number_of_bytes is None) == (key_spec is None):
        raise ValidationError("Please specify either number of bytes or key spec.")
    if key_spec is not None:
        return DATA_KEY_SPECS[key_spec]
    assert number_of_bytes is not None
    return number_of_bytes
