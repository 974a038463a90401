"""Use cases of the asymmetric, HMAC, post-quantum and imported-material key specs.

A mixin of KeyService (app/usecases/keys.py), on the same path as every other use case: a
command on the single writer resolves the key, checks state, usage, algorithm and sizes
in AWS's order, does the cryptography on the unwrapped material, records a ``Used``
event with key.record_use and answers only after that event commits. A check that fails
raises before anything is recorded, so bad input changes nothing.

Expensive generation (RSA key pairs for keys, data key pairs and import wrapping keys)
runs in a worker thread before the command, never on the writer thread.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.usecases.results import Decrypted, Encrypted, ReEncrypted, RotationEntry
from domain import algorithms
from domain.ciphertext import read_header
from domain.errors import (
    DryRunSucceededError,
    IncorrectKeyMaterial,
    InvalidImportToken,
    InvalidKeyUsageError,
    KMSInvalidMac,
    KMSInvalidSignature,
    NotFoundError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.key_specs import (
    ENCAPSULATE_DECAPSULATE,
    ENCRYPT_DECRYPT,
    GENERATE_VERIFY_MAC,
    KEY_AGREEMENT,
    SIGN_VERIFY,
    SUPPORTED_DATA_KEY_PAIR_SPECS,
    SYMMETRIC_DEFAULT,
    KeyAlgorithms,
    key_algorithms,
)
from domain.keys import (
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    KEY_MATERIAL_EXPIRES,
    Key,
    encode_import_token,
)

if TYPE_CHECKING:
    from app.infrastructure.clock import Clock
    from app.infrastructure.vault import Vault
    from app.infrastructure.writer import LedgerWriter, UnitOfWork

_IMPORT_WRAPPING_KEY_LABEL = b"import-wrapping-key:"


# ==== what these use cases answer =======================================================
@dataclass(frozen=True)
class PublicKeyInfo:
    key_arn: str
    public_key: bytes  # DER SubjectPublicKeyInfo
    key_spec: str
    key_usage: str
    algorithms: KeyAlgorithms


@dataclass(frozen=True)
class Signed:
    key_arn: str
    signature: bytes
    algorithm: str


@dataclass(frozen=True)
class Verified:
    key_arn: str
    algorithm: str


@dataclass(frozen=True)
class Mac:
    key_arn: str
    mac: bytes
    algorithm: str


@dataclass(frozen=True)
class DataKeyPair:
    private_key_ciphertext: bytes
    private_key_plaintext: bytes | None  # PKCS#8 DER; None for ...WithoutPlaintext
    public_key: bytes  # DER SubjectPublicKeyInfo
    key_arn: str
    key_pair_spec: str
    material_id: str


@dataclass(frozen=True)
class SharedSecret:
    key_arn: str
    shared_secret: bytes
    algorithm: str
    key_origin: str


@dataclass(frozen=True)
class Encapsulation:
    key_arn: str
    shared_secret: bytes
    ciphertext: bytes
    algorithm: str


@dataclass(frozen=True)
class ImportParametersResult:
    key_arn: str
    import_token: bytes
    public_key: bytes  # the RSA wrapping key, DER SubjectPublicKeyInfo
    valid_to: datetime


@dataclass(frozen=True)
class MaterialChange:
    """ImportKeyMaterial and DeleteImportedKeyMaterial: the material they concerned."""

    key_arn: str
    material_id: str | None


def _no_encryption_context(context: Mapping[str, str] | None) -> None:
    if context:
        raise ValidationError("EncryptionContext is not supported with asymmetric KMS keys.")


def _dry_run(dry_run: bool) -> None:
    if dry_run:
        raise DryRunSucceededError(
            "The request would have succeeded, but the DryRun option is set."
        )


def _check_key_use(key: Key, operation: str, usage: str) -> None:
    """State first, then usage (AWS's order)."""
    key.check_allowed(operation)
    if key.key_usage != usage:
        raise InvalidKeyUsageError(
            f"{key.arn} key usage is {key.key_usage} which is not valid for {operation}."
        )


def _is_symmetric_algorithm(algorithm: str | None) -> bool:
    return algorithm in (None, SYMMETRIC_DEFAULT)


def imported_rotation_entries(key: Key, include_all: bool) -> list[RotationEntry]:
    """ListKeyRotations of an imported symmetric key: each material with its import state."""
    current = key.current_material.material_id if key.materials else None
    chosen = key.materials if include_all else key.materials[1:]
    listed = [(m, "CURRENT" if m.material_id == current else "NON_CURRENT") for m in chosen]
    if include_all and key.pending_material is not None:
        listed.append((key.pending_material, "PENDING_ROTATION"))
    entries = []
    for material, material_state in listed:
        state = key.imported_materials.get(material.material_id)
        pending = material_state == "PENDING_ROTATION"
        entries.append(
            RotationEntry(
                key.key_id,
                material.material_id,
                material.created,
                None if pending else material.rotation_type,
                import_state="IMPORTED" if state and state["imported"] else "PENDING_IMPORT",
                material_state=material_state,
                expiration_model=state["expiration_model"] if state else None,
                valid_to=state["valid_to"] if state else None,
                description=state["description"] if state else None,
            )
        )
    return entries


class AsymmetricOperations:
    """Sign, Verify, GenerateMac, VerifyMac, GetPublicKey, GenerateDataKeyPair*,
    DeriveSharedSecret, Encapsulate, Decapsulate, RSA Encrypt/Decrypt/ReEncrypt, and
    imported key material. Mixed into KeyService, whose helpers it uses."""

    if TYPE_CHECKING:
        writer: LedgerWriter
        vault: Vault
        clock: Clock

        def _resolve(
            self,
            uow: UnitOfWork,
            caller: Caller,
            key_id: str,
            action: str,
            *,
            allow_alias: bool = True,
            fresh: bool = False,
        ) -> Key: ...

        def _resolve_destination(self, uow: UnitOfWork, caller: Caller, key_id: str) -> Key: ...

        def _check_usable(self, key: Key, operation: str, dry_run: bool) -> None: ...

        def _seal(
            self, key: Key, plaintext: bytes, context: Mapping[str, str] | None
        ) -> tuple[bytes, str]: ...

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
        ) -> tuple[Key, int]: ...

        def _decrypt_blob(
            self, key: Key, blob: bytes, material_version: int, context: dict[str, str] | None
        ) -> tuple[bytes, str]: ...

        def _record(
            self,
            key: Key,
            operation: str,
            caller: Caller,
            material_version: int,
            encryption_context: dict[str, str] | None,
            request_parameters: dict[str, Any],
        ) -> None: ...

    # ==== material ======================================================================
    def _material_bytes(self, key: Key) -> bytes:
        material = key.current_material
        raw = self.vault.unwrap_material(key.id, material)
        if raw is None:
            raise NotFoundError(f"Key '{key.arn}' does not exist")
        return raw

    def _private_key(self, key: Key) -> Any:
        return algorithms.load_private_key(key.key_spec, self._material_bytes(key))

    def _record_use(
        self,
        key: Key,
        operation: str,
        caller: Caller,
        algorithm: str,
        key_id: str,
        **logged: str,
    ) -> None:
        """Record a use of the current material; its record logs ``key_id`` as given, the
        algorithm, and ``logged`` (lowerCamelCase members, never a secret)."""
        key.record_use(
            operation=operation, now=self.clock.now(), actor=caller.actor(),
            material_version=key.current_material.version, encryption_context=None,
            algorithm=algorithm, request_parameters={"keyId": key_id, **logged},
        )  # fmt: skip

    # ==== GetPublicKey ==================================================================
    async def get_public_key(self, caller: Caller, key_id: str) -> PublicKeyInfo:
        """The public half of an asymmetric key, as DER SubjectPublicKeyInfo (no Used event:
        AWS does not count it as a use of the key)."""

        def command(uow: UnitOfWork) -> PublicKeyInfo:
            key = self._resolve(uow, caller, key_id, "GetPublicKey", fresh=True)
            key.check_allowed("GetPublicKey")
            if not algorithms.is_asymmetric(key.key_spec):
                raise UnsupportedOperationError(
                    f"{key.arn} key spec is {key.key_spec} which is not valid for GetPublicKey."
                )
            public_key = algorithms.public_der(self._private_key(key))
            return PublicKeyInfo(
                key.arn, public_key, key.key_spec, key.key_usage,
                key_algorithms(key.key_spec, key.key_usage),
            )  # fmt: skip

        return await self.writer.run(command)

    # ==== Sign and Verify ==================================================================
    async def sign(
        self,
        caller: Caller,
        key_id: str,
        message: bytes,
        message_type: str | None,
        algorithm: str,
        dry_run: bool = False,
    ) -> Signed:
        kind = message_type or algorithms.RAW

        def command(uow: UnitOfWork) -> Signed:
            key = self._resolve(uow, caller, key_id, "Sign")
            _check_key_use(key, "Sign", SIGN_VERIFY)
            algorithms.check_signing_request(key.key_spec, algorithm, kind, message)
            _dry_run(dry_run)
            signature = algorithms.sign(self._private_key(key), algorithm, kind, message)
            self._record_use(key, "Sign", caller, algorithm, key_id, messageType=kind)
            return Signed(key.arn, signature, algorithm)

        return await self.writer.run(command)

    async def verify(
        self,
        caller: Caller,
        key_id: str,
        message: bytes,
        message_type: str | None,
        signature: bytes,
        algorithm: str,
        dry_run: bool = False,
    ) -> Verified:
        """Succeeds only for a valid signature; otherwise KMSInvalidSignature (AWS never
        answers SignatureValid=false), and nothing is recorded."""
        kind = message_type or algorithms.RAW

        def command(uow: UnitOfWork) -> Verified:
            key = self._resolve(uow, caller, key_id, "Verify")
            _check_key_use(key, "Verify", SIGN_VERIFY)
            algorithms.check_signing_request(key.key_spec, algorithm, kind, message)
            _dry_run(dry_run)
            public_key = self._private_key(key).public_key()
            if not algorithms.verify(public_key, algorithm, kind, message, signature):
                raise KMSInvalidSignature()
            self._record_use(key, "Verify", caller, algorithm, key_id, messageType=kind)
            return Verified(key.arn, algorithm)

        return await self.writer.run(command)

    # ==== GenerateMac and VerifyMac =========================================================
    async def generate_mac(
        self, caller: Caller, key_id: str, message: bytes, algorithm: str, dry_run: bool = False
    ) -> Mac:
        def command(uow: UnitOfWork) -> Mac:
            key = self._resolve(uow, caller, key_id, "GenerateMac")
            _check_key_use(key, "GenerateMac", GENERATE_VERIFY_MAC)
            algorithms.check_mac_algorithm(key.key_spec, algorithm)
            _dry_run(dry_run)
            tag = algorithms.mac(self._material_bytes(key), algorithm, message)
            self._record_use(key, "GenerateMac", caller, algorithm, key_id)
            return Mac(key.arn, tag, algorithm)

        return await self.writer.run(command)

    async def verify_mac(
        self,
        caller: Caller,
        key_id: str,
        message: bytes,
        algorithm: str,
        mac: bytes,
        dry_run: bool = False,
    ) -> Mac:
        """Succeeds only for the right MAC; otherwise KMSInvalidMac, nothing recorded."""

        def command(uow: UnitOfWork) -> Mac:
            key = self._resolve(uow, caller, key_id, "VerifyMac")
            _check_key_use(key, "VerifyMac", GENERATE_VERIFY_MAC)
            algorithms.check_mac_algorithm(key.key_spec, algorithm)
            _dry_run(dry_run)
            if not algorithms.mac_matches(self._material_bytes(key), algorithm, message, mac):
                raise KMSInvalidMac()
            self._record_use(key, "VerifyMac", caller, algorithm, key_id)
            return Mac(key.arn, mac, algorithm)

        return await self.writer.run(command)

    # ==== Encrypt, Decrypt and ReEncrypt with RSA keys ==========================================
    async def encrypt_asymmetric(
        self,
        caller: Caller,
        key_id: str,
        plaintext: bytes,
        encryption_context: dict[str, str] | None,
        algorithm: str,
        dry_run: bool = False,
    ) -> Encrypted:
        """Plain RSAES-OAEP: anyone with the public key decrypts it with any library."""

        def command(uow: UnitOfWork) -> Encrypted:
            key = self._resolve(uow, caller, key_id, "Encrypt")
            _check_key_use(key, "Encrypt", ENCRYPT_DECRYPT)
            chosen = algorithms.check_rsa_encryption(key.key_spec, algorithm, plaintext)
            _no_encryption_context(encryption_context)
            _dry_run(dry_run)
            ciphertext = algorithms.rsa_encrypt(
                self._private_key(key).public_key(), chosen, plaintext
            )
            self._record_use(key, "Encrypt", caller, chosen, key_id)
            return Encrypted(ciphertext, key.arn, chosen, key.current_material.material_id)

        return await self.writer.run(command)

    async def decrypt_asymmetric(
        self,
        caller: Caller,
        ciphertext: bytes,
        key_id: str | None,
        encryption_context: dict[str, str] | None,
        algorithm: str,
        dry_run: bool = False,
    ) -> Decrypted:
        if key_id is None:
            raise ValidationError(
                f"KeyId is required when EncryptionAlgorithm is {algorithm}: an asymmetric "
                "ciphertext does not name its key."
            )

        def command(uow: UnitOfWork) -> Decrypted:
            key = self._resolve(uow, caller, key_id, "Decrypt")
            _check_key_use(key, "Decrypt", ENCRYPT_DECRYPT)
            chosen = algorithms.check_rsa_encryption(key.key_spec, algorithm, None)
            _no_encryption_context(encryption_context)
            _dry_run(dry_run)
            plaintext = algorithms.rsa_decrypt(self._private_key(key), chosen, ciphertext)
            self._record_use(key, "Decrypt", caller, chosen, key_id)
            return Decrypted(plaintext, key.arn, chosen, key.current_material.material_id)

        return await self.writer.run(command)

    async def re_encrypt_asymmetric(
        self,
        caller: Caller,
        blob: bytes,
        *,
        source_key_id: str | None,
        destination_key_id: str,
        source_context: dict[str, str] | None,
        destination_context: dict[str, str] | None,
        source_algorithm: str | None,
        destination_algorithm: str | None,
        dry_run: bool = False,
    ) -> ReEncrypted:
        """ReEncrypt where either side is an RSA key (the symmetric-only case stays in
        KeyService.re_encrypt)."""
        symmetric_source = _is_symmetric_algorithm(source_algorithm)
        if symmetric_source:
            read_header(blob)
        elif source_key_id is None:
            raise ValidationError(
                f"SourceKeyId is required when SourceEncryptionAlgorithm is {source_algorithm}."
            )

        def command(uow: UnitOfWork) -> ReEncrypted:
            if symmetric_source:
                source, version = self._open(
                    uow, caller, blob, source_key_id, source_context, "ReEncryptFrom",
                    any_region=True,
                )  # fmt: skip
                self._check_usable(source, "ReEncryptFrom", False)
                source_chosen = SYMMETRIC_DEFAULT
            else:
                assert source_key_id is not None and source_algorithm is not None
                source = self._resolve(uow, caller, source_key_id, "ReEncryptFrom")
                _check_key_use(source, "ReEncryptFrom", ENCRYPT_DECRYPT)
                source_chosen = algorithms.check_rsa_encryption(
                    source.key_spec, source_algorithm, None
                )
                _no_encryption_context(source_context)
                version = source.current_material.version
            destination = self._resolve_destination(uow, caller, destination_key_id)
            if _is_symmetric_algorithm(destination_algorithm):
                self._check_usable(destination, "ReEncryptTo", False)
                destination_chosen = SYMMETRIC_DEFAULT
            else:
                _check_key_use(destination, "ReEncryptTo", ENCRYPT_DECRYPT)
                destination_chosen = algorithms.check_rsa_encryption(
                    destination.key_spec, destination_algorithm, None
                )
                _no_encryption_context(destination_context)
            _dry_run(dry_run)

            if symmetric_source:
                plaintext, source_material = self._decrypt_blob(
                    source, blob, version, source_context
                )
            else:
                plaintext = algorithms.rsa_decrypt(self._private_key(source), source_chosen, blob)
                source_material = source.current_material.material_id
            if destination_chosen == SYMMETRIC_DEFAULT:
                new_blob, material_id = self._seal(destination, plaintext, destination_context)
            else:
                algorithms.check_rsa_encryption(destination.key_spec, destination_chosen, plaintext)
                new_blob = algorithms.rsa_encrypt(
                    self._private_key(destination).public_key(), destination_chosen, plaintext
                )
                material_id = destination.current_material.material_id
            source.record_re_encryption(
                destination=destination, now=self.clock.now(), actor=caller.actor(),
                material_version=version, source_key_id=source_key_id,
                source_context=source_context, source_algorithm=source_chosen,
                destination_key_id=destination_key_id, destination_context=destination_context,
                destination_algorithm=destination_chosen,
            )  # fmt: skip
            return ReEncrypted(
                new_blob, source.arn, destination.arn, source_chosen, destination_chosen,
                source_material, material_id,
            )  # fmt: skip

        return await self.writer.run(command)

    # ==== GenerateDataKeyPair ===============================================================
    async def generate_data_key_pair(
        self,
        caller: Caller,
        key_id: str,
        key_pair_spec: str,
        encryption_context: dict[str, str] | None,
        *,
        with_plaintext: bool = True,
        dry_run: bool = False,
    ) -> DataKeyPair:
        """A key pair whose private key (PKCS#8 DER) is sealed under a symmetric KMS key
        with the encryption context, like a data key."""
        operation = (
            "GenerateDataKeyPair" if with_plaintext else "GenerateDataKeyPairWithoutPlaintext"
        )
        if key_pair_spec not in SUPPORTED_DATA_KEY_PAIR_SPECS:
            raise UnsupportedOperationError(
                f"KeyPairSpec {key_pair_spec} is not supported by this KeyLedger version."
            )
        if key_pair_spec.startswith("RSA_"):
            # Check before spending seconds on an RSA pair the request cannot use.
            def check(uow: UnitOfWork) -> None:
                key = self._resolve(uow, caller, key_id, operation)
                self._check_usable(key, operation, dry_run)

            await self.writer.run(check)
        private_key, public_key = await asyncio.to_thread(
            algorithms.generate_key_pair, key_pair_spec
        )

        def command(uow: UnitOfWork) -> DataKeyPair:
            key = self._resolve(uow, caller, key_id, operation)
            self._check_usable(key, operation, dry_run)
            blob, material_id = self._seal(key, private_key, encryption_context)
            self._record(
                key, operation, caller, key.current_material.version, encryption_context,
                {"keyId": key_id, "keyPairSpec": key_pair_spec},
            )  # fmt: skip
            return DataKeyPair(
                blob, private_key if with_plaintext else None, public_key, key.arn,
                key_pair_spec, material_id,
            )  # fmt: skip

        return await self.writer.run(command)

    # ==== DeriveSharedSecret ===================================================================
    async def derive_shared_secret(
        self,
        caller: Caller,
        key_id: str,
        algorithm: str,
        public_key: bytes,
        dry_run: bool = False,
    ) -> SharedSecret:
        def command(uow: UnitOfWork) -> SharedSecret:
            key = self._resolve(uow, caller, key_id, "DeriveSharedSecret")
            _check_key_use(key, "DeriveSharedSecret", KEY_AGREEMENT)
            if algorithm not in key_algorithms(key.key_spec, key.key_usage).key_agreement:
                raise InvalidKeyUsageError(
                    f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
                )
            private_key = self._private_key(key)
            # Parse the peer's key before the dry run: a bad key fails either way.
            secret = algorithms.derive_shared_secret(private_key, public_key)
            _dry_run(dry_run)
            self._record_use(key, "DeriveSharedSecret", caller, algorithm, key_id)
            return SharedSecret(key.arn, secret, algorithm, key.origin)

        return await self.writer.run(command)

    # ==== Encapsulate and Decapsulate (ML-KEM) ==================================================
    def _check_encapsulation(self, key: Key, operation: str, algorithm: str) -> None:
        _check_key_use(key, operation, ENCAPSULATE_DECAPSULATE)
        if algorithm not in key_algorithms(key.key_spec, key.key_usage).encapsulation:
            raise InvalidKeyUsageError(
                f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
            )

    async def encapsulate(
        self, caller: Caller, key_id: str, algorithm: str, dry_run: bool = False
    ) -> Encapsulation:
        def command(uow: UnitOfWork) -> Encapsulation:
            key = self._resolve(uow, caller, key_id, "Encapsulate")
            self._check_encapsulation(key, "Encapsulate", algorithm)
            _dry_run(dry_run)
            result = algorithms.encapsulate(self._private_key(key).public_key())
            self._record_use(key, "Encapsulate", caller, algorithm, key_id)
            return Encapsulation(key.arn, result.shared_secret, result.ciphertext, algorithm)

        return await self.writer.run(command)

    async def decapsulate(
        self,
        caller: Caller,
        key_id: str,
        ciphertext: bytes,
        algorithm: str,
        dry_run: bool = False,
    ) -> Encapsulation:
        def command(uow: UnitOfWork) -> Encapsulation:
            key = self._resolve(uow, caller, key_id, "Decapsulate")
            self._check_encapsulation(key, "Decapsulate", algorithm)
            _dry_run(dry_run)
            secret = algorithms.decapsulate(self._private_key(key), ciphertext)
            self._record_use(key, "Decapsulate", caller, algorithm, key_id)
            return Encapsulation(key.arn, secret, ciphertext, algorithm)

        return await self.writer.run(command)

    # ==== imported key material ================================================================
    async def get_parameters_for_import(
        self, caller: Caller, key_id: str, wrapping_algorithm: str, wrapping_key_spec: str
    ) -> ImportParametersResult:
        """A fresh RSA wrapping key and a single-use token, valid for 24 hours."""
        if wrapping_algorithm == "RSAES_PKCS1_V1_5":
            raise ValidationError(
                "The RSAES_PKCS1_V1_5 wrapping algorithm is no longer supported; use "
                "RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256."
            )
        if (
            wrapping_algorithm not in algorithms.WRAPPING_ALGORITHMS
            or wrapping_key_spec not in algorithms.WRAPPING_KEY_SPECS
        ):
            raise UnsupportedOperationError(
                f"WrappingAlgorithm {wrapping_algorithm} with WrappingKeySpec "
                f"{wrapping_key_spec} is not supported by this KeyLedger version."
            )

        def check(uow: UnitOfWork) -> None:
            key = self._resolve(uow, caller, key_id, "GetParametersForImport", allow_alias=False)
            key.check_can_import("GetParametersForImport")

        await self.writer.run(check)  # before seconds of RSA generation
        private_key = await asyncio.to_thread(algorithms.new_wrapping_key, wrapping_key_spec)
        public_key = algorithms.public_der(
            algorithms.load_private_key(wrapping_key_spec, private_key)
        )
        token_id = secrets.token_hex(16)

        def command(uow: UnitOfWork) -> ImportParametersResult:
            key = self._resolve(uow, caller, key_id, "GetParametersForImport", allow_alias=False)
            key.check_can_import("GetParametersForImport")
            wrapped = self.vault.seal_for_key(
                key.id, _IMPORT_WRAPPING_KEY_LABEL + token_id.encode(), private_key
            )
            valid_to = key.issue_import_parameters(
                now=self.clock.now(), actor=caller.actor(), token_id=token_id,
                wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec,
                wrapped_private_key=wrapped,
            )  # fmt: skip
            token = encode_import_token(key.id, token_id, valid_to)
            return ImportParametersResult(key.arn, token, public_key, valid_to)

        return await self.writer.run(command)

    async def import_key_material(
        self,
        caller: Caller,
        key_id: str,
        import_token: bytes,
        encrypted_key_material: bytes,
        *,
        valid_to: datetime | None,
        expiration_model: str | None,
        import_type: str | None = None,
        description: str | None = None,
        key_material_id: str | None = None,
    ) -> MaterialChange:
        """Unwrap material with the token's wrapping key, check it against the key spec and
        the key's earlier material, wrap it under a wrapping key of its own, record it."""
        model = expiration_model or KEY_MATERIAL_EXPIRES
        if model == KEY_MATERIAL_EXPIRES and valid_to is None:
            raise ValidationError(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
            )
        if model == KEY_MATERIAL_DOES_NOT_EXPIRE and valid_to is not None:
            raise ValidationError(
                "A validTo date must not be set if the ExpirationModel is "
                "KEY_MATERIAL_DOES_NOT_EXPIRE"
            )

        def command(uow: UnitOfWork) -> MaterialChange:
            key = self._resolve(uow, caller, key_id, "ImportKeyMaterial", allow_alias=False)
            key.check_can_import("ImportKeyMaterial")
            now = self.clock.now()
            token_id, parameters = key.import_parameters_for(import_token, now)
            wrapping_key = self.vault.open_for_key(
                key.id, _IMPORT_WRAPPING_KEY_LABEL + token_id.encode(),
                parameters["wrapped_private_key"],
            )  # fmt: skip
            if wrapping_key is None:
                raise InvalidImportToken("The import token is not valid.")
            raw = algorithms.unwrap_imported_material(
                wrapping_key, parameters["wrapping_algorithm"], encrypted_key_material
            )
            material_bytes = algorithms.normalize_imported_material(key.key_spec, raw)
            material_id = algorithms.imported_material_id(key.id.bytes, material_bytes)
            plan = key.plan_import(
                now=now, material_id=material_id, import_type=import_type,
                key_material_id=key_material_id, expiration_model=model, valid_to=valid_to,
            )  # fmt: skip
            earlier = key.imported_material(material_id)
            material = self.vault.new_material(
                key.id, version=plan.version,
                now=earlier.created if earlier else now,
                rotation_type=earlier.rotation_type if earlier else (
                    "ON_DEMAND" if plan.pending_rotation else None
                ),
                plaintext=material_bytes, material_id=material_id, imported=True,
            )  # fmt: skip
            key.import_material(
                now=now, actor=caller.actor(), token_id=token_id, plan=plan, material=material,
                expiration_model=model, valid_to=valid_to, description=description or "",
            )  # fmt: skip
            return MaterialChange(key.arn, material_id)

        return await self.writer.run(command)

    async def delete_imported_key_material(
        self, caller: Caller, key_id: str, key_material_id: str | None = None
    ) -> MaterialChange:
        """Shred the material (default: the current one) and record it; the key is
        PendingImport until the same material is imported again."""

        def command(uow: UnitOfWork) -> MaterialChange:
            key = self._resolve(uow, caller, key_id, "DeleteImportedKeyMaterial", allow_alias=False)
            material = key.material_to_delete(key_material_id)
            if material is None:
                return MaterialChange(key.arn, None)
            if key.is_material_imported(material.material_id):
                now = self.clock.now()
                # Shred first: if the commit then fails, the material is gone all the same.
                self.vault.shred_material(key.id, material, now)
                key.delete_imported_material(
                    now=now, actor=caller.actor(), material_id=material.material_id
                )
            return MaterialChange(key.arn, material.material_id)

        return await self.writer.run(command)

    def _expiry_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        """The scheduler's job: shred and record imported material whose ValidTo passed."""
        key: Key | None = uow.get(key_uuid, fresh=True)
        if key is None or key.is_deleted:
            return 0
        now = self.clock.now()
        done = 0
        for material_id in key.materials_due_for_expiry(now):
            material = key.imported_material(material_id)
            if material is None:
                raise IncorrectKeyMaterial(f"material {material_id} is unknown")
            self.vault.shred_material(key.id, material, now)
            key.expire_material(now=now, actor=SERVICE_ACTOR, material_id=material_id)
            done += 1
        return done
