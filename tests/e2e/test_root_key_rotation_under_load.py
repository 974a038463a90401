"""Issue 14's done-criterion for root-key rotation, end to end: ``keyledger run --workers 2``
restarted with a new root key (the old one previous) serves boto3 Encrypt and Decrypt from
several threads while ``keyledger operator rotate-root-key`` runs in a subprocess; the
rotation is killed (SIGKILL) mid-way, then run again and resumes. No request fails, every
ciphertext made before the rotation decrypts after it, and the old key can be destroyed: the
service restarted without it decrypts everything, and one given only the old key is refused.

Mid-way is made certain, not timed: a transaction of the test holds one wrapping key's row
(as a concurrent crypto-shred would), so the rotation re-wraps every other row and then
waits for that one; the kill lands while it waits."""

from __future__ import annotations

import base64
import random
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config

from app.auth.credentials import new_access_key_id, new_secret_access_key
from app.infrastructure.root_keys import root_key_id
from tests.cli.keyledger_process import (
    KEYLEDGER,
    Checkout,
    KeyLedgerProcess,
    database_url,
    free_port,
    private_dir,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
LOAD_THREADS = 4
KEYS = 12


@pytest.fixture
def workdir() -> Iterator[Path]:
    with private_dir() as path:
        yield path


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class Deployment:
    """One data directory served by ``keyledger run --workers 2``, its root keys changing."""

    def __init__(self, workdir: Path) -> None:
        self.checkout = Checkout.make(workdir)
        self.old, self.new = secrets.token_bytes(32), secrets.token_bytes(32)
        self.access_key_id, self.secret = new_access_key_id(), new_secret_access_key()
        self.checkout.env |= {
            "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": self.access_key_id,
            "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": self.secret,
            "KEYLEDGER_SCHEDULER_INTERVAL_SECONDS": "3600",
        }
        self.process: KeyLedgerProcess | None = None
        self.endpoint = ""

    def keys(self, current: bytes, previous: bytes | None = None) -> dict[str, str]:
        keys = {"KEYLEDGER_ROOT_KEY": _b64(current)}
        if previous is not None:
            keys["KEYLEDGER_PREVIOUS_ROOT_KEYS"] = _b64(previous)
        return keys

    def serve(self, current: bytes, previous: bytes | None = None) -> None:
        self.stop()
        self.checkout.env = {
            k: v for k, v in self.checkout.env.items() if k != "KEYLEDGER_PREVIOUS_ROOT_KEYS"
        } | self.keys(current, previous)
        self.process = self.checkout.start("--workers", "2", "--port", str(free_port()))
        self.endpoint = self.process.wait_until_serving(timeout=120)

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.interrupt(timeout=40, signum=signal.SIGTERM) == 0
            self.process = None

    def kms(self) -> Any:
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}),  # a failure is a failure
        )

    def rotation(self) -> subprocess.Popen[str]:
        """``keyledger operator rotate-root-key`` with the service's settings."""
        env = self.checkout.env | self.keys(self.new, self.old)
        return subprocess.Popen(
            [str(KEYLEDGER), "operator", "rotate-root-key", "--batch-size", "2"],
            cwd=self.checkout.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def under(self) -> dict[str, int]:
        """Wrapping-key rows by the root key id they are under."""
        with psycopg.connect(database_url(self.checkout.data_dir)) as conn:
            rows = conn.execute(
                "SELECT root_key_id, count(*) FROM wrapping_keys GROUP BY root_key_id"
            ).fetchall()
        return {str(key_id): int(count) for key_id, count in rows}


@pytest.fixture
def deployment(workdir: Path) -> Iterator[Deployment]:
    found = Deployment(workdir)
    try:
        yield found
    finally:
        if found.process is not None:
            found.process.interrupt(timeout=40, signum=signal.SIGTERM)


class Load:
    """Encrypt and Decrypt from several threads, each with a client of its own, until
    stopped; every call counted, every failure kept."""

    def __init__(self, deployment: Deployment, key_id: str, blobs: dict[bytes, bytes]) -> None:
        self._deployment, self._key_id = deployment, key_id
        self._blobs = list(blobs.items())
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.calls = 0
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        kms = self._deployment.kms()
        while not self._stop.is_set():
            try:
                plaintext = secrets.token_bytes(32)
                blob = kms.encrypt(KeyId=self._key_id, Plaintext=plaintext)["CiphertextBlob"]
                assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
                old_blob, old_plaintext = random.choice(self._blobs)
                assert kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == old_plaintext
            except Exception as error:
                with self._lock:
                    self.failures.append(f"{type(error).__name__}: {error}")
                continue
            with self._lock:
                self.calls += 3


def test_a_rotation_under_load_fails_no_request_resumes_after_a_kill_and_frees_the_old_key(
    deployment: Deployment,
) -> None:
    deployment.serve(deployment.old)
    kms = deployment.kms()
    key_ids, blobs = [], {}
    for n in range(KEYS):
        key_id = kms.create_key(Description=f"before the rotation {n}")["KeyMetadata"]["KeyId"]
        plaintext = secrets.token_bytes(24)
        blobs[kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"]] = plaintext
        key_ids.append(key_id)
    old_id, new_id = root_key_id(deployment.old), root_key_id(deployment.new)
    assert set(deployment.under()) == {old_id}

    # The rolling restart: the new key current, the old one previous.
    deployment.serve(deployment.new, deployment.old)
    with Load(deployment, key_ids[0], blobs) as load:
        assert eventually(lambda: load.calls > 0, timeout=60, poll=0.1)
        holder = psycopg.connect(database_url(deployment.checkout.data_dir))
        try:
            holder.execute(  # as a crypto-shred of this key would, until it commits
                "SELECT 1 FROM wrapping_keys WHERE owner_id = %s FOR UPDATE", (key_ids[-1],)
            )
            rotating = deployment.rotation()
            assert eventually(lambda: deployment.under().get(old_id) == 1, timeout=120, poll=0.1)
            assert rotating.poll() is None  # it waits for the held row: it has not completed
            rotating.send_signal(signal.SIGKILL)
            assert rotating.wait(timeout=30) == -signal.SIGKILL
            output = rotating.stdout.read() if rotating.stdout else ""
            assert "re-wrapped" in output and "rotated" not in output
        finally:
            holder.rollback()
            holder.close()
        assert deployment.under().get(old_id) == 1  # the kill left the held row behind

        resumed = deployment.rotation()
        output, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, output
        assert "rotated (resumed)" in output and "no longer needed" in output
    assert load.failures == [] and load.calls > 0
    assert set(deployment.under()) == {new_id}

    # The old key destroyed: the service without it decrypts every old ciphertext...
    deployment.serve(deployment.new)
    kms = deployment.kms()
    for blob, plaintext in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    deployment.stop()
    # ...and one given only the old key opens nothing: it refuses to start.
    deployment.checkout.env |= deployment.keys(deployment.old)
    refused = deployment.checkout.start("--workers", "2", "--port", str(free_port()))
    assert refused.wait_until_refused(timeout=120) != 0
    assert "different root key" in refused.output()
