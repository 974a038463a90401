"""The Merkle log's pure parts (projections/merkle_log.py, projections/ledger_verify.py):
the nodes a batch writes, the root they give against a naive MTH, restoring mid-stream, and
the verifier's tamper matrix over synthetic stored rows."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace

import pytest

from domain.ledger_leaves import leaf_of
from domain.merkle import (
    CompactRange,
    NodeId,
    leaf_hash,
    node_hash,
    perfect_root,
    root_at,
    split_point,
)
from projections.ledger_verify import EventRow, Reason, StoredLeaf, verify_ledger
from projections.merkle_log import (
    MerkleLogError,
    NodeRow,
    append_leaves,
    event_leaf_hash,
    is_stored_level,
    stored_parts,
)


@dataclass(frozen=True)
class Row:
    """What a notification carries: the stored row."""

    id: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    state: bytes


KEYS = [uuid.UUID(int=n + 1) for n in range(3)]


def rows(count: int, skip: frozenset[int] = frozenset()) -> list[Row]:
    """Events at notification ids 1..count+len(skip), the ids in `skip` never committed."""
    found: list[Row] = []
    versions = dict.fromkeys(KEYS, 0)
    position = 0
    while len(found) < count:
        position += 1
        if position in skip:
            continue
        key = KEYS[position % len(KEYS)]
        versions[key] += 1
        topic = "domain.keys:Key.Used" if versions[key] > 1 else "domain.keys:Key.Created"
        found.append(Row(position, key, versions[key], topic, f"state {position}".encode()))
    return found


def append_events(compact: CompactRange, last: int, events: list[Row]) -> tuple[list[NodeRow], int]:
    """What the projection writes for these stored rows, and the last position."""
    hashes = b"".join(event_leaf_hash(e) for e in events)
    rows = append_leaves(compact, last, [e.id for e in events], hashes)
    return rows, events[-1].id if events else last


def lookup(store: dict[NodeId, bytes]):  # type: ignore[no-untyped-def]
    """Read a node as projections.merkle_log.read_nodes does (rebuilt when not stored)."""
    return lambda node: perfect_root([store[part] for part in stored_parts(node)])


def naive_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162's recursive MTH over leaf inputs, written here from the RFC."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = split_point(len(leaves))
    return node_hash(naive_mth(leaves[:k]), naive_mth(leaves[k:]))


def leaves_of(events: list[Row]) -> list[bytes]:
    return [leaf_of(e.id, e.originator_id, e.originator_version, e.topic, e.state) for e in events]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9, 16, 33, 70])
def test_the_stored_nodes_give_the_naive_root_at_every_size_with_gaps(count: int) -> None:
    events = rows(count, skip=frozenset({3, 4, 11}))
    store: dict[NodeId, bytes] = {}
    positions: dict[int, int] = {}
    compact = CompactRange()
    last = 0
    for batch_start in range(0, count, 4):  # batches of 4, as the projection writes them
        node_rows, last = append_events(compact, last, events[batch_start : batch_start + 4])
        for level, index, value, position in node_rows:
            node = NodeId(level, index)
            assert node not in store, "a node is written once"
            store[node] = value
            assert (position is not None) == (level == 0)
            if position is not None:
                positions[index] = position
    assert last == events[-1].id
    assert [positions[i] for i in range(count)] == [e.id for e in events]  # gaps absent
    leaves = leaves_of(events)
    assert all(is_stored_level(node.level) for node in store)
    for size in range(count + 1):
        assert root_at(size, lookup(store)) == naive_mth(leaves[:size])
    assert compact.root() == naive_mth(leaves)


def test_a_restored_compact_range_continues_the_same_tree() -> None:
    events = rows(21)
    store: dict[NodeId, bytes] = {}
    compact = CompactRange()
    node_rows, last = append_events(compact, 0, events[:13])
    store.update({NodeId(lv, ix): h for lv, ix, h, _ in node_rows})
    restored = CompactRange.restore(13, lookup(store))
    node_rows, last = append_events(restored, last, events[13:])
    assert restored.root() == naive_mth(leaves_of(events))


def test_positions_must_only_increase() -> None:
    events = rows(3)
    with pytest.raises(MerkleLogError):
        append_events(CompactRange(), 0, [events[1], events[0]])
    with pytest.raises(MerkleLogError):
        append_events(CompactRange(), events[2].id, events[:1])


# --- the verifier's tamper matrix over synthetic rows ------------------------------------
def stored_tree(events: list[Row]) -> tuple[list[StoredLeaf], int, bytes, dict[int, bytes]]:
    compact = CompactRange()
    node_rows, _ = append_events(compact, 0, events)
    leaves = [StoredLeaf(ix, pos, h) for lv, ix, h, pos in node_rows if pos is not None]
    roots = {}
    store = {NodeId(lv, ix): h for lv, ix, h, _ in node_rows}
    for size in range(len(events) + 1):
        roots[size] = root_at(size, lookup(store))
    return leaves, compact.size, compact.root(), roots


def as_events(events: list[Row]) -> list[EventRow]:
    return [EventRow(e.id, e.originator_id, e.originator_version, e.topic, e.state) for e in events]


EVENTS = rows(20, skip=frozenset({6}))
LEAVES, SIZE, ROOT, ROOTS = stored_tree(EVENTS)


def verify(events: list[Row], checkpoints: tuple[tuple[int, bytes], ...] = ()):  # type: ignore[no-untyped-def]
    return verify_ledger(as_events(events), LEAVES, SIZE, ROOT, checkpoints)


def test_an_untouched_ledger_verifies_with_its_checkpoints() -> None:
    result = verify(EVENTS, ((5, ROOTS[5]), (SIZE, ROOT)))
    assert result.ok, result.failure
    assert (result.size, result.checked, result.checkpoints, result.root) == (SIZE, SIZE, 2, ROOT)


def test_events_past_the_tree_are_not_under_it_yet() -> None:
    later = Row(EVENTS[-1].id + 1, KEYS[0], 99, "domain.keys:Key.Used", b"new")
    assert verify([*EVENTS, later]).ok


def test_an_altered_state_is_named() -> None:
    events = list(EVENTS)
    events[9] = replace(events[9], state=b"changed")
    failure = verify(events).failure
    assert failure is not None and failure.reason == Reason.ALTERED
    assert (failure.position, failure.index) == (events[9].id, 9)


def test_a_deleted_row_is_missing() -> None:
    events = EVENTS[:7] + EVENTS[8:]
    failure = verify(events).failure
    assert failure is not None and failure.reason == Reason.MISSING
    assert (failure.position, failure.index) == (EVENTS[7].id, 7)


def test_a_row_in_a_gap_is_inserted() -> None:
    intruder = Row(6, KEYS[1], 50, "domain.keys:Key.Used", b"forged")
    events = sorted([*EVENTS, intruder], key=lambda e: e.id)
    failure = verify(events).failure
    assert failure is not None and failure.reason == Reason.INSERTED
    assert failure.position == 6


def test_swapped_contents_are_reordered() -> None:
    events = list(EVENTS)
    a, b = events[4], events[12]
    events[4] = Row(a.id, b.originator_id, b.originator_version, b.topic, b.state)
    events[12] = Row(b.id, a.originator_id, a.originator_version, a.topic, a.state)
    failure = verify(events).failure
    assert failure is not None and failure.reason == Reason.REORDERED
    assert failure.position == a.id


def test_a_truncated_tail_is_named() -> None:
    failure = verify(EVENTS[:15]).failure
    assert failure is not None and failure.reason == Reason.TRUNCATED
    assert failure.index == 15


def test_a_tree_rebuilt_short_still_fails_against_an_older_checkpoint() -> None:
    short = EVENTS[:15]
    leaves, size, root, _ = stored_tree(short)
    result = verify_ledger(as_events(short), leaves, size, root, ((SIZE, ROOT),))
    assert result.failure is not None and result.failure.reason == Reason.TRUNCATED


def test_a_rewritten_tree_fails_against_an_older_checkpoint() -> None:
    events = list(EVENTS)
    events[3] = replace(events[3], state=b"rewritten with its tree")
    leaves, size, root, _ = stored_tree(events)
    result = verify_ledger(as_events(events), leaves, size, root, ((10, ROOTS[10]),))
    assert result.failure is not None and result.failure.reason == Reason.CHECKPOINT


def test_a_stored_root_or_size_that_is_not_the_leaves_is_the_tree() -> None:
    failure = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOTS[3]).failure
    assert failure is not None and failure.reason == Reason.TREE
    failure = verify_ledger(as_events(EVENTS), LEAVES, SIZE + 1, ROOT).failure
    assert failure is not None and failure.reason == Reason.TREE


def internal_streams(events: list[Row], altered: NodeId | None = None, every_level: bool = False):  # type: ignore[no-untyped-def]
    """The stored levels' streams as the verifier reads them; `every_level`: a tree
    written before only every fourth level was stored."""
    compact = CompactRange()
    if every_level:
        node_rows = [
            (node.level, node.index, value, None)
            for e in events
            for node, value in compact.append(event_leaf_hash(e))
        ]
    else:
        node_rows, _ = append_events(compact, 0, events)
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for level, index, value, _ in node_rows:
        if level:
            if NodeId(level, index) == altered:
                value = hashlib.sha256(value).digest()
            by_level.setdefault(level, []).append((index, value))
    for nodes in by_level.values():
        nodes.sort()
    return lambda level: by_level.get(level, [])


def test_every_stored_node_above_the_leaves_is_compared() -> None:
    ok = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOT, (), internal_streams(EVENTS))
    assert ok.ok, ok.failure
    bad = internal_streams(EVENTS, altered=NodeId(4, 0))
    failure = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOT, (), bad).failure
    assert failure is not None and failure.reason == Reason.TREE
    assert failure.index == 15  # the leaf that completes node (4, 0): leaves 0 to 15
    missing = internal_streams(EVENTS[:8])  # nodes of the first 8 leaves only
    failure = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOT, (), missing).failure
    assert failure is not None and failure.reason == Reason.TREE and "not stored" in failure.detail


def test_only_every_fourth_level_is_stored() -> None:
    rows_, _ = append_events(CompactRange(), 0, rows(64))
    assert sorted({level for level, *_ in rows_}) == [0, 4]
    assert len(rows_) == 64 + 4  # a row per leaf, one per 16 leaves


def test_a_tree_stored_at_every_level_still_verifies_and_its_extra_nodes_are_compared() -> None:
    older = internal_streams(EVENTS[:12], every_level=True)  # written before, then continued
    newer = internal_streams(EVENTS)

    def mixed(level: int) -> list[tuple[int, bytes]]:
        found = dict(newer(level))
        found.update(older(level))
        return sorted(found.items())

    ok = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOT, (), mixed)
    assert ok.ok, ok.failure
    bad_older = internal_streams(EVENTS[:12], altered=NodeId(2, 1), every_level=True)
    failure = verify_ledger(as_events(EVENTS), LEAVES, SIZE, ROOT, (), bad_older).failure
    assert failure is not None and failure.reason == Reason.TREE
    assert failure.index == 7  # the leaf that completes node (2, 1): leaves 4 to 7
