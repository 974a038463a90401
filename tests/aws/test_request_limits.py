"""Request body limits (app/entrypoints/server/request_limits.py), over raw sockets: a body over
its protocol's limit is refused before it is read (by its Content-Length) or as soon as it passes
the limit
(chunked), with AWS's error shape and a closed connection, on every protocol; the largest
legitimate request still succeeds."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.entrypoints.server.request_limits import BODY_LIMITS, Protocol
from tests.aws.conftest import JSON_CONTENT_TYPE, ledger_unchanged
from tests.conftest import ACCOUNT_ID, REGION, Service
from tests.support.signing import sign_request

CLOUDTRAIL_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"


@dataclass(frozen=True)
class Endpoint:
    path: str
    headers: dict[str, str]
    signing_service: str
    content_type: str


ENDPOINTS = {
    Protocol.KMS: Endpoint(
        "/",
        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": "TrentService.CreateKey"},
        "kms",
        JSON_CONTENT_TYPE,
    ),
    Protocol.CLOUDTRAIL: Endpoint(
        "/",
        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": CLOUDTRAIL_TARGET},
        "cloudtrail",
        JSON_CONTENT_TYPE,
    ),
    Protocol.QUERY: Endpoint(
        "/",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        "sts",
        "text/xml",
    ),
    Protocol.REST: Endpoint(
        "/v1/keys", {"Content-Type": "application/json"}, "kms", "application/json"
    ),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    closed: bool  # the server closed the connection after answering


def signed_head(service: Service, protocol: Protocol, body: bytes, framing: str) -> bytes:
    """The request line and headers of a request signed for ``body`` (which need not be
    sent), with ``framing`` (a Content-Length or Transfer-Encoding header) added."""
    endpoint = ENDPOINTS[protocol]
    url = service.endpoint + endpoint.path
    headers = sign_request(
        "POST",
        url,
        {**endpoint.headers, "X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()},
        body,
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=REGION,
        service=endpoint.signing_service,
        now=datetime.now(UTC),
    )
    lines = [f"POST {endpoint.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), framing]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(service: Service, head: bytes, parts: Iterable[bytes] = ()) -> Answer:
    """Send ``head`` then ``parts`` over a fresh connection, and read the answer. Times out
    (failing the test) if the server waits for more of the body instead of answering."""
    address = urlsplit(service.endpoint)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        rest += chunk
    return Answer(
        int(status_line.split()[1]),
        headers,
        _document(rest[:length], headers.get("content-type", "")),
        closed=_closed(sock),
    )


def _document(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON answer as is; the query protocol's XML ErrorResponse as its Code (``__type``)
    and Message."""
    if content_type != "text/xml":
        return dict(json.loads(body or b"{}"))
    text = body.decode()
    code = re.search(r"<Code>(.*?)</Code>", text)
    message = re.search(r"<Message>(.*?)</Message>", text)
    return {
        "__type": code.group(1) if code else "",
        "message": message.group(1) if message else "",
    }


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of body in HTTP/1.1 chunks, without the final zero-length chunk:
    a server that waited for the body's end would wait for ever."""
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield f"{part:x}\r\n".encode() + b" " * part + b"\r\n"
        sent += part


def assert_refused_for_size(answer: Answer, protocol: Protocol) -> None:
    assert answer.status == 413, answer
    too_large = "RequestEntityTooLarge"  # the query protocol's codes carry no "Exception"
    expected = too_large if protocol is Protocol.QUERY else too_large + "Exception"
    assert answer.body["__type"] == expected
    assert str(BODY_LIMITS[protocol]) in answer.body["message"]
    assert answer.headers["content-type"] == ENDPOINTS[protocol].content_type
    assert answer.headers["connection"] == "close"
    assert answer.closed


# --- refused before the body is read -------------------------------------------------------
@pytest.mark.parametrize("protocol", list(Protocol), ids=lambda p: p.value)
def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(
    service: Service, protocol: Protocol
) -> None:
    body = b" " * (BODY_LIMITS[protocol] + 1)
    head = signed_head(service, protocol, body, f"Content-Length: {len(body)}")

    with ledger_unchanged(service):
        answer = exchange(service, head)  # the body is never sent

    assert_refused_for_size(answer, protocol)


@pytest.mark.parametrize("protocol", list(Protocol), ids=lambda p: p.value)
def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    service: Service, protocol: Protocol
) -> None:
    total = BODY_LIMITS[protocol] + 1
    head = signed_head(service, protocol, b" " * total, "Transfer-Encoding: chunked")

    with ledger_unchanged(service):
        answer = exchange(service, head, chunks(total))  # never ends: no zero-length chunk

    assert_refused_for_size(answer, protocol)


def test_a_fifty_megabyte_declared_body_is_refused_at_once(service: Service) -> None:
    head = signed_head(service, Protocol.KMS, b"", f"Content-Length: {50 * 1024 * 1024}")

    answer = exchange(service, head)

    assert_refused_for_size(answer, Protocol.KMS)


def test_a_body_at_the_limit_is_read_and_answered_by_the_protocol(service: Service) -> None:
    body = b"{" + b" " * (BODY_LIMITS[Protocol.KMS] - 1)  # not JSON: the handler's answer
    head = signed_head(service, Protocol.KMS, body, f"Content-Length: {len(body)}")

    answer = exchange(service, head, [body])

    assert (answer.status, answer.body["__type"]) == (400, "SerializationException")


# --- the largest legitimate requests ---------------------------------------------------------
NON_ASCII = "é"  # botocore sends it as \u00e9: 6 bytes on the wire, 2 in the policy's UTF-8


def maximal_policy() -> str:
    """A valid key policy of exactly 32,768 UTF-8 bytes, mostly non-ASCII characters."""
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "Padding",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:Encrypt",
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:note": ""}},
        },
    ]

    def document(padding: int) -> str:
        statements[1]["Condition"]["StringEquals"]["kms:EncryptionContext:note"] = NON_ASCII * (
            padding // 2
        ) + "x" * (padding % 2)
        return json.dumps({"Version": "2012-10-17", "Statement": statements}, ensure_ascii=False)

    padding = 32_768 - len(document(0).encode())
    policy = document(padding)
    assert len(policy.encode()) == 32_768
    return policy


def test_the_largest_legitimate_create_key_succeeds(kms: Any) -> None:
    tags = [
        {"TagKey": f"{n:03d}" + NON_ASCII * 125, "TagValue": NON_ASCII * 256} for n in range(50)
    ]

    created = kms.create_key(Policy=maximal_policy(), Description=NON_ASCII * 8192, Tags=tags)

    key_id = created["KeyMetadata"]["KeyId"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == NON_ASCII * 8192
    assert len(kms.list_resource_tags(KeyId=key_id)["Tags"]) == 50


def test_the_largest_legitimate_put_key_policy_succeeds(kms: Any, key_id: str) -> None:
    policy = maximal_policy()

    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy)

    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == policy
