"""Helpers for the key-spec specifications: keys cached per spec (RSA generation is slow),
import of local material, and verification with independent implementations."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from tests.conftest import Service

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
RSA_SIGNING = (
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
)
# Every key spec x signing algorithm pair AWS lists.
SIGNING_PAIRS = [
    *((spec, algorithm) for spec in RSA_SPECS for algorithm in RSA_SIGNING),
    ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
    ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
    ("ECC_NIST_EDWARDS25519", "ED25519_PH_SHA_512"),
    ("ML_DSA_44", "ML_DSA_SHAKE_256"),
    ("ML_DSA_65", "ML_DSA_SHAKE_256"),
    ("ML_DSA_87", "ML_DSA_SHAKE_256"),
]
HMAC_SPECS = ("HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512")
ECDH_SPECS = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")
ML_KEM_SPECS = ("ML_KEM_768", "ML_KEM_1024")
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512, "224": hashes.SHA224}
CURVES = {
    "ECC_NIST_P256": ec.SECP256R1,
    "ECC_NIST_P384": ec.SECP384R1,
    "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
}


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASHES[algorithm.rsplit("_", 1)[-1]]()


def digest(algorithm: str, message: bytes) -> bytes:
    h = hashes.Hash(hash_of(algorithm))
    h.update(message)
    return h.finalize()


def message_types(algorithm: str) -> tuple[str, ...]:
    if algorithm == "ED25519_SHA_512":
        return ("RAW",)
    if algorithm == "ED25519_PH_SHA_512":
        return ("DIGEST",)
    if algorithm == "ML_DSA_SHAKE_256":
        return ("RAW", "EXTERNAL_MU")
    return ("RAW", "DIGEST")


def kms_input(public_der: bytes, algorithm: str, message_type: str, message: bytes) -> bytes:
    """What to send KMS for ``message``: the message, its digest, or ML-DSA's mu."""
    if message_type == "RAW":
        return message
    if message_type == "EXTERNAL_MU":
        hasher = mldsa.MLDSAMuHasher(serialization.load_der_public_key(public_der))
        hasher.update(message)
        return bytes(hasher.finalize())
    return digest(algorithm, message)


def usage_for(spec: str) -> str:
    if spec.startswith("HMAC"):
        return "GENERATE_VERIFY_MAC"
    if spec.startswith("ML_KEM"):
        return "ENCAPSULATE_DECAPSULATE"
    return "SIGN_VERIFY"


# --- independent verification and signing ---------------------------------------------------
def verify_locally(public_der: bytes, algorithm: str, message: bytes, signature: bytes) -> None:
    """Verify a signature over the full ``message`` with the cryptography library (and
    libsodium, through PyNaCl, for Ed25519ph); raises when it is not valid."""
    public_key: Any = serialization.load_der_public_key(public_der)
    if isinstance(public_key, rsa.RSAPublicKey):
        h = hash_of(algorithm)
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
            if "PSS" in algorithm
            else padding.PKCS1v15()
        )
        public_key.verify(signature, message, pad, h)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, message, ec.ECDSA(hash_of(algorithm)))
    elif algorithm == "ED25519_PH_SHA_512":
        state = nacl.bindings.crypto_sign_ed25519ph_state()
        nacl.bindings.crypto_sign_ed25519ph_update(state, message)
        raw = public_key.public_bytes_raw()
        if not nacl.bindings.crypto_sign_ed25519ph_final_verify(state, signature, raw):
            raise AssertionError("Ed25519ph signature does not verify")
    else:
        public_key.verify(signature, message)


def sign_locally(private_key: Any, algorithm: str, message: bytes) -> bytes:
    """A signature over the full ``message`` made outside the service."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        h = hash_of(algorithm)
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
            if "PSS" in algorithm
            else padding.PKCS1v15()
        )
        return private_key.sign(message, pad, h)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(message, ec.ECDSA(hash_of(algorithm)))
    if algorithm == "ED25519_PH_SHA_512":
        seed = private_key.private_bytes_raw()
        _, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        state = nacl.bindings.crypto_sign_ed25519ph_state()
        nacl.bindings.crypto_sign_ed25519ph_update(state, message)
        return bytes(nacl.bindings.crypto_sign_ed25519ph_final_create(state, secret))
    return bytes(private_key.sign(message))


def prehashed_sign_locally(private_key: Any, algorithm: str, message: bytes) -> bytes:
    """As sign_locally, from the digest (checks KMS DIGEST verification is the same)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(digest(algorithm, message), ec.ECDSA(Prehashed(hash_of(algorithm))))
    return sign_locally(private_key, algorithm, message)


