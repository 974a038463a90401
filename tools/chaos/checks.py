"""The per-call invariants every hostile or fuzzed request is held to.

* no 5xx, and an answer within the client's timeout;
* every error in AWS's shape: a JSON object with ``__type`` and ``message``;
* a rejected request (4xx) leaves the ledger unchanged. Refused calls are recorded too, as
  one ``AuditedCall.CallRecorded`` event in a stream of its own, so "unchanged" means:
  the events appended while the call ran are at most that one record, in the stream
  `domain.audit.audited_call_id` gives the call's request id (AWS JSON; the REST API's
  request id is checked the same way when it answers one), and nothing else: no key,
  alias, grant, policy or identity event. The record itself is bounded: no larger than
  `RECORD_FACTOR` times the request that caused it plus `RECORD_OVERHEAD`, so a refused
  request never makes the ledger grow by much more than it sent (the service's body
  limits bound that in turn);
* every call's record is committed before the call is answered (a record that shows up
  only in a later call's window is late).

The harness calls one request at a time while these run (nothing else appends events:
the service's scheduler is set to run hourly), so "appended while the call ran" is
"appended after the previous call's answer".
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.utils import get_topic

from domain.audit import AuditedCall, audited_call_id
from tools.chaos.clients import Reply, is_aws_error_shape
from tools.chaos.service import Postgres

CALL_RECORDED = get_topic(AuditedCall.CallRecorded)
# A refused call's record may hold what the request sent twice over (JSON escapes double a
# control character sent as %XX in a URL), plus what the service adds: caller, time, and
# an error message of up to 1,024 characters (6 bytes each when escaped).
RECORD_FACTOR = 2
RECORD_OVERHEAD = 8192
RECORDS_PER_CALL = 4  # the record streams a call may use (audited_call_id's sequence)
RECENT_CALLS = 40_000  # record streams remembered (4 per call)
EXAMPLES = 5


@dataclass
class Issues:
    """Failures of one kind: how many, and the first few."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(text[:400])

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "examples": self.examples}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    notification_id: int
    originator_id: str
    topic: str
    size: int


