"""The Shamir-sealed root key through real clients (docs/key-custody.md): the service starts
sealed and answers every call 503 without touching the ledger; T of N shares unseal it
(wrong, malformed and repeated shares are refused); a seal makes it forget the key; an
unseal with another T of the shares brings back every old ciphertext. Shares appear neither
in the log nor in the database."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from app.bootstrap import migrate
from app.entrypoints.cli.main import main as keyledger
from app.infrastructure.shamir_root_key import initialize
from domain import shamir
from tests.conftest import ACCOUNT_ID, Service, start_service
from tests.support.databases import database_backends, drop, fresh_database
from tests.support.signing import sign_request

pytestmark = pytest.mark.postgres
SHARES, THRESHOLD = 5, 3


def _ledger_position(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM keyledger_events")
        return int(row.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[tuple[Service, list[bytes], str]]:
    url = fresh_database(database_backends()[0])
    migrate(url)
    _record, shares = initialize(url, SHARES, THRESHOLD)
    service, server, thread = start_service(url, tmp_path, root_key_provider="shamir")
    try:
        yield service, shares, url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
        drop(url)


def _unseal(service: Service, share: bytes | str) -> httpx.Response:
    text = share if isinstance(share, str) else base64.b64encode(share).decode()
    return httpx.post(service.endpoint + "/v1/sys/unseal", json={"key": text}, timeout=10)


def _sealed_error(call: object) -> None:
    with pytest.raises(ClientError) as raised:
        call()  # type: ignore[operator]
    error = raised.value.response
    assert error["Error"]["Code"] == "KMSInternalException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "sealed" in error["Error"]["Message"]


def _seal_records(service: Service) -> list[str]:
    cloudtrail = service.client("cloudtrail")
    attribute = [{"AttributeKey": "EventName", "AttributeValue": "Seal"}]
    found: list[str] = []

    def recorded() -> bool:
        found[:] = [
            json.loads(event["CloudTrailEvent"])["userIdentity"]["arn"]
            for event in cloudtrail.lookup_events(LookupAttributes=attribute)["Events"]
        ]
        return bool(found)

    _wait_for(recorded)
    return found


def _wait_for(condition: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _signed_seal(
    service: Service, access_key_id: str | None = None, secret: str | None = None
) -> httpx.Response:
    url = service.endpoint + "/v1/sys/seal"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/json"},
        b"{}",
        access_key_id=access_key_id or service.access_key_id,
        secret_access_key=secret or service.secret_access_key,
        region="us-east-1",
        service="kms",
        now=datetime.now(UTC),
    )
    return httpx.post(url, content=b"{}", headers=headers, timeout=10)


def _foreign_share(given: list[bytes]) -> bytes:
    """A share of another unseal key, with an x none of ``given`` has."""
    xs = {share[-1] for share in given}
    return next(s for s in shamir.split(bytes(32), 10, 3) if s[-1] not in xs)


def test_sealed_start_unseal_seal_and_unseal_again(
    sealed: tuple[Service, list[bytes], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    service, shares, url = sealed
    kms, cloudtrail = service.client("kms"), service.client("cloudtrail")
    before = _ledger_position(url)

    # Sealed start: every call 503 (KMS, CloudTrail, REST), nothing recorded; alive, not ready.
    _sealed_error(lambda: kms.encrypt(KeyId="alias/any", Plaintext=b"x"))
    _sealed_error(lambda: kms.list_keys())
    _sealed_error(lambda: cloudtrail.lookup_events(MaxResults=1))
    rest = httpx.get(service.endpoint + "/v1/keys", timeout=10)
    assert rest.status_code == 503 and rest.json()["__type"] == "KMSInternalException"
    assert _signed_seal(service).status_code == 503  # nobody can be authenticated
    assert httpx.get(service.endpoint + "/healthz", timeout=10).status_code == 200
    ready = httpx.get(service.endpoint + "/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json() == {"status": "sealed", "unseal_progress": 0, "threshold": THRESHOLD}
    assert _ledger_position(url) == before

    # Malformed, wrong-length and repeated shares: 400, progress kept.
    assert _unseal(service, "not base64!").status_code == 400
    assert _unseal(service, shares[0][:-2]).status_code == 400
    assert _unseal(service, "x" * 10_000).status_code == 400  # bounded input
    bad_json = httpx.post(
        service.endpoint + "/v1/sys/unseal",
        content=b"{",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 400
    first = _unseal(service, shares[0])
    assert first.status_code == 200
    assert first.json()["sealed"] is True and first.json()["progress"] == 1
    again = _unseal(service, shares[0])
    assert again.status_code == 400 and again.json()["message"] == shamir.DUPLICATE_SHARE
    assert httpx.get(service.endpoint + "/readyz", timeout=10).json()["unseal_progress"] == 1

    # A full set with a share of another key: refused, progress reset.
    assert _unseal(service, shares[1]).json()["progress"] == 2
    wrong = _unseal(service, _foreign_share(shares[:2]))
    assert wrong.status_code == 400
    status = httpx.get(service.endpoint + "/v1/sys/seal-status", timeout=10).json()
    assert status["sealed"] is True and status["progress"] == 0
    _sealed_error(lambda: kms.list_keys())

    # Any T of the N: unsealed (one share through the CLI, read from standard input).
    chosen = random.sample(shares, THRESHOLD)
    for share in chosen[:-1]:
        assert _unseal(service, share).json()["sealed"] is True
    monkeypatch.setattr(sys, "stdin", io.StringIO(base64.b64encode(chosen[-1]).decode() + "\n"))
    assert keyledger(["operator", "unseal", "--endpoint", service.endpoint]) == 0
    assert "unsealed" in capsys.readouterr().out
    assert httpx.get(service.endpoint + "/readyz", timeout=10).status_code == 200

    key_id = kms.create_key(Description="under a sealed root key")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"kept across seals")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept across seals"

    # Seal (signed, an administrator): the key is forgotten, every call 503 again.
    sealing = _signed_seal(service)
    assert sealing.status_code == 200 and sealing.json()["sealed"] is True
    _sealed_error(lambda: kms.decrypt(CiphertextBlob=blob))
    assert httpx.get(service.endpoint + "/readyz", timeout=10).json()["status"] == "sealed"

    # Another T of the N: the old ciphertext decrypts again.
    for share in random.sample(shares, THRESHOLD):
        answer = _unseal(service, share)
    assert answer.json()["sealed"] is False
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept across seals"

    # The seal is in the audit trail, attributed; checkpoints are signed again once unsealed.
    assert _seal_records(service) == [f"arn:aws:iam::{ACCOUNT_ID}:user/admin"]
    _wait_for(
        lambda: service.runtime.checkpointer is not None and service.runtime.checkpointer.signed > 0
    )

    # Only an administrator of the operator account may seal.
    runtime = service.runtime
    reader = runtime.identity.create_principal(ACCOUNT_ID, "reader", "user")
    reader_key, reader_secret = runtime.identity.create_access_key(reader)
    refused = _signed_seal(service, reader_key, reader_secret)
    assert refused.status_code == 403 and refused.json()["__type"] == "AccessDeniedException"
    assert kms.list_keys()["Keys"]

    # The CLI's seal-status, and its seal (signed with the environment's credentials).
    assert keyledger(["operator", "seal-status", "--endpoint", service.endpoint]) == 0
    assert json.loads(capsys.readouterr().out)["sealed"] is False
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", service.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", service.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert keyledger(["operator", "seal", "--endpoint", service.endpoint]) == 0
    _sealed_error(lambda: kms.list_keys())

    # No share, nor the unseal key, in the log or anywhere in the database.
    unseal_key = shamir.combine(shares[:THRESHOLD])
    secrets_ = [*shares, unseal_key]
    spelled = [form for s in secrets_ for form in (base64.b64encode(s).decode(), s.hex())]
    log_text = "\n".join(record.getMessage() for record in caplog.records)
    assert "UNSEALED" in log_text and "SEALED" in log_text
    assert not [form for form in spelled if form in log_text]
    assert not [form for form in spelled if form in _database_text(url)]


def _database_text(url: str) -> str:
    """Every row of every table, as text (bytea as hex)."""
    parts: list[str] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert any(name == "root_key_seal" for _, name in tables)
        for schema, name in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
            parts.extend(row[0] for row in conn.execute(query))
    return "\n".join(parts).replace("\\x", "")


def test_operator_init_prints_the_shares_once_and_refuses_a_second_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_database(database_backends()[0])
    try:
        monkeypatch.setenv("KEYLEDGER_DATABASE_URL", url)
        monkeypatch.setenv("KEYLEDGER_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("KEYLEDGER_ROOT_KEY_PROVIDER", "shamir")
        assert keyledger(["operator", "init", "--shares", "4", "--threshold", "2"]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if "share " in line]
        printed = [base64.b64decode(line.rsplit(" ", 1)[-1]) for line in lines]
        assert len(printed) == 4 and all(len(share) == 33 for share in printed)
        assert shamir.combine(printed[1:3]) == shamir.combine(printed[::3])

        assert keyledger(["operator", "init"]) == 2
        assert "initialized already" in capsys.readouterr().err
        assert keyledger(["operator", "init", "--shares", "2", "--threshold", "3"]) == 2
    finally:
        drop(url)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\x00\xff", "application/json"),
        (b'{"key": 12}', "application/json"),
        (b"[]", "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b"key=abc", "application/x-www-form-urlencoded"),
        (b"--x\r\n", "multipart/form-data; boundary=x"),
        (b"{}", "text/plain"),
        (b'{"key": "\xff\xfe"}', "application/json"),
    ],
    ids=[
        "broken-json",
        "binary",
        "wrong-type",
        "not-an-object",
        "empty",
        "null",
        "form",
        "broken-multipart",
        "text",
        "not-utf-8",
    ],
)
def test_an_unreadable_unseal_request_is_a_400_in_the_error_shape(
    sealed: tuple[Service, list[bytes], str], body: bytes, content_type: str
) -> None:
    service, _shares, _ = sealed
    answer = httpx.post(
        service.endpoint + "/v1/sys/unseal",
        content=body,
        headers={"content-type": content_type},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"__type", "message"}
