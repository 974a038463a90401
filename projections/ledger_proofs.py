"""Reads of the ledger's evidence (issue 13): signed checkpoints, their signers, and RFC 9162
inclusion and consistency proofs against a checkpoint (docs/ledger-proofs.md).

Each proof is read in ONE repeatable-read, read-only snapshot: the checkpoint, the tree's
row, the leaf and its event, and only the O(log n) perfect nodes the proof needs
(`domain.merkle.plan_nodes`), in one query. The proof is checked against the checkpoint's
root before it is answered: a stored tree that no longer leads to a signed root is reported
as `LedgerInconsistentError` (run ``keyledger audit verify``), never handed out as evidence.

Errors are domain errors, so every adapter maps them once (app/aws/errors.py): the
``NotFoundError`` family answers 404, ``ValidationError`` 400, ``InternalError`` 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from domain.errors import InternalError, NotFoundError, ValidationError
from domain.ledger_errors import InvalidProofError
from domain.ledger_leaves import LeafFields, encode_leaf
from domain.merkle import (
    NodeId,
    assemble,
    consistency_plan,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    plan_nodes,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from projections.ledger_checkpoints import StoredCheckpoint
from projections.merkle_log import read_nodes

MAX_SIZE = 2**63 - 1  # sizes and positions are PostgreSQL bigints
MAX_PAGE = 1000


# --- errors ------------------------------------------------------------------------------
class NoSuchEventError(NotFoundError):
    """No stored event at that position, or no audit record with that eventID (in scope)."""


class EventNotInTreeError(NotFoundError):
    """The event is stored but the Merkle log has not taken it yet (retry shortly)."""


class NoSuchCheckpointError(NotFoundError):
    """No checkpoint of that size (or none signed yet)."""


class LeafNotUnderCheckpointError(NotFoundError):
    """The event's leaf is in the tree, but after the checkpoint asked for."""


class InvalidSizesError(ValidationError):
    """Sizes outside 1 <= from <= to, or beyond what the ledger can hold."""


class LedgerInconsistentError(InternalError):
    """The stored tree, its events and its checkpoints disagree: run keyledger audit verify."""


# --- answers -----------------------------------------------------------------------------
CheckpointRow = StoredCheckpoint  # a signed checkpoint as stored (note exactly as signed)


@dataclass(frozen=True, slots=True)
class SignerRow:
    key_name: str
    key_id: bytes
    public_key: bytes
    vkey: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    leaf: LeafFields  # its position is the event's notification id
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    checkpoint: CheckpointRow  # tree size = checkpoint.size


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    from_size: int
    to_size: int
    from_root: bytes
    proof: tuple[bytes, ...]
    from_checkpoint: CheckpointRow | None  # None: from_size is no checkpoint's size
    to_checkpoint: CheckpointRow


# --- SQL ---------------------------------------------------------------------------------
_CHECKPOINT = "SELECT size, root, note, signed_at FROM ledger_checkpoints"
_NEWEST = _CHECKPOINT + " ORDER BY size DESC LIMIT 1"
_BY_SIZE = _CHECKPOINT + " WHERE size = %s"
_PAGE = _CHECKPOINT + " WHERE size > %s ORDER BY size LIMIT %s"
_SIGNERS = (
    "SELECT key_name, key_id, public_key, vkey, created_at FROM ledger_signers"
    " ORDER BY created_at, key_name, key_id"
)
_BY_EVENT_ID = "SELECT notification_id FROM audit_events WHERE event_id = %s"
_IN_SCOPE = "SELECT 1 FROM audit_events WHERE notification_id = %s AND recipient_account_id = %s"
# The tree's row, the leaf at a position (BRIN index, migrations/020) and its event; the
# state's SHA-256 is computed by the server, so the state bytes never travel.
_LEAF = (
    "SELECT t.size, t.notification_id, l.index, l.hash,"
    " e.originator_id, e.originator_version, e.topic, sha256(e.state)"
    " FROM ledger_tree t"
    " LEFT JOIN ledger_tree_nodes l ON l.level = 0 AND l.notification_id = %(p)s"
    " LEFT JOIN keyledger_events e ON e.notification_id = %(p)s"
    " WHERE t.id"
)
_TREE = "SELECT size FROM ledger_tree WHERE id"


def _checkpoint(row: Any) -> CheckpointRow:
    size, root, note, signed_at = row
    return CheckpointRow(int(size), bytes(root), str(note), signed_at)


@contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """One repeatable-read, read-only transaction (a savepoint if one is open already)."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield conn


def _nodes(conn: psycopg.Connection[Any], wanted: frozenset[NodeId]) -> dict[NodeId, bytes]:
    """The perfect nodes `wanted`, stored or rebuilt from the stored level below
    (projections.merkle_log.read_nodes); every one must be there."""
    if not wanted:
        return {}
    found = read_nodes(conn, sorted(wanted))
    missing = wanted - found.keys()
    if missing:
        raise LedgerInconsistentError(
            f"the stored tree lacks {len(missing)} node(s) a proof needs, e.g. {min(missing)}"
        )
    return found


def _check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_SIZE:
        raise InvalidSizesError(f"{what} must be between 0 and {MAX_SIZE}")


# --- reads -------------------------------------------------------------------------------
def newest_checkpoint(conn: psycopg.Connection[Any]) -> CheckpointRow:
    row = conn.execute(_NEWEST).fetchone()
    if row is None:
        raise NoSuchCheckpointError("no checkpoint has been signed yet")
    return _checkpoint(row)


def checkpoint(conn: psycopg.Connection[Any], size: int | None = None) -> CheckpointRow:
    """The checkpoint of `size` leaves (None: the newest)."""
    if size is None:
        return newest_checkpoint(conn)
    _check_size(size, "size")
    row = conn.execute(_BY_SIZE, (size,)).fetchone()
    if row is None:
        raise NoSuchCheckpointError(f"no checkpoint of size {size}")
    return _checkpoint(row)


def checkpoints(
    conn: psycopg.Connection[Any], after_size: int = -1, limit: int = 100
) -> list[CheckpointRow]:
    """Checkpoints of size > `after_size`, smallest first, at most `limit` (<= MAX_PAGE)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
    if not -1 <= after_size <= MAX_SIZE:
        raise InvalidSizesError(f"after must be between -1 and {MAX_SIZE}")
    return [_checkpoint(row) for row in conn.execute(_PAGE, (after_size, limit)).fetchall()]


def signers(conn: psycopg.Connection[Any]) -> list[SignerRow]:
    return [
        SignerRow(str(name), bytes(kid), bytes(pub), str(vkey), created)
        for name, kid, pub, vkey, created in conn.execute(_SIGNERS).fetchall()
    ]


def position_of_event(
    conn: psycopg.Connection[Any], event_id: uuid.UUID, account: str | None = None
) -> int:
    """The ledger position of the audit record `event_id`; with `account`, only a record
    that account receives (another's is answered as absent: no existence oracle)."""
    sql, params = _BY_EVENT_ID, [event_id]
    if account is not None:
        sql += " AND recipient_account_id = %s"
        params.append(account)  # type: ignore[arg-type]
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise NoSuchEventError(f"no audit record with eventID {event_id}")
    return int(row[0])


def inclusion_proof(
    conn: psycopg.Connection[Any],
    *,
    position: int | None = None,
    event_id: uuid.UUID | None = None,
    size: int | None = None,
    account: str | None = None,
) -> InclusionProof:
    """The inclusion proof of the event at `position` (or of the record `event_id`) under
    the checkpoint of `size` leaves (None: the newest). `account` (None: every account)
    limits it to events of which that account receives an audit record."""
    if (position is None) == (event_id is None):
        raise ValidationError("name the event by exactly one of position and event_id")
    with _snapshot(conn):
        if event_id is not None:
            position = position_of_event(conn, event_id, account)
        elif position is None or not 0 <= position <= MAX_SIZE:
            raise NoSuchEventError(f"no event at position {position}")
        elif account is not None and not conn.execute(_IN_SCOPE, (position, account)).fetchone():
            raise NoSuchEventError(f"no event at position {position} in your audit trail")
        assert position is not None
        signed = checkpoint(conn, size)
        row = conn.execute(_LEAF, {"p": position}).fetchone()
        if row is None:
            raise LedgerInconsistentError("ledger_tree has no row: run the migrations")
        tree_size, last_position, index, stored_hash, originator, version, topic, state = row
        if originator is None and index is None:
            raise NoSuchEventError(f"no event at position {position}")
        if index is None:
            if position > int(last_position):
                raise EventNotInTreeError(
                    f"the event at position {position} is not in the tree yet (it ends at"
                    f" position {int(last_position)}); retry shortly"
                )
            raise LedgerInconsistentError(f"the event at position {position} has no leaf")
        if originator is None:
            raise LedgerInconsistentError(f"the leaf of position {position} has no event")
        index = int(index)
        if index >= signed.size:
            raise LeafNotUnderCheckpointError(
                f"the event at position {position} is leaf {index}, after the checkpoint of"
                f" size {signed.size}; ask for a newer checkpoint"
            )
        if signed.size > int(tree_size):
            raise LedgerInconsistentError(f"the tree is shorter than checkpoint {signed.size}")
        plan = inclusion_plan(index, signed.size)
        proof = assemble(plan, _nodes(conn, plan_nodes(plan)))
    fields = LeafFields(position, originator, int(version), str(topic), bytes(state))
    computed = leaf_hash(
        encode_leaf(fields.position, originator, fields.version, fields.topic, fields.state_hash)
    )
    if computed != bytes(stored_hash):
        raise LedgerInconsistentError(f"the event at position {position} is not its leaf")
    try:
        verify_inclusion(computed, index, signed.size, proof, signed.root)
    except InvalidProofError as error:
        raise LedgerInconsistentError(f"checkpoint {signed.size}: {error}") from None
    return InclusionProof(index, fields, computed, tuple(proof), signed)


