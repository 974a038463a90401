"""Prometheus metrics, correct under any number of workers (docs/operations.md, "Metrics").

``keyledger run --workers N`` gives its children a fresh ``PROMETHEUS_MULTIPROC_DIR``
(``prepare_multiprocess_directory``) before any of them imports prometheus_client: every
process then writes its counters and histograms to memory-mapped files there, and any
worker's /metrics sums them all, so a scrape answered by either worker gives the same
totals, which only increase (a dead worker's counts stay; its live gauges are dropped with
``mark_process_dead``). A single process keeps them in its own registry.

What is not a count (lags, the sealed state, the ledger's verification) is read when
/metrics is asked (``scrape_registry``): it is the same whichever worker answers.
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From a cached Encrypt (~1 ms) to a call that waited out the database's deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "keyledger_requests",
    "API calls answered, by source (kms, cloudtrail, sts, iam, keyledger, xks), "
    "operation and outcome (Success or the error code)",
    ["source", "operation", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "keyledger_request_seconds",
    "Time from the call's start to its answer, by source, operation and outcome",
    ["source", "operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "keyledger_writer_batch_size",
    "Commands the writer answered per group-commit batch",
    buckets=BATCH_SIZE_BUCKETS,
)
BATCH_COMMIT_SECONDS = Histogram(
    "keyledger_writer_batch_commit_seconds",
    "Time to commit one batch's events",
    buckets=LATENCY_BUCKETS,
)
# The writer's WriterStats fields, published as counters of the same meaning.
WRITER_COUNTERS = {
    "commands": Counter("keyledger_writer_commands", "Commands the writer ran"),
    "batches": Counter("keyledger_writer_batches", "Batches that committed events"),
    "events": Counter("keyledger_writer_events", "Events committed"),
    "conflicts": Counter("keyledger_writer_conflicts", "Batches run again after a conflict"),
    "commit_seconds": Counter("keyledger_writer_commit_seconds", "Time spent committing"),
    "retries": Counter(
        "keyledger_writer_retries",
        "Batch attempts run again after the database failed to answer",
    ),
    "settled": Counter("keyledger_writer_settled", "Lost commits found to have landed"),
    "unavailable": Counter("keyledger_writer_unavailable", "Commands answered 503: no database"),
}
CACHE_LOOKUPS = Counter(
    "keyledger_cache_lookups",
    "Lookups of the process's caches by cache (aggregates: the writer's keys; credentials "
    "and principals: SigV4's; wrapping_keys and materials: the vault's) and result (hit, "
    "miss: read from the database, or unwrapped)",
    ["cache", "result"],
)
LOG_LINES_DROPPED = Counter(
    "keyledger_log_lines_dropped",
    "Log lines dropped because 100,000 were already waiting for the writing thread",
)
QUOTA_THROTTLED = Counter(
    "keyledger_quota_throttled",
    "Calls refused ThrottlingException over an account's request quota in a Region, by "
    'quota (docs/operations.md, "Request quotas")',
    ["quota"],
)
# Labelled, so that a process whose writer ran nothing (the projection's) has no series.
WORKER_COMMANDS = Gauge(
    "keyledger_worker_commands",
    "Commands each live worker's writer ran (pid label under --workers N)",
    ["writer"],
    multiprocess_mode="liveall",
)


class _Uncounted:
    def inc(self, amount: float = 1) -> None:
        pass


class _DeferredCount:
    """A count kept as a plain integer and added to its Prometheus series by
    flush_deferred_counts (after each writer batch, and before each scrape): a cache
    lookup costs an attribute increment, not the multiprocess value's lock and file write
    (about a microsecond, several times a call)."""

    __slots__ = ("__weakref__", "count", "published", "series")

    def __init__(self, series: Any) -> None:
        self.series = series
        self.count = 0
        self.published = 0

    def inc(self, amount: int = 1) -> None:
        self.count += amount


_deferred: weakref.WeakSet[_DeferredCount] = weakref.WeakSet()
_flushing = threading.Lock()


def flush_deferred_counts() -> None:
    """Add what each deferred count gained since the last flush to its series."""
    with _flushing:
        for deferred in list(_deferred):
            total = deferred.count
            if total > deferred.published:
                deferred.series.inc(total - deferred.published)
                deferred.published = total


def cache_counters(cache: str | None) -> tuple[Any, Any]:
    """The (hit, miss) counters of one cache, bound once by the cache's owner: a lookup
    then costs one integer increment, published with the writer's batches and at scrape
    time (flush_deferred_counts). None: a cache not counted (one a test builds)."""
    if cache is None:
        return _Uncounted(), _Uncounted()
    counts = (
        _DeferredCount(CACHE_LOOKUPS.labels(cache, "hit")),
        _DeferredCount(CACHE_LOOKUPS.labels(cache, "miss")),
    )
    _deferred.update(counts)
    return counts


def prepare_multiprocess_directory(data_dir: Path) -> Path:
    """Empty (or create) the directory the service's processes share their metrics in and
    name it in this process's environment, which the children inherit. Old files would
    add a previous run's counts to this one's."""
    directory = Path(os.environ.get(MULTIPROCESS_ENV) or data_dir / "metrics").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    return directory


def mark_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges; its counts stay in the totals."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)


def observe_call(source: str, operation: str, outcome: str, seconds: float) -> None:
    """Count one answered call and its latency (the per-request work: one of each).
    The caller bounds the labels' values (an operation name is one of the protocol's)."""
    series = _series.get((source, operation, outcome))
    if series is None:
        series = _series[(source, operation, outcome)] = (
            REQUESTS.labels(source, operation, outcome),
            REQUEST_SECONDS.labels(source, operation, outcome),
        )
    series[0].inc()
    series[1].observe(seconds)


# Each label set's series, looked up once (labels() takes a lock and builds a key per call).
_series: dict[tuple[str, str, str], tuple[Any, Any]] = {}


@dataclass
class _Published:
    """What the writer's counters said at the last publish (WriterStats' numeric fields)."""

    values: dict[str, float]


class WriterPublisher:
    """Publishes a writer's running totals (app.infrastructure.writer.WriterStats) once per
    batch: the deltas since the previous batch, so the hot path keeps plain integers."""

    def __init__(self) -> None:
        self._last = _Published({})
        self._cache_hits, self._cache_misses = cache_counters("aggregates")

    def publish(self, stats: Any) -> None:
        current = {f.name: float(getattr(stats, f.name)) for f in fields(stats)}
        last = self._last.values
        for name, counter in WRITER_COUNTERS.items():
            delta = current.get(name, 0.0) - last.get(name, 0.0)
            if delta > 0:
                counter.inc(delta)
        commands = current.get("commands", 0.0) - last.get("commands", 0.0)
        if commands > 0:
            BATCH_SIZE.observe(commands)
            WORKER_COMMANDS.labels("ledger").set(current.get("commands", 0.0))
        committed = current.get("commit_seconds", 0.0) - last.get("commit_seconds", 0.0)
        if committed > 0:
            BATCH_COMMIT_SECONDS.observe(committed)
        self._publish_cache(current, last)
        self._last = _Published(current)
        flush_deferred_counts()

    def _publish_cache(self, current: dict[str, float], last: dict[str, float]) -> None:
        hits = current.get("cache_hits", 0.0) - last.get("cache_hits", 0.0)
        misses = current.get("loads", 0.0) - last.get("loads", 0.0)
        if hits > 0:
            self._cache_hits.inc(hits)
        if misses > 0:
            self._cache_misses.inc(misses)


class _Snapshot:
    """A collector of metrics read at scrape time."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def scrape_registry(read_now: Iterable[Metric]) -> CollectorRegistry:
    """The registry a /metrics answer is made from: every process's counts (multiprocess
    mode) or this process's, and ``read_now``."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in _KEYLEDGER_COLLECTORS:
            registry.register(collector)
    registry.register(_Snapshot(read_now))
    return registry


# This process's KeyLedger metrics (not the default registry's process and platform
# collectors, which multiprocess mode lacks too).
_KEYLEDGER_COLLECTORS = (
    REQUESTS,
    REQUEST_SECONDS,
    BATCH_SIZE,
    BATCH_COMMIT_SECONDS,
    CACHE_LOOKUPS,
    QUOTA_THROTTLED,
    LOG_LINES_DROPPED,
    WORKER_COMMANDS,
    *WRITER_COUNTERS.values(),
)


def exposition(read_now: Iterable[Metric]) -> bytes:
    """The Prometheus text format of the registry above."""
    flush_deferred_counts()
    return generate_latest(scrape_registry(read_now))
