"""The AWS JSON 1.1 protocol's own errors, sent as raw signed HTTP or through a boto3
client without client-side validation (reference §1): UnknownOperation, Serialization and
model-constraint ValidationExceptions. No bad request may change the ledger or get a 5xx."""

from __future__ import annotations

import json

import pytest

from tests.aws.conftest import JSON_CONTENT_TYPE, aws_error, ledger_unchanged


def assert_aws_error_shape(response, error_type: str) -> None:
    assert response.status == 400
    assert response.error_type == error_type
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    assert response.headers.get("x-amzn-requestid")


# --- operation selection -------------------------------------------------------------------
def test_an_unknown_operation_answers_unknown_operation(raw):
    response = raw("TrentService.MakeCoffee", {})

    assert_aws_error_shape(response, "UnknownOperationException")


def test_a_target_of_another_service_answers_unknown_operation(raw):
    response = raw("DynamoDB_20120810.ListTables", {})

    assert_aws_error_shape(response, "UnknownOperationException")


def test_a_missing_target_answers_unknown_operation(raw):
    response = raw("", {})

    assert_aws_error_shape(response, "UnknownOperationException")


def test_a_successful_answer_carries_the_json_content_type_and_a_request_id(raw, key_id):
    response = raw("TrentService.DescribeKey", {"KeyId": key_id})

    assert response.status == 200
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    assert response.headers.get("x-amzn-requestid")
    assert response.body["KeyMetadata"]["KeyId"] == key_id


def test_an_operation_without_output_answers_an_empty_object(raw, key_id):
    response = raw("TrentService.EnableKey", {"KeyId": key_id})

    assert (response.status, response.body) == (200, {})


def test_members_the_model_does_not_know_are_ignored(raw, key_id):
    response = raw("TrentService.DescribeKey", {"KeyId": key_id, "Unexpected": 1})

    assert response.status == 200


# --- SerializationException ------------------------------------------------------------------
def test_a_body_that_is_not_json_answers_serialization(raw):
    response = raw("TrentService.ListKeys", b"{this is not json")

    assert_aws_error_shape(response, "SerializationException")


def test_a_body_that_is_a_json_array_answers_serialization(raw):
    response = raw("TrentService.ListKeys", b"[]")

    assert_aws_error_shape(response, "SerializationException")


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("TrentService.DescribeKey", {"KeyId": 123}),
        ("TrentService.GenerateRandom", {"NumberOfBytes": "32"}),
        ("TrentService.GenerateRandom", {"NumberOfBytes": 3.5}),
        ("TrentService.ListKeys", {"Limit": True}),
        ("TrentService.CreateKey", {"Tags": {"TagKey": "a", "TagValue": "b"}}),
        ("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "%%% not base64 %%%"}),
        ("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "aGk=", "DryRun": "yes"}),
        (
            "TrentService.Encrypt",
            {"KeyId": "alias/x", "Plaintext": "aGk=", "EncryptionContext": []},
        ),
    ],
)
def test_a_member_of_the_wrong_json_type_answers_serialization(raw, service, target, body):
    with ledger_unchanged(service):
        response = raw(target, body)

    assert_aws_error_shape(response, "SerializationException")


# --- ValidationException from the model -------------------------------------------------------
def test_a_missing_required_member_answers_validation(raw):
    response = raw("TrentService.DescribeKey", {})

    assert_aws_error_shape(response, "ValidationException")
    assert response.message == (
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_an_empty_body_counts_as_an_empty_object(raw):
    response = raw("TrentService.DescribeKey", b"")

    assert_aws_error_shape(response, "ValidationException")
    assert "Value null at 'keyId'" in response.message


def test_a_value_outside_an_enum_answers_validation_naming_the_member(raw):
    response = raw("TrentService.CreateKey", {"Origin": "SOMEWHERE"})

    assert_aws_error_shape(response, "ValidationException")
    assert response.message == (
        "1 validation error detected: Value 'SOMEWHERE' at 'origin' failed to satisfy "
        "constraint: Member must satisfy enum value set: "
        "[AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]"
    )


def test_several_violations_are_counted_and_joined(raw):
    response = raw("TrentService.CreateKey", {"Origin": "SOMEWHERE", "Description": "d" * 8193})

    assert_aws_error_shape(response, "ValidationException")
    assert response.message.startswith("2 validation errors detected: ")
    violations = response.message.removeprefix("2 validation errors detected: ").split("; ")
    assert len(violations) == 2
    assert any("at 'origin'" in v for v in violations)
    assert any(
        v.endswith(
            "at 'description' failed to satisfy constraint: Member must have length "
            "less than or equal to 8192"
        )
        for v in violations
    )


def test_a_string_too_long_answers_validation_with_the_maximum(raw):
    response = raw("TrentService.DescribeKey", {"KeyId": "k" * 2049})

    assert_aws_error_shape(response, "ValidationException")
    assert response.message == (
        f"1 validation error detected: Value '{'k' * 2049}' at 'keyId' failed to satisfy "
        "constraint: Member must have length less than or equal to 2048"
    )


def test_a_string_breaking_its_pattern_answers_validation_with_the_pattern(raw, key_id):
    response = raw("TrentService.GetKeyPolicy", {"KeyId": key_id, "PolicyName": "not-valid!"})

    assert_aws_error_shape(response, "ValidationException")
    assert response.message == (
        "1 validation error detected: Value 'not-valid!' at 'policyName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [\\w]+"
    )


def test_a_nested_violation_names_the_nested_path(raw, key_id):
    response = raw(
        "TrentService.TagResource",
        {"KeyId": key_id, "Tags": [{"TagKey": "ok", "TagValue": ""}, {"TagKey": "t" * 129}]},
    )

    assert_aws_error_shape(response, "ValidationException")
    assert response.message == (
        "2 validation errors detected: Value null at 'tags.2.member.tagValue' failed to "
        "satisfy constraint: Member must not be null; "
        f"Value '{'t' * 129}' at 'tags.2.member.tagKey' failed to satisfy constraint: "
        "Member must have length less than or equal to 128"
    )


def test_a_value_too_small_answers_validation_with_the_minimum(unvalidated_kms):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
    ):
        unvalidated_kms.list_keys(Limit=0)