class LedgerWatch:
    """The events appended since the last look (the harness's own connection)."""

    def __init__(self, postgres: Postgres) -> None:
        self._postgres = postgres
        self._conn: psycopg.Connection[Any] | None = None
        self.head = 0
        self.head = self.current_head()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._postgres.url(), autocommit=True, connect_timeout=5)
            self._conn.execute("SET statement_timeout = 10000")
        return self._conn

    def current_head(self) -> int:
        row = (
            self._connection()
            .execute("SELECT coalesce(max(notification_id), 0) FROM keyledger_events")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def since(self) -> list[StoredEvent]:
        rows = (
            self._connection()
            .execute(
                "SELECT notification_id, originator_id::text, topic, octet_length(state)"
                " FROM keyledger_events WHERE notification_id > %s ORDER BY notification_id"
                " LIMIT 10000",
                (self.head,),
            )
            .fetchall()
        )
        events = [StoredEvent(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
        if events:
            self.head = events[-1].notification_id
        return events

    def records_since(self, head: int) -> tuple[int, int]:
        """(count, largest size in bytes) of the call records appended after ``head``."""
        row = (
            self._connection()
            .execute(
                "SELECT count(*), coalesce(max(octet_length(state)), 0) FROM keyledger_events"
                " WHERE notification_id > %s AND topic = %s",
                (head, CALL_RECORDED),
            )
            .fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class CallChecks:
    """Holds each call to the invariants above and counts what failed."""

    def __init__(self, watch: LedgerWatch) -> None:
        self.watch = watch
        self.calls = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.server_errors = Issues()
        self.no_answer = Issues()
        self.bad_shape = Issues()
        self.ledger_changed = Issues()
        self.unbounded_records = Issues()
        self.late_records = Issues()
        self.largest_record = 0  # bytes, of a refused call's record
        # The record streams of recent calls (a record that shows up in a later call's
        # window is late), and the refused calls whose record has not shown up (yet).
        self._recent: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._unrecorded: dict[str, str] = {}

    def check(self, what: str, reply: Reply, *, aws_json: bool, request_bytes: int) -> None:
        self.calls += 1
        self.statuses[reply.status] += 1
        label = f"{what} -> {reply.describe(200)}"
        if reply.status <= 0:
            self.no_answer.add(label)
        elif reply.status >= 500:
            self.server_errors.add(label)
        if reply.status >= 300 and not is_aws_error_shape(reply, aws_json=aws_json):
            self.bad_shape.add(label)
        if aws_json and reply.status == 200 and not isinstance(reply.json(), dict):
            self.bad_shape.add(f"{what}: a success that is not a JSON object")
        if reply.status > 0 and not reply.request_id and aws_json:
            self.bad_shape.add(f"{what}: no x-amzn-RequestId header")
        streams = (
            {str(audited_call_id(reply.request_id, n)) for n in range(RECORDS_PER_CALL)}
            if reply.request_id
            else set()
        )
        events = self.watch.since()
        mine: list[StoredEvent] = []
        foreign: list[StoredEvent] = []
        for event in events:
            if event.topic != CALL_RECORDED:
                continue
            if event.originator_id in streams or not reply.request_id:
                mine.append(event)
            elif event.originator_id in self._recent:
                earlier = self._recent[event.originator_id]
                self.late_records.add(f"{earlier}: its record was committed after its answer")
                self._unrecorded.pop(event.originator_id, None)
            else:
                foreign.append(event)
        for stream in streams:
            self._recent[stream] = what
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)
        if 400 <= reply.status < 500:
            others = [e for e in events if e.topic != CALL_RECORDED]
            self._rejected(what, reply, others, mine, foreign, request_bytes)

    def _rejected(
        self,
        what: str,
        reply: Reply,
        others: list[StoredEvent],
        mine: list[StoredEvent],
        foreign: list[StoredEvent],
        request_bytes: int,
    ) -> None:
        answered = f"{what} answered {reply.status}"
        if others:
            topics = ", ".join(sorted({e.topic.rsplit(":", 1)[-1] for e in others}))
            self.ledger_changed.add(f"{answered} but appended {topics}")
        if foreign:
            self.ledger_changed.add(f"{answered}: {len(foreign)} record(s) of no call it made")
        if len(mine) > 1:
            self.ledger_changed.add(f"{answered} with {len(mine)} records")
        if not mine and reply.request_id:
            self._unrecorded[str(audited_call_id(reply.request_id))] = answered
        for record in mine:
            self.largest_record = max(self.largest_record, record.size)
            if record.size > RECORD_FACTOR * request_bytes + RECORD_OVERHEAD:
                self.unbounded_records.add(
                    f"{what}: a {request_bytes:,}-byte request left a {record.size:,}-byte record"
                )

    def call_of(self, stream: str) -> str:
        """The recent call whose record is in ``stream`` ("" if none is known)."""
        return self._recent.get(stream, "")

    def unrecorded(self) -> Issues:
        """Refused calls that left no record at all (informational)."""
        issues = Issues()
        for what in self._unrecorded.values():
            issues.add(f"{what}: no call record")
        return issues

    def invariants(self) -> dict[str, Issues]:
        return {
            "5xx": self.server_errors,
            "no answer (timeout or connection lost)": self.no_answer,
            "error not in AWS shape": self.bad_shape,
            "rejected call changed the ledger": self.ledger_changed,
            f"refused call's record over {RECORD_FACTOR}x its request + "
            f"{RECORD_OVERHEAD // 1024} KiB": self.unbounded_records,
            "call record committed after the answer": self.late_records,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            **{name: issues.as_json() for name, issues in self.invariants().items()},
            "rejected calls without a record (informational)": self.unrecorded().as_json(),
            "largest refused call record (bytes)": self.largest_record,
        }
