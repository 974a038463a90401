"""``keyledger run --workers N``: the supervising process, kept small.

The ``keyledger`` command imports the whole application to build its argument parser;
a supervisor that only forks workers and restarts them need not keep all that (~50 MB)
for the life of the service. So ``keyledger run`` replaces itself (exec) with this
module, which imports settings, the database helpers and uvicorn only. It starts (or
attaches to) the embedded PostgreSQL, so the server lives as long as the supervisor,
migrates and bootstraps in a short-lived child, then starts the workers
(``app/workers.py``, each on a SO_REUSEPORT socket of its own, so the kernel balances
connections over them) and the audit-trail projection in a process of its own (the
workers then run none), restarting any that exits. Settings come from the environment
(``keyledger run`` put its command-line overrides there).
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

from app.settings import Settings, load_settings

log = logging.getLogger("keyledger.supervisor")
PROJECTOR_COMMAND = (
    "import sys; from app.cli import main; sys.exit(main(['projections', 'run', '--audit-only']))"
)
WORKER_COMMAND = "import sys; from app.workers import main; sys.exit(main())"
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30.0
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
        self, name: str, command: str, env: dict[str, str], *, niceness: int = 0,
        quiet: bool = False,
    ) -> None:  # fmt: skip
        self.name = name
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

        self._process = subprocess.Popen(
            [sys.executable, "-c", self._command], env=self._env, stdin=subprocess.DEVNULL,
            stdout=self._stdout, preexec_fn=before_exec,
        )  # fmt: skip

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.warning("%s exited (%s); restarting", self.name, code)
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


def prepare(settings: Settings) -> None:
    """Migrate, bootstrap the administrator and print its credentials (in a child)."""
    from app.cli import prepare_database

    prepare_database(settings)


def main() -> int:
    from app.database import resolve_database_url
    from app.workers import reuse_port_socket

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    resolve_database_url(settings)
    child = multiprocessing.get_context("spawn").Process(
        target=prepare, args=(settings,), name="keyledger-prepare"
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        print("keyledger run: migration or bootstrap failed", file=sys.stderr)
        return 1
    try:
        # Held (bound, never listening) for the supervisor's life: it fails early if
        # the port is taken, and gives the workers the port when 0 asked for any.
        port_holder = reuse_port_socket(settings.host, settings.port)
    except OSError as error:
        print(f"keyledger run: cannot listen on {settings.host}:{settings.port}: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
    port = int(port_holder.getsockname()[1])
    _supervise(_children(settings, port), settings.host, port)
    port_holder.close()
    if settings.database_url is None:  # the embedded server stops when this process exits
        from app.embedded_postgres import forget_exited_processes

        forget_exited_processes(settings.data_dir)
    return 0


def _supervise(children: list[Supervised], host: str, port: int) -> None:
    """Run the children until SIGTERM or SIGINT, then stop them all."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for process in children:
        process.start()
    threading.Thread(target=_announce, args=(host, port, stop), daemon=True).start()
    while not stop.wait(1.0):
        pass
    for process in children:
        process.terminate()
    for process in children:
        process.wait(timeout=STOP_TIMEOUT_S)


def _children(settings: Settings, port: int) -> list[Supervised]:
    """The workers and, unless turned off, the audit projection's own process."""
    env = os.environ | {"KEYLEDGER_PORT": str(port)}
    children = []
    if settings.run_audit_projection:
        children.append(
            Supervised("audit projection", PROJECTOR_COMMAND,
                       env | {"KEYLEDGER_RUN_AUDIT_PROJECTION": "true"}, quiet=True)
        )  # fmt: skip
        env["KEYLEDGER_RUN_AUDIT_PROJECTION"] = "false"  # the workers run none
    # The workers yield the CPU to the projector: at saturation, requests slow down
    # rather than the audit trail falling behind.
    niceness = WORKER_NICENESS if settings.run_audit_projection else 0
    children.extend(
        Supervised(f"worker {index}", WORKER_COMMAND, env, niceness=niceness)
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
