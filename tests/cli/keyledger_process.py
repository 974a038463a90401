"""Run the real ``keyledger`` command as a subprocess, its output captured to a file."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEYLEDGER = Path(sys.executable).parent / "keyledger"
# Printed once the service answers (by the supervisor of --workers N once a worker does).
LISTENING = re.compile(r"KeyLedger listening on (http://\S+)")


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
    env.update(variables)
    return env


def keyledger(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    """Run a one-shot ``keyledger`` command; its stdout, or AssertionError with its output."""
    result = subprocess.run(
        [str(KEYLEDGER), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, f"keyledger {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class KeyLedgerProcess:
    """``keyledger run`` in the background; stdout and stderr go to ``log_path``."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(KEYLEDGER), "run", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
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

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
