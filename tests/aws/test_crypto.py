"""Cryptographic operations through boto3: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
GenerateDataKeyWithoutPlaintext, GenerateRandom (reference §4, §5, §16 "Cryptographic")."""

from __future__ import annotations

import pytest

from tests.aws.conftest import aws_error, ledger_unchanged, new_alias
from tests.conftest import ACCOUNT_ID, REGION

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
PLAINTEXT_TOO_LONG = (
    "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
    "Member must have length less than or equal to 4096"
)


# --- Encrypt / Decrypt -----------------------------------------------------------------------
def test_decrypt_returns_what_encrypt_was_given(kms, key_id):
    encrypted = kms.encrypt(KeyId=key_id, Plaintext=b"attack at dawn")

    decrypted = kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])

    assert decrypted["Plaintext"] == b"attack at dawn"
    assert decrypted["KeyId"] == ARN_PREFIX + key_id
    assert decrypted["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"


def test_encrypt_answers_the_key_arn_and_algorithm(kms, key_id):
    encrypted = kms.encrypt(KeyId=key_id, Plaintext=b"x")

    assert encrypted["KeyId"] == ARN_PREFIX + key_id
    assert encrypted["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert "KeyMaterialId" not in encrypted


def test_encrypt_gives_a_different_ciphertext_each_time(kms, key_id):
    first = kms.encrypt(KeyId=key_id, Plaintext=b"same")["CiphertextBlob"]
    second = kms.encrypt(KeyId=key_id, Plaintext=b"same")["CiphertextBlob"]

    assert first != second


def test_decrypt_reports_the_key_material_that_encrypted(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    assert kms.decrypt(CiphertextBlob=ciphertext)["KeyMaterialId"] == current


def test_encrypt_accepts_a_key_arn(kms, key_id):
    encrypted = kms.encrypt(KeyId=ARN_PREFIX + key_id, Plaintext=b"by arn")

    assert kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])["Plaintext"] == b"by arn"


def test_encrypt_accepts_an_alias_name(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    encrypted = kms.encrypt(KeyId=alias, Plaintext=b"by alias")

    assert encrypted["KeyId"] == ARN_PREFIX + key_id


def test_encrypt_accepts_an_alias_arn(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    encrypted = kms.encrypt(KeyId=f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}", Plaintext=b"a")

    assert encrypted["KeyId"] == ARN_PREFIX + key_id


def test_decrypt_accepts_the_right_key_id_by_alias(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"named")["CiphertextBlob"]

    assert kms.decrypt(CiphertextBlob=ciphertext, KeyId=alias)["Plaintext"] == b"named"


def test_decrypt_with_another_key_id_answers_incorrect_key(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"mine")["CiphertextBlob"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]

    with aws_error(
        "IncorrectKeyException",
        "The key ID in the request does not identify a CMK that can perform this operation.",
    ):
        kms.decrypt(CiphertextBlob=ciphertext, KeyId=other)


def test_encrypt_accepts_exactly_4096_bytes(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"a" * 4096)["CiphertextBlob"]

    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"a" * 4096


def test_encrypt_rejects_4097_bytes_without_echoing_the_plaintext(kms, key_id, service):
    with ledger_unchanged(service), aws_error("ValidationException", PLAINTEXT_TOO_LONG):
        kms.encrypt(KeyId=key_id, Plaintext=b"a" * 4097)


def test_encrypt_rejects_an_asymmetric_algorithm_for_a_symmetric_key(kms, key_id):
    with aws_error("InvalidKeyUsageException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")


def test_encrypt_answers_not_found_for_an_unknown_alias(kms):
    with aws_error("NotFoundException"):
        kms.encrypt(KeyId=new_alias(), Plaintext=b"x")


def test_decrypt_needs_the_same_encryption_context(kms, key_id):
    context = {"tenant": "acme", "purpose": "backup"}
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"ctx", EncryptionContext=context)[
        "CiphertextBlob"
    ]

    decrypted = kms.decrypt(
        CiphertextBlob=ciphertext, EncryptionContext={"purpose": "backup", "tenant": "acme"}
    )

    assert decrypted["Plaintext"] == b"ctx"


def test_decrypt_fails_when_the_encryption_context_differs(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"ctx", EncryptionContext={"a": "1"})[
        "CiphertextBlob"
    ]

    with aws_error("InvalidCiphertextException", ""):
        kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext={"a": "2"})


def test_decrypt_fails_when_the_encryption_context_is_left_out(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"ctx", EncryptionContext={"a": "1"})[
        "CiphertextBlob"
    ]

    with aws_error("InvalidCiphertextException", ""):
        kms.decrypt(CiphertextBlob=ciphertext)


def test_decrypt_fails_when_the_encryption_context_differs_only_in_case(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"ctx", EncryptionContext={"a": "b"})[
        "CiphertextBlob"
    ]

    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext={"A": "b"})


