"""AWS KMS's request quotas, per account and Region (docs/operations.md, "Request quotas"):
a call over its quota is answered ThrottlingException exactly as AWS answers it (HTTP 400,
AWS's message: reference sts-quotas-multiregion-emulators.md section 2), botocore's
standard retry mode retries through it, and a flood of throttled calls leaves one record
a minute in the ledger, not one per call.

A service of its own runs with quotas on and rates small enough that a fresh account
spends a quota in one or two calls (the session's shared service runs without quotas).
Each test uses accounts of its own, so that its buckets are its own.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import pytest
from botocore.config import Config
from eventsourcing.utils import get_topic

from domain.audit import AuditedCall
from domain.errors import THROTTLING_MESSAGE
from tests.aws.conftest import JSON_CONTENT_TYPE, KMS_FULL_ACCESS, aws_error, ledger_position
from tests.conftest import REGION, Service, running_service
from tests.support.signing import sign_request

# Rates (requests a second) that a test spends in a call or two and that barely refill
# while it runs; DescribeKey's refills within botocore's retry backoff.
RATES = {"CreateKey": 0.001, "symmetric": 0.001, "CreateAlias": 0.001, "DescribeKey": 0.2}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("quotas"), quotas="aws", quota_rates=RATES
    ) as running:
        yield running


@dataclass
class Account:
    account_id: str
    access_key_id: str
    secret: str
    service: Service

    def kms(self, **retries: Any) -> Any:
        """A boto3 KMS client; no retries unless ``retries`` (botocore's retries config)."""
        return boto3.client(
            "kms",
            endpoint_url=self.service.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries=retries or {"mode": "standard", "max_attempts": 1}),
        )

    def post(self, target: str, body: dict[str, Any]) -> httpx.Response:
        """POST / (the AWS JSON protocol), signed as an SDK signs."""
        url, payload = self.service.endpoint + "/", json.dumps(body).encode()
        headers = sign_request(
            "POST",
            url,
            {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"TrentService.{target}"},
            payload,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret,
            region=REGION,
            service="kms",
            now=datetime.now(UTC),
        )
        return httpx.post(url, content=payload, headers=headers, timeout=10)

    def rest_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        url, payload = self.service.endpoint + path, json.dumps(body).encode()
        headers = sign_request(
            "POST",
            url,
            {"Content-Type": "application/json"},
            payload,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret,
            region=REGION,
            service="kms",
            now=datetime.now(UTC),
        )
        return httpx.post(url, content=payload, headers=headers, timeout=10)


def new_account(service: Service) -> Account:
    """An account of its own, with a principal allowed kms:*."""
    identity = service.runtime.identity
    account_id = "".join(secrets.choice("0123456789") for _ in range(12))
    identity.create_account(account_id)
    principal = identity.create_principal(
        account_id, f"user{uuid.uuid4().hex[:8]}", policies={"KmsFullAccess": KMS_FULL_ACCESS}
    )
    access_key_id, secret = identity.create_access_key(principal)
    return Account(account_id, access_key_id, secret, service)


@pytest.fixture
def account(service: Service) -> Account:
    return new_account(service)


def throttled_records(service: Service, since: int, account: Account) -> list[dict[str, Any]]:
    """The CallRecorded events since ``since`` of ``account``'s calls refused for their rate."""
    until = ledger_position(service)
    if until <= since:
        return []
    found = service.runtime.ledger.recorder.select_notifications(
        start=since + 1, limit=until - since, stop=until
    )
    states = [
        orjson.loads(n.state) for n in found if n.topic == get_topic(AuditedCall.CallRecorded)
    ]
    return [
        s
        for s in states
        if s["actor"]["access_key_id"] == account.access_key_id
        and s["error_code"] == "ThrottlingException"
    ]


# --- the answer -----------------------------------------------------------------------------
def test_a_call_over_its_quota_is_answered_as_aws_answers_throttling(account):
    assert account.post("CreateKey", {}).status_code == 200

    response = account.post("CreateKey", {})

    assert response.status_code == 400
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    assert response.json() == {"__type": "ThrottlingException", "message": THROTTLING_MESSAGE}
    assert response.headers["x-amzn-requestid"]


def test_boto3_sees_throttling_exception(account):
    kms = account.kms()
    kms.create_key()

    with aws_error("ThrottlingException", THROTTLING_MESSAGE):
        kms.create_key()


def test_botocore_standard_retry_mode_succeeds_through_throttling(account):
    key_id = account.kms().create_key()["KeyMetadata"]["KeyId"]
    spend = account.kms()
    spend.describe_key(KeyId=key_id)
    with aws_error("ThrottlingException"):  # DescribeKey's quota is spent
        spend.describe_key(KeyId=key_id)

    retrying = account.kms(mode="standard", max_attempts=10)
    answer = retrying.describe_key(KeyId=key_id)

    assert answer["KeyMetadata"]["KeyId"] == key_id
    assert answer["ResponseMetadata"]["RetryAttempts"] >= 1  # it was throttled, and retried


# --- what is counted together and what apart ------------------------------------------------
def test_each_account_has_quotas_of_its_own(service, account):
    account.kms().create_key()
    with aws_error("ThrottlingException"):
        account.kms().create_key()

    other = new_account(service)

    assert other.kms().create_key()["KeyMetadata"]["KeyId"]


def test_encrypt_and_decrypt_share_the_cryptographic_operations_quota(account):
    kms = account.kms()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]

    with aws_error("ThrottlingException"):
        kms.decrypt(CiphertextBlob=blob)
    with aws_error("ThrottlingException"):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")


def test_management_operations_have_quotas_apart_from_cryptography_and_each_other(account):
    kms = account.kms()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key_id, Plaintext=b"secret")
    with aws_error("ThrottlingException"):
        kms.create_key()
    with aws_error("ThrottlingException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"secret")

    kms.create_alias(AliasName=f"alias/quota-{uuid.uuid4().hex}", TargetKeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"]
    assert kms.list_keys()["Keys"]


def test_rest_calls_count_against_the_same_quota_and_are_answered_429(account):
    account.kms().create_key()

    response = account.rest_post("/v1/keys", {"description": "over the quota"})

    assert response.status_code == 429
    assert response.json() == {"__type": "ThrottlingException", "message": THROTTLING_MESSAGE}


# --- what a refusal leaves behind -----------------------------------------------------------
def test_a_flood_of_throttled_calls_leaves_one_record_in_the_ledger(service, account):
    account.kms().create_key()
    since = ledger_position(service)

    for _ in range(20):
        assert account.post("CreateKey", {"Description": "flood"}).status_code == 400

    (record,) = throttled_records(service, since, account)
    assert record["event_name"] == "CreateKey"
    assert record["error_message"] == THROTTLING_MESSAGE


def test_throttled_calls_are_counted_in_the_metrics(service, account):
    account.kms().create_key()
    with aws_error("ThrottlingException"):
        account.kms().create_key()

    metrics = httpx.get(service.endpoint + "/metrics", timeout=10).text

    assert 'keyledger_quota_throttled_total{quota="CreateKey"}' in metrics
    assert 'operation="CreateKey",outcome="ThrottlingException"' in metrics


# --- emulator mode --------------------------------------------------------------------------
def test_emulator_mode_has_no_quotas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KEYLEDGER_QUOTAS", raising=False)  # the suite's services turn them off
    with running_service(tmp_path, emulator=True, quota_rates=RATES) as emulator:
        kms = boto3.client(
            "kms",
            endpoint_url=emulator.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )

        created = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]

    assert len(set(created)) == 3
