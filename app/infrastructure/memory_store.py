"""The event store in memory: a twin of the PostgreSQL store for tests and tools.

Two parts, like the PostgreSQL store's:

* `MemoryRecorder`, eventsourcing's POPO application recorder that settles versions the
  way ``keyledger_append`` (migrations/019_append_function_lean.sql) and `LedgerRecorder` do;
  `MemoryFactory` makes it the Ledger's recorder (``PERSISTENCE_MODULE`` =
  `MEMORY_PERSISTENCE_MODULE`, the library's "POPO mode" with our rule);
* `MemoryEventStore`, the writer's interface of `AsyncEventStore` (``insert``,
  ``latest_snapshots``, ``events_after_many``, ``put_snapshots``, ``ping``, ``reset``,
  ``close``, ``connection``) over the Ledger's recorders, so the library's repository and
  subscriptions see what the writer appended, as they do on PostgreSQL.

The rule, exactly as the SQL has it: per aggregate of a batch, the version it was read
at is its first event's version minus one. If that is at least 1 and every event stored
after it has a commutative topic (``Key.Used``, `COMMUTATIVE_TOPICS`), the aggregate's
events are shifted by (its stored head - that version); otherwise they keep their
versions and a clash with a stored version (or within the batch) is a version conflict:
`VersionConflict`, a ``psycopg.errors.UniqueViolation`` (what the writer catches from
PostgreSQL, as ``psycopg.errors.IntegrityError``) that is also the library's
``IntegrityError`` (what its repository and ``Application.save`` raise). A batch is all
or nothing. Notification ids increase in commit order (gap-free here; PostgreSQL's
sequence may skip the ids of a failed insert).

Selecting it: ``KEYLEDGER_EVENT_STORE=memory`` (`EVENT_STORE_ENV`); `ledger_env` adds the
Ledger's ``PERSISTENCE_MODULE`` and `open_event_store` builds the writer's store for the
Ledger it is given (docs/testing.md).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg.errors
from eventsourcing import persistence
from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, StoredEvent
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOFactory

from app.infrastructure.event_store import COMMUTATIVE_TOPICS, AsyncEventStore

EVENT_STORE_ENV = "KEYLEDGER_EVENT_STORE"
MEMORY, POSTGRES = "memory", "postgres"
MEMORY_PERSISTENCE_MODULE = f"{__name__}:MemoryFactory"


class VersionConflict(psycopg.errors.UniqueViolation, persistence.IntegrityError):
    """Another writer appended a non-commutative event at a version we meant to use (or
    a batch repeats a version): nothing was appended, reload and check again."""


def settle_versions(
    stored: Sequence[StoredEvent],
    stream: Any,
    commutative: Sequence[str] = COMMUTATIVE_TOPICS,
) -> list[StoredEvent]:
    """The batch with each aggregate's events renumbered as ``keyledger_append`` does.

    ``stream(originator_id, after)`` gives an aggregate's stored (version, topic) pairs
    above version ``after``, newest first, and its head version (None: no event)."""
    expected: dict[Any, int] = {}
    for event in stored:
        key = event.originator_id
        expected[key] = min(expected.get(key, event.originator_version), event.originator_version)
    shift: dict[Any, int] = {}
    for originator_id, first in expected.items():
        version, by = first - 1, 0
        if version >= 1:
            head, newer = stream(originator_id, version)
            if (
                head is not None
                and head > version
                and all(topic in commutative for _, topic in newer)
            ):
                # As the SQL (migrations/019): only others' appends renumber ours.
                by = head - version
        shift[originator_id] = by
    return [
        StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version + shift[event.originator_id],
            topic=event.topic,
            state=event.state,
        )
        if shift[event.originator_id]
        else event
        for event in stored
    ]


def heads_of(stored: Sequence[StoredEvent]) -> dict[uuid.UUID, int]:
    heads: dict[uuid.UUID, int] = {}
    for event in stored:
        key = _as_uuid(event.originator_id)
        heads[key] = max(event.originator_version, heads.get(key, 0))
    return heads


class MemoryRecorder(POPOApplicationRecorder):
    """The POPO recorder with the PostgreSQL store's version settling (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._settled = threading.local()

    def _stream(self, originator_id: Any, after: int) -> tuple[int | None, list[tuple[int, str]]]:
        """The head and the (version, topic) pairs above ``after``, read from the newest
        back (a hot key's whole stream is never walked: a batch costs what it appends)."""
        index = self._stored_events_index.get(str(originator_id), {})
        newer: list[tuple[int, str]] = []
        head = None
        for version in reversed(index):  # versions are inserted in increasing order
            head = version if head is None else head
            if version <= after:
                break
            newer.append((version, self._stored_events[index[version]].topic))
        return head, newer

    def append(self, stored: Sequence[StoredEvent]) -> tuple[list[int], dict[uuid.UUID, int]]:
        """Insert a batch (all or nothing): its notification ids in commit order and each
        aggregate's head as settled."""
        with self._database_lock:
            settled = settle_versions(stored, self._stream)
            try:
                self._assert_uniqueness(settled)
            except persistence.IntegrityError as error:
                raise VersionConflict(str(error)) from None
            ids = list(self._update_table(settled) or [])
        self._notify_listeners()
        return ids, heads_of(settled)

    def _insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        # The library's path (Application.save): same rule; heads kept for Ledger._record.
        with self._database_lock:
            settled = settle_versions(stored_events, self._stream)
            try:
                self._assert_uniqueness(settled, **kwargs)
            except persistence.IntegrityError as error:
                raise VersionConflict(str(error)) from None
            ids = self._update_table(settled, **kwargs)
        self._settled.heads = heads_of(settled)
        return ids

    def settled_heads(self) -> dict[uuid.UUID, int]:
        """Each aggregate's last version as the latest insert (on this thread) stored it."""
        heads: dict[uuid.UUID, int] = getattr(self._settled, "heads", {})
        self._settled.heads = {}
        return heads