def test_decrypt_fails_when_a_context_is_added_that_was_not_used(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"ctx")["CiphertextBlob"]

    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext={"a": "1"})


@pytest.mark.parametrize("position", [-1, -20, 40])
def test_decrypt_rejects_a_tampered_ciphertext(kms, key_id, service, position):
    ciphertext = bytearray(kms.encrypt(KeyId=key_id, Plaintext=b"x" * 32)["CiphertextBlob"])
    ciphertext[position] ^= 0x01

    with ledger_unchanged(service), aws_error("InvalidCiphertextException", ""):
        kms.decrypt(CiphertextBlob=bytes(ciphertext))


def test_decrypt_rejects_a_ciphertext_naming_a_key_that_does_not_exist(kms, key_id):
    ciphertext = bytearray(kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"])
    ciphertext[1:17] = bytes(16)  # the header's key id

    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=bytes(ciphertext))


def test_decrypt_rejects_bytes_that_are_no_ciphertext(kms, service):
    with ledger_unchanged(service), aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=b"definitely not a ciphertext")


def test_decrypt_rejects_a_truncated_ciphertext(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 32)["CiphertextBlob"]

    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=ciphertext[:-5])


# --- ReEncrypt -------------------------------------------------------------------------------
def test_re_encrypt_moves_a_ciphertext_to_another_key(kms, key_id):
    destination = kms.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"move me")["CiphertextBlob"]

    moved = kms.re_encrypt(CiphertextBlob=ciphertext, DestinationKeyId=destination)

    assert moved["SourceKeyId"] == ARN_PREFIX + key_id
    assert moved["KeyId"] == ARN_PREFIX + destination
    assert moved["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert moved["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    decrypted = kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])
    assert (decrypted["Plaintext"], decrypted["KeyId"]) == (b"move me", ARN_PREFIX + destination)


def test_re_encrypt_reports_source_and_destination_key_material(kms, key_id):
    destination = kms.create_key()["KeyMetadata"]
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"m")["CiphertextBlob"]
    source_material = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    moved = kms.re_encrypt(CiphertextBlob=ciphertext, DestinationKeyId=destination["KeyId"])

    assert moved["SourceKeyMaterialId"] == source_material
    assert moved["DestinationKeyMaterialId"] == destination["CurrentKeyMaterialId"]


def test_re_encrypt_changes_the_encryption_context(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"c", EncryptionContext={"v": "1"})[
        "CiphertextBlob"
    ]

    moved = kms.re_encrypt(
        CiphertextBlob=ciphertext,
        SourceEncryptionContext={"v": "1"},
        DestinationKeyId=key_id,
        DestinationEncryptionContext={"v": "2"},
    )["CiphertextBlob"]

    assert kms.decrypt(CiphertextBlob=moved, EncryptionContext={"v": "2"})["Plaintext"] == b"c"
    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=moved, EncryptionContext={"v": "1"})


def test_re_encrypt_fails_when_the_source_context_is_wrong(kms, key_id, service):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"c", EncryptionContext={"v": "1"})[
        "CiphertextBlob"
    ]

    with ledger_unchanged(service), aws_error("InvalidCiphertextException"):
        kms.re_encrypt(
            CiphertextBlob=ciphertext, SourceEncryptionContext={"v": "9"}, DestinationKeyId=key_id
        )


