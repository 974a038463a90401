"""``keyledger run`` restarts its embedded PostgreSQL when the server dies, and stops it
when asked to stop."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.cli.keyledger_process import Checkout, free_port, postmaster
from tests.support.waiting import eventually

# Starts the real `keyledger run` process (docs/testing.md).
pytestmark = pytest.mark.e2e


def test_a_killed_embedded_postgres_is_restarted_and_the_service_answers_again(workdir: Path):
    checkout = Checkout.make(workdir)
    process = checkout.start("--workers", "2", "--port", str(free_port()))
    try:
        endpoint = process.wait_until_serving(timeout=60)
        key_id = checkout.kms(endpoint).create_key()["KeyMetadata"]["KeyId"]
        killed = postmaster(checkout.data_dir)

        killed.kill()

        def answers() -> bool:
            with contextlib.suppress(BotoCoreError, ClientError):
                checkout.kms(endpoint).encrypt(KeyId=key_id, Plaintext=b"after the crash")
                return True
            return False

        assert eventually(answers, timeout=15, poll=0.2), process.output()
        restarted = postmaster(checkout.data_dir)
        assert restarted.pid != killed.pid and restarted.is_running()
        said = f"embedded PostgreSQL (pid {killed.pid}) died; restarted it (pid {restarted.pid})"
        assert eventually(lambda: said in process.output(), timeout=5)
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
    assert eventually(lambda: not _running(restarted), timeout=10), process.output()
    assert not (checkout.data_dir / "pgdata" / "postmaster.pid").exists(), process.output()


def test_readyz_says_ready_as_soon_as_a_restarted_postgres_answers(workdir: Path):
    checkout = Checkout.make(workdir)
    process = checkout.start("--workers", "2", "--port", str(free_port()))
    try:
        endpoint = process.wait_until_serving(timeout=60)
        key_id = checkout.kms(endpoint).create_key()["KeyMetadata"]["KeyId"]
        for _ in range(3):  # each kill leaves the pools' connections dead
            killed = postmaster(checkout.data_dir)
            killed.kill()
            assert eventually(lambda: _answers(checkout, endpoint, key_id), timeout=15, poll=0.05)

            # The database answers one worker's writer again: within a second (the other
            # writer retries every 0.1 s), every worker's /readyz says so.
            time.sleep(0.5)
            started = time.monotonic()
            statuses = [httpx.get(endpoint + "/readyz", timeout=5).status_code for _ in range(20)]
            assert statuses == [200] * 20, (statuses, time.monotonic() - started)
    finally:
        process.interrupt(timeout=40, signum=signal.SIGTERM)


def _answers(checkout: Checkout, endpoint: str, key_id: str) -> bool:
    with contextlib.suppress(BotoCoreError, ClientError):
        checkout.kms(endpoint).encrypt(KeyId=key_id, Plaintext=b"after the crash")
        return True
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_the_service_and_its_embedded_postgres(workdir: Path, workers: str):
    checkout = Checkout.make(workdir)
    process = checkout.start("--workers", workers, "--port", str(free_port()))
    try:
        process.wait_until_serving(timeout=60)
        server = postmaster(checkout.data_dir)
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
    assert eventually(lambda: not _running(server), timeout=10), process.output()
    assert not (checkout.data_dir / "pgdata" / "postmaster.pid").exists(), process.output()


def _running(process: psutil.Process) -> bool:
    return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
