"""A Shamir-sealed service of several workers (``keyledger run --workers 2``, its own
embedded PostgreSQL), through boto3, plain HTTP and the ``keyledger`` CLI: it starts sealed
in every worker; wrong shares are refused; T of the N shares, each given once to whichever
worker the connection reaches, unseal every worker (the supervisor's unseal authority,
docs/key-custody.md); both workers then answer KMS calls; a worker killed and restarted by
the supervisor serves again without the keyholders; a rotation to a new Shamir set, run by
the service, survives its workers' SIGKILL and resumes; one seal seals them all. No share,
nor an unseal key, in the service's output or in the database."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.auth.credentials import new_access_key_id, new_secret_access_key
from domain import shamir
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
WORKERS, SHARES, THRESHOLD = 2, 5, 3
SHARE_LINE = re.compile(r"^Unseal key share \d+: (\S+)$", re.MULTILINE)
PROCESS_HEADER = "x-keyledger-process-id"
TRIES = 200  # new connections: the kernel spreads them over the workers at random


@pytest.fixture
def workdir() -> Iterator[Path]:
    with private_dir() as path:
        yield path


class SealedService:
    """``keyledger run --workers 2`` with a Shamir-sealed root key, and the CLI beside it."""

    def __init__(self, workdir: Path) -> None:
        self.checkout = Checkout.make(workdir)
        self.access_key_id, self.secret = new_access_key_id(), new_secret_access_key()
        self.checkout.env |= {
            "KEYLEDGER_ROOT_KEY_PROVIDER": "shamir",
            "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": self.access_key_id,
            "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": self.secret,
            "KEYLEDGER_SCHEDULER_INTERVAL_SECONDS": "3600",
        }
        self.process: KeyLedgerProcess | None = None
        self.endpoint = ""

    def command(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KEYLEDGER), *args],
            cwd=self.checkout.cwd,
            env=self._env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def command_in_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KEYLEDGER), *args],
            cwd=self.checkout.cwd,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _env(self) -> dict[str, str]:
        return self.checkout.env | {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> None:
        self.process = self.checkout.start("--workers", str(WORKERS), "--port", str(free_port()))
        self.endpoint = self.process.wait_until_serving(timeout=120)

    def kms(self) -> Any:
        """A client of its own: its connections are new ones."""
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def workers_say(self) -> dict[int, bool]:
        """Each worker's own answer (sealed or not), over new connections, until every
        worker answered."""
        said: dict[int, bool] = {}
        for _ in range(TRIES):
            with httpx.Client() as client:  # a new connection
                status = client.get(self.endpoint + "/v1/sys/seal-status", timeout=30).json()
            said[int(status["process_id"])] = bool(status["sealed"])
            if len(said) == WORKERS:
                break
        assert len(said) == WORKERS, said
        return said

    def all_serve(self) -> bool:
        """Whether every worker answers and is unsealed (False while one is restarting)."""
        try:
            return set(self.workers_say().values()) == {False}
        except (httpx.HTTPError, AssertionError):
            return False

    def worker_pids(self) -> set[int]:
        """The live worker processes under the supervisor."""
        assert self.process is not None
        found = set()
        for child in psutil.Process(self.process.process.pid).children():
            try:
                if "app.entrypoints.server.workers" in " ".join(child.cmdline()):
                    found.add(child.pid)
            except psutil.Error:  # gone, or a zombie the supervisor has not reaped yet
                continue
        return found

    def commands_per_worker(self) -> dict[int, float]:
        """The commands each live worker's writer ran (keyledger_worker_commands, one
        series a worker in any worker's /metrics)."""
        text = httpx.get(self.endpoint + "/metrics", timeout=30).text
        found = {
            int(re.search(r'pid="(\d+)"', labels).group(1)): float(value)  # type: ignore[union-attr]
            for labels, value in re.findall(
                r"^keyledger_worker_commands\{([^}]*)\} (\S+)$", text, re.MULTILINE
            )
        }
        assert found, text
        return found


