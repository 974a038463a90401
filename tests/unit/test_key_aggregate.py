"""The Key aggregate and AWS's key-state table, without a database or a clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain import key_states
from domain.actors import Actor
from domain.errors import (
    DisabledError,
    InvalidStateError,
    LimitExceededError,
    NotFoundError,
    TagError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.key_states import check_operation_allowed
from domain.keys import Key, KeyMaterial

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:kms:us-east-1:111122223333:key/k"
PENDING = f"{ARN} is pending deletion."
NOT_PENDING = f"{ARN} is not pending deletion."


def material(version: int, at: datetime = NOW, rotation_type: str | None = None) -> KeyMaterial:
    return KeyMaterial(version, f"{version:064x}", b"wrapped", at, rotation_type)


def new_key(key_manager: str = "CUSTOMER") -> Key:
    return Key.create(
        key_id=uuid.uuid4(),
        now=NOW,
        actor=Actor(principal_arn="p"),
        arn=ARN,
        account_id="111122223333",
        region="us-east-1",
        description="",
        key_spec="SYMMETRIC_DEFAULT",
        key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS",
        key_manager=key_manager,
        policy="{}",
        tags={},
        material=material(1),
    )


@pytest.mark.parametrize(
    ("state", "operation", "error", "message"),
    [
        (key_states.DISABLED, "Encrypt", DisabledError, f"{ARN} is disabled."),
        (key_states.DISABLED, "GenerateDataKey", DisabledError, f"{ARN} is disabled."),
        (key_states.DISABLED, "EnableKeyRotation", DisabledError, f"{ARN} is disabled."),
        (key_states.DISABLED, "RotateKeyOnDemand", DisabledError, f"{ARN} is disabled."),
        (key_states.PENDING_DELETION, "Decrypt", InvalidStateError, PENDING),
        (key_states.PENDING_DELETION, "EnableKey", InvalidStateError, PENDING),
        (key_states.PENDING_DELETION, "CreateAlias", InvalidStateError, PENDING),
        (key_states.PENDING_DELETION, "TagResource", InvalidStateError, PENDING),
        (key_states.PENDING_DELETION, "ScheduleKeyDeletion", InvalidStateError, PENDING),
        (key_states.PENDING_IMPORT, "Encrypt", InvalidStateError, f"{ARN} is pending import."),
        (key_states.ENABLED, "CancelKeyDeletion", InvalidStateError, NOT_PENDING),
        (key_states.DISABLED, "CancelKeyDeletion", InvalidStateError, NOT_PENDING),
        (key_states.DELETED, "DescribeKey", NotFoundError, f"Key '{ARN}' does not exist"),
    ],
)
def test_state_table_refuses_operation_with_aws_error(
    state: str, operation: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        check_operation_allowed(state, operation, ARN)
    assert raised.value.message == message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "operation"),
    [
        (key_states.ENABLED, "Encrypt"),
        (key_states.DISABLED, "DescribeKey"),
        (key_states.DISABLED, "EnableKey"),
        (key_states.DISABLED, "TagResource"),
        (key_states.DISABLED, "ScheduleKeyDeletion"),
        (key_states.DISABLED, "ListKeyRotations"),
        (key_states.PENDING_DELETION, "DescribeKey"),
        (key_states.PENDING_DELETION, "GetKeyPolicy"),
        (key_states.PENDING_DELETION, "PutKeyPolicy"),
        (key_states.PENDING_DELETION, "DeleteAlias"),
        (key_states.PENDING_DELETION, "CancelKeyDeletion"),
        (key_states.PENDING_DELETION, "GetKeyRotationStatus"),
    ],
)
def test_state_table_allows_operation(state: str, operation: str) -> None:
    check_operation_allowed(state, operation, ARN)


def test_new_key_is_enabled_with_its_first_material() -> None:
    key = new_key()
    assert key.state == key_states.ENABLED
    assert key.current_material.version == 1
    assert key.version == 1


def test_disable_then_enable_records_two_events() -> None:
    key = new_key()
    key.disable(now=NOW, actor=Actor())
    key.enable(now=NOW, actor=Actor())
    assert [type(e).__name__ for e in key.collect_events()] == ["Created", "Disabled", "Enabled"]


def test_disabling_a_disabled_key_records_nothing() -> None:
    key = new_key()
    key.disable(now=NOW, actor=Actor())
    key.collect_events()
    key.disable(now=NOW, actor=Actor())
    assert key.collect_events() == []


def test_schedule_deletion_rejects_windows_outside_7_to_30_days_and_changes_nothing() -> None:
    key = new_key()
    key.collect_events()
    for days in (6, 31):
        with pytest.raises(ValidationError):
            key.schedule_deletion(now=NOW, actor=Actor(), pending_window_days=days)
    assert key.collect_events() == []
    assert key.state == key_states.ENABLED


def test_cancelled_deletion_leaves_the_key_disabled() -> None:
    key = new_key()
    key.schedule_deletion(now=NOW, actor=Actor(), pending_window_days=7)
    key.cancel_deletion(now=NOW, actor=Actor())
    assert key.state == key_states.DISABLED
    assert key.deletion_date is None


def test_material_is_destroyed_only_after_the_window_ends() -> None:
    key = new_key()
    key.schedule_deletion(now=NOW, actor=Actor(), pending_window_days=7)
    with pytest.raises(InvalidStateError):
        key.destroy_material(now=NOW + timedelta(days=6), actor=Actor())
    key.destroy_material(now=NOW + timedelta(days=7), actor=Actor())
    assert key.is_deleted


def test_rotation_keeps_every_material_and_counts_on_demand_rotations() -> None:
    key = new_key()
    key.rotate_on_demand(now=NOW, actor=Actor(), material=material(2, rotation_type="ON_DEMAND"))
    assert [m.version for m in key.materials] == [1, 2]
    assert key.current_material.version == 2
    assert key.material(1) is not None
    assert key.on_demand_rotations == 1


def test_on_demand_rotation_stops_at_the_limit() -> None:
    key = new_key()
    for version in range(2, 27):
        key.rotate_on_demand(
            now=NOW, actor=Actor(), material=material(version, rotation_type="ON_DEMAND")
        )
    with pytest.raises(LimitExceededError):
        key.rotate_on_demand(
            now=NOW, actor=Actor(), material=material(27, rotation_type="ON_DEMAND")
        )


def test_automatic_rotation_is_due_after_the_period() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=Actor(), period_days=90)
    assert not key.is_due_for_rotation(NOW + timedelta(days=89))
    assert key.is_due_for_rotation(NOW + timedelta(days=90))
    key.rotate_automatically(
        now=NOW + timedelta(days=90), actor=Actor(), material=material(2, rotation_type="AUTOMATIC")
    )
    assert key.next_rotation_date == NOW + timedelta(days=180)


@pytest.mark.parametrize("period", [89, 2561])
def test_rotation_period_outside_90_to_2560_days_is_rejected(period: int) -> None:
    with pytest.raises(ValidationError):
        new_key().enable_rotation(now=NOW, actor=Actor(), period_days=period)


def test_aws_managed_keys_rotate_yearly_and_refuse_rotation_settings() -> None:
    key = new_key(key_manager="AWS")
    assert key.rotation_enabled
    assert key.next_rotation_date == NOW + timedelta(days=365)
    with pytest.raises(UnsupportedOperationError):
        key.disable_rotation(now=NOW, actor=Actor())


def test_tags_reserve_the_aws_prefix_and_cap_at_fifty() -> None:
    key = new_key()
    with pytest.raises(TagError, match="reserved"):
        key.tag(now=NOW, actor=Actor(), tags={"aws:owner": "x"})
    key.tag(now=NOW, actor=Actor(), tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(TagError, match="Too many tags"):
        key.tag(now=NOW, actor=Actor(), tags={"one-more": "v"})


def test_used_event_changes_only_last_used() -> None:
    key = new_key()
    before = {k: v for k, v in vars(key).items() if not k.startswith("last_used")}
    key.record_use(
        operation="Encrypt",
        now=NOW,
        actor=Actor(request_id="r-1"),
        material_version=1,
        encryption_context={"purpose": "test"},
    )
    after = {k: v for k, v in vars(key).items() if not k.startswith("last_used")}
    assert key.last_used_operation == "Encrypt"
    assert key.last_used_request_id == "r-1"
    assert {k: v for k, v in after.items() if k not in ("_version", "_pending_events")} == {
        k: v for k, v in before.items() if k not in ("_version", "_pending_events")
    }
