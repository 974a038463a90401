"""Identity reads for the event loop: credentials and principals read from the ledger in
threads, one read per name at a time and a bounded number in all, with what was found and
what was not cached in bounded caches of their own; and the index of issued access keys.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from app.ports import ActiveAccessKeys
from app.support.lru import BoundedLru
from app.support.metrics import cache_counters
from domain.errors import ThrottlingError

log = logging.getLogger("keyledger.identity")

CACHE_SIZE = 100_000  # known and unknown names each; an unknown flood evicts no known one
# An access key found valid this recently is read again even for a source over its
# failed-authentication budget (app.auth.limiter): its owner's client keeps working.
VOUCHED_SECONDS = 3600.0
KNOWN_KEYS_REFRESH_SECONDS = 5.0  # the index of issued access keys (see KnownAccessKeys)
# Identity reads run in threads (eventsourcing's repository is synchronous), never on the
# event loop: at most this many at once, and this many waiting or running in all, beyond
# which a new one is refused (ThrottlingException) rather than queued.
CONCURRENT_READS = 4
QUEUED_READS = 256

T = TypeVar("T")


class ReadSlots:
    """Bounds the identity reads of a process: ``concurrent`` in threads at once, and
    ``queued`` waiting or running in all (more are refused, not queued)."""

    def __init__(self, concurrent: int = CONCURRENT_READS, queued: int = QUEUED_READS) -> None:
        self.concurrent = concurrent
        self.queued = queued
        self.pending = 0
        self._semaphore: asyncio.Semaphore | None = None  # made on the loop that uses it

    async def run(self, read: Callable[[str], T | None], name: str) -> T | None:
        if self.pending >= self.queued:
            raise ThrottlingError()
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrent)
        self.pending += 1
        try:
            async with self._semaphore:
                return await asyncio.to_thread(read, name)
        finally:
            self.pending -= 1


class CachedReads(Generic[T]):
    """Things read from the ledger by name, with what was found cached for ``ttl`` and what
    was not for ``miss_ttl`` (in separate bounded caches, so that misses never evict hits).

    On the event loop (``get``) a read runs in a thread, within ``slots``; concurrent
    look-ups of one name share one read. ``get_sync`` is for threads (the CLI, tools).
    """

    def __init__(
        self,
        read: Callable[[str], T | None],
        slots: ReadSlots,
        *,
        ttl: float,
        miss_ttl: float,
        cache: str | None = None,
    ) -> None:
        """``cache``: its name in keyledger_cache_lookups_total (app.support.metrics)."""
        self._read = read
        self._hits, self._misses = cache_counters(cache)
        self._slots = slots
        self._found: BoundedLru[str, T] = BoundedLru(CACHE_SIZE, ttl=ttl)
        self._missing: BoundedLru[str, bool] = BoundedLru(CACHE_SIZE, ttl=miss_ttl)
        self._vouched: BoundedLru[str, bool] = BoundedLru(CACHE_SIZE, ttl=VOUCHED_SECONDS)
        self._reading: dict[str, asyncio.Future[T | None]] = {}

    def cached(self, name: str) -> T | None:
        """What the cache holds for ``name``; never reads."""
        return self._found.get(name)

    def lookup(self, name: str) -> T | None:
        """What the cache holds for ``name``, never reading; counted a hit when the cache
        answers (found, or known missing), else left for the read that follows to count."""
        found = self._found.get(name)
        if found is not None or name in self._missing:
            self._hits.inc()
        return found

    def known_missing(self, name: str) -> bool:
        return name in self._missing

    def vouched_for(self, name: str) -> bool:
        """Whether ``name`` was found within the last VOUCHED_SECONDS (cached or not)."""
        return name in self._vouched

    def forget(self, name: str) -> None:
        self._found.pop(name)
        self._missing.pop(name)

    def forget_all(self) -> None:
        for cache in (self._found, self._missing, self._vouched):
            cache.clear()

    async def get(self, name: str) -> T | None:
        found = self._found.get(name)
        if found is not None or name in self._missing:
            self._hits.inc()
            return found
        self._misses.inc()  # a read, or a wait for one under way
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(self._read_into_cache(name))
            reading.add_done_callback(_retrieve)
        # Shielded: a caller that goes away does not cancel the read others wait for.
        return await asyncio.shield(reading)

    def get_sync(self, name: str) -> T | None:
        _refuse_on_event_loop()
        found = self._found.get(name)
        if found is not None or name in self._missing:
            self._hits.inc()
            return found
        self._misses.inc()
        return self._keep(name, self._read(name))

    async def _read_into_cache(self, name: str) -> T | None:
        try:
            return self._keep(name, await self._slots.run(self._read, name))
        finally:
            del self._reading[name]

    def _keep(self, name: str, found: T | None) -> T | None:
        if found is None:
            self._missing.put(name, True)
        else:
            self._found.put(name, found)
            self._vouched.put(name, True)
            self._missing.pop(name)
        return found


class KnownAccessKeys:
    """The ids of the active access keys, as the audit views list them: read in a thread
    (never on the event loop) when asked for or refreshed while older than
    ``refresh_seconds``. A hint for sources over their failed-authentication budget (a key
    issued a moment ago may be missing until the next refresh), never a reason to accept a
    request."""

    def __init__(
        self, read: ActiveAccessKeys | None, refresh_seconds: float = KNOWN_KEYS_REFRESH_SECONDS
    ) -> None:
        self._read = read
        self._refresh_seconds = refresh_seconds
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._reading = False
        self._lock = threading.Lock()

    def __contains__(self, access_key_id: object) -> bool:
        self.refresh_if_stale()
        return access_key_id in self._ids

    def refresh_if_stale(self) -> None:
        with self._lock:
            stale = time.monotonic() - self._read_at > self._refresh_seconds
            if self._read is None or self._reading or not stale:
                return
            self._reading = True
        threading.Thread(target=self._refresh, name="known-access-keys", daemon=True).start()

    def _refresh(self) -> None:
        assert self._read is not None
        try:
            self._ids = frozenset(self._read())
        except Exception as error:  # the hint stays as it was
            log.warning("access key index not refreshed: %s", type(error).__name__)
        finally:
            with self._lock:
                self._read_at = time.monotonic()
                self._reading = False


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared read's failure seen (its waiters, if any are left, raise it)."""
    if not future.cancelled():
        future.exception()


def _refuse_on_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # a thread of its own: it may wait
    raise RuntimeError("a synchronous identity read would block the event loop")
