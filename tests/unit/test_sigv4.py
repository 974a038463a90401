"""SigV4 verification, checked against requests signed by botocore itself."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.auth import sigv4
from app.auth.sigv4 import IncomingRequest, VerifiedCaller, verify_request
from domain.errors import (
    AuthenticationError,
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)
from tests.support.signing import sign_request

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ENDPOINT = "http://localhost:8080"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
KMS_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "TrentService.Encrypt",
}
KMS_BODY = b'{"KeyId": "alias/app", "Plaintext": "aGVsbG8="}'
HYPOTHESIS = settings(deadline=None, max_examples=75, suppress_health_check=[HealthCheck.too_slow])


def secret_for(access_key_id: str) -> str | None:
    return {AKID: SECRET}.get(access_key_id)


@contextmanager
def botocore_clock(at: datetime) -> Iterator[None]:
    """Make botocore sign as if the time were `at`."""
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        yield


def botocore_signed(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    at: datetime = NOW,
    service: str = "kms",
    region: str = "us-east-1",
    secret: str = SECRET,
    token: str | None = None,
    signer: type[SigV4Auth] = SigV4Auth,
    context: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> IncomingRequest:
    """Sign with botocore, then present the request as our server would receive it."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    request.context.update(context or {})
    with botocore_clock(at):
        signer(Credentials(AKID, secret, token), service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    received = [(name, value) for name, value in prepared.headers.items()]
    # What the HTTP client adds after signing; never signed, so it must not matter.
    received += [("Host", parts.netloc), ("User-Agent", "Botocore/1.x"), ("Accept", "*/*")]
    return IncomingRequest(
        method=prepared.method,
        path=parts.path,
        query_string=parts.query,
        headers=received,
        body=prepared.body or b"",
    )


def kms_request(**overrides: Any) -> IncomingRequest:
    options: dict[str, Any] = {"body": KMS_BODY, "headers": dict(KMS_HEADERS)}
    options.update(overrides)
    return botocore_signed("POST", f"{ENDPOINT}/", **options)


def verify(request: IncomingRequest, **overrides: Any) -> VerifiedCaller:
    options: dict[str, Any] = {"now": NOW}
    options.update(overrides)
    return verify_request(request, secret_for, **options)


def with_header(request: IncomingRequest, name: str, value: str | None) -> IncomingRequest:
    """Replace (or with None, drop) every header called `name`; append it if absent."""
    kept = [(n, v) for n, v in request.headers if n.lower() != name.lower()]
    if value is not None:
        kept.append((name, value))
    return dataclasses.replace(request, headers=kept)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def header(request: IncomingRequest, name: str) -> str:
    return next(v for n, v in request.headers if n.lower() == name.lower())


def rejects(
    request: IncomingRequest, error: type[AuthenticationError], message: str, **overrides: Any
) -> None:
    with pytest.raises(error) as caught:
        verify(request, **overrides)
    assert caught.value.message == message
    assert SECRET not in str(caught.value)


# --- requests signed by botocore verify --------------------------------------------------------
def test_kms_json_post_signed_by_botocore_verifies() -> None:
    caller = verify(kms_request())
    assert caller == VerifiedCaller(
        access_key_id=AKID,
        region="us-east-1",
        service="kms",
        request_time=NOW,
        session_token=None,
    )
    assert caller.request_time.tzinfo is not None


def test_request_from_a_real_boto3_kms_client_verifies() -> None:
    captured: list[Any] = []

    class Captured(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        captured.append(request)
        raise Captured  # stop before any network I/O

    session = boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, region_name="eu-west-2"
    )
    client = session.client("kms", endpoint_url="http://127.0.0.1:4599")
    client.meta.events.register("before-send.kms", capture)
    with pytest.raises(Captured):
        client.encrypt(KeyId="alias/app", Plaintext=b"hello")
    sent = captured[0]
    parts = urlsplit(sent.url)
    request = IncomingRequest(
        method=sent.method,
        path=parts.path,
        query_string=parts.query,
        # The real client holds header values as bytes; a server decodes them as latin-1.
        headers=[*((n, _text(v)) for n, v in sent.headers.items()), ("Host", parts.netloc)],
        body=sent.body,
    )
    caller = verify_request(request, secret_for, now=datetime.now(UTC))
    assert (caller.access_key_id, caller.region, caller.service) == (AKID, "eu-west-2", "kms")


def test_region_is_taken_from_the_credential_scope() -> None:
    assert verify(kms_request(region="ap-southeast-2")).region == "ap-southeast-2"


def test_session_token_is_signed_and_passed_through() -> None:
    request = kms_request(token="FQoGZXIvYXdzE+token/==")
    assert header(request, "X-Amz-Security-Token") == "FQoGZXIvYXdzE+token/=="
    assert verify(request).session_token == "FQoGZXIvYXdzE+token/=="


def test_get_with_reserved_unicode_and_space_query_values_verifies() -> None:
    params = {"Name": "a b+c/d?e&f=g", "Ünïcode": "ключ ☃", "empty": "", "tilde~": "*'()!"}
    url = f"{ENDPOINT}/v1/keys?{percent_encode_sequence(params)}"
    assert verify(botocore_signed("GET", url)).access_key_id == AKID


def test_query_given_as_botocore_params_verifies() -> None:
    request = botocore_signed("GET", f"{ENDPOINT}/v1/keys", params={"b": "2 2", "a": "1", "c": ""})
    assert "a=1" in request.query_string
    verify(request)


def test_repeated_query_keys_are_sorted_by_value() -> None:
    verify(botocore_signed("GET", f"{ENDPOINT}/v1/keys?tag=b&tag=a&tag=a%20b&alpha=1"))


def test_query_signed_verbatim_with_raw_plus_and_lowercase_escapes_verifies() -> None:
    # botocore signs a hand-written query as-is; curl scripts produce such URLs.
    verify(botocore_signed("GET", f"{ENDPOINT}/v1/keys?q=a+b&r=%2fx&flag"))


def test_query_signed_with_plus_decoded_as_space_verifies() -> None:
    # The Go and JS SDKs (and our signer) sign a raw '+' as '%20', the form-decoding reading.
    signed = our_signed("GET", f"{ENDPOINT}/v1/keys?q=a+b", {}, b"")
    verify(IncomingRequest("GET", "/v1/keys", "q=a+b", list(signed.items()), b""))


def test_path_segments_needing_encoding_verify() -> None:
    path = "/v1/keys/" + quote("alias/my key:ü", safe="") + "/grants/" + quote("a+b", safe="")
    verify(botocore_signed("GET", f"{ENDPOINT}{path}"))


def test_path_with_dot_segments_and_double_slashes_verifies() -> None:
    verify(botocore_signed("GET", f"{ENDPOINT}/v1/./keys//abc/../def/"))


def test_empty_path_is_signed_as_slash() -> None:
    request = botocore_signed("POST", ENDPOINT, body=KMS_BODY, headers=dict(KMS_HEADERS))
    verify(dataclasses.replace(request, path=""))


def test_repeated_headers_and_inner_whitespace_are_canonicalised() -> None:
    headers = {**KMS_HEADERS, "X-Amz-Meta-Note": "  two   spaces\tand tab  "}
    request = kms_request(headers=headers)
    # A proxy may strip the outer whitespace; the canonical form trims it anyway.
    verify(with_header(request, "x-amz-meta-note", "two spaces and tab"))


def test_date_header_instead_of_x_amz_date_verifies() -> None:
    request = kms_request(headers={**KMS_HEADERS, "Date": "placeholder"})
    assert header(request, "Date") == "Thu, 01 Jan 2026 12:00:00 -0000"
    assert not any(name.lower() == "x-amz-date" for name, _ in request.headers)
    assert verify(request).request_time == NOW


def test_unsigned_headers_may_change_in_transit() -> None:
    verify(with_header(kms_request(), "User-Agent", "some-proxy/2.0"))


def test_unsigned_payload_accepts_any_body() -> None:
    request = botocore_signed(
        "POST",
        "https://kms.local/",
        body=KMS_BODY,
        headers=dict(KMS_HEADERS),
        context={"payload_signing_enabled": False},
    )
    assert header(request, "X-Amz-Content-SHA256") == "UNSIGNED-PAYLOAD"
    verify(dataclasses.replace(request, body=b"{}"))


def test_declared_payload_hash_must_match_the_body() -> None:
    request = kms_request(headers={**KMS_HEADERS, "X-Amz-Content-SHA256": "0" * 64})
    rejects(
        request,
        InvalidSignatureError,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )


def test_streaming_payload_hashes_are_not_accepted() -> None:
    value = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    request = kms_request(headers={**KMS_HEADERS, "X-Amz-Content-SHA256": value})
    with pytest.raises(InvalidSignatureError):
        verify(request)


def test_any_service_is_accepted_when_none_is_expected() -> None:
    assert verify(kms_request(service="sts"), service=None).service == "sts"


# --- tampering ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: dataclasses.replace(r, body=KMS_BODY + b" "), id="body"),
        pytest.param(lambda r: dataclasses.replace(r, method="PUT"), id="method"),
        pytest.param(lambda r: dataclasses.replace(r, path="/v1/keys"), id="path"),
        pytest.param(lambda r: dataclasses.replace(r, query_string="DryRun=true"), id="query"),
        pytest.param(
            lambda r: with_header(r, "X-Amz-Target", "TrentService.Decrypt"), id="signed-header"
        ),
        pytest.param(lambda r: with_header(r, "Host", "evil.example:8080"), id="host"),
        pytest.param(lambda r: with_header(r, "X-Amz-Date", "20260101T120001Z"), id="date"),
        pytest.param(
            lambda r: with_header(r, "Authorization", header(r, "Authorization")[:-4] + "0000"),
            id="signature",
        ),
        pytest.param(
            lambda r: with_header(
                r,
                "Authorization",
                header(r, "Authorization").replace("content-type;", ""),
            ),
            id="signed-headers-list",
        ),
    ],
)
def test_tampered_request_is_rejected(tamper: Any) -> None:
    rejects(tamper(kms_request()), InvalidSignatureError, MISMATCH)


