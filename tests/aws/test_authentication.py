"""Who may call: SigV4 authentication errors and cross-account isolation (reference §1
"Authentication and authorization errors", §2 "Cross-account use")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.aws.conftest import KMS_FULL_ACCESS, aws_error, ledger_unchanged, new_alias
from tests.conftest import ACCOUNT_ID, REGION
from tests.support.signing import sign_request

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
UNRECOGNIZED = "The security token included in the request is invalid."
STAMP = r"(\d{8}T\d{6}Z)"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


# --- SigV4 ---------------------------------------------------------------------------------------
def test_an_unknown_access_key_is_unrecognized(service):
    stranger = service.client("kms", access_key_id="AKLGNOSUCHKEY0000000")

    with ledger_unchanged(service), aws_error("UnrecognizedClientException", UNRECOGNIZED):
        stranger.create_key()


def test_a_wrong_secret_fails_the_signature(service):
    impostor = service.client("kms", secret_access_key="wrong-secret-" + "y" * 27)

    with ledger_unchanged(service), aws_error("InvalidSignatureException", SIGNATURE_MISMATCH):
        impostor.create_key()


def test_an_unsigned_request_is_missing_its_authentication_token(service):
    anonymous = boto3.client(
        "kms",
        endpoint_url=service.endpoint,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )

    with ledger_unchanged(service), aws_error("MissingAuthenticationTokenException"):
        anonymous.create_key()


def test_a_raw_request_without_authorization_is_missing_its_authentication_token(raw):
    response = raw("TrentService.ListKeys", {}, sign=False)

    assert (response.status, response.error_type) == (400, "MissingAuthenticationTokenException")


def test_a_request_signed_six_minutes_ago_has_an_expired_signature(raw, service):
    signed_at = datetime.now(UTC) - timedelta(minutes=6)

    with ledger_unchanged(service):
        response = raw("TrentService.CreateKey", {}, now=signed_at)

    assert (response.status, response.error_type) == (400, "InvalidSignatureException")
    match = re.fullmatch(
        rf"Signature expired: {STAMP} is now earlier than {STAMP} \({STAMP} - 5 min\.\)",
        response.message,
    )
    assert match, response.message
    signed, earliest, now = match.groups()
    assert signed == _stamp(signed_at)
    parse = lambda s: datetime.strptime(s, "%Y%m%dT%H%M%SZ")  # noqa: E731
    assert parse(now) - parse(earliest) == timedelta(minutes=5)
    assert abs(parse(now) - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=30)


def test_a_request_signed_six_minutes_ahead_is_not_yet_current(raw):
    response = raw("TrentService.ListKeys", {}, now=datetime.now(UTC) + timedelta(minutes=6))

    assert response.error_type == "InvalidSignatureException"
    assert re.fullmatch(
        rf"Signature not yet current: {STAMP} is still later than {STAMP} \({STAMP} \+ 5 min\.\)",
        response.message,
    ), response.message


def test_a_request_signed_four_minutes_ago_is_accepted(raw):
    response = raw("TrentService.ListKeys", {}, now=datetime.now(UTC) - timedelta(minutes=4))

    assert response.status == 200


def test_signature_freshness_follows_real_time_not_the_service_clock(kms, service):
    # Moving the service clock (to pass key windows) must not expire real SDK signatures.
    service.runtime.clock.advance(timedelta(days=1))

    assert kms.list_keys(Limit=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_body_changed_after_signing_fails_the_signature(service):
    url = service.endpoint + "/"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.CreateKey"},
        b"{}",
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=REGION,
        service="kms",
        now=datetime.now(UTC),
    )

    with ledger_unchanged(service):
        response = httpx.post(url, content=b'{"Description": "x"}', headers=headers)

    assert response.status_code == 400
    assert response.json() == {"__type": "InvalidSignatureException", "message": SIGNATURE_MISMATCH}


def test_a_malformed_authorization_header_is_an_incomplete_signature(raw):
    response = raw(
        "TrentService.ListKeys",
        {},
        sign=False,
        extra_headers={"Authorization": "AWS4-HMAC-SHA256 Credential=only", "X-Amz-Date": "x"},
    )

    assert (response.status, response.error_type) == (400, "IncompleteSignatureException")


def test_a_deactivated_access_key_is_unrecognized(service):
    identity = service.runtime.identity
    principal = identity.create_principal(
        ACCOUNT_ID,
        f"temp-{datetime.now().timestamp():.0f}",
        policies={"KmsFullAccess": KMS_FULL_ACCESS},
    )
    access_key_id, secret = identity.create_access_key(principal)
    client = service.client("kms", access_key_id=access_key_id, secret_access_key=secret)
    client.list_keys(Limit=1)

    identity.deactivate_access_key(access_key_id)

    with aws_error("UnrecognizedClientException", UNRECOGNIZED):
        client.list_keys(Limit=1)


def test_authentication_comes_before_validation(service, raw):
    response = raw(
        "TrentService.CreateKey",
        {"KeyUsage": "RANDOM"},
        access_key_id="AKLGNOSUCHKEY0000000",
        secret_access_key="whatever",
    )

    assert response.error_type == "UnrecognizedClientException"


def test_a_second_principal_of_the_account_uses_the_accounts_keys(service, key_id):
    identity = service.runtime.identity
    # The default key policy delegates to the account's identity policies.
    principal = identity.create_principal(
        ACCOUNT_ID, f"colleague-{new_alias()[-12:]}", policies={"KmsFullAccess": KMS_FULL_ACCESS}
    )
    access_key_id, secret = identity.create_access_key(principal)
    colleague = service.client("kms", access_key_id=access_key_id, secret_access_key=secret)

    ciphertext = colleague.encrypt(KeyId=key_id, Plaintext=b"shared")["CiphertextBlob"]

    assert colleague.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"shared"


# --- cross-account isolation ---------------------------------------------------------------------
def key_arn(key_id: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"


def denied(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: kms:{action} on resource: "
        f"{resource} because no resource-based policy allows the kms:{action} action"
    )


def test_another_account_cannot_describe_a_key_by_arn(other_account, key_id, service):
    with (
        ledger_unchanged(service),
        aws_error(
            "AccessDeniedException",
            denied(other_account.principal_arn, "DescribeKey", key_arn(key_id)),
        ),
    ):
        other_account.kms.describe_key(KeyId=key_arn(key_id))


def test_another_account_cannot_find_a_key_by_bare_id(other_account, key_id):
    own_arn = f"arn:aws:kms:{REGION}:{other_account.account_id}:key/{key_id}"

    with aws_error("NotFoundException", f"Key '{own_arn}' does not exist"):
        other_account.kms.describe_key(KeyId=key_id)


def test_another_account_cannot_encrypt_with_a_key_by_arn(other_account, key_id, service):
    with (
        ledger_unchanged(service),
        aws_error(
            "AccessDeniedException", denied(other_account.principal_arn, "Encrypt", key_arn(key_id))
        ),
    ):
        other_account.kms.encrypt(KeyId=key_arn(key_id), Plaintext=b"x")


def test_another_account_cannot_decrypt_the_accounts_ciphertext(other_account, kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"private")["CiphertextBlob"]

    with aws_error("AccessDeniedException"):
        other_account.kms.decrypt(CiphertextBlob=ciphertext)


def test_another_account_cannot_use_a_key_through_its_alias_arn(other_account, kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    with aws_error("AccessDeniedException"):
        other_account.kms.encrypt(
            KeyId=f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}", Plaintext=b"x"
        )


@pytest.mark.parametrize("operation", ["disable_key", "schedule_key_deletion"])
def test_another_account_cannot_manage_a_key_by_arn(other_account, kms, key_id, operation):
    with aws_error("AccessDeniedException"):
        getattr(other_account.kms, operation)(KeyId=key_arn(key_id))

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_another_account_does_not_see_the_accounts_keys_or_aliases(other_account, kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    assert other_account.kms.list_keys()["Keys"] == []
    assert alias not in [a["AliasName"] for a in other_account.kms.list_aliases()["Aliases"]]


def test_alias_names_are_per_account(other_account, kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    theirs = other_account.kms.create_key()["KeyMetadata"]["KeyId"]

    other_account.kms.create_alias(AliasName=alias, TargetKeyId=theirs)

    assert other_account.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == theirs
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id
