"""Live verification of the ledger against its Merkle log (issue 13).

`verify_ledger` is the pure core: given the stored events in notification-id order, the
stored leaves (level-0 nodes with their positions) in index order, the stored tree's size
and root, and the stored checkpoints, it recomputes every leaf from the events, rebuilds
the tree and returns the FIRST failure, with a typed reason:

- ``altered``: the event at a leaf's position hashes to another leaf;
- ``reordered``: so does it, but its content is another position's leaf (rows moved or
  their contents swapped);
- ``missing``: a leaf's position has no stored event (a row deleted);
- ``inserted``: a stored event at or below the tree's last position has no leaf;
- ``truncated``: the events end before the tree (or a checkpoint) does;
- ``tree``: the stored tree contradicts itself (leaf positions not increasing, a size or
  root that is not its leaves');
- ``checkpoint``: a checkpoint row is not what its note signs, or (no key pinned) its
  root is not the root of the events at its size;
- ``unsigned``: a checkpoint's note carries no valid signature of a pinned key;
- ``forked``: a checkpoint signed by a pinned key (stored, or kept by the auditor) is not
  the root of the events at its size: the signed history and the ledger diverge;
- ``rolled-back``: a checkpoint the auditor kept covers more events than the ledger has
  (a restore from an older backup, or a truncation with its checkpoints).

`verify_database` is the SQL reader: it streams both tables in ONE repeatable-read
snapshot (server-side cursors, O(log n) memory beyond one fetch) and calls the core.

What this does not show: an attacker who rewrites the events, the tree tables AND the
checkpoints consistently is caught only by a pinned key (they cannot sign) or by a
checkpoint kept from before (a rollback); events after the tree's last position are not
yet under the tree and are not checked.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from domain.checkpoints import Checkpoint, open_checkpoint
from domain.ledger_errors import LedgerVerificationError
from domain.ledger_leaves import leaf_hash_of
from domain.merkle import CompactRange
from domain.signed_notes import NoteVerifier
from projections.merkle_log import is_stored_level

REORDER_WINDOW = 10_000  # leaves scanned past an altered one, looking for where it moved
FETCH_ROWS = 5_000


class Reason(StrEnum):
    ALTERED = "altered"
    REORDERED = "reordered"
    MISSING = "missing"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    TREE = "tree"
    CHECKPOINT = "checkpoint"
    UNSIGNED = "unsigned"
    FORKED = "forked"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored event, exactly as stored (``keyledger_events``)."""

    position: int  # notification_id
    originator_id: uuid.UUID
    version: int
    topic: str
    state: bytes

    def leaf_hash(self, position: int | None = None) -> bytes:
        pos = self.position if position is None else position
        return leaf_hash_of(pos, self.originator_id, self.version, self.topic, self.state)


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """A level-0 node of ``ledger_tree_nodes``: its index, its event's position, its hash."""

    index: int
    position: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    reason: Reason
    detail: str
    position: int | None = None  # the event's notification id, when one is named
    index: int | None = None  # the leaf's index in the tree, when one is named

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verification:
    size: int  # the stored tree's size
    checked: int  # leaves recomputed from events
    checkpoints: int  # checkpoints checked
    root: bytes  # the root recomputed from the events (at `checked` leaves)
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Peek(Iterator[Any]):
    """An iterator that can look at its next item."""

    _END = object()

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._next: Any = next(self._items, self._END)

    def peek(self) -> Any | None:
        return None if self._next is self._END else self._next

    def __next__(self) -> Any:
        if self._next is self._END:
            raise StopIteration
        item, self._next = self._next, next(self._items, self._END)
        return item


def _describe(event: EventRow) -> str:
    return f"event {event.position} ({event.topic} of {event.originator_id} v{event.version})"


def _moved(event: EventRow, leaf: StoredLeaf, events: _Peek, leaves: _Peek) -> Failure | None:
    """After an altered leaf: REORDERED if the event's content is another leaf's within the
    window (or another event's content is this leaf's), else ALTERED."""
    window_events: list[EventRow] = []
    window_leaves: list[StoredLeaf] = []
    for _ in range(REORDER_WINDOW):
        e, lf = events.peek(), leaves.peek()
        if e is None and lf is None:
            break
        if e is not None:
            window_events.append(next(events))
        if lf is not None:
            window_leaves.append(next(leaves))
    for other in window_leaves:
        if event.leaf_hash(other.position) == other.hash:
            return Failure(
                Reason.REORDERED,
                f"{_describe(event)} is stored at {event.position} but belongs at"
                f" event {other.position} (leaf {other.index})",
                event.position,
                leaf.index,
            )
    for other_event in window_events:
        if other_event.leaf_hash(leaf.position) == leaf.hash:
            return Failure(
                Reason.REORDERED,
                f"leaf {leaf.index} (event {leaf.position}) holds"
                f" {_describe(other_event)}, stored at event {other_event.position}",
                event.position,
                leaf.index,
            )
    return None


def verify_ledger(
    events: Iterable[EventRow],
    leaves: Iterable[StoredLeaf],
    size: int,
    root: bytes,
    checkpoints: Iterable[tuple[int, bytes]] = (),
    internal_nodes: Callable[[int], Iterable[tuple[int, bytes]]] | None = None,
    *,
    signed: bool = False,
    kept: Iterable[tuple[int, bytes]] = (),
) -> Verification:
    """Recompute the tree from `events` and compare it with the stored one; first failure.

    `events` in notification-id order (only those at or below the tree's last position
    matter: later ones are not under the tree yet), `leaves` in index order, `size` and
    `root` the stored tree's, `checkpoints` as (size, root). `internal_nodes(level)`, when
    given, streams a level's stored (index, hash) in index order: each node above the
    leaves is then compared as the rebuild completes it. `signed`: the checkpoints'
    signatures were verified with a pinned key (a root that differs is then a fork).
    `kept`: checkpoints the auditor kept from before (verified), as (size, root).
    """
    wanted = sorted(checkpoints)
    kept_ones = sorted(kept)
    compact = CompactRange()
    levels: dict[int, _Peek] = {}
    event_items, leaf_items = _Peek(events), _Peek(leaves)
    failure: Failure | None = None
    checked = 0
    roots: dict[int, bytes] = {0: compact.root()}
    due = {s for s, _ in wanted} | {s for s, _ in kept_ones}
    last_position = 0
    while failure is None:
        leaf: StoredLeaf | None = leaf_items.peek()
        event: EventRow | None = event_items.peek()
        if leaf is None:
            break  # events past the last leaf are not under the tree yet
        if leaf.index != compact.size or leaf.position <= last_position:
            failure = Failure(
                Reason.TREE,
                f"stored leaf {leaf.index} (event {leaf.position}) does not follow leaf"
                f" {compact.size - 1} (event {last_position})",
                leaf.position,
                leaf.index,
            )
            break
        if event is None:
            failure = Failure(
                Reason.TRUNCATED,
                f"the events end at leaf {leaf.index} (event {leaf.position}) of a tree of"
                f" {size}: the ledger's tail is gone",
                leaf.position,
                leaf.index,
            )
            break
        if event.position < leaf.position:
            failure = Failure(
                Reason.INSERTED,
                f"{_describe(event)} has no leaf: the tree goes from event {last_position}"
                f" to event {leaf.position}",
                event.position,
                leaf.index,
            )
            break
        if event.position > leaf.position:
            failure = Failure(
                Reason.MISSING,
                f"leaf {leaf.index} is event {leaf.position}, which is not stored"
                f" (the next stored is event {event.position})",
                leaf.position,
                leaf.index,
            )
            break
        next(leaf_items)
        next(event_items)
        recomputed = event.leaf_hash()
        if recomputed != leaf.hash:
            failure = _moved(event, leaf, event_items, leaf_items)
            if failure is None:
                failure = Failure(
                    Reason.ALTERED,
                    f"{_describe(event)} is not the event leaf {leaf.index} commits to",
                    event.position,
                    leaf.index,
                )
            break
        for node, value in compact.append(recomputed)[1:]:
            if internal_nodes is None:
                break
            if node.level not in levels:
                levels[node.level] = _Peek(internal_nodes(node.level))
            stream = levels[node.level]
            if not is_stored_level(node.level):  # only trees written before skip it
                ahead = stream.peek()
                if ahead is None or ahead[0] > node.index:
                    continue
            stored = next(stream, None)
            if stored is None or stored != (node.index, value):
                failure = Failure(
                    Reason.TREE,
                    f"stored node ({node.level}, {node.index}) is not the hash of its"
                    f" children (leaves {node.begin} to {node.end - 1})"
                    + ("; it is not stored" if stored is None else ""),
                    event.position,
                    leaf.index,
                )
                break
        if failure is not None:
            break
        checked += 1
        last_position = event.position
        if compact.size in due:
            roots[compact.size] = compact.root()
    computed_root = compact.root()
    if failure is None and checked != size:
        failure = Failure(
            Reason.TREE, f"the tree says {size} leaves; {checked} are stored", index=checked
        )
    if failure is None and computed_root != root:
        failure = Failure(Reason.TREE, f"the stored root at size {size} is not its leaves' root")
    done = 0
    for cp_size, cp_root in wanted:
        if failure is not None:
            break
        if cp_size > checked:
            failure = Failure(
                Reason.TRUNCATED,
                f"a checkpoint covers {cp_size} events; the ledger's tree has {checked}",
                index=checked,
            )
        elif roots[cp_size] != cp_root:
            failure = Failure(
                Reason.FORKED if signed else Reason.CHECKPOINT,
                f"the {'signed ' if signed else ''}checkpoint at size {cp_size} is not the"
                f" root of the first {cp_size} events",
                index=cp_size,
            )
        else:
            done += 1
    for cp_size, cp_root in kept_ones:
        if failure is not None:
            break
        if cp_size > checked:
            failure = Failure(
                Reason.ROLLED_BACK,
                f"a checkpoint you kept covers {cp_size} events; the ledger has {checked}:"
                " it was restored from an older backup or truncated",
                index=checked,
            )
        elif roots[cp_size] != cp_root:
            failure = Failure(
                Reason.FORKED,
                f"the first {cp_size} events are not those the checkpoint you kept signed:"
                " the ledger was rolled back and rewritten, or forked",
                index=cp_size,
            )
        else:
            done += 1
    return Verification(size, checked, done, computed_root, failure)


