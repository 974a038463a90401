"""REST routes (/v1/sys) of the root key's custody (docs/key-custody.md), as Vault's:
``POST /v1/sys/unseal`` and ``GET /v1/sys/seal-status`` answer anyone (the share is the
credential, and a sealed service could not check a signature: the access keys' secrets are
wrapped under the root key); ``POST /v1/sys/seal`` and ``POST /v1/sys/rotate-root-key``
only an administrator of the operator account, signed like every other call.

The unauthenticated two run on `UnsignedRoute`: the error shape without the authentication
that LedgerRoute's error answer tries first. The dispatcher (app/entrypoints/server/asgi.py)
lets only them through while the service is sealed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from app.aws.errors import aws_error
from app.bootstrap import Runtime
from app.entrypoints.rest.deps import (
    ERROR_RESPONSES,
    CallerDep,
    LedgerRoute,
    error_shape,
    refusal,
)
from app.entrypoints.rest.schemas import RequestBody
from app.usecases.custody import DEFAULT_BATCH
from app.usecases.identities import IdentityAdministration
from domain.custody import RotationUnderWayError
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
                # The one shape of every REST failure (a body FastAPI could not read too).
                code, status, message = error_shape(failure, "")
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


class NewSetPublic(BaseModel):
    root_key_id: str = Field(description="The pending set's root key (its id, never the key).")
    progress: int = Field(description="Its shares given towards its threshold.")
    threshold: int
    shares: int
    verified: bool = Field(
        description="T of its shares opened its key: `rotate-root-key --new-set` may use it."
    )


class SealStatusPublic(BaseModel):
    type: str = Field(description="The root key provider (`shamir`, `file`).")
    sealed: bool
    progress: int = Field(description="Shares given towards the threshold.")
    threshold: int
    shares: int
    process_id: int = Field(description="The worker that answered (one of --workers N).")
    workers: int = Field(description="The worker processes, unsealed and sealed together.")
    new_set: NewSetPublic | None = Field(
        None, description="A new Shamir set pending verification (`operator init --rotate`)."
    )


class RotateRootKeyRequest(RequestBody):
    batch_size: int = Field(
        DEFAULT_BATCH, ge=1, le=10_000, description="Wrapping keys re-wrapped per transaction."
    )
    new_set: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="Make this pending Shamir set current first: the root key id `operator"
        " init --rotate` printed; T of its shares must have been given to the service.",
    )
    to: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="The root key the rows are to move under (its id), checked against the"
        " current one; needed when that is Shamir-sealed (its seal is in the database).",
    )


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _status(runtime: Runtime) -> SealStatusPublic:
    status = runtime.seal_status()
    settings = runtime.settings
    new_set = status.new_set if status else None
    return SealStatusPublic(
        type=settings.root_key_provider,
        sealed=status.sealed if status else False,
        progress=status.progress if status else 0,
        threshold=status.threshold if status else 0,
        shares=status.shares if status else 0,
        process_id=os.getpid(),
        workers=settings.workers,
        new_set=NewSetPublic(
            root_key_id=new_set.root_key_id,
            progress=new_set.progress,
            threshold=new_set.threshold,
            shares=new_set.shares,
            verified=new_set.verified,
        )
        if new_set
        else None,
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
    so far are then forgotten). Once unsealed, shares verify a pending new Shamir set, and
    the last one makes it current. Every worker is unsealed before the answer."""
    runtime = _runtime(request)
    if runtime.unsealer is None:
        raise UnsupportedOperationError("this service's root key is not Shamir-sealed")
    if body.reset:
        await asyncio.to_thread(runtime.reset_unseal)
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
    """Make the service forget the root key, every worker (an administrator of the
    operator account; action ``keyledger:Seal``). Every call then answers 503 until it is
    unsealed again."""
    runtime = _runtime(request)
    if runtime.unsealer is None:
        raise UnsupportedOperationError("this service's root key is not Shamir-sealed")
    await admin.authorize_operator_action(caller, "keyledger:Seal")
    log.warning("seal requested by %s", caller.principal_arn)
    await asyncio.to_thread(runtime.seal)
    return _status(runtime)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@signed.post("/rotate-root-key", response_model=None)
async def rotate_root_key(
    caller: CallerDep,
    admin: Annotated[IdentityAdministration, Depends(administration)],
    request: Request,
    body: RotateRootKeyRequest | None = None,
) -> StreamingResponse:
    """Re-wrap every wrapping key under the current root key, in this process, while the
    service serves (an administrator of the operator account; action
    ``keyledger:RotateRootKey``), after making a verified pending Shamir set current when
    ``new_set`` names it. The answer streams JSON lines: ``{"progress": {"done",
    "total"}}`` after each batch, then ``{"outcome": ...}`` or ``{"error": ...}``. The
    rotation goes on if the caller leaves; run it again to resume one that was stopped."""
    runtime = _runtime(request)
    await admin.authorize_operator_action(caller, "keyledger:RotateRootKey")
    if runtime.rotating:
        raise RotationUnderWayError("this process is rotating the root key already")
    batch_size = body.batch_size if body else DEFAULT_BATCH
    new_set = body.new_set if body else None
    to = body.to if body else None
    log.warning("root-key rotation requested by %s", caller.principal_arn)
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def tell(message: dict[str, Any] | None) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, message)

    def rotate() -> None:
        try:
            outcome = runtime.rotate_root_key(
                caller.actor(),
                batch_size,
                lambda done, total: tell({"progress": {"done": done, "total": total}}),
                new_set=new_set,
                to=to,
            )
            tell({"outcome": outcome.public()})
        except Exception as error:
            code, _, message = aws_error(error)
            log.warning("root-key rotation stopped: %s", code)
            tell({"error": {"__type": code, "message": message}})
        finally:
            tell(None)

    # Not tied to the request: a caller that leaves does not stop the rotation.
    threading.Thread(target=rotate, name="root-key rotation", daemon=True).start()

    async def stream() -> AsyncIterator[bytes]:
        while (line := await lines.get()) is not None:
            yield json.dumps(line).encode() + b"\n"

    return StreamingResponse(stream(), media_type="application/x-ndjson")
