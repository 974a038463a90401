"""ListRetirableGrants' RetiringPrincipal is parsed as a principal ARN: a malformed one is
InvalidArnException (400) on both protocols, and no string at all gets a 5xx."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.aws.conftest import aws_error
from tests.conftest import ACCOUNT_ID, REGION, Service
from tests.support.signing import sign_request

ARN_PARTS = st.sampled_from(["arn", "aws", "iam", "", ACCOUNT_ID, "user/u", "root", "x"])
# Strings that look like principal ARNs, broken in every position, and any text at all.
PRINCIPALS = st.one_of(
    st.text(min_size=1, max_size=300),
    st.from_regex(r"\A[\w+=,.@:/-]{1,256}\Z"),
    st.lists(ARN_PARTS, max_size=8).map(":".join).filter(bool),
)


@pytest.fixture(scope="module")
def unvalidated_kms(service: Service) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


def rest_list_retirable(service: Service, principal: str) -> httpx.Response:
    url = str(
        httpx.URL(
            service.endpoint + "/v1/grants/retirable", params={"retiring_principal": principal}
        )
    )
    headers = sign_request(
        "GET",
        url,
        {},
        b"",
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=REGION,
        service="kms",
        now=datetime.now(UTC),
    )
    return httpx.get(url, headers=headers, timeout=10)


def test_a_retiring_principal_that_is_no_arn_answers_invalid_arn(kms: Any) -> None:
    with aws_error("InvalidArnException"):
        kms.list_retirable_grants(RetiringPrincipal="x:")


def test_a_rest_retiring_principal_that_is_no_arn_answers_invalid_arn(service: Service) -> None:
    answer = rest_list_retirable(service, "x:")

    assert answer.status_code == 400
    assert answer.json()["__type"] == "InvalidArnException"


def test_a_retiring_principal_of_the_callers_account_lists_its_grants(kms: Any) -> None:
    page = kms.list_retirable_grants(RetiringPrincipal=f"arn:aws:iam::{ACCOUNT_ID}:user/nobody")

    assert page["Grants"] == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(principal=PRINCIPALS)
def test_no_retiring_principal_gets_a_server_error(
    service: Service, unvalidated_kms: Any, principal: str
) -> None:
    try:
        unvalidated_kms.list_retirable_grants(RetiringPrincipal=principal)
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] < 500, error.response
    assert rest_list_retirable(service, principal).status_code < 500
