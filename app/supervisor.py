"""``keyledger run --workers N``: the supervising process, kept small.

The ``keyledger`` command imports the whole application to build its argument parser;
a supervisor that only forks workers and restarts them need not keep all that (~50 MB)
for the life of the service. So ``keyledger run`` replaces itself (exec) with this
module, which imports settings, the database helpers and uvicorn only. It starts (or
attaches to) the embedded PostgreSQL, so the server lives as long as the supervisor,
migrates and bootstraps in a short-lived child, starts the audit-trail projection in a
process of its own (restarted if it dies; the workers then run none), then runs
uvicorn's supervisor over ``app.main:create_app``. Settings come from the environment
(``keyledger run`` put its command-line overrides there).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

from app.settings import Settings, load_settings

log = logging.getLogger("keyledger.supervisor")
PROJECTOR_COMMAND = (
    "import sys; from app.cli import main; sys.exit(main(['projections', 'run', '--audit-only']))"
)
RESTART_DELAY_S = 1.0
WORKER_NICENESS = 5  # CFS weights 335 vs 1024: the projector gets ~3x a worker's share
PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """In the projector, before exec: get SIGTERM if the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Projector:
    """The audit-trail projection in a process of its own, restarted whenever it exits."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="projector", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        env = os.environ | {"KEYLEDGER_RUN_AUDIT_PROJECTION": "true"}
        self._process = subprocess.Popen(
            [sys.executable, "-c", PROJECTOR_COMMAND], env=env, stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_supervisor,
        )  # fmt: skip

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.warning("audit projection process exited (%s); restarting", code)
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def prepare(settings: Settings) -> None:
    """Migrate, bootstrap the administrator and print its credentials (in a child)."""
    from app.cli import prepare_database

    prepare_database(settings)


def main() -> int:
    import uvicorn

    from app.database import resolve_database_url

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
    projector = Projector() if settings.run_audit_projection else None
    if projector is not None:
        projector.start()
        os.environ["KEYLEDGER_RUN_AUDIT_PROJECTION"] = "false"  # the workers' setting
        # The workers (forked from here from now on) yield the CPU to the projector: at
        # saturation, requests slow down rather than the audit trail falling behind.
        os.nice(WORKER_NICENESS)
    try:
        uvicorn.run(
            "app.main:create_app", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, log_level=settings.log_level, access_log=False,
            proxy_headers=False, server_header=False, date_header=False,
        )  # fmt: skip
    finally:
        if projector is not None:
            projector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
