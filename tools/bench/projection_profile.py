"""The CPU the audit trail projection costs per ``Used`` event, in Python and in PostgreSQL.

``python -m tools.bench.projection_profile [--events 20000] [--batch 500] [--rounds 3]
[--profile FILE] [--data-dir DIR]`` creates a database of its own on the embedded
PostgreSQL of ``--data-dir``, writes a few keys and then ``--events`` uses of them through
the real use-case layer and group-commit writer (Encrypt, Decrypt and GenerateDataKey by
key id, alias and ARN, with encryption contexts: exactly what the service stores), and
then, each round, runs the audit trail's catch-up over those events in batches of
``--batch`` (a pass under load sees a few hundred), from the same starting point. It
prints, per event, the CPU of the thread that runs the catch-up (reading the batch,
decoding, shaping the records, COPY and upserts) and of the PostgreSQL server's processes
(psutil), the median of the rounds; and, apart, what decoding the events alone costs.
``--profile`` writes a cProfile (of the thread's CPU time) of one more round
(``python -m pstats FILE``).

Thread and process CPU time, not wall time: steady on a busy machine. The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import logging
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from eventsourcing.persistence import Notification

from app.auth.credentials import Caller
from app.bootstrap import Runtime
from app.settings import load_settings
from app.usecases.keys import CreateKeyRequest
from projections.audit_trail import PROJECTION_NAME, AuditTrailProjection
from tools.bench.scenarios import provenance

ACCOUNT_ID = "111122223333"
REGION = "us-east-1"
IN_FLIGHT = 64  # calls at once while seeding, as the suite's hot cells
# What boto3 sends: the records keep it (up to 1,024 characters).
USER_AGENT = (
    "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.11.7"
    " md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.0"
)
AUDIT_ROWS = (
    "audit_event_rows",
    "audit_record_templates",
    "audit_usage_hourly",
    "audit_key_last_usage",
)


@dataclass
class Round:
    python_us: float  # per event: the catch-up thread's CPU
    postgres_us: float  # per event: the PostgreSQL server's processes' CPU
    batches: int
    wal_bytes: float  # per event: the WAL the round wrote (the cluster's, nothing else runs)
    row_bytes: float  # per record: an audit_event_rows row's size


def _caller() -> Caller:
    return Caller(
        ACCOUNT_ID,
        f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
        "AKLGPROFILE000000001",
        REGION,
        source_ip="192.0.2.10",
        user_agent=USER_AGENT,
    )


async def _seed(runtime: Runtime, keys: int, events: int) -> tuple[list[str], list[str]]:
    """Create ``keys`` keys (one with an alias); return their ids and how calls name them."""
    service = runtime.service
    made = [
        (await service.keys.create_key(_caller(), CreateKeyRequest(description=f"k{n}"))).key_id
        for n in range(keys)
    ]
    await service.keys.create_alias(_caller(), "alias/orders", made[0])
    arns = {key: (await service.keys.describe_key(_caller(), key)).arn for key in made}
    names = [
        "alias/orders" if n == 0 else arns[key] if n % 2 else key for n, key in enumerate(made)
    ]
    return made, names


async def _use(runtime: Runtime, names: list[str], events: int) -> None:
    """``events`` cryptographic calls, a third each Encrypt, Decrypt and GenerateDataKey."""
    crypto = runtime.service.crypto
    blobs = {}
    for name in names:  # not counted: one Encrypt per key to have something to decrypt
        context = {"tenant": "acme", "purpose": "blob"}
        blobs[name] = (
            (await crypto.encrypt(_caller(), name, b"x" * 64, context)).ciphertext,
            context,
        )

    async def call(n: int) -> None:
        name = names[n % len(names)]
        context = {"tenant": f"t{n % 50}", "order": str(n), "region": REGION}
        kind = n % 3
        if kind == 0:
            await crypto.encrypt(_caller(), name, b"x" * 64, context)
        elif kind == 1:
            blob, given = blobs[name]
            await crypto.decrypt(_caller(), blob, None, given)
        else:
            await crypto.generate_data_key(
                _caller(),
                name,
                number_of_bytes=None,
                key_spec="AES_256",
                encryption_context=context,
            )

    for start in range(0, events, IN_FLIGHT):
        await asyncio.gather(*(call(n) for n in range(start, min(events, start + IN_FLIGHT))))


def _server_processes(url: str) -> list[psutil.Process]:
    """The PostgreSQL server's processes (the postmaster and its children) of ``url``."""
    with psycopg.connect(url) as conn:  # its backend's parent, while it lives
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = psutil.Process(int(row[0])).parent()
    assert postmaster is not None
    return [postmaster, *postmaster.children()]


def _server_cpu(url: str) -> dict[int, float]:
    found = {}
    for process in _server_processes(url):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[process.pid] = times.user + times.system
    return found


def _cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """Seconds: processes that started in between count from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _rewind(url: str, start: int) -> None:
    """The trail as it stood at ``start``, without the usage rows (each round starts empty)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_event_rows WHERE notification_id > %s", (start,))
        conn.execute("DELETE FROM audit_usage_hourly")
        conn.execute("DELETE FROM audit_key_last_usage")
        conn.execute("DELETE FROM audit_record_templates")
        conn.execute(
            "UPDATE projection_tracking SET notification_id = %s WHERE projection_name = %s",
            (start, PROJECTION_NAME),
        )
        for table in AUDIT_ROWS:  # dead rows would make later rounds dearer
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")