def test_wrong_secret_is_rejected() -> None:
    rejects(kms_request(secret="not-the-secret"), InvalidSignatureError, MISMATCH)


def test_tampered_session_token_is_rejected() -> None:
    request = with_header(kms_request(token="token-1"), "X-Amz-Security-Token", "token-2")
    rejects(request, InvalidSignatureError, MISMATCH)


def test_unsigned_session_token_is_rejected() -> None:
    rejects(
        with_header(kms_request(), "X-Amz-Security-Token", "smuggled"),
        InvalidSignatureError,
        "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.",
    )


def test_unknown_access_key_is_unrecognized() -> None:
    with pytest.raises(UnrecognizedClientError) as caught:
        verify_request(kms_request(), lambda _akid: None, now=NOW)
    assert caught.value.message == "The security token included in the request is invalid."


def test_scope_for_another_service_is_rejected_even_when_consistently_signed() -> None:
    rejects(kms_request(service="s3"), InvalidSignatureError, MISMATCH)


class _ScopeDateSigner(SigV4Auth):
    """A consistent signer whose credential-scope date differs from X-Amz-Date's date."""

    scope_date = "20251231"

    def credential_scope(self, request: Any) -> str:
        return f"{self.scope_date}/{self._region_name}/{self._service_name}/aws4_request"

    def scope(self, request: Any) -> str:
        return f"{self.credentials.access_key}/{self.credential_scope(request)}"

    def signature(self, string_to_sign: str, request: Any) -> str:
        key = self._sign(f"AWS4{self.credentials.secret_key}".encode(), self.scope_date)
        for part in (self._region_name, self._service_name, "aws4_request"):
            key = self._sign(key, part)
        return self._sign(key, string_to_sign, hex=True)


