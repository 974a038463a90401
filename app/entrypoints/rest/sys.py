"""REST routes (/v1/sys) of the Shamir-sealed root key (docs/key-custody.md), as Vault's:
``POST /v1/sys/unseal`` and ``GET /v1/sys/seal-status`` answer anyone (the share is the
credential, and a sealed service could not check a signature: the access keys' secrets are
wrapped under the root key), ``POST /v1/sys/seal`` only an administrator of the operator
account, signed like every other call.

The unauthenticated two run on `UnsignedRoute`: the error shape without the authentication
that LedgerRoute's error answer tries first. The dispatcher (app/entrypoints/server/asgi.py)
lets only them through while the service is sealed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from app.aws.errors import aws_error, rest_status
from app.bootstrap import Runtime
from app.entrypoints.rest.deps import ERROR_RESPONSES, CallerDep, LedgerRoute, refusal
from app.entrypoints.rest.schemas import RequestBody
from app.usecases.identities import IdentityAdministration
from domain.errors import UnsupportedOperationError, ValidationError

log = logging.getLogger("keyledger.seal")
PREFIX = "/v1/sys"
UNSIGNED_PATHS = frozenset({PREFIX + "/unseal", PREFIX + "/seal-status"})
PROCESS_HEADER = "x-keyledger-process-id"
MAX_SHARE_TEXT = 128  # a share is 33 bytes: 44 base64 characters


class UnsignedRoute(APIRoute):
    """Errors in the REST shape, without trying to authenticate the caller first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as error:
                failure = refusal(error) if isinstance(error, RequestValidationError) else error
                code, _, message = aws_error(failure)
                status = rest_status(failure)
                if status >= 500:
                    log.error("%s failed: %s", request.url.path, type(failure).__name__)
                response = JSONResponse({"__type": code, "message": message}, status_code=status)
            # Which worker answered: `keyledger operator unseal` goes on until each has.
            response.headers[PROCESS_HEADER] = str(os.getpid())
            return response

        return route


unsigned = APIRouter(prefix=PREFIX, route_class=UnsignedRoute, tags=["seal"])
signed = APIRouter(prefix=PREFIX, route_class=LedgerRoute, responses=ERROR_RESPONSES, tags=["seal"])


class UnsealRequest(RequestBody):
    key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SHARE_TEXT,
        description="One unseal key share, base64, as `keyledger operator init` printed it.",
    )
    reset: bool = Field(False, description="Forget the shares given so far instead.")


class SealStatusPublic(BaseModel):
    type: str = Field(description="The root key provider (`shamir`, `file`).")
    sealed: bool
    progress: int = Field(description="Shares given towards the threshold.")
    threshold: int
    shares: int
    process_id: int = Field(description="The worker that answered (one of --workers N).")
    workers: int = Field(description="The worker processes each to be unsealed.")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _status(runtime: Runtime) -> SealStatusPublic:
    status = runtime.seal_status()
    settings = runtime.settings
    return SealStatusPublic(
        type=settings.root_key_provider,
        sealed=status.sealed if status else False,
        progress=status.progress if status else 0,
        threshold=status.threshold if status else 0,
        shares=status.shares if status else 0,
        process_id=os.getpid(),
        workers=settings.workers,
    )


def _share(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("an unseal key share is base64 text") from None


@unsigned.post("/unseal")
async def unseal(body: UnsealRequest, request: Request) -> SealStatusPublic:
    """Give one unseal key share (or reset the shares given so far). 400 for a malformed
    or repeated share, and for a full set that does not open the root key (the shares given
    so far are then forgotten)."""
    runtime = _runtime(request)
    if runtime.custody is None:
        raise UnsupportedOperationError("this service's root key is not Shamir-sealed")
    if body.reset:
        runtime.custody.reset()
        log.warning("unseal progress reset by a request from %s", _client(request))
        return _status(runtime)
    if body.key is None:
        raise ValidationError("give key (a share) or reset")
    share = _share(body.key)
    try:
        await asyncio.to_thread(runtime.unseal, share)
    except ValidationError as refused:  # logged without the share, ever
        log.warning("unseal key share refused (from %s): %s", _client(request), refused.message)
        raise
    return _status(runtime)


@unsigned.get("/seal-status")
async def seal_status(request: Request) -> SealStatusPublic:
    return _status(_runtime(request))


async def administration(request: Request) -> IdentityAdministration:
    runtime = _runtime(request)
    return IdentityAdministration(
        runtime.identity, runtime.service.access, runtime.settings.default_account_id
    )


@signed.post("/seal")
async def seal(
    caller: CallerDep,
    admin: Annotated[IdentityAdministration, Depends(administration)],
    request: Request,
) -> SealStatusPublic:
    """Make this process forget the root key (an administrator of the operator account;
    action ``keyledger:Seal``). Every call then answers 503 until it is unsealed again."""
    runtime = _runtime(request)
    if runtime.custody is None:
        raise UnsupportedOperationError("this service's root key is not Shamir-sealed")
    await admin.authorize_operator_action(caller, "keyledger:Seal")
    log.warning("seal requested by %s", caller.principal_arn)
    await asyncio.to_thread(runtime.seal)
    return _status(runtime)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
