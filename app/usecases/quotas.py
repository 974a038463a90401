"""AWS KMS's request quotas, enforced per account and Region (docs/operations.md,
"Request quotas"): a call over its quota is refused AWS's ThrottlingException before any
work is done for it.

The adapters call ``RequestQuotas.admit`` once a call is authenticated and its parameters
validated (which quota a call counts against may depend on them: domain.quotas.quota_of).
Each (account, Region, quota) has a token bucket in this process's memory: no lock, no
database, O(1), at most ``max_buckets`` tracked (least recently used forgotten first: an
account forgotten starts again with a full bucket).

``keyledger run --workers N``: each worker enforces its share (``rate / share``), since
AWS's quota is the account's whatever the number of processes answering it; the kernel
spreads connections evenly over many, not over a few, so a client with few connections
may be throttled below the quota (docs/operations.md).

A refused call is counted (``keyledger_quota_throttled_total``), summarised in the log
at most once a ``summary_seconds``, and kept in the audit trail only as a sample: the
first refusal a ``record_seconds`` of each (account, Region, quota). A flood of throttled
calls never grows the ledger faster than that.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from app.auth.credentials import Caller
from app.auth.sigv4 import is_region_name
from app.support.metrics import QUOTA_THROTTLED
from domain.errors import QuotaExceededError
from domain.quotas import (
    DEFAULT_RATES,
    TWO_REGION_OPERATIONS,
    TokenBucket,
    bucket_capacity,
    other_region_charges,
    quota_of,
)

log = logging.getLogger("keyledger.quotas")

DEFAULT_MAX_BUCKETS = 100_000
SUMMARY_SECONDS = 60.0
RECORD_SECONDS = 60.0


class _Bucket(TokenBucket):
    """A quota's bucket, and when the trail last kept one of its refusals."""

    __slots__ = ("recorded_at",)

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        super().__init__(rate, capacity, now)
        self.recorded_at = float("-inf")


class RequestQuotas:
    """Token buckets of calls per (account, Region, quota); used on the event loop only."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        rates: Mapping[str, float] | None = None,
        share: int = 1,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        summary_seconds: float = SUMMARY_SECONDS,
        record_seconds: float = RECORD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rates``: requests per second by quota name, over AWS's defaults
        (domain.quotas.DEFAULT_RATES); ``share``: the processes the quotas are divided
        among (workers times nodes)."""
        self.enabled = enabled
        self.share = max(1, share)
        #: This process's rate of each quota: its share of the account's.
        self.rates = {
            name: rate / self.share for name, rate in {**DEFAULT_RATES, **(rates or {})}.items()
        }
        self.summary_seconds = summary_seconds
        self.record_seconds = record_seconds
        self._clock = clock
        # (account, Region, quota) -> its bucket, least recently used first. Not the
        # process's BoundedLru: its lock would be the larger part of a call's check, and
        # only the event loop's thread ever calls this.
        self._buckets: OrderedDict[tuple[str, str, str], _Bucket] = OrderedDict()
        self.max_buckets = max_buckets
        self.throttled_total = 0
        self._throttled_since_summary = 0
        # Refusals since the last summary by (account, Region, quota), bounded as the buckets.
        self._refused: dict[tuple[str, str, str], int] = {}
        self._summarised_at = float("-inf")  # the first refusal is logged at once

    def admit(self, caller: Caller, operation: str, parameters: Mapping[str, Any]) -> None:
        """Count the call against its quota, or raise QuotaExceededError (nothing counted)
        when the quota has no token left. A call no quota applies to passes."""
        if not self.enabled:
            return
        quota = quota_of(operation, parameters)
        if quota is None:
            return
        now = self._clock()
        key = (caller.account_id, caller.region, quota)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._new_bucket(key, now)
        else:
            self._buckets.move_to_end(key)
        if operation in TWO_REGION_OPERATIONS:
            self._admit_in_two_regions(key, operation, parameters, bucket, now)
        elif not bucket.take(now):
            raise self._refuse(key, bucket, now)

    def _admit_in_two_regions(
        self,
        key: tuple[str, str, str],
        operation: str,
        parameters: Mapping[str, Any],
        bucket: _Bucket,
        now: float,
    ) -> None:
        """Both Regions' tokens, or none (domain.quotas.other_region_charges)."""
        account_id, caller_region, _ = key
        region, quota, tokens = other_region_charges(operation, parameters)
        if region == caller_region or not is_region_name(region):
            if not bucket.take(now):
                raise self._refuse(key, bucket, now)
            return
        other_key = (account_id, region, quota)
        other = self._buckets.get(other_key) or self._new_bucket(other_key, now)
        if other.available(now) < tokens:
            raise self._refuse(other_key, other, now)
        if not bucket.take(now):
            raise self._refuse(key, bucket, now)
        other.take(now, tokens)

    def _new_bucket(self, key: tuple[str, str, str], now: float) -> _Bucket:
        rate = self.rates[key[2]]
        bucket = self._buckets[key] = _Bucket(rate, bucket_capacity(rate), now)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return bucket

    def _refuse(self, key: tuple[str, str, str], bucket: _Bucket, now: float) -> QuotaExceededError:
        """Count one refusal; the error to answer it with, marked to be recorded when it is
        the first of its bucket for ``record_seconds``."""
        self.throttled_total += 1
        self._throttled_since_summary += 1
        if key in self._refused or len(self._refused) < self.max_buckets:
            self._refused[key] = self._refused.get(key, 0) + 1
        quota = key[2]
        QUOTA_THROTTLED.labels(quota).inc()
        recorded = now - bucket.recorded_at >= self.record_seconds
        if recorded:
            bucket.recorded_at = now
        if now - self._summarised_at >= self.summary_seconds:
            self._summarise(now)
        return QuotaExceededError(quota, recorded=recorded)

    def _summarise(self, now: float) -> None:
        """One log line: how many calls were throttled, over how many (account, Region,
        quota), and the one throttled most."""
        top_key, top = max(self._refused.items(), key=lambda item: item[1], default=(None, 0))
        log.warning(
            "throttled %d call(s) over %d request quota(s) of an account and Region "
            "(most: account %s in %s over %s: %d); the next summary in %.0f s at the earliest",
            self._throttled_since_summary,
            len(self._refused),
            *(top_key or ("-", "-", "-")),
            top,
            self.summary_seconds,
        )
        self._refused.clear()
        self._throttled_since_summary = 0
        self._summarised_at = now
