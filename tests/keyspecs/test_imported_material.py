"""Imported key material (Origin EXTERNAL, reference §6, §7, §9, §16): PendingImport,
GetParametersForImport, ImportKeyMaterial with expiry run by the scheduler on a moved
clock, DeleteImportedKeyMaterial, re-import of the same material only, rotation of
imported symmetric keys with new material, and the import token's errors."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from domain.algorithms import imported_material_id
from tests.aws.conftest import aws_error, ledger_unchanged
from tests.conftest import ACCOUNT_ID, REGION
from tests.keyspecs.conftest import (
    external_key,
    import_material,
    key_events,
    later,
    pkcs8,
    sign_locally,
    verify_locally,
    wrap_material,
)

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
WRAPPING_ALGORITHMS = (
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
)


def advance(service, **delta: float) -> int:
    service.runtime.clock.advance(timedelta(**delta))
    return service.runtime.service.jobs.run_due_jobs()


def state(kms, key_id: str) -> str:
    return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])


def event_names(service, key_id: str) -> list[str]:
    return [type(e).__name__ for e in key_events(service, key_id)]


# --- a key without material ----------------------------------------------------------------------
def test_an_external_key_starts_pending_import_without_material(service, kms):
    metadata = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]

    assert (metadata["KeyState"], metadata["Origin"], metadata["Enabled"]) == (
        "PendingImport",
        "EXTERNAL",
        False,
    )
    assert "CurrentKeyMaterialId" not in metadata
    with (
        ledger_unchanged(service),
        aws_error("KMSInvalidStateException", f"{metadata['Arn']} is pending import."),
    ):
        kms.encrypt(KeyId=metadata["KeyId"], Plaintext=b"x")


@pytest.mark.parametrize("wrapping_algorithm", WRAPPING_ALGORITHMS)
def test_symmetric_material_imports_with_each_wrapping_algorithm(kms, wrapping_algorithm):
    key_id = external_key(kms)

    imported = import_material(kms, key_id, os.urandom(32), wrapping_algorithm=wrapping_algorithm)

    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled"
    assert metadata["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert metadata["CurrentKeyMaterialId"] == imported["KeyMaterialId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"imported")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported"


@pytest.mark.parametrize("wrapping_key_spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
def test_get_parameters_for_import_gives_a_wrapping_key_of_the_spec_for_24_hours(
    service, kms, wrapping_key_spec
):
    from cryptography.hazmat.primitives import serialization

    key_id = external_key(kms)

    parameters = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec=wrapping_key_spec
    )

    public_key = serialization.load_der_public_key(parameters["PublicKey"])
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == int(wrapping_key_spec[4:])
    valid_for = (
        parameters["ParametersValidTo"].timestamp() - service.runtime.clock.now().timestamp()
    )
    assert 24 * 3600 - 60 < valid_for <= 24 * 3600
    assert parameters["KeyId"] == ARN_PREFIX + key_id


def test_the_same_material_gets_the_same_id_in_one_key_and_another_in_another(kms):
    material = os.urandom(32)
    first, second = external_key(kms), external_key(kms)

    one = import_material(kms, first, material)["KeyMaterialId"]
    again = import_material(kms, first, material)["KeyMaterialId"]
    other = import_material(kms, second, material)["KeyMaterialId"]

    assert one == again != other
    assert len(one) == 64 and set(one) <= set("0123456789abcdef")


def test_imported_rsa_material_signs_as_the_private_key_made_outside(kms):
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = external_key(kms, "RSA_2048", "SIGN_VERIFY")
    import_material(kms, key_id, pkcs8(private_key), wrapping_key_spec="RSA_4096")

    signature = kms.sign(KeyId=key_id, SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256", Message=b"m")[
        "Signature"
    ]

    assert signature == sign_locally(private_key, "RSASSA_PKCS1_V1_5_SHA_256", b"m")


def test_imported_ecc_material_wrapped_with_plain_oaep_signs(kms):
    private_key = ec.generate_private_key(ec.SECP256R1())
    key_id = external_key(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    import_material(
        kms,
        key_id,
        pkcs8(private_key),
        wrapping_algorithm="RSAES_OAEP_SHA_256",
        wrapping_key_spec="RSA_3072",
    )

    signature = kms.sign(KeyId=key_id, SigningAlgorithm="ECDSA_SHA_256", Message=b"m")["Signature"]

    from cryptography.hazmat.primitives import serialization

    public_der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verify_locally(public_der, "ECDSA_SHA_256", b"m", signature)


# --- what may be imported ------------------------------------------------------------------------
def test_different_material_cannot_be_imported_into_a_key(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))
    parameters = _parameters(kms, key_id)

    with ledger_unchanged(service), aws_error("IncorrectKeyMaterialException"):
        _import_with(kms, key_id, parameters, os.urandom(32))


def test_symmetric_material_must_be_32_bytes(service, kms):
    key_id = external_key(kms)

    with aws_error("IncorrectKeyMaterialException"):
        import_material(kms, key_id, os.urandom(16))
    assert state(kms, key_id) == "PendingImport"


def test_hmac_material_must_be_of_a_length_aws_accepts(kms):
    key_id = external_key(kms, "HMAC_384")

    with aws_error("IncorrectKeyMaterialException"):
        import_material(kms, key_id, os.urandom(47))
    import_material(kms, key_id, os.urandom(128))
    assert state(kms, key_id) == "Enabled"


def test_a_private_key_of_another_spec_is_incorrect_material(kms):
    key_id = external_key(kms, "ECC_NIST_P384", "SIGN_VERIFY")

    with aws_error("IncorrectKeyMaterialException"):
        import_material(kms, key_id, pkcs8(ec.generate_private_key(ec.SECP256R1())))


def test_material_that_does_not_unwrap_is_invalid_ciphertext(service, kms):
    key_id = external_key(kms)
    parameters = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )

    with aws_error("InvalidCiphertextException"):
        kms.import_key_material(
            KeyId=key_id,
            ImportToken=parameters["ImportToken"],
            EncryptedKeyMaterial=b"\x02" * 256,
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )


def test_get_parameters_for_a_key_of_origin_aws_kms_is_unsupported(kms, key_id):
    with aws_error(
        "UnsupportedOperationException",
        f"{ARN_PREFIX}{key_id} origin is AWS_KMS which is not valid for this operation.",
    ):
        kms.get_parameters_for_import(
            KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )


def test_the_retired_pkcs1_wrapping_algorithm_is_refused(kms):
    with aws_error("ValidationException"):
        kms.get_parameters_for_import(
            KeyId=external_key(kms),
            WrappingAlgorithm="RSAES_PKCS1_V1_5",
            WrappingKeySpec="RSA_2048",
        )


# --- the import token ----------------------------------------------------------------------------
def _parameters(kms, key_id: str):  # type: ignore[no-untyped-def]
    return kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )


def _import_with(kms, key_id, parameters, material, **members):  # type: ignore[no-untyped-def]
    return kms.import_key_material(
        KeyId=key_id,
        ImportToken=parameters["ImportToken"],
        EncryptedKeyMaterial=wrap_material(parameters["PublicKey"], "RSAES_OAEP_SHA_256", material),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        **members,
    )


def test_an_import_token_is_single_use(service, kms):
    key_id = external_key(kms)
    material = os.urandom(32)
    parameters = _parameters(kms, key_id)
    _import_with(kms, key_id, parameters, material)

    with ledger_unchanged(service), aws_error("InvalidImportTokenException"):
        _import_with(kms, key_id, parameters, material)


def test_an_import_token_expires_after_24_hours(service, kms):
    key_id = external_key(kms)
    parameters = _parameters(kms, key_id)
    advance(service, hours=24, seconds=1)

    with ledger_unchanged(service), aws_error("ExpiredImportTokenException"):
        _import_with(kms, key_id, parameters, os.urandom(32))


def test_another_keys_import_token_is_invalid(service, kms):
    key_id, other = external_key(kms), external_key(kms)
    parameters = _parameters(kms, other)

    with ledger_unchanged(service), aws_error("InvalidImportTokenException"):
        _import_with(kms, key_id, parameters, os.urandom(32))


def test_a_garbage_import_token_is_invalid(service, kms):
    key_id = external_key(kms)
    parameters = {**_parameters(kms, key_id), "ImportToken": b"not a token"}

    with ledger_unchanged(service), aws_error("InvalidImportTokenException"):
        _import_with(kms, key_id, parameters, os.urandom(32))


# --- expiry --------------------------------------------------------------------------------------
def test_expiring_material_needs_a_valid_to(service, kms):
    key_id = external_key(kms)

    with aws_error(
        "ValidationException",
        "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
    ):
        import_material(kms, key_id, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES")


@pytest.mark.parametrize("days", [-1, 366])
def test_valid_to_must_lie_within_the_next_365_days(service, kms, days):
    key_id = external_key(kms)

    with aws_error("ValidationException"):
        import_material(
            kms,
            key_id,
            os.urandom(32),
            ExpirationModel="KEY_MATERIAL_EXPIRES",
            ValidTo=later(service, days=days),
        )


def test_material_expires_when_the_scheduler_passes_its_valid_to(service, kms):
    key_id = external_key(kms)
    material = os.urandom(32)
    valid_to = later(service, days=10)
    import_material(kms, key_id, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before expiry")["CiphertextBlob"]
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert metadata["ValidTo"].timestamp() == pytest.approx(valid_to.timestamp(), abs=1)

    advance(service, days=9)
    assert state(kms, key_id) == "Enabled"
    advance(service, days=2)

    assert state(kms, key_id) == "PendingImport"
    assert "MaterialExpired" in event_names(service, key_id)
    with aws_error("KMSInvalidStateException"):
        kms.decrypt(CiphertextBlob=blob)
    # The same material brings the key, and its ciphertexts, back.
    import_material(kms, key_id, material)
    assert state(kms, key_id) == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before expiry"


def test_material_that_does_not_expire_stays(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))

    advance(service, days=400)

    assert state(kms, key_id) == "Enabled"
    assert "ValidTo" not in kms.describe_key(KeyId=key_id)["KeyMetadata"]


def test_re_importing_changes_the_expiration(service, kms):
    key_id = external_key(kms)
    material = os.urandom(32)
    import_material(
        kms,
        key_id,
        material,
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=later(service, days=5),
    )

    import_material(kms, key_id, material)  # now KEY_MATERIAL_DOES_NOT_EXPIRE
    advance(service, days=6)

    assert state(kms, key_id) == "Enabled"


# --- deletion ------------------------------------------------------------------------------------
def test_deleting_imported_material_makes_the_key_pending_import_until_reimport(service, kms):
    key_id = external_key(kms, "HMAC_256")
    material = os.urandom(32)
    material_id = import_material(kms, key_id, material)["KeyMaterialId"]
    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]

    deleted = kms.delete_imported_key_material(KeyId=key_id)

    assert deleted["KeyMaterialId"] == material_id
    assert deleted["KeyId"] == ARN_PREFIX + key_id
    assert state(kms, key_id) == "PendingImport"
    assert "ImportedMaterialDeleted" in event_names(service, key_id)
    with aws_error("KMSInvalidStateException"):
        kms.verify_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac)
    import_material(kms, key_id, material)
    assert kms.verify_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac)[
        "MacValid"
    ]


def test_deleted_material_is_shredded(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))
    created = [e for e in key_events(service, key_id) if type(e).__name__ == "MaterialImported"]
    material = created[-1].material

    kms.delete_imported_key_material(KeyId=key_id)

    service.runtime.vault._materials.clear()  # what another process would hold: nothing
    assert service.runtime.vault.unwrap_material(uuid.UUID(key_id), material) is None


def test_deleting_material_of_a_key_of_origin_aws_kms_is_unsupported(kms, key_id):
    with aws_error("UnsupportedOperationException"):
        kms.delete_imported_key_material(KeyId=key_id)


def test_deleting_material_of_a_key_pending_import_changes_nothing(service, kms):
    key_id = external_key(kms)

    with ledger_unchanged(service):
        answer = kms.delete_imported_key_material(KeyId=key_id)

    assert "KeyMaterialId" not in answer


# --- rotation with new material (symmetric keys) -------------------------------------------------
def test_an_imported_key_rotates_on_demand_to_new_imported_material(service, kms):
    key_id = external_key(kms)
    first = import_material(kms, key_id, os.urandom(32))["KeyMaterialId"]
    old_blob = kms.encrypt(KeyId=key_id, Plaintext=b"old")["CiphertextBlob"]

    second = import_material(kms, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")[
        "KeyMaterialId"
    ]
    pending = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    listed = [
        (r["KeyMaterialId"], r["KeyMaterialState"], r["ImportState"]) for r in pending["Rotations"]
    ]
    assert listed == [(first, "CURRENT", "IMPORTED"), (second, "PENDING_ROTATION", "IMPORTED")]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == first

    kms.rotate_key_on_demand(KeyId=key_id)

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == second
    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert [(r["KeyMaterialId"], r["RotationType"]) for r in rotations] == [(second, "ON_DEMAND")]
    assert kms.decrypt(CiphertextBlob=old_blob)["KeyMaterialId"] == first
    new_blob = kms.encrypt(KeyId=key_id, Plaintext=b"new")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=new_blob)["KeyMaterialId"] == second


def test_rotating_an_imported_key_without_pending_material_is_an_invalid_state(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))

    with (
        ledger_unchanged(service),
        aws_error(
            "KMSInvalidStateException",
            f"No available key material pending rotation for the key: {ARN_PREFIX}{key_id}.",
        ),
    ):
        kms.rotate_key_on_demand(KeyId=key_id)


def test_a_second_pending_material_is_refused(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))
    pending = import_material(kms, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")
    parameters = _parameters(kms, key_id)
    refused = os.urandom(32)
    refused_id = imported_material_id(uuid.UUID(key_id).bytes, refused)

    # AWS names the key by its ARN here (localstack's snapshot, recorded 2025-11: the only
    # KeyId it saw was ImportKeyMaterial's, an ARN).
    with (
        ledger_unchanged(service),
        aws_error(
            "KMSInvalidStateException",
            f"New key material (id: {refused_id}) cannot be imported into KMS key "
            f"{ARN_PREFIX}{key_id}, because another key material "
            f"(id: {pending['KeyMaterialId']}) is pending rotation.",
        ),
    ):
        _import_with(kms, key_id, parameters, refused, ImportType="NEW_KEY_MATERIAL")


def test_deleting_old_material_leaves_the_key_enabled_but_its_ciphertexts_unreadable(service, kms):
    key_id = external_key(kms)
    old_material = os.urandom(32)
    first = import_material(kms, key_id, old_material)["KeyMaterialId"]
    old_blob = kms.encrypt(KeyId=key_id, Plaintext=b"old")["CiphertextBlob"]
    import_material(kms, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")
    kms.rotate_key_on_demand(KeyId=key_id)

    kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=first)

    assert state(kms, key_id) == "Enabled"
    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=old_blob)
    import_material(kms, key_id, old_material, KeyMaterialId=first)
    assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"old"


def test_asymmetric_keys_take_no_new_material(service, kms):
    key_id = external_key(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    import_material(kms, key_id, pkcs8(ec.generate_private_key(ec.SECP256R1())))

    with aws_error("ValidationException"):
        import_material(
            kms,
            key_id,
            pkcs8(ec.generate_private_key(ec.SECP256R1())),
            ImportType="NEW_KEY_MATERIAL",
        )


# --- the ledger ----------------------------------------------------------------------------------
def test_imported_material_never_appears_in_the_event_store(service, kms):
    key_id = external_key(kms)
    material = os.urandom(32)
    import_material(kms, key_id, material)

    with service.runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT state FROM keyledger_events WHERE originator_id = %s", (uuid.UUID(key_id),)
        ).fetchall()

    assert rows and all(material not in bytes(row[0]) for row in rows)
    import base64

    assert all(base64.b64encode(material) not in bytes(row[0]) for row in rows)
    assert event_names(service, key_id)[:3] == [
        "Created",
        "ImportParametersIssued",
        "MaterialImported",
    ]


def test_a_key_pending_import_can_be_scheduled_for_deletion_and_cancelled(kms):
    key_id = external_key(kms)

    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=key_id)

    assert state(kms, key_id) == "PendingImport"


def test_deleting_the_key_shreds_its_imported_materials(service, kms):
    key_id = external_key(kms)
    import_material(kms, key_id, os.urandom(32))
    import_material(kms, key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL")
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    advance(service, days=8)

    with service.runtime.pool.connection() as conn:
        live = conn.execute(
            "SELECT count(*) FROM wrapping_keys WHERE (owner_id = %s OR parent_id = %s)"
            " AND wrapped_key IS NOT NULL",
            (uuid.UUID(key_id), uuid.UUID(key_id)),
        ).fetchone()
    assert live == (0,)
    with aws_error("NotFoundException"):
        kms.describe_key(KeyId=key_id)
