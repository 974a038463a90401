"""Sign and Verify for every key spec x signing algorithm AWS lists (reference §4, §16):
signatures made in the service verify with independent implementations (the cryptography
library; libsodium for Ed25519ph; the openssl command line), and signatures made outside
verify in the service."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.aws.conftest import aws_error, ledger_unchanged
from tests.keyspecs.conftest import (
    SIGNING_PAIRS,
    digest,
    kms_input,
    message_types,
    prehashed_sign_locally,
    sign_locally,
    used_events,
    verify_locally,
)

MESSAGE = b"release manifest v1: sha256 of every artefact"


@pytest.mark.parametrize(("spec", "algorithm"), SIGNING_PAIRS)
def test_a_signature_made_in_the_service_verifies_with_the_cryptography_library(
    kms, generated_key, spec, algorithm
):
    key_id = generated_key(spec, "SIGN_VERIFY")
    public_key = kms.get_public_key(KeyId=key_id)["PublicKey"]

    for message_type in message_types(algorithm):
        signed = kms.sign(
            KeyId=key_id,
            SigningAlgorithm=algorithm,
            MessageType=message_type,
            Message=kms_input(public_key, algorithm, message_type, MESSAGE),
        )

        assert signed["SigningAlgorithm"] == algorithm
        verify_locally(public_key, algorithm, MESSAGE, signed["Signature"])


@pytest.mark.parametrize(("spec", "algorithm"), SIGNING_PAIRS)
def test_a_signature_made_outside_verifies_in_the_service(kms, imported_key, spec, algorithm):
    key_id, private_key = imported_key(spec, "SIGN_VERIFY")
    public_key = kms.get_public_key(KeyId=key_id)["PublicKey"]
    signature = sign_locally(private_key, algorithm, MESSAGE)

    for message_type in message_types(algorithm):
        verified = kms.verify(
            KeyId=key_id,
            SigningAlgorithm=algorithm,
            MessageType=message_type,
            Message=kms_input(public_key, algorithm, message_type, MESSAGE),
            Signature=signature,
        )

        assert verified["SignatureValid"] is True


@pytest.mark.parametrize(
    ("spec", "algorithm"), [p for p in SIGNING_PAIRS if p[0].startswith(("ECC_NIST_P", "RSA"))]
)
def test_a_signature_made_outside_from_a_digest_verifies_in_the_service(
    kms, imported_key, spec, algorithm
):
    key_id, private_key = imported_key(spec, "SIGN_VERIFY")
    signature = prehashed_sign_locally(private_key, algorithm, MESSAGE)

    assert kms.verify(
        KeyId=key_id,
        SigningAlgorithm=algorithm,
        MessageType="DIGEST",
        Message=digest(algorithm, MESSAGE),
        Signature=signature,
    )["SignatureValid"]


def test_the_public_key_is_the_imported_private_keys(kms, imported_key):
    key_id, private_key = imported_key("ECC_NIST_P384", "SIGN_VERIFY")

    answer = kms.get_public_key(KeyId=key_id)

    assert answer["PublicKey"] == private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert answer["SigningAlgorithms"] == ["ECDSA_SHA_384"]
    assert answer["KeyUsage"] == "SIGN_VERIFY"
    assert "EncryptionAlgorithms" not in answer


def test_a_digest_signed_in_the_service_verifies_as_a_signature_over_the_message(
    kms, generated_key
):
    key_id = generated_key("ECC_NIST_P256", "SIGN_VERIFY")
    signature = kms.sign(
        KeyId=key_id,
        SigningAlgorithm="ECDSA_SHA_256",
        MessageType="DIGEST",
        Message=digest("ECDSA_SHA_256", MESSAGE),
    )["Signature"]

    assert kms.verify(
        KeyId=key_id, SigningAlgorithm="ECDSA_SHA_256", Message=MESSAGE, Signature=signature
    )["SignatureValid"]


# --- the openssl command line ------------------------------------------------------------------
openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def _pem(public_der: bytes, path: Path) -> Path:
    public_key = serialization.load_der_public_key(public_der)
    path.write_bytes(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@openssl
@pytest.mark.parametrize(
    ("spec", "algorithm", "options"),
    [
        (
            "RSA_2048",
            "RSASSA_PSS_SHA_256",
            ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"],
        ),
        ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_384", []),
        ("ECC_NIST_P256", "ECDSA_SHA_256", []),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256", []),
    ],
)
def test_a_signature_made_in_the_service_verifies_with_the_openssl_command_line(
    kms, generated_key, tmp_path, spec, algorithm, options
):
    key_id = generated_key(spec, "SIGN_VERIFY")
    public_pem = _pem(kms.get_public_key(KeyId=key_id)["PublicKey"], tmp_path / "public.pem")
    (tmp_path / "message").write_bytes(MESSAGE)
    signature = kms.sign(KeyId=key_id, SigningAlgorithm=algorithm, Message=MESSAGE)["Signature"]
    (tmp_path / "signature").write_bytes(signature)

    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha" + algorithm.rsplit("_", 1)[-1],
            "-verify",
            str(public_pem),
            *options,
            "-signature",
            str(tmp_path / "signature"),
            str(tmp_path / "message"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout


# --- the ledger ------------------------------------------------------------------------------
def test_sign_and_verify_each_record_a_used_event_with_the_algorithm(service, kms, generated_key):
    key_id = generated_key("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
    before = len(used_events(service, key_id))

    signature = kms.sign(KeyId=key_id, SigningAlgorithm="ED25519_SHA_512", Message=MESSAGE)
    kms.verify(
        KeyId=key_id,
        SigningAlgorithm="ED25519_SHA_512",
        Message=MESSAGE,
        Signature=signature["Signature"],
    )

    recorded = used_events(service, key_id)[before:]
    assert [(e.operation, e.algorithm) for e in recorded] == [
        ("Sign", "ED25519_SHA_512"),
        ("Verify", "ED25519_SHA_512"),
    ]
    assert all(e.encryption_context == {} for e in recorded)


# --- bad input: AWS's error, nothing recorded ------------------------------------------------
def test_a_garbage_signature_is_kms_invalid_signature(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "SIGN_VERIFY")

    with ledger_unchanged(service), aws_error("KMSInvalidSignatureException", ""):
        kms.verify(
            KeyId=key_id,
            SigningAlgorithm="RSASSA_PSS_SHA_256",
            Message=MESSAGE,
            Signature=b"\x00" * 256,
        )


def test_a_signature_over_another_message_is_kms_invalid_signature(service, kms, generated_key):
    key_id = generated_key("ML_DSA_44", "SIGN_VERIFY")
    signature = kms.sign(KeyId=key_id, SigningAlgorithm="ML_DSA_SHAKE_256", Message=b"one")

    with ledger_unchanged(service), aws_error("KMSInvalidSignatureException"):
        kms.verify(
            KeyId=key_id,
            SigningAlgorithm="ML_DSA_SHAKE_256",
            Message=b"two",
            Signature=signature["Signature"],
        )


@pytest.mark.parametrize(
    ("spec", "algorithm", "length"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_256", 31),
        ("RSA_2048", "RSASSA_PSS_SHA_512", 32),
        ("ECC_NIST_EDWARDS25519", "ED25519_PH_SHA_512", 32),
    ],
)
def test_a_digest_of_the_wrong_length_is_a_validation_error(
    service, kms, generated_key, spec, algorithm, length
):
    key_id = generated_key(spec, "SIGN_VERIFY")

    with (
        ledger_unchanged(service),
        aws_error("ValidationException", f"Digest is invalid length for algorithm {algorithm}."),
    ):
        kms.sign(
            KeyId=key_id, SigningAlgorithm=algorithm, MessageType="DIGEST", Message=b"x" * length
        )


@pytest.mark.parametrize(
    ("spec", "algorithm", "message_type"),
    [
        ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", "DIGEST"),
        ("ECC_NIST_EDWARDS25519", "ED25519_PH_SHA_512", "RAW"),
        ("ML_DSA_65", "ML_DSA_SHAKE_256", "DIGEST"),
        ("ECC_NIST_P256", "ECDSA_SHA_256", "EXTERNAL_MU"),
    ],
)
def test_a_message_type_the_algorithm_does_not_take_is_a_validation_error(
    service, kms, generated_key, spec, algorithm, message_type
):
    key_id = generated_key(spec, "SIGN_VERIFY")

    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.sign(
            KeyId=key_id, SigningAlgorithm=algorithm, MessageType=message_type, Message=b"x" * 64
        )


def test_an_external_mu_of_the_wrong_length_is_a_validation_error(service, kms, generated_key):
    key_id = generated_key("ML_DSA_44", "SIGN_VERIFY")

    with ledger_unchanged(service), aws_error("ValidationException"):
        kms.sign(
            KeyId=key_id,
            SigningAlgorithm="ML_DSA_SHAKE_256",
            MessageType="EXTERNAL_MU",
            Message=b"x" * 32,
        )


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_384"),
        ("RSA_2048", "ECDSA_SHA_256"),
        ("ECC_NIST_EDWARDS25519", "ML_DSA_SHAKE_256"),
        ("ML_DSA_44", "ED25519_SHA_512"),
    ],
)
def test_an_algorithm_the_key_spec_does_not_offer_is_invalid_key_usage(
    service, kms, generated_key, spec, algorithm
):
    key_id = generated_key(spec, "SIGN_VERIFY")

    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            f"Algorithm {algorithm} is incompatible with key spec {spec}.",
        ),
    ):
        kms.sign(KeyId=key_id, SigningAlgorithm=algorithm, Message=MESSAGE)


def test_signing_with_an_encryption_key_is_invalid_key_usage(service, kms, generated_key):
    key_id = generated_key("RSA_2048", "ENCRYPT_DECRYPT")
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]

    with (
        ledger_unchanged(service),
        aws_error(
            "InvalidKeyUsageException",
            f"{arn} key usage is ENCRYPT_DECRYPT which is not valid for Sign.",
        ),
    ):
        kms.sign(KeyId=key_id, SigningAlgorithm="RSASSA_PSS_SHA_256", Message=MESSAGE)


def test_signing_with_a_symmetric_key_is_invalid_key_usage(service, kms, key_id):
    with ledger_unchanged(service), aws_error("InvalidKeyUsageException"):
        kms.sign(KeyId=key_id, SigningAlgorithm="ECDSA_SHA_256", Message=MESSAGE)


def test_get_public_key_of_a_symmetric_key_is_unsupported(kms, key_id):
    with aws_error("UnsupportedOperationException"):
        kms.get_public_key(KeyId=key_id)


def test_a_disabled_signing_key_neither_signs_nor_gives_its_public_key(service, kms):
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)

    with ledger_unchanged(service), aws_error("DisabledException"):
        kms.sign(KeyId=key_id, SigningAlgorithm="ECDSA_SHA_256", Message=MESSAGE)
    with aws_error("DisabledException"):
        kms.get_public_key(KeyId=key_id)


def test_a_dry_run_signs_nothing(service, kms, generated_key):
    key_id = generated_key("ECC_NIST_P256", "SIGN_VERIFY")

    with ledger_unchanged(service), aws_error("DryRunOperationException"):
        kms.sign(KeyId=key_id, SigningAlgorithm="ECDSA_SHA_256", Message=MESSAGE, DryRun=True)
