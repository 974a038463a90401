"""KeyLedger as a client of an XKS proxy (the XKS Proxy API v1), for its EXTERNAL_KEY_STORE
custom key stores: GetHealthStatus, GetKeyMetadata, Encrypt and Decrypt, SigV4-signed
(service ``kms-xks-proxy``) with the key store's proxy credential, with the
``requestMetadata`` AWS KMS sends, asynchronously (httpx.AsyncClient: the event loop never
waits on a proxy), over a bounded pool, within AWS's 250 ms (configurable).

Every failure is one ``XksProxyError`` (domain.xks): the proxy's errorName, or a transport
failure (``Unreachable``, ``Timeout``, ``TlsFailure``, ``MalformedResponse``), and how AWS
KMS surfaces it to its own callers by operation family (domain.xks.SURFACED):
``kms_error(kms_operation)``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import ssl
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from app.infrastructure.sigv4_signing import sign
from app.ports import XksProxyAddress
from domain import xks
from domain.xks import (
    RequestMetadata,
    XksCiphertext,
    XksHealth,
    XksKeyMetadata,
    XksProxyError,
)

__all__ = [
    "RequestMetadata",
    "XksCiphertext",
    "XksClient",
    "XksCredential",
    "XksHealth",
    "XksKeyMetadata",
    "XksProxyError",
    "XksProxyPool",
    "check_endpoint",
]

log = logging.getLogger("keyledger.xks_client")
T = TypeVar("T")

MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True)
class XksCredential:
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a repr, a log or an error


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
            failure = xks.TLS_FAILURE if _is_tls_failure(error) else xks.UNREACHABLE
            raise XksProxyError(failure, type(error).__name__) from None
        except httpx.InvalidURL:  # a name AWS's pattern allows, no URL allows (999.1.1.1)
            raise XksProxyError(xks.UNREACHABLE, "InvalidURL") from None
        return _answer(response)


def _is_tls_failure(error: BaseException) -> bool:
    """Whether the connection failed in its TLS handshake (a certificate refused, no
    common protocol version): httpx keeps the ssl error as a cause or context."""
    seen: BaseException | None = error
    for _ in range(8):  # a short chain; never loop on a cyclic one
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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


# ==== the clients of this process's external key stores ====================================
MAX_CLIENTS = 64  # clients kept at once (AWS: 10 stores per account and Region)
CLOSE_SECONDS = 5.0


class XksProxyPool:
    """The XksProxies port: one XksClient per external key store, for its latest address
    (a store's client is replaced when its endpoint, path or credential change), at most
    ``max_clients`` (the least recently used is closed first), made when first needed.
    ``check_health`` asks a proxy at settings not yet a store's with a client made for that
    one call, and leaves the store's own client alone.

    The clients run on an event loop of the pool's own, in a daemon thread started by the
    first call: any event loop may call the pool (the server's, a test's), no client is
    ever used on a loop it was not made on, and ``close`` closes every connection whatever
    became of the loop that served the calls. A call costs one hop between threads, paid
    only by keys in external key stores.

    ``endpoints`` maps a store's XksProxyUriEndpoint (always ``https://host``, AWS's form)
    to the base URL this process reaches it at (KEYLEDGER_XKS_PROXY_ENDPOINTS): another
    HTTPS URL (a port, a name inside the network), or plain HTTP to a loopback address.
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_connections: int,
        endpoints: dict[str, str] | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.timeout = timeout
        self.max_connections = max_connections
        self.endpoints = dict(endpoints or {})
        self.max_clients = max_clients
        # Touched only on the pool's loop: no lock.
        self._clients: OrderedDict[XksProxyAddress, XksClient] = OrderedDict()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # ==== the XksProxies port ================================================================
    async def health(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        kms_operation: str,
        kms_request_id: str,
    ) -> XksHealth:
        return await self._call(proxy, secret, lambda c: c.health(kms_operation, kms_request_id))

    async def check_health(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        kms_operation: str,
        kms_request_id: str,
    ) -> XksHealth:
        return await self._on_pool_loop(
            self._checked_health(proxy, secret, kms_operation, kms_request_id)
        )

    async def get_key_metadata(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
    ) -> XksKeyMetadata:
        return await self._call(
            proxy, secret, lambda c: c.get_key_metadata(external_key_id, metadata)
        )

    async def encrypt(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
        plaintext: bytes,
        aad: bytes,
    ) -> XksCiphertext:
        return await self._call(
            proxy, secret, lambda c: c.encrypt(external_key_id, metadata, plaintext, aad)
        )

    async def decrypt(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
        ciphertext: XksCiphertext,
        aad: bytes,
    ) -> bytes:
        return await self._call(
            proxy, secret, lambda c: c.decrypt(external_key_id, metadata, ciphertext, aad)
        )

    async def forget(self, store: uuid.UUID) -> None:
        loop = self._loop
        if loop is None:  # no client made yet, or closed
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._forget(store), loop))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(CLOSE_SECONDS)
        except Exception as error:  # stopping: say so, go on
            log.warning("XKS clients not closed: %s", type(error).__name__)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_SECONDS)
        if not thread.is_alive():
            loop.close()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # ==== on the pool's loop ================================================================
    async def _call(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        use: Callable[[XksClient], Awaitable[T]],
    ) -> T:
        return await self._on_pool_loop(self._on_loop(proxy, secret, use))

    async def _on_pool_loop(self, on_loop: Coroutine[Any, Any, T]) -> T:
        try:
            future = asyncio.run_coroutine_threadsafe(on_loop, self._pool_loop())
        except XksProxyError:
            on_loop.close()
            raise
        return await asyncio.wrap_future(future)

    async def _on_loop(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        use: Callable[[XksClient], Awaitable[T]],
    ) -> T:
        client = self._clients.get(proxy)
        if client is None:
            client = await self._new_client(proxy, secret)
        else:
            self._clients.move_to_end(proxy)
        return await use(client)

    async def _checked_health(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        kms_operation: str,
        kms_request_id: str,
    ) -> XksHealth:
        client = await self._make_client(proxy, secret, max_connections=1)
        try:
            return await client.health(kms_operation, kms_request_id)
        finally:
            await client.aclose()

    async def _make_client(
        self, proxy: XksProxyAddress, secret: Callable[[], str], *, max_connections: int
    ) -> XksClient:
        """A client of ``proxy`` where this process reaches it; a failure to make one is
        the XksProxyError a call through it would be."""
        base = self.endpoints.get(proxy.endpoint, proxy.endpoint)
        try:
            check_endpoint(base)
        except ValueError:  # not HTTPS: no TLS to speak of
            raise XksProxyError(xks.TLS_FAILURE, "the endpoint is not https://") from None
        if not xks.URI_PATH.fullmatch(proxy.uri_path):
            raise XksProxyError("InvalidUriPathException", "not a v1 XKS proxy URI path")
        credential = XksCredential(proxy.access_key_id, await asyncio.to_thread(secret))
        return XksClient(
            base,
            proxy.uri_path,
            credential,
            proxy.region,
            timeout=self.timeout,
            max_connections=max_connections,
        )

    async def _new_client(self, proxy: XksProxyAddress, secret: Callable[[], str]) -> XksClient:
        client = await self._make_client(proxy, secret, max_connections=self.max_connections)
        found = self._clients.get(proxy)  # made meanwhile by a concurrent call
        if found is not None:
            await client.aclose()
            return found
        await self._forget(proxy.store)  # a store's previous address (it was updated)
        self._clients[proxy] = client
        while len(self._clients) > self.max_clients:
            _, evicted = self._clients.popitem(last=False)
            await evicted.aclose()
        return client

    async def _forget(self, store: uuid.UUID) -> None:
        for address in [a for a in self._clients if a.store == store]:
            await self._clients.pop(address).aclose()

    async def _close_all(self) -> None:
        while self._clients:
            _, client = self._clients.popitem()
            await client.aclose()

    def _pool_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise XksProxyError(xks.UNREACHABLE, "the service is stopping")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="keyledger-xks-clients", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop
