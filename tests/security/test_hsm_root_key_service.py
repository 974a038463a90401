"""The service with its root key in a PKCS#11 token (SoftHSM2): real boto3 clients, a
restart on the same database and token, the move from a file key into the token, and no
root key anywhere in the process: not in the settings, the data directory, the log, and
no wrapping_keys row in the in-memory key's format."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.infrastructure.pkcs11_root_key import FORMAT, Pkcs11Config, create_hsm_key
from app.infrastructure.root_keys import root_key_id
from tests.conftest import Service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.softhsm import SoftHsm, new_label, softhsm_token

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


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


def rotate(url: str, tmp: Path, env: dict[str, str]) -> str:
    """``keyledger operator rotate-root-key``, as an operator runs it beside the service."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
    variables |= env | {"KEYLEDGER_DATABASE_URL": url, "KEYLEDGER_DATA_DIR": str(tmp)}
    done = subprocess.run(
        [sys.executable, "-m", "app", "operator", "rotate-root-key", "--batch-size", "2"],
        cwd=REPO,
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no longer needed" in done.stdout
    return done.stdout + done.stderr


def test_moves_from_a_file_key_into_the_token(
    token: SoftHsm, database: str, tmp_path: Path
) -> None:
    """With the file key as a previous key, old rows open and new rows go to the token;
    once the rotation has re-wrapped every row, the token alone serves."""
    old_key = secrets.token_bytes(32)
    old = base64.b64encode(old_key).decode()
    with serving(database, tmp_path, root_key=old) as service:
        kms = service.client("kms")
        old_id = kms.create_key()["KeyMetadata"]["KeyId"]
        old_blob = kms.encrypt(KeyId=old_id, Plaintext=b"before")["CiphertextBlob"]

    label = make_key(token)
    settings = token.settings(label)
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
        output = rotate(
            database, tmp_path, token.env(label) | {"KEYLEDGER_PREVIOUS_ROOT_KEYS": old}
        )
        assert token.pin not in output and old not in output
        for wrapped, stored_id in rows(service):
            assert stored_id == hsm_key_id and wrapped.startswith(FORMAT)
        assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"before"

    with serving(database, tmp_path, **settings) as service:  # the file key forgotten
        kms = service.client("kms")
        assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"before"
        assert kms.decrypt(CiphertextBlob=new_blob)["Plaintext"] == b"after"


def test_rotates_from_one_token_key_to_another(
    token: SoftHsm, database: str, tmp_path: Path
) -> None:
    first, second = make_key(token), make_key(token)
    with serving(database, tmp_path, **token.settings(first)) as service:
        kms = service.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"first")["CiphertextBlob"]
        first_id = service.runtime.vault.root_key_id

    rotating = token.settings(second, pkcs11_previous_key_labels=[first])
    with serving(database, tmp_path, **rotating) as service:
        second_id = service.runtime.vault.root_key_id
        assert service.runtime.vault.root.known_ids == (second_id, first_id)
        env = token.env(second) | {"KEYLEDGER_PKCS11_PREVIOUS_KEY_LABELS": first}
        rotate(database, tmp_path, env)
        assert {stored_id for _, stored_id in rows(service)} == {second_id}

    with serving(database, tmp_path, **token.settings(second)) as service:
        assert service.client("kms").decrypt(CiphertextBlob=blob)["Plaintext"] == b"first"
