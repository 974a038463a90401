"""What every REST router shares: authentication, the key service, the error shape and
the route class that audits each call. The routers (app.py, access.py, asymmetric.py,
audit.py) import it; it imports none of them, so the routers do not import each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth.credentials import Caller
from app.auth.sigv4 import IncomingRequest, check_region
from app.aws.errors import aws_error, rest_status
from app.bootstrap import Runtime
from app.entrypoints.rest.call_records import audited
from app.entrypoints.rest.schemas import (
    MAX_KEY_ID,
    MAX_MARKER,
    ErrorBody,
)
from app.usecases.keys import KeyService
from domain.errors import AuthenticationError, DomainError, SerializationError, ValidationError

log = logging.getLogger("keyledger.rest")

API_PREFIX = "/v1"
KEY = "/keys/{key_id:path}"


# ==== authentication ====================================================================
async def authenticated_caller(request: Request) -> Caller:
    """The caller who signed this request (SigV4 over the request as received), or raise."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None:
        return caller
    refused: DomainError | None = getattr(request.state, "refused", None)
    if refused is not None:  # one authentication a request: its failure counts once
        raise refused
    scope = request.scope
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    incoming = IncomingRequest(
        method=request.method,
        path=raw_path.decode("latin-1").split("?", 1)[0] or "/",
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
        body=await request.body(),
    )
    runtime: Runtime = request.app.state.runtime
    try:
        caller = await runtime.identity.authenticate(
            incoming,
            source_ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", ""),
        )
    except DomainError as error:
        request.state.refused = error
        raise
    check_region(caller.region, runtime.settings.regions)  # before it counts as the caller
    request.state.caller = caller
    return caller


async def key_service(request: Request) -> KeyService:
    runtime: Runtime = request.app.state.runtime
    return runtime.service


CallerDep = Annotated[Caller, Depends(authenticated_caller)]
ServiceDep = Annotated[KeyService, Depends(key_service)]
KeyId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_KEY_ID,
        description="Key id, key ARN, alias name (`alias/...`) or alias ARN.",
    ),
]
Marker = Annotated[str | None, Query(min_length=1, max_length=MAX_MARKER)]


# ==== errors ============================================================================
_HTTP_ERROR_CODES = {
    400: "SerializationException",  # a body FastAPI could not read at all
    404: "UnknownOperationException",
    405: "UnknownOperationException",
}


def _validation_error(error: RequestValidationError) -> tuple[str, int, str]:
    problems = error.errors()
    if any(problem["type"] == "json_invalid" for problem in problems):
        return "SerializationException", 400, "The request body is not valid JSON."
    if any(problem["loc"] == ("body",) and problem["type"] != "missing" for problem in problems):
        # Most often a body sent without "Content-Type: application/json" (e.g. curl -d).
        message = "The request body must be a JSON object sent as application/json."
        return "ValidationException", 400, message
    # pydantic's messages name the rule broken, never the value (which may be plaintext).
    details = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in problems
    )
    noun = "error" if len(problems) == 1 else "errors"
    return "ValidationException", 400, f"{len(problems)} validation {noun} detected: {details}"


def refusal(error: RequestValidationError) -> DomainError:
    """A request FastAPI refused, as the domain error it is answered with (and recorded as)."""
    code, _, message = _validation_error(error)
    if code == "SerializationException":
        return SerializationError(message)
    return ValidationError(message)


def error_shape(error: Exception, request_id: str) -> tuple[str, int, str]:
    """(code, HTTP status, message) of any failure of a REST route, logged when a fault."""
    if isinstance(error, RequestValidationError):
        return _validation_error(error)
    if isinstance(error, SerializationError):
        return "SerializationException", 400, error.message
    if isinstance(error, StarletteHTTPException):
        status = error.status_code
        fallback = "ValidationException" if status < 500 else "KMSInternalException"
        return _HTTP_ERROR_CODES.get(status, fallback), status, str(error.detail)
    code, _, message = aws_error(error)
    status = rest_status(error)
    if status >= 500:
        log.error("request %s failed: %s", request_id, type(error).__name__)
        log.debug("request %s failure", request_id, exc_info=error)
    return code, status, message


async def error_response(request: Request, error: Exception) -> JSONResponse:
    """The error's wire shape. Under /v1, an unauthenticated caller gets only that fact."""
    if not isinstance(error, AuthenticationError) and request.scope["path"].startswith(
        API_PREFIX + "/"
    ):
        try:
            await authenticated_caller(request)
        except Exception as authentication_error:
            error = authentication_error
    caller: Caller | None = getattr(request.state, "caller", None)
    request_id = caller.request_id if caller else ""
    code, status, message = error_shape(error, request_id)
    return JSONResponse({"__type": code, "message": message}, status_code=status)


class _JsonRequest(Request):
    """Parses bodies with orjson: faster, and it refuses lone surrogates no store can hold."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # its error is a JSONDecodeError
        return self._json


class LedgerRoute(APIRoute):
    """Answers every failure with the error shape, and every answer with its request id."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            request = _JsonRequest(request.scope, request.receive)
            try:
                # every call leaves a record
                async with audited(request, self.name, authenticated_caller):
                    try:
                        response = await handler(request)
                    except RequestValidationError as refused:  # recorded as it is answered
                        raise refusal(refused) from None
            except Exception as error:
                response = await error_response(request, error)
            caller: Caller | None = getattr(request.state, "caller", None)
            if caller is not None:
                response.headers["x-amzn-requestid"] = caller.request_id
            return response

        return route


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid input",
        401: "Not authenticated",
        403: "Not allowed",
        404: "No such key or alias",
        409: "The key's state or an existing resource forbids it",
        500: "Internal error (retry)",
    }.items()
}
