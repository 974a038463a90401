"""A source that keeps failing authentication is refused cheaply, as AWS refuses callers
over their rate (ThrottlingException, HTTP 400: reference aws-kms-api.md §1 "Throttling"),
while requests signed with valid credentials from the same source go on being served.

Each test sends from a loopback address of its own (127.0.0.0/8 is all loopback), so that
its budget is its own in the session's shared service.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from app.auth.credential_reads import KnownAccessKeys
from app.auth.limiter import DEFAULT_BURST
from app.infrastructure.read_models import active_access_key_ids
from domain.errors import THROTTLING_MESSAGE
from tests.aws.conftest import JSON_CONTENT_TYPE, ledger_position
from tests.conftest import REGION, Service
from tests.support.signing import sign_request
from tests.support.waiting import eventually

_SOURCES = itertools.count(2)


@pytest.fixture
def source() -> Iterator[httpx.Client]:
    """An HTTP client on a loopback address no other test sends from."""
    n = next(_SOURCES)
    address = f"127.0.{100 + n // 250}.{n % 250 + 2}"
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10) as c:
        yield c


def unknown_key() -> str:
    return "AKLG" + uuid.uuid4().hex[:16].upper()


def kms_call(
    client: httpx.Client,
    service: Service,
    access_key_id: str,
    secret: str,
    target: str = "TrentService.ListKeys",
    body: bytes = b"{}",
    signed_for: str = "kms",
) -> httpx.Response:
    """POST / signed (with ``secret``, right or wrong) for ``access_key_id``."""
    url = service.endpoint + "/"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": target},
        body,
        access_key_id=access_key_id,
        secret_access_key=secret,
        region=REGION,
        service=signed_for,
        now=datetime.now(UTC),
    )
    return client.post(url, content=body, headers=headers)


def error_type(response: httpx.Response) -> str:
    return str(response.json().get("__type", "")) if response.content else ""


def spend_budget(client: httpx.Client, service: Service) -> list[str]:
    """Fail authentication from ``client``'s address until it is refused; the answers."""
    answers = []
    for _ in range(DEFAULT_BURST * 2):
        answers.append(error_type(kms_call(client, service, unknown_key(), "wrong")))
        if answers[-1] == "ThrottlingException":
            return answers
    raise AssertionError(f"never throttled: {answers[-5:]}")


@contextlib.contextmanager
def events_locked(service: Service) -> Iterator[None]:
    """Whoever reads the ledger's events waits until the block ends."""
    with psycopg.connect(service.runtime.database_url) as conn, conn.transaction():
        conn.execute("LOCK TABLE keyledger_events, keyledger_snapshots IN ACCESS EXCLUSIVE MODE")
        yield


def test_a_source_that_keeps_failing_authentication_is_refused_with_throttling(service, source):
    answers = spend_budget(source, service)

    assert len(answers) > DEFAULT_BURST
    assert set(answers[:DEFAULT_BURST]) == {"UnrecognizedClientException"}
    response = kms_call(source, service, unknown_key(), "wrong")
    assert response.status_code == 400
    assert response.json() == {"__type": "ThrottlingException", "message": THROTTLING_MESSAGE}


def test_a_throttled_source_is_refused_before_any_credential_is_read(service, source):
    spend_budget(source, service)

    with events_locked(service):  # a credential read would wait for the lock
        started = time.monotonic()
        response = kms_call(source, service, unknown_key(), "wrong")
        elapsed = time.monotonic() - started

    assert error_type(response) == "ThrottlingException" and elapsed < 1.0


def test_valid_credentials_from_a_throttled_source_are_still_served(service, source):
    assert kms_call(source, service, service.access_key_id, service.secret_access_key).is_success
    spend_budget(source, service)

    response = kms_call(source, service, service.access_key_id, service.secret_access_key)

    assert response.status_code == 200 and "Keys" in response.json()


def test_a_valid_key_no_longer_cached_is_still_read_for_a_throttled_source(service, source):
    identity = service.runtime.identity
    identity._credentials._found.pop(service.access_key_id)  # its cache entry expired
    spend_budget(source, service)

    response = kms_call(source, service, service.access_key_id, service.secret_access_key)

    assert response.status_code == 200


def test_a_throttled_bad_signature_leaves_no_audit_record(service, source):
    spend_budget(source, service)
    before = ledger_position(service)

    response = kms_call(source, service, service.access_key_id, "not-the-secret")

    assert error_type(response) == "ThrottlingException"
    assert ledger_position(service) == before


def test_a_bad_signature_within_the_budget_is_still_recorded(service, source):
    before = ledger_position(service)

    response = kms_call(source, service, service.access_key_id, "not-the-secret")

    assert error_type(response) == "InvalidSignatureException"
    assert ledger_position(service) > before


def test_other_sources_are_not_throttled_for_one_that_is(service, source):
    spend_budget(source, service)

    with httpx.Client(
        transport=httpx.HTTPTransport(local_address="127.0.99.250"), timeout=10
    ) as elsewhere:
        response = kms_call(elsewhere, service, unknown_key(), "wrong")

    assert error_type(response) == "UnrecognizedClientException"


def test_cloudtrail_answers_a_throttled_source_with_throttling_exception(service, source):
    spend_budget(source, service)
    body = json.dumps({"MaxResults": 1}).encode()

    response = kms_call(
        source,
        service,
        unknown_key(),
        "wrong",
        target="com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
        body=body,
        signed_for="cloudtrail",
    )

    assert (response.status_code, error_type(response)) == (400, "ThrottlingException")


def test_rest_answers_a_throttled_source_429(service, source):
    spend_budget(source, service)
    url = service.endpoint + "/v1/keys"
    headers = sign_request(
        "GET",
        url,
        {},
        b"",
        access_key_id=unknown_key(),
        secret_access_key="wrong",
        region=REGION,
        service="kms",
        now=datetime.now(UTC),
    )

    response = source.get(url, headers=headers)

    assert (response.status_code, error_type(response)) == (429, "ThrottlingException")


def test_the_index_of_issued_access_keys_lists_the_active_ones(service):
    known = KnownAccessKeys(active_access_key_ids(service.runtime.pool), refresh_seconds=0.0)

    assert eventually(lambda: service.access_key_id in known)
    assert unknown_key() not in known
