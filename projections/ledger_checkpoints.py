"""Issuing the ledger's signed checkpoints (issue 13; docs/verifiable-ledger.md).

`issue_checkpoint` signs the Merkle log's current tree head (``ledger_tree``) as a
c2sp.org/tlog-checkpoint note and keeps it (``ledger_checkpoints``, one row per checkpoint,
never rewritten). A log must never sign two checkpoints that are not consistent, so it
first proves, from the stored nodes, that the tree it is about to sign extends the newest
checkpoint (which must carry a valid signature of a key it trusts), and that the stored
root is its nodes' root. A tree that does not (its rows were rewritten, or the database
was restored from an older backup) is not signed: the outcome names the problem, which
the caller reports loudly. Nothing here holds a key: the caller passes `sign`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from domain.checkpoints import open_checkpoint
from domain.ledger_errors import LedgerVerificationError
from domain.merkle import (
    assemble,
    consistency_plan,
    frontier_nodes,
    plan_nodes,
    root_at,
    verify_consistency,
)
from domain.signed_notes import NoteVerifier
from projections.merkle_log import read_nodes

TREE_HEAD = "SELECT size, root FROM ledger_tree WHERE id"
NEWEST_CHECKPOINT = (
    "SELECT size, root, note, signed_at FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"
)
INSERT_CHECKPOINT = (
    "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)"
    " ON CONFLICT (size) DO NOTHING"
)
# The notification id of the last event the newest checkpoint covers (its leaf size - 1).
COVERED_POSITION = (
    "SELECT n.notification_id FROM ledger_tree_nodes n"
    " WHERE n.level = 0 AND n.index = (SELECT max(size) - 1 FROM ledger_checkpoints)"
)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class IssueOutcome:
    signed: StoredCheckpoint | None = None  # the checkpoint written by this call
    problem: str | None = None  # why nothing may be signed (tampering, rollback)


def newest_checkpoint(conn: psycopg.Connection[Any]) -> StoredCheckpoint | None:
    row = conn.execute(NEWEST_CHECKPOINT).fetchone()
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]), row[3])


def check_stored_checkpoint(
    checkpoint: StoredCheckpoint, verifiers: Sequence[NoteVerifier]
) -> str | None:
    """Why a stored checkpoint is not one of ours as stored (None: it is)."""
    try:
        opened, _ = open_checkpoint(checkpoint.note, verifiers)
    except LedgerVerificationError as error:
        return f"the checkpoint at size {checkpoint.size} does not verify: {error}"
    if (opened.size, opened.root_hash) != (checkpoint.size, checkpoint.root):
        return f"the checkpoint row at size {checkpoint.size} is not what its note signs"
    return None


def tree_extends(
    conn: psycopg.Connection[Any], size1: int, root1: bytes, size2: int, root2: bytes
) -> str | None:
    """Why the stored tree at size2 (root2) is not an extension of size1 (root1), proven
    from the stored nodes; None when it is."""
    if size2 < size1:
        return (
            f"the tree has {size2} leaves, fewer than the checkpoint at size {size1}:"
            " the ledger was rolled back or truncated"
        )
    plan = consistency_plan(size1, size2)
    wanted = plan_nodes(plan) | set(frontier_nodes(size2))
    nodes = read_nodes(conn, wanted)
    missing = sorted(wanted - nodes.keys(), key=lambda n: (n.level, n.index))
    if missing:
        return f"the stored tree lacks nodes {missing[:3]} of its size {size2}"
    if root_at(size2, nodes) != root2:
        return f"the stored root at size {size2} is not its nodes' root"
    try:
        verify_consistency(size1, size2, assemble(plan, nodes), root1, root2)
    except LedgerVerificationError as error:
        return f"the tree at size {size2} does not extend the checkpoint at {size1}: {error}"
    return None


def issue_checkpoint(
    conn: psycopg.Connection[Any],
    sign: Callable[[int, bytes], str],
    verifiers: Sequence[NoteVerifier],
) -> IssueOutcome:
    """Sign and keep the tree head when it grew past the newest checkpoint; `conn` in
    autocommit. Reads in one snapshot, so the head and its nodes agree."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        head = conn.execute(TREE_HEAD).fetchone()
        if head is None:
            return IssueOutcome(problem="ledger_tree has no row: run the migrations")
        size, root = int(head[0]), bytes(head[1])
        newest = newest_checkpoint(conn)
        if newest is not None:
            problem = check_stored_checkpoint(newest, verifiers)
            if problem is None:
                problem = tree_extends(conn, newest.size, newest.root, size, root)
            if problem is not None or size == newest.size:
                return IssueOutcome(problem=problem)
        elif size == 0:
            return IssueOutcome()
        elif (problem := tree_extends(conn, 0, root_at(0, {}), size, root)) is not None:
            return IssueOutcome(problem=problem)
        note = sign(size, root)
        row = conn.execute(INSERT_CHECKPOINT + " RETURNING signed_at", (size, root, note))
        inserted = row.fetchone()
    if inserted is None:  # another signer got there first: the same head, the same note
        return IssueOutcome()
    return IssueOutcome(StoredCheckpoint(size, root, note, inserted[0]))


def covered_position(conn: psycopg.Connection[Any]) -> int:
    """The notification id of the newest event under a signed checkpoint (0: none). The
    checkpoint lag is the age of the oldest event after it."""
    row = conn.execute(COVERED_POSITION).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
