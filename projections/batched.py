"""A batched consumer of the ledger's notification log (ARCHITECTURE.md section 6).

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
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
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
        """Run in a background thread (it writes only while it holds the leader lock)."""
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
        return f"keyledger_{self.name}"

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
        while not self._stopping.is_set():
            try:
                done = self.catch_up()
            except psycopg.OperationalError:
                raise  # the lock connection may be gone too: re-elect
            except Exception:
                log.exception("%s projection failed a batch; retrying", self.name)
                self.reset()
                self._position = self.position()
                self._stopping.wait(1.0)
                continue
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
    def reset(self) -> None:  # noqa: B027 - a hook with nothing to forget by default
        """Forget whatever a failed batch left in memory (subclasses keep caches)."""

    @abstractmethod
    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        """Apply decoded events (with their notification ids) in the batch's transaction."""

    def catch_up(self, stop: int | None = None) -> int:
        """Process one batch, up to ``stop`` (default: the head); return how many
        notifications it covered."""
        position = self._position or self.position()
        head = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        if head <= position:
            return 0
        notifications = self._ledger.recorder.select_notifications(
            start=position + 1, limit=self.batch_size, stop=head, topics=self.topics
        )
        last = notifications[-1].id if len(notifications) == self.batch_size else head
        events = [self._decode(n) for n in notifications]
        ids = [n.id for n in notifications]
        if self.until is not None:
            kept = [(e, i) for e, i in zip(events, ids, strict=True) if e.timestamp <= self.until]
            events, ids = [e for e, _ in kept], [i for _, i in kept]
        try:
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute(TRACKING_SELECT + " FOR UPDATE", (self.name,)).fetchone()
                if row is not None and row[0] != position:
                    self._position = int(row[0])
                    return 0  # someone else moved it; continue from there
                self.apply(conn, events, ids)
                conn.execute(TRACKING_UPSERT, (self.name, last))
        except BaseException:
            self.reset()
            raise
        self._position = last
        return last - position

    def catch_up_to(self, stop: int | None = None) -> None:
        """Process batches until the view includes ``stop`` (default: the head now)."""
        target = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        while (self._position or self.position()) < target:
            self.catch_up(target)
