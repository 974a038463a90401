"""Database URLs: turn a libpq URL into eventsourcing's Postgres environment, and
create/drop databases (used by the embedded server bootstrap and by tests).

eventsourcing's Postgres factory does not take a URL; it reads ``POSTGRES_DBNAME``,
``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_USER`` and ``POSTGRES_PASSWORD`` and
passes them to psycopg as keyword arguments, so libpq rules apply to each value: a
host that starts with ``/`` is a unix-socket directory, an empty host/user/dbname means
the libpq default (``PGHOST``/``PGUSER``/...), and comma-separated hosts and ports
are a multi-host list.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import Row
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from app.infrastructure.postgres import nul_safe_text
from domain.errors import DependencyTimeoutError

nul_safe_text.install()

if TYPE_CHECKING:
    from app.settings import Settings

# Our factory: the library's Postgres infrastructure with a faster insert
# (app.infrastructure.event_store).
PERSISTENCE_MODULE = "app.infrastructure.event_store:LedgerPostgresFactory"

# libpq parameters that have an eventsourcing environment variable.
_SUPPORTED = {"dbname", "host", "port", "user", "password", "connect_timeout"}

_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_URL_SCHEME_RE = re.compile(r"^(postgres(?:ql)?)(\+[A-Za-z0-9_]+)?://", re.IGNORECASE)
# Serialises CREATE DATABASE between concurrent callers on one server.
_CREATE_LOCK_KEY = 0x4B4C_4442  # "KLDB"


def normalize_url(url: str) -> str:
    """Strip whitespace and an SQLAlchemy-style driver suffix (``postgresql+psycopg://``)."""
    text = url.strip()
    match = _URL_SCHEME_RE.match(text)
    if match and match.group(2):
        text = match.group(1).lower() + "://" + text[match.end() :]
    return text


def parse_url(url: str) -> dict[str, str]:
    """The libpq parameters given in ``url`` (URL or ``key=value`` form); no defaults applied."""
    try:
        params = conninfo_to_dict(normalize_url(url))
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"invalid PostgreSQL connection URL: {exc}") from None
    return {key: str(value) for key, value in params.items() if value is not None}


def connection_params(url: str) -> dict[str, str]:
    """eventsourcing environment variables for the PostgreSQL database at ``url``.

    Accepts ``postgresql://user:pw@host:port/db``, the unix-socket forms
    ``postgresql://user@/db?host=/socket/dir`` and ``postgresql://%2Fsocket%2Fdir/db``,
    multi-host URLs and libpq ``key=value`` strings. Parameters eventsourcing cannot
    pass on (``sslmode``, ``options``, ...) raise ValueError rather than being dropped
    silently; set them as libpq environment variables (``PGSSLMODE``...) instead.
    """
    params = parse_url(url)
    unsupported = sorted(set(params) - _SUPPORTED)
    if unsupported:
        raise ValueError(
            "connection parameters not supported in the database URL: "
            f"{', '.join(unsupported)}; set the matching libpq environment variables "
            "instead (e.g. PGSSLMODE, PGSSLROOTCERT, PGAPPNAME)"
        )
    env = {
        "PERSISTENCE_MODULE": PERSISTENCE_MODULE,
        "POSTGRES_DBNAME": params.get("dbname", ""),
        "POSTGRES_HOST": params.get("host", ""),
        "POSTGRES_PORT": params.get("port", "") or "5432",
        "POSTGRES_USER": params.get("user", ""),
        "POSTGRES_PASSWORD": params.get("password", ""),
    }
    if params.get("connect_timeout"):
        env["POSTGRES_CONNECT_TIMEOUT"] = params["connect_timeout"]
    return env


def resolve_database_url(settings: Settings) -> str:
    """``settings.database_url``, or the URL of the embedded PostgreSQL under ``data_dir``."""
    if settings.database_url:
        return settings.database_url
    from app.infrastructure.postgres.embedded import ensure_embedded_database

    return ensure_embedded_database(settings.data_dir)


