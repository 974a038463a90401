"""The cryptography of every key spec, on material that is already unwrapped.

Pure functions over bytes and key objects: no I/O, no clock. Randomness comes from the
operating system (``os.urandom`` and the cryptography library's generators). Every
result is standard (PKCS#8 and SubjectPublicKeyInfo DER, DER ECDSA signatures, raw
RSAES-OAEP ciphertext, FIPS 203/204 encodings), so any independent implementation
verifies it. Checks raise the domain error AWS answers; messages never contain material.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, cast

from Crypto.Hash import SHA512 as PycryptodomeSha512
from Crypto.Signature import eddsa
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from domain.errors import (
    IncorrectKeyMaterialError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    ValidationError,
)
from domain.key_specs import SUPPORTED_SPECS, SYMMETRIC_DEFAULT

RAW, DIGEST, EXTERNAL_MU = "RAW", "DIGEST", "EXTERNAL_MU"
MU_SIZE = 64
SYMMETRIC_MATERIAL_SIZE = 32

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA_1": hashes.SHA1,
    "SHA_224": hashes.SHA224,
    "SHA_256": hashes.SHA256,
    "SHA_384": hashes.SHA384,
    "SHA_512": hashes.SHA512,
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECC_NIST_P256": ec.SECP256R1,
    "ECC_NIST_P384": ec.SECP384R1,
    "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
}
_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
_ML_DSA: dict[str, Any] = {
    "ML_DSA_44": mldsa.MLDSA44PrivateKey,
    "ML_DSA_65": mldsa.MLDSA65PrivateKey,
    "ML_DSA_87": mldsa.MLDSA87PrivateKey,
}
_ML_KEM: dict[str, Any] = {
    "ML_KEM_768": mlkem.MLKEM768PrivateKey,
    "ML_KEM_1024": mlkem.MLKEM1024PrivateKey,
}
# AWS's accepted lengths of imported HMAC material, in bytes; generated keys use the low end.
HMAC_KEY_SIZES = {
    "HMAC_224": (28, 64),
    "HMAC_256": (32, 64),
    "HMAC_384": (48, 128),
    "HMAC_512": (64, 128),
}
# RSAES-OAEP plaintext limits: modulus bytes - 2 * hash bytes - 2 (AWS's table).
_OAEP_HASH_BYTES = {"RSAES_OAEP_SHA_1": 20, "RSAES_OAEP_SHA_256": 32}


def _hash_of(algorithm: str) -> hashes.HashAlgorithm:
    """The hash an algorithm name ends with: RSASSA_PSS_SHA_384 -> SHA-384."""
    return _HASHES["SHA_" + algorithm.rsplit("_", 1)[-1]]()


def is_symmetric(key_spec: str) -> bool:
    return key_spec == SYMMETRIC_DEFAULT


def is_hmac(key_spec: str) -> bool:
    return key_spec in HMAC_KEY_SIZES


def is_asymmetric(key_spec: str) -> bool:
    return not (is_symmetric(key_spec) or is_hmac(key_spec))


# --- generating material -----------------------------------------------------------
def _der(private_key: PrivateKeyTypes) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_der(private_key: PrivateKeyTypes) -> bytes:
    """The public half as DER SubjectPublicKeyInfo (what GetPublicKey answers)."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _new_private_key(spec: str) -> PrivateKeyTypes:
    if spec in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[spec])
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec]())
    if spec == "ECC_NIST_EDWARDS25519":
        return ed25519.Ed25519PrivateKey.generate()
    if spec in _ML_DSA:
        return cast(PrivateKeyTypes, _ML_DSA[spec].generate())
    if spec in _ML_KEM:
        return cast(PrivateKeyTypes, _ML_KEM[spec].generate())
    raise ValueError(f"no generator for {spec}")


def generate_material(key_spec: str) -> bytes:
    """Fresh material for a key: AES-256 or HMAC key bytes, or a PKCS#8 DER private key.

    RSA generation takes up to seconds: callers run it off the writer thread.
    """
    if is_symmetric(key_spec):
        return os.urandom(SYMMETRIC_MATERIAL_SIZE)
    if is_hmac(key_spec):
        return os.urandom(HMAC_KEY_SIZES[key_spec][0])
    return _der(_new_private_key(key_spec))


def generate_key_pair(pair_spec: str) -> tuple[bytes, bytes]:
    """A data key pair: (PKCS#8 DER private key, DER SubjectPublicKeyInfo public key)."""
    private_key = _new_private_key(pair_spec)
    return _der(private_key), public_der(private_key)


