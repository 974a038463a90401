"""AWS's error answers byte for byte: HTTP status, ``__type``, and ``message`` with AWS's
text, or no ``message`` member at all where AWS gives none (an empty string is another
answer). boto3 reads an absent and an empty message alike, so these read the raw body.

Sources: the error messages recorded against AWS in localstack's
tests/aws/services/kms/test_kms.snapshot.json (reference: sts-quotas-multiregion-emulators
§6), where an error with no top-level ``message`` was sent without one.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.aws.conftest import RawResponse, RawSender
from tests.conftest import ACCOUNT_ID, REGION

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error_body(response: RawResponse, body: dict[str, Any]) -> None:
    assert (response.status, response.body) == (400, body)


# --- errors AWS sends without a message ------------------------------------------------------
def test_an_unknown_operation_has_no_message(raw: RawSender) -> None:
    response = raw("TrentService.MakeCoffee", {})

    assert_error_body(response, {"__type": "UnknownOperationException"})


def test_a_tampered_ciphertext_is_invalid_ciphertext_without_a_message(
    raw: RawSender, kms: Any, key_id: str
) -> None:
    blob = bytearray(kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"])
    blob[-1] ^= 1

    response = raw("TrentService.Decrypt", {"CiphertextBlob": b64(bytes(blob))})

    assert_error_body(response, {"__type": "InvalidCiphertextException"})


def test_a_differing_encryption_context_is_invalid_ciphertext_without_a_message(
    raw: RawSender, kms: Any, key_id: str
) -> None:
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"a": "1"})
    request = {"CiphertextBlob": b64(blob["CiphertextBlob"]), "EncryptionContext": {"a": "2"}}

    response = raw("TrentService.Decrypt", request)

    assert_error_body(response, {"__type": "InvalidCiphertextException"})


def test_a_wrong_signature_is_kms_invalid_signature_without_a_message(
    raw: RawSender, kms: Any
) -> None:
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=key_id, Message=b"one", SigningAlgorithm="ECDSA_SHA_256")

    response = raw(
        "TrentService.Verify",
        {
            "KeyId": key_id,
            "Message": b64(b"two"),
            "Signature": b64(signature["Signature"]),
            "SigningAlgorithm": "ECDSA_SHA_256",
        },
    )

    assert_error_body(response, {"__type": "KMSInvalidSignatureException"})


def test_a_wrong_mac_is_kms_invalid_mac_without_a_message(raw: RawSender, kms: Any) -> None:
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]

    response = raw(
        "TrentService.VerifyMac",
        {
            "KeyId": key_id,
            "Message": b64(b"m"),
            "Mac": b64(b"\0" * 32),
            "MacAlgorithm": "HMAC_SHA_256",
        },
    )

    assert_error_body(response, {"__type": "KMSInvalidMacException"})


def test_rotating_an_asymmetric_key_on_demand_is_unsupported_without_a_message(
    raw: RawSender, kms: Any
) -> None:
    # Recorded: RotateKeyOnDemand on an RSA_4096 key (localstack snapshot, 2025-03).
    key_id = kms.create_key(KeySpec="RSA_4096", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]

    response = raw("TrentService.RotateKeyOnDemand", {"KeyId": key_id})

    assert_error_body(response, {"__type": "UnsupportedOperationException"})


def test_enabling_rotation_of_an_hmac_key_is_unsupported_without_a_message(
    raw: RawSender, kms: Any
) -> None:
    # AWS answered EnableKeyRotation on an RSA_4096 key with an empty
    # UnsupportedOperationException (terraform-aws-modules/terraform-aws-kms#20).
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]

    response = raw("TrentService.EnableKeyRotation", {"KeyId": key_id})

    assert_error_body(response, {"__type": "UnsupportedOperationException"})


def test_rotation_status_of_an_imported_key_names_its_origin(raw: RawSender, kms: Any) -> None:
    # The key-state table: GetKeyRotationStatus on an EXTERNAL key (reference §6, note 6).
    key_id = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]

    response = raw("TrentService.GetKeyRotationStatus", {"KeyId": key_id})

    message = f"{ARN_PREFIX}{key_id} origin is EXTERNAL which is not valid for this operation."
    assert_error_body(response, {"__type": "UnsupportedOperationException", "message": message})


def test_a_malformed_peer_public_key_is_a_validation_error_without_a_message(
    raw: RawSender, kms: Any
) -> None:
    # Recorded: DeriveSharedSecret with PublicKey b"InvalidPublicKey" (localstack snapshot).
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"][
        "KeyId"
    ]

    response = raw(
        "TrentService.DeriveSharedSecret",
        {"KeyId": key_id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(b"InvalidPublicKey")},
    )

    assert_error_body(response, {"__type": "ValidationException"})


# --- validation messages -------------------------------------------------------------------------
def test_an_unknown_mac_algorithm_lists_the_algorithms_in_awss_order(
    raw: RawSender, kms: Any
) -> None:
    # Recorded: GenerateMac and VerifyMac with MacAlgorithm INVALID (localstack snapshot).
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]

    response = raw(
        "TrentService.GenerateMac",
        {"KeyId": key_id, "Message": b64(b"m"), "MacAlgorithm": "INVALID"},
    )

    message = (
        "1 validation error detected: Value 'INVALID' at 'macAlgorithm' failed to satisfy "
        "constraint: Member must satisfy enum value set: "
        "[HMAC_SHA_384, HMAC_SHA_256, HMAC_SHA_224, HMAC_SHA_512]"
    )
    assert_error_body(response, {"__type": "ValidationException", "message": message})


def test_an_unknown_key_agreement_algorithm_lists_ecdh(raw: RawSender, kms: Any) -> None:
    # Recorded: DeriveSharedSecret with KeyAgreementAlgorithm INVALID (localstack snapshot).
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"][
        "KeyId"
    ]

    response = raw(
        "TrentService.DeriveSharedSecret",
        {"KeyId": key_id, "KeyAgreementAlgorithm": "INVALID", "PublicKey": b64(b"k")},
    )

    message = (
        "1 validation error detected: Value 'INVALID' at 'keyAgreementAlgorithm' failed to "
        "satisfy constraint: Member must satisfy enum value set: [ECDH]"
    )
    assert_error_body(response, {"__type": "ValidationException", "message": message})


# --- key identifiers -----------------------------------------------------------------------------
def test_an_alias_arn_where_only_a_key_will_do_is_an_invalid_arn(
    raw: RawSender, kms: Any, key_id: str
) -> None:
    # AWS's answer to CreateGrant with an alias ARN, as Lambda relays it: "InvalidArnException
    # KMS Message: Key Aliases are not supported for this operation."
    alias = f"alias/arn-{key_id}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    response = raw(
        "TrentService.CreateGrant",
        {
            "KeyId": f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}",
            "GranteePrincipal": f"arn:aws:iam::{ACCOUNT_ID}:root",
            "Operations": ["Decrypt"],
        },
    )

    message = "Key Aliases are not supported for this operation."
    assert_error_body(response, {"__type": "InvalidArnException", "message": message})
