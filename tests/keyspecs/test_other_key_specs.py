"""Encrypt/Decrypt/ReEncrypt with RSA keys, GenerateMac/VerifyMac, DeriveSharedSecret,
Encapsulate/Decapsulate, GenerateDataKeyPair and DescribeKey for every key spec, each
checked against the cryptography library (reference §4, §16)."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests.aws.conftest import aws_error, ledger_unchanged
from tests.conftest import ACCOUNT_ID, REGION
from tests.keyspecs.conftest import (
    CURVES,
    ECDH_SPECS,
    HMAC_SPECS,
    ML_KEM_SPECS,
    RSA_SPECS,
    external_key,
    import_material,
    key_events,
    new_private_key,
    pkcs8,
    public_der_of,
    used_events,
)

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
OAEP = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
# AWS's plaintext limits (reference §4).
RSA_LIMITS = {
    ("RSA_2048", "RSAES_OAEP_SHA_1"): 214,
    ("RSA_3072", "RSAES_OAEP_SHA_1"): 342,
    ("RSA_4096", "RSAES_OAEP_SHA_1"): 470,
    ("RSA_2048", "RSAES_OAEP_SHA_256"): 190,
    ("RSA_3072", "RSAES_OAEP_SHA_256"): 318,
    ("RSA_4096", "RSAES_OAEP_SHA_256"): 446,
}
DATA_KEY_PAIR_SPECS = (
    *RSA_SPECS,
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_768",
    "ML_KEM_1024",
)


def oaep(algorithm: str) -> padding.OAEP:
    h = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


# --- RSA encryption ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", RSA_SPECS)
@pytest.mark.parametrize("algorithm", OAEP)
def test_rsa_ciphertext_from_the_service_decrypts_with_the_cryptography_library(
    kms, imported_key, spec, algorithm
):
    key_id, private_key = imported_key(spec, "ENCRYPT_DECRYPT")
    plaintext = b"p" * RSA_LIMITS[(spec, algorithm)]  # the largest AWS accepts

    encrypted = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionAlgorithm=algorithm)

    assert encrypted["EncryptionAlgorithm"] == algorithm
    assert len(encrypted["CiphertextBlob"]) == int(spec[4:]) // 8  # raw RSA output
    assert private_key.decrypt(encrypted["CiphertextBlob"], oaep(algorithm)) == plaintext


@pytest.mark.parametrize("spec", RSA_SPECS)
@pytest.mark.parametrize("algorithm", OAEP)
def test_rsa_ciphertext_made_with_the_public_key_decrypts_in_the_service(
    kms, generated_key, spec, algorithm
):
    key_id = generated_key(spec, "ENCRYPT_DECRYPT")
    public_key = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    ciphertext = public_key.encrypt(b"offline secret", oaep(algorithm))

    decrypted = kms.decrypt(CiphertextBlob=ciphertext, KeyId=key_id, EncryptionAlgorithm=algorithm)

    assert decrypted["Plaintext"] == b"offline secret"
    assert decrypted["EncryptionAlgorithm"] == algorithm
    assert decrypted["KeyId"] == ARN_PREFIX + key_id


@pytest.mark.parametrize(("spec", "algorithm"), sorted(RSA_LIMITS))
def test_rsa_plaintext_over_awss_limit_is_a_validation_error(
    service, kms, generated_key, spec, algorithm
):
    key_id = generated_key(spec, "ENCRYPT_DECRYPT")
    limit = RSA_LIMITS[(spec, algorithm)]

    with (
        ledger_unchanged(service),
        aws_error(
            "ValidationException",
            f"Algorithm {algorithm} and key spec {spec} cannot encrypt data larger than "
            f"{limit} bytes.",
        ),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"p" * (limit + 1), EncryptionAlgorithm=algorithm)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_rsa_ciphertext_made_by_the_openssl_command_line_decrypts_in_the_service(
    kms, generated_key, tmp_path
):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")
    (tmp_path / "public.der").write_bytes(kms.get_public_key(KeyId=key_id)["PublicKey"])
    (tmp_path / "plaintext").write_bytes(b"sealed by openssl")

    subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            str(tmp_path / "public.der"),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
            str(tmp_path / "plaintext"),
            "-out",
            str(tmp_path / "ciphertext"),
        ],
        check=True,
        capture_output=True,
    )

    decrypted = kms.decrypt(
        CiphertextBlob=(tmp_path / "ciphertext").read_bytes(),
        KeyId=key_id,
        EncryptionAlgorithm="RSAES_OAEP_SHA_256",
    )
    assert decrypted["Plaintext"] == b"sealed by openssl"


def test_re_encrypt_moves_rsa_ciphertext_to_a_symmetric_key_and_back(kms, generated_key, key_id):
    rsa_key = generated_key("RSA_3072", "ENCRYPT_DECRYPT")
    rsa_blob = kms.encrypt(
        KeyId=rsa_key, Plaintext=b"moving", EncryptionAlgorithm="RSAES_OAEP_SHA_1"
    )["CiphertextBlob"]

    to_symmetric = kms.re_encrypt(
        CiphertextBlob=rsa_blob,
        SourceKeyId=rsa_key,
        SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1",
        DestinationKeyId=key_id,
    )
    back = kms.re_encrypt(
        CiphertextBlob=to_symmetric["CiphertextBlob"],
        DestinationKeyId=rsa_key,
        DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256",
    )

    assert to_symmetric["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_1"
    assert kms.decrypt(CiphertextBlob=to_symmetric["CiphertextBlob"])["Plaintext"] == b"moving"
    assert back["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert (
        kms.decrypt(
            CiphertextBlob=back["CiphertextBlob"],
            KeyId=rsa_key,
            EncryptionAlgorithm="RSAES_OAEP_SHA_256",
        )["Plaintext"]
        == b"moving"
    )


def test_rsa_decrypt_of_garbage_is_invalid_ciphertext(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")

    with ledger_unchanged(service), aws_error("InvalidCiphertextException"):
        kms.decrypt(
            CiphertextBlob=b"\x01" * 256, KeyId=key_id, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        )


def test_rsa_decrypt_without_a_key_id_is_a_validation_error(service, kms):
    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.decrypt(CiphertextBlob=b"\x01" * 256, EncryptionAlgorithm="RSAES_OAEP_SHA_256")


def test_an_rsa_key_refuses_the_symmetric_algorithm(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")

    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048.",
        ),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_a_symmetric_key_refuses_rsa_algorithms(service, kms, key_id):
    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            "Algorithm RSAES_OAEP_SHA_256 is incompatible with key spec SYMMETRIC_DEFAULT.",
        ),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")


def test_rsa_encryption_takes_no_encryption_context(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")

    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.encrypt(
            KeyId=key_id,
            Plaintext=b"x",
            EncryptionAlgorithm="RSAES_OAEP_SHA_256",
            EncryptionContext={"a": "b"},
        )


def test_encrypting_with_a_signing_key_is_invalid_key_usage(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "SIGN_VERIFY")

    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            f"{ARN_PREFIX}{key_id} key usage is SIGN_VERIFY which is not valid for Encrypt.",
        ),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")


# --- HMAC -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", HMAC_SPECS)
def test_a_mac_from_the_service_is_hmac_with_the_imported_key(kms, spec):
    bits = int(spec[5:])
    material = bytes(range(bits // 8))
    key_id = external_key(kms, spec)
    import_material(kms, key_id, material, wrapping_algorithm="RSAES_OAEP_SHA_256")
    algorithm = f"HMAC_SHA_{bits}"

    mac = kms.generate_mac(KeyId=key_id, Message=b"message", MacAlgorithm=algorithm)["Mac"]

    assert mac == hmac.new(material, b"message", f"sha{bits}").digest()
    local = hmac.new(material, b"other message", f"sha{bits}").digest()
    assert kms.verify_mac(
        KeyId=key_id, Message=b"other message", MacAlgorithm=algorithm, Mac=local
    )["MacValid"]


@pytest.mark.parametrize("spec", HMAC_SPECS)
def test_a_generated_hmac_key_macs_and_verifies(service, kms, generated_key, spec):
    key_id = generated_key(spec, "GENERATE_VERIFY_MAC")
    algorithm = f"HMAC_SHA_{spec[5:]}"
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    before = len(used_events(service, key_id))

    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm=algorithm)

    assert len(mac["Mac"]) == int(spec[5:]) // 8
    assert kms.verify_mac(KeyId=key_id, Message=b"m", MacAlgorithm=algorithm, Mac=mac["Mac"])[
        "MacValid"
    ]
    assert metadata["MacAlgorithms"] == [algorithm]
    assert "EncryptionAlgorithms" not in metadata
    assert [e.operation for e in used_events(service, key_id)[before:]] == [
        "GenerateMac",
        "VerifyMac",
    ]


def test_a_wrong_mac_is_kms_invalid_mac(service, kms, generated_key):
    key_id = generated_key("HMAC_256", "GENERATE_VERIFY_MAC")

    with ledger_unchanged(service), aws_error("KMSInvalidMacException", ""):
        kms.verify_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=b"\x00" * 32)


def test_a_mac_algorithm_of_another_spec_is_invalid_key_usage(service, kms, generated_key):
    key_id = generated_key("HMAC_224", "GENERATE_VERIFY_MAC")

    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            "Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224.",
        ),
    ):
        kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")


def test_an_hmac_key_does_not_encrypt(service, kms, generated_key):
    key_id = generated_key("HMAC_256", "GENERATE_VERIFY_MAC")

    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_a_symmetric_key_does_not_mac(service, kms, key_id):
    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")


# --- ECDH ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ECDH_SPECS)
def test_derive_shared_secret_agrees_with_ecdh_computed_outside(service, kms, generated_key, spec):
    key_id = generated_key(spec, "KEY_AGREEMENT")
    peer = ec.generate_private_key(CURVES[spec]())
    kms_public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])

    derived = kms.derive_shared_secret(
        KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=public_der_of(peer)
    )

    assert derived["SharedSecret"] == peer.exchange(ec.ECDH(), kms_public)
    assert derived["KeyAgreementAlgorithm"] == "ECDH"
    assert derived["KeyOrigin"] == "AWS_KMS"
    assert used_events(service, key_id)[-1].operation == "DeriveSharedSecret"


def test_two_kms_keys_derive_the_same_secret(kms, generated_key):
    alice = kms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")["KeyMetadata"][
        "KeyId"
    ]
    bob = generated_key("ECC_NIST_P384", "KEY_AGREEMENT")

    one = kms.derive_shared_secret(
        KeyId=alice,
        KeyAgreementAlgorithm="ECDH",
        PublicKey=kms.get_public_key(KeyId=bob)["PublicKey"],
    )["SharedSecret"]
    two = kms.derive_shared_secret(
        KeyId=bob,
        KeyAgreementAlgorithm="ECDH",
        PublicKey=kms.get_public_key(KeyId=alice)["PublicKey"],
    )["SharedSecret"]

    assert one == two


def test_a_peer_key_on_another_curve_is_refused(service, kms, generated_key):
    key_id = generated_key("ECC_NIST_P256", "KEY_AGREEMENT")
    peer = ec.generate_private_key(ec.SECP384R1())

    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.derive_shared_secret(
            KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=public_der_of(peer)
        )


def test_a_peer_key_that_is_not_der_is_a_validation_error(service, kms, generated_key):
    key_id = generated_key("ECC_NIST_P256", "KEY_AGREEMENT")

    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=b"garbage")


def test_a_signing_key_does_not_agree(service, kms, generated_key):
    key_id = generated_key("ECC_NIST_P256", "SIGN_VERIFY")
    peer = ec.generate_private_key(ec.SECP256R1())

    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.derive_shared_secret(
            KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=public_der_of(peer)
        )


# --- ML-KEM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ML_KEM_SPECS)
def test_a_secret_encapsulated_outside_decapsulates_in_the_service(
    service, kms, generated_key, spec
):
    key_id = generated_key(spec, "ENCAPSULATE_DECAPSULATE")
    public_key = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    shared_secret, ciphertext = public_key.encapsulate()

    answer = kms.decapsulate(
        KeyId=key_id, SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM"
    )

    assert answer["SharedSecret"] == shared_secret
    assert used_events(service, key_id)[-1].operation == "Decapsulate"


@pytest.mark.parametrize("spec", ML_KEM_SPECS)
def test_a_secret_encapsulated_in_the_service_decapsulates_outside(service, kms, spec):
    private_key = new_private_key(spec)
    key_id = external_key(kms, spec)
    import_material(kms, key_id, pkcs8(private_key))

    answer = kms.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM")

    assert private_key.decapsulate(answer["SharedSecretCiphertextBlob"]) == answer["SharedSecret"]
    assert kms.get_public_key(KeyId=key_id)["EncapsulationAlgorithms"] == ["ML_KEM"]
    assert used_events(service, key_id)[-1].operation == "Encapsulate"


def test_a_ciphertext_of_the_wrong_size_is_invalid_ciphertext(service, kms, generated_key):
    key_id = generated_key("ML_KEM_768", "ENCAPSULATE_DECAPSULATE")

    with ledger_unchanged(service), aws_error("InvalidCiphertextException"):
        kms.decapsulate(
            KeyId=key_id, SharedSecretCiphertextBlob=b"x" * 100, EncapsulationAlgorithm="ML_KEM"
        )


def test_ml_kem_512_is_not_offered_by_this_build(service, kms):
    with ledger_unchanged(service), aws_error("UnsupportedOperationException"):
        kms.create_key(KeySpec="ML_KEM_512", KeyUsage="ENCAPSULATE_DECAPSULATE")


# --- GenerateDataKeyPair ------------------------------------------------------------------------
@pytest.mark.parametrize("pair_spec", DATA_KEY_PAIR_SPECS)
def test_a_data_key_pair_is_a_real_pair_whose_private_key_decrypts_from_its_blob(
    service, kms, key_id, pair_spec
):
    context = {"purpose": "pair"}

    pair = kms.generate_data_key_pair(
        KeyId=key_id, KeyPairSpec=pair_spec, EncryptionContext=context
    )

    private_key = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    assert _spki(private_key) == pair["PublicKey"]
    assert pair["KeyPairSpec"] == pair_spec and pair["KeyId"] == ARN_PREFIX + key_id
    opened = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == pair["PrivateKeyPlaintext"]
    assert used_events(service, key_id)[-2].operation == "GenerateDataKeyPair"


def _spki(private_key) -> bytes:  # type: ignore[no-untyped-def]
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_data_key_pair_without_plaintext_gives_no_private_key(kms, key_id):
    pair = kms.generate_data_key_pair_without_plaintext(KeyId=key_id, KeyPairSpec="ECC_NIST_P256")

    assert "PrivateKeyPlaintext" not in pair
    private_der = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])["Plaintext"]
    assert _spki(serialization.load_der_private_key(private_der, None)) == pair["PublicKey"]


def test_a_data_key_pair_needs_a_symmetric_key(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")

    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.generate_data_key_pair(KeyId=key_id, KeyPairSpec="ECC_NIST_P256")


def test_a_data_key_pair_spec_this_build_cannot_make_is_unsupported(service, kms, key_id):
    with ledger_unchanged(service), aws_error("UnsupportedOperationException"):
        kms.generate_data_key_pair(KeyId=key_id, KeyPairSpec="SM2")


# --- DescribeKey ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "usage", "member", "algorithms"),
    [
        ("RSA_2048", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", OAEP),
        ("ECC_NIST_P521", "KEY_AGREEMENT", "KeyAgreementAlgorithms", ("ECDH",)),
        (
            "ECC_NIST_EDWARDS25519",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            ("ED25519_SHA_512", "ED25519_PH_SHA_512"),
        ),
        ("ML_DSA_87", "SIGN_VERIFY", "SigningAlgorithms", ("ML_DSA_SHAKE_256",)),
        ("ML_KEM_1024", "ENCAPSULATE_DECAPSULATE", "EncapsulationAlgorithms", ("ML_KEM",)),
    ],
)
def test_describe_key_lists_the_algorithms_of_the_spec_and_usage(
    kms, generated_key, spec, usage, member, algorithms
):
    metadata = kms.describe_key(KeyId=generated_key(spec, usage))["KeyMetadata"]

    assert metadata[member] == list(algorithms)
    assert (metadata["KeySpec"], metadata["KeyUsage"]) == (spec, usage)
    listed = {m for m in metadata if m.endswith("Algorithms")}
    assert listed == {member}


@pytest.mark.parametrize(
    ("spec", "usage"),
    [
        ("HMAC_256", "GENERATE_VERIFY_MAC"),
        ("RSA_2048", "SIGN_VERIFY"),
        ("ECC_NIST_P256", "SIGN_VERIFY"),
    ],
)
def test_describe_key_shows_no_current_key_material_id_for_hmac_or_asymmetric_keys(
    kms, generated_key, spec, usage
):
    # AWS shows CurrentKeyMaterialId for symmetric encryption keys only (KeyMetadata's
    # documentation in botocore's model).
    metadata = kms.describe_key(KeyId=generated_key(spec, usage))["KeyMetadata"]

    assert "CurrentKeyMaterialId" not in metadata


def test_describe_key_shows_no_current_key_material_id_for_an_imported_asymmetric_key(
    kms, imported_key
):
    key_id, _ = imported_key("RSA_2048", "ENCRYPT_DECRYPT")

    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]

    assert metadata["KeyState"] == "Enabled"
    assert "CurrentKeyMaterialId" not in metadata


def test_rsa_decrypt_and_re_encrypt_name_no_key_material(kms, generated_key, key_id):
    # AWS: KeyMaterialId (Decrypt), Source/DestinationKeyMaterialId (ReEncrypt) are present
    # only when a symmetric encryption key is used.
    rsa_key = generated_key("RSA_2048", "ENCRYPT_DECRYPT")
    algorithm = "RSAES_OAEP_SHA_256"
    blob = kms.encrypt(KeyId=rsa_key, Plaintext=b"x", EncryptionAlgorithm=algorithm)[
        "CiphertextBlob"
    ]

    decrypted = kms.decrypt(CiphertextBlob=blob, KeyId=rsa_key, EncryptionAlgorithm=algorithm)
    moved = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceKeyId=rsa_key,
        SourceEncryptionAlgorithm=algorithm,
        DestinationKeyId=key_id,
    )

    assert "KeyMaterialId" not in decrypted
    assert "SourceKeyMaterialId" not in moved
    assert len(moved["DestinationKeyMaterialId"]) == 64


def test_asymmetric_material_is_stored_wrapped(service, generated_key):
    key_id = generated_key("ECC_NIST_P256", "SIGN_VERIFY")
    created = next(e for e in key_events(service, key_id) if type(e).__name__ == "Created")
    material = created.material
    plaintext = service.runtime.vault.unwrap_material(created.originator_id, material)

    assert plaintext is not None and plaintext not in material.wrapped
    assert hashlib.sha256(plaintext).digest() != hashlib.sha256(material.wrapped).digest()
