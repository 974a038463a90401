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

Every connection here is bounded (app.infrastructure.postgres.database): a round trip that
PostgreSQL does not answer in time closes its connection rather than wait. A commit whose connection
is lost
after its statement was sent has an unknown outcome; AsyncEventStore settles it by asking
the database whether its events landed (see `AsyncEventStore.insert`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresRecorder,
)
from eventsourcing.utils import Environment, get_topic
from psycopg import Cursor, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from app.infrastructure.postgres import binary_arrays
from app.infrastructure.postgres.database import (
    DEFAULT_IO_TIMEOUT,
    POOL_RECONNECT_TIMEOUT,
    BoundedAsyncConnection,
    DatabaseTimeoutError,
    DeadlinePassedError,
    PurgeOnFailedCheck,
    bounded_async_connection_class,
    bounded_connection_class,
    database_deadline,
    grace_after_deadline,
    is_unavailable,
    libpq_options,
    time_left,
)
from app.support.lru import BoundedLru
from domain.errors import DependencyTimeoutError
from domain.keys import Key

log = logging.getLogger("keyledger.event_store")

# Events that no state check reads: others' may precede ours without a conflict.
COMMUTATIVE_TOPICS = (get_topic(Key.Used),)

_COMMUTATIVE = binary_arrays.text_array(COMMUTATIVE_TOPICS)
APPEND_CALL = (
    b"SELECT * FROM keyledger_append(%b::uuid[], %b::int8[], %b::text[], %b::bytea[], %b::text[],"
    b" %b::uuid[])"
)
# Aggregates an append here had renumbered after another writer's Used events, within
# the last CONTENDED_SECONDS: keyledger_append settles them before inserting
# (migrations/021). A bound, not a cache: an aggregate forgotten is settled after a failed
# insert instead, as before.
CONTENDED_AGGREGATES = 1024
CONTENDED_SECONDS = 1.0
APPEND_TABLE = "keyledger_events"  # the table keyledger_append is written for
# The advisory lock keyledger_append holds to its commit (migrations/023), one append at a
# time; beside the projections', checkpointer's and migrations' lock ids.
APPEND_LOCK_ID = 0x6B6C6170  # "klap"
WRITER_DEADLOCK_TIMEOUT = "100ms"  # see _prefer_cancelling_autovacuum
# How long settling a lost commit may outlast the request's deadline (see insert).
SETTLE_GRACE_SECONDS = 0.4
WRITER_APPLICATION_NAME = "keyledger-writer"  # how the writer's session shows in pg_stat_activity
# Environment keys of the bounds on the library's connections (see timeout_env).
POOL_TIMEOUT_KEY = "POSTGRES_POOL_TIMEOUT"
IO_TIMEOUT_KEY = "POSTGRES_IO_TIMEOUT"
PRE_PING_KEY = "POSTGRES_PRE_PING"
READ_RETRY_PAUSE = 0.05


def timeout_env(pool_timeout: float, io_timeout: float) -> dict[str, str]:
    """Environment for the Ledger's recorder: how long a caller waits for a pooled
    connection, how long a round trip may go unanswered, and a check of each connection
    handed out (after the database restarts, no request meets a dead pooled connection)."""
    return {POOL_TIMEOUT_KEY: str(pool_timeout), IO_TIMEOUT_KEY: str(io_timeout), PRE_PING_KEY: "y"}


class EventStoreUnavailableError(persistence.OperationalError, DependencyTimeoutError):
    """A read of the event store failed because the database is away: the library's own
    kind of error (its callers handle it as before), answered 503 by the APIs."""


class CommitOutcomeUnknown(DependencyTimeoutError):
    """A commit's connection was lost after its statement was sent and the database could
    not be asked, in time, whether its events landed: they may or may not have."""


class NotCommitted(DependencyTimeoutError):
    """A lost commit's events did not land, and never will (the session that sent them
    is gone): the batch may run again."""


