"""Root-key rotation online (app/usecases/custody.py, `keyledger operator rotate-root-key`):
a service restarted with the new key as current and the old as previous keeps serving
while every wrapping key is re-wrapped; a rotation that crashed resumes; afterwards the
old key is not needed (a service with only the new key decrypts every old ciphertext),
and the ledger and the audit trail record the rotation."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from app.auth.credentials import OPERATOR_ACTOR
from app.bootstrap import Runtime
from app.infrastructure.root_keys import RootKeyError, root_key_id
from app.settings import load_settings
from app.usecases.custody import RootKeyRotation
from domain.custody import CUSTODY_ID, RootKeyCustody
from tests.conftest import ACCOUNT_ID, REGION, Service, start_service
from tests.support.databases import database_backends, drop, fresh_database
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class Deployment:
    """One database, served by one service at a time, its root keys changing."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.old, self.new = secrets.token_bytes(32), secrets.token_bytes(32)
        self._running: tuple[Service, Any, threading.Thread] | None = None

    def serve(self, root: bytes, previous: list[bytes] | None = None) -> Service:
        self.stop()
        settings: dict[str, Any] = {"root_key": _b64(root), "ledger_log": False}
        if previous:
            settings["previous_root_keys"] = ",".join(_b64(k) for k in previous)
        self._running = start_service(self.url, self.tmp, **settings)
        return self._running[0]

    def stop(self) -> None:
        if self._running is not None:
            service, server, thread = self._running
            server.should_exit = True
            thread.join(timeout=10)
            service.runtime.stop()
            self._running = None

    def root_key_ids(self) -> set[str]:
        with psycopg.connect(self.url) as conn:
            return {str(r[0]) for r in conn.execute("SELECT root_key_id FROM wrapping_keys")}


@pytest.fixture(params=database_backends()[:1])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    url = fresh_database(request.param)
    found = Deployment(url, tmp_path)
    yield found
    found.stop()
    drop(url)


def _ciphertexts(kms: Any, keys: int = 4) -> dict[bytes, bytes]:
    found = {}
    for n in range(keys):
        key = kms.create_key(Description=f"rotated {n}")["KeyMetadata"]["KeyId"]
        plaintext = f"secret {n}".encode()
        found[kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]] = plaintext
    return found


