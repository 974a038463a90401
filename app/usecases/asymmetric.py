"""Use cases of the asymmetric, HMAC and post-quantum key specs: GetPublicKey, Sign, Verify,
GenerateMac, VerifyMac, GenerateDataKeyPair*, DeriveSharedSecret, Encapsulate, Decapsulate.
(RSA Encrypt, Decrypt and ReEncrypt are in app.usecases.crypto; imported key material in
app.usecases.imported.)

On the same path as every other use case: a command on the single writer resolves the key
(app.usecases.resolution), checks state, usage, algorithm and sizes in AWS's order, does the
cryptography on the unwrapped material, records a ``Used`` event with key.record_use and
answers only after that event commits. A check that fails raises before anything is
recorded, so bad input changes nothing.

Expensive generation (RSA key pairs for data key pairs) runs in a worker thread before the
command, never on the writer thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.auth.credentials import Caller
from app.ports import Command, CommandRunner, UnitOfWork
from app.usecases.authorization import AccessRequest
from app.usecases.outside_calls import OutsideCalls, run_with_outside_calls
from app.usecases.resolution import KeyResolver, check_key_use, stop_if_dry_run
from domain import algorithms
from domain.errors import (
    InvalidKeyUsageError,
    KMSInvalidMacError,
    KMSInvalidSignatureError,
    UnsupportedOperationError,
)
from domain.key_specs import (
    ENCAPSULATE_DECAPSULATE,
    GENERATE_VERIFY_MAC,
    KEY_AGREEMENT,
    SIGN_VERIFY,
    SUPPORTED_DATA_KEY_PAIR_SPECS,
    SYMMETRIC_DEFAULT,
    KeyAlgorithms,
    key_algorithms,
)
from domain.keys import Key


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


class AsymmetricOperations:
    def __init__(self, *, runner: CommandRunner, resolver: KeyResolver) -> None:
        self.runner = runner
        self.resolver = resolver

    # ==== GetPublicKey ==================================================================
    async def get_public_key(self, caller: Caller, key_id: str) -> PublicKeyInfo:
        """The public half of an asymmetric key, as DER SubjectPublicKeyInfo (no Used event:
        AWS does not count it as a use of the key)."""

        def command(uow: UnitOfWork) -> PublicKeyInfo:
            key = self.resolver.resolve(uow, caller, key_id, "GetPublicKey", fresh=True)
            key.check_allowed("GetPublicKey")
            if not algorithms.is_asymmetric(key.key_spec):
                raise UnsupportedOperationError(
                    f"{key.arn} key spec is {key.key_spec} which is not valid for GetPublicKey."
                )
            public_key = algorithms.public_der(self.resolver.private_key(key))
            return PublicKeyInfo(
                key.arn,
                public_key,
                key.key_spec,
                key.key_usage,
                key_algorithms(key.key_spec, key.key_usage),
            )

        return await self.runner.run(command)

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
            key = self.resolver.resolve(
                uow, caller, key_id, "Sign", request=_signing_request(algorithm, kind)
            )
            check_key_use(key, "Sign", SIGN_VERIFY)
            algorithms.check_signing_request(key.key_spec, algorithm, kind, message)
            stop_if_dry_run(dry_run)
            signature = algorithms.sign(self.resolver.private_key(key), algorithm, kind, message)
            self.resolver.record_use(key, "Sign", caller, algorithm, key_id, messageType=kind)
            return Signed(key.arn, signature, algorithm)

        return await self.runner.run(command)

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
        """Succeeds only for a valid signature; otherwise KMSInvalidSignatureError (AWS never
        answers SignatureValid=false), and nothing is recorded."""
        kind = message_type or algorithms.RAW

        def command(uow: UnitOfWork) -> Verified:
            key = self.resolver.resolve(
                uow, caller, key_id, "Verify", request=_signing_request(algorithm, kind)
            )
            check_key_use(key, "Verify", SIGN_VERIFY)
            algorithms.check_signing_request(key.key_spec, algorithm, kind, message)
            stop_if_dry_run(dry_run)
            public_key = self.resolver.private_key(key).public_key()
            if not algorithms.verify(public_key, algorithm, kind, message, signature):
                raise KMSInvalidSignatureError()
            self.resolver.record_use(key, "Verify", caller, algorithm, key_id, messageType=kind)
            return Verified(key.arn, algorithm)

        return await self.runner.run(command)

    # ==== GenerateMac and VerifyMac =========================================================
    async def generate_mac(
        self, caller: Caller, key_id: str, message: bytes, algorithm: str, dry_run: bool = False
    ) -> Mac:
        def command(uow: UnitOfWork) -> Mac:
            key = self.resolver.resolve(
                uow, caller, key_id, "GenerateMac", request=_mac_request(algorithm)
            )
            check_key_use(key, "GenerateMac", GENERATE_VERIFY_MAC)
            algorithms.check_mac_algorithm(key.key_spec, algorithm)
            stop_if_dry_run(dry_run)
            tag = algorithms.mac(self.resolver.material_bytes(key), algorithm, message)
            self.resolver.record_use(key, "GenerateMac", caller, algorithm, key_id)
            return Mac(key.arn, tag, algorithm)

        return await self.runner.run(command)

    async def verify_mac(
        self,
        caller: Caller,
        key_id: str,
        message: bytes,
        algorithm: str,
        mac: bytes,
        dry_run: bool = False,
    ) -> Mac:
        """Succeeds only for the right MAC; otherwise KMSInvalidMacError, nothing recorded."""

        def command(uow: UnitOfWork) -> Mac:
            key = self.resolver.resolve(
                uow, caller, key_id, "VerifyMac", request=_mac_request(algorithm)
            )
            check_key_use(key, "VerifyMac", GENERATE_VERIFY_MAC)
            algorithms.check_mac_algorithm(key.key_spec, algorithm)
            stop_if_dry_run(dry_run)
            if not algorithms.mac_matches(
                self.resolver.material_bytes(key), algorithm, message, mac
            ):
                raise KMSInvalidMacError()
            self.resolver.record_use(key, "VerifyMac", caller, algorithm, key_id)
            return Mac(key.arn, mac, algorithm)

        return await self.runner.run(command)

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
        access = AccessRequest(
            encryption_context,
            SYMMETRIC_DEFAULT,
            conditions={"kms:DataKeyPairSpec": key_pair_spec},
        )
        if dry_run or key_pair_spec.startswith("RSA_"):
            # Check before spending seconds on an RSA pair the request cannot use; a dry run
            # stops here, with no pair made.
            def check(uow: UnitOfWork) -> None:
                key = self.resolver.resolve(uow, caller, key_id, operation, request=access)
                self.resolver.check_usable(key, operation, dry_run, uow)

            await self.runner.run(check)
        private_key, public_key = await asyncio.to_thread(
            algorithms.generate_key_pair, key_pair_spec
        )

        def command_with(calls: OutsideCalls | None) -> Command[DataKeyPair]:
            return lambda uow: command(uow, calls)

        def command(uow: UnitOfWork, calls: OutsideCalls | None) -> DataKeyPair:
            key = self.resolver.resolve(uow, caller, key_id, operation, request=access)
            self.resolver.check_usable(key, operation, dry_run, uow)
            blob, material_id = self.resolver.seal(
                key, private_key, encryption_context, uow=uow, calls=calls
            )
            self.resolver.record(
                key,
                operation,
                caller,
                key.current_material.version,
                encryption_context,
                {"keyId": key_id, "keyPairSpec": key_pair_spec},
            )
            return DataKeyPair(
                blob,
                private_key if with_plaintext else None,
                public_key,
                key.arn,
                key_pair_spec,
                material_id,
            )

        perform = self.resolver.stores.perform
        return await run_with_outside_calls(self.runner, command_with, perform, caller, operation)

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
            key = self.resolver.resolve(
                uow,
                caller,
                key_id,
                "DeriveSharedSecret",
                request=AccessRequest(conditions={"kms:KeyAgreementAlgorithm": algorithm}),
            )
            check_key_use(key, "DeriveSharedSecret", KEY_AGREEMENT)
            if algorithm not in key_algorithms(key.key_spec, key.key_usage).key_agreement:
                raise InvalidKeyUsageError(
                    f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
                )
            # The peer's key is checked against the key spec, before the dry run stops and
            # before any material is unwrapped: a bad key fails either way.
            peer = algorithms.peer_public_key(key.key_spec, public_key)
            stop_if_dry_run(dry_run)
            secret = algorithms.derive_shared_secret(self.resolver.private_key(key), peer)
            self.resolver.record_use(key, "DeriveSharedSecret", caller, algorithm, key_id)
            return SharedSecret(key.arn, secret, algorithm, key.origin)

        return await self.runner.run(command)

    # ==== Encapsulate and Decapsulate (ML-KEM) ==================================================
    def _check_encapsulation(self, key: Key, operation: str, algorithm: str) -> None:
        check_key_use(key, operation, ENCAPSULATE_DECAPSULATE)
        if algorithm not in key_algorithms(key.key_spec, key.key_usage).encapsulation:
            raise InvalidKeyUsageError(
                f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
            )

    async def encapsulate(
        self, caller: Caller, key_id: str, algorithm: str, dry_run: bool = False
    ) -> Encapsulation:
        def command(uow: UnitOfWork) -> Encapsulation:
            key = self.resolver.resolve(uow, caller, key_id, "Encapsulate")
            self._check_encapsulation(key, "Encapsulate", algorithm)
            stop_if_dry_run(dry_run)
            result = algorithms.encapsulate(self.resolver.private_key(key).public_key())
            self.resolver.record_use(key, "Encapsulate", caller, algorithm, key_id)
            return Encapsulation(key.arn, result.shared_secret, result.ciphertext, algorithm)

        return await self.runner.run(command)

    async def decapsulate(
        self,
        caller: Caller,
        key_id: str,
        ciphertext: bytes,
        algorithm: str,
        dry_run: bool = False,
    ) -> Encapsulation:
        def command(uow: UnitOfWork) -> Encapsulation:
            key = self.resolver.resolve(uow, caller, key_id, "Decapsulate")
            self._check_encapsulation(key, "Decapsulate", algorithm)
            algorithms.check_kem_ciphertext(key.key_spec, ciphertext)
            stop_if_dry_run(dry_run)
            secret = algorithms.decapsulate(self.resolver.private_key(key), ciphertext)
            self.resolver.record_use(key, "Decapsulate", caller, algorithm, key_id)
            return Encapsulation(key.arn, secret, ciphertext, algorithm)

        return await self.runner.run(command)


# The request's own condition keys (AWS KMS condition keys): a policy may allow or deny
# by them, so the decision must see them.
def _signing_request(algorithm: str, message_type: str) -> AccessRequest:
    return AccessRequest(
        conditions={"kms:SigningAlgorithm": algorithm, "kms:MessageType": message_type}
    )


def _mac_request(algorithm: str) -> AccessRequest:
    return AccessRequest(conditions={"kms:MacAlgorithm": algorithm})
