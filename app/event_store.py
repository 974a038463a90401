"""The event store's PostgreSQL recorder, tuned for group commit and several writers.

Same tables, same rows, same table lock and NOTIFY as eventsourcing's recorder (so
notification ids commit in order and the library's subscribers see every event), with
two changes:

* rows travel as four binary arrays instead of an array of composite values, whose text
  encoding costs ~50 us of regular-expression escaping per event;
* versions are settled inside the table lock. When another process appended to one of
  our aggregates since we read it, and everything it appended commutes with state
  checks (``Used`` events only change "last used"), our events are renumbered to follow
  its events instead of failing. Anything else it appended (``Disabled``, say) leaves
  our versions as they are, so the insert fails on the unique key as before, and the
  writer reloads and re-checks. Several processes can so share a hot key without
  retry storms, and a state check is still never overtaken by a state change.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.keys import Key

# Events that no state check reads: others' may precede ours without a conflict.
COMMUTATIVE_TOPICS = (get_topic(Key.Used),)

INSERT_WITH_SETTLED_VERSIONS = """
WITH batch AS (
    SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[])
        WITH ORDINALITY AS b(originator_id, originator_version, topic, state, ord)
), expected AS (
    SELECT originator_id, min(originator_version) - 1 AS version
    FROM batch GROUP BY originator_id
), shift AS (
    SELECT x.originator_id,
        CASE WHEN x.version >= 1
            AND NOT EXISTS (
                SELECT 1 FROM {schema}.{table} e
                WHERE e.originator_id = x.originator_id AND e.originator_version > x.version
                  AND e.topic <> ALL(%b::text[]))
        THEN coalesce((
            SELECT max(e.originator_version) FROM {schema}.{table} e
            WHERE e.originator_id = x.originator_id), x.version) - x.version
        ELSE 0 END AS by
    FROM expected x
)
INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
SELECT b.originator_id, b.originator_version + s.by, b.topic, b.state
FROM batch b JOIN shift s USING (originator_id)
ORDER BY b.ord
RETURNING notification_id, originator_id, originator_version
"""


APPEND_CALL = (
    b"SELECT * FROM keyledger_append(%b::uuid[], %b::int8[], %b::text[], %b::bytea[], %b::text[])"
)
APPEND_TABLE = "keyledger_events"  # the table keyledger_append is written for


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.insert_rows_statement = SQL(INSERT_WITH_SETTLED_VERSIONS).format(  # type: ignore[arg-type]
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        self._settled = threading.local()

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_rows_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
                list(COMMUTATIVE_TOPICS),
            ),
            prepare=True,
        )

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        rows = curs.fetchall()
        heads: dict[uuid.UUID, int] = {}
        for row in rows:
            heads[row["originator_id"]] = row["originator_version"]
        self._settled.heads = heads
        return [row["notification_id"] for row in rows]

    def settled_heads(self) -> dict[uuid.UUID, int]:
        """Each aggregate's last version as the latest insert (on this thread) stored it."""
        heads: dict[uuid.UUID, int] = getattr(self._settled, "heads", {})
        self._settled.heads = {}
        return heads


class LedgerPostgresFactory(PostgresFactory):
    application_recorder_class = LedgerRecorder


