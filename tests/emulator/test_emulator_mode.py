"""Emulator mode (docs/emulator.md): a suite written for moto's server mode or LocalStack
runs against KeyLedger with only its endpoint changed."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ACCOUNT_ID, Service
from tests.emulator.conftest import (
    LOCALSTACK_ACCESS_KEY_ID,
    LOCALSTACK_ACCOUNT_KEY_ID,
    MOTO_ACCESS_KEY_ID,
    emulated_client,
)
from tests.support.signing import sign_request

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    "access_key_id", [MOTO_ACCESS_KEY_ID, LOCALSTACK_ACCESS_KEY_ID, "AKIAANYTHINGATALL"]
)
def test_any_access_key_id_is_the_default_accounts_administrator(emulator, access_key_id):
    kms = emulated_client(emulator, access_key_id, secret="whatever")
    key = kms.create_key(Description="emulated")["KeyMetadata"]
    assert key["AWSAccountId"] == ACCOUNT_ID
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"hi")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hi"


def test_sts_answers_the_emulated_identity(emulator):
    sts = emulated_client(emulator, MOTO_ACCESS_KEY_ID, "sts")
    identity = sts.get_caller_identity()
    assert identity["Account"] == ACCOUNT_ID
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:user/admin"


def test_a_twelve_digit_access_key_id_is_an_account_of_its_own(emulator):
    sts = emulated_client(emulator, LOCALSTACK_ACCOUNT_KEY_ID, "sts")
    assert sts.get_caller_identity()["Account"] == LOCALSTACK_ACCOUNT_KEY_ID
    other = emulated_client(emulator, LOCALSTACK_ACCOUNT_KEY_ID)
    key = other.create_key()["KeyMetadata"]
    assert key["AWSAccountId"] == LOCALSTACK_ACCOUNT_KEY_ID
    default = emulated_client(emulator, LOCALSTACK_ACCESS_KEY_ID)
    assert key["KeyId"] not in [k["KeyId"] for k in default.list_keys()["Keys"]]
    with pytest.raises(ClientError) as raised:
        default.describe_key(KeyId=key["Arn"])
    assert raised.value.response["Error"]["Code"] in {"NotFoundException", "AccessDeniedException"}


def test_a_request_without_a_date_is_still_refused(emulator):
    body = b"{}"
    headers = sign_request(
        "POST",
        emulator.endpoint + "/",
        {"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
        body,
        access_key_id=MOTO_ACCESS_KEY_ID,
        secret_access_key="FOOBARSECRET",
        region="us-east-1",
        service="kms",
        now=datetime.now(UTC),
    )
    headers = {k: v for k, v in headers.items() if k.lower() != "x-amz-date"}
    response = httpx.post(emulator.endpoint, headers=headers, content=body)
    assert response.status_code == 400
    assert response.json()["__type"] == "IncompleteSignatureException"


def test_an_unsigned_request_is_still_refused(emulator):
    response = httpx.post(
        emulator.endpoint,
        headers={
            "X-Amz-Target": "TrentService.ListKeys",
            "Content-Type": "application/x-amz-json-1.1",
        },
        content=b"{}",
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "MissingAuthenticationTokenException"


def test_validation_stays_as_strict_as_in_normal_mode(localstack_kms):
    with pytest.raises(ClientError) as raised:
        localstack_kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="SIGN_VERIFY")
    assert raised.value.response["Error"]["Code"] == "ValidationException"


# --- reset -------------------------------------------------------------------------------
def test_state_of_one_test_is_gone_in_the_next_part_one(moto_kms):
    moto_kms.create_key(Description="leaks unless reset")
    moto_kms.create_alias(
        AliasName="alias/leaky", TargetKeyId=moto_kms.list_keys()["Keys"][0]["KeyId"]
    )
    assert len(moto_kms.list_keys()["Keys"]) == 1


def test_state_of_one_test_is_gone_in_the_next_part_two(moto_kms):
    assert moto_kms.list_keys()["Keys"] == []
    aliases = [a["AliasName"] for a in moto_kms.list_aliases()["Aliases"]]
    assert "alias/leaky" not in aliases
    moto_kms.create_alias(
        AliasName="alias/leaky", TargetKeyId=moto_kms.create_key()["KeyMetadata"]["KeyId"]
    )


def test_reset_answers_at_keyledgers_own_path_and_the_service_keeps_serving(emulator, moto_kms):
    moto_kms.create_key()
    assert httpx.post(f"{emulator.endpoint}/_keyledger/reset").status_code == 200
    assert moto_kms.list_keys()["Keys"] == []
    assert moto_kms.create_key()["KeyMetadata"]["KeyState"] == "Enabled"


def test_reset_wants_a_post_as_moto_does(emulator):
    response = httpx.get(f"{emulator.endpoint}/moto-api/reset")
    assert (response.status_code, response.json()) == (400, {"Error": "Need to POST to reset Moto"})


def test_the_bootstrap_administrators_key_works_after_a_reset(emulator):
    assert emulator.client().list_keys()["Keys"] == []


# --- the clock -----------------------------------------------------------------------------
def test_moving_the_clock_past_a_deletion_window_deletes_the_key(emulator, localstack_kms):
    key_id = localstack_kms.create_key()["KeyMetadata"]["KeyId"]
    localstack_kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    moved = httpx.post(f"{emulator.endpoint}/_keyledger/clock", json={"advance_seconds": 8 * 86400})
    assert moved.status_code == 200
    with pytest.raises(ClientError) as raised:
        localstack_kms.describe_key(KeyId=key_id)
    assert raised.value.response["Error"]["Code"] == "NotFoundException"


def test_the_clock_can_be_read(emulator):
    now = httpx.get(f"{emulator.endpoint}/_keyledger/clock").json()["now"]
    assert datetime.fromisoformat(now.replace("Z", "+00:00")).year >= 2024


def test_a_reset_puts_a_moved_clock_back_to_wall_clock_time(emulator):
    httpx.post(f"{emulator.endpoint}/_keyledger/clock", json={"advance_seconds": 30 * 86400})
    assert httpx.post(f"{emulator.endpoint}/_keyledger/reset").status_code == 200
    now = httpx.get(f"{emulator.endpoint}/_keyledger/clock").json()["now"]
    shown = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert abs((shown - datetime.now(UTC)).total_seconds()) < 60


def test_the_clock_refuses_a_backward_move(emulator):
    response = httpx.post(f"{emulator.endpoint}/_keyledger/clock", json={"advance_seconds": -1})
    assert response.status_code == 400


# --- normal mode ---------------------------------------------------------------------------
def test_normal_mode_refuses_an_unknown_access_key(service: Service):
    kms = emulated_client(service, MOTO_ACCESS_KEY_ID)
    with pytest.raises(ClientError) as raised:
        kms.list_keys()
    assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"


@pytest.mark.parametrize("path", ["/_keyledger/reset", "/moto-api/reset", "/_keyledger/clock"])
def test_normal_mode_has_no_emulator_endpoints(service: Service, path):
    assert httpx.post(f"{service.endpoint}{path}").status_code == 404