def test_scope_date_other_than_request_date_is_rejected() -> None:
    rejects(kms_request(signer=_ScopeDateSigner), InvalidSignatureError, MISMATCH)


def test_scope_date_signer_is_otherwise_valid() -> None:
    # Control for the test above: the same signer with a matching date passes.
    matching = type("Matching", (_ScopeDateSigner,), {"scope_date": "20260101"})
    verify(kms_request(signer=matching))


def test_scope_terminator_must_be_aws4_request() -> None:
    request = kms_request()
    forged = header(request, "Authorization").replace("/aws4_request", "/aws5_request")
    rejects(
        with_header(request, "Authorization", forged),
        InvalidSignatureError,
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
    )


# --- missing or malformed credentials ------------------------------------------------------------
def test_request_without_credentials_is_missing_authentication_token() -> None:
    request = with_header(kms_request(), "Authorization", None)
    rejects(request, MissingAuthenticationTokenError, "Request is missing Authentication Token")


GOOD_CREDENTIAL = f"Credential={AKID}/20260101/us-east-1/kms/aws4_request"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc",
            "Authorization header requires 'Credential' parameter. "
            "Authorization=AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host",
            "Authorization header requires 'Signature' parameter. "
            f"Authorization=AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host",
        ),
        (
            "AWS4-HMAC-SHA256",
            "Authorization header requires 'Credential' parameter. "
            "Authorization header requires 'Signature' parameter. "
            "Authorization header requires 'SignedHeaders' parameter. "
            "Authorization=AWS4-HMAC-SHA256",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders, Signature=abc",
            "'SignedHeaders' not a valid key=value pair (missing equal-sign) in Authorization "
            f"header: 'AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders, Signature=abc'.",
        ),
        (
            f"AWS4-HMAC-SHA1 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=abc",
            "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1' (only AWS4-HMAC-SHA256 for now).",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1, "
            "SignedHeaders=host, Signature=abc",
            "Credential must have exactly 5 slash-delimited elements, "
            "e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20260101/us-east-1'",
        ),
    ],
)
def test_malformed_authorization_header_is_incomplete_signature(
    authorization: str, message: str
) -> None:
    request = with_header(kms_request(), "Authorization", authorization)
    rejects(request, IncompleteSignatureError, message)


