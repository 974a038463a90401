"""The audit trail's indexes (migrations/022): ascending, so a record (whose time only
grows) is appended at the right end of its range, and still read newest first without a
sort: LookupEvents' queries walk them backwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.bootstrap import migrate
from tests.support.databases import drop, fresh_database

pytestmark = pytest.mark.postgres

BY_TIME = " ORDER BY event_time DESC, notification_id DESC LIMIT 50"
# (LookupEvents then orders ties on the other keys with an incremental sort.)
BY_TIME_ONLY = " ORDER BY event_time DESC LIMIT 50"


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    url = fresh_database("embedded")
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with connection.cursor().copy(
            "COPY audit_event_rows (notification_id, recipient_account_id, event_id, event_time,"
            " event_source, event_name, read_only, account_id, principal_arn, username,"
            " access_key_id, source_ip, region, request_id, resource_arn, resources,"
            " encryption_context_keys, record) FROM STDIN"
        ) as copy:
            for n in range(20_000):
                arn = f"arn:aws:kms:us-east-1:111122223333:key/{n % 400}"
                copy.write_row(
                    (
                        n,
                        f"{n % 100:012d}",
                        f"00000000-0000-0000-0000-{n:012d}",
                        start + timedelta(seconds=n),
                        "kms.amazonaws.com",
                        "Encrypt",
                        True,
                        "111122223333",
                        f"arn:aws:iam::111122223333:user/u{n % 300}",
                        "u",
                        "AKIA",
                        "127.0.0.1",
                        "us-east-1",
                        "r",
                        arn,
                        [arn],
                        [],
                        "{}",
                    )
                )
        connection.execute("ANALYZE audit_event_rows")
        yield connection
    drop(url)


def plan(conn: psycopg.Connection[Any], where: str, order: str) -> str:
    rows = conn.execute(f"EXPLAIN SELECT * FROM audit_events {where}{order}").fetchall()
    return "\n".join(row[0] for row in rows)


def test_the_time_ordered_indexes_are_ascending() -> None:
    sql = (
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_event_rows'"
        " AND indexname IN ('audit_events_by_time', 'audit_events_by_recipient',"
        " 'audit_events_by_resource', 'audit_events_by_principal')"
    )
    url = fresh_database("embedded")
    try:
        migrate(url)
        with psycopg.connect(url) as fresh:
            definitions = [row[0] for row in fresh.execute(sql).fetchall()]
    finally:
        drop(url)
    assert len(definitions) == 4
    assert not any("DESC" in definition for definition in definitions)


@pytest.mark.parametrize(
    ("where", "order", "index"),
    [
        ("", BY_TIME, "audit_events_by_time"),
        ("WHERE recipient_account_id = '000000000001'", BY_TIME, "audit_events_by_recipient"),
        (
            "WHERE resource_arn = 'arn:aws:kms:us-east-1:111122223333:key/7'",
            BY_TIME_ONLY,
            "audit_events_by_resource",
        ),
        (
            "WHERE principal_arn = 'arn:aws:iam::111122223333:user/u3'",
            BY_TIME_ONLY,
            "audit_events_by_principal",
        ),
    ],
)
def test_newest_first_lookups_walk_an_index_backwards_without_sorting(
    conn: psycopg.Connection[Any], where: str, order: str, index: str
) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        text = plan(conn, where, order)
    assert f"Index Scan Backward using {index}" in text
    assert "Sort" not in text.split(f"Index Scan Backward using {index}")[0]