def url_with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, user, password...)."""
    text = normalize_url(url)
    if _URL_SCHEME_RE.match(text):
        parts = urlsplit(text)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    return make_conninfo(text, dbname=name)


def _check_name(name: str) -> None:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name {name!r}: use letters, digits and _ (max 63)")


def _admin_connect(admin_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(normalize_url(admin_url), autocommit=True, connect_timeout=10)


def database_exists(admin_url: str, name: str) -> bool:
    """Whether database ``name`` exists on the server of ``admin_url``."""
    with _admin_connect(admin_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def create_database(admin_url: str, name: str, *, exist_ok: bool = False) -> str:
    """Create database ``name`` on the server of ``admin_url``; return its URL.

    ``admin_url`` must point at an existing database (e.g. ``postgres``) as a role
    allowed to create databases. Safe against concurrent callers.
    """
    _check_name(name)
    with _admin_connect(admin_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK_KEY,))
        try:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if row is not None:
                if not exist_ok:
                    raise FileExistsError(f"database {name!r} already exists")
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK_KEY,))
    return url_with_database(admin_url, name)


def drop_database(admin_url: str, name: str, *, missing_ok: bool = True) -> None:
    """Drop database ``name``, disconnecting its sessions first (``WITH (FORCE)``)."""
    _check_name(name)
    with _admin_connect(admin_url) as conn:
        if parse_url(admin_url).get("dbname") == name:
            raise ValueError(f"cannot drop {name!r} through a connection to itself")
        if missing_ok:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        else:
            statement = sql.SQL("DROP DATABASE {} WITH (FORCE)")
        conn.execute(statement.format(sql.Identifier(name)))


# --- bounds on waiting for PostgreSQL (docs/reliability.md) -----------------------------------
# A stopped server refuses connections at once, but a frozen one (SIGSTOP, a partition, a
# proxy that stops forwarding) accepts and acknowledges everything and answers nothing: no
# socket option notices, so every round trip carries a client-side bound.

DEFAULT_IO_TIMEOUT = 10.0
WAIT_INTERVAL = 0.1  # psycopg's own default for its wait loops
# psycopg_pool retries a failed connection with a doubling delay until this many seconds
# have passed (its default, 300, let a pool wait minutes after the database came back);
# then it gives up, and the next request that needs a connection tries at once.
POOL_RECONNECT_TIMEOUT = 2.0
# Within that time, psycopg_pool tries again after 1 s, then 2 s. PostgreSQL restarted by
# the supervisor is back in well under a second, so a pool whose first try failed (the
# server still down) kept requests waiting for a connection (503s) for up to 2 s after it
# was back: the chaos harness saw such bursts after kill -9 of the database. Try after
# 0.1 s, each wait half as long again as the last (0.1, 0.15, 0.23, 0.34 ... s). The
# library has no per-pool setting: its class attributes are the only knob.
POOL_FIRST_RETRY_SECONDS = 0.1
POOL_RETRY_BACKOFF = 1.5
AttemptWithBackoff.INITIAL_DELAY = POOL_FIRST_RETRY_SECONDS
AttemptWithBackoff.DELAY_BACKOFF = POOL_RETRY_BACKOFF
# SQLSTATE classes that mean "not reachable now": connection exceptions, insufficient
# resources (too many connections...), operator intervention (shutdown, statement timeout);
# and lock_not_available (a lock timeout).
UNAVAILABLE_SQLSTATES = ("08", "53", "57", "55P03")
UNAVAILABLE_ERRORS = (DependencyTimeoutError, PoolTimeout, ConnectionError, TimeoutError)
RV = TypeVar("RV")

_deadline: ContextVar[float | None] = ContextVar("keyledger_database_deadline", default=None)
_wait_bound: ContextVar[float | None] = ContextVar("keyledger_database_wait_bound", default=None)


# The errors raised here are the driver's own kinds (their callers handle them as before)
# and DependencyTimeoutErrors too, so that an API answers them 503, retry.
class DatabaseTimeoutError(psycopg.errors.OperationalError, DependencyTimeoutError):
    """PostgreSQL did not answer a round trip within its bound; the connection is closed."""


class DeadlinePassedError(DatabaseTimeoutError):
    """The deadline had passed before a round trip began: nothing was sent."""


class PoolWaitTimeoutError(PoolTimeout, DependencyTimeoutError):
    """No pooled connection was free (or could be made) within the wait's bound."""


