"""The log formats of app.support.logs: JSON lines carry a call's fields; text stays text."""

from __future__ import annotations

import io
import json
import logging
import queue
import time
from collections.abc import Callable

import pytest

from app.support.logs import (
    CALLS_LOGGER,
    BackgroundHandler,
    CallLine,
    LineWriter,
    call_message,
    formatter,
)
from app.support.metrics import LOG_LINES_DROPPED


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        CALLS_LOGGER, logging.INFO, __file__, 1, "kms %s", ("Encrypt",), None
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_carries_the_calls_fields_beside_time_level_and_logger() -> None:
    call = {"request_id": "r-1", "operation": "Encrypt", "outcome": "Success", "latency_ms": 1.5}
    line = json.loads(formatter("json").format(_record(call=call)))
    assert line["logger"] == CALLS_LOGGER
    assert line["level"] == "INFO"
    assert line["message"] == "kms Encrypt"
    assert line["time"].endswith("+00:00")
    assert {k: line[k] for k in call} == call


def test_the_text_format_is_one_human_line() -> None:
    text = formatter("text").format(_record(call={"request_id": "r-1"}))
    assert text.endswith(f"INFO {CALLS_LOGGER}: kms Encrypt")


def test_a_full_queue_drops_and_counts_a_line_instead_of_waiting() -> None:
    waiting: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = BackgroundHandler(waiting, limit=2)
    before = LOG_LINES_DROPPED._value.get()
    for _ in range(5):
        handler.handle(_record())
    assert waiting.qsize() == 2
    assert handler.dropped == 3
    assert LOG_LINES_DROPPED._value.get() - before == 3


def test_the_writing_thread_writes_every_waiting_line_in_order_before_it_stops() -> None:
    waiting: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = io.StringIO()
    writer = LineWriter(waiting, stream, logging.Formatter("%(message)s"))
    handler = BackgroundHandler(waiting)
    for number in range(2_500):  # more than one write's worth
        handler.handle(logging.LogRecord("t", logging.INFO, "", 0, "line %d", (number,), None))
    writer.start()
    writer.stop()
    assert not writer.is_alive()
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(2_500)]


def test_a_record_that_cannot_be_formatted_costs_its_own_line_only() -> None:
    waiting: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = io.StringIO()
    writer = LineWriter(waiting, stream, logging.Formatter("%(message)s"))
    waiting.put(logging.LogRecord("lib", logging.INFO, "", 0, "%d items", ("x",), None))
    waiting.put(logging.LogRecord("t", logging.INFO, "", 0, "after", (), None))
    writer.start()
    writer.stop()
    lines = stream.getvalue().splitlines()
    assert lines == ["(unformattable log record from lib: TypeError)", "after"]


def test_dropped_lines_are_on_the_metrics_page_of_a_single_process() -> None:
    from app.support.metrics import exposition

    assert "keyledger_log_lines_dropped_total " in exposition([]).decode()


CALL_FIELDS = {
    "request_id": "r-1",
    "source_ip": "192.0.2.7",
    "principal_arn": "arn:aws:iam::111122223333:user/alice",
    "source": "kms",
    "operation": "Encrypt",
    "key_arn": "arn:aws:kms:us-east-1:111122223333:key/k",
    "outcome": "Success",
    "latency_ms": 1.25,
}


def _through_logging(log_format: str, created: float) -> str:
    record = logging.LogRecord(
        CALLS_LOGGER, logging.INFO, "", 0, "%s", (call_message(CALL_FIELDS),), None
    )
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    record.call = CALL_FIELDS  # type: ignore[attr-defined]
    return formatter(log_format).format(record)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_call_line_reads_exactly_as_the_same_line_through_logging(log_format: str) -> None:
    """The event loop hands a call's fields over without a LogRecord; the writing thread
    must still write what `logging` would have."""
    created = 1_765_000_000.4567
    waiting: queue.SimpleQueue[CallLine] = queue.SimpleQueue()
    stream = io.StringIO()
    writer = LineWriter(waiting, stream, formatter(log_format))
    waiting.put(CallLine(created, dict(CALL_FIELDS)))
    writer.start()
    writer.stop()
    written = stream.getvalue().rstrip("\n")
    expected = _through_logging(log_format, created)
    if log_format == "json":
        assert json.loads(written) == json.loads(expected)
    else:
        assert written == expected
    assert "Encrypt Success 1.2ms principal=arn:aws:iam::111122223333:user/alice" in written


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_lines_put_while_the_writer_rests_go_out_in_one_write_not_one_wake_up_each() -> None:
    waiting: queue.SimpleQueue[object] = queue.SimpleQueue()
    stream = _CountingStream()
    writer = LineWriter(waiting, stream, logging.Formatter("%(message)s"), interval=0.2)
    writer.start()
    waiting.put(_record())
    _wait_for(lambda: stream.writes == 1)  # an idle writer's first line goes out at once
    for _ in range(200):  # while it rests
        waiting.put(_record())
    writer.stop()
    assert stream.getvalue().count("kms Encrypt\n") == 201
    assert stream.writes == 2


def test_a_writer_behind_by_more_than_one_write_does_not_rest_between_writes() -> None:
    waiting: queue.SimpleQueue[object] = queue.SimpleQueue()
    stream = _CountingStream()
    for _ in range(5_000):
        waiting.put(_record())
    writer = LineWriter(waiting, stream, logging.Formatter("%(message)s"), interval=10.0)
    writer.start()
    _wait_for(lambda: stream.getvalue().count("\n") == 5_000, seconds=5.0)
    writer.stop(timeout=0.0)
