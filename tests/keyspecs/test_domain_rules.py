"""The Key aggregate's imported-material rules and domain/algorithms.py, with no database."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import algorithms, key_states
from domain.actors import Actor
from domain.errors import (
    ExpiredImportTokenError,
    IncorrectKeyMaterialError,
    InvalidImportTokenError,
    InvalidKeyUsageError,
    InvalidStateError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.keys import (
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    KEY_MATERIAL_EXPIRES,
    Key,
    KeyMaterial,
    decode_import_token,
    encode_import_token,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def external_key(key_spec: str = "SYMMETRIC_DEFAULT") -> Key:
    return Key.create(
        key_id=uuid.uuid4(),
        now=NOW,
        actor=Actor(),
        arn="arn:aws:kms:us-east-1:111122223333:key/k",
        account_id="111122223333",
        region="us-east-1",
        description="",
        key_spec=key_spec,
        key_usage="ENCRYPT_DECRYPT",
        origin="EXTERNAL",
        key_manager="CUSTOMER",
        policy="{}",
        tags={},
        material=None,
    )


def issue(key: Key, now: datetime = NOW) -> bytes:
    token_id = os.urandom(16).hex()
    valid_to = key.issue_import_parameters(
        now=now,
        actor=Actor(),
        token_id=token_id,
        wrapping_algorithm="RSAES_OAEP_SHA_256",
        wrapping_key_spec="RSA_2048",
        wrapped_private_key=b"wrapped",
    )
    return encode_import_token(key.id, token_id, valid_to)


def do_import(
    key: Key,
    material_id: str,
    *,
    now: datetime = NOW,
    import_type: str | None = None,
    model: str = KEY_MATERIAL_DOES_NOT_EXPIRE,
    valid_to: datetime | None = None,
) -> None:
    token = issue(key, now)
    token_id, _ = key.import_parameters_for(token, now)
    plan = key.plan_import(
        now=now,
        material_id=material_id,
        import_type=import_type,
        key_material_id=None,
        expiration_model=model,
        valid_to=valid_to,
    )
    material = KeyMaterial(plan.version, material_id, b"w", now, None, imported=True)
    key.import_material(
        now=now,
        actor=Actor(),
        token_id=token_id,
        plan=plan,
        material=material,
        expiration_model=model,
        valid_to=valid_to,
        description="",
    )


def test_an_import_token_names_its_key_and_expires_after_24_hours() -> None:
    key = external_key()
    token = issue(key)

    assert key.import_parameters_for(token, NOW + timedelta(hours=23))
    with pytest.raises(ExpiredImportTokenError):
        key.import_parameters_for(token, NOW + timedelta(hours=24))
    with pytest.raises(InvalidImportTokenError):
        external_key().import_parameters_for(token, NOW)


@given(st.binary(max_size=80))
def test_any_bytes_are_an_import_token_or_invalid_import_token(token: bytes) -> None:
    try:
        key_id, token_id, _ = decode_import_token(token)
    except InvalidImportTokenError:
        return
    assert isinstance(key_id, uuid.UUID) and len(token_id) == 32


def test_import_enables_the_key_and_expiry_makes_it_pending_import_again() -> None:
    key = external_key()
    assert key.state == key_states.PENDING_IMPORT

    do_import(key, "a" * 64, model=KEY_MATERIAL_EXPIRES, valid_to=NOW + timedelta(days=3))

    assert key.state == key_states.ENABLED
    assert key.materials_due_for_expiry(NOW + timedelta(days=2)) == []
    assert key.materials_due_for_expiry(NOW + timedelta(days=3)) == ["a" * 64]
    key.expire_material(now=NOW + timedelta(days=3), actor=Actor(), material_id="a" * 64)
    assert key.state == key_states.PENDING_IMPORT
    assert key.material(1) is None  # its ciphertexts stay unreadable until re-import


def test_a_used_token_cannot_be_used_again() -> None:
    key = external_key()
    token = issue(key)
    token_id, _ = key.import_parameters_for(token, NOW)
    plan = key.plan_import(
        now=NOW,
        material_id="a" * 64,
        import_type=None,
        key_material_id=None,
        expiration_model=KEY_MATERIAL_DOES_NOT_EXPIRE,
        valid_to=None,
    )
    key.import_material(
        now=NOW,
        actor=Actor(),
        token_id=token_id,
        plan=plan,
        material=KeyMaterial(1, "a" * 64, b"w", NOW, None, imported=True),
        expiration_model=KEY_MATERIAL_DOES_NOT_EXPIRE,
        valid_to=None,
        description="",
    )

    with pytest.raises(InvalidImportTokenError):
        key.import_parameters_for(token, NOW)


def test_other_material_is_incorrect_and_new_material_waits_for_rotation() -> None:
    key = external_key()
    do_import(key, "a" * 64)

    with pytest.raises(IncorrectKeyMaterialError):
        key.plan_import(
            now=NOW,
            material_id="b" * 64,
            import_type=None,
            key_material_id=None,
            expiration_model=KEY_MATERIAL_DOES_NOT_EXPIRE,
            valid_to=None,
        )
    do_import(key, "b" * 64, import_type="NEW_KEY_MATERIAL")
    assert key.pending_material is not None and key.current_material.material_id == "a" * 64
    key.rotate_on_demand(now=NOW, actor=Actor(), material=None)
    assert key.current_material.material_id == "b" * 64 and key.pending_material is None
    with pytest.raises(InvalidStateError):
        key.rotate_on_demand(now=NOW, actor=Actor(), material=None)


@pytest.mark.parametrize(
    ("model", "valid_to"),
    [
        (KEY_MATERIAL_EXPIRES, None),
        (KEY_MATERIAL_EXPIRES, NOW),
        (KEY_MATERIAL_EXPIRES, NOW + timedelta(days=366)),
        (KEY_MATERIAL_DOES_NOT_EXPIRE, NOW + timedelta(days=1)),
    ],
)
def test_expiration_settings_outside_awss_rules_are_validation_errors(
    model: str, valid_to: datetime | None
) -> None:
    with pytest.raises(ValidationError):
        external_key().plan_import(
            now=NOW,
            material_id="a" * 64,
            import_type=None,
            key_material_id=None,
            expiration_model=model,
            valid_to=valid_to,
        )


def test_a_key_of_origin_aws_kms_takes_no_import() -> None:
    key = external_key()
    key.origin = "AWS_KMS"

    with pytest.raises(UnsupportedOperationError):
        issue(key)


def test_cancelling_deletion_of_a_key_without_material_leaves_it_pending_import() -> None:
    key = external_key()
    key.schedule_deletion(now=NOW, actor=Actor(), pending_window_days=7)

    key.cancel_deletion(now=NOW, actor=Actor())

    assert key.state == key_states.PENDING_IMPORT


# --- algorithms -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "limit"), [("RSA_2048", 190), ("RSA_3072", 318), ("RSA_4096", 446)]
)
def test_oaep_sha_256_limits_are_awss(spec: str, limit: int) -> None:
    assert algorithms.max_rsa_plaintext(spec, "RSAES_OAEP_SHA_256") == limit


def test_imported_material_ids_depend_on_key_and_material() -> None:
    one, two = uuid.uuid4().bytes, uuid.uuid4().bytes
    material = os.urandom(32)

    assert algorithms.imported_material_id(one, material) == algorithms.imported_material_id(
        one, material
    )
    assert algorithms.imported_material_id(one, material) != algorithms.imported_material_id(
        two, material
    )


def test_pkcs8_material_is_normalised_so_the_same_key_has_one_id() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    private_key = ec.generate_private_key(ec.SECP256R1())
    der = private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())

    assert algorithms.normalize_imported_material("ECC_NIST_P256", der) == der
    with pytest.raises(IncorrectKeyMaterialError):
        algorithms.normalize_imported_material("ECC_NIST_P384", der)
    with pytest.raises(IncorrectKeyMaterialError):
        algorithms.normalize_imported_material("ECC_NIST_P256", b"not der")


def test_a_signing_algorithm_of_another_spec_is_invalid_key_usage() -> None:
    with pytest.raises(InvalidKeyUsageError):
        algorithms.check_signing_request("ECC_NIST_P256", "ECDSA_SHA_512", "RAW", b"m")


@given(st.binary(min_size=1, max_size=200))
def test_ed25519ph_signatures_verify_over_any_digest(data: bytes) -> None:
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ed25519

    private_key = ed25519.Ed25519PrivateKey.generate()
    digest = hashlib.sha512(data).digest()

    signature = algorithms.sign(private_key, "ED25519_PH_SHA_512", "DIGEST", digest)

    assert algorithms.verify(
        private_key.public_key(), "ED25519_PH_SHA_512", "DIGEST", digest, signature
    )
    assert not algorithms.verify(
        private_key.public_key(), "ED25519_PH_SHA_512", "DIGEST", bytes(64), signature
    )
