"""The running service's watch over its own ledger (issue 13; docs/verifiable-ledger.md).

`watch_pass` is one pass of a process's background check; the process keeps a
`WatchState` between passes. Each pass:

1. checks the newest checkpoint's signature (a key this process trusts) and that its row
   says what its note signs;
2. proves from the stored nodes that it extends the newest checkpoint this process saw
   before (a smaller one means the database was rolled back; another root, a fork);
3. re-verifies the recent range: the events appended since the last pass, recomputed from
   ``keyledger_events`` and appended to the compact range this process keeps, must hash to
   a signed checkpoint's root (at most `max_events` a pass; the rest next time). Only one
   process does this (the one that signs checkpoints): the others sample the whole tree;
4. samples older events: for `samples` random leaves under the checkpoint, the stored
   event must hash to the stored leaf, and the leaf's inclusion proof (from stored nodes)
   must lead to the signed root.

The first pass trusts the newest checkpoint that verifies (its signature is checked) and
starts the recent range there; everything older is covered by the samples, and fully by
``keyledger audit verify``. A failure is sticky: once seen, the state keeps it until the
process restarts (tampering does not heal by itself).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from domain.ledger_errors import LedgerVerificationError
from domain.merkle import (
    CompactRange,
    assemble,
    frontier_nodes,
    inclusion_plan,
    plan_nodes,
    verify_inclusion,
)
from domain.signed_notes import NoteVerifier
from projections.ledger_checkpoints import (
    StoredCheckpoint,
    check_stored_checkpoint,
    newest_checkpoint,
    tree_extends,
)
from projections.merkle_log import LEAF_HASH_SQL, read_nodes

CHECKPOINT_AT_MOST = (
    "SELECT size, root, note, signed_at FROM ledger_checkpoints WHERE size <= %s"
    " ORDER BY size DESC LIMIT 1"
)
# PostgreSQL computes the leaf hashes (projections.merkle_log.LEAF_HASH_SQL: the states need
# not cross the wire); `keyledger audit verify` hashes the stored bytes itself.
# As one row (the last position, the leaf hashes concatenated): the per-event work on this
# side is only the tree's (CompactRange.extend).
EVENTS_AFTER = (
    "SELECT max(notification_id), count(*),"
    " string_agg(leaf_hash, ''::bytea ORDER BY notification_id)"
    " FROM (SELECT notification_id, "
    + LEAF_HASH_SQL
    + " AS leaf_hash FROM keyledger_events WHERE notification_id > %s"
    " ORDER BY notification_id LIMIT %s) AS recent"
)
LEAVES_AT = (
    "SELECT index, notification_id, hash FROM ledger_tree_nodes WHERE level = 0 AND index = ANY(%s)"
)
EVENTS_AT = (
    "SELECT notification_id, "
    + LEAF_HASH_SQL
    + " FROM keyledger_events WHERE notification_id = ANY(%s)"
)


@dataclass
class WatchState:
    """What one process has verified so far."""

    trusted: StoredCheckpoint | None = None  # the newest checkpoint it verified
    compact: CompactRange | None = None  # the leaves it recomputed, as a compact range
    last_position: int = 0  # the notification id of the compact range's last leaf
    started_at: int = 0  # the size the recent range started at (older: sampled)
    sampled: int = 0  # older leaves checked by sampling, in all
    passes: int = 0
    failure: str | None = None  # sticky: the first failure seen

    @property
    def verified_size(self) -> int:
        return self.compact.size if self.compact is not None else 0


def watch_pass(
    conn: psycopg.Connection[Any],
    state: WatchState,
    verifiers: Sequence[NoteVerifier],
    *,
    max_events: int = 100_000,
    samples: int = 8,
    rng: random.Random | None = None,
    recent: bool = True,
) -> str | None:
    """One pass (in one repeatable-read snapshot, `conn` in autocommit); the failure seen,
    which `state` keeps, or None. `recent` False skips recomputing the recent range (one
    process does it: the checkpoint signer's) and samples the whole tree instead."""
    if state.failure is not None:
        return state.failure
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        failure = _pass(conn, state, verifiers, max_events, samples, rng or random.Random(), recent)
    state.passes += 1
    state.failure = failure
    return failure


def _pass(
    conn: psycopg.Connection[Any],
    state: WatchState,
    verifiers: Sequence[NoteVerifier],
    max_events: int,
    samples: int,
    rng: random.Random,
    recent: bool,
) -> str | None:
    newest = newest_checkpoint(conn)
    if newest is None:
        if state.trusted is not None:
            return f"every checkpoint is gone (this process saw size {state.trusted.size})"
        return None
    problem = check_stored_checkpoint(newest, verifiers)
    if problem is None and state.trusted is not None:
        trusted = state.trusted
        if newest.size < trusted.size:
            problem = (
                f"rolled back: the newest checkpoint is at size {newest.size}, this process"
                f" saw one at size {trusted.size} (signed {trusted.signed_at.isoformat()})"
            )
        else:
            problem = tree_extends(conn, trusted.size, trusted.root, newest.size, newest.root)
    if problem is not None:
        return problem
    state.trusted = newest
    if state.compact is None:
        _start(conn, state, newest)
        return None
    if not recent:
        return _sample(conn, state, samples, rng, newest.size)
    return _recent(conn, state, verifiers, max_events) or _sample(
        conn, state, samples, rng, state.started_at
    )


def _start(conn: psycopg.Connection[Any], state: WatchState, newest: StoredCheckpoint) -> None:
    """Begin the recent range at the newest (verified) checkpoint."""
    nodes = read_nodes(conn, frontier_nodes(newest.size))
    compact = CompactRange.restore(newest.size, nodes)
    last = conn.execute(
        "SELECT notification_id FROM ledger_tree_nodes WHERE level = 0 AND index = %s",
        (newest.size - 1,),
    ).fetchone()
    state.compact, state.started_at = compact, newest.size
    state.last_position = int(last[0]) if last else 0


def _recent(
    conn: psycopg.Connection[Any],
    state: WatchState,
    verifiers: Sequence[NoteVerifier],
    max_events: int,
) -> str | None:
    """Recompute the events since the last pass up to a signed checkpoint's size."""
    compact = state.compact
    assert compact is not None
    row = conn.execute(CHECKPOINT_AT_MOST, (compact.size + max_events,)).fetchone()
    if row is None or int(row[0]) <= compact.size:
        return None
    target = StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]), row[3])
    problem = check_stored_checkpoint(target, verifiers)
    if problem is not None:
        return problem
    wanted = target.size - compact.size
    extended = compact.copy()
    last = state.last_position
    row = conn.execute(EVENTS_AFTER, (state.last_position, wanted)).fetchone()
    if row is not None and row[1]:
        extended.extend(bytes(row[2]))
        last = int(row[0])
    if extended.size < target.size or extended.root() != target.root:
        return (
            f"the events after event {state.last_position} do not hash to the signed"
            f" checkpoint at size {target.size}: an event was altered, inserted, deleted or"
            " reordered (`keyledger audit verify` names it)"
        )
    state.compact, state.last_position = extended, last
    return None


