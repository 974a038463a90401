"""The XKS client's failures (app.infrastructure.xks_client), against a mock transport:
each proxy answer becomes one typed XksProxyError, surfaced as AWS KMS surfaces it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from app.infrastructure.xks_client import (
    RequestMetadata,
    XksClient,
    XksCredential,
    XksProxyError,
)

META = RequestMetadata("arn:aws:iam::111122223333:user/a", "Encrypt", "r-1", "arn:key")


def failure_of(handler: Callable[[httpx.Request], httpx.Response]) -> XksProxyError:
    async def call() -> None:
        transport = httpx.MockTransport(handler)
        async with XksClient(
            "https://xks.example.com",
            "/kms/xks/v1",
            XksCredential("AKID", "secret"),
            "us-east-1",
            transport=transport,
        ) as client:
            await client.encrypt("key-1", META, b"x")

    with pytest.raises(XksProxyError) as caught:
        asyncio.run(call())
    return caught.value


def test_a_proxy_error_is_typed_and_surfaced_per_kms_operation() -> None:
    error = failure_of(
        lambda _: httpx.Response(401, json={"errorName": "AuthenticationFailedException"})
    )
    assert error.failure == "AuthenticationFailedException" and error.status == 401
    assert error.kms_error("ConnectCustomKeyStore")[0] == (
        "XksProxyIncorrectAuthenticationCredentialException"
    )
    assert error.kms_error("CreateKey")[0] == "CustomKeyStoreInvalidStateException"
    assert error.kms_error("Encrypt")[0] == "KMSInvalidStateException"


def test_malformed_answers_and_unreachable_proxies() -> None:
    assert failure_of(lambda _: httpx.Response(500, text="oops")).failure == "MalformedResponse"
    assert failure_of(lambda _: httpx.Response(200, json={"x": 1})).failure == "MalformedResponse"

    def refuse(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert failure_of(refuse).failure == "Unreachable"

    def slow(_: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    timed_out = failure_of(slow)
    assert timed_out.failure == "Timeout"
    assert timed_out.kms_error("UpdateCustomKeyStore")[0] == "XksProxyUriUnreachableException"


def test_requests_are_signed_for_kms_xks_proxy_with_the_request_metadata() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"errorName": "KeyNotFoundException"})

    assert failure_of(answer).failure == "KeyNotFoundException"
    request = seen[0]
    assert request.url.path == "/kms/xks/v1/keys/key-1/encrypt"
    authorization = request.headers["authorization"]
    assert "/us-east-1/kms-xks-proxy/aws4_request" in authorization
    assert "SignedHeaders=host;x-amz-date" in authorization and "secret" not in authorization
    assert b'"kmsRequestId":"r-1"' in request.content
