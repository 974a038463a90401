"""The ledger's Merkle log: an RFC 9162 tree over every stored event (issue 13).

A batched consumer of the whole notification log (projections.batched). For each event,
in notification-id order, it hashes the row exactly as stored (the notification carries
the stored topic and state bytes, never decoded or re-encoded) into its leaf
(domain.ledger_leaves: position = notification id, originator id, version, topic,
SHA-256 of the state bytes), appends the leaf hash to a `CompactRange` and writes the
perfect nodes the append completes (domain.merkle) to ``ledger_tree_nodes``, and the new
size, last position and root to ``ledger_tree``, all in the batch's transaction with the
tracking position (migrations/013_merkle_log.sql): exactly once, resumable after a crash.
The compact range is restored from the stored frontier nodes when a leader starts (and
whenever the stored size is not the one in memory).

Gaps. A leaf's position is its notification id; its index in the tree is its rank. A
PostgreSQL sequence may skip ids (a rolled-back append), so index and position can differ:
a skipped id is simply absent from the tree, and the leaves' positions only increase. The
verifier (projections.ledger_verify) checks exactly that: positions strictly increasing,
and every stored event at or below the tree's last position is a leaf.

No event is ever set aside: a Merkle log with a hole would say a stored event was inserted.
An event the log cannot take even alone stops it, loudly (an ERROR in the log every
retry), until it is fixed; it never skips one.

Stored levels. Only the nodes of every fourth level are written (0, 4, 8, ...: about 1.07
rows an event instead of 2); `read_nodes` rebuilds a node of another level from its at
most 8 descendants at the stored level below it. Trees written before this (every level)
read the same: a stored node is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, ClassVar, NamedTuple

import psycopg
from eventsourcing.persistence import Notification, StoredEvent

from domain.ledger_leaves import encode_leaf
from domain.merkle import (
    HASH_SIZE,
    CompactRange,
    NodeId,
    descendants,
    frontier_nodes,
    leaf_hash,
    perfect_root,
)
from projections.batched import BatchedProjection, error_type

log = logging.getLogger("keyledger.merkle")

PROJECTION_NAME = "merkle_log"
LEADER_LOCK_ID = 0x6B6C6D6C  # "klml"

TREE_SELECT = "SELECT size, notification_id FROM ledger_tree WHERE id"
TREE_UPDATE = (
    "UPDATE ledger_tree SET size = %s, notification_id = %s, root = %s, updated_at = now() WHERE id"
)
NODES_SELECT = (
    "SELECT n.level, n.index, n.hash FROM ledger_tree_nodes n"
    " JOIN unnest(%s::smallint[], %s::bigint[]) AS f(level, index)"
    " ON n.level = f.level AND n.index = f.index"
)
NODES_COPY = "COPY ledger_tree_nodes (level, index, hash, notification_id) FROM STDIN"
# Levels written: multiples of this (a node of another level is rebuilt from <= 2**3 below).
STORED_LEVEL_STRIDE = 4
# Each stored row's leaf hash, computed by PostgreSQL exactly as domain.ledger_leaves
# encodes and hashes a leaf (SHA-256(0x00 || position u64 || originator 16 bytes ||
# version u64 || topic length u32 || topic UTF-8 || SHA-256(state)), all big-endian): the
# states never cross the wire and the per-event hashing runs in C. The tests compare the
# tree with one computed in Python from the stored rows; `keyledger audit verify` and the
# offline verifier hash in Python themselves.
LEAF_HASH_SQL = (
    "sha256('\\x00'::bytea || int8send(notification_id) || uuid_send(originator_id)"
    " || int8send(originator_version) || int4send(octet_length(topic))"
    " || convert_to(topic, 'UTF8') || sha256(state))"
)
# A pass's events as two values, their positions and their leaf hashes concatenated: one
# row, so the per-event work on this side is the tree's, not the driver's.
LEAF_BATCH = (
    "SELECT array_agg(notification_id ORDER BY notification_id),"
    " string_agg(leaf_hash, ''::bytea ORDER BY notification_id)"
    " FROM (SELECT notification_id, "
    + LEAF_HASH_SQL
    + " AS leaf_hash FROM keyledger_events WHERE notification_id > %s AND notification_id <= %s"
    " ORDER BY notification_id LIMIT %s) AS batch"
)
EVENT_DIGESTS = (
    "SELECT notification_id, originator_id, originator_version, topic, "
    + LEAF_HASH_SQL
    + " FROM keyledger_events WHERE notification_id > %s AND notification_id <= %s"
    " ORDER BY notification_id LIMIT %s"
)


class EventDigest(NamedTuple):
    """A stored event as the log needs it: its leaf hash (and what names it in a log line)."""

    id: int  # the notification id (the leaf's position)
    originator_id: Any
    originator_version: int
    topic: str
    leaf_hash: bytes


class MerkleLogError(RuntimeError):
    """The stored tree cannot be continued (missing frontier nodes, positions out of order)."""


def is_stored_level(level: int) -> bool:
    return level % STORED_LEVEL_STRIDE == 0


def _select_nodes(conn: psycopg.Connection[Any], nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not nodes:
        return {}
    rows = conn.execute(
        NODES_SELECT, ([n.level for n in nodes], [n.index for n in nodes])
    ).fetchall()
    return {NodeId(int(level), int(index)): bytes(h) for level, index, h in rows}


def stored_parts(node: NodeId) -> list[NodeId]:
    """The stored nodes `node` is read from: itself at a stored level, else its (at most
    2**3) descendants at the stored level below, whose `perfect_root` it is."""
    if is_stored_level(node.level):
        return [node]
    return descendants(node, node.level - node.level % STORED_LEVEL_STRIDE)


def read_nodes(conn: psycopg.Connection[Any], wanted: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The hashes of the `wanted` perfect nodes that the store holds or can rebuild from
    the stored level below (`stored_parts`), in at most two queries. A node missing from
    the result is missing from the store."""
    nodes = list(dict.fromkeys(wanted))
    found = _select_nodes(conn, nodes)
    rebuild = {node: stored_parts(node) for node in nodes if node not in found}
    rebuild = {node: parts for node, parts in rebuild.items() if parts != [node]}
    if rebuild:
        below = _select_nodes(conn, list({n for parts in rebuild.values() for n in parts}))
        for node, parts in rebuild.items():
            if all(part in below for part in parts):
                found[node] = perfect_root([below[part] for part in parts])
    return found


