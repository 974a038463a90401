"""Run the real ``keyledger`` command as a subprocess, its output captured to a file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import psutil
from botocore.config import Config

KEYLEDGER = Path(sys.executable).parent / "keyledger"
# Printed once the service answers (by the supervisor of --workers N once a worker does).
LISTENING = re.compile(r"KeyLedger listening on (http://\S+)")


@contextlib.contextmanager
def private_dir() -> Iterator[Path]:
    """A directory outside pytest's temporary root. Run as root, the embedded server
    runs as another user, and every pytest session that starts (other developers' too)
    resets that root to mode 0700: the server, or pg_ctl waiting for it, would lose its
    way to the data directory."""
    path = Path(tempfile.mkdtemp(prefix="keyledger-cli-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, **variables: str) -> dict[str, str]:
    """The environment for a ``keyledger`` process: no KEYLEDGER_* or AWS_* leaks in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEYLEDGER_", "AWS_"))
    }
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", AWS_EC2_METADATA_DISABLED="true")
    # Tests create keys faster than AWS's CreateKey quota; tests/aws/test_quotas.py turns it on.
    env.update(KEYLEDGER_QUOTAS="off")
    env.update(variables)
    return env


def keyledger(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    """Run a one-shot ``keyledger`` command; its stdout, or AssertionError with its output."""
    result = subprocess.run(
        [str(KEYLEDGER), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"keyledger {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class KeyLedgerProcess:
    """``keyledger run`` in the background; stdout and stderr go to ``log_path``."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(KEYLEDGER), "run", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.endpoint = ""

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self, timeout: float = 60) -> str:
        """Wait for the listening line and for /healthz to answer; returns the endpoint."""
        deadline = time.monotonic() + timeout
        while not self.endpoint:
            match = LISTENING.search(self.output())
            if match:
                self.endpoint = match.group(1)
                break
            self._check_alive(deadline)
            time.sleep(0.05)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.endpoint + "/healthz", timeout=2).status_code == 200:
                    return self.endpoint
            self._check_alive(deadline)
            time.sleep(0.05)

    def _check_alive(self, deadline: float) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"keyledger run exited with {self.process.returncode}:\n{self.output()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"keyledger run did not start in time:\n{self.output()}")

    def interrupt(self, timeout: float = 20, signum: int = signal.SIGINT) -> int:
        """Ctrl-C (or ``signum``), then the exit status (killing it if it does not stop in
        time)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            name = signal.Signals(signum).name
            raise AssertionError(
                f"keyledger run did not stop within {timeout}s of {name}:\n{self.output()}"
            ) from None
        finally:
            self._log.close()

    def wait_until_refused(self, timeout: float = 60) -> int:
        """Wait for it to exit, failing if it starts listening instead; its exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if LISTENING.search(self.output()):
                self.kill()
                raise AssertionError(f"keyledger run started listening:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"keyledger run neither exited nor listened:\n{self.output()}")
            time.sleep(0.05)
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def postmaster(data_dir: Path) -> psutil.Process:
    """The embedded PostgreSQL server of ``data_dir`` (the pid in its postmaster.pid)."""
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    return psutil.Process(int(pidfile.read_text().splitlines()[0]))


def database_url(data_dir: Path, dbname: str = "keyledger") -> str:
    """A URL of the embedded PostgreSQL of ``data_dir`` (read from its postmaster.pid: no
    handle on the server is taken, so this process never stops it)."""
    lines = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/{dbname}?host={socket_dir}&port={port}"


def kill_whole_stack(process: KeyLedgerProcess, data_dir: Path) -> None:
    """SIGKILL at once ``keyledger run``, all its children and the embedded PostgreSQL's
    processes (the server runs in a session of its own, outside the process group)."""
    server = postmaster(data_dir)
    top = psutil.Process(process.process.pid)
    victims = [top, *top.children(recursive=True), server, *server.children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    process.kill()


def answering_process(endpoint: str) -> int:
    """The pid of the worker that answers a request on a new connection."""
    with httpx.Client() as client:  # one connection, closed after
        metrics = client.get(endpoint + "/metrics", timeout=10).text
    found = re.search(r"^keyledger_process_id (\d+)(?:\.0)?$", metrics, re.MULTILINE)
    assert found, metrics
    return int(found.group(1))


@dataclass
class Checkout:
    """A directory to run ``keyledger run`` in, with its own HOME and data directory."""

    cwd: Path
    env: dict[str, str]
    runs: int = 0

    @classmethod
    def make(cls, base: Path) -> Checkout:
        (base / "home").mkdir(parents=True)
        (base / "checkout").mkdir()
        return cls(base / "checkout", clean_env(base / "home"))

    @property
    def data_dir(self) -> Path:
        return self.cwd / ".keyledger"

    def start(self, *args: str) -> KeyLedgerProcess:
        self.runs += 1
        log_path = self.cwd.parent / f"run-{self.runs}.log"
        return KeyLedgerProcess(*args, cwd=self.cwd, env=self.env, log_path=log_path)

    def kms(self, endpoint: str):  # type: ignore[no-untyped-def]
        """A KMS client with the administrator key pair saved at the first start."""
        saved = dict(
            line.split(" = ", 1)
            for line in (self.data_dir / "credentials").read_text().splitlines()
            if " = " in line
        )
        return boto3.client(
            "kms",
            endpoint_url=endpoint,
            region_name=saved["region"],
            aws_access_key_id=saved["aws_access_key_id"],
            aws_secret_access_key=saved["aws_secret_access_key"],
            config=Config(retries={"max_attempts": 1}),
        )
