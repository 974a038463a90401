"""``python -m tools.bench.ledger_profile``: the verifiable ledger's CPU per event.

A tool, not a test. Issue 13 asks that the Merkle log cost the hot path at most 5 % of
throughput; the suite's ``--phases ledger`` measures that end to end, but on a shared
2-core machine its cells vary by more than the effect. This tool measures the log's own
cost per event instead, which is steady: on a fresh database it seeds ``--events``
synthetic ``Used`` rows (``--state-bytes`` each, all different), then runs what the
service runs while they arrive, in the proportions it runs them under load:

* the Merkle log projection, one batch of ``--batch`` events at a time (a pass under full
  load sees ~1,000);
* a signed checkpoint every ``--checkpoint-every`` batches (the signer's 1 s);
* the watch's pass (its recent range and samples) every ``--watch-every`` batches (10 s).

For each it prints the CPU microseconds per event of this process's thread (Python,
psycopg) and of the PostgreSQL server's processes (psutil: the postmaster's children, so
another server on the machine is not counted), the median of ``--rounds`` rounds.
``--profile FILE`` writes a cProfile of the last round's Python side.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.bench.scenarios import Database, provenance

EVENTS_PER_AGGREGATE = 1_000
SEED_SQL = """
INSERT INTO keyledger_events (originator_id, originator_version, topic, state)
SELECT md5('ledger-profile:' || (i / %(per)s)::text)::uuid, i %% %(per)s + 1,
       'domain.keys:Key.Used',
       convert_to(repeat('u', %(filler)s), 'UTF8') || int8send(i)
FROM generate_series(0, %(events)s::bigint - 1) AS i
"""
STEPS = ("merkle log", "checkpoint", "watch")


def log(message: str) -> None:
    print(f"ledger-profile: {message}", file=sys.stderr, flush=True)


class ServerCpu:
    """CPU seconds of one PostgreSQL server: its postmaster's children (backends, WAL
    writer, checkpointer), found from a backend of the database."""

    def __init__(self, database_url: str) -> None:
        import psutil
        import psycopg

        with psycopg.connect(database_url) as conn:  # the backend lives as long as it
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            parent = psutil.Process(int(row[0])).parent()
        assert parent is not None
        self._postmaster = parent

    def seconds(self) -> float:
        import psutil

        total = 0.0
        for process in [self._postmaster, *self._postmaster.children()]:
            try:
                times = process.cpu_times()
            except psutil.Error:  # a backend that just exited
                continue
            total += times.user + times.system
        return total


class Meter:
    """CPU per step: this thread's and the server's, summed over calls."""

    def __init__(self, server: ServerCpu) -> None:
        self._server = server
        self.python: dict[str, float] = defaultdict(float)
        self.postgres: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        server_before = self._server.seconds()
        thread_before = time.thread_time()
        yield
        self.python[name] += time.thread_time() - thread_before
        self.postgres[name] += self._server.seconds() - server_before


def one_round(args: argparse.Namespace, profiler: cProfile.Profile | None) -> dict[str, Any]:
    import psycopg
    from psycopg_pool import ConnectionPool

    from app.bootstrap import migrate
    from app.infrastructure.ledger import Ledger
    from app.infrastructure.ledger_signing import LedgerSigner
    from app.infrastructure.postgres.database import connection_params
    from projections.ledger_checkpoints import issue_checkpoint
    from projections.ledger_watch import WatchState, watch_pass
    from projections.merkle_log import MerkleLogProjection

    db = Database.create(args.database_url, args.data_dir)
    try:
        migrate(db.url)
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(
                SEED_SQL,
                {
                    "per": EVENTS_PER_AGGREGATE,
                    "filler": args.state_bytes - 8,
                    "events": args.events,
                },
            )
            conn.execute("ANALYZE keyledger_events")
            conn.execute("CHECKPOINT")
        ledger = Ledger(env=connection_params(db.url) | {"CREATE_TABLE": "n"})
        pool = ConnectionPool(db.url, min_size=1, max_size=2, open=True)
        signer = LedgerSigner("keyledger/ledger-profile", Ed25519PrivateKey.generate())
        meter = Meter(ServerCpu(db.url))
        watch = WatchState()
        try:
            projection = MerkleLogProjection(ledger, pool, db.url, batch_size=args.batch)
            with psycopg.connect(db.url, autocommit=True) as conn:
                batches = 0
                if profiler is not None:
                    profiler.enable()
                while True:
                    with meter.step("merkle log"):
                        done = projection.catch_up()
                    if not done:
                        break
                    batches += 1
                    if batches % args.checkpoint_every == 0:
                        with meter.step("checkpoint"):
                            outcome = issue_checkpoint(
                                conn, signer.sign_checkpoint, [signer.verifier]
                            )
                        assert outcome.problem is None, outcome.problem
                        if watch.passes == 0:  # the watch starts at the first checkpoint
                            assert watch_pass(conn, watch, [signer.verifier]) is None
                    if batches % args.watch_every == 0:
                        with meter.step("watch"):
                            failure = watch_pass(conn, watch, [signer.verifier])
                        assert failure is None, failure
                if profiler is not None:
                    profiler.disable()
        finally:
            pool.close()
            ledger.close()
        assert watch.verified_size > 0, "the watch verified nothing: too few events"
    finally:
        db.drop()
    per_event = 1e6 / args.events
    return {
        name: {
            "python_us": meter.python[name] * per_event,
            "postgres_us": meter.postgres[name] * per_event,
        }
        for name in STEPS
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    profiler = cProfile.Profile() if args.profile else None
    for number in range(1, args.rounds + 1):
        last = number == args.rounds
        rounds.append(one_round(args, profiler if last else None))
        log(f"round {number}: " + _line(rounds[-1]))
    if profiler is not None:
        profiler.dump_stats(args.profile)
    median = {
        name: {
            side: statistics.median(r[name][side] for r in rounds)
            for side in ("python_us", "postgres_us")
        }
        for name in STEPS
    }
    return {
        **provenance("python -m tools.bench.ledger_profile"),
        "events": args.events,
        "batch": args.batch,
        "state_bytes": args.state_bytes,
        "median_us_per_event": median,
        "rounds": rounds,
    }


def _line(figures: dict[str, Any]) -> str:
    parts = []
    total = 0.0
    for name in STEPS:
        python, postgres = figures[name]["python_us"], figures[name]["postgres_us"]
        total += python + postgres
        parts.append(f"{name} {python:.1f} + {postgres:.1f}")
    return "us/event (python + postgres): " + ", ".join(parts) + f"; total {total:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.ledger_profile", description=__doc__
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000, help="events per Merkle log pass")
    parser.add_argument("--state-bytes", type=int, default=600, help="a stored state's size")
    parser.add_argument("--checkpoint-every", type=int, default=4, help="passes per checkpoint")
    parser.add_argument("--watch-every", type=int, default=40, help="passes per watch pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a server to create the databases on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KEYLEDGER_DATA_DIR") or ".keyledger"),
        help="the embedded PostgreSQL's data dir (default .keyledger)",
    )
    parser.add_argument("--profile", help="write a cProfile of the last round here")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    document = run(args)
    print(_line(document["median_us_per_event"]))
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
