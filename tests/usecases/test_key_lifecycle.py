"""Key lifecycle through the use cases on the in-memory ledger: state changes and what they
refuse, deletion (scheduled, cancelled, then done by the scheduler's job, which shreds the
key's wrapping key), rotation, tags and the key directory."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases.keys import CreateKeyRequest
from domain import key_states
from domain.errors import DisabledError, InvalidStateError, NotFoundError
from domain.keys import Key
from tests.usecases.conftest import call, used_operations


def test_create_key_describes_it_and_lists_it(runtime: InMemoryRuntime, admin: Caller) -> None:
    keys = runtime.service.keys
    created = call(keys.create_key(admin, CreateKeyRequest(description="payroll")))
    described = call(keys.describe_key(admin, created.key_id))
    assert (described.key_state, described.description) == (key_states.ENABLED, "payroll")
    assert described.arn == f"arn:aws:kms:us-east-1:{admin.account_id}:key/{created.key_id}"
    others = [call(keys.create_key(admin, CreateKeyRequest())).key_id for _ in range(2)]
    first = call(keys.list_keys(admin, 2, None))
    rest = call(keys.list_keys(admin, 2, first.next_marker))
    listed = [entry.key_id for entry in first.items + rest.items]
    assert listed == sorted([created.key_id, *others], key=uuid.UUID)
    assert rest.next_marker is None
    # The key's stream starts with its creation, recorded by the writer on the ledger.
    assert isinstance(next(iter(runtime.ledger.history(uuid.UUID(created.key_id)))), Key.Created)


def test_a_disabled_key_refuses_encryption_until_enabled(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys, crypto = runtime.service.keys, runtime.service.crypto
    sealed = call(crypto.encrypt(admin, symmetric_key, b"before", None))
    call(keys.disable_key(admin, symmetric_key))
    assert call(keys.describe_key(admin, symmetric_key)).key_state == key_states.DISABLED
    with pytest.raises(DisabledError):
        call(crypto.encrypt(admin, symmetric_key, b"while disabled", None))
    with pytest.raises(DisabledError):
        call(crypto.decrypt(admin, sealed.ciphertext, None, None))
    call(keys.enable_key(admin, symmetric_key))
    assert call(crypto.decrypt(admin, sealed.ciphertext, None, None)).plaintext == b"before"
    call(crypto.encrypt(admin, symmetric_key, b"after", None))
    assert used_operations(runtime, symmetric_key) == ["Encrypt", "Decrypt", "Encrypt"]


def test_deletion_is_scheduled_cancelled_and_then_done_by_the_job(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys, crypto = runtime.service.keys, runtime.service.crypto
    sealed = call(crypto.encrypt(admin, symmetric_key, b"kept until deleted", None))
    scheduled = call(keys.schedule_key_deletion(admin, symmetric_key, 7))
    assert scheduled.key_state == key_states.PENDING_DELETION
    assert scheduled.pending_window_days == 7
    with pytest.raises(InvalidStateError):
        call(crypto.encrypt(admin, symmetric_key, b"x", None))
    call(keys.cancel_key_deletion(admin, symmetric_key))
    assert call(keys.describe_key(admin, symmetric_key)).key_state == key_states.DISABLED  # as AWS
    call(keys.enable_key(admin, symmetric_key))
    call(keys.schedule_key_deletion(admin, symmetric_key, 7))

    runtime.clock.advance(timedelta(days=6))
    assert runtime.service.jobs.run_due_jobs() == 0  # the window has not ended
    runtime.clock.advance(timedelta(days=2))
    assert runtime.service.jobs.run_due_jobs() == 1
    with pytest.raises(NotFoundError):
        call(keys.describe_key(admin, symmetric_key))
    assert symmetric_key not in [
        entry.key_id for entry in call(keys.list_keys(admin, None, None)).items
    ]
    # Crypto-shredded: the wrapping key's row is kept without its key.
    assert runtime.wrapping_keys.stored(uuid.UUID(symmetric_key)) is None
    assert runtime.wrapping_keys.destroyed_at(uuid.UUID(symmetric_key)) is not None
    with pytest.raises(NotFoundError):
        call(crypto.decrypt(admin, sealed.ciphertext, None, None))


def test_rotation_on_demand_keeps_old_ciphertexts_open(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys, crypto = runtime.service.keys, runtime.service.crypto
    old = call(crypto.encrypt(admin, symmetric_key, b"sealed before rotation", {"v": "1"}))
    call(keys.rotate_key_on_demand(admin, symmetric_key))
    new = call(crypto.encrypt(admin, symmetric_key, b"sealed after rotation", None))
    assert new.material_id != old.material_id
    opened = call(crypto.decrypt(admin, old.ciphertext, symmetric_key, {"v": "1"}))
    assert (opened.plaintext, opened.material_id) == (b"sealed before rotation", old.material_id)
    assert call(crypto.decrypt(admin, new.ciphertext, None, None)).material_id == new.material_id
    rotations = call(keys.list_key_rotations(admin, symmetric_key, None, None, None))
    assert [(r.material_id, r.rotation_type) for r in rotations.items] == [
        (new.material_id, "ON_DEMAND")
    ]


def test_automatic_rotation_is_done_by_the_job_when_due(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys, crypto = runtime.service.keys, runtime.service.crypto
    old = call(crypto.encrypt(admin, symmetric_key, b"year one", None))
    call(keys.enable_key_rotation(admin, symmetric_key, 90))
    status = call(keys.get_key_rotation_status(admin, symmetric_key))
    assert (status.rotation_enabled, status.rotation_period_days) == (True, 90)
    runtime.clock.advance(timedelta(days=91))
    assert runtime.service.jobs.run_due_jobs() == 1
    assert call(crypto.encrypt(admin, symmetric_key, b"x", None)).material_id != old.material_id
    assert call(crypto.decrypt(admin, old.ciphertext, None, None)).plaintext == b"year one"


def test_tags_are_added_replaced_and_removed(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    keys = runtime.service.keys
    call(keys.tag_resource(admin, symmetric_key, (("team", "payments"), ("env", "test"))))
    call(keys.tag_resource(admin, symmetric_key, (("env", "prod"),)))
    tags = call(keys.list_resource_tags(admin, symmetric_key, None, None)).items
    assert tags == [("env", "prod"), ("team", "payments")]
    call(keys.untag_resource(admin, symmetric_key, ["team"]))
    assert call(keys.list_resource_tags(admin, symmetric_key, None, None)).items == [
        ("env", "prod")
    ]
    created = call(keys.create_key(admin, CreateKeyRequest(tags=(("owner", "ops"),))))
    assert call(keys.list_resource_tags(admin, created.key_id, None, None)).items == [
        ("owner", "ops")
    ]