class LedgerRecorder(PostgresApplicationRecorder):
    """The library's recorder (the Ledger's reads, and its ``save`` for seeding and tools),
    appending through keyledger_append like the writer: one version-settling rule, in SQL
    (migrations/019_append_function_lean.sql, 021), whichever path writes."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        # keyledger_append writes the ledger's table; an application of another name (the
        # library's own, in tests) keeps the library's insert.
        self._appends = self.events_table_name == APPEND_TABLE
        self._settled = threading.local()

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> None:
        if not self._appends:
            super()._insert_stored_events(curs, stored_events)
            return
        # The function takes the table lock and sends the NOTIFY itself.
        binary_arrays.register(curs)
        curs.execute(APPEND_CALL, _append_params(stored_events), prepare=True)

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        if not self._appends:
            return super()._fetch_ids_after_insert_events(curs, stored_events)
        rows = curs.fetchall()
        heads: dict[uuid.UUID, int] = {}
        for row in rows:
            heads[row["new_originator_id"]] = row["new_version"]
        self._settled.heads = heads
        return [row["new_notification_id"] for row in rows]

    def max_notification_id(self) -> int | None:
        # A trivial query, which requests wait for (read-your-writes, /readyz): bounded
        # whoever asks.
        with database_deadline(self.datastore.pool.timeout):
            return _within_budget(self, PostgresApplicationRecorder.max_notification_id)

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return _within_budget(self, LedgerRecorder._select_notifications, *args, **kwargs)

    def _select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        """The library's select_notifications (same rows, same Notifications), read as
        tuples: every projection reads every event through it, and the library's dict
        rows were ~10 % of the projection process's time (docs/performance.md)."""
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        if start is not None:
            clauses.append(
                sql.SQL("notification_id >= %s" if inclusive_of_start else "notification_id > %s")
            )
            params.append(start)
        if stop is not None:
            clauses.append(sql.SQL("notification_id <= %s"))
            params.append(stop)
        if topics:
            clauses.append(sql.SQL("topic = ANY(%s)"))
            params.append(list(topics))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        statement = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.{table}{where} ORDER BY notification_id LIMIT %s"
        ).format(
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
            where=where,
        )
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True)
            return [
                Notification(originator_id, version, topic, bytes(state), notification_id)
                for notification_id, originator_id, version, topic, state in curs.fetchall()
            ]

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return _within_budget(self, PostgresApplicationRecorder.select_events, *args, **kwargs)

    def settled_heads(self) -> dict[uuid.UUID, int]:
        """Each aggregate's last version as the latest insert (on this thread) stored it."""
        heads: dict[uuid.UUID, int] = getattr(self._settled, "heads", {})
        self._settled.heads = {}
        return heads


class SnapshotRecorder(PostgresAggregateRecorder):
    """The snapshots' recorder, its reads retried as LedgerRecorder's are."""

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return _within_budget(self, PostgresAggregateRecorder.select_events, *args, **kwargs)


# The library retries its reads ten times, 0.2 s apart, whatever each attempt cost: with
# bounded connections that is ~12 s per call while the database is away. Here a read is
# tried again only within the pool's wait (a request's deadline, 1 s by default).
def _within_budget(recorder: PostgresRecorder, method: Any, *args: Any, **kwargs: Any) -> Any:
    """The library's ``method`` without its own retries, tried again after an error that
    says the database is away while the pool's wait has time left."""
    call = getattr(method, "__wrapped__", method)
    until = time.monotonic() + recorder.datastore.pool.timeout
    while True:
        try:
            return call(recorder, *args, **kwargs)
        except Exception as error:
            if not is_unavailable(error):
                raise
            if time.monotonic() + READ_RETRY_PAUSE > until:
                raise EventStoreUnavailableError("the event store did not answer") from error
        time.sleep(READ_RETRY_PAUSE)


