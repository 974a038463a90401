"""One ledger per port: a second ``keyledger run`` on a port in use refuses to start.

Workers share their port with SO_REUSEPORT, and the kernel spreads connections over every
socket so bound: a second service that bound it too would get half of the connections,
answering from a ledger of its own."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.cli.keyledger_process import (
    Checkout,
    KeyLedgerProcess,
    answering_process,
    free_port,
    private_dir,
)

# Starts the real `keyledger run` process (docs/testing.md).
pytestmark = pytest.mark.e2e

CONNECTIONS = 20


@dataclass
class Serving:
    checkout: Checkout
    process: KeyLedgerProcess
    endpoint: str
    port: int

    def worker_pids(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.process.process.pid).children()}


@pytest.fixture(scope="module")
def first() -> Iterator[Serving]:
    with private_dir() as base:
        checkout = Checkout.make(base)
        port = free_port()
        process = checkout.start("--workers", "2", "--port", str(port))
        try:
            endpoint = process.wait_until_serving(timeout=60)
            yield Serving(checkout, process, endpoint, port)
        finally:
            status = process.interrupt(timeout=40, signum=signal.SIGTERM)
        assert status == 0, process.output()


def _assert_every_connection_reaches(first: Serving) -> None:
    workers = first.worker_pids()
    assert {answering_process(first.endpoint) for _ in range(CONNECTIONS)} <= workers
    kms = first.checkout.kms(first.endpoint)
    key_ids = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(CONNECTIONS // 2)]
    for key_id in key_ids:  # each on a connection of its own
        assert first.checkout.kms(first.endpoint).describe_key(KeyId=key_id)["KeyMetadata"]


@pytest.mark.parametrize("workers", ["2", "1"])
def test_a_second_service_on_a_port_in_use_refuses_to_start_and_the_first_keeps_every_connection(
    first: Serving, workdir: Path, workers: str
):
    second = Checkout.make(workdir).start("--workers", workers, "--port", str(first.port))
    status = second.wait_until_refused(timeout=90)
    output = second.output()
    assert status != 0, output
    assert f"127.0.0.1:{first.port}" in output and "another service listens there" in output
    assert "Traceback" not in output
    _assert_every_connection_reaches(first)


def test_two_services_started_at_the_same_moment_on_one_port_leave_one_serving(workdir: Path):
    port = free_port()
    racers = [
        Checkout.make(workdir / name).start("--workers", "2", "--port", str(port))
        for name in ("a", "b")
    ]
    try:
        statuses = {racer: _serves_or_exits(racer) for racer in racers}
        assert sorted(statuses.values(), key=str) == [1, "serving"], {
            str(racer.log_path): racer.output() for racer in racers
        }
        (winner,) = [racer for racer, status in statuses.items() if status == "serving"]
        assert winner.process.poll() is None
    finally:
        for racer in racers:
            if racer.process.poll() is None:
                racer.interrupt(timeout=40, signum=signal.SIGTERM)


def _serves_or_exits(process: KeyLedgerProcess) -> int | str:
    try:
        process.wait_until_serving(timeout=90)
    except AssertionError:
        if process.process.poll() is None:
            raise
        return process.process.returncode
    return "serving"