def _rotate_cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
    env |= {
        "KEYLEDGER_DATABASE_URL": deployment.url,
        "KEYLEDGER_DATA_DIR": str(deployment.tmp),
        "KEYLEDGER_ROOT_KEY": _b64(deployment.new),
        "KEYLEDGER_PREVIOUS_ROOT_KEYS": _b64(deployment.old),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "operator", "rotate-root-key", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_rotation_under_load_fails_no_request_and_frees_the_old_key(
    deployment: Deployment,
) -> None:
    kms = deployment.serve(deployment.old).client("kms")
    old_ciphertexts = _ciphertexts(kms)
    assert deployment.root_key_ids() == {root_key_id(deployment.old)}

    # The rolling restart: the new key current, the old one still opening old rows.
    service = deployment.serve(deployment.new, [deployment.old])
    kms = service.client("kms")
    failures: list[BaseException] = []
    calls = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal calls
        blobs = list(old_ciphertexts.items())
        while not stop.is_set():
            try:
                blob, plaintext = blobs[calls % len(blobs)]
                assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
                kms.create_key(Description="during the rotation")
                calls += 1
            except (ClientError, AssertionError) as error:
                failures.append(error)
                return

    loader = threading.Thread(target=load)
    loader.start()
    try:
        done = _rotate_cli(deployment, "--batch-size", "2")
    finally:
        stop.set()
        loader.join(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "re-wrapped" in done.stdout and "no longer needed" in done.stdout
    assert failures == [] and calls > 0
    assert deployment.root_key_ids() == {root_key_id(deployment.new)}

    # The old key destroyed: only the new one, and every old ciphertext still decrypts.
    kms = deployment.serve(deployment.new).client("kms")
    for blob, plaintext in old_ciphertexts.items():
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    deployment.stop()
    with pytest.raises(RootKeyError, match="different root key"):
        Runtime.build(
            load_settings(
                database_url=deployment.url, data_dir=deployment.tmp, root_key=_b64(deployment.old)
            )
        )


class _Crash(Exception):
    pass


def test_a_rotation_that_crashed_resumes_and_is_recorded(deployment: Deployment) -> None:
    _ciphertexts(deployment.serve(deployment.old).client("kms"), keys=3)
    runtime = deployment.serve(deployment.new, [deployment.old]).runtime
    total = runtime.vault.rows_to_rewrap()
    real = runtime.vault.rewrap_batch
    batches = 0

    def crashing(limit: int) -> int:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise _Crash
        return real(limit)

    runtime.vault.rewrap_batch = crashing  # type: ignore[method-assign]
    rotation = RootKeyRotation(
        vault=runtime.vault,
        runner=runtime.writer,
        clock=runtime.clock,
        actor=OPERATOR_ACTOR,
        account_id=ACCOUNT_ID,
        region=REGION,
    )
    with pytest.raises(_Crash):
        rotation.run(batch_size=2)
    assert 0 < runtime.vault.rows_to_rewrap() < total  # one batch moved, then the crash
    deployment.stop()

    resumed = _rotate_cli(deployment)
    assert resumed.returncode == 0, resumed.stderr
    assert "rotated (resumed)" in resumed.stdout
    again = _rotate_cli(deployment)
    assert again.returncode == 0 and "nothing to rotate" in again.stdout

    runtime = deployment.serve(deployment.new).runtime
    custody = runtime.ledger.repository.get(CUSTODY_ID)
    assert isinstance(custody, RootKeyCustody)
    assert custody.root_key_id == root_key_id(deployment.new) and custody.rotating_to is None
    assert runtime.audit is not None
    runtime.audit.wait_for_current()
    with psycopg.connect(deployment.url) as conn:
        records = conn.execute(
            "SELECT record::jsonb FROM audit_events WHERE event_name = 'RotateRootKey'"
            " ORDER BY notification_id"
        ).fetchall()
    details = [r[0]["serviceEventDetails"] for r in records]
    assert [d["rootKeyRotation"] for d in details] == ["started", "completed"]
    assert details[1]["toRootKeyId"] == root_key_id(deployment.new)
    assert details[1]["fromRootKeyIds"] == [root_key_id(deployment.old)]
    assert records[0][0]["eventSource"] == "keyledger.amazonaws.com"
    assert records[0][0]["recipientAccountId"] == ACCOUNT_ID


def test_a_rotation_completes_only_once_rows_another_transaction_held_are_rewrapped(
    deployment: Deployment,
) -> None:
    kms = deployment.serve(deployment.old).client("kms")
    blobs = _ciphertexts(kms, keys=3)
    held_key = kms.create_key(Description="being shredded")["KeyMetadata"]["KeyId"]
    runtime = deployment.serve(deployment.new, [deployment.old]).runtime
    rotation = RootKeyRotation(
        vault=runtime.vault,
        runner=runtime.writer,
        clock=runtime.clock,
        actor=OPERATOR_ACTOR,
        account_id=ACCOUNT_ID,
        region=REGION,
    )
    outcomes: list[Any] = []
    with psycopg.connect(deployment.url) as holder:  # as a concurrent crypto-shred would
        holder.execute("SELECT 1 FROM wrapping_keys WHERE owner_id = %s FOR UPDATE", (held_key,))
        rotating = threading.Thread(target=lambda: outcomes.append(rotation.run(batch_size=2)))
        rotating.start()
        assert eventually(lambda: runtime.vault.rows_to_rewrap() == 1, timeout=30)
        holder.rollback()  # the shred gives the row up
    rotating.join(timeout=60)
    assert outcomes and outcomes[0].rotated
    assert runtime.vault.rows_to_rewrap() == 0
    assert deployment.root_key_ids() == {root_key_id(deployment.new)}
    kms = deployment.serve(deployment.new).client("kms")
    for blob, plaintext in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
