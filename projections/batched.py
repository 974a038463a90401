"""A batched consumer of the ledger's notification log (docs/architecture.md, decision 6).

Each batch of events and the projection's tracking position are written in ONE
transaction, so every event is applied exactly once and a runner killed mid-stream resumes
where the last committed batch left off. One process at a time writes a view (a
PostgreSQL advisory lock elects it); the others read it, and ``wait_for`` gives
read-your-writes.

The leader passes when woken and otherwise every ``idle_interval``: the writer of its
own process wakes it for the events it applies (``committed``), and a reader in any
process that waits for it sends a PostgreSQL NOTIFY on the view's channel, which the
leader's lock connection LISTENs to. A view that skips most events (the key directory
skips ``Used``) so costs nothing per hot-path commit.

A batch that keeps failing does not stop the view: after ``batch_attempts`` failures in
a row its events are applied one by one, each in its own transaction with its own
tracking position, and an event that still fails after ``event_attempts`` is set aside
in ``projection_dead_letters`` (migrations/012) with an ERROR in the log; the view goes
on with the next event. ``set_aside`` lets a view note the gap in itself (the audit
trail writes a record that says its record is missing); ``dead_letters`` counts them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import Notification, StoredEvent
from psycopg_pool import ConnectionPool

log = logging.getLogger("keyledger.projections")

NOTIFY_POLL_SECONDS = 0.05  # how often an idle leader looks for a NOTIFY
RENOTIFY_SECONDS = 0.5  # a waiter repeats its NOTIFY (the leader may have changed)
TRACKING_SELECT = "SELECT notification_id FROM projection_tracking WHERE projection_name = %s"
TRACKING_UPSERT = (
    "INSERT INTO projection_tracking (projection_name, notification_id) VALUES (%s, %s)"
    " ON CONFLICT (projection_name) DO UPDATE SET notification_id = EXCLUDED.notification_id"
)
# Failures of the connection or the server, not of the events: never a reason to set one
# aside (the leader re-elects and retries).
NOT_THE_EVENTS = (psycopg.OperationalError, psycopg.InterfaceError)
MAX_ERROR_MESSAGE = 2000  # characters of an error kept with its dead letter
DEAD_LETTER_INSERT = (
    "INSERT INTO projection_dead_letters (projection_name, notification_id, originator_id,"
    " originator_version, topic, error_type, error_message, attempts)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
DEAD_LETTER_COUNT = "SELECT count(*) FROM projection_dead_letters WHERE projection_name = %s"
DEAD_LETTER_SELECT = (
    "SELECT projection_name, notification_id, originator_id, originator_version, topic,"
    " error_type, error_message, attempts, failed_at FROM projection_dead_letters"
    " WHERE projection_name = %s ORDER BY notification_id DESC LIMIT %s"
)


@dataclass(frozen=True)
class DeadLetter:
    """An event a projection set aside: the view lacks it; the ledger holds it."""

    projection: str
    notification_id: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    error_type: str
    error_message: str
    attempts: int
    failed_at: datetime


@dataclass(frozen=True)
class DeadLetters:
    count: int
    newest: tuple[DeadLetter, ...]  # newest (highest notification id) first


def wake_channel(projection_name: str) -> str:
    """The NOTIFY channel that wakes a view's leader in whichever process."""
    return f"keyledger_{projection_name}"


