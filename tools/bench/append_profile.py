"""The CPU one recorded ``Used`` event costs the group-commit writer and PostgreSQL.

``python -m tools.bench.append_profile [--events 20000] [--concurrency 64] [--keys 1]
[--rounds 3] [--profile FILE] [--data-dir DIR | --database-url URL]`` creates a fresh
database (on the embedded PostgreSQL of ``--data-dir``, or the server of ``--database-url``),
migrates it, and drives the real `LedgerWriter` and `AsyncEventStore` on one event loop, as a
worker does: ``concurrency`` "requests" in flight, each a command that records one Encrypt's
``Used`` event (a signed caller's actor, a fresh request id) on one of ``keys`` keys, and
awaits its commit. Every event is durable before its "request" is answered, as in service.

Per event it prints, the median of ``rounds`` rounds:

* the process's CPU (``time.process_time``): the whole write path but HTTP and the use case's
  checks, split into the commands themselves (the aggregate's ``record_use``), the events'
  encoding (the mapper: JSON transcoding), and the rest (the writer's loop, psycopg and libpq,
  asyncio);
* PostgreSQL's CPU (psutil): the writer's backend, and every process of the server (WAL
  writer, checkpointer... too; only when the server runs on this machine, and other users'
  sessions count there: give it an embedded server of its own, ``--data-dir``).

CPU time, not wall time, so it is steady on a busy machine; ``--profile`` writes a cProfile
of the last round (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import psycopg

from app.bootstrap import migrate
from app.infrastructure.event_store import AsyncEventStore, timeout_env
from app.infrastructure.ledger import Ledger
from app.infrastructure.memory_store import ledger_env
from app.infrastructure.postgres.database import connection_params
from app.infrastructure.writer import LedgerWriter
from app.ports import UnitOfWork
from app.support.request_ids import new_request_id
from domain.actors import Actor
from domain.keys import Key, KeyMaterial
from tools.bench.scenarios import Database, provenance

ACCOUNT_ID = "111122223333"
REGION = "us-east-1"
# What an Encrypt through the AWS JSON API records: a signed caller's seven fields.
CALLER = Actor(
    principal_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/bench",
    account_id=ACCOUNT_ID,
    access_key_id="AKIAIOSFODNN7EXAMPLE",
    region=REGION,
    source_ip="127.0.0.1",
    user_agent="Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 lang/python#3.11.7",
)


@dataclass
class Round:
    """One round's CPU seconds and counts."""

    events: int
    batches: int
    process: float
    commands: float
    encoding: float
    backend: float
    server: float | None

    def per_event(self, seconds: float) -> float:
        return 1e6 * seconds / self.events


class _Timed:
    """Accumulates the CPU of synchronous calls (no await inside: no other task's CPU)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - began

        return timed


def _new_key(now: datetime) -> Key:
    key_id = uuid.uuid4()
    return Key.create(
        key_id=key_id,
        now=now,
        actor=CALLER,
        arn=f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}",
        account_id=ACCOUNT_ID,
        region=REGION,
        description="keyledger append profile",
        key_spec="SYMMETRIC_DEFAULT",
        key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS",
        key_manager="CUSTOMER",
        policy="{}",
        tags={},
        material=KeyMaterial(1, os.urandom(32).hex(), os.urandom(60), now, None),
    )


def _server_processes(database_url: str) -> list[psutil.Process]:
    """The server's processes (the postmaster and its children, but this probe's own
    session), if it runs here. On a server others use, their sessions count too."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        probe = int(row[0]) if row else 0
        try:  # while this backend lives: its parent is the postmaster
            postmaster = psutil.Process(probe).parent()
            children = [] if postmaster is None else postmaster.children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []
    if postmaster is None:
        return []
    return [postmaster, *(child for child in children if child.pid != probe)]


