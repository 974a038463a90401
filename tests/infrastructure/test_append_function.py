"""keyledger_append (migrations/019_append_function_lean.sql, 021's hint) called as the
writer calls it.

A batch is first inserted as sent; only a taken version makes it settle versions and
insert again. An aggregate the caller names as contended is settled first instead. These
pin what each path answers: one row per event of the batch, in batch order, with the
versions settled by the rule, and nothing stored when a conflict stays; and that the hint
changes which path runs, never the answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest

from app.bootstrap import migrate
from app.infrastructure.event_store import _COMMUTATIVE, APPEND_CALL, APPEND_LOCK_ID
from app.infrastructure.postgres import binary_arrays
from tests.support.databases import drop, fresh_database

pytestmark = pytest.mark.postgres

USED = "domain.keys:Key.Used"
DISABLED = "domain.keys:Key.Disabled"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = fresh_database("embedded")
    migrate(url)
    yield url
    drop(url)


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        binary_arrays.register(connection)
        yield connection


def append(
    conn: psycopg.Connection[Any],
    *events: tuple[uuid.UUID, int, str],
    contended: tuple[uuid.UUID, ...] = (),
) -> list[tuple[int, uuid.UUID, int]]:
    ids, versions, topics = zip(*events, strict=True)
    states = [f"{i}".encode() for i in range(len(events))]
    rows = binary_arrays.rows(ids, versions, topics, states)
    params = (*rows, _COMMUTATIVE, binary_arrays.uuid_array(contended))
    return [tuple(row) for row in conn.execute(APPEND_CALL, params, binary=True).fetchall()]


def stream(conn: psycopg.Connection[Any], key: uuid.UUID) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT originator_version, topic FROM keyledger_events WHERE originator_id = %s"
        " ORDER BY originator_version",
        (key,),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def versions_of(answer: list[tuple[int, uuid.UUID, int]]) -> list[tuple[uuid.UUID, int]]:
    return [(key, version) for _, key, version in answer]


def test_a_batch_on_free_versions_is_stored_as_sent(conn: psycopg.Connection[Any]) -> None:
    key = uuid.uuid4()
    answer = append(conn, (key, 1, DISABLED), (key, 2, USED))
    assert versions_of(answer) == [(key, 1), (key, 2)]
    assert answer[0][0] < answer[1][0]


def test_a_batch_behind_others_used_events_follows_them_once(
    conn: psycopg.Connection[Any],
) -> None:
    hot, fresh = uuid.uuid4(), uuid.uuid4()
    append(conn, (hot, 1, DISABLED), (hot, 2, USED), (hot, 3, USED))
    # Read at version 1: versions 2 and 3 were taken by another writer's Used events.
    answer = append(conn, (hot, 2, USED), (fresh, 1, DISABLED), (hot, 3, USED))

    assert versions_of(answer) == [(hot, 4), (fresh, 1), (hot, 5)]
    assert [row[0] for row in answer] == sorted(row[0] for row in answer)
    assert stream(conn, hot) == [(1, DISABLED)] + [(v, USED) for v in (2, 3, 4, 5)]
    assert stream(conn, fresh) == [(1, DISABLED)]


def test_a_batch_behind_a_state_change_fails_and_stores_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    key, other = uuid.uuid4(), uuid.uuid4()
    append(conn, (key, 1, USED), (key, 2, DISABLED))
    with pytest.raises(psycopg.errors.UniqueViolation):
        append(conn, (other, 1, USED), (key, 2, USED))
    assert stream(conn, key) == [(1, USED), (2, DISABLED)]
    assert stream(conn, other) == []


def test_a_new_aggregate_whose_id_is_taken_fails(conn: psycopg.Connection[Any]) -> None:
    key = uuid.uuid4()
    append(conn, (key, 1, DISABLED), (key, 2, USED))
    with pytest.raises(psycopg.errors.UniqueViolation):
        append(conn, (key, 1, DISABLED))
    assert stream(conn, key) == [(1, DISABLED), (2, USED)]


@pytest.mark.parametrize("hinted", [False, True], ids=["unhinted", "hinted"])
def test_a_contended_aggregate_follows_others_used_events_either_way(
    conn: psycopg.Connection[Any], hinted: bool
) -> None:
    hot, fresh = uuid.uuid4(), uuid.uuid4()
    append(conn, (hot, 1, DISABLED), (hot, 2, USED), (hot, 3, USED))
    answer = append(
        conn, (hot, 2, USED), (fresh, 1, DISABLED), (hot, 3, USED), contended=(hot,) * hinted
    )
    assert versions_of(answer) == [(hot, 4), (fresh, 1), (hot, 5)]
    assert stream(conn, hot) == [(1, DISABLED)] + [(v, USED) for v in (2, 3, 4, 5)]


@pytest.mark.parametrize("hinted", [False, True], ids=["unhinted", "hinted"])
def test_only_a_hinted_aggregate_is_settled_without_a_failed_insert(
    conn: psycopg.Connection[Any], hinted: bool
) -> None:
    hot = uuid.uuid4()
    append(conn, (hot, 1, DISABLED), (hot, 2, USED))
    newest = append(conn, (uuid.uuid4(), 1, DISABLED))[0][0]

    answer = append(conn, (hot, 2, USED), (hot, 3, USED), contended=(hot,) * hinted)

    assert versions_of(answer) == [(hot, 3), (hot, 4)]
    # A failed insert uses notification ids it then leaves unused: a gap.
    gapless = [row[0] for row in answer] == [newest + 1, newest + 2]
    assert gapless == hinted


def test_a_contended_aggregate_behind_a_state_change_still_fails(
    conn: psycopg.Connection[Any],
) -> None:
    key = uuid.uuid4()
    append(conn, (key, 1, USED), (key, 2, DISABLED))
    with pytest.raises(psycopg.errors.UniqueViolation):
        append(conn, (key, 2, USED), contended=(key,))
    assert stream(conn, key) == [(1, USED), (2, DISABLED)]


def test_a_hint_naming_an_aggregate_nobody_appended_to_stores_the_batch_as_sent(
    conn: psycopg.Connection[Any],
) -> None:
    key, elsewhere = uuid.uuid4(), uuid.uuid4()
    append(conn, (key, 1, DISABLED))
    answer = append(conn, (key, 2, USED), contended=(key, elsewhere))
    assert versions_of(answer) == [(key, 2)]


# --- the lock (migrations/023) -------------------------------------------------------
@pytest.fixture
def other_session(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second session on the database, in a transaction until the test ends it."""
    with psycopg.connect(database_url) as connection:
        binary_arrays.register(connection)
        yield connection
        connection.rollback()


