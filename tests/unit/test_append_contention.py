"""The store names to keyledger_append the aggregates it expects another writer to have
appended to (migrations/021): those its last append had renumbered, and no others."""

from __future__ import annotations

import uuid

from eventsourcing.persistence import StoredEvent

from app.infrastructure.event_store import _append_params, _note_contention
from app.infrastructure.postgres import binary_arrays
from app.support.lru import BoundedLru

USED = "domain.keys:Key.Used"


def _events(key: uuid.UUID, *versions: int) -> list[StoredEvent]:
    return [StoredEvent(key, version, USED, b"{}") for version in versions]


def _named(params: tuple[object, ...]) -> bytes:
    named = params[-1]
    assert isinstance(named, binary_arrays.UuidArray)
    return bytes(named)


def test_an_aggregate_the_store_renumbered_is_named_on_its_next_append() -> None:
    contended: BoundedLru[uuid.UUID | str, bool] = BoundedLru(8)
    hot, calm = uuid.uuid4(), uuid.uuid4()
    _note_contention(contended, _events(hot, 5, 6) + _events(calm, 2), {hot: 9, calm: 2})

    params = _append_params(_events(hot, 10) + _events(calm, 3), contended)

    assert _named(params) == bytes(binary_arrays.uuid_array([hot]))


def test_an_aggregate_is_named_until_a_while_after_its_last_renumbering() -> None:
    now = [0.0]
    contended: BoundedLru[uuid.UUID | str, bool] = BoundedLru(8, ttl=1.0, clock=lambda: now[0])
    key = uuid.uuid4()
    _note_contention(contended, _events(key, 1), {key: 4})
    _note_contention(contended, _events(key, 5, 6), {key: 6})  # stored as sent this time

    now[0] = 0.9
    assert _named(_append_params(_events(key, 7), contended)) == bytes(
        binary_arrays.uuid_array([key])
    )
    now[0] = 1.1
    assert _named(_append_params(_events(key, 7), contended)) == bytes(binary_arrays.uuid_array([]))


def test_the_contended_set_stays_within_its_bound() -> None:
    contended: BoundedLru[uuid.UUID | str, bool] = BoundedLru(2)
    keys = [uuid.uuid4() for _ in range(5)]
    for key in keys:
        _note_contention(contended, _events(key, 1), {key: 3})
    assert [key for key, _ in contended.items()] == keys[-2:]


def test_without_a_contention_memory_nothing_is_named() -> None:
    assert _named(_append_params(_events(uuid.uuid4(), 1))) == bytes(binary_arrays.uuid_array([]))