@pytest.fixture
def service(workdir: Path) -> Iterator[SealedService]:
    found = SealedService(workdir)
    try:
        yield found
    finally:
        if found.process is not None:
            found.process.interrupt(timeout=40, signum=signal.SIGTERM)


def _sealed_refusal(kms: Any) -> int:
    """A KMS call refused as sealed (AWS-shaped, 503); the worker that refused it."""
    with pytest.raises(ClientError) as raised:
        kms.encrypt(KeyId="alias/anything", Plaintext=b"x")
    error = raised.value.response
    assert error["Error"]["Code"] == "KMSInternalException"
    assert "sealed" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    return int(error["ResponseMetadata"]["HTTPHeaders"][PROCESS_HEADER])


def _every_worker_refuses_as_sealed(service: SealedService) -> None:
    refused: set[int] = set()
    for _ in range(TRIES):
        refused.add(_sealed_refusal(service.kms()))
        if len(refused) == WORKERS:
            break
    assert len(refused) == WORKERS, refused


def _foreign_share(given: list[bytes]) -> bytes:
    xs = {share[-1] for share in given}
    return next(s for s in shamir.split(bytes(32), 10, 3) if s[-1] not in xs)


def _database_text(data_dir: Path) -> str:
    """Every row of every table of the service's database, as text (bytea as hex)."""
    parts: list[str] = []
    with psycopg.connect(database_url(data_dir)) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)"
            " FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert any("root_key_seal" in table for (table,) in tables)
        for (table,) in tables:
            parts.extend(r[0] for r in conn.execute(f"SELECT t::text FROM {table} t"))
    return "\n".join(parts).replace("\\x", "")


