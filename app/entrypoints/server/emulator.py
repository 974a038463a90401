"""Emulator mode's own endpoints (docs/emulator.md), served only when it is on:

- ``POST /_keyledger/reset`` and moto's ``POST /moto-api/reset``: empty the service;
- ``GET /_keyledger/clock``: the service clock; ``POST /_keyledger/clock``
  ``{"advance_seconds": N}``: move it forward and run the jobs that fell due.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from app.bootstrap import Runtime
from app.entrypoints.server.request_limits import read_body
from domain.errors import RequestTooLargeError

__all__ = ["EmulatorEndpoints"]

RESET_PATHS = frozenset({"/_keyledger/reset", "/moto-api/reset"})
CLOCK_PATH = "/_keyledger/clock"
_BODY_LIMIT = 4096


class EmulatorEndpoints:
    """The ASGI handler of emulator mode's paths (see ``serves``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @staticmethod
    def serves(path: str) -> bool:
        return path in RESET_PATHS or path == CLOCK_PATH

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body = await read_body(scope, receive, _BODY_LIMIT)
        except RequestTooLargeError:
            await _answer(send, 413, {"message": f"at most {_BODY_LIMIT} bytes"})
            return
        method, path = scope["method"], scope["path"]
        if path in RESET_PATHS:
            if method != "POST":  # moto's own answer
                await _answer(send, 400, {"Error": "Need to POST to reset Moto"})
                return
            await asyncio.to_thread(self.runtime.reset_emulator)
            await _answer(send, 200, {"status": "ok"})
            return
        if method == "GET":
            await _answer(send, 200, {"now": _iso(self.runtime.clock.now())})
            return
        seconds = _advance_seconds(body)
        if method != "POST" or seconds is None:
            message = 'POST {"advance_seconds": N} (N >= 0) moves the clock; GET reads it'
            await _answer(send, 400, {"message": message})
            return
        now = await asyncio.to_thread(self.runtime.advance_clock, seconds)
        await _answer(send, 200, {"now": _iso(now)})


def _advance_seconds(body: bytes | None) -> float | None:
    try:
        value = json.loads(body or b"{}").get("advance_seconds")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _iso(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


async def _answer(send: Any, status: int, document: dict[str, Any]) -> None:
    payload = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
