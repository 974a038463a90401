"""Regions: a request signed for a Region the deployment does not serve (KEYLEDGER_REGIONS)
is refused as AWS refuses a credential scoped to the wrong Region, on every protocol, and
creates nothing; the Regions served all work."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.aws.conftest import RawSender, aws_error, ledger_unchanged
from tests.conftest import Service, running_service
from tests.support.signing import sign_request

UNSERVED = "xx-fake-1"
WRONG_REGION = f"Credential should be scoped to a valid region, not '{UNSERVED}'."


def test_a_kms_call_for_a_region_not_served_is_refused_and_creates_no_key(
    service: Service,
) -> None:
    kms = service.client("kms", region=UNSERVED)

    with ledger_unchanged(service), aws_error("InvalidSignatureException", WRONG_REGION):
        kms.create_key(Description="in no region")


def test_a_cloudtrail_lookup_for_a_region_not_served_is_refused(service: Service) -> None:
    cloudtrail = service.client("cloudtrail", region=UNSERVED)

    with ledger_unchanged(service), aws_error("InvalidSignatureException", WRONG_REGION):
        cloudtrail.lookup_events(MaxResults=1)


def rest_create_key(service: Service, region: str) -> httpx.Response:
    url = service.endpoint + "/v1/keys"
    body = json.dumps({"description": "rest"}).encode()
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/json"},
        body,
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=region,
        service="kms",
        now=datetime.now(UTC),
    )
    return httpx.post(url, content=body, headers=headers, timeout=10)


def test_a_rest_call_for_a_region_not_served_is_refused_and_creates_no_key(
    service: Service,
) -> None:
    with ledger_unchanged(service):
        answer = rest_create_key(service, UNSERVED)

    assert answer.status_code == 401
    assert answer.json() == {"__type": "InvalidSignatureException", "message": WRONG_REGION}


def test_every_region_served_creates_keys_in_that_region(service: Service) -> None:
    kms = service.client("kms", region="eu-west-1")

    arn = kms.create_key()["KeyMetadata"]["Arn"]

    assert arn.startswith("arn:aws:kms:eu-west-1:")
    assert rest_create_key(service, "eu-west-1").json()["arn"].startswith("arn:aws:kms:eu-west-1:")


def test_only_the_configured_regions_are_served(tmp_path: Path) -> None:
    with running_service(tmp_path, regions=["us-east-1"]) as service:
        served: Any = service.client("kms", region="us-east-1")
        other: Any = service.client("kms", region="eu-west-1")

        assert served.create_key()["KeyMetadata"]["Arn"].startswith("arn:aws:kms:us-east-1:")
        with ledger_unchanged(service), aws_error("InvalidSignatureException"):
            other.create_key()


def test_a_scope_naming_no_region_at_all_is_refused_without_echoing_it(raw: RawSender) -> None:
    answer = raw("TrentService.ListKeys", {}, region="r" * 5000)

    assert (answer.status, answer.error_type) == (400, "InvalidSignatureException")
    assert answer.message == "Credential should be scoped to a valid region."
