"""A crash of the whole stack, the embedded PostgreSQL included, then an immediate start."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.cli.keyledger_process import Checkout, free_port, keyledger, kill_whole_stack

# Starts the real `keyledger run` process (docs/testing.md).
pytestmark = pytest.mark.e2e

CRASHES = 3


def test_an_immediate_restart_after_a_whole_stack_kill_serves_the_same_ledger(workdir: Path):
    started = time.monotonic()
    checkout = Checkout.make(workdir)
    args = ("--workers", "2", "--port", str(free_port()))
    process = checkout.start(*args)
    try:
        endpoint = process.wait_until_serving(timeout=60)
        key_id = checkout.kms(endpoint).create_key()["KeyMetadata"]["KeyId"]
        blob = checkout.kms(endpoint).encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
        for _ in range(CRASHES):
            kill_whole_stack(process, checkout.data_dir)
            process = checkout.start(*args)  # at once: the killed postmaster may be a zombie
            process.wait_until_serving(timeout=30)
            assert checkout.kms(endpoint).decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
    assert not (checkout.data_dir / "pgdata" / "postmaster.pid").exists(), process.output()
    assert time.monotonic() - started < 60


def test_a_server_handle_list_cut_short_by_a_kill_does_not_prevent_the_next_start(
    workdir: Path,
):
    checkout = Checkout.make(workdir)
    keyledger("migrate", cwd=checkout.cwd, env=checkout.env)  # creates the embedded cluster
    # The embedded server's list of the processes using it, as a process killed while
    # rewriting it leaves it.
    (checkout.data_dir / "pgdata" / ".handle_pids.json").write_text("")

    keyledger("migrate", cwd=checkout.cwd, env=checkout.env)

    assert not (checkout.data_dir / "pgdata" / "postmaster.pid").exists()
