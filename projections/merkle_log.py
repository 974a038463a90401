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
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

import psycopg
from eventsourcing.persistence import Notification, StoredEvent

from domain.ledger_leaves import encode_leaf
from domain.merkle import CompactRange, NodeId, frontier_nodes, leaf_hash
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


def read_nodes(conn: psycopg.Connection[Any], wanted: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The stored hashes of the `wanted` perfect nodes (those stored), in one query."""
    nodes = list(wanted)
    if not nodes:
        return {}
    rows = conn.execute(
        NODES_SELECT, ([n.level for n in nodes], [n.index for n in nodes])
    ).fetchall()
    return {NodeId(int(level), int(index)): bytes(h) for level, index, h in rows}


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


def append_events(
    compact: CompactRange, last_position: int, events: Iterable[Any]
) -> tuple[list[NodeRow], int]:
    """Append stored events (anything with the stored row's ``id``, ``originator_id``,
    ``originator_version``, ``topic`` and ``state``) in order to `compact`; return the
    ``ledger_tree_nodes`` rows they complete and the last position. Positions must only
    increase (a skipped notification id is simply absent)."""
    rows: list[NodeRow] = []
    last = last_position
    for event in events:
        position = int(event.id)
        if position <= last:
            raise MerkleLogError(
                f"event {position} does not follow the tree's last leaf (event {last})"
            )
        leaf = getattr(event, "leaf_hash", None)
        if leaf is None:  # a stored row as such: hash it here
            digest = hashlib.sha256(bytes(event.state)).digest()
            version, topic = event.originator_version, event.topic
            leaf = leaf_hash(encode_leaf(position, event.originator_id, version, topic, digest))
        for node, value in compact.append(leaf):
            rows.append((node.level, node.index, value, position if node.level == 0 else None))
        last = position
    return rows, last


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

    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        if not events:
            return
        row = conn.execute(TREE_SELECT + " FOR UPDATE").fetchone()
        stored_size = int(row[0]) if row else -1
        if self._compact is None or self._compact.size != stored_size:
            self._compact, self._last_position = load_compact_range(conn)
        compact = self._compact
        rows, last = append_events(compact, self._last_position, events)
        with conn.cursor().copy(NODES_COPY) as copy:
            for values in rows:
                copy.write_row(values)
        conn.execute(TREE_UPDATE, (compact.size, last, compact.root()))
        self._last_position = last

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
