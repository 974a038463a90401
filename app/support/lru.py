"""One bounded cache type for the process: least recently used first out, optional expiry."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLru(Generic[K, V]):
    """At most ``max_size`` entries; putting one more evicts the least recently used.

    An entry may expire: ``ttl`` seconds after it was put (the cache's default, or the
    put's own), so that an answer that may change ("no such access key") is remembered only
    briefly. Expired entries are dropped when read and count towards the bound until then.
    get, put and pop are O(1) and safe to call from several threads.
    """

    __slots__ = ("_clock", "_entries", "_lock", "max_size", "ttl")

    def __init__(
        self,
        max_size: int,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("a BoundedLru holds at least one entry")
        self.max_size = max_size
        self.ttl = ttl
        self._clock = clock
        # key -> (expires at or None, value); the order is least recently used first.
        self._entries: OrderedDict[K, tuple[float | None, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, marked most recently used; None if absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires is not None and expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Store ``value`` as most recently used, evicting the least recently used beyond
        the bound. ``ttl`` overrides the cache's default expiry for this entry."""
        lifetime = ttl if ttl is not None else self.ttl
        expires = self._clock() + lifetime if lifetime is not None else None
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value if it was held (even expired)."""
        with self._lock:
            entry = self._entries.pop(key, None)
        return entry[1] if entry is not None else None

    def pop_where(self, predicate: Callable[[K, V], bool]) -> None:
        """Forget every entry ``predicate(key, value)`` accepts (O(n): for rare clean-ups).
        The predicate runs under the cache's lock: it must not call the cache."""
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if predicate(k, v)]:
                del self._entries[key]

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries that have not expired, least recently used first."""
        now = self._clock()
        with self._lock:
            return [
                (key, value)
                for key, (expires, value) in self._entries.items()
                if expires is None or expires > now
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held and not expired (does not mark it used)."""
        with self._lock:
            entry = self._entries.get(key)  # type: ignore[arg-type]
            return entry is not None and (entry[0] is None or entry[0] > self._clock())

    def __len__(self) -> int:
        return len(self._entries)