def test_a_sealed_multi_worker_service_unseals_and_seals_as_one(
    service: SealedService,
) -> None:
    init = service.command(
        "operator", "init", "--shares", str(SHARES), "--threshold", str(THRESHOLD)
    )
    assert init.returncode == 0, init.stderr
    shares = [base64.b64decode(s) for s in SHARE_LINE.findall(init.stdout)]
    assert len(shares) == SHARES
    service.start()

    # Sealed in every worker: KMS 503 (AWS-shaped) from each, alive, not ready.
    _every_worker_refuses_as_sealed(service)
    assert httpx.get(service.endpoint + "/healthz", timeout=10).status_code == 200
    ready = httpx.get(service.endpoint + "/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["status"] == "sealed"
    assert set(service.workers_say().values()) == {True}

    # Wrong shares: malformed refused (progress kept), a foreign one in a full set refused
    # and every share forgotten; the CLI says so too.
    unseal = service.endpoint + "/v1/sys/unseal"
    assert httpx.post(unseal, json={"key": "not base64!"}, timeout=30).status_code == 400
    for share in shares[:2]:
        assert (
            httpx.post(
                unseal, json={"key": base64.b64encode(share).decode()}, timeout=30
            ).status_code
            == 200
        )
    foreign = base64.b64encode(_foreign_share(shares[:2])).decode() + "\n"
    refused = service.command("operator", "unseal", "--endpoint", service.endpoint, stdin=foreign)
    assert refused.returncode == 2 and "do not open" in refused.stderr
    status = httpx.get(service.endpoint + "/v1/sys/seal-status", timeout=10).json()
    assert status["sealed"] is True and status["progress"] == 0
    _every_worker_refuses_as_sealed(service)

    # T of the N, each given once through the CLI: every worker unsealed.
    for number, share in enumerate(shares[2:], 1):
        given = service.command(
            "operator",
            "unseal",
            "--endpoint",
            service.endpoint,
            stdin=base64.b64encode(share).decode() + "\n",
        )
        assert given.returncode == 0, given.stderr
        assert ("unsealed" in given.stdout) == (number == THRESHOLD), given.stdout
    assert service.workers_say() == dict.fromkeys(service.workers_say(), False)
    assert httpx.get(service.endpoint + "/readyz", timeout=10).status_code == 200

    # Many calls, each client on new connections: every one succeeds, both workers answer.
    key = service.kms().create_key(Description="sealed workers")["KeyMetadata"]["KeyId"]
    before = service.commands_per_worker()
    blobs = []
    for n in range(60):
        kms = service.kms()
        blob = kms.encrypt(KeyId=key, Plaintext=f"call {n}".encode())["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == f"call {n}".encode()
        blobs.append(blob)
    after = service.commands_per_worker()
    assert len(after) == WORKERS
    assert all(after[pid] > before.get(pid, 0) for pid in after), (before, after)

    # A worker killed: the supervisor restarts it, unsealed by the authority it keeps.
    victim = next(iter(service.worker_pids()))
    os.kill(victim, signal.SIGKILL)
    assert eventually(
        lambda: len(service.worker_pids()) == WORKERS and victim not in service.worker_pids(),
        timeout=60,
        poll=0.2,
    )
    assert eventually(service.all_serve, timeout=60, poll=0.2)
    for n, blob in enumerate(blobs):
        assert service.kms().decrypt(CiphertextBlob=blob)["Plaintext"] == f"call {n}".encode()

    # A new Shamir set, verified through the workers, made current and re-wrapped by the
    # service; every worker killed mid-way (one of them rotates), the supervisor restarts
    # them unsealed (it holds the new unseal key), and the rotation run again resumes.
    rotate = service.command("operator", "init", "--rotate")
    assert rotate.returncode == 0, rotate.stderr
    new_shares = [base64.b64decode(s) for s in SHARE_LINE.findall(rotate.stdout)]
    new_id = re.search(r"A new Shamir set: root key (\w+)", rotate.stdout)
    assert new_id is not None
    for share in new_shares[:THRESHOLD]:
        given = service.command(
            "operator", "unseal", "--endpoint", service.endpoint,
            stdin=base64.b64encode(share).decode() + "\n",
        )  # fmt: skip
        assert given.returncode == 0, given.stderr
    assert "verified" in given.stdout
    url = database_url(service.checkout.data_dir)
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM wrapping_keys WHERE owner_id = %s FOR UPDATE", (key,))
        rotating = service.command_in_background(
            "operator", "rotate-root-key", "--batch-size", "2", "--endpoint", service.endpoint,
            "--new-set", new_id.group(1),
        )  # fmt: skip

        def waiting_for_the_held_row() -> bool:
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT root_key_id, count(*) FROM wrapping_keys GROUP BY 1"
                ).fetchall()
            return len(rows) == 2 and sorted(n for _, n in rows)[0] == 1

        assert eventually(waiting_for_the_held_row, timeout=60, poll=0.2)
        killed = service.worker_pids()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        holder.rollback()
    output, _ = rotating.communicate(timeout=60)
    assert rotating.returncode == 1 and "resumes" in output, output
    assert eventually(lambda: len(service.worker_pids() - killed) == WORKERS, timeout=60, poll=0.2)
    assert eventually(service.all_serve, timeout=60, poll=0.2)
    resumed = service.command(
        "operator", "rotate-root-key", "--endpoint", service.endpoint,
        "--new-set", new_id.group(1),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (
        "rotated (resumed)" in resumed.stdout and "destroyed the sealed root key" in resumed.stdout
    )
    for n, blob in enumerate(blobs):
        assert service.kms().decrypt(CiphertextBlob=blob)["Plaintext"] == f"call {n}".encode()

    # One seal (signed, through the CLI) seals every worker.
    sealed = service.command("operator", "seal", "--endpoint", service.endpoint)
    assert sealed.returncode == 0, sealed.stderr
    assert set(service.workers_say().values()) == {True}
    _every_worker_refuses_as_sealed(service)

    # No share nor an unseal key in the output or the database.
    secrets_ = [*shares, *new_shares, shamir.combine(shares[2:]), shamir.combine(new_shares[:3])]
    spelled = [f for s in secrets_ for f in (base64.b64encode(s).decode(), s.hex())]
    assert service.process is not None
    output = service.process.output()
    assert "UNSEALED" in output and "SEALED" in output
    assert not [form for form in spelled if form in output]
    assert not [form for form in spelled if form in _database_text(service.checkout.data_dir)]
