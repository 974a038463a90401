"""The audit trail decodes stored ``Key.Used`` rows itself (projections.audit_trail.
decode_used): whatever a use recorded, the event it gets is the one the ledger's mapper
gives, or none (and the mapper decodes it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from app.infrastructure.ledger import Ledger
from domain.keys import SOURCE_USE, Key
from projections.audit_trail import decode_used, plain_json_mapper

LEDGER = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
# Text with what JSON escapes, and values the mapper's object hook would transcode.
TEXT = st.text(max_size=8) | st.sampled_from(["_type_", "_data_", "datetime_iso", '"', "\\u"])
CONTEXT = st.dictionaries(TEXT, TEXT, max_size=4)
PARAMETERS = st.none() | st.dictionaries(
    TEXT, TEXT | CONTEXT | st.integers() | st.lists(TEXT, max_size=2), max_size=4
)


def _stored(**changes: Any) -> StoredEvent:
    fields: dict[str, Any] = {
        "originator_id": uuid.uuid4(),
        "originator_version": 7,
        "timestamp": datetime(2026, 3, 1, 10, 15, 30, 123456, tzinfo=UTC),
        "actor": {"principal_arn": "arn:aws:iam::111122223333:user/a", "request_id": "r"},
        "operation": "Encrypt",
        "material_version": 1,
        "encryption_context": {},
        "algorithm": "SYMMETRIC_DEFAULT",
        "request_id": "r",
        "request_parameters": {"keyId": "alias/a"},
    } | changes
    return LEDGER.mapper.to_stored_event(Key.Used(**fields))


def _same_as_the_mapper(stored: StoredEvent) -> Any:
    fast = decode_used(stored)
    if fast is not None:
        slow = LEDGER.mapper.to_domain_event(stored)
        assert type(fast) is type(slow)
        assert list(fast.__dict__.items()) == list(slow.__dict__.items())
    return fast


def test_the_ledger_stores_events_as_the_trail_decodes_them() -> None:
    assert plain_json_mapper(LEDGER.mapper)


def test_a_transcoder_that_decodes_otherwise_is_left_to_the_mapper() -> None:
    class Lenient(JSONTranscoder):
        def decode(self, data: bytes) -> Any:
            return super().decode(data.strip())

    transcoder = Lenient()
    LEDGER.register_transcodings(transcoder)
    assert not plain_json_mapper(Mapper(transcoder=transcoder))


def test_a_use_decodes_to_the_event_the_mapper_gives() -> None:
    stored = _stored(
        encryption_context={"tenant": "acme", "ünï": "çødé"},
        request_parameters={"keyId": "k", SOURCE_USE: [str(uuid.uuid4()), 2]},
    )
    assert _same_as_the_mapper(stored) is not None


@given(CONTEXT, PARAMETERS, st.datetimes(timezones=st.just(UTC)))
def test_any_use_decodes_to_the_mappers_event_or_is_left_to_it(
    context: dict[str, str], parameters: dict[str, Any] | None, moment: datetime
) -> None:
    _same_as_the_mapper(
        _stored(encryption_context=context, request_parameters=parameters, timestamp=moment)
    )


def test_a_use_stored_before_version_2_is_left_to_the_mapper_to_upcast() -> None:
    stored = _stored()
    state = orjson.loads(stored.state)
    del state["class_version"], state["request_parameters"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, orjson.dumps(state)
    )
    assert decode_used(old) is None


def test_a_context_that_spells_a_transcoded_value_is_left_to_the_mapper() -> None:
    stored = _stored(encryption_context={"_type_": "datetime_iso", "_data_": "2026-01-01"})
    assert decode_used(stored) is None