def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds of each process still running."""
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes running at both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


@contextmanager
def _profiling(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall time: steady when busy
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


async def _round(database_url: str, options: argparse.Namespace, profile: str | None) -> Round:
    ledger = Ledger(
        env=ledger_env(connection_params(database_url) | timeout_env(5.0, 5.0))
        | {"CREATE_TABLE": "n"}
    )
    writer = LedgerWriter(ledger, database_url, deadline=5.0, io_timeout=5.0)
    await writer.start_async()
    try:
        now = datetime.now(UTC)
        keys = [_new_key(now) for _ in range(options.keys)]

        def create(uow: Any) -> None:  # the writer's own unit of work (it adds)
            for key in keys:
                uow.add(key)

        await writer.run(create)
        key_ids = [key.id for key in keys]
        commands = _Timed()
        encoding = _Timed()
        mapper = writer.store._mapper  # (its encoding is measured)
        mapper.to_stored_event = encoding.wrap(mapper.to_stored_event)  # type: ignore[method-assign]

        @commands.wrap
        def use(uow: UnitOfWork, key_id: uuid.UUID) -> None:
            key = uow.get(key_id)
            assert isinstance(key, Key)
            request_id = new_request_id()
            key.record_use(
                operation="Encrypt",
                now=datetime.now(UTC),
                actor=Actor(  # as app.auth.credentials.Caller.actor() makes it
                    principal_arn=CALLER.principal_arn,
                    account_id=ACCOUNT_ID,
                    access_key_id=CALLER.access_key_id,
                    region=REGION,
                    source_ip=CALLER.source_ip,
                    user_agent=CALLER.user_agent,
                    request_id=request_id,
                ),
                material_version=1,
                encryption_context=None,
                algorithm="SYMMETRIC_DEFAULT",
                request_parameters={"keyId": str(key_id)},
            )

        async def lane(start: int) -> None:
            for index in range(start, options.events, options.concurrency):
                key_id = key_ids[index % len(key_ids)]
                await writer.run(partial(use, key_id=key_id))

        await writer.run(partial(use, key_id=key_ids[0]))  # connected, statement prepared
        commands.seconds = encoding.seconds = 0.0
        server = _server_processes(database_url)
        assert isinstance(writer.store, AsyncEventStore)
        backend = [psutil.Process(writer.store._backend_pid)]
        batches = writer.stats.batches
        began = (time.process_time(), _cpu(backend), _cpu(server))
        with _profiling(profile):
            await asyncio.gather(*(lane(n) for n in range(options.concurrency)))
        process = time.process_time() - began[0]
        return Round(
            events=options.events,
            batches=writer.stats.batches - batches,
            process=process,
            commands=commands.seconds,
            encoding=encoding.seconds,
            backend=_spent(began[1], _cpu(backend)),
            server=_spent(began[2], _cpu(server)) if server else None,
        )
    finally:
        await writer.aclose()
        ledger.close()


def _median(rounds: list[Round], figure: Callable[[Round], float | None]) -> str:
    values = [v for r in rounds if (v := figure(r)) is not None]
    return f"{statistics.median(values):6.1f}" if values else "   n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.append_profile")
    parser.add_argument("--events", type=int, default=20_000, help="Used events per round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--keys", type=int, default=1, help="keys used in turn (1: a hot key)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--profile", help="write a cProfile of the last round to this file")
    parser.add_argument("--database-url", help="a server to create the database on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KEYLEDGER_DATA_DIR") or ".keyledger"),
        help="the embedded PostgreSQL's data dir (default $KEYLEDGER_DATA_DIR or .keyledger)",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    database = Database.create(options.database_url, options.data_dir)
    try:
        migrate(database.url)
        rounds = []
        for number in range(options.rounds):
            last = number == options.rounds - 1
            rounds.append(
                asyncio.run(_round(database.url, options, options.profile if last else None))
            )
    finally:
        database.drop()
    made = provenance("tools.bench.append_profile")
    machine = made["machine"]
    print(
        f"code {made['code']}, {machine['cpus']} CPUs ({machine['cpu']}), Python {made['python']}"
    )
    print(
        f"{options.events} Used events a round, {options.concurrency} in flight, "
        f"{options.keys} key(s), {statistics.median(r.events / r.batches for r in rounds):.1f} "
        f"events a batch; us CPU per event, median of {len(rounds)} rounds:"
    )
    lines = [
        ("worker process", lambda r: r.per_event(r.process)),
        ("  commands (record_use)", lambda r: r.per_event(r.commands)),
        ("  encoding (mapper)", lambda r: r.per_event(r.encoding)),
        (
            "  writer, psycopg, asyncio",
            lambda r: r.per_event(r.process - r.commands - r.encoding),
        ),
        ("PostgreSQL writer backend", lambda r: r.per_event(r.backend)),
        (
            "PostgreSQL server (all)",
            lambda r: None if r.server is None else r.per_event(r.server),
        ),
    ]
    for label, figure in lines:
        rounds_text = ", ".join(f"{v:.1f}" for r in rounds if (v := figure(r)) is not None)
        print(f"  {label:<28}{_median(rounds, figure)}   ({rounds_text})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
