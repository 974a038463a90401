"""Key.Used, version 2: what a use records for its CloudTrail record, and Used events stored
before version 2 (no request_parameters, no class_version) still load, by upcasting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent

from app.infrastructure.ledger import Ledger
from domain.actors import Actor
from domain.keys import SOURCE_USE, Key, KeyMaterial

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_key() -> Key:
    key_id = uuid.uuid4()
    return Key.create(
        key_id=key_id,
        now=NOW,
        actor=Actor(principal_arn="p"),
        arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}",
        account_id="111122223333",
        region="us-east-1",
        description="",
        key_spec="SYMMETRIC_DEFAULT",
        key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS",
        key_manager="CUSTOMER",
        policy="{}",
        tags={},
        material=KeyMaterial(1, "1" * 64, b"wrapped", NOW, None),
    )


def in_memory_ledger() -> Ledger:
    return Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def as_stored_before_version_2(ledger: Ledger, event: Key.Used) -> StoredEvent:
    """The event as version 1 stored it: the same state without the members v2 added."""
    stored = ledger.mapper.to_stored_event(event)
    state = orjson.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["request_parameters"]
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, orjson.dumps(state)
    )


def used(key: Key, **overrides: Any) -> Key.Used:
    arguments: dict[str, Any] = {
        "operation": "Encrypt",
        "now": NOW,
        "actor": Actor(request_id="r-1"),
        "material_version": 1,
        "encryption_context": {"tenant": "acme"},
        "request_parameters": {"keyId": "alias/orders"},
        **overrides,
    }
    key.record_use(**arguments)
    event = key.pending_events[-1]
    assert isinstance(event, Key.Used)
    return event


def test_a_used_event_stored_before_version_2_loads_with_no_request_parameters() -> None:
    ledger = in_memory_ledger()
    key = new_key()
    old = as_stored_before_version_2(ledger, used(key))
    assert b"request_parameters" not in old.state and b"class_version" not in old.state
    loaded = ledger.mapper.to_domain_event(old)
    assert isinstance(loaded, Key.Used)
    assert loaded.request_parameters is None
    assert (loaded.operation, loaded.material_version, loaded.request_id) == ("Encrypt", 1, "r-1")
    assert loaded.encryption_context == {"tenant": "acme"}
    assert loaded.timestamp == NOW


def test_a_key_whose_history_holds_old_used_events_loads() -> None:
    ledger = in_memory_ledger()
    key = new_key()
    created = key.pending_events[0]
    use = used(key)
    key.collect_events()
    ledger.recorder.insert_events(
        [ledger.mapper.to_stored_event(created), as_stored_before_version_2(ledger, use)]
    )
    loaded: Key = ledger.repository.get(key.id)
    assert loaded.version == 2
    assert (loaded.last_used_operation, loaded.last_used_request_id) == ("Encrypt", "r-1")
    (old,) = [e for e in ledger.events.get(key.id) if isinstance(e, Key.Used)]
    assert old.request_parameters is None


def test_a_used_event_keeps_its_request_parameters_through_the_store() -> None:
    ledger = in_memory_ledger()
    event = used(new_key(), request_parameters={"keyId": "alias/orders", "keySpec": "AES_256"})
    stored = ledger.mapper.to_stored_event(event)
    assert orjson.loads(stored.state)["class_version"] == 2
    loaded = ledger.mapper.to_domain_event(stored)
    assert isinstance(loaded, Key.Used)
    assert loaded.request_parameters == {"keyId": "alias/orders", "keySpec": "AES_256"}


def test_a_re_encryption_is_a_use_of_each_key_with_the_calls_parameters_on_the_destination() -> (
    None
):
    source, destination = new_key(), new_key()
    source.record_re_encryption(
        destination=destination,
        now=NOW,
        actor=Actor(request_id="r-2"),
        material_version=1,
        source_key_id=None,
        source_context={"from": "a"},
        source_algorithm="SYMMETRIC_DEFAULT",
        destination_key_id="alias/archive",
        destination_context={"to": "b"},
        destination_algorithm="SYMMETRIC_DEFAULT",
    )
    (from_event,) = [e for e in source.pending_events if isinstance(e, Key.Used)]
    (to_event,) = [e for e in destination.pending_events if isinstance(e, Key.Used)]
    assert (from_event.operation, from_event.request_parameters) == ("ReEncryptFrom", {})
    assert from_event.encryption_context == {"from": "a"}
    assert to_event.operation == "ReEncryptTo"
    assert to_event.encryption_context == {"to": "b"}
    assert to_event.request_parameters == {
        "sourceEncryptionContext": {"from": "a"},
        "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "destinationKeyId": "alias/archive",
        SOURCE_USE: [str(source.id), 1],
    }
    assert source.last_used_operation == "ReEncryptFrom"
    assert destination.last_used_operation == "ReEncryptTo"


def test_a_re_encryption_under_the_same_key_records_both_uses_on_it() -> None:
    key = new_key()
    key.record_re_encryption(
        destination=key,
        now=NOW,
        actor=Actor(),
        material_version=1,
        source_key_id=key.arn,
        source_context=None,
        source_algorithm="SYMMETRIC_DEFAULT",
        destination_key_id=key.arn,
        destination_context=None,
        destination_algorithm="SYMMETRIC_DEFAULT",
    )
    uses = [e for e in key.pending_events if isinstance(e, Key.Used)]
    assert [e.operation for e in uses] == ["ReEncryptFrom", "ReEncryptTo"]
    assert uses[1].request_parameters is not None
    assert uses[1].request_parameters["sourceKeyId"] == key.arn
    assert "sourceEncryptionContext" not in uses[1].request_parameters
