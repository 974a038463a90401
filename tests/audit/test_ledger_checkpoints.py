"""Signed checkpoints on PostgreSQL (projections/ledger_checkpoints.py,
app/infrastructure/ledger_signing.py and ledger_guard.py): the signing key is wrapped
under the root key and only its public half is published; the signer signs only a tree
that extends its newest checkpoint; each process's watch finds tampering in the recent
range, in sampled older events and rollbacks, and says so in /readyz and /metrics; and
``keyledger audit verify`` with a pinned key names unsigned, altered, forked and
rolled-back checkpoints."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.bootstrap import Runtime
from app.infrastructure.ledger_guard import Checkpointer
from app.infrastructure.ledger_signing import LedgerSigner, publish, published_verifiers
from app.infrastructure.vault import LEDGER_SIGNING_KEY_OWNER, Vault
from domain.checkpoints import open_checkpoint
from domain.ledger_errors import UnverifiedNoteError
from projections.ledger_checkpoints import IssueOutcome, issue_checkpoint
from projections.ledger_verify import Reason, verify_database
from projections.ledger_watch import WatchState, watch_pass
from projections.merkle_log import MerkleLogProjection
from tests.audit.test_merkle_log import _fill, _positions, projections_running
from tests.conftest import start_service
from tests.support.databases import database_backends, drop, fresh_database

REPO = Path(__file__).resolve().parents[2]
USED = "domain.keys:Key.Used"


def _signer(runtime: Runtime) -> LedgerSigner:
    return LedgerSigner.from_seed(
        runtime.settings.checkpoint_origin, runtime.vault.ledger_signing_seed()
    )


def _grow(runtime: Runtime, rounds: int = 2) -> int:
    """More real events, all under the tree; the tree's size."""
    _fill(runtime, rounds)
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    MerkleLogProjection(runtime.ledger, runtime.pool, runtime.database_url).catch_up_to(head)
    with psycopg.connect(runtime.database_url) as conn:
        row = conn.execute("SELECT size FROM ledger_tree").fetchone()
    assert row is not None
    return int(row[0])


def _issue(runtime: Runtime, signer: LedgerSigner) -> IssueOutcome:
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        return issue_checkpoint(conn, signer.sign_checkpoint, [signer.verifier])


def _checkpoint_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM ledger_checkpoints").fetchone()
    return int(row[0]) if row else 0


def _unguarded(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> None:
    """A statement as the database's owner runs it: the append-only triggers off."""
    conn.execute("SET session_replication_role = replica")
    try:
        conn.execute(sql, params)
    finally:
        conn.execute("SET session_replication_role = DEFAULT")


# --- the signer ---------------------------------------------------------------------------
def test_a_checkpoint_signs_the_tree_head_once(quiet_ledger: Runtime) -> None:
    signer = _signer(quiet_ledger)
    size = _grow(quiet_ledger)
    outcome = _issue(quiet_ledger, signer)
    assert outcome.problem is None and outcome.signed is not None
    checkpoint, verified = open_checkpoint(
        outcome.signed.note, [signer.verifier], quiet_ledger.settings.checkpoint_origin
    )
    assert checkpoint.size == size and verified.verified[0].name == signer.origin
    assert _issue(quiet_ledger, signer) == IssueOutcome()  # no growth: nothing new
    _grow(quiet_ledger, 1)
    assert _issue(quiet_ledger, signer).signed is not None
    with psycopg.connect(quiet_ledger.database_url) as conn:
        assert _checkpoint_count(conn) == 2
        assert verify_database(conn, [signer.verifier]).ok


def test_the_signing_key_is_wrapped_under_the_root_key_and_only_its_public_half_published(
    quiet_ledger: Runtime,
) -> None:
    seed = quiet_ledger.vault.ledger_signing_seed()
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT wrapped_key FROM wrapping_keys WHERE owner_id = %s", (LEDGER_SIGNING_KEY_OWNER,)
        ).fetchone()
        assert row is not None and seed not in bytes(row[0])
        signer = _signer(quiet_ledger)
        publish(conn, signer)
        publish(conn, signer)  # once: the table is append-only
        assert [str(v) for v in published_verifiers(conn)] == [signer.vkey]
    # Every process with the root key signs with the same key.
    other = Vault(quiet_ledger.settings.root_key_bytes() or b"", quiet_ledger.pool)
    assert other.ledger_signing_seed() == seed


