"""LedgerRecorder.select_notifications reads rows as tuples (the projections' read of
every event): it answers exactly what the library's own select_notifications answers,
whatever the window, the topics and the start's inclusion."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.infrastructure.event_store import LedgerRecorder
from tests.support.databases import migrated_ledger

pytestmark = pytest.mark.postgres

TOPICS = ("domain.keys:Key.Used", "domain.keys:Key.Disabled", "domain.keys:Key.Enabled")
EVENTS = 60


@pytest.fixture(scope="module")
def recorder() -> Iterator[LedgerRecorder]:
    with migrated_ledger() as (_, ledger):
        recorder = ledger.recorder
        assert isinstance(recorder, LedgerRecorder)
        aggregates = [uuid.uuid4() for _ in range(3)]
        recorder.insert_events(
            [
                StoredEvent(
                    aggregates[n % 3], n // 3 + 1, TOPICS[n % 5 % 3], f'{{"n":{n}}}'.encode()
                )
                for n in range(EVENTS)
            ]
        )
        yield recorder


def library_answer(recorder: LedgerRecorder, *args: Any, **kwargs: Any) -> list[Any]:
    method = PostgresApplicationRecorder.select_notifications
    return list(getattr(method, "__wrapped__", method)(recorder, *args, **kwargs))


def test_the_whole_table_reads_as_the_library_reads_it(recorder: LedgerRecorder) -> None:
    found = recorder.select_notifications(start=None, limit=1000)
    assert found == library_answer(recorder, None, 1000)
    assert len(found) == EVENTS
    assert [type(n.state) for n in found] == [bytes] * EVENTS


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.none() | st.integers(-2, EVENTS + 3),
    limit=st.integers(0, EVENTS + 5),
    stop=st.none() | st.integers(-2, EVENTS + 3),
    topics=st.lists(st.sampled_from(TOPICS), unique=True, max_size=3).map(tuple),
    inclusive=st.booleans(),
)
def test_every_window_answers_as_the_library_does(
    recorder: LedgerRecorder,
    start: int | None,
    limit: int,
    stop: int | None,
    topics: tuple[str, ...],
    inclusive: bool,
) -> None:
    kwargs = {"stop": stop, "topics": topics, "inclusive_of_start": inclusive}
    assert recorder.select_notifications(start, limit, **kwargs) == library_answer(
        recorder, start, limit, **kwargs
    )