def consistency_proof(
    conn: psycopg.Connection[Any], from_size: int, to_size: int | None = None
) -> ConsistencyProof:
    """The consistency proof from the tree of `from_size` leaves to the checkpoint of
    `to_size` (None: the newest). `from_size` may be any size in 1..to_size; when it is a
    checkpoint's, that checkpoint is answered too (the root an auditor can trust)."""
    _check_size(from_size, "from")
    if to_size is not None:
        _check_size(to_size, "to")
    if from_size < 1:
        raise InvalidSizesError("from must be at least 1 (the empty tree needs no proof)")
    if to_size is not None and from_size > to_size:
        raise InvalidSizesError(f"from ({from_size}) is after to ({to_size})")
    with _snapshot(conn):
        second = checkpoint(conn, to_size)
        if from_size > second.size:
            raise InvalidSizesError(f"from ({from_size}) is after to ({second.size})")
        row = conn.execute(_BY_SIZE, (from_size,)).fetchone()
        first = _checkpoint(row) if row is not None else None
        tree = conn.execute(_TREE).fetchone()
        if tree is None or int(tree[0]) < second.size:
            raise LedgerInconsistentError(f"the tree is shorter than checkpoint {second.size}")
        plan = consistency_plan(from_size, second.size)
        nodes = _nodes(conn, plan_nodes(plan) | frozenset(frontier_nodes(from_size)))
    proof = assemble(plan, nodes)
    from_root = root_at(from_size, nodes)
    try:
        if first is not None and first.root != from_root:
            raise InvalidProofError(f"the stored tree's root is not checkpoint {from_size}'s")
        verify_consistency(from_size, second.size, proof, from_root, second.root)
    except InvalidProofError as error:
        raise LedgerInconsistentError(f"checkpoint {second.size}: {error}") from None
    return ConsistencyProof(from_size, second.size, from_root, tuple(proof), first, second)


# --- over a pool -------------------------------------------------------------------------
class LedgerProofs:
    """The reads above over a connection pool (synchronous: call them from a thread)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def checkpoint(self, size: int | None = None) -> CheckpointRow:
        with self._pool.connection() as conn:
            return checkpoint(conn, size)

    def checkpoints(self, after_size: int = -1, limit: int = 100) -> list[CheckpointRow]:
        with self._pool.connection() as conn:
            return checkpoints(conn, after_size, limit)

    def signers(self) -> list[SignerRow]:
        with self._pool.connection() as conn:
            return signers(conn)

    def inclusion_proof(
        self,
        *,
        position: int | None = None,
        event_id: uuid.UUID | None = None,
        size: int | None = None,
        account: str | None = None,
    ) -> InclusionProof:
        with self._pool.connection() as conn:
            return inclusion_proof(
                conn, position=position, event_id=event_id, size=size, account=account
            )

    def consistency_proof(self, from_size: int, to_size: int | None = None) -> ConsistencyProof:
        with self._pool.connection() as conn:
            return consistency_proof(conn, from_size, to_size)