def load_compact_range(conn: psycopg.Connection[Any]) -> tuple[CompactRange, int]:
    """The stored tree's compact range and its last leaf's position (notification id)."""
    row = conn.execute(TREE_SELECT).fetchone()
    if row is None:
        raise MerkleLogError("ledger_tree has no row: run the migrations")
    size, position = int(row[0]), int(row[1])
    wanted = frontier_nodes(size)
    found = read_nodes(conn, wanted)
    missing = [node for node in wanted if node not in found]
    if missing:
        raise MerkleLogError(f"the tree of size {size} lacks its frontier nodes {missing}")
    return CompactRange.restore(size, found), position


NodeRow = tuple[int, int, bytes, int | None]  # level, index, hash, notification id (level 0)


def append_leaves(
    compact: CompactRange, last_position: int, positions: Sequence[int], hashes: bytes
) -> list[NodeRow]:
    """Append leaves (their events' positions, their leaf hashes concatenated) to
    `compact`; return the ``ledger_tree_nodes`` rows of the stored levels they complete.
    Positions must only increase (a skipped notification id is simply absent)."""
    if len(hashes) != HASH_SIZE * len(positions):
        raise MerkleLogError(f"{len(positions)} positions but {len(hashes)} bytes of hashes")
    if positions and positions[0] <= last_position:
        raise MerkleLogError(
            f"event {positions[0]} does not follow the tree's last leaf (event {last_position})"
        )
    if any(a >= b for a, b in pairwise(positions)):
        raise MerkleLogError("the events' positions do not increase")
    first = compact.size
    return [
        (level, index, value, positions[index - first] if level == 0 else None)
        for level, index, value in compact.extend(hashes, every=STORED_LEVEL_STRIDE)
    ]


def event_leaf_hash(event: Any) -> bytes:
    """The leaf hash of a stored row (anything with its ``id``, ``originator_id``,
    ``originator_version``, ``topic`` and ``state``)."""
    digest = hashlib.sha256(bytes(event.state)).digest()
    leaf = encode_leaf(
        int(event.id), event.originator_id, event.originator_version, event.topic, digest
    )
    return leaf_hash(leaf)


