"""The projection runner is exactly-once and resumable: killed mid-stream (SIGKILL, no
chance to clean up) and started again, it leaves views identical to a full replay."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from app.auth.credentials import Caller
from app.bootstrap import Runtime
from app.usecases.keys import CreateKeyRequest
from projections.replay import replay
from tests.conftest import ACCOUNT_ID, REGION

REPO = Path(__file__).resolve().parents[2]
EVENTS = 3000


def _fill(runtime: Runtime) -> int:
    """Thousands of events of several kinds (Used mostly, as in production)."""
    admin = Caller(
        ACCOUNT_ID,
        f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
        "AKLGTEST",
        REGION,
        source_ip="192.0.2.1",
        user_agent="crash-test",
    )
    service = runtime.service

    async def fill() -> None:
        keys = [
            (await service.keys.create_key(admin, CreateKeyRequest(description=f"k{n}"))).key_id
            for n in range(5)
        ]
        await service.keys.disable_key(admin, keys[4])
        for round_ in range(EVENTS // 100):
            await asyncio.gather(
                *(
                    service.crypto.encrypt(admin, keys[n % 4], b"x", {"round": str(round_)})
                    for n in range(100)
                )
            )
        await service.keys.describe_key(admin, keys[0])

    asyncio.run(fill())
    return int(runtime.ledger.recorder.max_notification_id() or 0)


def _position(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT notification_id FROM projection_tracking WHERE projection_name = 'audit_trail'"
        ).fetchone()
    return int(row[0]) if row else 0


def _runner(url: str) -> subprocess.Popen[Any]:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "app", "projections", "run", "--batch-size", "25"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.002)


def test_a_runner_killed_mid_stream_resumes_to_views_identical_to_a_replay(
    quiet_ledger: Runtime,
) -> None:
    url = quiet_ledger.database_url
    head = _fill(quiet_ledger)
    assert head > EVENTS
    runner = _runner(url)
    try:
        _wait(lambda: _position(url) > head // 5)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    killed_at = _position(url)
    assert 0 < killed_at < head, "the runner must be killed mid-stream"
    runner = _runner(url)
    try:
        _wait(lambda: _position(url) >= head)
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT notification_id) FROM audit_events"
        ).fetchone()
        assert row is not None and row[0] == row[1]  # no record twice
        encrypts = conn.execute(
            "SELECT count(*) FROM audit_events WHERE event_name = 'Encrypt'"
        ).fetchone()
        assert encrypts is not None and encrypts[0] == EVENTS
    result = replay(quiet_ledger.ledger, url)
    assert result.identical, result.report()
    assert result.positions["audit_trail"] == head
