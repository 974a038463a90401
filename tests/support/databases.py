"""Fresh, isolated PostgreSQL databases for tests.

Two backends:

* ``"embedded"``: the embedded PostgreSQL wheel, one server shared by every test
  process (and pytest-xdist worker) in ``KEYLEDGER_TEST_EMBEDDED_DIR`` (default
  ``/tmp/keyledger-test-pg``); it stops when the last process using it exits.
* ``"external"``: the server at ``KEYLEDGER_TEST_EXTERNAL_DATABASE_URL`` (a URL of a
  maintenance database such as ``postgres``, as a role that may create databases);
  when that variable is unset, ``postgresql://postgres@127.0.0.1:5432/postgres`` if it
  answers. Set the variable to an empty string to disable the backend.

`fresh_database` creates a new database with a unique ``kltest_<pid>_<hex>`` name and
returns its URL; `drop` drops it. Databases not dropped are dropped at interpreter
exit, and ones left by processes that died (same host) are swept on first use.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg

from app.infrastructure.postgres.database import (
    create_database,
    drop_database,
    parse_url,
    url_with_database,
)

EMBEDDED = "embedded"
EXTERNAL = "external"
EXTERNAL_URL_ENV = "KEYLEDGER_TEST_EXTERNAL_DATABASE_URL"
EMBEDDED_DIR_ENV = "KEYLEDGER_TEST_EMBEDDED_DIR"
DEFAULT_EXTERNAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_EMBEDDED_DIR = Path("/tmp/keyledger-test-pg")

_PREFIX = "kltest_"
_NAME_RE = re.compile(rf"^{_PREFIX}(\d+)_[0-9a-f]+$")
_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}

_lock = threading.Lock()
_live: dict[str, str] = {}  # url -> admin url, for the databases not dropped yet
_swept: set[str] = set()
_atexit_registered = False


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@functools.cache
def external_admin_url() -> str | None:
    """URL of the external server's maintenance database, or None if unavailable."""
    configured = os.environ.get(EXTERNAL_URL_ENV)
    if configured is not None:
        return configured.strip() or None
    return DEFAULT_EXTERNAL_URL if _answers(DEFAULT_EXTERNAL_URL) else None


@functools.cache
def embedded_admin_url() -> str:
    """URL of the shared embedded server's maintenance database (starts it if needed)."""
    from app.infrastructure.postgres.embedded import embedded_admin_url as start

    return start(Path(os.environ.get(EMBEDDED_DIR_ENV) or DEFAULT_EMBEDDED_DIR))


def database_backends() -> list[str]:
    """``["embedded"]``, plus ``"external"`` when an external server is available."""
    return [EMBEDDED, EXTERNAL] if external_admin_url() is not None else [EMBEDDED]


def _admin_url(backend: str) -> str:
    if backend == EMBEDDED:
        return embedded_admin_url()
    if backend == EXTERNAL:
        url = external_admin_url()
        if url is None:
            raise LookupError(
                f"no external PostgreSQL: set {EXTERNAL_URL_ENV} or run one on 127.0.0.1:5432"
            )
        return url
    raise ValueError(f"unknown database backend {backend!r}; expected one of {database_backends()}")


def _is_local(admin_url: str) -> bool:
    hosts = parse_url(admin_url).get("host", "").split(",")
    return all(host in _LOCAL_HOSTS or host.startswith("/") for host in hosts)


def _sweep_dead(admin_url: str) -> None:
    """Drop test databases whose creating process (on this host) is gone."""
    if admin_url in _swept:
        return
    _swept.add(admin_url)
    if not _is_local(admin_url):
        return
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (_PREFIX + "%",)
        ).fetchall()
    for (name,) in rows:
        match = _NAME_RE.match(str(name))
        if match and not psutil.pid_exists(int(match.group(1))):
            drop_database(admin_url, str(name))


def _drop_leftovers() -> None:
    with _lock:
        leftovers = list(_live.items())
        _live.clear()
    for url, admin_url in leftovers:
        with contextlib.suppress(psycopg.Error):  # the server may already be gone at exit
            drop_database(admin_url, parse_url(url)["dbname"])


def fresh_database(backend: str) -> str:
    """Create an empty database on ``backend`` and return its libpq URL."""
    global _atexit_registered
    admin_url = _admin_url(backend)
    name = f"{_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:16]}"
    with _lock:
        _sweep_dead(admin_url)
        url = create_database(admin_url, name)
        _live[url] = admin_url
        if not _atexit_registered:
            # Registered after the embedded server's own exit hook, so runs before it.
            atexit.register(_drop_leftovers)
            _atexit_registered = True
    return url


def drop(url: str) -> None:
    """Drop a database made by `fresh_database` (closing its open sessions)."""
    name = parse_url(url).get("dbname", "")
    if not _NAME_RE.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a database made by fresh_database")
    with _lock:
        admin_url = _live.pop(url, None)
    if admin_url is None:
        admin_url = url_with_database(url, "postgres")
    drop_database(admin_url, name)


@contextlib.contextmanager
def migrated_ledger(backend: str = EMBEDDED) -> Iterator[tuple[str, Any]]:
    """A fresh database with the library's tables and every migration, and a Ledger on it
    (as the service opens one); both dropped at the end. Yields (url, ledger)."""
    from app.infrastructure.ledger import Ledger
    from app.infrastructure.postgres.database import connection_params
    from app.infrastructure.postgres.migrate import apply_migrations

    url = fresh_database(backend)
    try:
        Ledger(env=connection_params(url) | {"CREATE_TABLE": "y"}).close()
        apply_migrations(url)
        ledger = Ledger(env=connection_params(url) | {"CREATE_TABLE": "n"})
        try:
            yield url, ledger
        finally:
            ledger.close()
    finally:
        drop(url)
