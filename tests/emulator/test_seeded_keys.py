"""LocalStack's `_custom_id_` and `_custom_key_material_` tags on CreateKey, honoured in
emulator mode only (docs/emulator.md)."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Service, running_service
from tests.emulator.conftest import LOCALSTACK_ACCESS_KEY_ID, emulated_client

pytestmark = pytest.mark.postgres


def tag(key: str, value: str) -> dict[str, str]:
    return {"TagKey": key, "TagValue": value}


def test_custom_id_chooses_the_key_id(localstack_kms):
    chosen = str(uuid.uuid4())
    key = localstack_kms.create_key(Tags=[tag("_custom_id_", chosen)])["KeyMetadata"]
    assert key["KeyId"] == chosen
    assert localstack_kms.describe_key(KeyId=chosen)["KeyMetadata"]["Arn"] == key["Arn"]


def test_custom_id_is_kept_as_a_tag_as_localstack_keeps_it(localstack_kms):
    chosen = str(uuid.uuid4())
    localstack_kms.create_key(Tags=[tag("_custom_id_", chosen)])
    assert localstack_kms.list_resource_tags(KeyId=chosen)["Tags"] == [tag("_custom_id_", chosen)]


def test_a_custom_id_that_is_not_a_uuid_is_a_validation_error(localstack_kms):
    with pytest.raises(ClientError) as raised:
        localstack_kms.create_key(Tags=[tag("_custom_id_", "my-key")])
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_a_custom_id_already_taken_is_refused(localstack_kms):
    chosen = str(uuid.uuid4())
    localstack_kms.create_key(Tags=[tag("_custom_id_", chosen)])
    with pytest.raises(ClientError) as raised:
        localstack_kms.create_key(Tags=[tag("_custom_id_", chosen)])
    assert raised.value.response["Error"]["Code"] == "AlreadyExistsException"


def test_custom_material_is_not_stored_as_a_tag(localstack_kms):
    material = base64.b64encode(os.urandom(32)).decode()
    key_id = localstack_kms.create_key(Tags=[tag("_custom_key_material_", material)])[
        "KeyMetadata"
    ]["KeyId"]
    assert localstack_kms.list_resource_tags(KeyId=key_id)["Tags"] == []


def test_custom_material_of_the_wrong_size_is_a_validation_error_that_hides_it(localstack_kms):
    material = base64.b64encode(b"s3cr3t-but-short").decode()
    with pytest.raises(ClientError) as raised:
        localstack_kms.create_key(Tags=[tag("_custom_key_material_", material)])
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert material not in error["Message"] and "s3cr3t" not in error["Message"]


def test_two_emulators_given_the_same_material_decrypt_each_others_ciphertexts(
    emulator: Service, localstack_kms, tmp_path: Path
):
    chosen, material = str(uuid.uuid4()), base64.b64encode(os.urandom(32)).decode()
    seed = [tag("_custom_id_", chosen), tag("_custom_key_material_", material)]
    localstack_kms.create_key(Tags=seed)
    blob = localstack_kms.encrypt(KeyId=chosen, Plaintext=b"seeded")["CiphertextBlob"]
    with running_service(tmp_path, emulator=True) as other:
        other_kms = emulated_client(other, LOCALSTACK_ACCESS_KEY_ID)
        other_kms.create_key(Tags=seed)
        assert other_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"seeded"
        back = other_kms.encrypt(KeyId=chosen, Plaintext=b"and back")["CiphertextBlob"]
    assert localstack_kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"and back"


def test_normal_mode_stores_the_tags_as_ordinary_tags(service: Service):
    kms = service.client()
    chosen = str(uuid.uuid4())
    key_id = kms.create_key(Tags=[tag("_custom_id_", chosen)])["KeyMetadata"]["KeyId"]
    assert key_id != chosen
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == [tag("_custom_id_", chosen)]
