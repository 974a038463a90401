"""The XKS Proxy API v1 at ``POST {uri_path}/keys/{externalKeyId}/metadata|encrypt|decrypt``
and ``POST {uri_path}/health``, for each URI path served: a lean ASGI handler, mounted by the
dispatcher (app.entrypoints.server.asgi) when ``KEYLEDGER_XKS_CREDENTIALS`` is set.

It authenticates (SigV4, service ``kms-xks-proxy``, against the XKS credentials), parses and
validates the body, calls one use case (app.usecases.external_keys) as the configured
principal, and shapes the answer. Every authenticated call is recorded (app.usecases.auditing,
event source ``xks-proxy.keyledger.amazonaws.com``, the proxy's operation names); it decides
nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any

import orjson

from app.auth.credentials import Caller
from app.auth.sigv4 import IncomingRequest, check_region, verify_request
from app.entrypoints.server.request_limits import read_body
from app.entrypoints.xks.errors import XksMethodError, XksRouteError, xks_error
from app.infrastructure.postgres.database import bounded_waits
from app.support.request_ids import new_request_id
from app.usecases.auditing import Auditor
from app.usecases.external_keys import ExternalCiphertext, ExternalKeyOperations
from domain import xks
from domain.audit import XKS_SOURCE
from domain.errors import AuthenticationError, RequestTooLargeError, SealedError, ValidationError

log = logging.getLogger("keyledger.xks")

MAX_BODY = 64 * 1024  # 4300 bytes of data and 8192 of AAD, base64, with ARNs of 2048
OPERATIONS = {"metadata": "GetKeyMetadata", "encrypt": "Encrypt", "decrypt": "Decrypt"}
HEALTH = "GetHealthStatus"
# requestMetadata members kept in the call's record (all of them, text only).
METADATA_MEMBERS = (
    "awsPrincipalArn",
    "awsSourceVpc",
    "awsSourceVpce",
    "kmsKeyArn",
    "kmsOperation",
    "kmsRequestId",
    "kmsViaService",
)
REQUIRED_METADATA = {
    "GetKeyMetadata": ("awsPrincipalArn", "kmsOperation", "kmsRequestId"),
    "Encrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"),
    "Decrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"),
    HEALTH: ("kmsOperation", "kmsRequestId"),
}


@dataclass(frozen=True)
class XksConfig:
    uri_paths: tuple[str, ...]  # [/<prefix>]/kms/xks/v1, a prefix segment "*" is any one
    secrets: Mapping[str, str]  # access key id -> secret access key
    principal_arn: str
    regions: Collection[str]
    clock: Callable[[], datetime]
    sealed: Callable[[], bool]
    available: Callable[[], bool]  # the writer reaches the database
    database_wait_seconds: float


class XksHandler:
    def __init__(
        self, external: ExternalKeyOperations, auditor: Auditor, config: XksConfig
    ) -> None:
        self.external = external
        self.auditor = auditor
        self.config = config
        self.account_id = config.principal_arn.split(":")[4]
        self.paths = xks.served_paths(config.uri_paths)

    def serves(self, path: str) -> bool:
        return self.paths.match(path) is not None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request_id = new_request_id()
        try:
            body = await read_body(scope, receive, MAX_BODY)
        except RequestTooLargeError:
            await _answer_error(send, ValidationError(f"The body exceeds {MAX_BODY} bytes."))
            return
        if body is None:  # the client left
            return
        try:
            operation, external_key_id = self._route(scope)
            if self.config.sealed():
                raise SealedError()
            with bounded_waits(self.config.database_wait_seconds):
                answer = await self._call(scope, body, operation, external_key_id, request_id)
        except Exception as error:  # every failure in the spec's shape, never a bare 500
            await _answer_error(send, error, request_id)
            return
        await _respond(send, 200, orjson.dumps(answer), request_id)

    def _route(self, scope: dict[str, Any]) -> tuple[str, str]:
        """(operation, externalKeyId) a request's path names."""
        path = str(scope["path"])
        served = self.paths.match(path)
        assert served is not None  # the dispatcher asked serves() first
        rest = path[served.end() :]
        parts = rest.split("/")
        if rest == "/health":
            operation, key_id = HEALTH, ""
        elif len(parts) == 4 and parts[1] == "keys" and parts[3] in OPERATIONS:
            operation, key_id = OPERATIONS[parts[3]], parts[2]
            if not xks.is_external_key_id(key_id):
                raise ValidationError("externalKeyId must be 1 to 128 of [A-Za-z0-9._-]")
        else:
            raise XksRouteError("The URI path names no XKS Proxy API operation.")
        if scope["method"] != "POST":
            raise XksMethodError()
        return operation, key_id

    async def _call(
        self,
        scope: dict[str, Any],
        body: bytes,
        operation: str,
        external_key_id: str,
        request_id: str,
    ) -> dict[str, Any]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        async with self._audit(operation, scope, headers, request_id) as audit:
            audit.caller = self._authenticate(scope, headers, body, request_id, audit)
            document = _document(body)
            logged = _request_metadata(document, operation)
            audit.parameters = (
                {"externalKeyId": external_key_id, **logged} if (external_key_id) else logged
            )
            return await self._operate(audit.caller, operation, external_key_id, document, logged)
        raise AssertionError("unreachable")  # pragma: no cover (the audit context re-raises)

    async def _operate(
        self,
        caller: Caller,
        operation: str,
        key_id: str,
        document: dict[str, Any],
        logged: dict[str, Any],
    ) -> dict[str, Any]:
        if operation == HEALTH:
            return self._health()
        if operation == "GetKeyMetadata":
            found = await self.external.metadata(caller, key_id)
            return {
                "keySpec": found.key_spec,
                "keyUsage": list(found.key_usage),
                "keyStatus": found.key_status,
            }
        _check_algorithm(document)
        aad = _optional(document, "additionalAuthenticatedData", xks.MAX_AAD)
        if operation == "Encrypt":
            integrity = document.get("ciphertextDataIntegrityValueAlgorithm")
            if integrity not in (None, xks.SHA_256):
                raise ValidationError("ciphertextDataIntegrityValueAlgorithm must be SHA_256")
            plaintext = _member(document, "plaintext", xks.MAX_DATA)
            sealed = await self.external.encrypt(
                caller, key_id, plaintext, aad, integrity=integrity is not None, logged=logged
            )
            answer = {
                "ciphertext": xks.b64(sealed.ciphertext),
                "ciphertextMetadata": xks.b64(sealed.ciphertext_metadata),
                "initializationVector": xks.b64(sealed.iv),
                "authenticationTag": xks.b64(sealed.tag),
            }
            if sealed.integrity_value is not None:
                answer["ciphertextDataIntegrityValue"] = xks.b64(sealed.integrity_value)
            return answer
        given = ExternalCiphertext(
            ciphertext=_member(document, "ciphertext", xks.MAX_DATA),
            iv=_member(document, "initializationVector", 16),
            tag=_member(document, "authenticationTag", 16),
            ciphertext_metadata=_optional(
                document, "ciphertextMetadata", xks.MAX_CIPHERTEXT_METADATA
            )
            or b"",
            integrity_value=None,
        )
        plaintext = await self.external.decrypt(caller, key_id, given, aad, logged=logged)
        return {"plaintext": xks.b64(plaintext)}

    def _health(self) -> dict[str, Any]:
        status = "ACTIVE" if self.config.available() else "UNAVAILABLE"
        model = f"KeyLedger {_version()}"
        return {
            "xksProxyFleetSize": 1,
            "xksProxyVendor": "KeyLedger",
            "xksProxyModel": f"{model} XKS Proxy API",
            "ekmVendor": "KeyLedger",
            "ekmFleetDetails": [{"id": "keyledger", "model": model, "healthStatus": status}],
        }

    def _authenticate(
        self,
        scope: dict[str, Any],
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str,
        audit: Any,
    ) -> Caller:
        request = IncomingRequest(
            method=scope["method"],
            path=scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0] or "/",
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )
        client = scope.get("client") or ("", 0)
        claimed: Caller | None = None
        try:
            verified = verify_request(
                request,
                self._secret,
                now=self.config.clock(),
                service=xks.SIGNING_SERVICE,
            )
            check_region(verified.region, self.config.regions)
        except AuthenticationError as error:
            key_id = _claimed_access_key(headers)
            if key_id in self.config.secrets:  # one of ours: recorded as its principal's
                claimed = self._caller(key_id, "", client[0], headers, request_id)
                audit.caller = claimed
            raise _authentication_failed(error) from None
        return self._caller(verified.access_key_id, verified.region, client[0], headers, request_id)

    def _secret(self, access_key_id: str) -> str | None:
        return self.config.secrets.get(access_key_id)

    def _caller(
        self,
        access_key_id: str,
        region: str,
        source_ip: str,
        headers: list[tuple[str, str]],
        request_id: str,
    ) -> Caller:
        return Caller(
            account_id=self.account_id,
            principal_arn=self.config.principal_arn,
            access_key_id=access_key_id,
            region=region,
            source_ip=source_ip,
            user_agent=next((v for k, v in headers if k.lower() == "user-agent"), "")[:256],
            request_id=request_id,
        )

    def _audit(
        self, name: str, scope: dict[str, Any], headers: list[tuple[str, str]], request_id: str
    ) -> Any:
        client = scope.get("client") or ("", 0)
        return self.auditor.call(
            name,
            event_source=XKS_SOURCE,
            request_id=request_id,
            headers=headers,
            source_ip=client[0],
        )


