"""``python -m tools.bench.ledger_scale``: the verifiable ledger at scale.

A tool, not a test. On a fresh database (the embedded PostgreSQL of ``--data-dir``, or the
server of ``--database-url``) it seeds ``--events`` synthetic ``Used`` rows server-side
(1,000 per aggregate, ~160-byte states that all differ), then times:

* the Merkle log's catch-up from empty (`MerkleLogProjection.catch_up_to`);
* one signed checkpoint over the whole tree (a throwaway Ed25519 key);
* `keyledger audit verify`'s core (`verify_database`) over every event, with the key pinned;
* with ``--export DIR``: the whole-ledger export (`keyledger audit export --ledger-only`) and
  the standalone offline verifier over it (tools/offline_verifier, the key pinned).

It prints one line per step with events/s and writes ``--json``. The database is dropped
at the end unless ``--keep``. Figures in docs name the commit and machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.bench.scenarios import Database, provenance

SEED_CHUNK = 500_000
EVENTS_PER_AGGREGATE = 1_000
SEED_SQL = """
INSERT INTO keyledger_events (originator_id, originator_version, topic, state)
SELECT md5('ledger-scale:' || (i / %(per)s)::text)::uuid, i %% %(per)s + 1,
       'domain.keys:Key.Used',
       convert_to(repeat('u', 150), 'UTF8') || int8send(i)
FROM generate_series(%(start)s::bigint, %(stop)s::bigint - 1) AS i
"""


def log(message: str) -> None:
    print(f"ledger-scale: {message}", file=sys.stderr, flush=True)


def timed(label: str, events: int, step: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = step()
    seconds = time.perf_counter() - started
    rate = events / seconds if seconds else float("inf")
    log(f"{label}: {events:,} events in {seconds:.1f} s ({rate:,.0f} events/s)")
    return {
        "step": label,
        "events": events,
        "seconds": seconds,
        "events_per_s": rate,
        "outcome": outcome,
    }


def seed(database_url: str, events: int) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        for start in range(0, events, SEED_CHUNK):
            stop = min(events, start + SEED_CHUNK)
            params = {"per": EVENTS_PER_AGGREGATE, "start": start, "stop": stop}
            conn.execute(SEED_SQL, params)
            log(f"seeded {stop:,} / {events:,}")
        conn.execute("ANALYZE keyledger_events")
    return events


def export_and_verify(database_url: str, out: Path, events: int, vkey: str) -> list[dict[str, Any]]:
    """The whole-ledger export by the real CLI, then the standalone verifier over it."""
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
    env["KEYLEDGER_DATABASE_URL"] = database_url

    def command(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:4]} failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    verifier = Path(__file__).resolve().parents[1] / "offline_verifier" / "keyledger_verify.py"
    export = [sys.executable, "-m", "app", "audit", "export", "--ledger-only", "--out", str(out)]
    offline = [sys.executable, str(verifier), str(out), "--public-key", vkey, "--unsigned"]
    return [
        timed(
            "whole-ledger export (keyledger audit export --ledger-only)",
            events,
            lambda: command(*export),
        ),
        timed("offline verifier over the export (key pinned)", events, lambda: command(*offline)),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from psycopg_pool import ConnectionPool

    from app.bootstrap import migrate
    from app.infrastructure.ledger import Ledger
    from app.infrastructure.ledger_signing import LedgerSigner
    from app.infrastructure.postgres.database import connection_params
    from projections.ledger_checkpoints import issue_checkpoint
    from projections.ledger_verify import verify_database
    from projections.merkle_log import MerkleLogProjection

    db = Database.create(args.database_url, args.data_dir)
    log(f"database {db.name}")
    steps: list[dict[str, Any]] = []
    try:
        migrate(db.url)
        steps.append(
            timed(
                "seed (server-side INSERT ... SELECT)",
                args.events,
                lambda: seed(db.url, args.events),
            )
        )
        ledger = Ledger(env=connection_params(db.url) | {"CREATE_TABLE": "n"})
        pool = ConnectionPool(db.url, min_size=1, max_size=2, open=True)
        try:
            log_projection = MerkleLogProjection(ledger, pool, db.url, batch_size=args.batch_size)
            steps.append(
                timed("Merkle log catch-up from empty", args.events, log_projection.catch_up_to)
            )
        finally:
            pool.close()
            ledger.close()
        signer = LedgerSigner("keyledger/ledger-scale", Ed25519PrivateKey.generate())
        with psycopg.connect(db.url, autocommit=True) as conn:
            outcome = issue_checkpoint(conn, signer.sign_checkpoint, [signer.verifier])
            assert outcome.signed is not None, outcome.problem

            def verify() -> str:
                result = verify_database(conn, [signer.verifier])
                assert result.ok, result.failure
                return f"{result.checked} events, {result.checkpoints} checkpoint(s)"

            steps.append(timed("keyledger audit verify (pinned key)", args.events, verify))
        if args.export is not None:
            steps += export_and_verify(db.url, args.export, args.events, signer.vkey)
    finally:
        if args.keep:
            log(f"kept database {db.name}: {db.url}")
        else:
            db.drop()
    return {
        **provenance("python -m tools.bench.ledger_scale"),
        "events": args.events,
        "steps": [{k: v for k, v in s.items() if k != "outcome"} for s in steps],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.ledger_scale", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=5_000, help="Merkle log batch")
    parser.add_argument("--database-url", help="a server to create the database on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KEYLEDGER_DATA_DIR") or ".keyledger"),
        help="the embedded PostgreSQL's data dir (default .keyledger)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--export", type=Path, help="also export the whole ledger here and verify it offline"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    document = run(args)
    print(json.dumps(document, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
