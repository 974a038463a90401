"""One snapshotting rule for both write paths (the Ledger's save and the group-commit writer):
an aggregate is snapshotted, from memory, when one of its new events lands on a multiple of
its type's interval."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from app.infrastructure.ledger import snapshots_due


class Counter(Aggregate):
    @event("Created")
    def __init__(self) -> None:
        self.count = 0

    @event("Counted")
    def count_one(self) -> None:
        self.count += 1


class Untracked(Aggregate):
    @event("Created")
    def __init__(self) -> None:
        pass


def test_an_aggregate_is_snapshotted_when_an_event_lands_on_its_interval() -> None:
    counter = Counter()
    for _ in range(3):
        counter.count_one()
    events = counter.collect_events()  # versions 1..4
    snapshots = snapshots_due({counter.id: counter}, events, {Counter: 4})
    assert [(s.originator_id, s.originator_version) for s in snapshots] == [(counter.id, 4)]
    assert snapshots[0].state["count"] == 3


def test_no_snapshot_between_intervals_or_for_types_without_one() -> None:
    counter, other = Counter(), Untracked()
    counter.count_one()
    events = [*counter.collect_events(), *other.collect_events()]  # versions 1..2 and 1
    aggregates = {counter.id: counter, other.id: other}
    assert snapshots_due(aggregates, events, {Counter: 4}) == []
