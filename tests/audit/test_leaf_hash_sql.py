"""The leaf hash PostgreSQL computes for the Merkle log and the watch
(projections.merkle_log.LEAF_HASH_SQL) is byte for byte the one domain.ledger_leaves
defines, for any row the ledger may hold."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from domain.ledger_leaves import leaf_hash_of
from projections.merkle_log import LEAF_HASH_SQL
from tests.support.databases import database_backends, drop, fresh_database

ROWS = [
    (1, uuid.UUID(int=0), 1, "domain.keys:Key.Used", b""),
    (2**62, uuid.UUID(int=2**128 - 1), 2**62, "t", b"\x00" * 5000),
    (7, uuid.uuid4(), 3, "domain.keys:Key.PolicyChanged", '{"p": "é\\u0000"}'.encode()),
    (8, uuid.uuid4(), 1, "ünïcode:Tópic.Ëvent", bytes(range(256))),
    (9, uuid.uuid4(), 2**31, "x" * 10_000, b"state"),
]


@pytest.fixture(params=database_backends()[:1])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    found = fresh_database(request.param)
    yield found
    drop(found)


def test_postgresql_hashes_every_leaf_as_the_domain_does(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE keyledger_events (notification_id bigint, originator_id uuid,"
            " originator_version bigint, topic text, state bytea)"
        )
        for row in ROWS:
            conn.execute("INSERT INTO keyledger_events VALUES (%s, %s, %s, %s, %s)", row)
        found: dict[int, bytes] = dict(
            conn.execute(
                f"SELECT notification_id, {LEAF_HASH_SQL} FROM keyledger_events"
            ).fetchall()
        )
    for position, originator, version, topic, state in ROWS:
        assert bytes(found[position]) == leaf_hash_of(position, originator, version, topic, state)
