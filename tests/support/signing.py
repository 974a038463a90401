"""The tests' one SigV4 signer: botocore's own ``SigV4Auth``, as every AWS SDK signs.

The service verifies what AWS's clients send, so the tests sign with AWS's client code
rather than with a second implementation that could share the verifier's mistakes. Only
the clock is ours: a test signs at the moment it chooses (skew, expiry, the service's
adjustable clock).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# What an HTTP client leaves unescaped in a path (httpx, like browsers): the URL is signed
# in the form it will travel in, as the SDKs sign their already-escaped URLs.
WIRE_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
DEFAULT_PORTS = {"http": 80, "https": 443}


class _SigV4At(SigV4Auth):
    """``SigV4Auth.add_auth`` with the signing time given instead of read from the clock."""

    def __init__(self, credentials: Credentials, service: str, region: str, now: datetime):
        super().__init__(credentials, service, region)
        self._timestamp = now.astimezone(UTC).strftime(SIGV4_TIMESTAMP)

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._timestamp
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def sign_request(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    now: datetime,
    session_token: str | None = None,
) -> dict[str, str]:
    """``headers`` plus X-Amz-Date, Authorization (and X-Amz-Security-Token), signed by
    botocore; an X-Amz-Content-SHA256 header given is the payload hash, as botocore does."""
    parts = urlsplit(url)
    wire_url = urlunsplit(parts._replace(path=quote(parts.path, safe=WIRE_PATH_SAFE)))
    given = dict(headers)
    if not any(name.lower() == "host" for name in given):
        given["Host"] = _host(parts.scheme, parts.hostname or "", parts.port)
    request = AWSRequest(method=method.upper(), url=wire_url, data=body, headers=given)
    credentials = Credentials(access_key_id, secret_access_key, session_token)
    _SigV4At(credentials, service, region, now).add_auth(request)
    return dict(request.headers.items())


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header an HTTP client sends (host names are case-insensitive: lowercase)."""
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return hostname if port in (None, DEFAULT_PORTS.get(scheme)) else f"{hostname}:{port}"
