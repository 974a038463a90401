"""LookupEvents as CloudTrail's Event history: the last 90 days only (the auditors' REST query
and exports keep everything), and CloudTrail's own error for each bad request, HTTP 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.entrypoints.cloudtrail_json import TARGET_PREFIX
from tests.access.conftest import Principal
from tests.audit.conftest import by_request, cloudtrail_of, records
from tests.audit.test_rest_admin_audit import rest_of
from tests.conftest import REGION, Service
from tests.support.signing import sign_request

WINDOW = timedelta(days=90)


@pytest.fixture
def unvalidated(service: Service) -> Iterator[Any]:
    """The administrator's CloudTrail client with botocore's own checks off (it checks only
    MaxResults' minimum), so that each bad request reaches the service."""
    yield boto3.client(
        "cloudtrail",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


def _names(client: Any, key_arn: str, **kwargs: Any) -> list[str]:
    return [r["eventName"] for r in records(client, "ResourceName", key_arn, **kwargs)]


def test_lookup_events_covers_the_last_90_days_and_the_rest_query_everything(
    service: Service, auditor: Principal
) -> None:
    clock = service.runtime.clock
    created_at = clock.now() - timedelta(seconds=2)
    key = auditor.kms.create_key()["KeyMetadata"]
    auditor.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    cloudtrail = cloudtrail_of(service, auditor)  # an account of its own: moved records stay in it
    assert _names(cloudtrail, key["Arn"]) == ["Encrypt", "CreateKey"]
    clock.advance(WINDOW + timedelta(days=1))
    try:
        assert _names(cloudtrail, key["Arn"]) == []
        # A start time older than the window finds what the window holds: no error.
        assert _names(cloudtrail, key["Arn"], StartTime=created_at) == []
        assert (
            _names(
                cloudtrail, key["Arn"], StartTime=created_at, EndTime=created_at + timedelta(days=1)
            )
            == []
        )
        auditor.kms.describe_key(KeyId=key["KeyId"])
        assert _names(cloudtrail, key["Arn"], StartTime=created_at) == ["DescribeKey"]
        rest = rest_of(service, auditor)
        try:
            everything = rest.get("/v1/audit/events", params={"key": key["Arn"]})
            exported = rest.get("/v1/audit/events", params={"key": key["Arn"], "format": "jsonl"})
        finally:
            rest.http.close()
        assert everything.status_code == 200, everything.text
        assert [r["eventName"] for r in everything.json()["events"]] == [
            "DescribeKey",
            "Encrypt",
            "CreateKey",
        ]
        assert exported.text.count("\n") == 3
    finally:
        clock.advance(-(WINDOW + timedelta(days=1)))  # later tests expect the real time


def test_a_next_token_keeps_paging_while_the_window_moves(
    service: Service, auditor: Principal
) -> None:
    key = auditor.kms.create_key()["KeyMetadata"]
    for _ in range(3):
        auditor.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    cloudtrail = cloudtrail_of(service, auditor)
    attribute = [{"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}]
    first = cloudtrail.lookup_events(LookupAttributes=attribute, MaxResults=2)
    rest = cloudtrail.lookup_events(
        LookupAttributes=attribute, MaxResults=2, NextToken=first["NextToken"]
    )
    names = [e["EventName"] for e in first["Events"] + rest["Events"]]
    assert names == ["Encrypt", "Encrypt", "Encrypt", "CreateKey"]


TOO_LONG = "a_" * 667  # 1,334 characters that CloudTrail counts as 2,001


@pytest.mark.parametrize(
    ("request_members", "error"),
    [
        ({"MaxResults": 0}, "InvalidMaxResultsException"),
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
        (
            {"LookupAttributes": [{"AttributeKey": "Region", "AttributeValue": "us-east-1"}]},
            "InvalidLookupAttributesException",
        ),
        (
            {
                "LookupAttributes": [
                    {"AttributeKey": "EventName", "AttributeValue": "Encrypt"},
                    {"AttributeKey": "ReadOnly", "AttributeValue": "true"},
                ]
            },
            "InvalidLookupAttributesException",
        ),
        (
            {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]},
            "InvalidLookupAttributesException",
        ),
        (
            {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": TOO_LONG}]},
            "InvalidLookupAttributesException",
        ),
        (
            {"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "maybe"}]},
            "InvalidLookupAttributesException",
        ),
        ({"EventCategory": "management"}, "InvalidEventCategoryException"),
        ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        ({"StartTime": 2_000_000_000, "EndTime": 1_000_000_000}, "InvalidTimeRangeException"),
    ],
)
def test_each_bad_lookup_gets_cloudtrails_error_and_is_recorded(
    unvalidated: Any, cloudtrail: Any, request_members: dict[str, Any], error: str
) -> None:
    with pytest.raises(ClientError) as failure:
        unvalidated.lookup_events(**request_members)
    answer = failure.value.response
    assert (answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"]) == (error, 400)
    (record,) = by_request(
        records(cloudtrail, "EventName", "LookupEvents"), answer["ResponseMetadata"]["RequestId"]
    )
    assert (record["eventSource"], record["errorCode"]) == ("cloudtrail.amazonaws.com", error)


def test_a_time_outside_the_possible_values_is_an_invalid_time_range(service: Service) -> None:
    url = service.endpoint + "/"
    body = json.dumps({"StartTime": 10**15}).encode()  # year 31,690,708: botocore refuses it
    headers = sign_request(
        "POST",
        url,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": TARGET_PREFIX + "LookupEvents",
        },
        body,
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=REGION,
        service="cloudtrail",
        now=datetime.now(UTC),
    )
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["__type"] == "InvalidTimeRangeException"
