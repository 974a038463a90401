"""The test database helpers give working, empty, isolated databases on every backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from app.infrastructure.postgres.database import (
    connection_params,
    database_exists,
    parse_url,
    url_with_database,
)
from tests.support.databases import (
    EXTERNAL,
    EXTERNAL_URL_ENV,
    database_backends,
    drop,
    fresh_database,
)

BACKENDS = database_backends()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    url = fresh_database(request.param)
    yield url
    drop(url)


def test_external_backend_is_used_when_configured() -> None:
    if os.environ.get(EXTERNAL_URL_ENV):
        assert EXTERNAL in BACKENDS
    assert BACKENDS[0] == "embedded"


def test_fresh_database_is_empty_and_writable(database: str) -> None:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        assert row[0] == parse_url(database)["dbname"]
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fresh_databases_are_isolated_and_dropped(backend: str) -> None:
    first, second = fresh_database(backend), fresh_database(backend)
    try:
        assert first != second
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE only_in_first (x int)")
        with psycopg.connect(second) as conn:
            row = conn.execute("SELECT to_regclass('only_in_first')").fetchone()
            assert row == (None,)
    finally:
        drop(first)
        drop(second)
    admin = url_with_database(first, "postgres")
    assert not database_exists(admin, parse_url(first)["dbname"])
    assert not database_exists(admin, parse_url(second)["dbname"])


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


def test_eventsourcing_runs_on_fresh_database(database: str) -> None:
    app: Application[UUID] = Application(env=connection_params(database) | {"CREATE_TABLE": "y"})
    try:
        dog = Dog("fido")
        dog.add_trick("roll over")
        app.save(dog)
        copy: Aggregate = app.repository.get(dog.id)
        assert isinstance(copy, Dog)
        assert (copy.name, copy.tricks, copy.version) == ("fido", ["roll over"], 2)
    finally:
        app.close()
