"""Key lifecycle through boto3: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription,
EnableKey/DisableKey, and AWS managed keys (reference §2, §6, §16 "Key lifecycle")."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from botocore.session import get_session

from tests.aws.conftest import (
    aws_error,
    client_on_behalf_of,
    ledger_unchanged,
    new_alias,
    service_now,
)
from tests.conftest import ACCOUNT_ID, REGION

KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"


def _enum(shape: str) -> set[str]:
    return set(get_session().get_service_model("kms").shape_for(shape).enum)


# --- CreateKey ---------------------------------------------------------------------------
def test_create_key_defaults_to_an_enabled_symmetric_customer_managed_key(kms, service):
    before = service_now(service)
    metadata = kms.create_key()["KeyMetadata"]

    assert KEY_ID.match(metadata["KeyId"])
    assert metadata["Arn"] == ARN_PREFIX + metadata["KeyId"]
    assert metadata["AWSAccountId"] == ACCOUNT_ID
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["Origin"] == "AWS_KMS"
    assert metadata["KeyManager"] == "CUSTOMER"
    assert metadata["KeyState"] == "Enabled"
    assert metadata["Enabled"] is True
    assert metadata["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert metadata["MultiRegion"] is False
    assert metadata["Description"] == ""
    assert "DeletionDate" not in metadata
    created = metadata["CreationDate"]
    assert before - timedelta(seconds=5) <= created <= service_now(service) + timedelta(seconds=5)


def test_create_key_reports_a_current_key_material_id(kms):
    metadata = kms.create_key()["KeyMetadata"]

    assert re.fullmatch(r"[0-9a-f]{64}", metadata["CurrentKeyMaterialId"])


def test_create_key_keeps_the_description(kms):
    metadata = kms.create_key(Description="payroll exports")["KeyMetadata"]

    assert metadata["Description"] == "payroll exports"
    assert kms.describe_key(KeyId=metadata["KeyId"])["KeyMetadata"]["Description"] == (
        "payroll exports"
    )


def test_create_key_applies_the_given_tags(kms):
    tags = [{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "env", "TagValue": ""}]
    key_id = kms.create_key(Tags=tags)["KeyMetadata"]["KeyId"]

    listed = kms.list_resource_tags(KeyId=key_id)["Tags"]
    assert sorted(listed, key=lambda t: t["TagKey"]) == sorted(tags, key=lambda t: t["TagKey"])


def test_create_key_stores_the_given_policy(kms):
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Admins",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    key_id = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]

    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == policy


def test_create_key_rejects_a_malformed_policy(kms, service):
    with ledger_unchanged(service), aws_error("MalformedPolicyDocumentException"):
        kms.create_key(Policy="{not json")


def test_create_key_rejects_a_tag_with_the_reserved_aws_prefix(kms, service):
    with (
        ledger_unchanged(service),
        aws_error("TagException", "Tags beginning with aws: are reserved"),
    ):
        kms.create_key(Tags=[{"TagKey": "aws:owner", "TagValue": "me"}])


def test_create_key_rejects_the_reserved_tag_prefix_in_upper_case(raw, service):
    # Recorded: CreateKey with the tag key AWS:key1 (localstack snapshot, "uppercase_prefix").
    with ledger_unchanged(service):
        response = raw(
            "TrentService.CreateKey", {"Tags": [{"TagKey": "AWS:key1", "TagValue": "v"}]}
        )

    assert (response.status, response.body) == (
        400,
        {"__type": "TagException", "message": "Tags beginning with aws: are reserved"},
    )


def test_create_key_rejects_a_key_usage_the_symmetric_spec_cannot_have(kms, service):
    with (
        ledger_unchanged(service),
        aws_error(
            "ValidationException",
            "KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT",
        ),
    ):
        kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="SIGN_VERIFY")


def test_create_key_requires_a_key_usage_for_non_symmetric_specs(kms):
    with aws_error(
        "ValidationException",
        "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.",
    ):
        kms.create_key(KeySpec="RSA_2048")


def test_create_key_rejects_a_key_usage_an_asymmetric_spec_cannot_have(kms):
    with aws_error(
        "ValidationException", "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048"
    ):
        kms.create_key(KeySpec="RSA_2048", KeyUsage="KEY_AGREEMENT")


def test_create_key_rejects_key_spec_together_with_customer_master_key_spec(kms):
    with aws_error("ValidationException"):
        kms.create_key(KeySpec="SYMMETRIC_DEFAULT", CustomerMasterKeySpec="SYMMETRIC_DEFAULT")


def test_create_key_rejects_an_unknown_key_usage_with_the_enum_message(kms):
    with aws_error("ValidationException") as error:
        kms.create_key(KeyUsage="RANDOM")

    prefix = (
        "1 validation error detected: Value 'RANDOM' at 'keyUsage' failed to satisfy "
        "constraint: Member must satisfy enum value set: ["
    )
    assert error["message"].startswith(prefix) and error["message"].endswith("]")
    listed = error["message"][len(prefix) : -1].split(", ")
    assert set(listed) == _enum("KeyUsageType")
    # AWS's order as recorded (2023-04), then the usages AWS added since.
    assert listed == [
        "ENCRYPT_DECRYPT",
        "SIGN_VERIFY",
        "GENERATE_VERIFY_MAC",
        "KEY_AGREEMENT",
        "ENCAPSULATE_DECAPSULATE",
    ]


def test_create_key_rejects_an_unknown_key_spec_with_the_enum_message(kms):
    with aws_error("ValidationException") as error:
        kms.create_key(KeySpec="AES_9000")

    prefix = (
        "1 validation error detected: Value 'AES_9000' at 'keySpec' failed to satisfy "
        "constraint: Member must satisfy enum value set: ["
    )
    assert error["message"].startswith(prefix) and error["message"].endswith("]")
    listed = error["message"][len(prefix) : -1].split(", ")
    assert set(listed) == _enum("KeySpec")
    # AWS's order as recorded (2023-04), then the specs AWS added since, in the model's order.
    assert listed[:12] == [
        "RSA_2048",
        "ECC_NIST_P384",
        "ECC_NIST_P256",
        "ECC_NIST_P521",
        "HMAC_384",
        "RSA_3072",
        "ECC_SECG_P256K1",
        "RSA_4096",
        "SYMMETRIC_DEFAULT",
        "HMAC_256",
        "HMAC_224",
        "HMAC_512",
    ]


def test_create_key_answers_unsupported_for_a_valid_spec_this_build_cannot_create(kms, service):
    # SM2 is offered in AWS's China Regions only; ML_KEM_512 awaits the cryptography library.
    with ledger_unchanged(service), aws_error("UnsupportedOperationException"):
        kms.create_key(KeySpec="SM2", KeyUsage="SIGN_VERIFY")
    with ledger_unchanged(service), aws_error("UnsupportedOperationException"):
        kms.create_key(KeySpec="ML_KEM_512", KeyUsage="ENCAPSULATE_DECAPSULATE")


def test_create_key_with_a_custom_key_store_origin_needs_the_store(kms):
    with aws_error(
        "ValidationException", "CustomKeyStoreId is required when Origin is AWS_CLOUDHSM."
    ):
        kms.create_key(Origin="AWS_CLOUDHSM")


# --- DescribeKey -----------------------------------------------------------------------
def test_describe_key_finds_a_key_by_id(kms, key_id):
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id


def test_describe_key_finds_a_key_by_arn(kms, key_id):
    metadata = kms.describe_key(KeyId=ARN_PREFIX + key_id)["KeyMetadata"]

    assert metadata["KeyId"] == key_id


def test_describe_key_finds_a_key_by_alias_name(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id


def test_describe_key_finds_a_key_by_alias_arn(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}"

    assert kms.describe_key(KeyId=alias_arn)["KeyMetadata"]["KeyId"] == key_id


def test_describe_key_answers_not_found_for_an_unknown_key_id(kms):
    missing = "00000000-0000-4000-8000-000000000000"

    with aws_error("NotFoundException", f"Key '{ARN_PREFIX}{missing}' does not exist"):
        kms.describe_key(KeyId=missing)


def test_describe_key_answers_not_found_for_a_value_that_is_no_key_id(kms):
    with aws_error("NotFoundException", "Invalid keyId 'fake-key-id'"):
        kms.describe_key(KeyId="fake-key-id")


def test_describe_key_names_an_unknown_multi_region_key_id_by_its_arn(raw):
    # Recorded: DescribeKey of mrk-d3b9...5762 (localstack snapshot, "valid-id-mrk").
    missing = "mrk-d3b95762d3b95762d3b95762d3b95762"

    response = raw("TrentService.DescribeKey", {"KeyId": missing})

    message = f"Key '{ARN_PREFIX}{missing}' does not exist"
    assert (response.status, response.body) == (
        400,
        {"__type": "NotFoundException", "message": message},
    )


def test_describe_key_names_an_unknown_multi_region_key_arn_by_that_arn(kms):
    missing = f"{ARN_PREFIX}mrk-{'0' * 32}"

    with aws_error("NotFoundException", f"Key '{missing}' does not exist"):
        kms.describe_key(KeyId=missing)


@pytest.mark.parametrize("value", ["mrk-fake-key-id", "mrk-" + "0" * 31])
def test_describe_key_answers_invalid_key_id_for_a_malformed_multi_region_key_id(kms, value):
    # Recorded: DescribeKey of mrk-fake-key-id (localstack snapshot, "invalid-uuid-mrk").
    with aws_error("NotFoundException", f"Invalid keyId '{value}'"):
        kms.describe_key(KeyId=value)


def test_operations_on_an_unknown_multi_region_key_answer_not_found(kms):
    missing = "mrk-" + "1" * 32
    message = f"Key '{ARN_PREFIX}{missing}' does not exist"

    with aws_error("NotFoundException", message):
        kms.encrypt(KeyId=missing, Plaintext=b"x")
    with aws_error("NotFoundException", message):
        kms.create_alias(AliasName=new_alias(), TargetKeyId=missing)
    with aws_error("NotFoundException"):
        kms.retire_grant(KeyId=f"{ARN_PREFIX}{missing}", GrantId="0" * 64)


def test_describe_key_answers_not_found_for_an_unknown_alias(kms):
    alias = new_alias()

    with aws_error(
        "NotFoundException", f"Alias arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias} is not found."
    ):
        kms.describe_key(KeyId=alias)


def test_describe_key_answers_invalid_arn_for_a_malformed_arn(kms):
    with aws_error("InvalidArnException"):
        kms.describe_key(KeyId="arn:aws:kms:not-an-arn")


# --- AWS managed keys -------------------------------------------------------------------
def test_describe_key_on_a_predefined_aws_alias_creates_an_aws_managed_key(kms):
    metadata = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]

    assert metadata["KeyManager"] == "AWS"
    assert metadata["KeyState"] == "Enabled"
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"] == metadata["KeyId"]


def test_aws_managed_key_has_rotation_enabled(kms):
    key_id = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert "NextRotationDate" in status


def test_aws_managed_key_can_encrypt_through_its_alias(service):
    # As on AWS, an AWS managed key is used through its service (kms:ViaService), here a
    # trusted service principal acting for the administrator.
    identity = service.runtime.identity
    s3 = identity.create_principal(
        ACCOUNT_ID, f"s3-{new_alias()[-12:]}", service_name="s3.amazonaws.com"
    )
    s3_for_admin = client_on_behalf_of(
        service, *identity.create_access_key(s3), f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
    )

    ciphertext = s3_for_admin.encrypt(KeyId="alias/aws/s3", Plaintext=b"managed")
    blob = ciphertext["CiphertextBlob"]

    assert s3_for_admin.decrypt(CiphertextBlob=blob)["Plaintext"] == b"managed"


def test_aws_managed_key_cannot_be_used_directly(kms, service):
    with ledger_unchanged(service), aws_error("AccessDeniedException"):
        kms.encrypt(KeyId="alias/aws/s3", Plaintext=b"managed")


def test_customer_cannot_disable_an_aws_managed_key(kms, service):
    key_id = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    with ledger_unchanged(service), aws_error("AccessDeniedException") as error:
        kms.disable_key(KeyId=key_id)
    assert "kms:DisableKey" in error["message"]


def test_customer_cannot_schedule_deletion_of_an_aws_managed_key(kms, service):
    key_id = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    with ledger_unchanged(service), aws_error("AccessDeniedException"):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_customer_cannot_tag_an_aws_managed_key(kms, service):
    key_id = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    with ledger_unchanged(service), aws_error("AccessDeniedException"):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "team", "TagValue": "x"}])


def test_customer_cannot_disable_rotation_of_an_aws_managed_key(kms):
    key_id = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    with aws_error("AccessDeniedException"):
        kms.disable_key_rotation(KeyId=key_id)


def test_customer_cannot_create_an_alias_in_the_aws_namespace(kms, key_id, service):
    with ledger_unchanged(service), aws_error("InvalidAliasNameException") as error:
        kms.create_alias(AliasName="alias/aws/custom-thing", TargetKeyId=key_id)
    assert "alias/aws/" in error["message"]


# --- ListKeys ---------------------------------------------------------------------------
def test_list_keys_pages_with_limit_and_marker(other_account):
    # A fresh account holds exactly these seven keys, so the pages are predictable.
    kms = other_account.kms
    created = {kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(7)}

    pages = []
    page = kms.list_keys(Limit=3)
    pages.append(page)
    while page["Truncated"]:
        page = kms.list_keys(Limit=3, Marker=page["NextMarker"])
        pages.append(page)

    assert [len(p["Keys"]) for p in pages] == [3, 3, 1]
    assert [p["Truncated"] for p in pages] == [True, True, False]
    assert "NextMarker" not in pages[-1]
    listed = [k["KeyId"] for p in pages for k in p["Keys"]]
    assert sorted(listed) == sorted(created)
    arn_prefix = f"arn:aws:kms:{REGION}:{other_account.account_id}:key/"
    assert all(k["KeyArn"] == arn_prefix + k["KeyId"] for p in pages for k in p["Keys"])


def test_list_keys_returns_every_key_on_one_page_by_default(other_account):
    kms = other_account.kms
    created = {kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)}

    page = kms.list_keys()

    assert {k["KeyId"] for k in page["Keys"]} == created
    assert page["Truncated"] is False


def test_list_keys_includes_disabled_keys_and_keys_pending_deletion(other_account):
    kms = other_account.kms
    disabled = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    pending = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)

    assert {k["KeyId"] for k in kms.list_keys()["Keys"]} == {disabled, pending}


def test_list_keys_rejects_a_marker_it_did_not_issue(kms):
    with aws_error("InvalidMarkerException"):
        kms.list_keys(Marker="not-a-marker")


def test_list_keys_rejects_a_limit_above_1000(kms):
    with aws_error("ValidationException") as error:
        kms.list_keys(Limit=1001)
    assert error["message"] == (
        "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 1000"
    )


# --- UpdateKeyDescription -----------------------------------------------------------------
def test_update_key_description_replaces_the_description(kms, key_id):
    kms.update_key_description(KeyId=key_id, Description="rotated monthly")

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "rotated monthly"


def test_update_key_description_accepts_a_key_arn(kms, key_id):
    kms.update_key_description(KeyId=ARN_PREFIX + key_id, Description="by arn")

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "by arn"


def test_update_key_description_does_not_accept_an_alias(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    with aws_error("NotFoundException"):
        kms.update_key_description(KeyId=alias, Description="via alias")


def test_update_key_description_fails_while_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    arn = ARN_PREFIX + key_id

    with aws_error("KMSInvalidStateException", f"{arn} is pending deletion."):
        kms.update_key_description(KeyId=key_id, Description="too late")


# --- EnableKey / DisableKey -----------------------------------------------------------------
def test_disable_key_makes_the_key_disabled(kms, key_id):
    kms.disable_key(KeyId=key_id)

    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (metadata["KeyState"], metadata["Enabled"]) == ("Disabled", False)


def test_enable_key_makes_a_disabled_key_enabled(kms, key_id):
    kms.disable_key(KeyId=key_id)
    kms.enable_key(KeyId=key_id)

    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (metadata["KeyState"], metadata["Enabled"]) == ("Enabled", True)


def test_enable_key_on_an_enabled_key_changes_nothing(kms, key_id, service):
    with ledger_unchanged(service):
        kms.enable_key(KeyId=key_id)

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_disabled_key_refuses_to_encrypt(kms, key_id):
    kms.disable_key(KeyId=key_id)

    with aws_error("DisabledException", f"{ARN_PREFIX}{key_id} is disabled."):
        kms.encrypt(KeyId=key_id, Plaintext=b"secret")


def test_disabled_key_refuses_to_decrypt(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    kms.disable_key(KeyId=key_id)

    with aws_error("DisabledException", f"{ARN_PREFIX}{key_id} is disabled."):
        kms.decrypt(CiphertextBlob=ciphertext)


def test_re_enabled_key_decrypts_what_it_encrypted_before(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    kms.disable_key(KeyId=key_id)
    kms.enable_key(KeyId=key_id)

    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"secret"


def test_enable_key_fails_while_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.enable_key(KeyId=key_id)


def test_disable_key_answers_not_found_for_an_unknown_key(kms):
    with aws_error("NotFoundException"):
        kms.disable_key(KeyId="00000000-0000-4000-8000-000000000001")