def node_rows_text(rows: Iterable[NodeRow]) -> str:
    """The rows as COPY text, formatted at once: a row costs a format, not a driver call."""
    null = "\\N"
    return "".join(
        f"{level}\t{index}\t\\\\x{value.hex()}\t{null if position is None else position}\n"
        for level, index, value, position in rows
    )


class MerkleLogProjection(BatchedProjection):
    """Appends every stored event's leaf to the ledger's Merkle tree."""

    name: ClassVar[str] = PROJECTION_NAME
    lock_id: ClassVar[int] = LEADER_LOCK_ID

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compact: CompactRange | None = None
        self._last_position = 0

    def reset(self) -> None:
        self._compact = None

    def _decode(self, notification: Notification | StoredEvent) -> Any:
        # The leaf is the stored row itself: nothing is decoded (nor decrypted).
        return notification

    def _next_batch(self, position: int, stop: int | None) -> tuple[Sequence[Any], int]:
        """Like every view's, but reading each row's leaf hash, not its state."""
        head = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        if head <= position:
            return [], position
        with self._pool.connection() as conn:
            rows = [
                EventDigest(int(i), o, int(v), str(t), bytes(h))
                for i, o, v, t, h in conn.execute(EVENT_DIGESTS, (position, head, self.batch_size))
            ]
        last = rows[-1].id if len(rows) == self.batch_size else head
        return rows, last

    def lag(self, now: datetime | None = None) -> float:
        """How long the oldest event not yet in the tree has waited, in seconds."""
        head = self._ledger.recorder.max_notification_id() or 0
        position = self.position()
        if position >= head:
            return 0.0
        pending = self._ledger.recorder.select_notifications(start=position + 1, limit=1)
        if not pending:
            return 0.0
        event: Any = self._ledger.mapper.to_domain_event(pending[0])
        waiting_since: datetime = event.timestamp
        return max(0.0, ((now or datetime.now(UTC)) - waiting_since).total_seconds())

    def catch_up(self, stop: int | None = None) -> int:
        """One pass, read as one row (positions and concatenated leaf hashes) and appended
        with `CompactRange.extend`; a failing pass is retried, then taken event by event
        through `apply` (projections.batched)."""
        position = self._position = self._position or self.position()
        head = stop if stop is not None else (self._ledger.recorder.max_notification_id() or 0)
        if head <= position:
            return 0
        with self._pool.connection() as conn:
            row = conn.execute(LEAF_BATCH, (position, head, self.batch_size)).fetchone()
        positions: list[int] = list(row[0] or []) if row else []
        hashes = bytes(row[1] or b"") if row else b""
        last = positions[-1] if len(positions) == self.batch_size else head
        if not self._commit(last, lambda conn: self._append(conn, positions, hashes)):
            return 0  # someone else moved it; continue from there
        return last - position

    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        """Events one at a time (the isolating path after failed passes)."""
        if events:
            leaves = b"".join(bytes(event.leaf_hash) for event in events)
            self._append(conn, [int(event.id) for event in events], leaves)

    def _append(self, conn: psycopg.Connection[Any], positions: list[int], hashes: bytes) -> None:
        """Append leaves (their positions, their hashes concatenated) in `conn`'s
        transaction: the nodes of the stored levels, then the tree's row."""
        if not positions:
            return
        row = conn.execute(TREE_SELECT + " FOR UPDATE").fetchone()
        stored_size = int(row[0]) if row else -1
        if self._compact is None or self._compact.size != stored_size:
            self._compact, self._last_position = load_compact_range(conn)
        compact = self._compact
        rows = append_leaves(compact, self._last_position, positions, hashes)
        with conn.cursor().copy(NODES_COPY) as copy:
            copy.write(node_rows_text(rows))
        conn.execute(TREE_UPDATE, (compact.size, positions[-1], compact.root()))
        self._last_position = positions[-1]

    def _dead_letter(self, notification: Any, through: int, error: Exception) -> bool:
        """Never set an event aside (a hole in the log reads as an inserted event): stop."""
        log.error(
            "%s CANNOT TAKE event %d (%s of %s version %d): %s: %s; the Merkle log stops"
            " here until it can",
            self.name,
            notification.id,
            notification.topic,
            notification.originator_id,
            notification.originator_version,
            error_type(error),
            error,
        )
        raise MerkleLogError(f"the Merkle log cannot take event {notification.id}") from error