def test_an_empty_plaintext_is_refused_without_echoing_it(unvalidated_kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    ):
        unvalidated_kms.encrypt(KeyId=key_id, Plaintext=b"")


def test_an_empty_key_id_is_refused_with_the_minimum_length(unvalidated_kms):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '' at 'keyId' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    ):
        unvalidated_kms.describe_key(KeyId="")


def test_too_many_grant_tokens_are_refused(kms, key_id):
    with aws_error("ValidationException") as error:
        kms.encrypt(KeyId=key_id, Plaintext=b"x", GrantTokens=["t"] * 11)
    assert error["message"].endswith(
        "at 'grantTokens' failed to satisfy constraint: Member must have length less than "
        "or equal to 10"
    )


def test_validation_errors_can_be_injected_through_botocore_events(service, kms, key_id):
    """botocore's before-call hook changes what is sent after its own validation ran."""

    def oversized_description(params, **_):
        body = json.loads(params["body"])
        body["Description"] = "d" * 8193
        params["body"] = json.dumps(body).encode()

    kms.meta.events.register("before-call.kms.UpdateKeyDescription", oversized_description)
    try:
        with ledger_unchanged(service), aws_error("ValidationException") as error:
            kms.update_key_description(KeyId=key_id, Description="short")
    finally:
        kms.meta.events.unregister("before-call.kms.UpdateKeyDescription", oversized_description)
    assert "at 'description'" in error["message"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "test key"


# --- bad requests change nothing and never fail the server ---------------------------------------
BAD_REQUESTS = [
    ("TrentService.NoSuchThing", b"{}"),
    ("TrentService.CreateKey", b"not json"),
    ("TrentService.CreateKey", b'{"KeyUsage": "RANDOM"}'),
    ("TrentService.CreateKey", b'{"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "SIGN_VERIFY"}'),
    ("TrentService.CreateKey", b'{"Tags": [{"TagKey": "aws:x", "TagValue": "y"}]}'),
    ("TrentService.CreateKey", b'{"Policy": "{"}'),
    ("TrentService.CreateAlias", b'{"AliasName": "no-prefix", "TargetKeyId": "x"}'),
    ("TrentService.ScheduleKeyDeletion", b'{"KeyId": "00000000-0000-4000-8000-000000000000"}'),
    ("TrentService.Decrypt", b'{"CiphertextBlob": "AAAA"}'),
    ("TrentService.Decrypt", b"{}"),
    ("TrentService.ReEncrypt", b'{"DestinationKeyId": "alias/none"}'),
    ("TrentService.GenerateRandom", b'{"NumberOfBytes": 99999999999999999999}'),
    ("TrentService.Encrypt", b'{"KeyId": "alias/none", "Plaintext": ""}'),
    ("TrentService.ListKeys", b'{"Marker": "\\u0000"}'),
    ("TrentService.ListAliases", b'{"Marker": "eyJhZnRlciI6IFtdfQ=="}'),
    ("TrentService.UpdateAlias", b'{"AliasName": "alias/aws/x", "TargetKeyId": "y"}'),
]


@pytest.mark.parametrize(("target", "body"), BAD_REQUESTS)
def test_a_bad_request_is_a_client_error_that_records_nothing(raw, service, target, body):
    with ledger_unchanged(service):
        response = raw(target, body)

    assert response.status == 400, response.body
    assert response.error_type and response.error_type != "KMSInternalException"