@contextlib.contextmanager
def grace_after_deadline(seconds: float) -> Iterator[float]:
    """Within this block the current deadline is pushed back to at least ``seconds`` from
    now: for settling a commit whose answer was lost, where a verdict is worth a little
    more waiting than the request's own deadline allows (never for new work)."""
    with _deadline_at(max, time.monotonic() + seconds) as deadline:
        yield deadline


@contextlib.contextmanager
def database_deadline(seconds: float) -> Iterator[float]:
    """Within this block (and the threads it starts with ``asyncio.to_thread``), every
    round trip on KeyLedger's connections ends by ``seconds`` from now, or raises
    DatabaseTimeoutError. A deadline already set is never extended."""
    with _deadline_at(min, time.monotonic() + seconds) as deadline:
        yield deadline


@contextlib.contextmanager
def _deadline_at(pick: Callable[[float, float], float], deadline: float) -> Iterator[float]:
    """The deadline ``pick`` chooses between the current one (if any) and ``deadline``."""
    outer = _deadline.get()
    chosen = deadline if outer is None else pick(outer, deadline)
    token = _deadline.set(chosen)
    try:
        yield chosen
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def bounded_waits(seconds: float) -> Iterator[None]:
    """Within this block (and the threads it starts with ``asyncio.to_thread``), each wait
    for the database (a round trip, a pooled connection, a connection) ends within
    ``seconds``, or raises as past a deadline; the block itself may last longer, as long
    as the database answers (a request waiting for a busy view). A bound already set is
    never loosened."""
    outer = _wait_bound.get()
    token = _wait_bound.set(seconds if outer is None else min(outer, seconds))
    try:
        yield
    finally:
        _wait_bound.reset(token)