def load_private_key(key_spec: str, material: bytes) -> PrivateKeyTypes:
    """Parse a key's PKCS#8 material (ours, so already validated when it was stored)."""
    private_key = serialization.load_der_private_key(
        material, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not _matches_spec(private_key, key_spec):
        raise ValueError(f"material is not a {key_spec} private key")
    return private_key


def _matches_spec(private_key: Any, key_spec: str) -> bool:
    if key_spec in _RSA_BITS:
        return isinstance(private_key, rsa.RSAPrivateKey) and (
            private_key.key_size == _RSA_BITS[key_spec]
        )
    if key_spec in _CURVES:
        return isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, _CURVES[key_spec]
        )
    if key_spec == "ECC_NIST_EDWARDS25519":
        return isinstance(private_key, ed25519.Ed25519PrivateKey)
    if key_spec in _ML_DSA:
        return isinstance(private_key, _ML_DSA[key_spec])
    if key_spec in _ML_KEM:
        return isinstance(private_key, _ML_KEM[key_spec])
    return False


def normalize_imported_material(key_spec: str, material: bytes) -> bytes:
    """Check imported material against the key spec and return its canonical bytes.

    Asymmetric material is PKCS#8 DER; it is re-encoded so that the same private key
    always has the same bytes (and so the same key material id).
    """
    if is_symmetric(key_spec):
        if len(material) != SYMMETRIC_MATERIAL_SIZE:
            raise IncorrectKeyMaterialError(
                f"Key material for key spec {key_spec} must be 256 bits (32 bytes)."
            )
        return material
    if is_hmac(key_spec):
        low, high = HMAC_KEY_SIZES[key_spec]
        if not low <= len(material) <= high:
            raise IncorrectKeyMaterialError(
                f"Key material for key spec {key_spec} must be between {low} and {high} bytes."
            )
        return material
    try:
        private_key = serialization.load_der_private_key(material, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise IncorrectKeyMaterialError(
            "The key material is not a DER-encoded PKCS #8 private key."
        ) from None
    if not _matches_spec(private_key, key_spec):
        raise IncorrectKeyMaterialError(f"The key material is not a {key_spec} private key.")
    return _der(private_key)


def imported_material_id(key_id: bytes, material: bytes) -> str:
    """AWS's KeyMaterialId of imported material: derived from the key and the material,
    so re-importing the same material yields the same id (64 lowercase hex)."""
    return hashlib.sha256(b"keyledger:imported-material:" + key_id + material).hexdigest()


# --- import wrapping ----------------------------------------------------------------
WRAPPING_ALGORITHMS = (
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
)
WRAPPING_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


def new_wrapping_key(wrapping_key_spec: str) -> bytes:
    """The RSA key pair GetParametersForImport hands out, as PKCS#8 DER."""
    return generate_material(wrapping_key_spec)


def unwrap_imported_material(
    wrapping_key: bytes, wrapping_algorithm: str, encrypted: bytes
) -> bytes:
    """Open EncryptedKeyMaterial: RSAES-OAEP, or CKM_RSA_AES_KEY_WRAP (an RSA-OAEP wrapped
    ephemeral AES key, then AES Key Wrap with Padding, RFC 5649). Any failure is
    InvalidCiphertext."""
    private_key = serialization.load_der_private_key(
        wrapping_key, password=None, unsafe_skip_rsa_key_validation=True
    )
    assert isinstance(private_key, rsa.RSAPrivateKey)
    algorithm = _HASHES["SHA_" + wrapping_algorithm.rsplit("_", 1)[-1]]()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)
    modulus_bytes = private_key.key_size // 8
    try:
        if wrapping_algorithm.startswith("RSAES_OAEP"):
            return private_key.decrypt(encrypted, oaep)
        aes_key = private_key.decrypt(encrypted[:modulus_bytes], oaep)
        return aes_key_unwrap_with_padding(aes_key, encrypted[modulus_bytes:])
    except (ValueError, InvalidUnwrap):
        raise InvalidCiphertextError() from None


# --- signing --------------------------------------------------------------------------
def _digest_size(algorithm: str) -> int:
    return _hash_of(algorithm).digest_size