def test_the_signer_refuses_a_tree_that_does_not_extend_its_newest_checkpoint(
    quiet_ledger: Runtime,
) -> None:
    signer = _signer(quiet_ledger)
    _grow(quiet_ledger)
    assert _issue(quiet_ledger, signer).signed is not None
    _grow(quiet_ledger, 1)
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger_tree SET root = sha256(root)")
        refused = _issue(quiet_ledger, signer)
        assert refused.signed is None and "not its nodes' root" in str(refused.problem)
        assert _checkpoint_count(conn) == 1


def test_the_signer_refuses_a_ledger_rolled_back_behind_its_checkpoint(
    quiet_ledger: Runtime,
) -> None:
    signer = _signer(quiet_ledger)
    size = _grow(quiet_ledger)
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        ahead = signer.sign_checkpoint(size + 5, b"\x01" * 32)
        conn.execute(
            "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)",
            (size + 5, b"\x01" * 32, ahead),
        )
    refused = _issue(quiet_ledger, signer)
    assert refused.signed is None and "rolled back" in str(refused.problem)


def test_the_signer_refuses_to_continue_a_checkpoint_it_did_not_sign(
    quiet_ledger: Runtime,
) -> None:
    size = _grow(quiet_ledger)
    stranger = LedgerSigner(quiet_ledger.settings.checkpoint_origin, Ed25519PrivateKey.generate())
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        root = conn.execute("SELECT root FROM ledger_tree").fetchone()
        assert root is not None
        conn.execute(
            "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)",
            (size, bytes(root[0]), stranger.sign_checkpoint(size, bytes(root[0]))),
        )
    _grow(quiet_ledger, 1)
    refused = _issue(quiet_ledger, _signer(quiet_ledger))
    assert refused.signed is None and "does not verify" in str(refused.problem)


# --- the watch ----------------------------------------------------------------------------
def _watch(
    runtime: Runtime, state: WatchState, samples: int = 0, *, recent: bool = True
) -> str | None:
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        return watch_pass(
            conn,
            state,
            [_signer(runtime).verifier],
            samples=samples,
            rng=random.Random(7),
            recent=recent,
        )


def test_the_watch_follows_a_growing_ledger(quiet_ledger: Runtime) -> None:
    signer, state = _signer(quiet_ledger), WatchState()
    assert _watch(quiet_ledger, state) is None  # no checkpoint yet: nothing to check
    _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    assert _watch(quiet_ledger, state, samples=64) is None
    started = state.verified_size
    size = _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    assert _watch(quiet_ledger, state, samples=64) is None
    assert state.verified_size == size > started and state.sampled > 0


def test_the_watch_finds_an_event_altered_in_the_recent_range(quiet_ledger: Runtime) -> None:
    signer, state = _signer(quiet_ledger), WatchState()
    _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    assert _watch(quiet_ledger, state) is None
    _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        target = _positions(conn, USED)[-1]
        conn.execute(
            "UPDATE keyledger_events SET state = state || '\\x00'::bytea"
            " WHERE notification_id = %s",
            (target,),
        )
    failure = _watch(quiet_ledger, state)
    assert failure is not None and "do not hash to the signed checkpoint" in failure
    assert _watch(quiet_ledger, state) == failure  # sticky


def test_the_watch_samples_older_events(quiet_ledger: Runtime) -> None:
    signer, state = _signer(quiet_ledger), WatchState()
    size = _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    assert _watch(quiet_ledger, state) is None
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        target = _positions(conn, USED)[0]
        conn.execute("DELETE FROM keyledger_events WHERE notification_id = %s", (target,))
    failure = _watch(quiet_ledger, state, samples=50 * size)
    assert failure is not None and f"event {target}" in failure and "deleted" in failure


def test_a_process_that_does_not_sign_samples_the_whole_tree(quiet_ledger: Runtime) -> None:
    signer, state = _signer(quiet_ledger), WatchState()
    _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    assert _watch(quiet_ledger, state, recent=False) is None
    size = _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        target = _positions(conn, USED)[-1]  # in the range the signer's watch recomputes
        conn.execute(
            "UPDATE keyledger_events SET state = state || '\\x00'::bytea"
            " WHERE notification_id = %s",
            (target,),
        )
    failure = _watch(quiet_ledger, state, samples=50 * size, recent=False)
    assert failure is not None and f"event {target}" in failure
    assert state.verified_size == state.started_at  # it recomputed nothing itself


def test_the_signer_stops_once_its_watch_failed(quiet_ledger: Runtime) -> None:
    signer = _signer(quiet_ledger)
    _grow(quiet_ledger)
    checkpointer = Checkpointer(
        quiet_ledger.database_url,
        lambda: signer,
        [],
        interval=0.05,
        watch_failure=lambda: "event 7 is not the event its leaf commits to",
    )
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.problem is None:
            assert time.monotonic() < deadline, "the checkpointer never ran"
            time.sleep(0.02)
    finally:
        checkpointer.stop()
    assert checkpointer.problem.startswith("the ledger watch failed: event 7")
    with psycopg.connect(quiet_ledger.database_url) as conn:
        assert _checkpoint_count(conn) == 0


