"""The service with its root key in a PKCS#11 token (SoftHSM2): real boto3 clients, a
restart on the same database and token, the move from a file key into the token, and no
root key anywhere in the process: not in the settings, the data directory, the log, and
no wrapping_keys row in the in-memory key's format."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.infrastructure.pkcs11_root_key import FORMAT, Pkcs11Config, create_hsm_key
from app.infrastructure.root_keys import AesGcmRootKey, root_key_id
from tests.conftest import Service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.softhsm import SoftHsm, new_label, softhsm_token

pytestmark = pytest.mark.postgres


@pytest.fixture
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture
def database() -> Iterator[str]:
    url = fresh_database("embedded")
    try:
        yield url
    finally:
        drop(url)


@contextmanager
def serving(url: str, tmp: Path, **settings: object) -> Iterator[Service]:
    service, server, thread = start_service(url, tmp, **settings)
    try:
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()


def make_key(token: SoftHsm) -> str:
    label = new_label()
    fields = {"module": token.module, "token_label": token.token_label, "slot": None}
    create_hsm_key(Pkcs11Config(**fields, pin=token.pin, key_label=label))
    return label


def rows(service: Service) -> list[tuple[bytes, str]]:
    with service.runtime.pool.connection() as conn:
        found = conn.execute(
            "SELECT wrapped_key, root_key_id FROM wrapping_keys WHERE wrapped_key IS NOT NULL"
        ).fetchall()
    return [(bytes(wrapped), key_id) for wrapped, key_id in found]


def test_serves_and_restarts_with_the_root_key_in_the_token(
    token: SoftHsm, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = token.settings(make_key(token))
    with serving(database, tmp_path, **settings) as service:
        kms = service.client("kms")
        key_id = kms.create_key(Description="in the HSM")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"card", EncryptionContext={"o": "1"})[
            "CiphertextBlob"
        ]
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"o": "1"})["Plaintext"] == (
            b"card"
        )
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
        vault = service.runtime.vault
        hsm_key_id = vault.root_key_id
        assert hsm_key_id.startswith("p11:")
        # The root key is never in this process: no bytes in the settings, none on disk.
        config = service.runtime.settings
        assert config.root_key is None and config.root_key_file is None
        assert config.root_key_bytes() is None
        assert not (tmp_path / "root.key").exists()
        stored = rows(service)
        assert stored, "the service wrapped no key"
        for wrapped, stored_id in stored:  # every row sealed by the token, none in memory
            assert stored_id == hsm_key_id
            assert wrapped.startswith(FORMAT) and len(wrapped) == len(FORMAT) + 12 + 32 + 16

    with serving(database, tmp_path, **settings) as again:  # a new Runtime, same token
        kms = again.client("kms")
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"o": "1"})["Plaintext"] == (
            b"card"
        )
        plain = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]
        assert plain == data_key["Plaintext"]
        assert again.runtime.vault.root_key_id == hsm_key_id

    assert token.pin not in caplog.text
    assert "Traceback" not in caplog.text


def test_moves_from_a_file_key_into_the_token(
    token: SoftHsm, database: str, tmp_path: Path
) -> None:
    """With the file key as a previous key, old rows open and new rows go to the token;
    once every row is re-wrapped (what rotate-root-key does), the token alone serves."""
    old_key = secrets.token_bytes(32)
    old = base64.b64encode(old_key).decode()
    with serving(database, tmp_path, root_key=old) as service:
        kms = service.client("kms")
        old_id = kms.create_key()["KeyMetadata"]["KeyId"]
        old_blob = kms.encrypt(KeyId=old_id, Plaintext=b"before")["CiphertextBlob"]

    settings = token.settings(make_key(token))
    with serving(database, tmp_path, **settings, previous_root_keys=[old]) as service:
        kms = service.client("kms")
        assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"before"
        new_id = kms.create_key()["KeyMetadata"]["KeyId"]
        new_blob = kms.encrypt(KeyId=new_id, Plaintext=b"after")["CiphertextBlob"]
        root = service.runtime.vault.root
        hsm_key_id = root.key_id
        assert root.known_ids == (hsm_key_id, root_key_id(old_key))
        by_id: dict[str, int] = {}
        for wrapped, stored_id in rows(service):
            by_id[stored_id] = by_id.get(stored_id, 0) + 1
            assert wrapped.startswith(FORMAT) == (stored_id == hsm_key_id)
        assert set(by_id) == {hsm_key_id, root_key_id(old_key)}
        # What the rotation command does, in short: every row re-wrapped in the token.
        store = service.runtime.vault._rows
        store.rewrap(
            lambda owner, wrapped: root.wrap(owner, root.unwrap(owner, wrapped)), hsm_key_id
        )
        assert {stored_id for _, stored_id in rows(service)} == {hsm_key_id}
        with pytest.raises(Exception, match="does not open"):
            AesGcmRootKey(old_key).unwrap(*next(iter(_owner_rows(service))))

    with serving(database, tmp_path, **settings) as service:  # the file key forgotten
        kms = service.client("kms")
        assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"before"
        assert kms.decrypt(CiphertextBlob=new_blob)["Plaintext"] == b"after"


def _owner_rows(service: Service) -> list[tuple[object, bytes]]:
    with service.runtime.pool.connection() as conn:
        found = conn.execute(
            "SELECT owner_id, wrapped_key FROM wrapping_keys WHERE wrapped_key IS NOT NULL"
        ).fetchall()
    return [(owner, bytes(wrapped)) for owner, wrapped in found]