def test_re_encrypt_with_a_wrong_source_key_answers_incorrect_key(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"c")["CiphertextBlob"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]

    with aws_error("IncorrectKeyException"):
        kms.re_encrypt(CiphertextBlob=ciphertext, SourceKeyId=other, DestinationKeyId=key_id)


def test_re_encrypt_to_a_disabled_key_answers_disabled(kms, key_id):
    destination = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=destination)
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"c")["CiphertextBlob"]

    with aws_error("DisabledException", f"{ARN_PREFIX}{destination} is disabled."):
        kms.re_encrypt(CiphertextBlob=ciphertext, DestinationKeyId=destination)


def test_re_encrypt_accepts_a_source_from_another_region_of_the_deployment(service, kms):
    """A ciphertext made in eu-west-2 re-encrypts, from a us-east-1 client, under a
    us-east-1 key. This deployment holds every Region's keys, so ReEncrypt accepts a
    source from another Region of the same account (a snapshot copied between Regions),
    named by its key ARN; the destination is named by key ARN too. Every other use of
    another Region's key stays refused: Decrypt of its ciphertext, its bare key id, and
    its ARN in any other operation (tests below)."""
    london = service.client("kms", region="eu-west-2")
    source = london.create_key()["KeyMetadata"]
    assert source["Arn"] == f"arn:aws:kms:eu-west-2:{ACCOUNT_ID}:key/{source['KeyId']}"
    ciphertext = london.encrypt(KeyId=source["KeyId"], Plaintext=b"snapshot key")["CiphertextBlob"]
    destination = kms.create_key()["KeyMetadata"]

    moved = kms.re_encrypt(
        CiphertextBlob=ciphertext, SourceKeyId=source["Arn"], DestinationKeyId=destination["Arn"]
    )

    assert moved["SourceKeyId"] == source["Arn"]
    assert moved["KeyId"] == destination["Arn"]
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"snapshot key"


def test_re_encrypt_names_a_wrong_source_in_another_region_as_incorrect(service, kms, key_id):
    london = service.client("kms", region="eu-west-2")
    source = london.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = london.encrypt(KeyId=source, Plaintext=b"x")["CiphertextBlob"]

    with aws_error("IncorrectKeyException"):
        kms.re_encrypt(
            CiphertextBlob=ciphertext, SourceKeyId=ARN_PREFIX + key_id, DestinationKeyId=key_id
        )


def test_decrypt_refuses_a_ciphertext_from_another_region(service, kms):
    london = service.client("kms", region="eu-west-2")
    source = london.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = london.encrypt(KeyId=source, Plaintext=b"stay home")["CiphertextBlob"]

    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=ciphertext)


def test_a_bare_key_id_names_only_keys_of_the_callers_region(service, kms):
    london = service.client("kms", region="eu-west-2")
    source = london.create_key()["KeyMetadata"]["KeyId"]

    with aws_error("NotFoundException", f"Key '{ARN_PREFIX}{source}' does not exist"):
        kms.describe_key(KeyId=source)


# --- GenerateDataKey ----------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "size"), [("AES_256", 32), ("AES_128", 16)])
def test_generate_data_key_by_key_spec_returns_a_key_of_that_size(kms, key_id, spec, size):
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec=spec)

    assert len(data_key["Plaintext"]) == size
    assert data_key["KeyId"] == ARN_PREFIX + key_id


@pytest.mark.parametrize("size", [1, 64, 1024])
def test_generate_data_key_by_number_of_bytes_returns_that_many_bytes(kms, key_id, size):
    assert len(kms.generate_data_key(KeyId=key_id, NumberOfBytes=size)["Plaintext"]) == size


def test_generate_data_key_ciphertext_decrypts_to_its_plaintext(kms, key_id):
    context = {"file": "report.pdf"}
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)

    decrypted = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)

    assert decrypted["Plaintext"] == data_key["Plaintext"]
    assert data_key["KeyMaterialId"] == decrypted["KeyMaterialId"]


