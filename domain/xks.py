"""The XKS Proxy API v1 (github.com/aws/aws-kms-xksproxy-api-spec): its pure parts.

The AES-GCM additional data the spec prescribes, the Ciphertext Data Integrity Value, the
ciphertext metadata KeyLedger writes (the material version), the limits of its members,
the values a client exchanges with a proxy (request metadata, key metadata, ciphertexts,
health) and its one failure type, and how AWS KMS surfaces each failure of a proxy to its
own callers: as an error of each KMS operation family, and as a ConnectionErrorCode. No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from domain.errors import (
    CustomKeyStoreInvalidStateError,
    DomainError,
    InvalidStateError,
    ValidationError,
    XksKeyInvalidConfigurationError,
    XksKeyNotFoundError,
    XksProxyIncorrectAuthenticationCredentialError,
    XksProxyInvalidConfigurationError,
    XksProxyInvalidResponseError,
    XksProxyUriUnreachableError,
)

SIGNING_SERVICE = "kms-xks-proxy"
DEFAULT_URI_PATH = "/kms/xks/v1"
AES_GCM = "AES_GCM"
SHA_256 = "SHA_256"
KEY_SPEC = "AES_256"
IV_BYTES = 12
TAG_BYTES = 16
MAX_AAD = 0xFFFF  # its length is two bytes in the AAD fed to GCM
MAX_CIPHERTEXT_METADATA = 20
MAX_DATA = 8192  # plaintext or ciphertext bytes (the spec requires at least 4300)
MAX_METADATA_TEXT = 2048  # an ARN may be 2048 characters
EXTERNAL_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
URI_PATH = re.compile(r"(/[A-Za-z0-9_-]+)*/kms/xks/v1")
MAX_URI_PATH = 128  # AWS's XksProxyUriPath
# A path a proxy serves: a URI path whose prefix segments may be ``*``, any one segment.
SERVED_PATH = re.compile(r"(/([A-Za-z0-9_-]+|\*))*/kms/xks/v1")
_ANY_SEGMENT = "/[A-Za-z0-9_-]+"
# KeyLedger's ciphertext metadata: b"KL" and the key material's version (4 bytes, big-endian).
_METADATA_TAG = b"KL"


def gcm_aad(aad: bytes | None, ciphertext_metadata: bytes | None) -> bytes:
    """What GCM authenticates: len16be(aad) || aad || len8(ctMeta) || ctMeta (0 if absent)."""
    aad = aad or b""
    meta = ciphertext_metadata or b""
    if len(aad) > MAX_AAD or len(meta) > MAX_CIPHERTEXT_METADATA:
        raise ValidationError("additionalAuthenticatedData or ciphertextMetadata is too long")
    return len(aad).to_bytes(2, "big") + aad + len(meta).to_bytes(1, "big") + meta


def integrity_value(
    aad: bytes | None, ciphertext_metadata: bytes | None, iv: bytes, ciphertext: bytes, tag: bytes
) -> bytes:
    """The CDIV (Appendix C): SHA-256 over the decoded members, no lengths."""
    digest = hashlib.sha256()
    for part in (aad or b"", ciphertext_metadata or b"", iv, ciphertext, tag):
        digest.update(part)
    return digest.digest()


def material_metadata(version: int) -> bytes:
    return _METADATA_TAG + version.to_bytes(4, "big")


def material_version(ciphertext_metadata: bytes | None) -> int | None:
    """The material version KeyLedger wrote, or None when the metadata is not KeyLedger's."""
    meta = ciphertext_metadata or b""
    if len(meta) != 6 or not meta.startswith(_METADATA_TAG):
        return None
    return int.from_bytes(meta[2:], "big")


def b64decode(value: object, member: str, *, limit: int) -> bytes:
    """A base64 member, strictly decoded and bounded; ValidationError otherwise."""
    if not isinstance(value, str):
        raise ValidationError(f"{member} must be a base64 string")
    if len(value) > (limit + 2) // 3 * 4:
        raise ValidationError(f"{member} is longer than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{member} is not valid base64") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_external_key_id(text: str) -> bool:
    return EXTERNAL_KEY_ID.fullmatch(text) is not None


