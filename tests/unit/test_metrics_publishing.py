"""Per-call metrics are plain numbers in the process that counts them, published to the
Prometheus series in bulk (app/support/metrics.py): at the end of the event loop's pass
that answered the calls, before a scrape, once a second and at exit. /metrics reads as if
each call had been written at once: the same series, labels and values (docs/operations.md,
"Metrics"). Across worker processes: tests/operations/test_metrics_across_workers.py."""

from __future__ import annotations

import asyncio

from app.support.metrics import exposition, flush_deferred_counts, observe_call
from tests.support.prometheus_pages import expected_buckets, samples


def test_calls_counted_then_published_show_with_their_count_buckets_and_sum() -> None:
    latencies = [0.0004, 0.0007, 0.003, 0.003, 0.2, 7.0]
    for seconds in latencies:
        observe_call("kms", "Encrypt", "PublishedInOneProcess", seconds)
    page = exposition([]).decode()
    labels = {"source": "kms", "operation": "Encrypt", "outcome": "PublishedInOneProcess"}
    assert samples(page, "keyledger_requests_total", **labels) == {"": 6.0}
    assert samples(page, "keyledger_request_seconds_bucket", **labels) == expected_buckets(
        latencies
    )
    assert samples(page, "keyledger_request_seconds_count", **labels) == {"": 6.0}
    [total] = samples(page, "keyledger_request_seconds_sum", **labels).values()
    assert total == sum(latencies)  # the same additions in the same order as per call


def test_a_bound_itself_falls_in_its_own_bucket_as_prometheus_client_puts_it() -> None:
    observe_call("kms", "Decrypt", "OnTheBound", 0.001)
    page = exposition([]).decode()
    buckets = samples(page, "keyledger_request_seconds_bucket", outcome="OnTheBound")
    assert buckets["0.0005"] == 0.0
    assert buckets["0.001"] == 1.0


def test_calls_answered_in_an_event_loop_pass_are_published_by_its_end() -> None:
    from app.support.metrics import REQUESTS

    series = REQUESTS.labels("kms", "Encrypt", "PublishedByThePassEnd")
    flush_deferred_counts()  # nothing left due from an earlier test's event loop

    async def answer_calls() -> float:
        for _ in range(3):
            observe_call("kms", "Encrypt", "PublishedByThePassEnd", 0.002)
        await asyncio.sleep(0)  # the pass ends: no scrape, no second of the publisher's
        return float(series._value.get())

    assert asyncio.run(answer_calls()) == 3.0


def test_batches_of_two_writers_in_one_process_add_up_in_the_histogram() -> None:
    from app.infrastructure.writer import WriterStats
    from app.support.metrics import WriterPublisher

    samples = (
        'keyledger_writer_batch_size_bucket{le="1.0"}',
        'keyledger_writer_batch_size_bucket{le="4.0"}',
        "keyledger_writer_batch_size_count",
    )
    before = {sample: _value(exposition([]).decode(), sample) for sample in samples}
    first, second = WriterStats(), WriterStats()
    first_publisher, second_publisher = WriterPublisher(), WriterPublisher()
    first.commands, first.batches = 3, 1
    first_publisher.publish(first)  # a batch of 3
    exposition([])
    second.commands, second.batches = 4, 1
    second_publisher.publish(second)  # then another writer's batch of 4: the same bucket
    page = exposition([]).decode()
    gained = {sample: _value(page, sample) - before[sample] for sample in samples}
    assert gained == dict(zip(samples, (0.0, 2.0, 2.0), strict=True))


def _value(page: str, sample: str) -> float:
    """The value of one sample given in full (name and labels), 0 if absent."""
    for line in page.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_writer_batch_noted_then_published_shows_in_its_counters_and_histogram() -> None:
    from app.infrastructure.writer import WriterStats
    from app.support.metrics import WriterPublisher

    samples = (
        "keyledger_writer_commands_total",
        "keyledger_writer_batches_total",
        'keyledger_writer_batch_size_bucket{le="2.0"}',
        'keyledger_writer_batch_size_bucket{le="4.0"}',
        "keyledger_writer_batch_size_count",
    )
    page = exposition([]).decode()
    before = {sample: _value(page, sample) for sample in samples}
    stats, publisher = WriterStats(), WriterPublisher()
    stats.commands, stats.batches, stats.commit_seconds = 3, 1, 0.002
    publisher.publish(stats)  # one batch of 3 commands
    page = exposition([]).decode()
    gained = {sample: _value(page, sample) - before[sample] for sample in samples}
    assert gained == dict(zip(samples, (3.0, 1.0, 0.0, 1.0, 1.0), strict=True))
