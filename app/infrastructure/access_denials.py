"""The denial log: one append-only row per denied request (table ``access_denials``).

A denied request changes nothing in the ledger, so its trace is kept here instead of in the
key's stream, where unauthorised callers could bloat it. Records are queued and written by a
background thread in batches, so the writer thread never waits on this table; ``flush``
waits until everything queued is stored. The CloudTrail-shaped audit trail reads this table.
"""

from __future__ import annotations

import logging
import queue
import threading

from psycopg_pool import ConnectionPool

from app.ports import DenialRecord

log = logging.getLogger("keyledger.access")

BATCH = 500
# Records waiting for the table. While the database is away they pile up; past this many
# the newest are dropped (counted and logged) rather than growing the process's memory.
MAX_PENDING = 50_000
INSERT = (
    "INSERT INTO access_denials (denied_at, request_id, principal_arn, account_id, action,"
    " resource_arn, error_code, message, source_ip, access_key_id, via_service)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (request_id, action, resource_arn) DO NOTHING"
)


class DenialLog:
    def __init__(self, pool: ConnectionPool, *, max_pending: int = MAX_PENDING) -> None:
        self._pool = pool
        self._queue: queue.SimpleQueue[DenialRecord | None] = queue.SimpleQueue()
        self._pending = 0
        self._max_pending = max_pending
        self.dropped = 0  # records not stored because the queue was full
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, record: DenialRecord) -> None:
        """Queue one record; returns at once."""
        if self._closed:
            log.warning("denial of %s after shutdown not recorded", record.request_id)
            return
        with self._idle:
            if self._pending >= self._max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.error(
                        "denial log full (%d waiting): %d record(s) dropped",
                        self._pending,
                        self.dropped,
                    )
                return
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="denial-log", daemon=True)
                self._thread.start()
        self._queue.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is stored (or failed and logged)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self) -> None:
        self.flush()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                with self._pool.connection() as conn, conn.cursor() as cursor:
                    cursor.executemany(INSERT, [record.row() for record in batch])
            except Exception as error:
                log.error("could not store %d denial record(s): %s", len(batch), error)
            finally:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()

    def query(
        self,
        *,
        principal_arn: str | None = None,
        resource_arn: str | None = None,
        account_id: str | None = None,
        limit: int = 100,
    ) -> list[DenialRecord]:
        """Newest first, filtered by principal and resource; with ``account_id``, only the
        denials of that account's principals or on that account's keys."""
        self.flush()
        clauses, params = [], []
        for column, value in (("principal_arn", principal_arn), ("resource_arn", resource_arn)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if account_id is not None:
            clauses.append("(account_id = %s OR split_part(resource_arn, ':', 5) = %s)")
            params += [account_id, account_id]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT denied_at, request_id, principal_arn, account_id, action, resource_arn,"
                " error_code, message, source_ip, access_key_id, via_service"
                f" FROM access_denials{where} ORDER BY id DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
        return [DenialRecord(*row) for row in rows]
