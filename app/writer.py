"""The single writer: group commit over an in-memory cache of aggregates.

Every command (a function of a unit of work) runs on one thread per process, so the
cached aggregates are only ever touched by that thread. Commands queued while a batch
commits form the next batch: all their events are appended in ONE transaction, and only
then are their callers answered. A command's events are therefore durable before its
answer, and a failed batch answers nobody with success.

State checks are linearizable because each event is appended at the version of the
state it was checked against: if another process appended first, the batch fails on
the version conflict, the touched aggregates are reloaded, and the commands re-run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError

from app.ledger import Ledger, project_fast
from domain.errors import DependencyTimeoutError, DomainError, InternalError

log = logging.getLogger("keyledger.writer")

T = TypeVar("T")
Command = Callable[["UnitOfWork"], T]
MAX_BATCH = 512
MAX_ATTEMPTS = 8


class Reply:
    """Where a command's outcome goes: a thread waiting on a future, or an event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.future: Any = loop.create_future() if loop else concurrent.futures.Future()

    def claim(self) -> bool:
        """False when the caller has given up (cancelled) before the command ran."""
        if self.loop is None:
            return bool(self.future.set_running_or_notify_cancel())
        return not self.future.cancelled()


def _settle(outcomes: list[tuple[Any, bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@dataclass
class WriterStats:
    """Counters for /metrics: how well group commit is batching."""

    commands: int = 0
    batches: int = 0
    events: int = 0
    conflicts: int = 0
    commit_seconds: float = 0.0


class UnitOfWork:
    """What one batch sees: aggregates by id, loaded once and shared by its commands."""

    def __init__(self, writer: LedgerWriter) -> None:
        self._writer = writer
        self.touched: dict[uuid.UUID, Aggregate] = {}
        self.after_commit: list[Callable[[], None]] = []

    def get(self, aggregate_id: uuid.UUID, *, fresh: bool = False) -> Any | None:
        """The aggregate as of this batch, or None. ``fresh`` re-reads newer events first."""
        aggregate = self.touched.get(aggregate_id)
        if aggregate is None:
            aggregate = self._writer._cached(aggregate_id, fresh=fresh)
            if aggregate is None:
                return None
            self.touched[aggregate_id] = aggregate
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        """A newly created aggregate; saving it fails if its id is taken (AlreadyExists)."""
        self.touched[aggregate.id] = aggregate

    def pending(self) -> list[Aggregate]:
        return [a for a in self.touched.values() if a.pending_events]

    def pending_count(self) -> int:
        return sum(len(a.pending_events) for a in self.touched.values())


class LedgerWriter:
    def __init__(self, ledger: Ledger, *, cache_size: int = 100_000) -> None:
        self.ledger = ledger
        self._cache: OrderedDict[uuid.UUID, Aggregate] = OrderedDict()
        self._cache_size = cache_size
        self._queue: queue.SimpleQueue[tuple[Command[Any], Reply]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._stopping = threading.Event()
        self.last_notification_id = 0
        self.commit_listeners: list[Callable[[int], None]] = []
        self.stats = WriterStats()

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put((_stop_command, Reply()))
        self._thread.join(timeout=10)

    # --- submitting ----------------------------------------------------------------
    def _submit(self, command: Command[T], reply: Reply) -> Any:
        if self._stopping.is_set():
            reply.future.set_exception(DependencyTimeoutError("the service is shutting down"))
        else:
            self._queue.put((command, reply))
        return reply.future

    async def run(self, command: Command[T]) -> T:
        """Run ``command`` on the writer; its answer arrives after its events commit."""
        result: T = await self._submit(command, Reply(asyncio.get_running_loop()))
        return result

    def run_sync(self, command: Command[T], timeout: float = 30.0) -> T:
        result: T = self._submit(command, Reply()).result(timeout=timeout)
        return result

    # --- the cache -------------------------------------------------------------------
    def _cached(self, aggregate_id: uuid.UUID, *, fresh: bool) -> Aggregate | None:
        aggregate = self._cache.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self.ledger.repository.get(aggregate_id, projector_func=project_fast)
            except AggregateNotFoundError:
                return None
            self._remember(aggregate)
        else:
            self._cache.move_to_end(aggregate_id)
            if fresh:
                newer = self.ledger.events.get(originator_id=aggregate_id, gt=aggregate.version)
                aggregate = project_fast(aggregate, newer)
        return aggregate

    def _remember(self, aggregate: Aggregate) -> None:
        self._cache[aggregate.id] = aggregate
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def evict(self, aggregate_ids: Any) -> None:
        for aggregate_id in aggregate_ids:
            self._cache.pop(aggregate_id, None)

    # --- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(command is _stop_command for command, _ in batch):
                self._process([item for item in batch if item[0] is not _stop_command])
                return
            self._process(batch)

    def _process(self, batch: list[tuple[Command[Any], Reply]]) -> None:
        live = [(command, reply) for command, reply in batch if reply.claim()]
        self.stats.commands += len(live)
        answers: list[tuple[Reply, bool, Any]] = []
        try:
            self._run_batch(live, answers)
        finally:
            self._deliver(answers)

    def _run_batch(
        self, live: list[tuple[Command[Any], Reply]], answers: list[tuple[Reply, bool, Any]]
    ) -> None:
        for _attempt in range(MAX_ATTEMPTS):
            outcomes, uow, poisoned = self._execute(live)
            if poisoned:
                # A command failed half-way: drop every effect, answer the failures,
                # and run the others again from committed state.
                self.evict(uow.touched)
                remaining = []
                for (command, reply), (ok, value) in zip(live, outcomes, strict=True):
                    if ok:
                        remaining.append((command, reply))
                    else:
                        answers.append((reply, False, value))
                live = remaining
                continue
            try:
                self._commit(uow)
            except IntegrityError:
                self.stats.conflicts += 1
                self.evict(uow.touched)
                continue
            except PersistenceError as error:
                log.error("event store unavailable: %s", type(error).__name__)
                self.evict(uow.touched)
                failure: Exception = DependencyTimeoutError("the event store did not answer")
                answers.extend((reply, False, failure) for _, reply in live)
                return
            except Exception:
                log.exception("commit failed")
                self.evict(uow.touched)
                answers.extend((reply, False, InternalError("internal error")) for _, reply in live)
                return
            for (_, reply), (ok, value) in zip(live, outcomes, strict=True):
                answers.append((reply, ok, value))
            return
        failure = InternalError("too many concurrent modifications; retry")
        answers.extend((reply, False, failure) for _, reply in live)

    @staticmethod
    def _deliver(answers: list[tuple[Reply, bool, Any]]) -> None:
        """Answer waiting threads directly, and each event loop with one wake-up."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for reply, ok, value in answers:
            if reply.loop is None:
                _settle([(reply.future, ok, value)])
            else:
                by_loop.setdefault(reply.loop, []).append((reply.future, ok, value))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_settle, outcomes)

    def _execute(
        self, live: list[tuple[Command[Any], Reply]]
    ) -> tuple[list[tuple[bool, Any]], UnitOfWork, bool]:
        uow = UnitOfWork(self)
        outcomes: list[tuple[bool, Any]] = []
        for command, _ in live:
            before = uow.pending_count()
            try:
                outcomes.append((True, command(uow)))
            except DomainError as error:
                outcomes.append((False, error))
                if uow.pending_count() != before:
                    return self._poison(outcomes, live, uow)
            except Exception as error:
                if not isinstance(error, InternalError):
                    log.exception("command failed")
                    error = InternalError("internal error")
                outcomes.append((False, error))
                if uow.pending_count() != before:
                    return self._poison(outcomes, live, uow)
        return outcomes, uow, False

    @staticmethod
    def _poison(
        outcomes: list[tuple[bool, Any]], live: list[Any], uow: UnitOfWork
    ) -> tuple[list[tuple[bool, Any]], UnitOfWork, bool]:
        # Commands after the failed one have not run: mark them to run again.
        outcomes.extend((True, None) for _ in range(len(live) - len(outcomes)))
        return outcomes, uow, True

    def _commit(self, uow: UnitOfWork) -> None:
        pending = uow.pending()
        if pending:
            started = time.perf_counter()
            recordings = self.ledger.save(*pending)
            self.stats.commit_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.events += len(recordings)
            if recordings:
                self.last_notification_id = max(
                    self.last_notification_id,
                    max(r.notification.id for r in recordings),
                )
                for listener in self.commit_listeners:
                    listener(self.last_notification_id)
        for aggregate in uow.touched.values():
            self._remember(aggregate)
        for callback in uow.after_commit:
            callback()


def _stop_command(uow: UnitOfWork) -> None:
    return None
