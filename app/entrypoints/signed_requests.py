"""The caller who signed an ASGI request: one place for every SigV4 protocol on the
endpoint (AWS JSON, STS and IAM's query protocol, CloudTrail's JSON), so that each
authenticates, and checks the Region, the same way."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from app.auth.credentials import Caller, IdentityDirectory
from app.auth.sigv4 import IncomingRequest, check_region


async def authenticate_request(
    identity: IdentityDirectory,
    scope: dict[str, Any],
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    request_id: str,
    service: str = "kms",
    regions: Collection[str] | None = None,
) -> Caller:
    """The caller who signed the request ``scope`` (raises an AuthenticationError when no
    one did); ``regions``: the Regions served, None for any the caller signs for."""
    request = IncomingRequest(
        method=scope["method"],
        path=scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0] or "/",
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
    )
    client = scope.get("client") or ("", 0)
    caller = await identity.authenticate(
        request,
        source_ip=client[0],
        user_agent=(request.header_index().get("user-agent") or ("",))[0],
        request_id=request_id,
        service=service,
    )
    if regions is not None:  # before the caller counts as authenticated
        check_region(caller.region, regions)
    return caller