def impatient(conn: psycopg.Connection[Any]) -> None:
    """From now on, a statement of ``conn`` that waits 0.5 s is cancelled."""
    conn.execute("SET statement_timeout = '500ms'")


def test_an_append_does_not_wait_for_a_vacuum_or_an_analyze_of_the_table(
    conn: psycopg.Connection[Any], other_session: psycopg.Connection[Any]
) -> None:
    # The lock VACUUM, ANALYZE and autovacuum hold on the table they work on.
    other_session.execute("LOCK TABLE keyledger_events IN SHARE UPDATE EXCLUSIVE MODE")
    impatient(conn)
    try:
        key = uuid.uuid4()
        assert versions_of(append(conn, (key, 1, DISABLED))) == [(key, 1)]
    finally:
        conn.execute("RESET statement_timeout")


def test_appends_still_take_turns_from_their_lock_to_their_commit(
    conn: psycopg.Connection[Any], other_session: psycopg.Connection[Any]
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    (earlier,) = append(other_session, (first, 1, DISABLED))  # not committed yet
    held = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = 0 AND objid = %s AND objsubid = 1 AND pid <> pg_backend_pid()",
        (APPEND_LOCK_ID,),
    ).fetchone()
    assert held == (1,)  # the append lock, app/infrastructure/event_store.py's id
    impatient(conn)
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            append(conn, (second, 1, DISABLED))
        other_session.commit()
        (later,) = append(conn, (second, 1, DISABLED))
    finally:
        conn.execute("RESET statement_timeout")
    assert earlier[0] < later[0]


# --- a long history (migrations/025) -------------------------------------------------
HISTORY = 60_000  # one key's events: most of the table, as a hot key's are
HOT_KEY = uuid.uuid4()


@pytest.fixture(scope="module")
def long_history_url() -> Iterator[str]:
    """A database whose events are mostly one key's Used events, analyzed: the statistics
    under which 021's check read the whole table."""
    url = fresh_database("embedded")
    migrate(url)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO keyledger_events (originator_id, originator_version, topic, state)"
            " SELECT %s, v, CASE WHEN v = 1 THEN %s ELSE %s END, '\\x00'"
            " FROM generate_series(1, %s) AS v",
            (HOT_KEY, DISABLED, USED, HISTORY),
        )
        connection.execute("ANALYZE keyledger_events")
    yield url
    drop(url)


@pytest.mark.parametrize("hinted", [False, True], ids=["unhinted", "hinted"])
def test_settling_behind_a_long_history_reads_only_the_events_above_it(
    long_history_url: str, hinted: bool
) -> None:
    with psycopg.connect(long_history_url) as connection:  # one transaction, rolled back
        binary_arrays.register(connection)
        behind = HISTORY - 5  # others appended five Used events since this batch read
        answer = append(
            connection,
            (HOT_KEY, behind + 1, USED),
            (HOT_KEY, behind + 2, USED),
            contended=(HOT_KEY,) * hinted,
        )
        scans = connection.execute(
            "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'keyledger_events'"
        ).fetchone()
        connection.rollback()
    assert versions_of(answer) == [(HOT_KEY, HISTORY + 1), (HOT_KEY, HISTORY + 2)]
    assert scans == (0,)  # never the whole table