# ==== the request ===========================================================================
def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationError("The body is not a JSON object.") from None
    if not isinstance(document, dict):
        raise ValidationError("The body is not a JSON object.")
    return document


def _request_metadata(document: dict[str, Any], operation: str) -> dict[str, Any]:
    """The requestMetadata members, checked (text, bounded, no control characters; their
    values are otherwise opaque), as the call's record keeps them."""
    given = document.get("requestMetadata")
    if not isinstance(given, dict):
        raise ValidationError("requestMetadata is required.")
    kept: dict[str, str] = {}
    for name in METADATA_MEMBERS:
        value = given.get(name)
        if value is None:
            continue
        if (
            not isinstance(value, str)
            or len(value) > xks.MAX_METADATA_TEXT
            or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)
        ):
            raise ValidationError(f"requestMetadata.{name} must be text of at most 2048 characters")
        kept[name] = value
    missing = [name for name in REQUIRED_METADATA[operation] if name not in kept]
    if missing:
        raise ValidationError(f"requestMetadata.{missing[0]} is required.")
    return {"requestMetadata": kept}


def _check_algorithm(document: dict[str, Any]) -> None:
    if document.get("encryptionAlgorithm") != xks.AES_GCM:
        raise ValidationError("encryptionAlgorithm must be AES_GCM")


def _member(document: dict[str, Any], member: str, limit: int) -> bytes:
    return xks.b64decode(document.get(member), member, limit=limit)


def _optional(document: dict[str, Any], member: str, limit: int) -> bytes | None:
    value = document.get(member)
    return None if value is None else xks.b64decode(value, member, limit=limit)


def _claimed_access_key(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "authorization":
            credential = value.partition("Credential=")[2]
            return credential.split("/", 1)[0]
    return ""


def _authentication_failed(error: AuthenticationError) -> AuthenticationError:
    """The refusal, without echoing the request (its date, its header)."""
    return type(error)("The request signature could not be verified (SigV4, kms-xks-proxy).")


def _version() -> str:
    try:
        return metadata.version("keyledger")
    except metadata.PackageNotFoundError:
        return "dev"


# ==== the answer ============================================================================
async def _answer_error(send: Any, error: Exception, request_id: str = "") -> None:
    status, name, message = xks_error(error)
    if status == 500:
        log.error("XKS request %s failed: %s", request_id, type(error).__name__)
    headers = [(b"allow", b"POST")] if status == 405 else []
    body = orjson.dumps({"errorName": name, "errorMessage": message})
    await _respond(send, status, body, request_id, headers)


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