def served_paths(paths: Sequence[str]) -> re.Pattern[str]:
    """One pattern for the URI paths a proxy serves (each ``[/<prefix>]/kms/xks/v1``, a
    prefix segment ``*`` standing for any one segment: one proxy for several external key
    stores, each with a path of its own). It matches, at the start of a request's path,
    the served path it begins with (followed by ``/`` or nothing). ValueError for a path
    that is not one."""
    if not paths:
        raise ValueError("at least one XKS proxy URI path is served")
    alternatives = []
    for path in paths:
        if len(path) > MAX_URI_PATH or not SERVED_PATH.fullmatch(path):
            raise ValueError(f"{path!r} is not [/<prefix>]/kms/xks/v1 (at most 128 characters)")
        segments = path.split("/")[1:]
        alternatives.append(
            "".join(_ANY_SEGMENT if s == "*" else re.escape("/" + s) for s in segments)
        )
    return re.compile(f"(?:{'|'.join(alternatives)})(?=/|$)")


# ==== what a client and a proxy exchange ======================================================
@dataclass(frozen=True)
class RequestMetadata:
    """What AWS KMS tells the proxy about the KMS call behind a proxy call."""

    aws_principal_arn: str
    kms_operation: str
    kms_request_id: str
    kms_key_arn: str | None = None
    kms_via_service: str | None = None

    def document(self) -> dict[str, str]:
        members = {
            "awsPrincipalArn": self.aws_principal_arn,
            "kmsKeyArn": self.kms_key_arn,
            "kmsOperation": self.kms_operation,
            "kmsRequestId": self.kms_request_id,
            "kmsViaService": self.kms_via_service,
        }
        return {name: value for name, value in members.items() if value is not None}


@dataclass(frozen=True)
class XksKeyMetadata:
    key_spec: str
    key_usage: tuple[str, ...]
    key_status: str


@dataclass(frozen=True)
class XksCiphertext:
    """A proxy's Encrypt answer: what its Decrypt needs back."""

    ciphertext: bytes
    initialization_vector: bytes
    authentication_tag: bytes
    ciphertext_metadata: bytes | None = None


@dataclass(frozen=True)
class XksHealth:
    fleet_size: int
    proxy_vendor: str
    proxy_model: str
    ekm_vendor: str
    ekm_fleet: tuple[dict[str, str], ...]


class XksProxyError(Exception):
    """A proxy call that failed: ``failure`` is the proxy's errorName or a transport
    failure (UNREACHABLE, TIMED_OUT, TLS_FAILURE, MALFORMED_RESPONSE)."""

    def __init__(self, failure: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(f"{failure}: {detail}" if detail else failure)
        self.failure = failure
        self.detail = detail  # the proxy's errorMessage: logged, never shown to KMS callers
        self.status = status

    def kms_error(self, kms_operation: str) -> tuple[str, str]:
        """(KMS error code, message) as AWS KMS answers ``kms_operation`` with this failure."""
        found = surfaced(self.failure)
        if kms_operation in KEY_STORE_OPERATIONS:
            return found.key_store, found.message
        if kms_operation == "CreateKey":
            return found.create_key, found.message
        return found.crypto, found.message


KEY_STORE_OPERATIONS = frozenset(
    {"CreateCustomKeyStore", "UpdateCustomKeyStore", "ConnectCustomKeyStore"}
)


# ==== how AWS KMS surfaces a proxy's failures (the spec's "KMS Considerations" table) ========
@dataclass(frozen=True)
class Surfaced:
    """The KMS exception a failure becomes, by KMS operation family, and its message."""

    key_store: str  # Create/UpdateCustomKeyStore, ConnectCustomKeyStore
    create_key: str  # CreateKey
    message: str
    crypto: str = "KMSInvalidStateException"  # Encrypt, Decrypt, ReEncrypt, GenerateDataKey*
    # The store's ConnectionErrorCode when ConnectCustomKeyStore's GetHealthStatus fails so
    # (AWS's CustomKeyStoresListEntry: the codes of external key stores).
    connection: str = "XKS_PROXY_INVALID_RESPONSE"


_UNINTERPRETABLE = (
    "AWS KMS cannot interpret the response from the external key store proxy. If you see "
    "this error repeatedly, report it to your external key store proxy administrator."
)
_UNREACHABLE = (
    "AWS KMS cannot communicate with the external key store proxy. This might be a transient "
    "network issue. If you see this error repeatedly, verify that your external key store "
    "proxy is active and is connected to the network, and that its endpoint URI is correct "
    "in your external key store."
)
_STATE = "CustomKeyStoreInvalidStateException"
_INVALID_RESPONSE = "XksProxyInvalidResponseException"
_URI_UNREACHABLE = "XksProxyUriUnreachableException"
_NOT_REACHABLE, _TIMED_OUT = "XKS_PROXY_NOT_REACHABLE", "XKS_PROXY_TIMED_OUT"
MALFORMED_RESPONSE = "MalformedResponse"
UNREACHABLE = "Unreachable"
TIMED_OUT = "Timeout"
TLS_FAILURE = "TlsFailure"
SURFACED: dict[str, Surfaced] = {
    "ValidationException": Surfaced(_INVALID_RESPONSE, _STATE, _UNINTERPRETABLE),
    "InvalidStateException": Surfaced(
        _STATE,
        "XksKeyInvalidConfigurationException",
        "The external key associated with this KMS key in an external key store is not "
        "enabled in the external key manager. Enable the external key in the external key "
        "manager and retry the request.",
        connection=_NOT_REACHABLE,
    ),
    "InvalidCiphertextException": Surfaced(
        _STATE,
        _STATE,
        "The external key store proxy rejected the request because the specified ciphertext "
        "or encryption context is corrupted, missing, or otherwise invalid.",
    ),
    "InvalidKeyUsageException": Surfaced(
        _STATE,
        "XksKeyInvalidConfigurationException",
        "The external key associated with this KMS key in an external key store does not "
        "support the requested operation. Enable the operation on the key in your external "
        "key manager, and try the request again.",
    ),
    "AuthenticationFailedException": Surfaced(
        "XksProxyIncorrectAuthenticationCredentialException",
        _STATE,
        "The external key store proxy rejected the request because it could not "
        "authenticate AWS KMS. Verify the XKS proxy authentication credentials for your "
        "external key store and update if necessary.",
        connection="INVALID_CREDENTIALS",
    ),
    "AccessDeniedException": Surfaced(
        _STATE,
        "KMSInvalidStateException",
        "The external key store proxy denied access to the operation. Verify that the user "
        "and the external key are both authorized for this operation, and try the request "
        "again.",
        connection="XKS_PROXY_ACCESS_DENIED",
    ),
    "KeyNotFoundException": Surfaced(
        _STATE,
        "XksKeyNotFoundException",
        "The external key associated with this KMS key in an external key store was not "
        "found in its external key manager. If the external key ID associated with this KMS "
        "key is incorrect, create a new KMS key with the correct external key ID.",
    ),
    "InvalidUriPathException": Surfaced(
        "XksProxyInvalidConfigurationException",
        _STATE,
        "The external key store proxy rejected the request because of an invalid URI path. "
        "Verify the URI path for your external key store and update if necessary.",
        connection="XKS_PROXY_INVALID_CONFIGURATION",
    ),
    "UnsupportedOperationException": Surfaced(
        _STATE,
        # The spec's table names XksKeyInvalidResponseException, which KMS's API model does
        # not define; CreateKey's own error for an external key it cannot use is this one.
        "XksKeyInvalidConfigurationException",
        "The external key store proxy rejected the request because it does not support the "
        "requested operation. If you see this error repeatedly, report it to your external "
        "key store proxy administrator.",
    ),
    "DependencyTimeoutException": Surfaced(
        _URI_UNREACHABLE,
        _STATE,
        "The external key store proxy did not respond to the request in the time allotted. "
        "Retry the request. If you see this error repeatedly, report it to your external key "
        "store proxy administrator.",
        connection=_TIMED_OUT,
    ),
    "ThrottlingException": Surfaced(
        _URI_UNREACHABLE,
        _STATE,
        "The external key store proxy rejected the request due to a very high request rate. "
        "Reduce the frequency of your calls using KMS keys in this external key store.",
        connection=_NOT_REACHABLE,
    ),
    "InternalException": Surfaced(
        _INVALID_RESPONSE,
        _STATE,
        "The external key store proxy rejected the request because it cannot communicate "
        "with the external key manager. Verify that the external key store proxy "
        "configuration is correct and that the external key manager is available.",
        connection=_NOT_REACHABLE,
    ),
    UNREACHABLE: Surfaced(_URI_UNREACHABLE, _STATE, _UNREACHABLE, connection=_NOT_REACHABLE),
    TIMED_OUT: Surfaced(
        _URI_UNREACHABLE,
        _STATE,
        "AWS KMS rejected the request because the external key store proxy did not respond "
        "in time. Retry the request. If you see this error repeatedly, report it to your "
        "external key store proxy administrator.",
        connection=_TIMED_OUT,
    ),
    TLS_FAILURE: Surfaced(
        _URI_UNREACHABLE,
        _STATE,
        "AWS KMS cannot establish a TLS connection to the external key store proxy. Verify "
        "the TLS configuration, including its certificate.",
        connection="XKS_PROXY_INVALID_TLS_CONFIGURATION",
    ),
    MALFORMED_RESPONSE: Surfaced(_INVALID_RESPONSE, _STATE, _UNINTERPRETABLE),
}


def surfaced(failure: str) -> Surfaced:
    """How KMS surfaces ``failure`` (a proxy's errorName or one of the transport failures);
    an errorName the spec does not define reads as a malformed response."""
    return SURFACED.get(failure, SURFACED[MALFORMED_RESPONSE])


# The domain errors of the names above that Create/UpdateCustomKeyStore, CreateKey and the
# cryptographic operations answer (app.aws.errors gives them back their wire names).
_KMS_ERRORS: dict[str, type[DomainError]] = {
    "KMSInvalidStateException": InvalidStateError,
    "CustomKeyStoreInvalidStateException": CustomKeyStoreInvalidStateError,
    "XksKeyNotFoundException": XksKeyNotFoundError,
    "XksKeyInvalidConfigurationException": XksKeyInvalidConfigurationError,
    _URI_UNREACHABLE: XksProxyUriUnreachableError,
    "XksProxyIncorrectAuthenticationCredentialException": (
        XksProxyIncorrectAuthenticationCredentialError
    ),
    _INVALID_RESPONSE: XksProxyInvalidResponseError,
    "XksProxyInvalidConfigurationException": XksProxyInvalidConfigurationError,
}


def kms_failure(failure: str, kms_operation: str) -> DomainError:
    """The error AWS KMS answers ``kms_operation`` (Create/UpdateCustomKeyStore, CreateKey,
    or a cryptographic operation) with when its proxy call fails with ``failure``."""
    name, message = XksProxyError(failure).kms_error(kms_operation)
    return _KMS_ERRORS.get(name, InvalidStateError)(message)


def connection_error(failure: str) -> str:
    """The ConnectionErrorCode of a store whose GetHealthStatus failed with ``failure``."""
    return surfaced(failure).connection


def health_connection_error(health: XksHealth) -> str | None:
    """None when the proxy can serve; AWS: a proxy reporting every external key manager
    UNAVAILABLE fails the connection with XKS_PROXY_NOT_REACHABLE."""
    if any(member.get("healthStatus") != "UNAVAILABLE" for member in health.ekm_fleet):
        return None
    return _NOT_REACHABLE


def check_key_managers(health: XksHealth) -> None:
    """Create/UpdateCustomKeyStore: AWS refuses a proxy that reports every external key
    manager UNAVAILABLE (XksProxyUriUnreachableException)."""
    if health_connection_error(health) is not None:
        raise XksProxyUriUnreachableError(
            "The external key store proxy reports that all of its external key manager "
            "instances are unavailable. Verify that your external key manager instances are "
            "operating properly and can be reached by the external key store proxy."
        )


def check_external_key(external_key_id: str, metadata: XksKeyMetadata) -> None:
    """CreateKey: the external key must be an enabled AES-256 key that encrypts and
    decrypts (the spec's GetKeyMetadata considerations)."""
    usable = (
        metadata.key_spec == KEY_SPEC
        and {"ENCRYPT", "DECRYPT"} <= set(metadata.key_usage)
        and metadata.key_status == "ENABLED"
    )
    if not usable:
        # Never the proxy's own words: they are not the caller's to read.
        raise XksKeyInvalidConfigurationError(
            f"The external key {external_key_id} is not an enabled {KEY_SPEC} key that can"
            " encrypt and decrypt. It must be one for a KMS key in an external key store."
        )