def time_left(default: float) -> float:
    """How long the next wait for the database may last: ``default``, or less when the
    current deadline comes sooner or the current bound on each wait (`bounded_waits`) is
    shorter."""
    bound = _wait_bound.get()
    if bound is not None:
        default = min(default, bound)
    deadline = _deadline.get()
    return default if deadline is None else min(default, deadline - time.monotonic())


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error``, or an error that caused it, says that the database could not be
    reached or did not answer in time (retry later: 503 DependencyTimeoutException), as
    opposed to an answer it gave."""
    current: BaseException | None = error
    for _ in range(8):  # a cause chain is short; never loop on a cyclic one
        if current is None:
            return False
        if isinstance(current, UNAVAILABLE_ERRORS):
            return True
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate
            return state is None or state.startswith(UNAVAILABLE_SQLSTATES)
        current = current.__cause__
    return False


def _bound(io_timeout: float, gen: Any, conn: Any) -> float:
    """The bound for one round trip; a deadline already passed closes the connection
    before anything is sent (the generator has not started)."""
    bound = time_left(io_timeout)
    if bound <= 0:
        gen.close()
        conn.pgconn.finish()
        raise DeadlinePassedError("the database deadline passed before the round trip")
    return bound


class BoundedConnection(psycopg.Connection[Row]):
    """A connection whose every round trip is bounded: by the current deadline
    (`database_deadline`), else by ``io_timeout``. When the bound passes, the connection is
    closed (its state is unknown) and DatabaseTimeoutError raised."""

    io_timeout: ClassVar[float] = DEFAULT_IO_TIMEOUT

    def wait(
        self, gen: PQGen[RV], interval: float = WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        bound = _bound(self.io_timeout, gen, self)
        if timeout is not None and timeout <= bound:  # the caller's own, shorter (notifies)
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout:  # psycopg's "timeout passed" (3.3+)
            self.pgconn.finish()
            raise DatabaseTimeoutError(f"no answer from the database in {bound:.2f} s") from None


class BoundedAsyncConnection(psycopg.AsyncConnection[Row]):
    """BoundedConnection's twin for the event loop. Bounding the wait itself, rather than
    cancelling it, matters: psycopg answers a cancelled query by sending the server a
    cancel request and waiting up to 10 s more, which a frozen server never answers."""

    io_timeout: ClassVar[float] = DEFAULT_IO_TIMEOUT

    async def wait(
        self, gen: PQGen[RV], interval: float = WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        bound = _bound(self.io_timeout, gen, self)
        if timeout is not None and timeout <= bound:
            return await super().wait(gen, interval, timeout)
        try:
            return await super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise DatabaseTimeoutError(f"no answer from the database in {bound:.2f} s") from None


def bounded_connection_class(io_timeout: float) -> type[BoundedConnection[Any]]:
    """BoundedConnection with its own ``io_timeout`` (a pool makes its connections from
    a class, so the bound travels with the class)."""
    return cast(
        "type[BoundedConnection[Any]]",
        type("BoundedConnection", (BoundedConnection,), {"io_timeout": io_timeout}),
    )


def bounded_async_connection_class(io_timeout: float) -> type[BoundedAsyncConnection[Any]]:
    return cast(
        "type[BoundedAsyncConnection[Any]]",
        type("BoundedAsyncConnection", (BoundedAsyncConnection,), {"io_timeout": io_timeout}),
    )


class PurgeOnFailedCheck:
    """A pool's ``check`` that, when one connection fails it, checks every idle one at once.

    A failed check usually means the server restarted, and then every pooled connection is
    as dead. psycopg_pool's getconn finds that out one connection per loop, sleeping its
    back-off between (0.1, 0.15, 0.23 ... s): five stale connections cost a request after a
    restart its whole 1 s deadline (503s seconds after the database was back, in the chaos
    harness). ``ConnectionPool.check`` discards them all and asks for new ones at once.
    """

    def __init__(self) -> None:
        self.pool: ConnectionPool[Any] | None = None

    def __call__(self, conn: Any) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            if self.pool is not None:
                self.pool.check()  # checks with the plain check_connection: no recursion
            raise

    def install(self, pool: ConnectionPool[Any]) -> None:
        """Make this ``pool``'s check (for a pool built by a library, before it opens)."""
        self.pool = pool
        pool._check = self  # psycopg_pool keeps its check here; it has no setter


class BoundedPool(ConnectionPool[Any]):
    """A pool whose wait for a connection also ends at the current deadline (or within the
    current bound on waits), the check of the connection handed out included: a frozen
    server would otherwise hold the check for the whole io timeout. Connections are checked
    as they are handed out, and one failed check purges every stale one
    (`PurgeOnFailedCheck`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check = PurgeOnFailedCheck()
        super().__init__(*args, **kwargs, check=check)
        check.pool = self

    def getconn(self, timeout: float | None = None) -> Any:
        wait = time_left(self.timeout if timeout is None else timeout)
        if wait <= 0:
            raise PoolWaitTimeoutError("the deadline passed before a connection was free")
        try:
            with database_deadline(wait):
                return super().getconn(wait)
        except PoolTimeout as error:
            raise PoolWaitTimeoutError(f"no database connection within {wait:.2f} s") from error


def libpq_options(connect_timeout: int, io_timeout: float) -> dict[str, Any]:
    """libpq parameters for every connection: a connect timeout (libpq's minimum is 2 s),
    and TCP keepalives and a user timeout, so that a connection to a host that vanished
    dies in about ``io_timeout`` even when idle (no effect on unix sockets)."""
    return {
        "connect_timeout": max(2, connect_timeout),
        "keepalives": 1,
        "keepalives_idle": max(1, int(io_timeout / 2)),
        "keepalives_interval": max(1, int(io_timeout / 6)),
        "keepalives_count": 3,
        "tcp_user_timeout": int(io_timeout * 1000),
    }
