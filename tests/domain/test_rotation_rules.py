"""Rotation (AWS reference §7): who may rotate, on-demand limits, automatic periods."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import key_states
from domain.errors import (
    DisabledError,
    LimitExceededError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.key_specs import KEY_SPECS
from domain.keys import MAX_ON_DEMAND_ROTATIONS, Key
from tests.domain.builders import ACTOR, NOW, import_material, key_in, material, new_key

USAGE = {"HMAC": "GENERATE_VERIFY_MAC", "ECC_NIST_P": "SIGN_VERIFY", "ML_DSA": "SIGN_VERIFY"}


def usage_for(spec: str) -> str:
    for prefix, usage in USAGE.items():
        if spec.startswith(prefix):
            return usage
    return "ENCRYPT_DECRYPT"


def on_demand(key: Key) -> None:
    fresh = material(len(key.materials) + 1, rotation_type="ON_DEMAND")
    key.rotate_on_demand(now=NOW, actor=ACTOR, material=fresh)


@pytest.mark.parametrize("spec", [s for s in KEY_SPECS if s != "SYMMETRIC_DEFAULT"])
def test_only_symmetric_encryption_keys_rotate(spec: str) -> None:
    key = new_key(key_spec=spec, key_usage=usage_for(spec))
    # AWS gives no text here (RotateKeyOnDemand and EnableKeyRotation on RSA_4096, recorded).
    message = ""
    for command in (
        lambda: key.enable_rotation(now=NOW, actor=ACTOR, period_days=None),
        lambda: key.disable_rotation(now=NOW, actor=ACTOR),
        lambda: on_demand(key),
    ):
        with pytest.raises(UnsupportedOperationError) as raised:
            command()
        assert raised.value.message == message
    assert len(key.pending_events) == 1  # only Created


def test_imported_keys_refuse_automatic_rotation_for_their_origin() -> None:
    key = new_key(origin="EXTERNAL")
    import_material(key)
    with pytest.raises(UnsupportedOperationError) as raised:
        key.enable_rotation(now=NOW, actor=ACTOR, period_days=None)
    assert raised.value.message == (
        f"{key.arn} origin is EXTERNAL which is not valid for this operation."
    )


def test_aws_managed_keys_rotate_yearly_and_their_rotation_is_not_configurable() -> None:
    key = new_key(key_manager="AWS")
    assert (key.rotation_enabled, key.rotation_period_days) == (True, 365)
    assert key.next_rotation_date == key.created_on + timedelta(days=365)
    with pytest.raises(UnsupportedOperationError):
        key.disable_rotation(now=NOW, actor=ACTOR)
    with pytest.raises(UnsupportedOperationError):
        on_demand(key)


@given(st.integers(min_value=90, max_value=2560), st.integers(min_value=0, max_value=4000))
def test_a_period_from_90_to_2560_days_counts_from_the_latest_material(
    period: int, age_days: int
) -> None:
    key = new_key()
    now = NOW + timedelta(days=age_days)
    key.enable_rotation(now=now, actor=ACTOR, period_days=period)
    assert (key.rotation_enabled, key.rotation_period_days) == (True, period)
    # Already overdue: due at once.
    assert key.next_rotation_date == max(NOW + timedelta(days=period), now)
    assert key.is_due_for_rotation(now) == (age_days >= period)


# 0 reaches the domain as "not given" (the default); the AWS JSON shape check refuses it.
@given(st.one_of(st.integers(max_value=89), st.integers(min_value=2561)).filter(lambda p: p != 0))
def test_a_period_outside_90_to_2560_days_is_refused(period: int) -> None:
    key = new_key()
    with pytest.raises(ValidationError) as raised:
        key.enable_rotation(now=NOW, actor=ACTOR, period_days=period)
    bound = "greater than or equal to 90" if period < 90 else "less than or equal to 2560"
    assert raised.value.message.endswith(f"Member must have value {bound}")
    assert f"Value '{period}' at 'rotationPeriodInDays'" in raised.value.message
    assert len(key.pending_events) == 1


def test_the_default_period_is_365_days_and_a_later_call_changes_it() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=None)
    assert key.rotation_period_days == 365
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=90)
    assert key.next_rotation_date == NOW + timedelta(days=90)


def test_an_automatic_rotation_moves_the_next_date_by_the_period() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=100)
    due = NOW + timedelta(days=100)
    assert not key.is_due_for_rotation(due - timedelta(seconds=1))
    key.rotate_automatically(now=due, actor=ACTOR, material=material(2, rotation_type="AUTOMATIC"))
    assert key.next_rotation_date == due + timedelta(days=100)
    assert (key.current_material.version, key.on_demand_rotations) == (2, 0)


def test_a_disabled_key_is_not_rotated_and_an_overdue_one_rotates_once_enabled() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=90)
    key.disable(now=NOW, actor=ACTOR)
    late = NOW + timedelta(days=200)
    assert not key.is_due_for_rotation(late)
    with pytest.raises(DisabledError):
        on_demand(key)
    key.enable(now=late, actor=ACTOR)
    assert key.is_due_for_rotation(late)


def test_a_key_pending_deletion_is_not_due_for_rotation() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=90)
    key.schedule_deletion(now=NOW, actor=ACTOR, pending_window_days=30)
    assert not key.is_due_for_rotation(NOW + timedelta(days=91))


@given(st.lists(st.sampled_from(["on demand", "automatic"]), max_size=40))
def test_on_demand_rotations_stop_at_25_and_automatic_ones_do_not_count(
    rotations: list[str],
) -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=90)
    now = NOW
    for kind in rotations:
        before = len(key.materials)
        if kind == "automatic":
            now = key.next_rotation_date or now
            fresh = material(before + 1, at=now, rotation_type="AUTOMATIC")
            key.rotate_automatically(now=now, actor=ACTOR, material=fresh)
        elif key.on_demand_rotations < MAX_ON_DEMAND_ROTATIONS:
            on_demand(key)
        else:
            with pytest.raises(LimitExceededError) as raised:
                on_demand(key)
            assert raised.value.message == (
                "The on-demand rotations limit has been reached for the given keyId. "
                f"No more on-demand rotations can be performed for this key: {key.arn}"
            )
            continue
        assert len(key.materials) == before + 1
    assert MAX_ON_DEMAND_ROTATIONS == 25  # AWS reference §7: 25 since 2026-02
    assert key.on_demand_rotations == min(rotations.count("on demand"), 25)
    # Every material stays, numbered in order: old ciphertexts still decrypt.
    assert [m.version for m in key.materials] == list(range(1, len(key.materials) + 1))


def test_on_demand_rotation_leaves_the_automatic_schedule() -> None:
    key = new_key()
    key.enable_rotation(now=NOW, actor=ACTOR, period_days=90)
    scheduled = key.next_rotation_date
    on_demand(key)
    assert key.next_rotation_date == scheduled


def test_an_imported_key_rotates_on_demand_only_to_material_imported_for_it() -> None:
    key = key_in(key_states.ENABLED, origin="EXTERNAL")
    with pytest.raises(Exception) as raised:
        key.rotate_on_demand(now=NOW, actor=ACTOR, material=None)
    assert raised.value.message == (  # type: ignore[attr-defined]
        f"No available key material pending rotation for the key: {key.arn}."
    )
    import_material(key, "b" * 64, import_type="NEW_KEY_MATERIAL")
    assert key.pending_material is not None and len(key.materials) == 1
    key.rotate_on_demand(now=NOW, actor=ACTOR, material=None)
    assert (key.current_material.material_id, key.pending_material) == ("b" * 64, None)
    assert key.current_material.rotation_type == "ON_DEMAND"
