"""A budget of failed authentications per source address, so that a flood of bad or unknown
credentials is refused cheaply instead of costing a database read (and an audit record)
per request, and cannot starve callers who sign correctly.

Each source address has a token bucket: every failed authentication spends a token
(``burst`` at most, ``per_second`` back). A source with no token left is refused
``ThrottlingException`` before its credentials are looked up, except when they are
credentials the process already holds (a legitimate client behind the same address keeps
working). Refusals are counted and summarised in the log at most once a ``summary_seconds``,
never recorded one by one. At most ``max_sources`` sources are tracked (least recently
seen forgotten first), so memory stays bounded whatever the number of addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.support.lru import BoundedLru
from domain.errors import ThrottlingError

log = logging.getLogger("keyledger.auth")

DEFAULT_BURST = 100
DEFAULT_PER_SECOND = 1.0
DEFAULT_MAX_SOURCES = 10_000
SUMMARY_SECONDS = 60.0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    refused: int = 0  # since the last summary


class FailedAuthenticationLimiter:
    """Token buckets of failed authentications by source address (used on the event loop)."""

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        per_second: float = DEFAULT_PER_SECOND,
        max_sources: int = DEFAULT_MAX_SOURCES,
        summary_seconds: float = SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.summary_seconds = summary_seconds
        self._clock = clock
        self._buckets: BoundedLru[str, _Bucket] = BoundedLru(max_sources, clock=clock)
        self.refused_total = 0  # for /metrics
        self._refused_since_summary = 0
        self._summarised_at = float("-inf")  # the first refusal is logged at once

    def exhausted(self, source: str) -> bool:
        """Whether ``source`` has spent its budget (refuse its unauthenticated requests)."""
        bucket = self._buckets.get(source)
        return bucket is not None and self._refill(bucket) < 1.0

    def charge(self, source: str) -> bool:
        """Spend one token for a failed authentication; False when none was left."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(float(self.burst), self._clock())
            self._buckets.put(source, bucket)
        if self._refill(bucket) < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def refuse(self, source: str) -> ThrottlingError:
        """Count one refusal of ``source``; the error to answer it with."""
        self.refused_total += 1
        self._refused_since_summary += 1
        bucket = self._buckets.get(source)
        if bucket is not None:
            bucket.refused += 1
        self._summarise()
        return ThrottlingError()

    def _refill(self, bucket: _Bucket) -> float:
        now = self._clock()
        bucket.tokens = min(
            float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second
        )
        bucket.updated = now
        return bucket.tokens

    def _summarise(self) -> None:
        """At most one log line per interval (the first refusal's at once): how many were
        refused, from how many sources, and the source refused most."""
        now = self._clock()
        if now - self._summarised_at < self.summary_seconds:
            return
        refusing = [(source, bucket) for source, bucket in self._buckets.items() if bucket.refused]
        top_source, top = max(refusing, key=lambda item: item[1].refused, default=("-", None))
        log.warning(
            "refused %d request(s) from %d source(s) over their failed-authentication budget "
            "(most from %s: %d); the next summary in %.0f s at the earliest",
            self._refused_since_summary,
            len(refusing),
            top_source,
            top.refused if top is not None else 0,
            self.summary_seconds,
        )
        for _, bucket in refusing:
            bucket.refused = 0
        self._refused_since_summary = 0
        self._summarised_at = now