class MemorySnapshotRecorder(POPOAggregateRecorder):
    """Snapshots in memory; storing one again is no error (PostgreSQL's ON CONFLICT DO
    NOTHING)."""

    def put(self, stored: Sequence[StoredEvent]) -> None:
        with self._database_lock:
            fresh: dict[tuple[str, int], StoredEvent] = {}
            for event in stored:
                where = (str(event.originator_id), event.originator_version)
                if event.originator_version not in self._stored_events_index.get(where[0], {}):
                    fresh.setdefault(where, event)
            self._update_table(list(fresh.values()))


class MemoryFactory(POPOFactory):
    """eventsourcing's POPO persistence with the settling recorder: select it with
    ``PERSISTENCE_MODULE`` = `MEMORY_PERSISTENCE_MODULE`."""

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return MemorySnapshotRecorder()

    def application_recorder(self) -> ApplicationRecorder:
        return MemoryRecorder()


class MemoryEventStore:
    """`AsyncEventStore`'s interface over memory: the Ledger's recorders when it runs in
    memory (`ledger_env`), else recorders of its own. Several instances over one Ledger
    are several writers on one database."""

    def __init__(self, ledger: Any, database_url: str | None = None, **_: Any) -> None:
        self._mapper = ledger.mapper
        recorder = ledger.recorder
        snapshots = getattr(ledger, "snapshots", None)
        if isinstance(recorder, MemoryRecorder):
            self.recorder = recorder
            snapshot_recorder = snapshots.recorder if snapshots is not None else None
        else:  # a Ledger on another store: this store keeps its own events
            self.recorder = MemoryRecorder()
            snapshot_recorder = MemorySnapshotRecorder() if snapshots is not None else None
        self.snapshot_recorder: MemorySnapshotRecorder | None = (
            snapshot_recorder if isinstance(snapshot_recorder, MemorySnapshotRecorder) else None
        )
        self.settled = 0  # lost commits found to have landed: none are ever lost here
        self.closed = False

    async def connection(self) -> Any:
        """No database connection: the writer's after-load hooks get None."""
        return None

    async def ping(self) -> None:
        return None

    async def reset(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    async def insert(self, events: Sequence[Any]) -> tuple[list[int], dict[uuid.UUID, int]]:
        """Append events in one batch; notification ids and settled heads, or
        VersionConflict with nothing appended."""
        stored = [self._mapper.to_stored_event(event) for event in events]
        return self.recorder.append(stored)

    async def latest_snapshots(self, aggregate_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        if self.snapshot_recorder is None:
            return {}
        found: dict[uuid.UUID, Any] = {}
        for aggregate_id in aggregate_ids:
            latest = self.snapshot_recorder.select_events(aggregate_id, desc=True, limit=1)
            if latest:
                found[aggregate_id] = self._mapper.to_domain_event(latest[0])
        return found

    async def events_after_many(self, after: dict[uuid.UUID, int]) -> dict[uuid.UUID, list[Any]]:
        found: dict[uuid.UUID, list[Any]] = {}
        for aggregate_id, version in after.items():
            stored = self.recorder.select_events(aggregate_id, gt=version)
            if stored:
                ordered = sorted(stored, key=lambda e: e.originator_version)
                found[aggregate_id] = [self._mapper.to_domain_event(e) for e in ordered]
        return found

    async def put_snapshots(self, snapshots: Sequence[Any]) -> None:
        if self.snapshot_recorder is None:
            return
        self.snapshot_recorder.put([self._mapper.to_stored_event(s) for s in snapshots])


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def event_store_mode(environ: Mapping[str, str] | None = None) -> str:
    """``memory`` or ``postgres`` (the default), from ``KEYLEDGER_EVENT_STORE``."""
    value = (os.environ if environ is None else environ).get(EVENT_STORE_ENV, "") or POSTGRES
    value = value.strip().lower()
    if value not in (MEMORY, POSTGRES):
        raise ValueError(f"{EVENT_STORE_ENV} must be {MEMORY!r} or {POSTGRES!r}, not {value!r}")
    return value


def ledger_env(env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Ledger's environment: ``env`` as given, or in memory mode in-memory persistence
    (the PostgreSQL connection settings are then ignored)."""
    if event_store_mode(environ) == MEMORY:
        return {**env, "PERSISTENCE_MODULE": MEMORY_PERSISTENCE_MODULE}
    return dict(env)


def open_event_store(
    ledger: Any, database_url: str, **kwargs: Any
) -> AsyncEventStore | MemoryEventStore:
    """The writer's store for ``ledger``: in memory when the Ledger is (`ledger_env`),
    else PostgreSQL's ``AsyncEventStore(ledger, database_url, **kwargs)``."""
    if isinstance(ledger.recorder, MemoryRecorder):
        return MemoryEventStore(ledger)
    return AsyncEventStore(ledger, database_url, **kwargs)
