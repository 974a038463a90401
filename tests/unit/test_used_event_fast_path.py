"""Key.Used events, the hot path's, are made (Key.record_use) and stored
(json_transcoder.LedgerMapper) without the eventsourcing library's generic machinery, and
are exactly what that machinery makes and stores: the same attributes in the same order,
the same aggregate afterwards, the same StoredEvent byte for byte."""

from __future__ import annotations

import copy
import dataclasses
import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from app.infrastructure.json_transcoder import _USED_ATTRIBUTES, LedgerMapper
from app.infrastructure.ledger import Ledger
from domain.actors import Actor
from domain.keys import SOURCE_USE, Key
from tests.domain.builders import new_key

NOW = datetime(2026, 1, 1, 12, 30, 15, 250_000, tzinfo=UTC)
CALLER = Actor(
    principal_arn="arn:aws:iam::111122223333:user/alice",
    account_id="111122223333",
    access_key_id="AKIAIOSFODNN7EXAMPLE",
    region="us-east-1",
    source_ip="127.0.0.1",
    user_agent="Boto3/1.35",
    request_id="6f1c9d4e-2b8a-4c3d-9e7f-0a1b2c3d4e5f",
)


def in_memory_ledger() -> Ledger:
    return Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def library_mapper(ledger: Ledger) -> Mapper[Any]:
    """The library's own mapper and transcoder, with the ledger's transcodings."""
    transcoder = JSONTranscoder()
    ledger.register_transcodings(transcoder)
    return Mapper(transcoder=transcoder)


def use_of(key: Key, **overrides: Any) -> dict[str, Any]:
    return {
        "operation": "Encrypt",
        "now": NOW,
        "actor": CALLER,
        "material_version": 1,
        "encryption_context": {"tenant": "acme"},
        "algorithm": "SYMMETRIC_DEFAULT",
        "request_parameters": {"keyId": str(key.id)},
        **overrides,
    }


def used_by_the_library(key: Key, use: dict[str, Any]) -> Key.Used:
    """The event the library's trigger_event makes, with record_use's arguments."""
    actor: Actor = use["actor"]
    key.trigger_event(
        Key.Used,
        timestamp=use["now"],
        actor=actor.record(),
        operation=use["operation"],
        material_version=use["material_version"],
        encryption_context=dict(use["encryption_context"] or {}),
        algorithm=use["algorithm"],
        request_id=actor.request_id or "",
        request_parameters=use["request_parameters"],
    )
    event = key.pending_events[-1]
    assert isinstance(event, Key.Used)
    return event


def recorded(key: Key, use: dict[str, Any]) -> Key.Used:
    key.record_use(**use)
    event = key.pending_events[-1]
    assert isinstance(event, Key.Used)
    return event


def a_key_and_its_twin() -> tuple[Key, Key]:
    key = new_key()
    key.collect_events()
    return key, copy.deepcopy(key)


texts = st.text(st.characters(codec="utf-8"))  # (lone surrogates are not UTF-8)
# Values the fast path writes, and some it leaves to the library (floats, UUIDs, ints
# beyond 64 bits, datetimes below the top level).
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    texts,
    st.floats(),
    st.uuids(),
    st.just(NOW),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
actors = st.builds(
    Actor,
    principal_arn=st.none() | texts,
    account_id=st.none() | texts,
    source_ip=st.none() | texts,
    user_agent=st.none() | texts,
    request_id=st.none() | texts,
    via_service=st.none() | texts,
)
times = st.one_of(
    st.integers(0, 10**15).map(
        lambda us: datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    ),
    st.just(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))),  # not UTC
)
uses = st.fixed_dictionaries(
    {
        "operation": texts,
        "now": times,
        "actor": actors,
        "material_version": st.integers(-(2**70), 2**70),
        "encryption_context": st.none() | st.dictionaries(texts, texts, max_size=4),
        "algorithm": texts,
        "request_parameters": st.none()
        | st.dictionaries(texts, values, max_size=4)
        | st.just({"keyId": "k", SOURCE_USE: ["k", 1]}),
    }
)


@given(use=uses)
def test_a_recorded_use_is_the_event_and_aggregate_the_library_would_make(
    use: dict[str, Any],
) -> None:
    key, twin = a_key_and_its_twin()

    ours, theirs = recorded(key, use), used_by_the_library(twin, use)

    assert type(ours) is type(theirs)
    assert list(vars(ours).items()) == list(vars(theirs).items())  # in the same order
    assert vars(key) == vars(twin)  # version, modified_on, last use, the pending event
    assert (key.version, key.modified_on, key.last_used_at) == (
        twin.version,
        twin.modified_on,
        twin.last_used_at,
    )


@given(use=uses)
def test_a_used_event_is_stored_as_the_librarys_mapper_stores_it(use: dict[str, Any]) -> None:
    ledger = in_memory_ledger()
    key, twin = a_key_and_its_twin()

    ours = ledger.mapper.to_stored_event(recorded(key, use))
    theirs = library_mapper(ledger).to_stored_event(used_by_the_library(twin, use))

    assert ours == theirs
    assert (type(ours.originator_id), type(ours.state)) == (uuid.UUID, bytes)


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("material_version", 2**64),  # beyond orjson's integers
        ("material_version", uuid.UUID(int=7)),  # orjson: a bare string
        ("material_version", float("nan")),  # orjson: null
        ("material_version", True),
        ("operation", uuid.UUID(int=7)),
        ("algorithm", NOW),
        ("algorithm", None),
        ("encryption_context", {"tenant": uuid.UUID(int=7)}),
        ("request_parameters", {"keyId": float("inf")}),
        ("request_parameters", {"keyId": [NOW]}),
        ("request_parameters", {1: "an int key"}),
        ("now", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))),
        ("now", datetime(2026, 1, 1)),  # naive
        ("now", datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))),
        ("actor", Actor(principal_arn=uuid.UUID(int=7))),  # type: ignore[arg-type]
        ("actor", Actor(request_id=uuid.UUID(int=7))),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_a_used_event_with_values_orjson_writes_otherwise_is_stored_as_the_library_stores_it(
    field: str, value: Any
) -> None:
    ledger = in_memory_ledger()
    key, twin = a_key_and_its_twin()

    ours = ledger.mapper.to_stored_event(recorded(key, use_of(key, **{field: value})))
    theirs = library_mapper(ledger).to_stored_event(
        used_by_the_library(twin, use_of(twin, **{field: value}))
    )

    assert ours == theirs


