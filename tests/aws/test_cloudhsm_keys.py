"""KMS keys in a CloudHSM key store, through boto3: material generated in the store's token
(SoftHSM2 here), never extractable, every cryptographic operation run in the token, and
the key Unavailable while its store is disconnected.

A service of the module's own, with one connected store shared by the tests (a store that
holds keys cannot be deleted, and keys wait 7 days before deletion).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import psycopg
import pytest
from pkcs11 import Attribute, ObjectClass

from tests.audit.conftest import records
from tests.aws.conftest import aws_error
from tests.conftest import Service, running_service
from tests.support.softhsm import SoftHsm, softhsm_token

CLUSTER = "cluster-hsmkeystestab"
ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----"


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def hsm_service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("keyledger-hsm-keys")
    clusters = {CLUSTER: {"token_label": token.token_label, "trust_anchor": ANCHOR}}
    with running_service(tmp, cloudhsm_clusters=clusters) as service:
        yield service


@pytest.fixture(scope="module")
def kms(hsm_service: Service) -> Any:
    return hsm_service.client("kms")


@pytest.fixture(scope="module")
def store_id(kms: Any, token: SoftHsm) -> str:
    store = kms.create_custom_key_store(
        CustomKeyStoreName=f"hsm-{secrets.token_hex(4)}",
        CloudHsmClusterId=CLUSTER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=token.pin,
    )["CustomKeyStoreId"]
    connect(kms, store)
    return str(store)


def connect(kms: Any, store_id: str) -> None:
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    deadline = time.monotonic() + 10
    while state(kms, store_id) != "CONNECTED":
        assert time.monotonic() < deadline, "the store did not connect"
        time.sleep(0.05)


def state(kms: Any, store_id: str) -> str:
    found = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    return str(found[0]["ConnectionState"])


def hsm_key(kms: Any, store_id: str) -> dict[str, Any]:
    return dict(kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"])


@pytest.fixture
def disconnected(kms: Any, store_id: str) -> Iterator[None]:
    """The store disconnected for the test, connected again after it."""
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    try:
        yield
    finally:
        connect(kms, store_id)


# --- CreateKey -------------------------------------------------------------------------------
def test_a_key_in_a_cloudhsm_store_names_its_store_and_cluster(kms, store_id):
    key = hsm_key(kms, store_id)
    assert key["Origin"] == "AWS_CLOUDHSM"
    assert key["CustomKeyStoreId"] == store_id
    assert key["CloudHsmClusterId"] == CLUSTER
    assert (key["KeyState"], key["Enabled"], key["KeySpec"]) == (
        "Enabled",
        True,
        "SYMMETRIC_DEFAULT",
    )
    described = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert described["CustomKeyStoreId"] == store_id


def test_its_material_is_a_sensitive_never_extractable_key_in_the_token(
    kms, store_id, token, disconnected
):
    key = kms.describe_key(KeyId=hsm_key_while_connected(kms, store_id, token))["KeyMetadata"]
    library = pkcs11.lib(token.module)
    with library.get_token(token_label=token.token_label).open(user_pin=token.pin) as session:
        found = list(
            session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.LABEL: key["CurrentKeyMaterialId"],
                }
            )
        )
        assert len(found) == 1
        assert found[0][Attribute.SENSITIVE] is True
        assert found[0][Attribute.EXTRACTABLE] is False
        assert found[0][Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            found[0][Attribute.VALUE]


def hsm_key_while_connected(kms: Any, store_id: str, token: SoftHsm) -> str:
    """A key made while the store is connected (the fixture disconnected it)."""
    connect(kms, store_id)
    key_id = hsm_key(kms, store_id)["KeyId"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    return str(key_id)


def test_no_key_material_of_it_is_in_the_database(kms, store_id, hsm_service):
    key = hsm_key(kms, store_id)
    with psycopg.connect(hsm_service.runtime.settings.database_url) as conn:
        found = conn.execute(
            "SELECT state FROM keyledger_events"
            " WHERE originator_id = %s AND originator_version = 1",
            (key["KeyId"],),
        ).fetchone()
    assert found is not None
    material = json.loads(bytes(found[0]))["material"]["_data_"]
    assert material["in_store"] is True
    assert material["wrapped"]["_data_"] == ""  # nothing wrapped: the token holds it


def test_create_key_in_an_unknown_store_is_not_found(kms):
    with aws_error("CustomKeyStoreNotFoundException"):
        kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId="cks-1234567890abcdef0")


def test_create_key_in_a_disconnected_store_is_invalid(kms, store_id, disconnected):
    with aws_error("CustomKeyStoreInvalidStateException"):
        hsm_key(kms, store_id)


def test_create_key_needs_the_store_and_the_origin_together(kms, store_id):
    with aws_error("ValidationException"):
        kms.create_key(Origin="AWS_CLOUDHSM")
    with aws_error("UnsupportedOperationException"):
        kms.create_key(CustomKeyStoreId=store_id)
    with aws_error("UnsupportedOperationException"):
        kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId="k1")


def test_only_symmetric_encryption_keys_live_in_a_store(kms, store_id):
    with aws_error("UnsupportedOperationException"):
        kms.create_key(
            Origin="AWS_CLOUDHSM",
            CustomKeyStoreId=store_id,
            KeySpec="HMAC_256",
            KeyUsage="GENERATE_VERIFY_MAC",
        )


def test_a_store_holding_keys_cannot_be_deleted(kms, store_id, disconnected):
    with aws_error("CustomKeyStoreHasCMKsException"):
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)


# --- cryptography in the token ----------------------------------------------------------------
def test_encrypt_and_decrypt_round_trip_in_the_token(kms, store_id, hsm_service):
    key_id = hsm_key(kms, store_id)["KeyId"]
    context = {"purpose": "hsm"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"in the token", EncryptionContext=context)
    answer = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=context)
    assert answer["Plaintext"] == b"in the token"
    assert answer["KeyId"].endswith(key_id)
    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"purpose": "x"})
    assert trail_names(hsm_service, key_id, 3) == ["Decrypt", "Decrypt", "Encrypt"]


def trail_names(service: Service, key_id: str, count: int) -> list[str]:
    """The names of the key's CloudTrail records (CreateKey aside), once ``count`` are in."""
    cloudtrail, deadline = service.client("cloudtrail"), time.monotonic() + 10
    while True:
        found = sorted(
            r["eventName"]
            for r in records(cloudtrail, "ResourceName", key_id)
            if r["eventName"] != "CreateKey"
        )
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_tampered_ciphertext_is_refused_by_the_token(kms, store_id):
    key_id = hsm_key(kms, store_id)["KeyId"]
    blob = bytearray(kms.encrypt(KeyId=key_id, Plaintext=b"x" * 64)["CiphertextBlob"])
    blob[-1] ^= 1
    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=bytes(blob))