class LedgerPostgresFactory(PostgresFactory):
    application_recorder_class = LedgerRecorder
    aggregate_recorder_class = SnapshotRecorder

    def __init__(self, env: Environment | Mapping[str, str] | None) -> None:
        super().__init__(env)
        self._bound_connections(self.env)

    def _bound_connections(self, env: Environment) -> None:
        """The library's pool, before it opens: bounded connections
        (app.infrastructure.postgres.database), its
        wait for a connection bounded by POSTGRES_POOL_TIMEOUT, libpq timeouts, and
        reconnection that does not back off for minutes."""
        pool = self.datastore.pool
        io_timeout = float(env.get(IO_TIMEOUT_KEY) or DEFAULT_IO_TIMEOUT)
        pool.connection_class = bounded_connection_class(io_timeout)
        pool.reconnect_timeout = POOL_RECONNECT_TIMEOUT
        PurgeOnFailedCheck().install(pool)  # checked as handed out (and stale ones purged)
        if pool_timeout := env.get(POOL_TIMEOUT_KEY):
            pool.timeout = float(pool_timeout)
        connect_timeout = int(env.get(self.POSTGRES_CONNECT_TIMEOUT) or 0)
        assert isinstance(pool.kwargs, dict)
        pool.kwargs.update(libpq_options(connect_timeout, io_timeout))


