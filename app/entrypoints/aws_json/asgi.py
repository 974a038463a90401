"""The ASGI plumbing both AWS JSON 1.1 protocols (KMS, CloudTrail) answer with. Their
bodies are read by the dispatcher (app.entrypoints.server.asgi), within
app.entrypoints.server.request_limits's limits."""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = b"application/x-amz-json-1.1"


async def respond(send: Any, status: int, body: bytes, request_id: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", CONTENT_TYPE),
                (b"content-length", str(len(body)).encode()),
                (b"x-amzn-requestid", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
