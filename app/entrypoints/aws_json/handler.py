"""The AWS KMS JSON 1.1 protocol at ``POST /``: a lean ASGI handler.

It authenticates (SigV4), parses and validates the body against AWS's model, calls one
use case of the KeyService, and shapes the answer. It decides nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Collection
from dataclasses import replace
from typing import Any

import orjson

from app.auth.credentials import Caller, IdentityDirectory
from app.aws.errors import aws_error, error_document
from app.entrypoints.aws_json.aliases import OPERATIONS as ALIAS_OPERATIONS
from app.entrypoints.aws_json.asgi import respond as _respond
from app.entrypoints.aws_json.asymmetric import OPERATIONS as KEY_SPEC_OPERATIONS
from app.entrypoints.aws_json.audit import OPERATIONS as AUDIT_OPERATIONS
from app.entrypoints.aws_json.common import Operation
from app.entrypoints.aws_json.crypto import OPERATIONS as CRYPTO_OPERATIONS
from app.entrypoints.aws_json.custom_key_stores import OPERATIONS as CUSTOM_KEY_STORE_OPERATIONS
from app.entrypoints.aws_json.grants import OPERATIONS as GRANT_OPERATIONS
from app.entrypoints.aws_json.keys import OPERATIONS as KEY_OPERATIONS
from app.entrypoints.aws_json.multi_region import OPERATIONS as MULTI_REGION_OPERATIONS
from app.entrypoints.aws_json.shapes import parse_request
from app.entrypoints.signed_requests import authenticate_request
from app.support.request_ids import new_request_id
from app.usecases.auditing import Auditor
from app.usecases.keys import KeyService
from domain.errors import DomainError, UnknownOperationError

log = logging.getLogger("keyledger.aws")

TARGET_PREFIX = "TrentService."
_PREFIX_LENGTH = len(TARGET_PREFIX)
# Answered with {} before authentication: measures the HTTP stack's ceiling (tools/bench).
NOOP = "Noop"


OPERATIONS: dict[str, Operation] = {
    **KEY_OPERATIONS,
    **CRYPTO_OPERATIONS,
    **ALIAS_OPERATIONS,
    **GRANT_OPERATIONS,
    **KEY_SPEC_OPERATIONS,
    **AUDIT_OPERATIONS,
    **CUSTOM_KEY_STORE_OPERATIONS,
    **MULTI_REGION_OPERATIONS,
}


# --- the ASGI handler -------------------------------------------------------------------
class AwsJsonHandler:
    def __init__(
        self,
        service: KeyService,
        identity: IdentityDirectory,
        auditor: Auditor | None,
        regions: Collection[str] | None = None,
    ) -> None:
        """``auditor`` records every call (app.usecases.auditing); None records none."""
        self.service = service
        self.identity = identity
        self.auditor = auditor
        # The Regions served (KEYLEDGER_REGIONS); None serves whatever a caller signs for.
        self.regions = frozenset(regions) if regions is not None else None

    async def answer(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        """Answer the request ``scope`` whose body (within its limit) was read already."""
        headers, target, user_agent = _read_headers(scope["headers"])
        name = target[_PREFIX_LENGTH:] if target.startswith(TARGET_PREFIX) else ""
        if name == NOOP:
            await _respond(send, 200, b"{}", "")
            return
        request_id = new_request_id()
        try:
            async with self._audit(
                name or target, scope, headers, user_agent, body, request_id
            ) as audit:
                caller = audit.caller = await self._authenticate(scope, headers, body, request_id)
                operation = OPERATIONS.get(name)
                if operation is None:
                    raise UnknownOperationError("")
                params = audit.parameters = parse_request("kms", name, body)
                self.service.quotas.admit(caller, name, params)  # before any work
                if params.get("GrantTokens"):  # request context the service's checks read
                    caller = replace(caller, grant_tokens=tuple(params["GrantTokens"]))
                answer = await operation(self.service, caller, params)
            await _respond(send, 200, orjson.dumps(answer), request_id)
        except Exception as error:  # every failure gets AWS's shape, never a bare 500
            await self._fail(send, error, request_id)

    def _audit(
        self,
        name: str,
        scope: dict[str, Any],
        headers: list[tuple[str, str]],
        user_agent: str,
        body: bytes,
        request_id: str,
    ) -> Any:
        if self.auditor is None:
            return _NotAudited()
        client = scope.get("client") or ("", 0)
        return self.auditor.call(
            name,
            request_id=request_id,
            headers=headers,
            body=body,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            source_ip=client[0],
            user_agent=user_agent,
        )

    def _authenticate(
        self, scope: dict[str, Any], headers: list[tuple[str, str]], body: bytes, request_id: str
    ) -> Awaitable[Caller]:
        """The authentication's own awaitable (no coroutine of this method's in between)."""
        return authenticate_request(
            self.identity, scope, headers, body, request_id=request_id, regions=self.regions
        )

    async def _fail(self, send: Any, error: Exception, request_id: str) -> None:
        if isinstance(error, UnknownOperationError):
            code, status, message = "UnknownOperationException", 400, ""
        elif type(error).__name__ == "SerializationError":
            code, status, message = "SerializationException", 400, str(error)
        else:
            code, status, message = aws_error(error)
            if not isinstance(error, DomainError):
                log.error("request %s failed: %s", request_id, type(error).__name__)
        body = orjson.dumps(error_document(code, message))
        await _respond(send, status, body, request_id)


def _read_headers(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[str, str]], str, str]:
    """The headers as text, and the first X-Amz-Target and User-Agent ("" when absent), in
    one pass over them."""
    headers = []
    target = user_agent = None
    for raw_name, raw_value in raw:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers.append((name, value))
        if target is None or user_agent is None:
            lowered = name.lower()
            if target is None and lowered == "x-amz-target":
                target = value
            elif user_agent is None and lowered == "user-agent":
                user_agent = value
    return headers, target or "", user_agent or ""


class _NotAudited:
    caller: Caller | None = None
    parameters: Any = None

    async def __aenter__(self) -> _NotAudited:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None
