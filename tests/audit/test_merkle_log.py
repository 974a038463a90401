"""The ledger's Merkle log on PostgreSQL (projections/merkle_log.py, migrations/013): the
tree over real events equals a naive MTH of their stored rows, resumes across leaders and
skipped notification ids, and the live verifier (projections/ledger_verify.py) names each
tampering of ``keyledger_events`` with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.auth.credentials import Caller
from app.bootstrap import Runtime
from app.usecases.keys import CreateKeyRequest
from domain.ledger_leaves import leaf_of
from domain.merkle import leaf_hash, node_hash, split_point
from domain.policy import default_key_policy
from projections.ledger_verify import Reason, verify_database
from projections.merkle_log import MerkleLogError, MerkleLogProjection
from tests.conftest import ACCOUNT_ID, REGION, Service

ADMIN = Caller(
    ACCOUNT_ID,
    f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
    "AKLGTEST",
    REGION,
    source_ip="192.0.2.1",
    user_agent="merkle-test",
)
USED = "domain.keys:Key.Used"
POLICY_CHANGED = "domain.keys:Key.PolicyChanged"
REPO = Path(__file__).resolve().parents[2]


def _fill(runtime: Runtime, rounds: int) -> list[str]:
    """A few keys and uses, a disabled key: real events of several kinds."""
    service = runtime.service

    async def fill() -> list[str]:
        keys = [
            (await service.keys.create_key(ADMIN, CreateKeyRequest(description=f"k{n}"))).key_id
            for n in range(3)
        ]
        for round_ in range(rounds):
            for key in keys[:2]:
                await service.crypto.encrypt(ADMIN, key, b"x", {"round": str(round_)})
        policy = default_key_policy("aws", ACCOUNT_ID).replace("key-default-1", "key-merkle-1")
        await service.keys.put_key_policy(ADMIN, keys[1], "default", policy)
        await service.keys.disable_key(ADMIN, keys[2])
        return keys

    return asyncio.run(fill())


def _skip_an_id(url: str) -> int:
    """Take a notification id and never commit it (as a rolled-back append does)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('keyledger_events', 'notification_id'))"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _naive_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = split_point(len(leaves))
    return node_hash(_naive_mth(leaves[:k]), _naive_mth(leaves[k:]))


def _stored_leaves(conn: psycopg.Connection[Any]) -> list[bytes]:
    rows = conn.execute(
        "SELECT notification_id, originator_id, originator_version, topic, state"
        " FROM keyledger_events ORDER BY notification_id"
    ).fetchall()
    return [leaf_of(int(p), o, int(v), t, bytes(s)) for p, o, v, t, s in rows]


def _tree(conn: psycopg.Connection[Any]) -> tuple[int, int, bytes]:
    row = conn.execute("SELECT size, notification_id, root FROM ledger_tree").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), bytes(row[2])


@pytest.fixture
def logged(quiet_ledger: Runtime) -> Iterator[tuple[Runtime, int]]:
    """A ledger with a skipped notification id in its middle, under a Merkle log built in
    small batches by two leaders in turn (the second restores the first's tree)."""
    runtime = quiet_ledger
    _fill(runtime, 4)
    skipped = _skip_an_id(runtime.database_url)
    _fill(runtime, 3)
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    first = MerkleLogProjection(runtime.ledger, runtime.pool, runtime.database_url, batch_size=7)
    first.catch_up_to(skipped + 4)
    second = MerkleLogProjection(runtime.ledger, runtime.pool, runtime.database_url, batch_size=5)
    second.catch_up_to(head)
    yield runtime, skipped


def test_the_tree_is_the_naive_mth_of_the_stored_rows(logged: tuple[Runtime, int]) -> None:
    runtime, skipped = logged
    with psycopg.connect(runtime.database_url) as conn:
        leaves = _stored_leaves(conn)
        size, last, root = _tree(conn)
        positions = [
            int(r[0])
            for r in conn.execute(
                "SELECT notification_id FROM ledger_tree_nodes WHERE level = 0 ORDER BY index"
            )
        ]
        assert skipped not in positions and positions == sorted(positions)
        assert size == len(leaves) == len(positions) and last == positions[-1]
        assert root == _naive_mth(leaves)
        assert verify_database(conn).ok


