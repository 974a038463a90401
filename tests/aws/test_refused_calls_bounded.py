"""A call refused before its caller is known (wrong secret, oversized body, ...) leaves a
record of constant size when it names one of our access keys: the operation (if it is one),
the error code, the source IP and the access key id; never its body, its parameters, its
user agent or any other text it chose. On every protocol."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from eventsourcing.utils import get_topic

from domain.audit import AuditedCall
from tests.access.conftest import Identities, Principal
from tests.audit.conftest import records
from tests.aws.conftest import RawSender, ledger_position
from tests.conftest import REGION, Service
from tests.support.signing import sign_request

MAX_RECORD_BYTES = 4096
LONG_USER_AGENT = "agent/" + "u" * 20_000
CLOUDTRAIL_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"


def call_records(service: Service, since: int, principal: Principal) -> list[bytes]:
    """The stored state of every CallRecorded event since ``since`` that names the
    principal's access key."""
    until = ledger_position(service)
    if until <= since:
        return []
    found = service.runtime.ledger.recorder.select_notifications(
        start=since + 1, limit=until - since, stop=until
    )
    topic = get_topic(AuditedCall.CallRecorded)
    return [
        n.state
        for n in found
        if n.topic == topic
        and orjson.loads(n.state)["actor"]["access_key_id"] == principal.access_key_id
    ]


def trail_record(service: Service, principal: Principal) -> dict[str, Any]:
    (record,) = records(service.client("cloudtrail"), "AccessKeyId", principal.access_key_id)
    return record


def assert_bounded_refusal(service: Service, since: int, principal: Principal) -> dict[str, Any]:
    (state,) = call_records(service, since, principal)
    assert len(state) < MAX_RECORD_BYTES, len(state)
    record = trail_record(service, principal)
    assert record["requestParameters"] is None
    assert record["userIdentity"]["arn"] == principal.arn
    assert len(record["_entry"]["CloudTrailEvent"]) < MAX_RECORD_BYTES
    return record


def fresh_principal(service: Service) -> Principal:
    return Identities(service).principal()


# --- AWS JSON (KMS) ------------------------------------------------------------------------------
def test_a_call_with_a_wrong_secret_records_none_of_its_body(
    service: Service, raw: RawSender
) -> None:
    principal = fresh_principal(service)
    body = {"Description": "d" * 400_000, "Tags": [{"TagKey": "k" * 128, "TagValue": "v" * 256}]}
    since = ledger_position(service)

    answer = raw(
        "TrentService.CreateKey",
        body,
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
        extra_headers={"User-Agent": LONG_USER_AGENT},
    )

    assert answer.error_type == "InvalidSignatureException"
    record = assert_bounded_refusal(service, since, principal)
    assert (record["eventName"], record["errorCode"]) == ("CreateKey", "InvalidSignatureException")
    assert record["sourceIPAddress"] == "127.0.0.1"
    assert "u" * 100 not in record["userAgent"]


def test_a_megabyte_body_with_a_wrong_secret_leaves_a_record_of_constant_size(
    service: Service, raw: RawSender
) -> None:
    principal = fresh_principal(service)
    since = ledger_position(service)

    answer = raw(
        "TrentService.CreateKey",
        {"Description": "d" * 1_048_576},
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
    )

    assert answer.status == 413
    record = assert_bounded_refusal(service, since, principal)
    assert record["errorCode"] == "RequestEntityTooLargeException"


def test_an_operation_name_that_is_none_is_recorded_as_a_placeholder(
    service: Service, raw: RawSender
) -> None:
    principal = fresh_principal(service)
    since = ledger_position(service)

    raw(
        "TrentService.Chosen" + "X" * 100,
        {},
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
    )

    record = assert_bounded_refusal(service, since, principal)
    assert record["eventName"] == "UnknownOperation"


def test_a_claimed_region_is_recorded_only_when_it_is_a_region_name(
    service: Service, raw: RawSender
) -> None:
    principal = fresh_principal(service)
    since = ledger_position(service)

    raw(
        "TrentService.ListKeys",
        {},
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
        region="r" * 5000,
    )

    record = assert_bounded_refusal(service, since, principal)
    assert "r" * 100 not in record["awsRegion"]


# --- CloudTrail ----------------------------------------------------------------------------------
def test_a_lookup_with_a_wrong_secret_records_none_of_its_body(service: Service) -> None:
    principal = fresh_principal(service)
    attribute = {"AttributeKey": "EventName", "AttributeValue": "e" * 50_000}
    body = json.dumps({"LookupAttributes": [attribute]}).encode()
    url = service.endpoint + "/"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": CLOUDTRAIL_TARGET},
        body,
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
        region=REGION,
        service="cloudtrail",
        now=datetime.now(UTC),
    )
    since = ledger_position(service)

    answer = httpx.post(url, content=body, headers=headers, timeout=10)

    assert answer.json()["__type"] == "InvalidSignatureException"
    record = assert_bounded_refusal(service, since, principal)
    assert record["eventName"] == "LookupEvents"


# --- REST ----------------------------------------------------------------------------------------
def test_a_rest_call_with_a_wrong_secret_records_none_of_its_body(service: Service) -> None:
    principal = fresh_principal(service)
    body = json.dumps({"description": "d" * 400_000, "tags": {"k": "v" * 256}}).encode()
    url = service.endpoint + "/v1/keys"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/json", "User-Agent": LONG_USER_AGENT},
        body,
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
        region=REGION,
        service="kms",
        now=datetime.now(UTC),
    )
    since = ledger_position(service)

    answer = httpx.post(url, content=body, headers=headers, timeout=10)

    assert (answer.status_code, answer.json()["__type"]) == (401, "InvalidSignatureException")
    record = assert_bounded_refusal(service, since, principal)
    assert record["eventName"] == "CreateKey"