def test_authorization_without_any_date_header_is_incomplete_signature() -> None:
    request = with_header(kms_request(), "X-Amz-Date", None)
    authorization = header(request, "Authorization")
    rejects(
        request,
        IncompleteSignatureError,
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        f"Authorization={authorization}",
    )


def test_unparseable_x_amz_date_is_incomplete_signature() -> None:
    rejects(
        with_header(kms_request(), "X-Amz-Date", "2026-01-01T12:00:00Z"),
        IncompleteSignatureError,
        "Date must be in ISO-8601 'basic format'. Got '2026-01-01T12:00:00Z'. "
        "See http://en.wikipedia.org/wiki/ISO_8601",
    )


def test_host_must_be_signed() -> None:
    request = kms_request()
    forged = header(request, "Authorization").replace("host;", "")
    rejects(
        with_header(request, "Authorization", forged),
        InvalidSignatureError,
        "'Host' must be a 'SignedHeader' in the AWS Authorization.",
    )


# --- clock skew ----------------------------------------------------------------------------------
def test_request_older_than_five_minutes_has_expired() -> None:
    request = kms_request(at=datetime(2024, 8, 20, 23, 1, 43, tzinfo=UTC))
    rejects(
        request,
        InvalidSignatureError,
        "Signature expired: 20240820T230143Z is now earlier than 20240820T230302Z "
        "(20240820T230802Z - 5 min.)",
        now=datetime(2024, 8, 20, 23, 8, 2, tzinfo=UTC),
    )


