"""AWS Signature Version 4: verify requests exactly as botocore signs them.

(Signing is the clients' part; the tests sign with botocore: tests/support/signing.py.)

Pure computation (no I/O, no web framework). Both header auth (`Authorization:
AWS4-HMAC-SHA256 ...`) and presigned-URL query auth (`X-Amz-Algorithm=...&X-Amz-Signature=...`)
are accepted. Verification order mirrors AWS closely enough for SDK error handling:
parse (IncompleteSignature) -> access key lookup (UnrecognizedClient) -> clock skew /
expiry (InvalidSignature) -> scope and signature (InvalidSignature).

Adapters must pass what was on the wire: `path` percent-encoded as received (ASGI
`raw_path`), `query_string` undecoded, header values decoded as latin-1 (what http.client
encodes botocore's str headers with). No error message ever contains the secret key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote, unquote, unquote_plus

from domain.errors import (
    AuthenticationError,
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

__all__ = [
    "ALGORITHM",
    "UNSIGNED_PAYLOAD",
    "IncomingRequest",
    "SecretLookup",
    "VerifiedCaller",
    "check_region",
    "is_region_name",
    "parse_request_unverified",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_EXPIRES = 604_800  # one week: the SigV4 ceiling AWS enforces
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_HEX_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_AUTH_FIELD_SPLIT_RE = re.compile(r"[\s,]+")
_REGION_NAME_RE = re.compile(r"(?:[a-z]+-){2,3}\d+")  # KMS's RegionType
_MAX_REGION_NAME = 32
# How SDKs end an Authorization header; what precedes it is the same on every request of a
# client (and cached, up to this length: no header line of a real client is near it).
_SIGNATURE_SEPARATOR = ", Signature="
_MAX_CACHED_PREFIX = 1024
_RFC3986_SAFE = "-_.~"
# Characters a client may leave unescaped in a path (RFC 3986 pchar plus '/' and '%'); used
# to put a caller's URL path into the form an HTTP client would send.
# botocore never signs these (hop-by-hop, or rewritten by proxies), so neither do we.
_UNSIGNABLE_HEADERS = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
)
_PRESIGN_PARAMS = frozenset({*_PRESIGN_REQUIRED, "X-Amz-Expires", "X-Amz-Security-Token"})

_MISSING_TOKEN = "Request is missing Authentication Token"
_UNRECOGNIZED = "The security token included in the request is invalid."
# AWS's answer to a scope naming no Region it serves (see check_region), without the name.
_INVALID_REGION = "Credential should be scoped to a valid region."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True)
class IncomingRequest:
    """A request as received; `path` and `query_string` still percent-encoded."""

    method: str
    path: str
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> None:
        # The generated __init__ less its object.__setattr__ per field (half the cost of one
        # per request; tests/unit/test_hand_written_inits.py holds it to the fields).
        self.__dict__.update(
            method=method, path=path, query_string=query_string, headers=headers, body=body
        )

    def header_index(self) -> dict[str, list[str]]:
        """The header values by lower-case name, in the order received; built once per
        request (verification and the caller's look-ups share it). Do not modify it."""
        index: dict[str, list[str]] | None = self.__dict__.get("_header_index")
        if index is None:
            # Outside the dataclass's fields: a cache of them, not part of its value.
            index = self.__dict__["_header_index"] = _index_headers(self.headers)
        return index


@dataclass(frozen=True)
class VerifiedCaller:
    """Who signed the request, from the (verified) credential scope."""

    access_key_id: str
    region: str
    service: str
    request_time: datetime
    session_token: str | None

    def __init__(
        self,
        access_key_id: str,
        region: str,
        service: str,
        request_time: datetime,
        session_token: str | None,
    ) -> None:
        # As IncomingRequest's: the generated __init__ less its object.__setattr__ calls.
        self.__dict__.update(
            access_key_id=access_key_id,
            region=region,
            service=service,
            request_time=request_time,
            session_token=session_token,
        )


class SecretLookup(Protocol):
    def __call__(self, access_key_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Scope:
    """The credential and signed headers a request names: what every request of a client
    shares (so cached per credential and header list), parsed but not yet checked."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: str
    signed: frozenset[str]  # lower case
    # (name as signed, its lower case) in signing order, for the canonical headers.
    names: tuple[tuple[str, str], ...]
    region_is_name: bool  # is_region_name(region), raised on in its turn (_check_scope)
    string: str  # date/region/service/aws4_request, as the string to sign has it


@dataclass(slots=True)
class _Claim:
    """What the request says about its own signature, before any of it is checked."""

    scope: _Scope
    signature: str
    amz_date: str
    request_time: datetime
    expires: int | None  # presigned URLs only
    session_token: str | None
    presigned: bool


# --- public API ------------------------------------------------------------------------------
def verify_request(
    request: IncomingRequest,
    secret_for: SecretLookup,
    *,
    now: datetime,
    service: str | None = "kms",
    max_skew: timedelta = timedelta(minutes=5),
) -> VerifiedCaller:
    """Verify a SigV4-signed request; raise an AuthenticationError subclass if it fails.

    `service=None` accepts any service in the credential scope (it is returned).
    """
    now = _as_utc(now)
    headers = request.header_index()
    pairs = _query_pairs(request.query_string)
    claim = _parse_claim(headers, pairs)
    scope = claim.scope

    secret = secret_for(scope.access_key_id) if scope.access_key_id else None
    if secret is None:
        raise UnrecognizedClientError(_UNRECOGNIZED)

    _check_scope(claim, now, max_skew, service)
    payload_hash = _payload_hash(headers, request.body)
    key = _signing_key(secret, scope.date, scope.region, scope.service)
    # The canonical request around the query string, which may have two acceptable forms.
    head = f"{request.method.upper()}\n{_canonical_uri(request.path)}\n"
    tail = f"\n{_canonical_headers(scope.names, headers)}\n{scope.signed_headers}\n{payload_hash}"
    provided = claim.signature.encode("utf-8", "surrogatepass")
    if claim.presigned:
        # X-Amz-Signature is the only query parameter not covered by the signature.
        pairs = [(k, v) for k, v in pairs if unquote(k) != "X-Amz-Signature"]
    # No query string (every AWS JSON call) has the one form "".
    forms = _query_forms(_canonical_query(pairs), pairs) if pairs else ("",)
    for query in forms:
        canonical_request = f"{head}{query}{tail}"
        expected = _signature(key, claim.amz_date, scope.string, canonical_request)
        if hmac.compare_digest(expected.encode(), provided):
            return VerifiedCaller(
                access_key_id=scope.access_key_id,
                region=scope.region,
                service=scope.service,
                request_time=claim.request_time,
                session_token=claim.session_token,
            )
    raise InvalidSignatureError(_MISMATCH)


def parse_request_unverified(
    request: IncomingRequest,
    *,
    now: datetime,
    service: str | None = "kms",
    max_skew: timedelta = timedelta(minutes=5),
) -> VerifiedCaller:
    """Everything verify_request checks but the signature itself (emulator mode only:
    app/auth/emulator.py): a malformed, expired or wrongly scoped request fails the same
    way; any access key id and any signature are taken as they are."""
    now = _as_utc(now)
    claim = _parse_claim(request.header_index(), _query_pairs(request.query_string))
    scope = claim.scope
    if not scope.access_key_id:
        raise UnrecognizedClientError(_UNRECOGNIZED)
    _check_scope(claim, now, max_skew, service)
    return VerifiedCaller(
        access_key_id=scope.access_key_id,
        region=scope.region,
        service=scope.service,
        request_time=claim.request_time,
        session_token=claim.session_token,
    )


def _check_scope(claim: _Claim, now: datetime, max_skew: timedelta, service: str | None) -> None:
    """The request's time and credential scope, checked before its signature."""
    _check_time(claim, now, max_skew)
    scope = claim.scope
    if scope.terminator != TERMINATOR:
        raise InvalidSignatureError(
            "Credential should be scoped with a valid terminator: "
            f"'{TERMINATOR}', not '{scope.terminator}'."
        )
    if not scope.region_is_name:
        # No Region's name at all; checked before the signing-key cache keeps it.
        raise InvalidSignatureError(_INVALID_REGION)
    if (service is not None and scope.service != service) or (scope.date != claim.amz_date[:8]):
        raise InvalidSignatureError(_MISMATCH)


def is_region_name(text: str) -> bool:
    """Whether ``text`` has the form of a Region's name (KMS's RegionType)."""
    return len(text) <= _MAX_REGION_NAME and _REGION_NAME_RE.fullmatch(text) is not None


def check_region(region: str, regions: Collection[str]) -> None:
    """Refuse a (verified) credential scoped to a Region this deployment does not serve.

    AWS answers a scope naming a Region its endpoint does not serve as a signature that
    does not match: InvalidSignatureException (reference aws-kms-api.md §1, "wrong
    region/service in scope"), worded "Credential should be scoped to a valid region, not
    '<region>'." as SDK users quote it (aws/aws-sdk-java#1097, aws/aws-sdk-js-v3#5576).
    """
    if region not in regions:
        raise InvalidSignatureError(
            f"Credential should be scoped to a valid region, not '{region}'."
        )


# --- parsing ---------------------------------------------------------------------------------
def _parse_claim(headers: dict[str, list[str]], pairs: list[tuple[str, str]]) -> _Claim:
    params: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        key = unquote(raw_key)
        if key in _PRESIGN_PARAMS:
            params.setdefault(key, unquote(raw_value))

    authorization = headers.get("authorization")
    if authorization:
        if "X-Amz-Algorithm" in params:
            raise IncompleteSignatureError(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
                "or the Authorization header should be specified"
            )
        claim = _usual_authorization_header(authorization[0], headers)
        if claim is not None:
            return claim
        return _parse_authorization_header(authorization[0], headers)
    if params.keys() & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"}:
        return _parse_presigned_query(params, headers)
    raise MissingAuthenticationTokenError(_MISSING_TOKEN)


def _usual_authorization_header(value: str, headers: dict[str, list[str]]) -> _Claim | None:
    """The claim of an Authorization header as SDKs write it, from the parse of its part
    before the signature cached (_authorization_prefix); None for anything else, which
    _parse_authorization_header then parses (and refuses) in full.

    Only where the full parse would give the same claim: the header ends in
    ``, Signature=<letters and digits>`` and its prefix parses without error or Signature
    field of its own, there is an X-Amz-Date in the basic format, and a security token, if
    any, is signed.
    """
    prefix, separator, signature = value.rpartition(_SIGNATURE_SEPARATOR)
    if not (separator and signature.isalnum()) or len(prefix) > _MAX_CACHED_PREFIX:
        return None
    date_values = headers.get("x-amz-date")
    if not date_values:
        return None  # a Date header (or none): the full parse
    try:
        scope = _authorization_prefix(prefix)
        amz_date, request_time = _basic_format_time(date_values[0].strip())
    except (AuthenticationError, _UnusualHeader, ValueError):
        return None
    token_values = headers.get("x-amz-security-token")
    if token_values and "x-amz-security-token" not in scope.signed:
        return None
    return _Claim(
        scope=scope,
        signature=signature,
        amz_date=amz_date,
        request_time=request_time,
        expires=None,
        session_token=token_values[0] if token_values else None,
        presigned=False,
    )


class _UnusualHeader(Exception):
    """An Authorization prefix the cache does not hold (it is parsed in full each time)."""


@lru_cache(maxsize=512)  # a client sends the same prefix all day; bounded, exact-string keys
def _authorization_prefix(prefix: str) -> _Scope:
    """The scope an Authorization header ``<prefix>, Signature=<letters and digits>``
    names, whatever its signature; raises (and so caches nothing) for any prefix whose
    header the full parse would refuse on grounds of the prefix, or read differently."""
    if "Signature=" in prefix:  # a Signature field of its own would win over the last one
        raise _UnusualHeader
    algorithm, fields = _authorization_fields(f"{prefix}{_SIGNATURE_SEPARATOR}0", "")
    if (
        algorithm != ALGORITHM
        or not fields.get("Credential")
        or "SignedHeaders" not in fields
        or fields.get("Signature") != "0"
    ):
        raise _UnusualHeader
    return _credential_scope(fields["Credential"], fields["SignedHeaders"])


def _authorization_fields(value: str, whole: str) -> tuple[str, dict[str, str]]:
    """The algorithm and the key=value fields of an Authorization header (the first of
    each name); ``whole`` is the header quoted when a field has no '='."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for item in _AUTH_FIELD_SPLIT_RE.split(rest):
        if not item:
            continue
        name, equals, field = item.partition("=")
        if not equals:
            raise IncompleteSignatureError(
                f"'{name}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{whole}'."
            )
        fields.setdefault(name, field)
    return algorithm, fields


def _parse_authorization_header(value: str, headers: dict[str, list[str]]) -> _Claim:
    algorithm, fields = _authorization_fields(value, value)
    message = "".join(
        f"Authorization header requires '{name}' parameter. "
        for name in ("Credential", "Signature", "SignedHeaders")
        # An empty SignedHeaders is well-formed; it fails the Host check below instead.
        if not fields.get(name) and not (name == "SignedHeaders" and name in fields)
    )
    date_values = headers.get("x-amz-date") or headers.get("date")
    if not date_values:
        message += (
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        )
    if message:
        raise IncompleteSignatureError(f"{message}Authorization={value}")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now)."
        )
    assert date_values is not None  # for mypy: checked above
    amz_date, request_time = _parse_request_time(
        date_values[0], allow_http_date="x-amz-date" not in headers
    )
    scope = _credential_scope(fields["Credential"], fields["SignedHeaders"])
    token_values = headers.get("x-amz-security-token")
    if token_values and "x-amz-security-token" not in scope.signed:
        # An unsigned token could be swapped in transit; callers pass it on, so insist.
        raise InvalidSignatureError(
            "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."
        )
    return _Claim(
        scope=scope,
        signature=fields["Signature"],
        amz_date=amz_date,
        request_time=request_time,
        expires=None,
        session_token=token_values[0] if token_values else None,
        presigned=False,
    )


def _parse_presigned_query(params: dict[str, str], headers: dict[str, list[str]]) -> _Claim:
    missing = [name for name in _PRESIGN_REQUIRED if not params.get(name)]
    if missing:
        raise IncompleteSignatureError(
            "".join(f"AWS query-string parameters must include '{name}'. " for name in missing)
            + "Re-examine the query-string parameters."
        )
    algorithm = params["X-Amz-Algorithm"]
    if algorithm != ALGORITHM:
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now)."
        )
    amz_date, request_time = _parse_request_time(params["X-Amz-Date"], allow_http_date=False)
    expires: int | None = None
    if "X-Amz-Expires" in params:
        raw_expires = params["X-Amz-Expires"]
        if not (raw_expires.isascii() and raw_expires.isdigit()):
            raise IncompleteSignatureError("X-Amz-Expires should be a number")
        expires = int(raw_expires)
        if expires > MAX_PRESIGN_EXPIRES:
            raise IncompleteSignatureError(
                "X-Amz-Expires must be less than a week (in seconds); that is, the given "
                f"X-Amz-Expires must be less than {MAX_PRESIGN_EXPIRES} seconds"
            )
    scope = _credential_scope(params["X-Amz-Credential"], params["X-Amz-SignedHeaders"])
    token = params.get("X-Amz-Security-Token")  # covered by the canonical query string
    if token is None:
        token_values = headers.get("x-amz-security-token")
        if token_values and "x-amz-security-token" not in scope.signed:
            raise InvalidSignatureError(
                "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."
            )
        token = token_values[0] if token_values else None
    return _Claim(
        scope=scope,
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        request_time=request_time,
        expires=expires,
        session_token=token,
        presigned=True,
    )


def _parse_request_time(value: str, *, allow_http_date: bool) -> tuple[str, datetime]:
    """Return the basic-format timestamp that goes into the string to sign, and its time."""
    value = value.strip()
    try:
        return _basic_format_time(value)
    except ValueError:
        pass
    if allow_http_date and not _AMZ_DATE_RE.fullmatch(value):
        # botocore signs the basic-format form of the same instant when it sends `Date`.
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            pass
        else:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
            parsed = parsed.astimezone(UTC)
            return parsed.strftime(_AMZ_DATE_FORMAT), parsed
    raise IncompleteSignatureError(
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


@lru_cache(maxsize=1024)  # the requests of a second share their X-Amz-Date; bounded
def _basic_format_time(value: str) -> tuple[str, datetime]:
    """``value`` (already stripped: what is cached is 16 characters) in the basic format,
    and its time; ValueError (never cached) when it is not a valid one."""
    if not _AMZ_DATE_RE.fullmatch(value):
        raise ValueError("not in the basic format")
    # By hand: strptime costs more than the whole rest of a verification.
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    hour, minute, second = int(value[9:11]), int(value[11:13]), int(value[13:15])
    return value, datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _credential_scope(credential: str, signed_headers: str) -> _Scope:
    """The scope a credential and a signed-header list name; raises when the credential
    is not 5 slash-delimited elements or Host is not signed. Not cached itself (its inputs
    may be long): the usual header's is, with its prefix (_authorization_prefix)."""
    parts = credential.split("/")
    if len(parts) != 5:
        raise IncompleteSignatureError(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'"
        )
    access_key_id, date, region, service, terminator = parts
    names = tuple((name, name.lower()) for name in signed_headers.split(";"))
    signed = frozenset(lower for _, lower in names)
    if "host" not in signed:
        raise InvalidSignatureError("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return _Scope(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=signed_headers,
        signed=signed,
        names=names,
        region_is_name=is_region_name(region),
        string=f"{date}/{region}/{service}/{TERMINATOR}",
    )


# --- checks ----------------------------------------------------------------------------------
def _check_time(claim: _Claim, now: datetime, max_skew: timedelta) -> None:
    at = claim.request_time
    if at > now + max_skew:
        raise InvalidSignatureError(
            f"Signature not yet current: {_fmt(at)} is still later than "
            f"{_fmt(now + max_skew)} ({_fmt(now)} + {_span(max_skew)})"
        )
    # A presigned URL lives for X-Amz-Expires; a header-signed request for the skew window.
    window = max_skew if claim.expires is None else timedelta(seconds=claim.expires)
    if at < now - window:
        raise InvalidSignatureError(
            f"Signature expired: {_fmt(at)} is now earlier than "
            f"{_fmt(now - window)} ({_fmt(now)} - {_span(window)})"
        )


def _payload_hash(headers: dict[str, list[str]], body: bytes) -> str:
    declared = headers.get("x-amz-content-sha256")
    if not declared:
        return hashlib.sha256(body).hexdigest()
    value = declared[0]
    if value == UNSIGNED_PAYLOAD:
        return value
    if _HEX_SHA256_RE.fullmatch(value):
        # The signature covers only the declared hash, so the body must match it.
        if value.lower() != hashlib.sha256(body).hexdigest():
            raise InvalidSignatureError(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        return value
    # Streaming (chunk-signed) payloads are not supported: their bodies would go unchecked.
    raise InvalidSignatureError(
        f"The 'x-amz-content-sha256' header must be '{UNSIGNED_PAYLOAD}' "
        "or the SHA-256 hex digest of the payload."
    )


# --- canonical request -----------------------------------------------------------------------
def _index_headers(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return index


def _canonical_headers(names: Iterable[tuple[str, str]], index: dict[str, list[str]]) -> str:
    """One `name:value` line per signed header (name as signed, its lower case), each
    ending in a newline.

    Values are trimmed and inner whitespace runs collapsed with str.split(), exactly as
    botocore does; repeated headers are joined with ',' in the order received.
    """
    lines = []
    for name, lower in names:
        values = index.get(lower, ())
        # One value is the common case; skip the generator machinery for it.
        if len(values) == 1:
            value = " ".join(values[0].split())
        else:
            value = ",".join(" ".join(v.split()) for v in values)
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


@lru_cache(maxsize=256)  # KMS clients all post to "/"; REST paths repeat too
def _canonical_uri(path: str) -> str:
    # Non-S3 services: dot segments and empty segments removed, then the already
    # percent-encoded path is encoded once more (the "double encoding" of the SigV4 spec).
    return quote(_remove_dot_segments(path) if path else "/", safe="/~", errors="surrogatepass")


def _remove_dot_segments(path: str) -> str:
    # Same as botocore.utils.remove_dot_segments, including dropping '//' runs.
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment and segment != ".":
            output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    if not query_string:
        return []
    return [(k, v) for k, _, v in (pair.partition("=") for pair in query_string.split("&"))]


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    """Decode then RFC 3986-encode each key and value, sort by key then value.

    Independent of how the client escaped the URL, and decodes '+' as a space as form
    parsers (and the Go and JS SDKs) do.
    """
    encoded = sorted(
        (quote(unquote_plus(k), safe=_RFC3986_SAFE), quote(unquote_plus(v), safe=_RFC3986_SAFE))
        for k, v in pairs
        if k or v
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _query_forms(normalised: str, pairs: list[tuple[str, str]]) -> Iterable[str]:
    yield normalised
    # botocore signs the query verbatim, only sorted. It is the same string whenever the URL
    # was escaped the RFC 3986 way (botocore's own escaping); otherwise, e.g. a raw '+' or a
    # lowercase %xx, try it too. Both forms cover every byte of the query received.
    verbatim = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    if verbatim != normalised:
        yield verbatim


# --- cryptography ----------------------------------------------------------------------------
def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


@lru_cache(maxsize=1024)
def _signing_key(secret: str, date: str, region: str, service: str) -> hmac.HMAC:
    """HMAC-SHA256 keyed with the derived signing key, to be copied (never updated itself).

    The derived key changes only daily per (secret, region, service): caching it saves four
    HMACs per request, and keeping it keyed saves hashing its pads again on each. Keyed by
    the secret itself, so a rotated secret never hits stale keys."""
    key = _hmac(f"AWS4{secret}".encode("utf-8", "surrogatepass"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return hmac.new(_hmac(key, TERMINATOR), digestmod=hashlib.sha256)


def forget_signing_keys() -> None:
    """Drop the cached derived keys (a seal forgets every secret)."""
    _signing_key.cache_clear()


def _signature(key: hmac.HMAC, amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogatepass")).hexdigest()
    mac = key.copy()  # a copy per request: the cached object is shared across threads
    mac.update(f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}".encode())
    return mac.hexdigest()


# --- helpers ---------------------------------------------------------------------------------
def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC)


def _fmt(moment: datetime) -> str:
    return moment.strftime(_AMZ_DATE_FORMAT)


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} sec."