class AsyncEventStore:
    """The writer's asynchronous path to the same tables, on the event loop.

    Writes call keyledger_append (migrations/019 and 021): the same table
    lock, NOTIFY and settled-version insert as LedgerRecorder, in one round trip. Reads
    return domain events decoded by the application's own mapper.
    """

    def __init__(
        self,
        ledger: Any,
        database_url: str,
        *,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
        statement_timeout: float | None = None,
    ) -> None:
        recorder = ledger.recorder
        schema = Identifier(recorder.datastore.schema)
        events = Identifier(recorder.events_table_name)
        self._mapper = ledger.mapper
        self._url = database_url
        self._conn: BoundedAsyncConnection[Any] | None = None
        self._backend_pid = 0  # the server process of the current connection
        self.settled = 0  # lost commits found to have landed
        self._contended: BoundedLru[uuid.UUID | str, bool] = BoundedLru(
            CONTENDED_AGGREGATES, ttl=CONTENDED_SECONDS
        )
        self._io_timeout = io_timeout
        self._connection_class = bounded_async_connection_class(io_timeout)
        self._options = self._connect_options(io_timeout, statement_timeout)
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
        # A lost commit's events, looked up where they would be: each by its aggregate,
        # at or after the version it was sent with (the store may only renumber upward),
        # and its exact state bytes (which carry its time and request id).
        self._select_landed = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version"
            " FROM unnest(%b::uuid[], %b::int8[], %b::bytea[]) AS t(id, version, state)"
            " CROSS JOIN LATERAL (SELECT * FROM {0}.{1} x"
            "  WHERE x.originator_id = t.id AND x.originator_version >= t.version"
            "  AND x.state = t.state ORDER BY x.originator_version LIMIT 1) e"
            " ORDER BY e.notification_id"
        ).format(schema, events)

    @staticmethod
    def _connect_options(io_timeout: float, statement_timeout: float | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "autocommit": True,
            "application_name": WRITER_APPLICATION_NAME,
            **libpq_options(0, io_timeout),
        }
        if statement_timeout is not None:
            # The server gives up on a statement when the writer does: a commit the
            # writer answered 503 does not go on waiting for the table lock.
            options["options"] = f"-c statement_timeout={max(1, int(statement_timeout * 1000))}"
        return options

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        """The writer's connection (autocommit), for reads that belong with a batch."""
        return await self._connection()

    async def _connection(self) -> BoundedAsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = None
            # psycopg's own connect timeout is whole seconds, 2 at least: the deadline
            # is enforced here.
            left = time_left(self._io_timeout)
            if left <= 0:
                raise DatabaseTimeoutError("the database deadline passed before connecting")
            try:
                conn = await asyncio.wait_for(
                    self._connection_class.connect(self._url, **self._options), left
                )
            except TimeoutError:
                message = f"no connection to the database in {left:.2f} s"
                raise DatabaseTimeoutError(message) from None
            binary_arrays.register(conn)
            self._conn, self._backend_pid = conn, conn.info.backend_pid
            await _prefer_cancelling_autovacuum(conn)
        return self._conn

    async def ping(self) -> None:
        """One round trip (connecting first if needed): the database answers."""
        conn = await self._connection()
        await conn.execute("SELECT 1")

    async def reset(self) -> None:
        """Drop the connection after a failure; the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self.reset()

    async def insert(self, events: Sequence[Any]) -> tuple[list[int], dict[uuid.UUID, int]]:
        """Append events in one transaction; return notification ids and settled heads.

        If the connection is lost once the statement may have been sent, the outcome is
        settled before returning: the notification ids of the events if they landed,
        NotCommitted if they did not (and never will), CommitOutcomeUnknown if the
        database could not tell within the deadline. Errors before anything was sent (no
        connection) and errors the server answered with (a version conflict) raise as
        they are: nothing was committed.
        """
        stored = [self._mapper.to_stored_event(event) for event in events]
        conn = await self._connection()
        params = _append_params(stored, self._contended)
        try:
            # One round trip: keyledger_append (migrations/021) locks, notifies, settles
            # versions and inserts inside the statement's own transaction. Binary results:
            # no uuid or bigint text to format and parse.
            cursor = await conn.execute(APPEND_CALL, params, prepare=True, binary=True)
            rows: list[Any] = await cursor.fetchall()
        except DeadlinePassedError:
            raise  # nothing was sent
        except psycopg.Error as error:
            if _answered(conn, error):
                raise
            lost_pid = self._backend_pid
            await self.reset()
            log.warning("commit outcome unknown (%s): asking the database", type(error).__name__)
            # A commit slower than the deadline on a live server (a long fsync) left no time
            # to ask: a short grace gets a verdict; a frozen server still gets none.
            with grace_after_deadline(SETTLE_GRACE_SECONDS):
                return await self._settle(stored, lost_pid)
        ids, heads = _ids_and_heads(rows)
        _note_contention(self._contended, stored, heads)
        return ids, heads

    async def _settle(
        self, stored: Sequence[StoredEvent], lost_pid: int
    ) -> tuple[list[int], dict[uuid.UUID, int]]:
        """Whether a lost commit's events landed, once the session that sent them is gone
        (until then it could still commit them)."""
        try:
            conn = await self._connection()
            await self._end_session(conn, lost_pid)
            cursor = await conn.execute(
                self._select_landed,
                (
                    [e.originator_id for e in stored],
                    [e.originator_version for e in stored],
                    [e.state for e in stored],
                ),
            )
            rows: list[Any] = await cursor.fetchall()
        except (psycopg.Error, OSError) as error:
            await self.reset()
            raise CommitOutcomeUnknown(type(error).__name__) from error
        if not rows:
            raise NotCommitted()
        if len(rows) != len(stored):  # one statement: all or nothing, so never seen
            raise CommitOutcomeUnknown(f"{len(rows)} of {len(stored)} events found")
        log.warning("commit outcome settled: its %d event(s) landed", len(rows))
        self.settled += 1
        return _ids_and_heads(rows)

    async def _end_session(self, conn: BoundedAsyncConnection[Any], pid: int) -> None:
        """Return once server process ``pid`` (the lost session) has exited, ending it if
        it still runs (a partition can leave it alive, about to commit)."""
        # With a timeout, pg_terminate_backend returns true once the process has exited.
        wait_ms = max(1, int(time_left(self._io_timeout) * 1000) - 50)
        cursor = await conn.execute(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE pid = %s",
            (wait_ms, pid),
        )
        row = await cursor.fetchone()
        if row is None or row[0]:
            return
        cursor = await conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        if await cursor.fetchone() is not None:  # not gone: it may still commit
            raise DatabaseTimeoutError(f"server process {pid} did not exit in time")

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


def _append_params(
    stored: Sequence[StoredEvent], contended: BoundedLru[uuid.UUID | str, bool] | None = None
) -> tuple[Any, ...]:
    """keyledger_append's parameters: the rows as four arrays, packed in bulk
    (app.infrastructure.postgres.binary_arrays), the commutative topics, and the batch's
    aggregates expected to have moved since they were read."""
    ids = [e.originator_id for e in stored]
    return (
        *binary_arrays.rows(
            ids,
            [e.originator_version for e in stored],
            [e.topic for e in stored],
            [e.state for e in stored],
        ),
        _COMMUTATIVE,
        binary_arrays.uuid_array(
            [i for i in _distinct(ids) if contended.get(i)] if contended is not None else ()
        ),
    )


def _distinct(ids: Sequence[uuid.UUID | str]) -> list[uuid.UUID | str]:
    # A batch names few aggregates, each many times by the same object: deduplicated by
    # identity (a UUID hashes in Python, an id() in C), then by value.
    return list(set({id(i): i for i in ids}.values()))


def _note_contention(
    contended: BoundedLru[uuid.UUID | str, bool],
    stored: Sequence[StoredEvent],
    heads: dict[uuid.UUID, int],
) -> None:
    """Remember the aggregates the store renumbered: another writer appended to them since
    they were read, and likely will again. Two writers on one hot key alternate, but not
    strictly: one stored as sent stays remembered until its entry expires."""
    # By identity first, as _distinct; an aggregate's versions rise through the batch.
    last_sent = {id(e.originator_id): (e.originator_id, e.originator_version) for e in stored}
    sent: dict[uuid.UUID | str, int] = {}
    for aggregate_id, version in last_sent.values():
        sent[aggregate_id] = max(version, sent.get(aggregate_id, version))
    for aggregate_id, head in heads.items():
        if head != sent.get(aggregate_id, head):
            contended.put(aggregate_id, True)


def _answered(conn: psycopg.AsyncConnection[Any], error: psycopg.Error) -> bool:
    """Whether ``error`` is the server's answer on a live session (the statement's
    transaction rolled back, e.g. a version conflict) rather than a lost connection."""
    return (
        error.sqlstate is not None
        and not error.sqlstate.startswith(("08", "57P"))  # connection failure, shutdown
        and not conn.closed
        and conn.info.transaction_status == TransactionStatus.IDLE
    )


def _ids_and_heads(rows: list[Any]) -> tuple[list[int], dict[uuid.UUID, int]]:
    heads: dict[uuid.UUID, int] = {}
    # Rows come an aggregate's events at a time: its head is looked up once per run, not
    # once per row (each lookup hashes a UUID in Python).
    current: uuid.UUID | None = None
    top = 0
    for _, originator_id, version in rows:
        if originator_id != current:
            if current is not None:
                heads[current] = max(top, heads.get(current, 0))
            current, top = originator_id, version
        elif version > top:
            top = version
    if current is not None:
        heads[current] = max(top, heads.get(current, 0))
    return [row[0] for row in rows], heads


async def _prefer_cancelling_autovacuum(conn: BoundedAsyncConnection[Any]) -> None:
    """Autovacuum and autoanalyze of the events table hold a lock that keyledger_append's
    table lock waited for, until migrations/023 made it an advisory lock that nothing but
    appends takes. PostgreSQL cancels them only after the waiter's deadlock_timeout (1 s by
    default), which a commit with a 1 s deadline does not outlive: kept at 100 ms for a
    database whose keyledger_append predates 023 (a writer started before `keyledger
    migrate` ran). The writer's session asks for it where the role may (a superuser's; the
    embedded server sets it for every session)."""
    try:
        await conn.execute(f"SET deadlock_timeout = '{WRITER_DEADLOCK_TIMEOUT}'")
    except psycopg.errors.InsufficientPrivilege:
        log.info(
            "deadlock_timeout left as configured: set it to %s (docs/reliability.md)",
            WRITER_DEADLOCK_TIMEOUT,
        )