@pytest.mark.parametrize(
    "value", [object(), Colour.RED], ids=["a plain object", "an enum member"]
)  # (orjson writes "red")
def test_a_used_event_with_a_value_no_transcoding_knows_fails_as_the_library_fails(
    value: Any,
) -> None:
    ledger = in_memory_ledger()
    key, twin = a_key_and_its_twin()
    with pytest.raises(TypeError) as ours:
        ledger.mapper.to_stored_event(recorded(key, use_of(key, operation=value)))
    with pytest.raises(TypeError) as theirs:
        library_mapper(ledger).to_stored_event(
            used_by_the_library(twin, use_of(twin, operation=value))
        )
    assert str(ours.value) == str(theirs.value)


def test_a_recorded_use_does_not_go_through_the_librarys_trigger_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, twin = a_key_and_its_twin()
    expected = used_by_the_library(twin, use_of(twin))

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the library's trigger_event was used")

    monkeypatch.setattr(Aggregate, "trigger_event", refuse)
    event = recorded(key, use_of(key))

    assert vars(event) == {**vars(expected), "originator_id": key.id}
    assert key.version == twin.version and key.pending_events == [event]


def test_a_used_event_is_stored_without_the_librarys_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = in_memory_ledger()
    key, twin = a_key_and_its_twin()
    expected = library_mapper(ledger).to_stored_event(used_by_the_library(twin, use_of(twin)))

    def refuse(*_: Any) -> StoredEvent:
        raise AssertionError("the library's Mapper.to_stored_event was used")

    monkeypatch.setattr(Mapper, "to_stored_event", refuse)
    stored = ledger.mapper.to_stored_event(recorded(key, use_of(key)))

    assert stored.state == expected.state and stored.topic == expected.topic
    assert (stored.originator_id, stored.originator_version) == (key.id, key.version)


def test_a_used_event_read_back_from_version_1_is_stored_as_the_library_stores_it() -> None:
    ledger = in_memory_ledger()
    key = new_key()
    stored = library_mapper(ledger).to_stored_event(recorded(key, use_of(key)))
    state = orjson.loads(stored.state)
    del state["request_parameters"], state["class_version"]
    old = ledger.mapper.to_domain_event(
        StoredEvent(
            stored.originator_id, stored.originator_version, stored.topic, orjson.dumps(state)
        )
    )

    assert ledger.mapper.to_stored_event(old) == library_mapper(ledger).to_stored_event(old)


def test_a_used_event_whose_attributes_come_in_another_order_is_stored_in_that_order() -> None:
    """As the library stores it: the state's members in the attributes' order (a decoded
    event's come in its stored order, say); here two strings swap places."""
    ledger = in_memory_ledger()
    key = new_key()
    attributes = vars(recorded(key, use_of(key)))
    names = list(attributes)
    names.remove("algorithm")
    names.insert(names.index("request_id") + 1, "algorithm")
    swapped = object.__new__(Key.Used)
    object.__setattr__(swapped, "__dict__", {name: attributes[name] for name in names})

    stored = ledger.mapper.to_stored_event(swapped)

    assert stored == library_mapper(ledger).to_stored_event(swapped)
    assert (
        f'"request_id":"{CALLER.request_id}","algorithm":"SYMMETRIC_DEFAULT"'.encode()
        in stored.state
    )


def test_the_ledger_mapper_stores_other_events_as_the_library_does() -> None:
    ledger = in_memory_ledger()
    key = new_key()
    key.disable(now=NOW, actor=CALLER)
    for event in key.collect_events():
        assert ledger.mapper.to_stored_event(event) == library_mapper(ledger).to_stored_event(event)


def test_a_ledger_with_a_cipher_stores_used_events_through_the_library() -> None:
    """The fast path writes plain JSON; a ledger that compresses or encrypts its events
    keeps the library's mapping for every event."""
    ledger = Ledger(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.popo",
            "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
        }
    )
    assert isinstance(ledger.mapper, LedgerMapper)
    key = new_key()
    event = recorded(key, use_of(key))
    stored = ledger.mapper.to_stored_event(event)
    assert stored == Mapper.to_stored_event(ledger.mapper, event)
    assert vars(ledger.mapper.to_domain_event(stored)) == vars(event)


def test_a_use_recorded_without_a_time_is_stamped_now_as_the_library_stamps_events() -> None:
    key = new_key()
    before = datetime.now(UTC)
    event = recorded(key, use_of(key, now=None))
    assert before <= event.timestamp <= datetime.now(UTC)
    assert event.timestamp.tzinfo is not None
    assert key.modified_on == key.last_used_at == event.timestamp


def test_the_stored_fast_path_knows_every_field_of_used() -> None:
    """A field added to Used leaves LedgerMapper's order behind: every Used event would
    then take the library's (slower) way. Add the field to record_use and _stored_used."""
    assert tuple(field.name for field in dataclasses.fields(Key.Used)) == _USED_ATTRIBUTES