def error_type(error: BaseException) -> str:
    """The error's class, with its module unless built in (``psycopg.errors.DataError``)."""
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class BatchedProjection(ABC):
    """Subclasses name the projection, its lock and topics, and apply decoded events."""

    name: ClassVar[str]
    lock_id: ClassVar[int]
    topics: ClassVar[tuple[str, ...]] = ()  # () means every event
    # Under full load a pass sees ~1,000 events; larger batches only raise the memory
    # high-water mark of a catch-up (decoded events and their rows are held at once).
    batch_size: int = 2000
    # Passes are at least pass_interval apart (the commits in between share one) and at
    # most idle_interval apart (other processes' writes, which wake nobody here).
    pass_interval = 0.25
    idle_interval = 0.25
    until: datetime | None = None  # replays only: apply no event recorded after this time
    # A failing batch is retried, then applied event by event; an event that fails alone
    # this often is set aside. Bounded, so one event never stops the view for good.
    batch_attempts = 3
    event_attempts = 3
    retry_delay = 1.0  # seconds between attempts

    def __init__(
        self,
        ledger: Application,
        pool: ConnectionPool,
        database_url: str,
        *,
        batch_size: int | None = None,
    ) -> None:
        self._ledger = ledger
        self._pool = pool
        self._database_url = database_url
        if batch_size is not None:
            self.batch_size = batch_size
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._position = 0
        self.leading = False

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Run in a background thread (it writes only while it holds the leader lock);
        again after stop()."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def channel(self) -> str:
        """The NOTIFY channel that wakes this view's leader in whichever process."""
        return wake_channel(self.name)

    def notify(self) -> None:
        """Wake this process's leader for a pass now."""
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def committed(self, notification_id: int, events: Sequence[Any]) -> None:
        """The writer's commit listener (subclasses wake only for events they apply)."""
        self.notify()

    def run(self) -> None:
        """Lead whenever the lock is free, until stopped (the ``projections run`` loop)."""
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._database_url, autocommit=True) as lock_conn:
                    row = lock_conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (self.lock_id,)
                    ).fetchone()
                    if row and row[0]:
                        lock_conn.execute(f"LISTEN {self.channel}")
                        self.leading = True
                        try:
                            self._lead(lock_conn)
                        finally:
                            self.leading = False
                        continue
            except psycopg.Error as error:
                log.warning("%s projection paused: %s", self.name, error)
            self._stopping.wait(1.0)

    def _lead(self, lock_conn: psycopg.Connection[Any]) -> None:
        self._position = self.position()
        failures = 0
        while not self._stopping.is_set():
            try:
                done, failures = self._guarded_batch(None, failures)
            except NOT_THE_EVENTS:
                raise  # the lock connection may be gone too: re-elect
            except Exception:  # even setting an event aside failed: start over, loudly
                log.exception("%s projection could not set the failing event aside", self.name)
                self.reset()
                self._position = self.position()
                self._stopping.wait(self.retry_delay)
                continue
            if failures:
                continue  # _guarded_batch waited before the next attempt
            if done < self.batch_size:
                # Let events accumulate: a pass costs a few round trips and a commit
                # whatever its size, and its Python work competes with the hot path.
                self._stopping.wait(self.pass_interval)
                self._await_wake(lock_conn, self.idle_interval - self.pass_interval)

    def _await_wake(self, lock_conn: psycopg.Connection[Any], timeout: float) -> None:
        """Return when woken in this process or by a NOTIFY, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            with self._wake:
                if self._woken:
                    self._woken = False
                    return
            if any(True for _ in lock_conn.notifies(timeout=0)):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with self._wake:
                if not self._woken:  # a NOTIFY is seen at the latest one slice later
                    self._wake.wait(timeout=min(remaining, NOTIFY_POLL_SECONDS))

    # --- reading ------------------------------------------------------------------------
    def position(self) -> int:
        """The last notification id the view includes (committed)."""
        with self._pool.connection() as conn:
            row = conn.execute(TRACKING_SELECT, (self.name,)).fetchone()
        return int(row[0]) if row else 0

    def wait_for(self, notification_id: int, timeout: float = 10.0) -> bool:
        """Block until the view includes ``notification_id`` (read-your-writes)."""
        deadline = time.monotonic() + timeout
        woken_at = float("-inf")
        while self._position < notification_id:
            self._position = max(self._position, self.position())
            if self._position >= notification_id:
                break
            now = time.monotonic()
            if now > deadline:
                return False
            if self.leading:
                self.notify()
            elif now - woken_at > RENOTIFY_SECONDS:  # the leader is another process
                self._wake_leader_elsewhere()
                woken_at = now
            time.sleep(0.005)
        return True

    def _wake_leader_elsewhere(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"NOTIFY {self.channel}")

    def wait_for_current(self, timeout: float = 10.0) -> bool:
        head = self._ledger.recorder.max_notification_id() or 0
        return self.wait_for(head, timeout)

    def lag(self, now: datetime | None = None) -> float:
        """How long the oldest event not yet in the view has waited, in seconds (0 when
        the view is at the head of the log). The age of the oldest pending event, not the
        gap between the newest and the last projected event's times: after an idle
        spell that gap spans the idleness although nothing has waited."""
        head = self._ledger.recorder.max_notification_id() or 0
        position = self.position()
        if position >= head:
            return 0.0
        pending = self._ledger.recorder.select_notifications(start=position + 1, limit=1)
        if not pending:
            return 0.0
        waiting_since = self._decode(pending[0]).timestamp
        return max(0.0, ((now or datetime.now(UTC)) - waiting_since).total_seconds())

    def _decode(self, notification: Notification | StoredEvent) -> Any:
        return self._ledger.mapper.to_domain_event(notification)

    # --- writing ------------------------------------------------------------------------
    def forget_position(self) -> None:
        """After the ledger and this view were emptied (emulator mode's reset, while
        stopped): start again from the first event, with nothing kept in memory."""
        self._position = 0
        self.reset()

    def reset(self) -> None:  # noqa: B027 - a hook with nothing to forget by default
        """Forget whatever a failed batch left in memory (subclasses keep caches)."""

    @abstractmethod
    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        """Apply decoded events (with their notification ids) in the batch's transaction."""

    def set_aside(  # noqa: B027 - a hook with nothing to note by default
        self,
        conn: psycopg.Connection[Any],
        notification: Notification,
        event: Any | None,
        error: BaseException,
    ) -> None:
        """Note in the view, in the transaction that sets ``notification`` aside, that its
        event is missing (``event`` is None when it could not even be decoded)."""

    def catch_up(self, stop: int | None = None) -> int:
        """Process one batch, up to ``stop`` (default: the head); return how many
        notifications it covered."""
        position = self._position = self._position or self.position()
        notifications, last = self._next_batch(position, stop)
        if last <= position:
            return 0
        kept = [(self._decode(n), n.id) for n in notifications]
        kept = [(event, i) for event, i in kept if self._included(event)]
        events, ids = [e for e, _ in kept], [i for _, i in kept]
        if not self._commit(last, lambda conn: self.apply(conn, events, ids)):
            return 0  # someone else moved it; continue from there
        return last - position

    def catch_up_to(self, stop: int | None = None) -> None:
        """Process batches until the view includes ``stop`` (default: the head now)."""
        target = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        failures = 0
        while (self._position or self.position()) < target and not self._stopping.is_set():
            _, failures = self._guarded_batch(target, failures)

    def _next_batch(self, position: int, stop: int | None) -> tuple[Sequence[Notification], int]:
        """The next batch's notifications after ``position`` and the position that covers it
        (its last notification, or the head when the batch is not full: ids of other topics)."""
        head = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        if head <= position:
            return [], position
        notifications = self._ledger.recorder.select_notifications(
            start=position + 1, limit=self.batch_size, stop=head, topics=self.topics
        )
        last = notifications[-1].id if len(notifications) == self.batch_size else head
        return notifications, last

    def _included(self, event: Any) -> bool:
        return self.until is None or event.timestamp <= self.until

    def _commit(self, through: int, work: Callable[[psycopg.Connection[Any]], None]) -> bool:
        """Run ``work`` and move the tracking position to ``through`` in ONE transaction
        (exactly once); False, with nothing done, when another leader moved it first."""
        position = self._position
        try:
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute(TRACKING_SELECT + " FOR UPDATE", (self.name,)).fetchone()
                if row is not None and row[0] != position:
                    self._position = int(row[0])
                    return False
                work(conn)
                conn.execute(TRACKING_UPSERT, (self.name, through))
        except BaseException:
            self.reset()
            raise
        self._position = through
        return True

    # --- failures -----------------------------------------------------------------------
    def _guarded_batch(self, stop: int | None, failures: int) -> tuple[int, int]:
        """One batch; after ``batch_attempts`` failures in a row, that batch event by event.
        Returns the notifications covered and the failures in a row so far."""
        try:
            return self.catch_up(stop), 0
        except NOT_THE_EVENTS:
            raise  # the caller re-elects
        except Exception:
            failures += 1
            self.reset()
            self._position = self.position()
            if failures < self.batch_attempts or self._stopping.is_set():
                log.warning(
                    "%s projection failed a batch (attempt %d of %d); retrying",
                    self.name,
                    failures,
                    self.batch_attempts,
                    exc_info=True,
                )
                self._stopping.wait(self.retry_delay)
                return 0, failures
            log.error(
                "%s projection failed a batch %d times; applying its events one by one",
                self.name,
                failures,
                exc_info=True,
            )
        return self._isolate(stop), 0

    def _isolate(self, stop: int | None) -> int:
        """Apply the next batch one event per transaction, setting aside any event that
        keeps failing; return the notifications covered."""
        position = self._position = self._position or self.position()
        notifications, last = self._next_batch(position, stop)
        for index, notification in enumerate(notifications):
            if self._stopping.is_set():
                break
            through = last if index == len(notifications) - 1 else notification.id
            if not self._apply_alone(notification, through):
                break  # stopping, or another leader moved the position
        else:
            if not notifications and last > position:
                self._commit(last, lambda conn: None)
        return self._position - position

    def _apply_alone(self, notification: Notification, through: int) -> bool:
        """Apply one event in its own transaction, retried; set it aside if it keeps failing."""
        failure: Exception | None = None
        for attempt in range(1, self.event_attempts + 1):
            try:
                return self._apply_one(notification, through)
            except NOT_THE_EVENTS:
                raise
            except Exception as error:
                failure = error
                log.warning(
                    "%s projection failed event %d (attempt %d of %d)",
                    self.name,
                    notification.id,
                    attempt,
                    self.event_attempts,
                    exc_info=True,
                )
                if self._stopping.is_set():
                    return False  # a failure while stopping is no reason to set it aside
                if attempt < self.event_attempts:
                    self._stopping.wait(self.retry_delay)
        assert failure is not None
        return self._dead_letter(notification, through, failure)

    def _apply_one(self, notification: Notification, through: int) -> bool:
        event = self._decode(notification)  # inside the attempt: decoding may fail too
        events = [event] if self._included(event) else []
        ids = [notification.id] if events else []
        return self._commit(through, lambda conn: self.apply(conn, events, ids) if events else None)

    def _dead_letter(self, notification: Notification, through: int, error: Exception) -> bool:
        """Record the event as set aside, let the view note the gap, and move past it."""
        try:
            event = self._decode(notification)
        except Exception:
            event = None
        log.error(
            "%s projection SET ASIDE event %d (%s of %s version %d) after %d failed attempts:"
            " %s: %s; the view lacks it (projection_dead_letters)",
            self.name,
            notification.id,
            notification.topic,
            notification.originator_id,
            notification.originator_version,
            self.event_attempts,
            error_type(error),
            str(error)[:MAX_ERROR_MESSAGE],
        )

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                DEAD_LETTER_INSERT,
                (
                    self.name,
                    notification.id,
                    notification.originator_id,
                    notification.originator_version,
                    notification.topic,
                    error_type(error),
                    str(error)[:MAX_ERROR_MESSAGE],
                    self.event_attempts,
                ),
            )
            try:
                with conn.transaction():  # a savepoint: the dead letter stands without the note
                    self.set_aside(conn, notification, event, error)
            except NOT_THE_EVENTS:
                raise
            except Exception:
                log.exception(
                    "%s projection could not note the gap at event %d", self.name, notification.id
                )
                self.reset()

        return self._commit(through, work)

    # --- dead letters -------------------------------------------------------------------
    def dead_letters(self, newest: int = 5) -> DeadLetters:
        """How many events this view has set aside, and the ``newest`` of them: two index
        reads (for /readyz and /metrics; blocking I/O, so call it off the event loop)."""
        with self._pool.connection() as conn:
            row = conn.execute(DEAD_LETTER_COUNT, (self.name,)).fetchone()
            count = int(row[0]) if row else 0
            rows = conn.execute(DEAD_LETTER_SELECT, (self.name, newest)).fetchall() if count else []
        return DeadLetters(count, tuple(DeadLetter(*r) for r in rows))