def test_nodes_and_checkpoints_are_append_only(logged: tuple[Runtime, int]) -> None:
    runtime, _ = logged
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        for statement in (
            "UPDATE ledger_tree_nodes SET hash = hash WHERE level = 0 AND index = 0",
            "DELETE FROM ledger_tree_nodes WHERE level = 0 AND index = 0",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
                conn.execute(statement)
        size, _, root = _tree(conn)
        conn.execute(
            "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, 'note')",
            (size, root),
        )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            conn.execute("UPDATE ledger_checkpoints SET note = 'other'")
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            conn.execute("DELETE FROM ledger_checkpoints")
        assert verify_database(conn).checkpoints == 1


def _positions(conn: psycopg.Connection[Any], topic: str | None = None) -> list[int]:
    sql = "SELECT notification_id FROM keyledger_events"
    params: tuple[Any, ...] = ()
    if topic is not None:
        sql += " WHERE topic = %s"
        params = (topic,)
    return [int(r[0]) for r in conn.execute(sql + " ORDER BY notification_id", params)]


def _used_state_changed(conn: psycopg.Connection[Any], skipped: int) -> int:
    target = _positions(conn, USED)[3]
    conn.execute(
        "UPDATE keyledger_events SET state = state || '\\x00'::bytea WHERE notification_id = %s",
        (target,),
    )
    return target


def _policy_changed(conn: psycopg.Connection[Any], skipped: int) -> int:
    # The policy text itself, edited in place in the stored state (plain JSON here).
    target = _positions(conn, POLICY_CHANGED)[0]
    row = conn.execute(
        "UPDATE keyledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " 'key-merkle-1', 'key-merkle-2'), 'UTF8') WHERE notification_id = %s"
        " RETURNING position('key-merkle-2' IN convert_from(state, 'UTF8'))",
        (target,),
    ).fetchone()
    assert row is not None and row[0] > 0, "the policy is not stored as plain text"
    return target


def _middle_row_deleted(conn: psycopg.Connection[Any], skipped: int) -> int:
    target = _positions(conn)[len(_positions(conn)) // 2]
    conn.execute("DELETE FROM keyledger_events WHERE notification_id = %s", (target,))
    return target


def _row_inserted(conn: psycopg.Connection[Any], skipped: int) -> int:
    # A forged use, in the hole the skipped id left (a copy of a real row, one version on).
    conn.execute(
        "INSERT INTO keyledger_events (notification_id, originator_id, originator_version,"
        " topic, state) SELECT %s, originator_id, originator_version + 1000, topic, state"
        " FROM keyledger_events WHERE topic = %s ORDER BY notification_id LIMIT 1",
        (skipped, USED),
    )
    return skipped


def _rows_swapped(conn: psycopg.Connection[Any], skipped: int) -> int:
    a, b = _positions(conn, USED)[1], _positions(conn, USED)[6]
    conn.execute(
        "WITH pair AS (SELECT x.notification_id AS id, y.originator_id, y.originator_version,"
        " y.topic, y.state FROM keyledger_events x JOIN keyledger_events y"
        " ON (x.notification_id, y.notification_id) IN ((%s, %s), (%s, %s)))"
        " UPDATE keyledger_events e SET originator_id = pair.originator_id,"
        " originator_version = -pair.originator_version, topic = pair.topic, state = pair.state"
        " FROM pair WHERE e.notification_id = pair.id",
        (a, b, b, a),
    )
    conn.execute(
        "UPDATE keyledger_events SET originator_version = -originator_version"
        " WHERE notification_id IN (%s, %s)",
        (a, b),
    )
    return a


def _tail_truncated(conn: psycopg.Connection[Any], skipped: int) -> int:
    target = _positions(conn)[-3]
    conn.execute("DELETE FROM keyledger_events WHERE notification_id >= %s", (target,))
    return target


def _tree_node_altered(conn: psycopg.Connection[Any], skipped: int) -> int:
    # As the tables' owner could: around the append-only trigger. Node (4, 0) (a stored
    # level: projections.merkle_log.STORED_LEVEL_STRIDE) covers leaves 0 to 15; leaf 15's
    # event completes it.
    conn.execute("ALTER TABLE ledger_tree_nodes DISABLE TRIGGER ledger_tree_nodes_append_only")
    altered = conn.execute(
        "UPDATE ledger_tree_nodes SET hash = sha256(hash) WHERE level = 4 AND index = 0"
    )
    assert altered.rowcount == 1
    row = conn.execute(
        "SELECT notification_id FROM ledger_tree_nodes WHERE level = 0 AND index = 15"
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_used_state_changed, Reason.ALTERED),
        (_policy_changed, Reason.ALTERED),
        (_middle_row_deleted, Reason.MISSING),
        (_row_inserted, Reason.INSERTED),
        (_rows_swapped, Reason.REORDERED),
        (_tail_truncated, Reason.TRUNCATED),
        (_tree_node_altered, Reason.TREE),
    ],
)
def test_tampering_is_named(logged: tuple[Runtime, int], tamper: Any, reason: Reason) -> None:
    runtime, skipped = logged
    with psycopg.connect(runtime.database_url) as conn:
        assert verify_database(conn).ok
        conn.rollback()
        position = tamper(conn, skipped)
        result = verify_database(conn)
        conn.rollback()
    assert result.failure is not None, f"{tamper.__name__} went unnoticed"
    assert result.failure.reason == reason, str(result.failure)
    assert result.failure.position == position, str(result.failure)


