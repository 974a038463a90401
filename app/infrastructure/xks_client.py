"""KeyLedger as a client of an XKS proxy (the XKS Proxy API v1), for its EXTERNAL_KEY_STORE
custom key stores: GetHealthStatus, GetKeyMetadata, Encrypt and Decrypt, SigV4-signed
(service ``kms-xks-proxy``) with the key store's proxy credential, with the
``requestMetadata`` AWS KMS sends, asynchronously (httpx.AsyncClient: the event loop never
waits on a proxy), over a bounded pool, within AWS's 250 ms (configurable).

Every failure is one ``XksProxyError``: the proxy's errorName, or a transport failure
(``Unreachable``, ``Timeout``, ``MalformedResponse``), and how AWS KMS surfaces it to its own
callers by operation family (domain.xks.SURFACED): ``kms_error(kms_operation)``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from app.infrastructure.sigv4_signing import sign
from domain import xks

KEY_STORE_OPERATIONS = frozenset(
    {"CreateCustomKeyStore", "UpdateCustomKeyStore", "ConnectCustomKeyStore"}
)
MAX_RESPONSE = 64 * 1024


class XksProxyError(Exception):
    """A proxy call that failed: ``failure`` is the proxy's errorName or a transport
    failure (domain.xks.UNREACHABLE, TIMED_OUT, MALFORMED_RESPONSE)."""

    def __init__(self, failure: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(f"{failure}: {detail}" if detail else failure)
        self.failure = failure
        self.detail = detail  # the proxy's errorMessage: logged, never shown to KMS callers
        self.status = status

    def kms_error(self, kms_operation: str) -> tuple[str, str]:
        """(KMS error code, message) as AWS KMS answers ``kms_operation`` with this failure."""
        surfaced = xks.surfaced(self.failure)
        if kms_operation in KEY_STORE_OPERATIONS:
            return surfaced.key_store, surfaced.message
        if kms_operation == "CreateKey":
            return surfaced.create_key, surfaced.message
        return surfaced.crypto, surfaced.message


@dataclass(frozen=True)
class XksCredential:
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a repr, a log or an error


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


def check_endpoint(endpoint: str) -> str:
    """The proxy's base URL: HTTPS, or plain HTTP to a loopback address (tests)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return endpoint.rstrip("/")
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return endpoint.rstrip("/")
    raise ValueError("the XKS proxy endpoint must be https:// (or http:// to loopback)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class XksClient:
    """One external key store's proxy: its endpoint, URI path, credential and Region."""

    def __init__(
        self,
        endpoint: str,
        uri_path: str,
        credential: XksCredential,
        region: str,
        *,
        timeout: float = 0.25,
        max_connections: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not xks.URI_PATH.fullmatch(uri_path) or len(uri_path) > 128:
            raise ValueError("the XKS proxy URI path is [/<prefix>]/kms/xks/v1")
        self.base = check_endpoint(endpoint)
        self.uri_path = uri_path
        self.credential = credential
        self.region = region
        self.timeout = timeout
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=limits,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> XksClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # ==== the four operations ===============================================================
    async def health(self, kms_operation: str, kms_request_id: str) -> XksHealth:
        metadata = {"kmsRequestId": kms_request_id, "kmsOperation": kms_operation}
        answer = await self._post("/health", {"requestMetadata": metadata})
        try:
            fleet = tuple(
                {"id": str(e["id"]), "model": str(e["model"]), "healthStatus": e["healthStatus"]}
                for e in answer["ekmFleetDetails"]
            )
            size = answer["xksProxyFleetSize"]
            health = XksHealth(
                size,
                str(answer["xksProxyVendor"]),
                str(answer["xksProxyModel"]),
                str(answer["ekmVendor"]),
                fleet,
            )
        except (KeyError, TypeError) as error:
            raise _malformed("health") from error
        if not isinstance(size, int) or size < 1 or not 1 <= len(fleet) <= 10:
            raise _malformed("health")
        return health

    async def get_key_metadata(
        self, external_key_id: str, metadata: RequestMetadata
    ) -> XksKeyMetadata:
        answer = await self._post(
            self._key_path(external_key_id, "metadata"), {"requestMetadata": metadata.document()}
        )
        spec, usage, status = (answer.get(k) for k in ("keySpec", "keyUsage", "keyStatus"))
        if (
            not isinstance(spec, str)
            or not isinstance(usage, list)
            or not all(isinstance(u, str) for u in usage)
            or len(usage) > 10
            or status not in ("ENABLED", "DISABLED")
        ):
            raise _malformed("metadata")
        return XksKeyMetadata(spec, tuple(usage), status)

    async def encrypt(
        self,
        external_key_id: str,
        metadata: RequestMetadata,
        plaintext: bytes,
        aad: bytes | None = None,
        *,
        integrity: bool = True,
    ) -> XksCiphertext:
        """Encrypt; with ``integrity`` (as AWS KMS always asks) the answer's CDIV is
        checked against its members and the AAD."""
        request: dict[str, Any] = {
            "requestMetadata": metadata.document(),
            "plaintext": xks.b64(plaintext),
            "encryptionAlgorithm": xks.AES_GCM,
        }
        if aad is not None:
            request["additionalAuthenticatedData"] = xks.b64(aad)
        if integrity:
            request["ciphertextDataIntegrityValueAlgorithm"] = xks.SHA_256
        answer = await self._post(self._key_path(external_key_id, "encrypt"), request)
        try:
            result = XksCiphertext(
                ciphertext=_decoded(answer, "ciphertext", xks.MAX_DATA),
                initialization_vector=_decoded(answer, "initializationVector", 16),
                authentication_tag=_decoded(answer, "authenticationTag", 16),
                ciphertext_metadata=_decoded(answer, "ciphertextMetadata", 20)
                if answer.get("ciphertextMetadata") is not None
                else None,
            )
        except ValueError as error:
            raise _malformed("encrypt") from error
        if (
            len(result.ciphertext) != len(plaintext)
            or len(result.initialization_vector) not in (12, 16)
            or len(result.authentication_tag) != xks.TAG_BYTES
        ):
            raise _malformed("encrypt")
        if integrity:
            expected = xks.integrity_value(
                aad,
                result.ciphertext_metadata,
                result.initialization_vector,
                result.ciphertext,
                result.authentication_tag,
            )
            try:
                given = _decoded(answer, "ciphertextDataIntegrityValue", 32)
            except ValueError as error:
                raise _malformed("encrypt") from error
            if not hmac.compare_digest(given, expected):
                raise XksProxyError(xks.MALFORMED_RESPONSE, "the integrity value does not match")
        return result

    async def decrypt(
        self,
        external_key_id: str,
        metadata: RequestMetadata,
        ciphertext: XksCiphertext,
        aad: bytes | None = None,
    ) -> bytes:
        request: dict[str, Any] = {
            "requestMetadata": metadata.document(),
            "ciphertext": xks.b64(ciphertext.ciphertext),
            "encryptionAlgorithm": xks.AES_GCM,
            "initializationVector": xks.b64(ciphertext.initialization_vector),
            "authenticationTag": xks.b64(ciphertext.authentication_tag),
        }
        if ciphertext.ciphertext_metadata is not None:
            request["ciphertextMetadata"] = xks.b64(ciphertext.ciphertext_metadata)
        if aad is not None:
            request["additionalAuthenticatedData"] = xks.b64(aad)
        answer = await self._post(self._key_path(external_key_id, "decrypt"), request)
        try:
            plaintext = _decoded(answer, "plaintext", xks.MAX_DATA)
        except ValueError as error:
            raise _malformed("decrypt") from error
        if len(plaintext) != len(ciphertext.ciphertext):
            raise _malformed("decrypt")
        return plaintext

    # ==== one call ==========================================================================
    def _key_path(self, external_key_id: str, operation: str) -> str:
        if not xks.is_external_key_id(external_key_id):
            raise ValueError("externalKeyId must be 1 to 128 of [A-Za-z0-9._-]")
        return f"/keys/{external_key_id}/{operation}"

    async def _post(self, route: str, document: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(document)
        url = f"{self.base}{self.uri_path}{route}"
        parts = urlsplit(url)
        headers = sign(
            method="POST",
            host=parts.netloc,
            path=parts.path,
            body=body,
            access_key_id=self.credential.access_key_id,
            secret_access_key=self.credential.secret_access_key,
            region=self.region,
            service=xks.SIGNING_SERVICE,
            now=datetime.now(UTC),
        )
        headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(self.timeout):  # the whole call, not each phase
                response = await self._http.post(url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            raise XksProxyError(xks.TIMED_OUT) from None
        except httpx.HTTPError as error:
            raise XksProxyError(xks.UNREACHABLE, type(error).__name__) from None
        return _answer(response)


def _answer(response: httpx.Response) -> dict[str, Any]:
    content = response.content
    if len(content) > MAX_RESPONSE:
        raise XksProxyError(xks.MALFORMED_RESPONSE, "answer too large", response.status_code)
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise XksProxyError(xks.MALFORMED_RESPONSE, "not a JSON object", response.status_code)
    if response.status_code != 200:
        name = document.get("errorName")
        message = document.get("errorMessage")
        raise XksProxyError(
            name if isinstance(name, str) and name in xks.SURFACED else xks.MALFORMED_RESPONSE,
            message[:512] if isinstance(message, str) else "",
            response.status_code,
        )
    return document


def _decoded(answer: dict[str, Any], member: str, limit: int) -> bytes:
    try:
        return xks.b64decode(answer.get(member), member, limit=limit)
    except Exception as error:  # ValidationError: the proxy's answer, not our request
        raise ValueError(member) from error


def _malformed(operation: str) -> XksProxyError:
    return XksProxyError(xks.MALFORMED_RESPONSE, f"malformed {operation} answer")