def check_signing_request(key_spec: str, algorithm: str, message_type: str, message: bytes) -> None:
    """AWS's checks, in its order: algorithm for the spec, then message type and size."""
    info = SUPPORTED_SPECS[key_spec]
    if algorithm not in info.signing_algorithms:
        raise InvalidKeyUsageError(
            f"Algorithm {algorithm} is incompatible with key spec {key_spec}."
        )
    if message_type == EXTERNAL_MU:
        if not key_spec.startswith("ML_DSA"):
            raise ValidationError(
                f"MessageType EXTERNAL_MU is not valid for signing algorithm {algorithm}."
            )
        if len(message) != MU_SIZE:
            raise ValidationError(f"External mu is invalid length for algorithm {algorithm}.")
        return
    if message_type == DIGEST:
        if algorithm in ("ED25519_SHA_512", "ML_DSA_SHAKE_256"):
            raise ValidationError(
                f"MessageType DIGEST is not valid for signing algorithm {algorithm}."
            )
        if len(message) != _digest_size(algorithm):
            raise ValidationError(f"Digest is invalid length for algorithm {algorithm}.")
        return
    if algorithm == "ED25519_PH_SHA_512":  # HashEdDSA: AWS takes only the digest
        raise ValidationError(f"MessageType RAW is not valid for signing algorithm {algorithm}.")


def _rsa_padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm.startswith("RSASSA_PSS"):
        # AWS: MGF1 with the same hash, salt as long as the digest.
        return padding.PSS(
            mgf=padding.MGF1(_hash_of(algorithm)), salt_length=_digest_size(algorithm)
        )
    return padding.PKCS1v15()


def _prehashed_or_hash(algorithm: str, message_type: str) -> Any:
    return Prehashed(_hash_of(algorithm)) if message_type == DIGEST else _hash_of(algorithm)


def sign(private_key: Any, algorithm: str, message_type: str, message: bytes) -> bytes:
    """Sign as AWS does; the caller ran check_signing_request first."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(
            message, _rsa_padding(algorithm), _prehashed_or_hash(algorithm, message_type)
        )
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(message, ec.ECDSA(_prehashed_or_hash(algorithm, message_type)))
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        if algorithm == "ED25519_PH_SHA_512":
            return _ed25519ph_sign(private_key, message)
        return private_key.sign(message)
    if isinstance(
        private_key, mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
    ):
        if message_type == EXTERNAL_MU:
            return cast(bytes, private_key.sign_mu(message))
        return cast(bytes, private_key.sign(message))
    raise InvalidKeyUsageError(f"Algorithm {algorithm} cannot sign with this key.")


def verify(
    public_key: Any, algorithm: str, message_type: str, message: bytes, signature: bytes
) -> bool:
    """True when ``signature`` is valid; never raises for a bad signature."""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature,
                message,
                _rsa_padding(algorithm),
                _prehashed_or_hash(algorithm, message_type),
            )
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(
                signature, message, ec.ECDSA(_prehashed_or_hash(algorithm, message_type))
            )
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            if algorithm == "ED25519_PH_SHA_512":
                return _ed25519ph_verify(public_key, message, signature)
            public_key.verify(signature, message)
        elif message_type == EXTERNAL_MU:
            public_key.verify_mu(signature, message)
        else:
            public_key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class _GivenSha512(PycryptodomeSha512.SHA512Hash):  # type: ignore[misc]
    """A SHA-512 'hash object' carrying a digest the caller already has (MessageType
    DIGEST): PyCryptodome signs HashEdDSA over ``digest()`` and reads nothing else."""

    def __init__(self, digest: bytes) -> None:
        self._given = digest

    def digest(self) -> bytes:
        return self._given


def _ed25519ph_sign(private_key: ed25519.Ed25519PrivateKey, digest: bytes) -> bytes:
    """Ed25519ph (RFC 8032 HashEdDSA) over a SHA-512 digest. The cryptography library
    offers only PureEdDSA; PyCryptodome's Ed25519 does HashEdDSA."""
    key = eddsa.import_private_key(private_key.private_bytes_raw())
    return cast(bytes, eddsa.new(key, "rfc8032").sign(_GivenSha512(digest)))


def _ed25519ph_verify(
    public_key: ed25519.Ed25519PublicKey, digest: bytes, signature: bytes
) -> bool:
    key = eddsa.import_public_key(public_key.public_bytes_raw())
    try:
        eddsa.new(key, "rfc8032").verify(_GivenSha512(digest), signature)
    except ValueError:
        return False
    return True


# --- encryption with RSA keys ------------------------------------------------------------
def max_rsa_plaintext(key_spec: str, algorithm: str) -> int:
    return _RSA_BITS[key_spec] // 8 - 2 * _OAEP_HASH_BYTES[algorithm] - 2


def check_rsa_encryption(key_spec: str, algorithm: str | None, plaintext: bytes | None) -> str:
    """The algorithm to use, or AWS's error; plaintext (Encrypt only) within AWS's limit."""
    chosen = algorithm or SYMMETRIC_DEFAULT
    if chosen not in SUPPORTED_SPECS[key_spec].encryption_algorithms:
        raise InvalidKeyUsageError(f"Algorithm {chosen} is incompatible with key spec {key_spec}.")
    if plaintext is not None and len(plaintext) > max_rsa_plaintext(key_spec, chosen):
        raise ValidationError(
            f"Algorithm {chosen} and key spec {key_spec} cannot encrypt data larger than "
            f"{max_rsa_plaintext(key_spec, chosen)} bytes."
        )
    return chosen