class AsyncEventStore:
    """The writer's asynchronous path to the same tables, on the event loop.

    Writes call keyledger_append (migrations/010_append_function.sql): the same table
    lock, NOTIFY and settled-version insert as LedgerRecorder, in one round trip. Reads
    return domain events decoded by the application's own mapper.
    """

    def __init__(self, ledger: Any, database_url: str) -> None:
        recorder = ledger.recorder
        schema = Identifier(recorder.datastore.schema)
        events = Identifier(recorder.events_table_name)
        self._mapper = ledger.mapper
        self._url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        if recorder.events_table_name != APPEND_TABLE:
            raise RuntimeError(
                f"keyledger_append writes {APPEND_TABLE}, not {recorder.events_table_name}"
            )
        # LATERAL, so each aggregate is read through the primary key whatever the
        # statistics say: a plain join was planned as a parallel seq scan of the whole
        # table when they were stale (a freshly seeded store), costing ~100 ms a load.
        self._select_many = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::uuid[], %s::int8[]) AS t(id, after)"
            " CROSS JOIN LATERAL (SELECT * FROM {0}.{1} x"
            "  WHERE x.originator_id = t.id AND x.originator_version > t.after"
            "  ORDER BY x.originator_version) e"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(schema, events)
        snapshots = ledger.snapshots
        self._snapshots_table: Any = None
        if snapshots is not None:
            table = Identifier(snapshots.recorder.events_table_name)
            # The newest snapshot of each, one index probe apiece (DISTINCT ON read every
            # snapshot of a long-lived key).
            self._select_snapshots = SQL(
                "SELECT s.originator_id, s.originator_version, s.topic, s.state"
                " FROM unnest(%s::uuid[]) AS t(id)"
                " CROSS JOIN LATERAL (SELECT * FROM {0}.{1} x WHERE x.originator_id = t.id"
                "  ORDER BY x.originator_version DESC LIMIT 1) s"
            ).format(schema, table)
            self._insert_snapshots = SQL(
                "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state)"
                " SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[])"
                " ON CONFLICT DO NOTHING"
            ).format(schema, table)
            self._snapshots_table = table

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        """The writer's connection (autocommit), for reads that belong with a batch."""
        return await self._connection()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self._conn

    async def reset(self) -> None:
        """Drop the connection after a failure; the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self.reset()

    async def insert(self, events: Sequence[Any]) -> tuple[list[int], dict[uuid.UUID, int]]:
        """Append events in one transaction; return notification ids and settled heads."""
        stored = [self._mapper.to_stored_event(event) for event in events]
        conn = await self._connection()
        params = (
            [e.originator_id for e in stored],
            [e.originator_version for e in stored],
            [e.topic for e in stored],
            [e.state for e in stored],
            list(COMMUTATIVE_TOPICS),
        )
        # One round trip: keyledger_append (migrations/010) locks, notifies, settles
        # versions and inserts inside the statement's own transaction.
        cursor = await conn.execute(APPEND_CALL, params, prepare=True)
        rows: list[Any] = await cursor.fetchall()
        heads: dict[uuid.UUID, int] = {}
        for _, originator_id, version in rows:
            heads[originator_id] = version
        return [row[0] for row in rows], heads

    async def latest_snapshots(self, aggregate_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Each aggregate's latest snapshot, for those that have one (one query)."""
        if self._snapshots_table is None:
            return {}
        conn = await self._connection()
        cursor = await conn.execute(self._select_snapshots, (list(aggregate_ids),))
        return {row[0]: self._decode(row) for row in await cursor.fetchall()}

    async def events_after_many(self, after: dict[uuid.UUID, int]) -> dict[uuid.UUID, list[Any]]:
        """Events of several aggregates after a version each, in order (one query)."""
        conn = await self._connection()
        cursor = await conn.execute(
            self._select_many, (list(after), list(after.values())), prepare=True
        )
        found: dict[uuid.UUID, list[Any]] = {}
        for row in await cursor.fetchall():
            found.setdefault(row[0], []).append(self._decode(row))
        return found

    async def put_snapshots(self, snapshots: Sequence[Any]) -> None:
        stored = [self._mapper.to_stored_event(snapshot) for snapshot in snapshots]
        conn = await self._connection()
        await conn.execute(
            self._insert_snapshots,
            (
                [e.originator_id for e in stored],
                [e.originator_version for e in stored],
                [e.topic for e in stored],
                [e.state for e in stored],
            ),
        )

    def _decode(self, row: Any) -> Any:
        return self._mapper.to_domain_event(
            StoredEvent(
                originator_id=row[0], originator_version=row[1], topic=row[2], state=bytes(row[3])
            )
        )
