"""The log formats of app.support.logs: JSON lines carry a call's fields; text stays text."""

from __future__ import annotations

import json
import logging
import queue

from app.support.logs import CALLS_LOGGER, BackgroundHandler, formatter
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
    waiting: queue.Queue[logging.LogRecord] = queue.Queue(2)
    handler = BackgroundHandler(waiting)
    before = LOG_LINES_DROPPED._value.get()
    for _ in range(5):
        handler.handle(_record())
    assert waiting.qsize() == 2
    assert handler.dropped == 3
    assert LOG_LINES_DROPPED._value.get() - before == 3