# --- the SQL reader ------------------------------------------------------------------------
EVENTS_SQL = (
    "SELECT notification_id, originator_id, originator_version, topic, state"
    " FROM keyledger_events WHERE notification_id <= %s ORDER BY notification_id"
)
LEAVES_SQL = (
    "SELECT index, notification_id, hash FROM ledger_tree_nodes WHERE level = 0 ORDER BY index"
)
NODES_SQL = "SELECT index, hash FROM ledger_tree_nodes WHERE level = %s ORDER BY index"
TREE_SQL = "SELECT size, notification_id, root FROM ledger_tree WHERE id"
CHECKPOINTS_SQL = "SELECT size, root, note FROM ledger_checkpoints ORDER BY size"


def check_checkpoint_rows(
    rows: Iterable[tuple[int, bytes, str]], verifiers: Sequence[NoteVerifier]
) -> Failure | None:
    """The first stored checkpoint (size, root, note) that is not signed by a pinned key
    (UNSIGNED) or whose row is not what its note signs (CHECKPOINT)."""
    for size, root, note in rows:
        try:
            opened, _ = open_checkpoint(note, verifiers)
        except LedgerVerificationError as error:
            return Failure(
                Reason.UNSIGNED,
                f"the checkpoint at size {size} has no valid signature of a pinned key: {error}",
                index=size,
            )
        if (opened.size, opened.root_hash) != (size, root):
            return Failure(
                Reason.CHECKPOINT,
                f"the checkpoint row at size {size} is not what its note signs (size"
                f" {opened.size}): the row was altered",
                index=size,
            )
    return None


def verify_database(
    conn: psycopg.Connection[Any],
    verifiers: Sequence[NoteVerifier] = (),
    kept: Sequence[Checkpoint] = (),
) -> Verification:
    """Verify the ledger on `conn` in one snapshot: a repeatable-read transaction of its own
    when `conn` is idle, else (a savepoint in) the caller's transaction. With `verifiers`
    (the pinned keys), every stored checkpoint's signature is checked too; `kept` are
    checkpoints the auditor kept (already verified), checked against the events."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute(TREE_SQL).fetchone()
        if row is None:
            return Verification(
                0, 0, 0, b"", Failure(Reason.TREE, "ledger_tree has no row: no Merkle log")
            )
        size, last_position, root = int(row[0]), int(row[1]), bytes(row[2])
        rows = [(int(s), bytes(r), str(n)) for s, r, n in conn.execute(CHECKPOINTS_SQL)]
        if verifiers:
            unsigned = check_checkpoint_rows(rows, verifiers)
            if unsigned is not None:
                return Verification(size, 0, 0, b"", unsigned)
        checkpoints = [(s, r) for s, r, _ in rows]
        with (
            conn.cursor(name="kl_verify_events") as event_rows,
            conn.cursor(name="kl_verify_leaves") as leaf_rows,
            contextlib.ExitStack() as level_cursors,
        ):
            event_rows.itersize = leaf_rows.itersize = FETCH_ROWS
            # Below the tree's last position every event must be a leaf; later events are
            # not under the tree yet (those a checkpoint claims would be missing anyway).
            event_rows.execute(EVENTS_SQL, (last_position,))
            leaf_rows.execute(LEAVES_SQL)
            events = (EventRow(int(p), o, int(v), str(t), bytes(s)) for p, o, v, t, s in event_rows)
            leaves = (StoredLeaf(int(i), int(p), bytes(h)) for i, p, h in leaf_rows)

            def level(number: int) -> Iterator[tuple[int, bytes]]:
                cursor = level_cursors.enter_context(conn.cursor(name=f"kl_verify_level_{number}"))
                cursor.itersize = FETCH_ROWS
                cursor.execute(NODES_SQL, (number,))
                return ((int(i), bytes(h)) for i, h in cursor)

            return verify_ledger(
                events,
                leaves,
                size,
                root,
                checkpoints,
                level,
                signed=bool(verifiers),
                kept=[(c.size, c.root_hash) for c in kept],
            )