def test_request_more_than_five_minutes_ahead_is_not_yet_current() -> None:
    request = kms_request(at=datetime(2024, 8, 20, 23, 13, 3, tzinfo=UTC))
    rejects(
        request,
        InvalidSignatureError,
        "Signature not yet current: 20240820T231303Z is still later than 20240820T231302Z "
        "(20240820T230802Z + 5 min.)",
        now=datetime(2024, 8, 20, 23, 8, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize("offset", [timedelta(minutes=-5), timedelta(minutes=5)])
def test_request_exactly_five_minutes_off_is_accepted(offset: timedelta) -> None:
    verify(kms_request(at=NOW + offset))


def test_skew_is_checked_only_for_known_access_keys() -> None:
    with pytest.raises(UnrecognizedClientError):
        verify_request(kms_request(), lambda _: None, now=NOW + timedelta(days=1))


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_request(kms_request(), secret_for, now=NOW.replace(tzinfo=None))


# --- presigned URLs ------------------------------------------------------------------------------
def presigned(url: str, *, expires: int = 3600, **options: Any) -> IncomingRequest:
    class Signer(SigV4QueryAuth):
        def __init__(self, credentials: Credentials, service: str, region: str) -> None:
            super().__init__(credentials, service, region, expires=expires)

    return botocore_signed("GET", url, signer=Signer, **options)


def test_presigned_url_verifies() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys?Limit=10&Marker=a%20b")
    assert "X-Amz-Signature=" in request.query_string
    assert not any(name.lower() == "authorization" for name, _ in request.headers)
    caller = verify(request, now=NOW + timedelta(minutes=30))
    assert (caller.access_key_id, caller.region, caller.request_time) == (AKID, "us-east-1", NOW)


def test_presigned_url_passes_its_session_token_through() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys", token="tok+en/==")
    assert verify(request).session_token == "tok+en/=="


def test_presigned_url_with_tampered_query_is_rejected() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys?Limit=10")
    tampered = request.query_string.replace("Limit=10", "Limit=11")
    rejects(dataclasses.replace(request, query_string=tampered), InvalidSignatureError, MISMATCH)


def test_presigned_url_with_an_extra_query_parameter_is_rejected() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys")
    extended = dataclasses.replace(request, query_string=request.query_string + "&Limit=1")
    rejects(extended, InvalidSignatureError, MISMATCH)


def test_presigned_url_expires_after_x_amz_expires() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys", expires=600)
    verify(request, now=NOW + timedelta(seconds=600))
    rejects(
        request,
        InvalidSignatureError,
        "Signature expired: 20260101T120000Z is now earlier than 20260101T120001Z "
        "(20260101T121001Z - 10 min.)",
        now=NOW + timedelta(seconds=601),
    )


def test_presigned_url_from_the_future_is_not_yet_current() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys", at=NOW + timedelta(minutes=6))
    with pytest.raises(InvalidSignatureError, match=r"^Signature not yet current: "):
        verify(request)


def test_presigned_url_may_not_live_longer_than_a_week() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys", expires=604_801)
    rejects(
        request,
        IncompleteSignatureError,
        "X-Amz-Expires must be less than a week (in seconds); that is, the given "
        "X-Amz-Expires must be less than 604800 seconds",
    )


def test_presigned_url_missing_parameters_is_incomplete_signature() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys")
    kept = "&".join(
        pair
        for pair in request.query_string.split("&")
        if not pair.startswith(("X-Amz-Credential=", "X-Amz-Date="))
    )
    rejects(
        dataclasses.replace(request, query_string=kept),
        IncompleteSignatureError,
        "AWS query-string parameters must include 'X-Amz-Credential'. "
        "AWS query-string parameters must include 'X-Amz-Date'. "
        "Re-examine the query-string parameters.",
    )


def test_header_and_query_authentication_together_are_refused() -> None:
    request = presigned(f"{ENDPOINT}/v1/keys")
    both = with_header(request, "Authorization", header(kms_request(), "Authorization"))
    with pytest.raises(IncompleteSignatureError, match=r"^Only one auth mechanism allowed"):
        verify(both)


# --- our own signer ------------------------------------------------------------------------------
def our_signed(
    method: str, url: str, headers: dict[str, str], body: bytes, **kw: Any
) -> dict[str, str]:
    options: dict[str, Any] = {
        "access_key_id": AKID,
        "secret_access_key": SECRET,
        "region": "us-east-1",
        "service": "kms",
        "now": NOW,
    }
    options.update(kw)
    return sign_request(method, url, headers, body, **options)


def test_sign_request_round_trips_through_verify_request() -> None:
    url = "http://LocalHost:8080/v1/keys/alias%2Fa%20b?Name=a%20b&Other=%E2%98%83&z="
    signed = sign_request(
        "POST",
        url,
        dict(KMS_HEADERS),
        KMS_BODY,
        access_key_id=AKID,
        secret_access_key=SECRET,
        region="eu-central-1",
        service="kms",
        now=NOW,
        session_token="session",
    )
    assert signed["Host"] == "localhost:8080"
    assert signed["X-Amz-Date"] == "20260101T120000Z"
    assert signed["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/eu-central-1/kms/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
    )
    parts = urlsplit(url)
    request = IncomingRequest("POST", parts.path, parts.query, list(signed.items()), KMS_BODY)
    caller = verify(request)
    assert (caller.region, caller.session_token) == ("eu-central-1", "session")


def test_sign_request_matches_botocore_exactly() -> None:
    url = f"{ENDPOINT}/v1/keys/abc?b=2&a=%20x"
    headers = {**KMS_HEADERS, "Host": "localhost:8080"}
    ours = our_signed("POST", url, headers, KMS_BODY)
    theirs = AWSRequest(method="POST", url=url, data=KMS_BODY, headers=headers)
    with botocore_clock(NOW):
        SigV4Auth(Credentials(AKID, SECRET), "kms", "us-east-1").add_auth(theirs)
    assert ours["Authorization"] == theirs.headers["Authorization"]


def test_sign_request_encodes_a_raw_path_as_an_http_client_would_send_it() -> None:
    signed = our_signed("GET", f"{ENDPOINT}/v1/keys/a b", {}, b"")
    verify(IncomingRequest("GET", "/v1/keys/a%20b", "", list(signed.items()), b""))


def test_sign_request_does_not_mutate_its_headers_argument() -> None:
    headers = {"Authorization": "stale", "X-Amz-Target": "TrentService.ListKeys"}
    our_signed("POST", f"{ENDPOINT}/", headers, b"{}")
    assert headers == {"Authorization": "stale", "X-Amz-Target": "TrentService.ListKeys"}


def test_signing_and_verifying_are_fast() -> None:
    signed = our_signed("POST", f"{ENDPOINT}/", dict(KMS_HEADERS), KMS_BODY)
    request = IncomingRequest("POST", "/", "", list(signed.items()), KMS_BODY)
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        verify(request)
    per_call = (time.perf_counter() - started) / rounds
    # Typically ~30 us; the bound only catches a lost signing-key cache or similar.
    assert per_call < 500e-6


# --- open-ended inputs ---------------------------------------------------------------------------
@HYPOTHESIS
@given(body=st.binary(max_size=4096))
def test_any_body_signed_by_botocore_verifies(body: bytes) -> None:
    request = kms_request(body=body)
    verify(request)
    rejects(dataclasses.replace(request, body=body + b"\0"), InvalidSignatureError, MISMATCH)


@HYPOTHESIS
@given(
    params=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("X-Amz-")),
        st.text(max_size=24),
        max_size=6,
    )
)
def test_any_query_signed_by_botocore_verifies(params: dict[str, str]) -> None:
    query = percent_encode_sequence(params)
    verify(botocore_signed("GET", f"{ENDPOINT}/v1/keys?{query}" if query else ENDPOINT))