def _round(
    runtime: Runtime, start: int, head: int, batch: int, profiler: cProfile.Profile | None
) -> Round:
    url = runtime.database_url
    _rewind(url, start)
    trail = AuditTrailProjection(runtime.ledger, runtime.pool, url, batch_size=batch)
    trail.catch_up_to(start)  # the backfill check and the tracking read: not per event
    wal_before = _wal_position(url)
    server_before = _server_cpu(url)
    began = time.thread_time()
    if profiler is not None:
        profiler.enable()
    batches = 0
    while trail.position() < head:
        trail.catch_up(head)
        batches += 1
    if profiler is not None:
        profiler.disable()
    python = time.thread_time() - began
    postgres = _cpu_between(server_before, _server_cpu(url))
    events = head - start
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s),"
            " avg(pg_column_size(r.*)) FROM audit_event_rows r WHERE notification_id > %s",
            (wal_before, start),
        ).fetchone()
    assert row is not None
    wal, row_bytes = float(row[0]), float(row[1] or 0)
    return Round(1e6 * python / events, 1e6 * postgres / events, batches, wal / events, row_bytes)


def _wal_position(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def _decoding_us(runtime: Runtime, start: int, head: int, batch: int) -> float:
    """Per event: decoding the events alone, as the trail decodes them (each pass's first step)."""
    recorder = runtime.ledger.recorder
    trail = AuditTrailProjection(runtime.ledger, runtime.pool, runtime.database_url)
    notifications: list[Notification] = []
    position = start
    while position < head:
        found = recorder.select_notifications(start=position + 1, limit=batch, stop=head)
        notifications.extend(found)
        position = found[-1].id
    began = time.thread_time()
    for notification in notifications:
        trail._decode(notification)
    return 1e6 * (time.thread_time() - began) / len(notifications)


@contextmanager
def _database(data_dir: Path) -> Iterator[str]:
    from app.infrastructure.postgres.database import drop_database
    from app.infrastructure.postgres.embedded import (
        embedded_admin_url,
        ensure_embedded_database,
    )

    name = f"keyledger_profile_{os.getpid()}_{secrets.token_hex(3)}"
    url = ensure_embedded_database(data_dir, name)
    try:
        yield url
    finally:
        drop_database(embedded_admin_url(data_dir), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.projection_profile")
    parser.add_argument("--events", type=int, default=20_000, help="Used events to project")
    parser.add_argument("--batch", type=int, default=500, help="events per catch-up pass")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs; the median is printed")
    parser.add_argument("--profile", help="write a cProfile of an extra round to this file")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KEYLEDGER_DATA_DIR") or ".keyledger"),
        help="the embedded PostgreSQL's data dir (default $KEYLEDGER_DATA_DIR or .keyledger)",
    )
    options = parser.parse_args(argv)
    logging.getLogger("keyledger").setLevel(logging.WARNING)
    with _database(options.data_dir) as url, tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=url,
            data_dir=Path(tmp),
            root_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            scheduler_interval_seconds=3600,
            quotas="off",
        )
        runtime = Runtime.build(settings)
        runtime.writer.start()  # no projection runs: this tool drives the trail itself
        try:
            runtime.bootstrap()
            _, names = asyncio.run(_seed(runtime, options.keys, options.events))
            start = int(runtime.ledger.recorder.max_notification_id() or 0)
            seeding = time.perf_counter()
            asyncio.run(_use(runtime, names, options.events))
            head = int(runtime.ledger.recorder.max_notification_id() or 0)
            print(
                f"seeded {head - start:,} events in {time.perf_counter() - seeding:.1f} s"
                f" (notification ids {start + 1}..{head})"
            )
            rounds = [
                _round(runtime, start, head, options.batch, None) for _ in range(options.rounds)
            ]
            if options.profile:  # a round of its own: the profiler's overhead is not counted
                profiler = cProfile.Profile(time.thread_time)  # CPU, not waiting on PostgreSQL
                _round(runtime, start, head, options.batch, profiler)
                profiler.dump_stats(options.profile)
            decoding = [_decoding_us(runtime, start, head, options.batch) for _ in range(3)]
        finally:
            runtime.stop()
    python = statistics.median(r.python_us for r in rounds)
    postgres = statistics.median(r.postgres_us for r in rounds)
    print(
        f"audit trail: {python:.1f} us Python + {postgres:.1f} us PostgreSQL CPU per Used event"
        f" (median of {len(rounds)}; Python "
        + ", ".join(f"{r.python_us:.1f}" for r in rounds)
        + "; PostgreSQL "
        + ", ".join(f"{r.postgres_us:.1f}" for r in rounds)
        + f"; {rounds[-1].batches} passes of <= {options.batch})"
    )
    print(f"  of which decoding the events alone: {statistics.median(decoding):.1f} us")
    wal = statistics.median(r.wal_bytes for r in rounds)
    print(
        f"  WAL written: {wal:,.0f} bytes per Used event; an audit_event_rows row:"
        f" {rounds[-1].row_bytes:,.0f} bytes"
    )
    origin = provenance("python -m tools.bench.projection_profile")
    machine = origin["machine"]
    print(
        f"  code {origin['code']}, {machine['cpus']} x {machine['cpu']}, Python {origin['python']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
