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

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app import nul_safe_text

nul_safe_text.install()

if TYPE_CHECKING:
    from app.settings import Settings

# Our factory: the library's Postgres infrastructure with a faster insert (app.event_store).
PERSISTENCE_MODULE = "app.event_store:LedgerPostgresFactory"

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
    from app.embedded_postgres import ensure_embedded_database

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
