"""Reads of the Merkle log for the offline export (docs/ledger-export.md).

What ``keyledger audit export`` puts under ``ledger/``: leaves by index with their events'
fields, stored perfect nodes (for the compact range before the export's first leaf and the
consistency proof up to the checkpoint), signed checkpoints and the published signer keys.
Run them in one REPEATABLE READ transaction so that they describe one state of the log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from domain.ledger_leaves import encode_leaf
from domain.merkle import NodeId, leaf_hash
from projections.ledger_checkpoints import StoredCheckpoint
from projections.ledger_checkpoints import newest_checkpoint as newest_checkpoint
from projections.merkle_log import read_nodes


class LedgerExportError(RuntimeError):
    """The log cannot back an export (behind, unsigned, or not verifying)."""


@dataclass(frozen=True, slots=True)
class ExportedLeaf:
    index: int
    position: int
    originator_id: uuid.UUID
    version: int
    topic: str
    state_sha256: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "position": self.position,
            "originator_id": str(self.originator_id),
            "version": self.version,
            "topic": self.topic,
            "state_sha256": self.state_sha256.hex(),
        }


CHECKPOINT_COLUMNS = "SELECT size, root, note, signed_at FROM ledger_checkpoints"


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]), row[3])


def leaf_index(conn: psycopg.Connection[Any], notification_id: int) -> int | None:
    """The tree index of an event's leaf; None while the log has not taken it."""
    row = conn.execute(
        "SELECT index FROM ledger_tree_nodes WHERE level = 0 AND notification_id = %s",
        (notification_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def tree_size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT size FROM ledger_tree WHERE id").fetchone()
    return int(row[0]) if row else 0


def checkpoints_up_to(conn: psycopg.Connection[Any], size: int) -> Iterator[StoredCheckpoint]:
    """Every checkpoint of at most `size` leaves, smallest first."""
    with conn.cursor(name="ledger_export_checkpoints") as cursor:
        cursor.execute(CHECKPOINT_COLUMNS + " WHERE size <= %s ORDER BY size", (size,))
        for row in cursor:
            yield _checkpoint(row)


def signer_keys(conn: psycopg.Connection[Any]) -> list[str]:
    """The published verifier keys, oldest first."""
    rows = conn.execute("SELECT vkey FROM ledger_signers ORDER BY created_at, key_name")
    return [str(row[0]) for row in rows]


def stored_nodes(conn: psycopg.Connection[Any], ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The hashes of these perfect nodes, stored or rebuilt from the stored level below
    (projections.merkle_log.read_nodes; LedgerExportError if one is missing)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found = read_nodes(conn, wanted)
    missing = [node for node in wanted if node not in found]
    if missing:
        raise LedgerExportError(f"the stored tree lacks the nodes {missing[:5]}")
    return found


def leaves(conn: psycopg.Connection[Any], first: int, end: int) -> Iterator[ExportedLeaf]:
    """Leaves [first, end) with their events' fields, each rechecked against its stored
    leaf hash so that an export never carries a leaf the tree does not hold."""
    with conn.cursor(name="ledger_export_leaves") as cursor:
        cursor.itersize = 2000
        # sha256(state) in the database: the state bytes (maybe wrapped key material) never
        # leave it, and only their hash is exported.
        cursor.execute(
            "SELECT n.index, n.notification_id, n.hash, e.originator_id,"
            " e.originator_version, e.topic, sha256(e.state)"
            " FROM ledger_tree_nodes n LEFT JOIN keyledger_events e"
            " ON e.notification_id = n.notification_id"
            " WHERE n.level = 0 AND n.index >= %s AND n.index < %s ORDER BY n.index",
            (first, end),
        )
        expected = first
        for index, position, stored, originator, version, topic, state_hash in cursor:
            if int(index) != expected or originator is None:
                raise LedgerExportError(
                    f"leaf {expected} (event {position}) has no stored event or node:"
                    " run `keyledger audit verify`"
                )
            leaf = ExportedLeaf(
                int(index), int(position), originator, int(version), topic, bytes(state_hash)
            )
            if _leaf_hash(leaf) != bytes(stored):
                raise LedgerExportError(
                    f"leaf {index} is not the stored event {position}: run `keyledger audit verify`"
                )
            expected += 1
            yield leaf
        if expected != end:
            raise LedgerExportError(f"the stored tree ends at leaf {expected}, before {end}")


def _leaf_hash(leaf: ExportedLeaf) -> bytes:
    return leaf_hash(
        encode_leaf(leaf.position, leaf.originator_id, leaf.version, leaf.topic, leaf.state_sha256)
    )
