"""The single writer: group commit over an in-memory cache of aggregates, on the event loop.

Every command (a function of a unit of work) runs on the writer's event loop, so the
cached aggregates are only ever touched there. Commands queued while a batch commits
form the next batch: all their events are appended in ONE transaction, and only then
are their callers answered. A command's events are therefore durable before its
answer, and a failed batch answers nobody with success.

The writer lives on the same event loop as the HTTP server and talks to PostgreSQL
asynchronously. A writer thread beside the event loop would re-take the GIL after
every database round trip and queue behind the busy loop each time: measured, that
made a 3 ms commit take 30-40 ms under load.

State checks are linearizable because each event is appended at the version of the
state it was checked against: if another process appended first, the batch fails on
the version conflict (unless the store could settle it, see app.infrastructure.event_store), the
touched aggregates are reloaded, and the commands re-run.

When the database goes away, a batch fails fast and the writer recovers by itself
(docs/reliability.md). Each batch has a deadline (``deadline`` seconds for all its database
work, retries included). A connection lost before a commit was sent, or a commit that
the store settled as not landed, runs the batch again from committed state; a commit
the store settled as landed is answered as committed. Past the deadline, or when a
commit's outcome stays unknown, the batch is answered 503 DependencyTimeoutException and
the writer is "away": later batches are answered the same at once, while a background
task reconnects every ``retry_interval`` seconds; the first success ends it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from eventsourcing.domain import Aggregate

from app.infrastructure.event_store import CommitOutcomeUnknown, NotCommitted
from app.infrastructure.ledger import Ledger, project_fast, snapshots_due
from app.infrastructure.memory_store import open_event_store
from app.infrastructure.postgres.database import (
    DEFAULT_IO_TIMEOUT,
    database_deadline,
    is_unavailable,
    time_left,
)
from app.ports import Command, CommandFailed, CommandHooks, NeedsLoad, NeedsOutsideCall
from app.support.lru import BoundedLru
from app.support.metrics import WriterPublisher
from domain.errors import DependencyTimeoutError, DomainError, InternalError

log = logging.getLogger("keyledger.writer")

T = TypeVar("T")
MAX_BATCH = 512
MAX_ATTEMPTS = 8
MAX_LOAD_ROUNDS = 4  # an alias, then its key, then a grant's principal...
RETRY_PAUSE = 0.02  # between a batch's attempts while the database is away

# A queued command: the command, its caller's future, and its hooks (app.ports.CommandHooks).
Entry = tuple[Command[Any], "asyncio.Future[Any]", CommandHooks | None]


@dataclass
class WriterStats:
    """Counters for /metrics: how well group commit is batching."""

    commands: int = 0
    batches: int = 0
    events: int = 0
    conflicts: int = 0
    loads: int = 0
    commit_seconds: float = 0.0
    retries: int = 0  # attempts run again after the database failed to answer
    settled: int = 0  # commits whose connection was lost, found to have landed
    unavailable: int = 0  # commands answered 503: the database did not answer in time
    cache_hits: int = 0  # aggregates a batch found in the cache (its misses are ``loads``)


class UnitOfWork:
    """What one batch sees: aggregates by id, loaded once and shared by its commands."""

    def __init__(self, writer: LedgerWriter) -> None:
        self._writer = writer
        self.touched: dict[uuid.UUID, Aggregate] = {}
        self.after_commit: list[Callable[[], None]] = []
        self.read: set[uuid.UUID] = set()  # read from the database during this batch
        self.missing: set[uuid.UUID] = set()
        # Every aggregate handed out, with its pending event count then (for app.usecases.auditing).
        self.accessed: list[tuple[Aggregate, int]] = []
        self.appended: list[Aggregate] = []  # those whose events the batch committed
        # Asked for (NeedsLoad) by a command that had already changed state: the attempt
        # is dropped, and these are read before the batch runs again.
        self.unmet: set[uuid.UUID] = set()

    def get(self, aggregate_id: uuid.UUID, *, fresh: bool = False) -> Any | None:
        """The aggregate as of this batch, or None. ``fresh`` re-reads newer events first."""
        aggregate = self.touched.get(aggregate_id)
        if aggregate is not None:
            self.accessed.append((aggregate, len(aggregate.pending_events)))
            return aggregate
        if aggregate_id in self.missing:
            return None
        cached = self._writer._cache.get(aggregate_id)  # (marks it recently used)
        if cached is None or (fresh and aggregate_id not in self.read):
            raise NeedsLoad(aggregate_id)
        self.touched[aggregate_id] = cached
        self.accessed.append((cached, len(cached.pending_events)))
        self._writer.stats.cache_hits += 1
        return cached

    def add(self, aggregate: Aggregate) -> None:
        """A newly created aggregate; saving it fails if its id is taken (AlreadyExists)."""
        self.touched[aggregate.id] = aggregate
        self.missing.discard(aggregate.id)
        self.accessed.append((aggregate, 0))

    def pending(self) -> list[Aggregate]:
        return [a for a in self.touched.values() if a.pending_events]

    def changed_since(self, mark: int) -> bool:
        """Whether an aggregate handed out since ``len(accessed)`` was ``mark`` has changed
        since: what a command changed, as commands reach aggregates only through get and
        add. (Counting every touched aggregate's events before and after each command cost
        O(aggregates) per command.)"""
        return any(len(a.pending_events) != count for a, count in self.accessed[mark:])


class LedgerWriter:
    def __init__(
        self,
        ledger: Ledger,
        database_url: str,
        *,
        cache_size: int = 10_000,
        deadline: float = 1.0,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
        retry_interval: float = 0.1,
    ) -> None:
        self.ledger = ledger
        # PostgreSQL's AsyncEventStore, or the in-memory twin when the Ledger runs in memory
        # (app.infrastructure.memory_store).
        self.store = open_event_store(
            ledger, database_url, io_timeout=io_timeout, statement_timeout=deadline
        )
        self.deadline = deadline
        self.retry_interval = retry_interval
        self._reconnecting: asyncio.Task[None] | None = None  # set while the store is away
        self._cache: BoundedLru[uuid.UUID, Aggregate] = BoundedLru(cache_size)
        self._pending: list[Entry] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.last_notification_id = 0
        # Called with the last notification id and the events of each commit.
        self.commit_listeners: list[Callable[[int, list[Any]], None]] = []
        # Called with the aggregates each bulk read brought into the cache (e.g. the vault
        # unwraps their keys' wrapping keys in one query instead of one per first use).
        self.after_load: list[Callable[[Any, list[Aggregate]], Awaitable[None]]] = []
        self.stats = WriterStats()
        # Held while a batch runs; emptied() takes it so no batch is half-way through.
        self._batch_lock = asyncio.Lock()
        self._metrics = WriterPublisher()

    # --- lifecycle ---------------------------------------------------------------
    async def start_async(self) -> None:
        """Run on the current event loop (the HTTP server's)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="ledger-writer")

    def start(self) -> None:
        """Run on a private event loop thread (commands from the CLI, tests, tools)."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="ledger-writer", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start_async(), loop).result(timeout=10)

    @property
    def started(self) -> bool:
        return self._task is not None

    async def aclose(self) -> None:
        """Finish the queued commands, then stop (on the writer's loop)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        await self.store.close()

    @property
    def available(self) -> bool:
        """False while the database is away (batches are answered 503 at once)."""
        return self._reconnecting is None

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._task is None:
            return
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
        elif loop.is_running() and not self._task.done():
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=30)

    # --- submitting ----------------------------------------------------------------
    async def run(self, command: Command[T], hooks: CommandHooks | None = None) -> T:
        """Run ``command`` on the writer; its answer arrives after its events commit.
        ``hooks`` hear of its failure (app.ports.CommandHooks)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return await self._submit(command, hooks)
        if self._loop is None:
            raise DependencyTimeoutError("the ledger writer is not running")
        future = asyncio.run_coroutine_threadsafe(self._submit(command, hooks), self._loop)
        return await asyncio.wrap_future(future)

    def run_sync(
        self, command: Command[T], timeout: float = 30.0, hooks: CommandHooks | None = None
    ) -> T:
        """Run ``command`` from a thread that is not the writer's loop."""
        if self._loop is None:
            raise DependencyTimeoutError("the ledger writer is not running")
        future = asyncio.run_coroutine_threadsafe(self._submit(command, hooks), self._loop)
        return future.result(timeout=timeout)

    async def _submit(self, command: Command[T], hooks: CommandHooks | None) -> T:
        if self._stopping or self._wake is None:
            raise DependencyTimeoutError("the service is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future, hooks))
        self._wake.set()
        return await future

    def emptied(self, wipe: Callable[[], None], timeout: float = 30.0) -> None:
        """Run ``wipe`` (which empties the event store) between two batches, then forget
        every cached aggregate (emulator mode's reset; from a thread, not the writer's loop)."""
        if self._loop is None:
            raise DependencyTimeoutError("the ledger writer is not running")

        async def between_batches() -> None:
            async with self._batch_lock:
                await self.store.reset()  # its connection may hold a view of the old rows
                wipe()
                self._cache.clear()
                self.last_notification_id = 0

        asyncio.run_coroutine_threadsafe(between_batches(), self._loop).result(timeout=timeout)

    # --- the cache -------------------------------------------------------------------
    def _remember(self, aggregate: Aggregate) -> None:
        self._cache.put(aggregate.id, aggregate)

    def evict(self, aggregate_ids: Any) -> None:
        for aggregate_id in list(aggregate_ids):
            self._cache.pop(aggregate_id)

    async def _load(self, uow: UnitOfWork, aggregate_ids: set[uuid.UUID]) -> None:
        """Read aggregates (or the events cached copies lack) into the cache, in bulk."""
        self.stats.loads += len(aggregate_ids)
        cached = {
            aggregate_id: aggregate
            for aggregate_id in aggregate_ids
            if (aggregate := self._cache.get(aggregate_id)) is not None
            and not aggregate.pending_events
        }
        absent = [aggregate_id for aggregate_id in aggregate_ids if aggregate_id not in cached]
        snapshots = await self.store.latest_snapshots(absent) if absent else {}
        after = {aggregate_id: aggregate.version for aggregate_id, aggregate in cached.items()}
        for aggregate_id in absent:
            snapshot = snapshots.get(aggregate_id)
            after[aggregate_id] = snapshot.originator_version if snapshot is not None else 0
        newer = await self.store.events_after_many(after)
        fetched: list[Aggregate] = []
        for aggregate_id in aggregate_ids:
            events = newer.get(aggregate_id, [])
            if aggregate_id in cached:
                project_fast(cached[aggregate_id], events)
            else:
                snapshot = snapshots.get(aggregate_id)
                start = snapshot.mutate(None) if snapshot is not None else None
                loaded = project_fast(start, events)
                if loaded is None:
                    uow.missing.add(aggregate_id)
                    continue
                self._remember(loaded)
                fetched.append(loaded)
            uow.read.add(aggregate_id)
        for hook in self.after_load:
            await hook(await self.store.connection(), fetched)

    # --- the loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                if self._stopping:
                    return
                continue
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            if self._pending:
                self._wake.set()
            try:
                async with self._batch_lock:
                    await self._process(batch)
            except Exception:  # never let the writer die: answer and go on
                log.exception("batch failed")
                _answer_all(batch, InternalError("internal error"))
            self._metrics.publish(self.stats)  # once per batch, not per command

    async def _process(self, batch: list[Entry]) -> None:
        live = [entry for entry in batch if not entry[1].done()]
        self.stats.commands += len(live)
        if not self.available:  # fail fast while the store is away; it is being retried
            self._answer_unavailable(live)
            return
        with database_deadline(self.deadline):
            await self._attempt(live)

    async def _attempt(self, live: list[Entry]) -> None:
        """Run the batch until it commits (then answer it) or cannot (answer why)."""
        attempts = 0
        known = UnitOfWork(self)  # what earlier attempts of this batch read (or found missing)
        while live:
            if attempts >= MAX_ATTEMPTS:
                _answer_all(live, InternalError("too many concurrent modifications; retry"))
                return
            uow = UnitOfWork(self)
            uow.read, uow.missing = set(known.read), set(known.missing)
            try:
                outcomes, poisoned = await self._execute(live, uow)
                if poisoned:
                    attempts += 1
                    live = self._without_failures(live, outcomes, uow)
                    if uow.unmet:  # else the next attempt would ask for them again
                        await self._load(known, uow.unmet)
                    continue
                appended = await self._append(uow)
            except psycopg.errors.IntegrityError:
                attempts += 1
                self.stats.conflicts += 1
                self.evict(uow.touched)
                continue
            except Exception as error:
                self.evict(uow.touched)
                if await self._may_retry(error):
                    continue
                self._fail(live, error)
                return
            self._committed(uow, appended)
            for (_, future, _hooks), (ok, value) in zip(live, outcomes, strict=True):
                _answer(future, ok, value)
            if appended is not None:
                await self._snapshot(uow.appended, appended[0])
            return

    def _without_failures(
        self,
        live: list[Entry],
        outcomes: list[tuple[bool, Any]],
        uow: UnitOfWork,
    ) -> list[Entry]:
        """A command failed half-way: drop every effect, answer the failures, and keep
        the others (and the records of failures) to run again from committed state."""
        self.evict(uow.touched)
        remaining: list[Entry] = []
        for entry, (ok, value) in zip(live, outcomes, strict=True):
            _, future, hooks = entry
            if ok:
                remaining.append(entry)
            elif hooks is not None and not isinstance(value, NeedsOutsideCall):
                # Its failure is recorded before it is answered.
                remaining.append((hooks.failure_retry(value), future, None))
            else:
                _answer(future, False, value)
        return remaining

    async def _may_retry(self, error: Exception) -> bool:
        """After a failed attempt: whether to run the batch again. Yes when the database
        did not answer, surely committed nothing, and may answer before the deadline."""
        if isinstance(error, CommitOutcomeUnknown) or not is_unavailable(error):
            return False
        if not isinstance(error, NotCommitted):  # (settling it made a fresh connection)
            await self.store.reset()
        if time_left(self.deadline) <= RETRY_PAUSE:
            return False
        self.stats.retries += 1
        await asyncio.sleep(RETRY_PAUSE)
        return True

    def _fail(self, live: list[Entry], error: Exception) -> None:
        if is_unavailable(error):
            log.error("event store unavailable: %s: %s", type(error).__name__, error)
            self._away()
            self._answer_unavailable(live)
        else:
            log.error("commit failed", exc_info=error)
            _answer_all(live, InternalError("internal error"))

    def _answer_unavailable(self, live: list[Entry]) -> None:
        self.stats.unavailable += len(live)
        _answer_all(live, DependencyTimeoutError("the event store did not answer; retry"))

    # --- the store away -------------------------------------------------------------------
    def _away(self) -> None:
        """The store did not answer in time: answer batches at once until it does."""
        if self._reconnecting is None and not self._stopping:
            # A context of its own: not the failed batch's, whose deadline has passed.
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="ledger-reconnect", context=contextvars.Context()
            )

    async def _reconnect(self) -> None:
        try:
            while not self._stopping:
                await asyncio.sleep(self.retry_interval)
                try:
                    with database_deadline(self.deadline):
                        await self.store.ping()
                except Exception as error:
                    log.debug("event store still away: %r", error)
                    await self.store.reset()
                    continue
                log.warning("event store answers again")
                return
        finally:
            self._reconnecting = None

    async def _execute(
        self, live: list[Entry], uow: UnitOfWork
    ) -> tuple[list[tuple[bool, Any]], bool]:
        """Run the batch's commands; those that need aggregates the cache lacks wait
        while everything they need is read in one go, then run again.

        Commands of one batch are concurrent (none is answered yet), so running a
        deferred one after later ones is a valid serial order. A command or read that
        found the database away raises, so that the whole batch can run again."""
        outcomes: list[tuple[bool, Any] | None] = [None] * len(live)
        waiting = list(range(len(live)))
        for _round in range(MAX_LOAD_ROUNDS):
            needed: set[uuid.UUID] = set()
            deferred: list[int] = []
            for index in waiting:
                mark = len(uow.accessed)
                try:
                    outcomes[index] = (True, live[index][0](uow))
                    continue
                except NeedsLoad as need:
                    needed.add(need.aggregate_id)
                    deferred.append(index)
                except NeedsOutsideCall as need:  # not a failure: answered as it is
                    outcomes[index] = (False, need)
                    if not uow.changed_since(mark):
                        continue
                except DomainError as error:
                    outcomes[index] = (False, error)
                except Exception as error:
                    if is_unavailable(error):  # e.g. the vault's read of a wrapping key
                        raise
                    if not isinstance(error, InternalError):
                        log.exception("command failed")
                        error = InternalError("internal error")
                    outcomes[index] = (False, error)
                if uow.changed_since(mark):
                    uow.unmet = needed
                    return self._poison(outcomes)
                failed = outcomes[index]
                hooks = live[index][2]
                if failed is not None and hooks is not None:
                    _after_failure(hooks, uow, failed[1])
            if not deferred:
                break
            try:
                await self._load(uow, needed)
            except Exception as error:
                if is_unavailable(error):
                    raise
                log.error("loading %d aggregate(s) failed: %s", len(needed), type(error).__name__)
                await self.store.reset()
                unavailable = DependencyTimeoutError("the event store did not answer")
                for index in deferred:
                    outcomes[index] = (False, unavailable)
                break
            waiting = deferred
        return [o or (False, InternalError("internal error")) for o in outcomes], False

    @staticmethod
    def _poison(outcomes: list[tuple[bool, Any] | None]) -> tuple[list[tuple[bool, Any]], bool]:
        # A command changed state and then failed: every command that did not fail
        # runs again from committed state.
        return [o if o is not None else (True, None) for o in outcomes], True

    async def _append(
        self, uow: UnitOfWork
    ) -> tuple[list[Any], list[int], dict[uuid.UUID, int]] | None:
        """Append the batch's events (None if it has none): its events, their notification
        ids and the versions the store settled. Raises if nothing was committed, or
        CommitOutcomeUnknown; anything after a successful append must not raise here, or
        the batch would run (and append) again."""
        pending = uow.pending()
        if not pending:
            return None
        started = time.perf_counter()
        events = [event for aggregate in pending for event in aggregate.collect_events()]
        notification_ids, heads = await self.store.insert(events)
        self.stats.commit_seconds += time.perf_counter() - started
        self.stats.settled = self.store.settled
        uow.appended = pending
        return events, notification_ids, heads

    def _committed(
        self, uow: UnitOfWork, appended: tuple[list[Any], list[int], dict[uuid.UUID, int]] | None
    ) -> None:
        """Bring the cache and the listeners up to a committed batch."""
        if appended is not None:
            events, notification_ids, heads = appended
            self.stats.batches += 1
            self.stats.events += len(events)
            for aggregate in uow.appended:
                settled = heads.get(aggregate.id)
                if settled is not None and settled != aggregate.version:
                    aggregate.version = settled  # the store renumbered after others' Used events
            if notification_ids:
                self.last_notification_id = max(self.last_notification_id, *notification_ids)
                for listener in self.commit_listeners:
                    listener(self.last_notification_id, events)
        for aggregate in uow.touched.values():
            if not getattr(aggregate, "write_once", False):  # never read again: not cached
                self._remember(aggregate)
        for callback in uow.after_commit:
            callback()

    async def _snapshot(self, aggregates: list[Aggregate], events: list[Any]) -> None:
        """Snapshot, from memory, each aggregate whose events crossed its interval."""
        by_id = {aggregate.id: aggregate for aggregate in aggregates}
        snapshots = snapshots_due(by_id, events, self.ledger.snapshotting_intervals)
        if snapshots:
            try:
                await self.store.put_snapshots(snapshots)
            except Exception as error:  # a missed snapshot costs replay time, nothing else
                log.warning("snapshot not stored: %s", type(error).__name__)


def _after_failure(hooks: CommandHooks, uow: UnitOfWork, error: Exception) -> None:
    try:
        hooks.after_failure(uow, error)
    except Exception:  # recording a failure must never fail the batch
        log.exception("after_failure hook failed")


def _answer(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok and isinstance(value, CommandFailed):
        future.set_exception(value.error)
    elif ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _answer_all(live: list[Entry], error: Exception) -> None:
    for _, future, _hooks in live:
        _answer(future, False, error)
