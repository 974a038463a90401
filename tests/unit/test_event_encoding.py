"""The ledger's event encoding: the eventsourcing JSON transcoder's bytes exactly (stored rows
and the Merkle log's leaves do not change), written by orjson where both agree
(app/infrastructure/json_transcoder.py)."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder
from hypothesis import given
from hypothesis import strategies as st

from app.infrastructure.ledger import Ledger
from domain.actors import Actor
from domain.keys import SOURCE_USE, Key
from tests.domain.builders import new_key

NOW = datetime(2026, 1, 1, 12, 30, 15, 250_000, tzinfo=UTC)


def in_memory_ledger() -> Ledger:
    return Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def library_transcoder(ledger: Ledger) -> JSONTranscoder:
    """The library's own transcoder with the ledger's transcodings: the reference bytes."""
    transcoder = JSONTranscoder()
    ledger.register_transcodings(transcoder)
    return transcoder


def state_of(ledger: Ledger, event: Any) -> dict[str, Any]:
    """What the mapper hands the transcoder: the event's attributes but its id and version."""
    state = dict(vars(event))
    del state["originator_id"], state["originator_version"]
    state["class_version"] = type(event).class_version
    return state


def a_used_event(
    key: Key, *, now: datetime = NOW, user_agent: str = "Boto3/1.35", **overrides: Any
) -> Key.Used:
    arguments: dict[str, Any] = {
        "operation": "Encrypt",
        "now": now,
        "actor": Actor(
            principal_arn="arn:aws:iam::111122223333:user/alice",
            account_id="111122223333",
            access_key_id="AKIAIOSFODNN7EXAMPLE",
            region="us-east-1",
            source_ip="127.0.0.1",
            user_agent=user_agent,
            request_id="6f1c9d4e-2b8a-4c3d-9e7f-0a1b2c3d4e5f",
        ),
        "material_version": 1,
        "encryption_context": {"tenant": "acme"},
        "request_parameters": {"keyId": "alias/orders"},
        **overrides,
    }
    key.record_use(**arguments)
    event = key.pending_events[-1]
    assert isinstance(event, Key.Used)
    return event


def test_a_used_event_is_stored_as_the_librarys_json_without_its_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = in_memory_ledger()
    event = a_used_event(new_key())
    expected = library_transcoder(ledger).encode(state_of(ledger, event))

    def refuse(*_: Any) -> str:
        raise AssertionError("the standard library's JSON encoder was used")

    monkeypatch.setattr(json.JSONEncoder, "encode", refuse)
    stored = ledger.mapper.to_stored_event(event)

    assert stored.state == expected
    assert stored.state.startswith(
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T12:30:15.250000+00:00"},'
    )


def test_a_stored_used_event_reads_back_equal() -> None:
    ledger = in_memory_ledger()
    event = a_used_event(new_key(), encryption_context={"é": "ü\n\u2028"})
    loaded = ledger.mapper.to_domain_event(ledger.mapper.to_stored_event(event))
    assert vars(loaded) == vars(event)


texts = st.text(st.characters(codec="utf-8"))  # (lone surrogates are not UTF-8)
leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), texts)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)


@given(
    context=st.dictionaries(texts, texts, max_size=4),
    parameters=st.dictionaries(texts, values, max_size=4),
    user_agent=texts,
    microseconds=st.integers(0, 10**15),
)
def test_any_used_event_is_stored_as_the_library_stores_it(
    context: dict[str, str], parameters: dict[str, Any], user_agent: str, microseconds: int
) -> None:
    ledger = in_memory_ledger()
    event = a_used_event(
        new_key(),
        now=datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=microseconds),
        user_agent=user_agent,
        encryption_context=context,
        request_parameters={"keyId": "k", SOURCE_USE: ["k", 1], **parameters},
    )
    state = state_of(ledger, event)
    assert ledger.mapper.transcoder.encode(state) == library_transcoder(ledger).encode(state)


class Colour(enum.Enum):
    RED = "red"


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        1e16,  # orjson: 1e16, the library: 1e+16
        float("nan"),  # orjson: null
        uuid.UUID(int=7),  # orjson: a bare string, the library: its uuid_hex transcoding
        Decimal("1.5"),
        b"\x00\xff",
        Name("a str subclass"),
        2**64,  # beyond orjson's integers
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))),  # not UTC
        datetime(2026, 1, 1),  # naive
        {"nested": NOW},  # a datetime below the top level
        [NOW],
        (1, "tuple"),
        {1: "an int key"},
    ],
    ids=repr,
)
def test_values_orjson_writes_otherwise_are_encoded_as_the_library_encodes_them(
    value: Any,
) -> None:
    ledger = in_memory_ledger()
    state = {"timestamp": NOW, "value": value, "class_version": 2}
    assert ledger.mapper.transcoder.encode(state) == library_transcoder(ledger).encode(state)


@pytest.mark.parametrize(
    "value", [object(), Colour.RED], ids=["a plain object", "an enum member"]
)  # (orjson writes "red")
def test_a_value_no_transcoding_knows_fails_as_the_library_fails(value: Any) -> None:
    ledger = in_memory_ledger()
    state = {"timestamp": NOW, "value": value}
    with pytest.raises(TypeError) as ours:
        ledger.mapper.transcoder.encode(state)
    with pytest.raises(TypeError) as theirs:
        library_transcoder(ledger).encode(state)
    assert type(ours.value) is type(theirs.value)