def new_private_key(spec: str) -> Any:
    if spec.startswith("RSA_"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(spec[4:]))
    if spec in CURVES:
        return ec.generate_private_key(CURVES[spec]())
    if spec == "ECC_NIST_EDWARDS25519":
        return ed25519.Ed25519PrivateKey.generate()
    return {
        "ML_DSA_44": mldsa.MLDSA44PrivateKey,
        "ML_DSA_65": mldsa.MLDSA65PrivateKey,
        "ML_DSA_87": mldsa.MLDSA87PrivateKey,
        "ML_KEM_768": mlkem.MLKEM768PrivateKey,
        "ML_KEM_1024": mlkem.MLKEM1024PrivateKey,
    }[spec].generate()


def pkcs8(private_key: Any) -> bytes:
    return bytes(
        private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public_der_of(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# --- importing material -------------------------------------------------------------------------
def wrap_material(public_der: bytes, wrapping_algorithm: str, material: bytes) -> bytes:
    """Wrap material as AWS's import instructions (and OpenSSL) do: RSAES-OAEP, or an
    RSA-OAEP wrapped AES key followed by AES Key Wrap with Padding (RFC 5649)."""
    public_key: Any = serialization.load_der_public_key(public_der)
    h = hashes.SHA1() if wrapping_algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    if wrapping_algorithm.startswith("RSAES_OAEP"):
        return bytes(public_key.encrypt(material, oaep))
    aes_key = os.urandom(32)
    return bytes(public_key.encrypt(aes_key, oaep)) + aes_key_wrap_with_padding(aes_key, material)


def import_material(
    kms: Any,
    key_id: str,
    material: bytes,
    *,
    wrapping_algorithm: str = "RSA_AES_KEY_WRAP_SHA_256",
    wrapping_key_spec: str = "RSA_2048",
    **members: Any,
) -> dict[str, Any]:
    parameters = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm=wrapping_algorithm, WrappingKeySpec=wrapping_key_spec
    )
    members.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return dict(
        kms.import_key_material(
            KeyId=key_id,
            ImportToken=parameters["ImportToken"],
            EncryptedKeyMaterial=wrap_material(
                parameters["PublicKey"], wrapping_algorithm, material
            ),
            **members,
        )
    )


def external_key(kms: Any, spec: str = "SYMMETRIC_DEFAULT", usage: str | None = None) -> str:
    members: dict[str, Any] = {"Origin": "EXTERNAL", "KeySpec": spec}
    if spec != "SYMMETRIC_DEFAULT":
        members["KeyUsage"] = usage or usage_for(spec)
    return str(kms.create_key(**members)["KeyMetadata"]["KeyId"])


# --- keys shared by a session (RSA key generation takes seconds) ------------------------------
_GENERATED: dict[tuple[str, str, str], str] = {}
_IMPORTED: dict[tuple[str, str, str], tuple[str, Any]] = {}


@pytest.fixture
def generated_key(service: Service, kms: Any) -> Callable[[str, str], str]:
    """A service-generated key of ``spec`` and ``usage``, created once per server."""

    def get(spec: str, usage: str) -> str:
        cache_key = (service.endpoint, spec, usage)
        if cache_key not in _GENERATED:
            metadata = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
            _GENERATED[cache_key] = str(metadata["KeyId"])
        return _GENERATED[cache_key]

    return get


@pytest.fixture
def imported_key(service: Service, kms: Any) -> Callable[[str, str], tuple[str, Any]]:
    """An EXTERNAL key holding a private key made here, so both sides can be checked."""

    def get(spec: str, usage: str) -> tuple[str, Any]:
        cache_key = (service.endpoint, spec, usage)
        if cache_key not in _IMPORTED:
            private_key = new_private_key(spec)
            key_id = external_key(kms, spec, usage)
            import_material(kms, key_id, pkcs8(private_key))
            _IMPORTED[cache_key] = (key_id, private_key)
        return _IMPORTED[cache_key]

    return get


def key_events(service: Service, key_id: str) -> list[Any]:
    return list(service.runtime.ledger.events.get(uuid.UUID(key_id)))


def used_events(service: Service, key_id: str) -> list[Any]:
    return [e for e in key_events(service, key_id) if type(e).__name__ == "Used"]


def later(service: Service, **delta: float) -> datetime:
    return service.runtime.clock.now() + timedelta(**delta)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