def test_data_keys_and_re_encryption_work_with_a_store_key(kms, store_id):
    hsm_key_id = hsm_key(kms, store_id)["KeyId"]
    plain_key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=hsm_key_id, KeySpec="AES_256")
    assert (
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    )
    moved = kms.re_encrypt(CiphertextBlob=data_key["CiphertextBlob"], DestinationKeyId=plain_key_id)
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=hsm_key_id)
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]


def test_generate_random_from_the_stores_token(kms, store_id):
    first = kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]
    second = kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]
    assert len(first) == len(second) == 32 and first != second


def test_generate_random_from_a_disconnected_store_is_invalid(kms, store_id, disconnected):
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)


def test_a_store_key_cannot_rotate(kms, store_id):
    key_id = hsm_key(kms, store_id)["KeyId"]
    with aws_error("UnsupportedOperationException"):
        kms.enable_key_rotation(KeyId=key_id)
    with aws_error("UnsupportedOperationException"):
        kms.rotate_key_on_demand(KeyId=key_id)


# --- a disconnected store ------------------------------------------------------------------
def test_a_disconnected_stores_keys_are_unavailable_and_others_are_not(kms, store_id):
    key_id = hsm_key(kms, store_id)["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    plain_key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    try:
        described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert (described["KeyState"], described["Enabled"]) == ("Unavailable", False)
        with aws_error("KMSInvalidStateException", f"{described['Arn']} is unavailable."):
            kms.encrypt(KeyId=key_id, Plaintext=b"after")
        with aws_error("KMSInvalidStateException"):
            kms.decrypt(CiphertextBlob=blob)
        assert kms.encrypt(KeyId=plain_key_id, Plaintext=b"unaffected")["KeyId"]
    finally:
        connect(kms, store_id)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_disabled_store_key_is_refused_like_any_disabled_key(kms, store_id):
    key_id = hsm_key(kms, store_id)["KeyId"]
    kms.disable_key(KeyId=key_id)
    with aws_error("DisabledException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