def test_generate_data_key_needs_key_spec_or_number_of_bytes(kms, key_id, service):
    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.generate_data_key(KeyId=key_id)


def test_generate_data_key_refuses_both_key_spec_and_number_of_bytes(kms, key_id):
    with aws_error("ValidationException"):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", NumberOfBytes=32)


def test_generate_data_key_refuses_more_than_1024_bytes(kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy "
        "constraint: Member must have value less than or equal to 1024",
    ):
        kms.generate_data_key(KeyId=key_id, NumberOfBytes=1025)


def test_generate_data_key_refuses_an_unknown_key_spec(kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value 'AES_512' at 'keySpec' failed to satisfy "
        "constraint: Member must satisfy enum value set: [AES_256, AES_128]",
    ):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_512")


def test_generate_data_key_fails_on_a_disabled_key(kms, key_id):
    kms.disable_key(KeyId=key_id)

    with aws_error("DisabledException", f"{ARN_PREFIX}{key_id} is disabled."):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")


def test_generate_data_key_without_plaintext_returns_only_the_ciphertext(kms, key_id):
    data_key = kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_128")

    assert "Plaintext" not in data_key
    assert data_key["KeyId"] == ARN_PREFIX + key_id
    assert len(kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]) == 16


def test_generate_data_key_without_plaintext_needs_key_spec_or_number_of_bytes(kms, key_id):
    with aws_error("ValidationException"):
        kms.generate_data_key_without_plaintext(KeyId=key_id)


def test_generate_data_key_accepts_an_alias(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    assert kms.generate_data_key(KeyId=alias, NumberOfBytes=8)["KeyId"] == ARN_PREFIX + key_id


# --- GenerateRandom ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 32, 1024])
def test_generate_random_returns_the_number_of_bytes_asked_for(kms, size):
    assert len(kms.generate_random(NumberOfBytes=size)["Plaintext"]) == size


def test_generate_random_returns_different_bytes_each_call(kms):
    first = kms.generate_random(NumberOfBytes=32)["Plaintext"]

    assert kms.generate_random(NumberOfBytes=32)["Plaintext"] != first


def test_generate_random_refuses_zero_bytes(unvalidated_kms):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1",
    ):
        unvalidated_kms.generate_random(NumberOfBytes=0)


def test_generate_random_refuses_1025_bytes(kms):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy "
        "constraint: Member must have value less than or equal to 1024",
    ):
        kms.generate_random(NumberOfBytes=1025)


def test_generate_random_requires_number_of_bytes(kms):
    with aws_error("ValidationException", "NumberOfBytes is required."):
        kms.generate_random()


def test_a_key_arn_of_another_region_is_not_found(service, kms):
    london = service.client("kms", region="eu-west-2")
    arn = london.create_key()["KeyMetadata"]["Arn"]

    with aws_error("NotFoundException", "Invalid arn eu-west-2"):
        kms.describe_key(KeyId=arn)


def test_encrypt_refuses_a_key_arn_of_another_region(service, kms):
    london = service.client("kms", region="eu-west-2")
    arn = london.create_key()["KeyMetadata"]["Arn"]

    with aws_error("NotFoundException", "Invalid arn eu-west-2"):
        kms.encrypt(KeyId=arn, Plaintext=b"x")


# --- DryRun ------------------------------------------------------------------------------------
def test_encrypt_dry_run_answers_that_it_would_have_succeeded(kms, key_id, service):
    with (
        ledger_unchanged(service),
        aws_error(
            "DryRunOperationException",
            "The request would have succeeded, but the DryRun option is set.",
        ),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", DryRun=True)


def test_encrypt_dry_run_still_reports_a_disabled_key(kms, key_id):
    kms.disable_key(KeyId=key_id)

    with aws_error("DisabledException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", DryRun=True)


def test_generate_data_key_refuses_zero_bytes(unvalidated_kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1",
    ):
        unvalidated_kms.generate_data_key(KeyId=key_id, NumberOfBytes=0)
