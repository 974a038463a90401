"""The denial log's queue is bounded: while the database is away, records past the bound
are dropped and counted instead of growing the process's memory."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import ConnectionPool

from app.infrastructure.access_denials import DenialLog
from app.ports import DenialRecord


def _denial(n: int) -> DenialRecord:
    return DenialRecord(
        datetime.now(UTC),
        f"req-{n}",
        "arn:aws:iam::111122223333:user/x",
        "111122223333",
        "kms:Decrypt",
        "*",
        "AccessDeniedException",
        "denied",
    )


def test_records_past_the_bound_are_dropped_and_counted_while_the_database_is_away():
    # A pool that cannot connect: every batch fails after its connection time-out.
    pool = ConnectionPool(
        "postgresql://nobody@127.0.0.1:1/none", min_size=0, max_size=1, open=True, timeout=30
    )
    log = DenialLog(pool, max_pending=10)
    try:
        for n in range(25):
            log.record(_denial(n))
        assert log.dropped == 15
        assert log._pending == 10
    finally:
        log._closed = True
        pool.close(timeout=0)
