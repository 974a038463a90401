"""Arrays packed in PostgreSQL's binary format (app/infrastructure/postgres/binary_arrays.py)
are read by the server as the values they were packed from: the event store's rows reach
keyledger_append exactly as psycopg's own list parameters did."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.infrastructure.postgres import binary_arrays
from tests.support.databases import drop, fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    url = fresh_database("embedded")
    with psycopg.connect(url, autocommit=True) as connection:
        binary_arrays.register(connection)
        yield connection
    drop(url)


def read_back(conn: psycopg.Connection[Any], packed: Any, cast: str) -> Any:
    row = conn.execute(f"SELECT %b::{cast}", (packed,)).fetchone()
    assert row is not None
    return row[0]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.sampled_from([uuid.UUID(int=0), uuid.uuid4(), uuid.uuid4()]), max_size=8),
    versions=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    topics=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00")), max_size=8),
    states=st.lists(st.binary(max_size=300), max_size=8),
)
def test_packed_arrays_read_back_as_the_values_they_were_packed_from(
    conn: psycopg.Connection[Any],
    ids: list[uuid.UUID],
    versions: list[int],
    topics: list[str],
    states: list[bytes],
) -> None:
    assert read_back(conn, binary_arrays.uuid_array(ids), "uuid[]") == ids
    assert read_back(conn, binary_arrays.int8_array(versions), "int8[]") == versions
    assert read_back(conn, binary_arrays.text_array(topics), "text[]") == topics
    assert read_back(conn, binary_arrays.bytea_array(states), "bytea[]") == states


def test_ids_given_as_text_are_packed_as_uuids(conn: psycopg.Connection[Any]) -> None:
    key_id = uuid.uuid4()
    packed = binary_arrays.uuid_array([str(key_id), key_id])
    assert read_back(conn, packed, "uuid[]") == [key_id, key_id]


def test_packed_rows_unnest_in_order(conn: psycopg.Connection[Any]) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    packed = binary_arrays.rows(
        [ids[1], ids[0], ids[1]], [3, 1, 4], ["a", "b", "a"], [b"x", b"", b"z"]
    )
    rows = conn.execute(
        "SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[]) WITH ORDINALITY",
        packed,
    ).fetchall()
    assert rows == [
        (ids[1], 3, "a", b"x", 1),
        (ids[0], 1, "b", b"", 2),
        (ids[1], 4, "a", b"z", 3),
    ]