def test_the_watch_finds_a_rollback(quiet_ledger: Runtime) -> None:
    signer, state = _signer(quiet_ledger), WatchState()
    _grow(quiet_ledger)
    _issue(quiet_ledger, signer)
    _grow(quiet_ledger)
    newest = _issue(quiet_ledger, signer).signed
    assert newest is not None and _watch(quiet_ledger, state) is None
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        _unguarded(conn, "DELETE FROM ledger_checkpoints WHERE size = %s", (newest.size,))
    failure = _watch(quiet_ledger, state)
    assert failure is not None and failure.startswith("rolled back")


# --- the running service ------------------------------------------------------------------
@pytest.fixture(params=database_backends()[:1])
def own_service(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A service of its own (its watch is made to fail: never the shared one)."""
    url = fresh_database(request.param)
    svc, server, thread = start_service(url, tmp_path, ledger_checkpoint_interval_seconds=0.2)
    yield svc
    server.should_exit = True
    thread.join(timeout=10)
    svc.runtime.stop()
    drop(url)


def test_a_running_service_signs_checkpoints_and_reports_tampering(own_service: Any) -> None:
    runtime: Runtime = own_service.runtime
    kms = own_service.client("kms")
    key = kms.create_key(Description="checkpoints")["KeyMetadata"]["KeyId"]
    for _ in range(3):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    deadline = time.monotonic() + 20
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        while True:  # a checkpoint covers the head within the Merkle log's lag + 0.2 s
            row = conn.execute(
                "SELECT n.notification_id FROM ledger_tree_nodes n WHERE n.level = 0"
                " AND n.index = (SELECT max(size) - 1 FROM ledger_checkpoints)"
            ).fetchone()
            if row is not None and int(row[0]) >= head:
                break
            assert time.monotonic() < deadline, "no checkpoint covers the head"
            time.sleep(0.05)
        assert [str(v) for v in published_verifiers(conn)] == [_signer(runtime).vkey]
    watch = runtime.ledger_watch
    assert watch is not None
    verifiers = [_signer(runtime).verifier]
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        assert watch.check(conn, verifiers) is None
    assert httpx.get(own_service.endpoint + "/readyz").json() == {"status": "ready"}
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("UPDATE keyledger_events SET state = state || '\\x00'::bytea")
        watch.samples = 1000
        assert watch.check(conn, verifiers) is not None
    ready = httpx.get(own_service.endpoint + "/readyz").json()
    assert ready["status"] == "degraded" and ready["ledger"]["verification"] == "failed"
    assert "event" in ready["ledger"]["failure"]
    metrics = httpx.get(own_service.endpoint + "/metrics").text
    assert "keyledger_ledger_verification_failed 1" in metrics
    assert "keyledger_ledger_checkpoint_lag_seconds" in metrics


# --- keyledger audit verify with a pinned key ---------------------------------------------
def _verify_cli(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": runtime.database_url}
    return subprocess.run(
        [sys.executable, "-m", "app", "audit", "verify", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rollback_to(conn: psycopg.Connection[Any], size: int, root: bytes) -> None:
    """The database as a backup taken at tree size `size` restores it."""
    row = conn.execute(
        "SELECT notification_id FROM ledger_tree_nodes WHERE level = 0 AND index = %s",
        (size - 1,),
    ).fetchone()
    assert row is not None
    last = int(row[0])
    for sql, params in (
        ("DELETE FROM keyledger_events WHERE notification_id > %s", (last,)),
        ("DELETE FROM ledger_checkpoints WHERE size > %s", (size,)),
        ("DELETE FROM ledger_tree_nodes WHERE (index + 1) * (2 ^ level)::bigint > %s", (size,)),
        ("UPDATE ledger_tree SET size = %s, notification_id = %s, root = %s", (size, last, root)),
        (
            "UPDATE projection_tracking SET notification_id = %s"
            " WHERE projection_name = 'merkle_log'",
            (last,),
        ),
    ):
        _unguarded(conn, sql, params)


def test_audit_verify_checks_signatures_and_kept_checkpoints(
    quiet_ledger: Runtime, tmp_path: Path
) -> None:
    signer = _signer(quiet_ledger)
    _grow(quiet_ledger)
    first = _issue(quiet_ledger, signer).signed
    _grow(quiet_ledger)
    kept = _issue(quiet_ledger, signer).signed
    assert first is not None and kept is not None
    kept_file = tmp_path / "kept.note"
    kept_file.write_text(kept.note)
    pinned = ("--public-key", signer.vkey, "--checkpoint", str(kept_file))

    done = _verify_cli(quiet_ledger, *pinned)
    assert done.returncode == 0, done.stderr
    assert "3 checkpoint(s)" in done.stdout  # the two stored and the one kept
    assert "signatures verified" in done.stdout
    stranger = LedgerSigner(signer.origin, Ed25519PrivateKey.generate())
    wrong_key = _verify_cli(quiet_ledger, "--public-key", stranger.vkey)
    assert wrong_key.returncode == 1 and "FAILED: unsigned:" in wrong_key.stderr

    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        _rollback_to(conn, first.size, first.root)
        assert verify_database(conn, [signer.verifier]).ok  # consistent with itself...
    rolled_back = _verify_cli(quiet_ledger, *pinned)  # ...but not with what was kept
    assert rolled_back.returncode == 1 and "FAILED: rolled-back:" in rolled_back.stderr
    _grow(quiet_ledger, 3)  # the restored ledger goes on, past the kept size
    assert _issue(quiet_ledger, signer).signed is not None
    forked = _verify_cli(quiet_ledger, *pinned)
    assert forked.returncode == 1 and "FAILED: forked:" in forked.stderr


def test_audit_verify_names_an_altered_or_re_signed_checkpoint_row(
    quiet_ledger: Runtime,
) -> None:
    signer = _signer(quiet_ledger)
    _grow(quiet_ledger)
    first = _issue(quiet_ledger, signer).signed
    assert first is not None
    stranger = LedgerSigner(signer.origin, Ed25519PrivateKey.generate())
    with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
        _unguarded(conn, "UPDATE ledger_checkpoints SET root = sha256(root)")
        altered = verify_database(conn, [signer.verifier]).failure
        assert altered is not None and altered.reason == Reason.CHECKPOINT
        _unguarded(
            conn,
            "UPDATE ledger_checkpoints SET root = %s, note = %s",
            (first.root, stranger.sign_checkpoint(first.size, first.root)),
        )
        re_signed = verify_database(conn, [signer.verifier]).failure
        assert re_signed is not None and re_signed.reason == Reason.UNSIGNED
        with pytest.raises(UnverifiedNoteError):
            open_checkpoint(
                conn.execute("SELECT note FROM ledger_checkpoints").fetchone()[0],  # type: ignore[index]
                [signer.verifier],
            )
    assert _verify_cli(quiet_ledger, "--public-key", signer.vkey).returncode == 1


# --- where the signer runs ----------------------------------------------------------------
def test_the_workers_of_a_supervised_service_sign_nothing_and_sample(
    quiet_ledger: Runtime,
) -> None:
    """`keyledger run --workers N` turns run_audit_projection off in its workers: they keep
    a sampling watch; the projection process signs (below)."""
    from app.bootstrap import ledger_guards

    worker = quiet_ledger.settings.model_copy(update={"run_audit_projection": False})
    checkpointer, watch = ledger_guards(worker, quiet_ledger.database_url, quiet_ledger.vault)
    assert checkpointer is None and watch is not None
    single = quiet_ledger.settings
    checkpointer, watch = ledger_guards(single, quiet_ledger.database_url, quiet_ledger.vault)
    assert checkpointer is not None and watch is not None


def test_the_projection_process_signs_checkpoints_with_the_root_key(
    quiet_ledger: Runtime,
) -> None:
    """`keyledger projections run --audit-only`, given the root key as the supervisor's
    projection process is, builds the Merkle log and signs its head with the service's key."""
    _fill(quiet_ledger, 2)
    head = int(quiet_ledger.ledger.recorder.max_notification_id() or 0)
    root_key = quiet_ledger.settings.root_key
    assert root_key is not None
    with projections_running(
        quiet_ledger.database_url,
        KEYLEDGER_ROOT_KEY=root_key.get_secret_value(),
        KEYLEDGER_LEDGER_CHECKPOINT_INTERVAL_SECONDS="0.2",
    ):
        deadline = time.monotonic() + 60
        with psycopg.connect(quiet_ledger.database_url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT n.notification_id FROM ledger_tree_nodes n WHERE n.level = 0"
                    " AND n.index = (SELECT max(size) - 1 FROM ledger_checkpoints)"
                ).fetchone()
                if row is not None and int(row[0]) >= head:
                    break
                assert time.monotonic() < deadline, "no checkpoint covers the head"
                time.sleep(0.1)
            assert verify_database(conn, [_signer(quiet_ledger).verifier]).ok