def _sample(
    conn: psycopg.Connection[Any],
    state: WatchState,
    samples: int,
    rng: random.Random,
    below: int,
) -> str | None:
    """Check random leaves below index `below` against the trusted checkpoint."""
    trusted = state.trusted
    if trusted is None or below <= 0 or samples <= 0:
        return None
    indices = sorted({rng.randrange(below) for _ in range(samples)})
    leaves = {int(i): (int(p), bytes(h)) for i, p, h in conn.execute(LEAVES_AT, (indices,))}
    missing = [i for i in indices if i not in leaves]
    if missing:
        return f"leaf {missing[0]} under the checkpoint at size {trusted.size} is not stored"
    events = {
        int(row[0]): row for row in conn.execute(EVENTS_AT, ([p for p, _ in leaves.values()],))
    }
    plans = {i: inclusion_plan(i, trusted.size) for i in indices}
    nodes = read_nodes(conn, set().union(*(plan_nodes(p) for p in plans.values())))
    for index in indices:
        position, stored_hash = leaves[index]
        event = events.get(position)
        if event is None:
            return f"event {position} (leaf {index}) is gone: deleted from the ledger"
        recomputed = bytes(event[1])
        if recomputed != stored_hash:
            return f"event {position} (leaf {index}) is not the event its leaf commits to"
        try:
            proof = assemble(plans[index], nodes)
            verify_inclusion(recomputed, index, trusted.size, proof, trusted.root)
        except (KeyError, LedgerVerificationError):
            return (
                f"leaf {index} (event {position}) is not under the signed checkpoint at"
                f" size {trusted.size}: the stored tree was rewritten"
            )
    state.sampled += len(indices)
    return None
