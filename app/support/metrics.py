"""Prometheus metrics, correct under any number of workers (docs/operations.md, "Metrics").

``keyledger run --workers N`` gives its children a fresh ``PROMETHEUS_MULTIPROC_DIR``
(``prepare_multiprocess_directory``) before any of them imports prometheus_client: every
process then writes its counters and histograms to memory-mapped files there, and any
worker's /metrics sums them all, so a scrape answered by either worker gives the same
totals, which only increase (a dead worker's counts stay; its live gauges are dropped with
``mark_process_dead``). A single process keeps them in its own registry. What a call or a
writer batch counts is kept in plain numbers first and published in bulk (below,
"counted in plain numbers"): a file write per changed series per event-loop pass, not
several per call.

What is not a count (lags, the sealed state, the ledger's verification) is read when
/metrics is asked (``scrape_registry``): it is the same whichever worker answers.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import shutil
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from operator import attrgetter
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


class _Uncounted:
    def inc(self, amount: float = 1) -> None:
        pass


# ==== counted in plain numbers, published in bulk ================================================
# A multiprocess inc or observe takes a lock, checks the pid and writes a memory-mapped
# file (about a microsecond each, several per call). So what a call or a batch counts is
# kept in plain integers and floats here and published (flush_deferred_counts): at the end
# of the event loop's pass that counted it (one write per series for all the pass's calls,
# e.g. those a writer batch answered), before each scrape, once a second (_Publisher) and
# at exit. A crash loses at most what the last second counted (PUBLISH_INTERVAL_S).
PUBLISH_INTERVAL_S = 1.0


class _DeferredCount:
    """A count kept as a plain integer (a cache lookup costs an attribute increment),
    added to its Prometheus series by flush_deferred_counts."""

    __slots__ = ("__weakref__", "count", "published", "series")

    def __init__(self, series: Any) -> None:
        self.series = series
        self.count = 0
        self.published = 0

    def inc(self, amount: int = 1) -> None:
        self.count += amount

    def publish(self) -> None:
        total = self.count
        if total > self.published:
            self.series.inc(total - self.published)
            self.published = total


class _PlainHistogram:
    """One histogram series kept as plain numbers: the count in each bucket (not
    cumulative, as prometheus_client stores them) and the sum. ``publish`` sets the series'
    values that changed to these totals: the same floats the per-observation writes summed
    (the same additions, in the same order), so the page reads as before. Observed by one
    thread; published under ``_flushing`` from any, so each publish writes totals at least
    as new as the previous one's. (prometheus_client has no bulk update: values are set.)"""

    __slots__ = ("_published", "_series", "bounds", "buckets", "total")

    def __init__(self, series: Any, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * len(bounds)
        self.total = 0.0
        self._series = series  # labels() already called: the series shows (at 0) from now
        self._published = [0] * len(bounds)  # the buckets as last written

    def observe(self, value: float) -> None:
        """As Histogram.observe: into the first bucket whose bound is >= ``value`` (not NaN)."""
        self.total += value  # first: a bucket's count published implies its value summed
        self.buckets[bisect_left(self.bounds, value)] += 1

    def publish(self) -> bool:
        """Write the buckets that changed, and the sum; whether any had."""
        buckets = list(self.buckets)  # list(): one copy, taken before the sum
        if buckets == self._published:
            return False
        published, values = self._published, self._series._buckets
        for index, in_bucket in enumerate(buckets):
            if in_bucket != published[index]:
                values[index].set(float(in_bucket))
        self._series._sum.set(self.total)  # read after the buckets: at least their calls'
        self._published = buckets
        return True


def _bounds(buckets: tuple[float, ...]) -> tuple[float, ...]:
    return (*(float(bound) for bound in buckets), math.inf)  # as Histogram's upper bounds


_LATENCY_BOUNDS = _bounds(LATENCY_BUCKETS)


class _Calls(_PlainHistogram):
    """One (source, operation, outcome)'s answered calls: the latency histogram, and the
    requests counter, which is its count."""

    __slots__ = ("_requests",)

    def __init__(self, source: str, operation: str, outcome: str) -> None:
        super().__init__(REQUEST_SECONDS.labels(source, operation, outcome), _LATENCY_BOUNDS)
        self._requests = REQUESTS.labels(source, operation, outcome)

    def publish(self) -> bool:
        if not super().publish():
            return False
        self._requests._value.set(float(sum(self._published)))  # the calls just published
        return True


# Each label set's calls (the caller bounds the label values: so this stays bounded).
_calls: dict[tuple[str, str, str], _Calls] = {}
_deferred: weakref.WeakSet[_DeferredCount] = weakref.WeakSet()
_writers: weakref.WeakSet[WriterPublisher] = weakref.WeakSet()
_flushing = threading.Lock()
_publish_scheduled = False  # a flush is due at the end of the event loop's pass


def observe_call(source: str, operation: str, outcome: str, seconds: float) -> None:
    """Count one answered call and its latency (``seconds``: a duration, never NaN).
    The caller bounds the labels' values (an operation name is one of the protocol's).
    In the shared files by the end of the event loop's pass that answered the call."""
    calls = _calls.get((source, operation, outcome))
    if calls is None:
        calls = _calls[(source, operation, outcome)] = _Calls(source, operation, outcome)
        _start_publisher()
    calls.total += seconds  # _PlainHistogram.observe, inlined: this is every call's path
    calls.buckets[bisect_left(_LATENCY_BOUNDS, seconds)] += 1
    if not _publish_scheduled:
        _schedule_flush()


def _schedule_flush() -> None:
    """Flush once the event loop's current pass is done (now, outside an event loop)."""
    global _publish_scheduled
    _publish_scheduled = True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop in this thread: no pass to batch with
        flush_deferred_counts()
        return
    # (A loop closed before running it leaves the flag set: the publisher's next flush,
    # within a second, clears it.)
    loop.call_soon(flush_deferred_counts)


def flush_deferred_counts() -> None:
    """Publish everything counted in plain numbers since the last flush: the calls, the
    writers' counters and batch histograms, the cache lookups."""
    global _publish_scheduled
    with _flushing:
        _publish_scheduled = False  # before reading: a later count schedules another flush
        for calls in list(_calls.values()):
            calls.publish()
        for writer in list(_writers):
            writer.flush()
        for deferred in list(_deferred):
            deferred.publish()


def cache_counters(cache: str | None) -> tuple[Any, Any]:
    """The (hit, miss) counters of one cache, bound once by the cache's owner: a lookup
    then costs one integer increment, published by flush_deferred_counts (at the end of the
    event loop's pass of a call or a writer batch, at scrape time, once a second). None: a
    cache not counted (one a test builds)."""
    if cache is None:
        return _Uncounted(), _Uncounted()
    counts = (
        _DeferredCount(CACHE_LOOKUPS.labels(cache, "hit")),
        _DeferredCount(CACHE_LOOKUPS.labels(cache, "miss")),
    )
    _deferred.update(counts)
    _start_publisher()
    return counts


# The writer's WriterStats fields that WRITER_COUNTERS publish, then those the aggregates
# cache's lookups are counted from.
_WRITER_FIELDS = (*WRITER_COUNTERS, "cache_hits", "loads")
_writer_totals = attrgetter(*_WRITER_FIELDS)
_COMMANDS = _WRITER_FIELDS.index("commands")
_COMMIT_SECONDS = _WRITER_FIELDS.index("commit_seconds")
_BATCH_SIZE_BOUNDS = _bounds(BATCH_SIZE_BUCKETS)


def _new_writer_histograms() -> list[_PlainHistogram]:
    return [
        _PlainHistogram(BATCH_SIZE, _BATCH_SIZE_BOUNDS),
        _PlainHistogram(BATCH_COMMIT_SECONDS, _LATENCY_BOUNDS),
    ]


# The batch-size and commit-time series are the process's, not a writer's: published by
# setting their values to totals, one histogram per writer would overwrite another's (a
# process may run several writers, one after another or at once, each on its own thread).
_writer_histograms = _new_writer_histograms()
_writer_histograms_lock = threading.Lock()


class WriterPublisher:
    """Publishes a writer's running totals (app.infrastructure.writer.WriterStats): what
    grew since the previous batch, and the batch's size and commit time, noted in plain
    numbers per batch and published by flush_deferred_counts (scheduled at the batch's end)."""

    def __init__(self) -> None:
        self._last = (0,) * len(_WRITER_FIELDS)  # WriterStats' values at the last batch
        self._gained = [0.0] * len(WRITER_COUNTERS)  # what WRITER_COUNTERS are owed, in all
        self._published = [0.0] * len(WRITER_COUNTERS)
        self._commands = 0.0  # the writer's commands at its last batch
        self._commands_published = 0.0
        self._cache_hits, self._cache_misses = cache_counters("aggregates")
        _writers.add(self)

    def publish(self, stats: Any) -> None:
        """Note one batch (on the writer's thread): plain arithmetic, no file written."""
        current, last = _writer_totals(stats), self._last
        gained = self._gained
        for index in range(len(gained)):
            delta = current[index] - last[index]
            if delta > 0:  # (a writer's stats never decrease; a new writer's start at 0)
                gained[index] += delta
        commands = current[_COMMANDS] - last[_COMMANDS]
        committed = current[_COMMIT_SECONDS] - last[_COMMIT_SECONDS]
        if commands > 0 or committed > 0:
            with _writer_histograms_lock:
                if commands > 0:
                    _writer_histograms[0].observe(commands)
                if committed > 0:
                    _writer_histograms[1].observe(committed)
        if commands > 0:
            self._commands = float(current[_COMMANDS])
        hits, misses = current[-2] - last[-2], current[-1] - last[-1]
        if hits > 0:
            self._cache_hits.inc(hits)
        if misses > 0:
            self._cache_misses.inc(misses)
        self._last = current
        if not _publish_scheduled:
            _schedule_flush()

    def flush(self) -> None:
        """Write what the batches noted (under _flushing: see flush_deferred_counts)."""
        for index, counter in enumerate(WRITER_COUNTERS.values()):
            total = self._gained[index]
            if total > self._published[index]:
                counter.inc(total - self._published[index])
                self._published[index] = total
        for histogram in _writer_histograms:  # (several writers: published by each, alike)
            histogram.publish()
        commands = self._commands
        if commands != self._commands_published:
            WORKER_COMMANDS.labels("ledger").set(commands)
            self._commands_published = commands


class _Publisher(threading.Thread):
    """Flushes once a second, so that an idle worker's last counts (which no loop pass,
    batch or scrape of its own flushes) show in every worker's /metrics within a second."""

    def __init__(self) -> None:
        super().__init__(name="keyledger-metrics", daemon=True)

    def run(self) -> None:
        while True:
            time.sleep(PUBLISH_INTERVAL_S)
            flush_deferred_counts()


_publisher: _Publisher | None = None
_starting = threading.Lock()


def _start_publisher() -> None:
    """Start this process's publisher, once (on a new series' path, never a call's)."""
    global _publisher
    with _starting:
        if _publisher is None:
            _publisher = _Publisher()
            _publisher.start()


def _after_fork_in_child() -> None:
    """A forked child counts from zero into files of its own (prometheus_client's pid
    check): what the parent counted, published or not, is the parent's to publish. The
    publisher thread did not survive the fork, and a lock it held would never be freed."""
    global _flushing, _starting, _publisher, _publish_scheduled
    _flushing, _starting = threading.Lock(), threading.Lock()
    _publish_scheduled = False
    _calls.clear()
    for deferred in list(_deferred):
        deferred.published = deferred.count
    for writer in list(_writers):
        writer._published = list(writer._gained)
        writer._commands_published = writer._commands
    _writer_histograms[:] = _new_writer_histograms()
    if _publisher is not None:
        _publisher = None
        _start_publisher()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush_deferred_counts)  # a normal exit (a worker's SIGTERM too) loses nothing


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