def test_keyledger_audit_verify_exits_naming_the_first_failure(quiet_ledger: Runtime) -> None:
    runtime = quiet_ledger
    _fill(runtime, 2)
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": runtime.database_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", "audit", "verify", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("--catch-up")
    assert done.returncode == 0, done.stderr
    assert "verified:" in done.stdout
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        target = _middle_row_deleted(conn, 0)
    failed = cli()
    assert failed.returncode == 1
    assert "FAILED: missing: leaf" in failed.stderr and f"event {target}" in failed.stderr


@contextlib.contextmanager
def projections_running(database_url: str, **env: str) -> Iterator[None]:
    """`keyledger projections run --audit-only` (the supervisor's projection process) on
    `database_url`, with further KEYLEDGER_* settings, until the block ends."""
    runner = subprocess.Popen(
        [sys.executable, "-m", "app", "projections", "run", "--audit-only"],
        cwd=REPO,
        env={**os.environ, "KEYLEDGER_DATABASE_URL": database_url, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        runner.terminate()
        runner.wait(timeout=30)


def test_the_projection_process_builds_the_log(quiet_ledger: Runtime) -> None:
    """`keyledger projections run --audit-only`, the supervisor's projection process, runs
    the Merkle log beside the audit trail."""
    runtime = quiet_ledger
    _fill(runtime, 2)
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    with projections_running(runtime.database_url):
        deadline = time.monotonic() + 60
        with psycopg.connect(runtime.database_url, autocommit=True) as conn:
            while _tree(conn)[1] < head:
                assert time.monotonic() < deadline, "the Merkle log did not reach the head"
                time.sleep(0.1)
            assert verify_database(conn).ok


def test_a_running_service_keeps_the_log(service: Service) -> None:
    """A single-process service runs the Merkle log in a thread, beside the audit trail."""
    kms = service.client("kms")
    key = kms.create_key(Description="merkle")["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"x")
    url = service.runtime.database_url
    head = int(service.runtime.ledger.recorder.max_notification_id() or 0)
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while _tree(conn)[1] < head:
            assert time.monotonic() < deadline, "the Merkle log did not reach the head"
            time.sleep(0.05)
        result = verify_database(conn)
    assert result.ok, result.failure
    assert result.checked >= 2


class _Poisoned(MerkleLogProjection):
    """A log that cannot take one event (as if its row could not be hashed)."""

    poison = 0
    retry_delay = 0.0

    def _append(self, conn: psycopg.Connection[Any], positions: list[int], hashes: bytes) -> None:
        if self.poison in positions:  # in a pass and when taken alone
            raise ValueError("cannot take it")
        super()._append(conn, positions, hashes)


def test_an_event_the_log_cannot_take_stops_it_and_is_never_set_aside(
    quiet_ledger: Runtime,
) -> None:
    runtime = quiet_ledger
    _fill(runtime, 2)
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    log = _Poisoned(runtime.ledger, runtime.pool, runtime.database_url, batch_size=4)
    log.poison = head - 2
    with pytest.raises(MerkleLogError):
        log.catch_up_to(head)
    with psycopg.connect(runtime.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM projection_dead_letters WHERE projection_name = 'merkle_log'"
        ).fetchone()
        assert row is not None and row[0] == 0
        assert _tree(conn)[1] == head - 3  # everything before the poison, nothing after
        assert verify_database(conn).ok


def test_leaf_positions_are_summarized_by_vacuum_not_queued_per_range(
    quiet_ledger: Runtime,
) -> None:
    # Under load a range filled every ~0.3 s; autovacuum takes queued summarization
    # requests once a minute, so the queue overflowed into ~3 server-log lines a second
    # (migrations/026). The table's vacuum summarizes the ranges instead.
    with psycopg.connect(quiet_ledger.database_url) as conn:
        row = conn.execute(
            "SELECT am.amname, c.reloptions FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
            " WHERE c.relname = 'ledger_tree_leaves_by_position_brin'"
        ).fetchone()
    assert row is not None
    method, options = row
    assert method == "brin"
    assert "autosummarize=off" in options
