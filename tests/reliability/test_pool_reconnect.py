"""A connection pool is usable again soon after PostgreSQL is back (docs/reliability.md).

psycopg_pool's own back-off tried again 1 s, then 2 s, after a failed connect: after a
restart of the database that took a fraction of a second, requests that needed a pooled
connection (credential reads, the vault) were answered 503 for up to 2 s more. The chaos
harness saw those bursts after kill -9 of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from psycopg_pool import ConnectionPool

from app.bootstrap import migrate
from app.infrastructure.event_store import timeout_env
from app.infrastructure.ledger import Ledger
from app.infrastructure.postgres.database import (
    POOL_RECONNECT_TIMEOUT,
    BoundedPool,
    bounded_connection_class,
    connection_params,
    libpq_options,
)
from tests.support.databases import drop, fresh_database
from tests.support.pg_proxy import PgProxy

DOWN_SECONDS = 1.2  # longer than psycopg_pool's first retry (1 s), within its give-up time
BACK_WITHIN_SECONDS = 0.5


@contextlib.contextmanager
def pool_behind_proxy() -> Iterator[tuple[ConnectionPool, PgProxy]]:
    url = fresh_database("embedded")
    proxy = PgProxy(url)
    pool = BoundedPool(
        proxy.url,
        min_size=1,
        max_size=2,
        open=True,
        timeout=1.0,
        reconnect_timeout=POOL_RECONNECT_TIMEOUT,
        connection_class=bounded_connection_class(5.0),
        kwargs=libpq_options(2, 5.0),
    )
    try:
        yield pool, proxy
    finally:
        pool.close()
        proxy.close()
        drop(url)


def answers(pool: ConnectionPool) -> bool:
    try:
        with pool.connection(timeout=0.2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


@pytest.mark.timeout(60)
def test_a_pool_reconnects_within_half_a_second_of_the_database_coming_back() -> None:
    with pool_behind_proxy() as (pool, proxy):
        assert answers(pool)
        proxy.refuse()  # the server stops: the pooled connection dies, connects fail
        down_until = time.monotonic() + DOWN_SECONDS
        while time.monotonic() < down_until:
            assert not answers(pool)  # each failed check starts the pool's reconnect tries
        proxy.resume()
        back = time.monotonic()
        while not answers(pool):
            assert time.monotonic() - back < 5.0, "the pool never reconnected"
        assert time.monotonic() - back < BACK_WITHIN_SECONDS


STALE_CONNECTIONS = 5  # the library pool's default size
FIRST_READ_WITHIN_SECONDS = 0.3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["service pool", "ledger pool"])
def test_after_a_restart_every_stale_connection_is_dropped_at_once(which: str) -> None:
    """After the database restarted while nothing used the pool, the first request must
    not pay psycopg_pool's back-off sleep for each stale connection it checks (five of
    them took the whole 1 s deadline)."""
    url = fresh_database("embedded")
    migrate(url)
    proxy = PgProxy(url)
    ledger = Ledger(env=connection_params(proxy.url) | timeout_env(1.0, 5.0))
    service_pool = BoundedPool(
        proxy.url,
        min_size=STALE_CONNECTIONS,
        max_size=8,
        open=True,
        timeout=1.0,
        reconnect_timeout=POOL_RECONNECT_TIMEOUT,
        kwargs=libpq_options(2, 5.0),
    )
    service_pool.wait()

    def read() -> None:
        if which == "ledger pool":
            ledger.recorder.max_notification_id()
        else:
            with service_pool.connection() as conn:
                conn.execute("SELECT 1")

    try:
        with ThreadPoolExecutor(STALE_CONNECTIONS) as threads:  # fill the library's pool
            list(threads.map(lambda _: read(), range(3 * STALE_CONNECTIONS)))
        proxy.refuse()  # the server restarts: every pooled connection dies
        time.sleep(0.3)
        proxy.resume()
        time.sleep(1.0)  # nothing asks meanwhile
        started = time.monotonic()
        read()
        assert time.monotonic() - started < FIRST_READ_WITHIN_SECONDS
    finally:
        service_pool.close()
        ledger.close()
        proxy.close()
        drop(url)