def _oaep(algorithm: str) -> padding.OAEP:
    digest = _hash_of(algorithm)
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


def rsa_encrypt(public_key: rsa.RSAPublicKey, algorithm: str, plaintext: bytes) -> bytes:
    """Plain RSAES-OAEP (MGF1 with the same hash), as AWS: no header, no context."""
    return public_key.encrypt(plaintext, _oaep(algorithm))


def check_rsa_ciphertext(key_spec: str, ciphertext: bytes) -> None:
    """An RSAES-OAEP ciphertext is exactly as long as the key's modulus: any other length
    can never decrypt (checked from the spec alone, so a dry run refuses it too)."""
    if len(ciphertext) != _RSA_BITS[key_spec] // 8:
        raise InvalidCiphertextError()


def rsa_decrypt(private_key: rsa.RSAPrivateKey, algorithm: str, ciphertext: bytes) -> bytes:
    try:
        return private_key.decrypt(ciphertext, _oaep(algorithm))
    except ValueError:
        raise InvalidCiphertextError() from None


# --- MACs ----------------------------------------------------------------------------------
def check_mac_algorithm(key_spec: str, algorithm: str) -> None:
    if algorithm not in SUPPORTED_SPECS[key_spec].mac_algorithms:
        raise InvalidKeyUsageError(
            f"Algorithm {algorithm} is incompatible with key spec {key_spec}."
        )


def mac(key: bytes, algorithm: str, message: bytes) -> bytes:
    """HMAC (RFC 2104) with the algorithm's SHA-2 hash."""
    return hmac.new(key, message, "sha" + algorithm.rsplit("_", 1)[-1]).digest()


def mac_matches(key: bytes, algorithm: str, message: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, algorithm, message), tag)


# --- key agreement and encapsulation ------------------------------------------------------
def peer_public_key(key_spec: str, peer_public_key: bytes) -> ec.EllipticCurvePublicKey:
    """The peer's DER public key, on the curve of ``key_spec`` (read from the spec, not
    from the key's material: a dry run checks it too)."""
    try:
        peer = serialization.load_der_public_key(peer_public_key)
    except (ValueError, UnsupportedAlgorithm):
        # AWS answers a malformed PublicKey with a ValidationException and no text (recorded).
        raise ValidationError() from None
    curve = _CURVES.get(key_spec)
    if (
        not isinstance(peer, ec.EllipticCurvePublicKey)
        or curve is None
        or peer.curve.name != curve.name
    ):
        raise InvalidKeyUsageError(
            "The public key's key spec is not compatible with the key agreement key's key spec."
        )
    return peer


def derive_shared_secret(
    private_key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey
) -> bytes:
    """ECDH (the cofactor is 1 on NIST curves): the raw shared secret, the x coordinate."""
    return private_key.exchange(ec.ECDH(), peer)


@dataclass(frozen=True)
class Encapsulated:
    shared_secret: bytes
    ciphertext: bytes


def encapsulate(public_key: Any) -> Encapsulated:
    """ML-KEM (FIPS 203) encapsulation to the key's public half."""
    shared_secret, ciphertext = public_key.encapsulate()
    return Encapsulated(shared_secret, ciphertext)


# FIPS 203, table 3: the ciphertext size of each parameter set.
_ML_KEM_CIPHERTEXT_BYTES = {"ML_KEM_768": 1088, "ML_KEM_1024": 1568}


def check_kem_ciphertext(key_spec: str, ciphertext: bytes) -> None:
    """A ciphertext of another size than the parameter set's is InvalidCiphertext (from the
    spec alone, so a dry run refuses it too)."""
    if len(ciphertext) != _ML_KEM_CIPHERTEXT_BYTES.get(key_spec, -1):
        raise InvalidCiphertextError()


def decapsulate(private_key: Any, ciphertext: bytes) -> bytes:
    """ML-KEM decapsulation. A ciphertext of the wrong size is InvalidCiphertext; a forged
    one of the right size yields an unrelated secret (FIPS 203 implicit rejection)."""
    try:
        return cast(bytes, private_key.decapsulate(ciphertext))
    except ValueError:
        raise InvalidCiphertextError() from None


def public_key_of(private_key: PrivateKeyTypes) -> PublicKeyTypes:
    return private_key.public_key()
