"""The writer's session has autovacuum cancelled after 100 ms of waiting, not 1 s: after a
few hundred thousand appends, autovacuum of the events table held the lock every commit
needed, and commits with a 1 s deadline were answered 503 (seen in the chaos harness).
Since migrations/023 appends take no lock autovacuum conflicts with
(tests/infrastructure/test_append_function.py); this stays for a database not yet
migrated."""

from __future__ import annotations

import asyncio
from typing import Any

from app.infrastructure.event_store import WRITER_DEADLOCK_TIMEOUT
from tests.conftest import Service


def test_the_writers_session_waits_100_ms_before_autovacuum_is_cancelled(
    service: Service,
) -> None:
    writer = service.runtime.writer

    async def show() -> Any:
        conn = await writer.store.connection()
        return await (await conn.execute("SHOW deadlock_timeout")).fetchone()

    assert writer._loop is not None
    row = asyncio.run_coroutine_threadsafe(show(), writer._loop).result(timeout=10)

    assert row == (WRITER_DEADLOCK_TIMEOUT,)