@HYPOTHESIS
@given(segments=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4))
def test_any_path_signed_by_botocore_verifies(segments: list[str]) -> None:
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    verify(botocore_signed("GET", f"{ENDPOINT}{path}"))


@HYPOTHESIS
@given(
    value=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=40,
    )
)
def test_any_header_value_signed_by_botocore_verifies(value: str) -> None:
    verify(kms_request(headers={**KMS_HEADERS, "X-Amz-Meta-Value": value}))


@HYPOTHESIS
@given(
    params=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=16), max_size=4),
    body=st.binary(max_size=256),
)
def test_sign_request_output_always_verifies(params: dict[str, str], body: bytes) -> None:
    query = percent_encode_sequence(params)
    signed = our_signed("POST", f"{ENDPOINT}/?{query}", {}, body)
    verify(IncomingRequest("POST", "/", query, list(signed.items()), body))


# --- what is cached per client is still checked per request ---------------------------------------
UNSIGNED_TOKEN = "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."


@pytest.fixture
def cold_caches() -> Iterator[None]:
    sigv4._authorization_prefix.cache_clear()
    sigv4._basic_format_time.cache_clear()
    yield


def cached_request() -> IncomingRequest:
    """A request whose Authorization prefix and X-Amz-Date are cached by verifying it."""
    request = kms_request()
    verify(request)
    return request


def with_signature(request: IncomingRequest, signature: str) -> IncomingRequest:
    prefix, _, _ = header(request, "Authorization").rpartition(", Signature=")
    return with_header(request, "Authorization", f"{prefix}, Signature={signature}")


