"""Request body limits: one per protocol, enforced by the ASGI dispatcher
(app.entrypoints.server.asgi) before any handler sees the request, so that no oversized body is
held, authenticated, parsed or
recorded.

A request whose Content-Length is over its limit is answered at once, without reading a
byte of its body; a chunked body is read only until it passes the limit. The answer is 413
``RequestEntityTooLargeException`` with ``Connection: close``: the server then closes the
connection rather than drain the rest of the body.

Each limit is sized from AWS's largest legitimate request of its protocol as botocore
sends it: JSON written with ``ensure_ascii``, so a character outside ASCII travels as a
``\\uXXXX`` escape (6 bytes) and quotes, backslashes and control characters as 2 to 6
bytes. Every character below is counted at 6 bytes.

KMS (AWS JSON 1.1 at ``POST /``): CreateKey is the largest (ReplicateKey has the same
members)::

    Policy        32,768 characters (the 32 KB key policy quota) x 6 = 196,608
    Description    8,192 characters x 6                            =  49,152
    Tags          50 (the quota per key) x (TagKey 128 + TagValue 256) x 6
                                                                   = 115,200
                  + 50 x 40 bytes of JSON around each pair         =   2,000
    the rest      KeyUsage, KeySpec, Origin, CustomKeyStoreId (64), XksKeyId (128),
                  two flags, the braces                            <   1,024
                                                                   = 363,984

    Other operations are smaller: ImportKeyMaterial carries two 6,144-byte blobs (ImportToken,
    EncryptedKeyMaterial: 8,192 base64 characters each); Encrypt a 4,096-byte plaintext
    (5,464); Decrypt, ReEncrypt and Verify a 6,144-byte blob (8,192) and up to 10 grant
    tokens of 8,192 characters (81,920), beside encryption contexts, which have no
    published quota. The limit, 512 KiB (524,288 bytes), is CreateKey's maximum with
    160 KB to spare for those contexts.

STS (the query protocol at ``POST /``): AssumeRole is the largest, with a session policy of
2,048 characters form-encoded at up to 9 bytes each (18,432), 50 tags and 10 policy ARNs
(< 25,000): the limit is 64 KiB, as CloudTrail's.

CloudTrail (LookupEvents at ``POST /``): one lookup attribute value of 2,000 characters
x 6 = 12,000, a NextToken KeyLedger issued (< 300), two times, MaxResults, EventCategory
and the braces: < 13 KB. The limit is 64 KiB (65,536 bytes).

REST (``/v1``, JSON): the same operations with the same members (snake_case names, tags as
a map), and identity administration, whose largest member is an identity policy (10 KB):
KMS's limit, 512 KiB.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import orjson

from app.aws.errors import aws_error, error_document
from app.entrypoints.sts.wire import answer_error as query_error
from domain.errors import RequestTooLargeError

Receive = Callable[[], Awaitable[dict[str, Any]]]

AWS_JSON_CONTENT_TYPE = b"application/x-amz-json-1.1"
REST_CONTENT_TYPE = b"application/json"


class Protocol(Enum):
    KMS = "kms"
    CLOUDTRAIL = "cloudtrail"
    QUERY = "query"  # STS (and IAM's refusals): form-encoded Action=... at POST /
    REST = "rest"


KIB = 1024
# The table: see the module's docstring for the arithmetic.
BODY_LIMITS: dict[Protocol, int] = {
    Protocol.KMS: 512 * KIB,
    Protocol.CLOUDTRAIL: 64 * KIB,
    Protocol.QUERY: 64 * KIB,
    Protocol.REST: 512 * KIB,
}


def too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"Request body exceeds the maximum size of {limit} bytes.")


def declared_length(scope: dict[str, Any]) -> int | None:
    """The Content-Length the request declares; None if it declares none (or a bad one,
    which the HTTP server refuses itself)."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(scope: dict[str, Any], receive: Receive, limit: int) -> bytes | None:
    """The request's body, read only while it stays within ``limit`` bytes; None when the
    client disconnects first. Raises RequestTooLargeError before reading anything when the
    declared length is over the limit, and as soon as a body sent in chunks passes it."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` (already read) as the whole request, then
    whatever the server says next (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return replay


async def refuse(
    send: Any, protocol: Protocol, error: RequestTooLargeError, request_id: str
) -> None:
    """The 413 answer, in the protocol's error shape; the server closes the connection
    after it, so a client still sending learns at once and streams no further."""
    await answer_error(send, protocol, error, request_id, close=True)


async def answer_error(
    send: Any,
    protocol: Protocol,
    error: Exception,
    request_id: str,
    *,
    close: bool,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """An error answered by the dispatcher itself, in the protocol's error shape."""
    if protocol is Protocol.QUERY:
        await query_error(send, error, request_id, close=close)
        return
    code, status, message = aws_error(error)
    body = orjson.dumps(error_document(code, message))
    content_type = REST_CONTENT_TYPE if protocol is Protocol.REST else AWS_JSON_CONTENT_TYPE
    answer_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if close:
        answer_headers.append((b"connection", b"close"))
    answer_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": answer_headers})
    await send({"type": "http.response.body", "body": body})