@pytest.mark.usefixtures("cold_caches")
def test_a_clients_authorization_prefix_is_parsed_once() -> None:
    parse = mock.patch.object(sigv4, "_authorization_fields", wraps=sigv4._authorization_fields)
    with parse as parsed:
        for body in (b"{}", b'{"KeyId": "a"}', b'{"KeyId": "b"}'):
            verify(kms_request(body=body))
    assert parsed.call_count == 1


@pytest.mark.usefixtures("cold_caches")
def test_a_cached_prefix_still_checks_the_signature() -> None:
    rejects(with_signature(cached_request(), "0" * 64), InvalidSignatureError, MISMATCH)


@pytest.mark.usefixtures("cold_caches")
def test_a_cached_prefix_still_covers_every_signed_header() -> None:
    request = with_header(cached_request(), "X-Amz-Target", "TrentService.Decrypt")
    rejects(request, InvalidSignatureError, MISMATCH)


@pytest.mark.usefixtures("cold_caches")
def test_a_cached_prefix_is_not_shared_with_another_access_key() -> None:
    request = cached_request()
    other = "AKIDOTHER0000001"
    relabelled = with_header(
        request, "Authorization", header(request, "Authorization").replace(AKID, other)
    )
    with pytest.raises(InvalidSignatureError) as caught:
        verify_request(relabelled, {AKID: SECRET, other: "another-secret"}.get, now=NOW)
    assert caught.value.message == MISMATCH
    with pytest.raises(UnrecognizedClientError):
        verify(relabelled)


@pytest.mark.usefixtures("cold_caches")
def test_a_cached_prefix_still_refuses_an_unsigned_security_token() -> None:
    request = with_header(cached_request(), "X-Amz-Security-Token", "smuggled")
    rejects(request, InvalidSignatureError, UNSIGNED_TOKEN)


@pytest.mark.usefixtures("cold_caches")
@pytest.mark.parametrize("earlier", ["0", "0" * 64])
def test_with_two_signature_fields_the_first_is_checked_as_without_the_cache(
    earlier: str,
) -> None:
    request = cached_request()
    valid = header(request, "Authorization").rpartition(", Signature=")[2]
    for _ in range(2):  # the first time parses in full, the second could use a cache
        rejects(
            with_signature(request, f"{earlier}, Signature={valid}"),
            InvalidSignatureError,
            MISMATCH,
        )


@pytest.mark.usefixtures("cold_caches")
def test_a_cached_request_time_is_still_checked_against_the_clock() -> None:
    request = cached_request()
    with pytest.raises(InvalidSignatureError) as caught:
        verify(request, now=NOW + timedelta(minutes=5, seconds=1))
    assert caught.value.message.startswith("Signature expired: 20260101T120000Z")


@pytest.mark.usefixtures("cold_caches")
def test_an_authorization_header_too_long_to_cache_still_verifies() -> None:
    many = {f"X-Amz-Meta-Header-{n:03d}": "v" for n in range(80)}
    request = kms_request(headers={**KMS_HEADERS, **many})
    assert len(header(request, "Authorization")) > 1024 + len(", Signature=") + 64
    assert verify(request).access_key_id == AKID
    assert sigv4._authorization_prefix.cache_info().currsize == 0
    rejects(with_signature(request, "0" * 64), InvalidSignatureError, MISMATCH)


@pytest.mark.usefixtures("cold_caches")
def test_made_up_prefixes_and_dates_do_not_grow_the_caches_past_their_bounds() -> None:
    request = kms_request()
    authorization = header(request, "Authorization")
    prefixes = sigv4._authorization_prefix.cache_info().maxsize
    dates = sigv4._basic_format_time.cache_info().maxsize
    assert prefixes is not None and dates is not None
    for n in range(max(prefixes, dates) + 10):
        forged = with_header(
            request, "Authorization", authorization.replace(AKID, f"AKIDFLOOD{n:07d}")
        )
        moment = NOW + timedelta(seconds=n)
        forged = with_header(forged, "X-Amz-Date", moment.strftime("%Y%m%dT%H%M%SZ"))
        with pytest.raises(UnrecognizedClientError):
            verify(forged)
    assert sigv4._authorization_prefix.cache_info().currsize == prefixes
    assert sigv4._basic_format_time.cache_info().currsize == dates
    assert verify(request).access_key_id == AKID  # and the client's own still verifies
