"""Imported key material (AWS reference §9, §7 "Imported keys"): expiry, PendingImport,
re-importing only the same material, import tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import key_states
from domain.errors import (
    ExpiredImportTokenError,
    IncorrectKeyMaterialError,
    InvalidImportTokenError,
    InvalidStateError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.keys import (
    EXISTING_KEY_MATERIAL,
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    KEY_MATERIAL_EXPIRES,
    NEW_KEY_MATERIAL,
    Key,
)
from tests.domain.builders import (
    ACTOR,
    NOW,
    import_material,
    import_token,
    key_in,
    material,
    new_key,
)


def plan(key: Key, material_id: str, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "now": NOW,
        "material_id": material_id,
        "import_type": None,
        "key_material_id": None,
        "expiration_model": KEY_MATERIAL_DOES_NOT_EXPIRE,
        "valid_to": None,
        **overrides,
    }
    return key.plan_import(**arguments)  # type: ignore[arg-type]


def test_an_external_key_waits_in_pending_import_until_its_material_arrives() -> None:
    key = new_key(origin="EXTERNAL")
    assert (key.state, key.materials, key.current_import) == (key_states.PENDING_IMPORT, [], None)
    import_material(key)
    assert key.state == key_states.ENABLED
    assert key.current_material.imported and key.current_import is not None


def test_only_external_keys_take_imported_material() -> None:
    key = new_key()
    message = f"{key.arn} origin is AWS_KMS which is not valid for this operation."
    for command in (
        lambda: import_token(key),
        lambda: plan(key, "a" * 64),
        lambda: key.material_to_delete(None),
    ):
        with pytest.raises(UnsupportedOperationError) as raised:
            command()
        assert raised.value.message == message


@given(st.integers(min_value=-10 * 86400, max_value=400 * 86400))
def test_material_that_expires_needs_a_valid_to_in_the_next_365_days(seconds: int) -> None:
    key = new_key(origin="EXTERNAL")
    valid_to = NOW + timedelta(seconds=seconds)
    if 0 < seconds <= 365 * 86400:
        plan(key, "a" * 64, expiration_model=KEY_MATERIAL_EXPIRES, valid_to=valid_to)
        return
    with pytest.raises(ValidationError) as raised:
        plan(key, "a" * 64, expiration_model=KEY_MATERIAL_EXPIRES, valid_to=valid_to)
    expected = "in the future" if seconds <= 0 else "no more than 365 days"
    assert expected in raised.value.message


def test_the_expiration_model_and_valid_to_go_together() -> None:
    key = new_key(origin="EXTERNAL")
    with pytest.raises(ValidationError) as raised:
        plan(key, "a" * 64, expiration_model=KEY_MATERIAL_EXPIRES, valid_to=None)
    assert raised.value.message == (
        "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
    )
    with pytest.raises(ValidationError):
        plan(key, "a" * 64, valid_to=NOW + timedelta(days=1))


@given(st.integers(min_value=1, max_value=365 * 86400), st.integers(min_value=-5, max_value=5))
def test_expired_material_sends_the_key_to_pending_import_until_it_is_reimported(
    lifetime: int, late: int
) -> None:
    key = new_key(origin="EXTERNAL")
    valid_to = NOW + timedelta(seconds=lifetime)
    import_material(key, expiration_model=KEY_MATERIAL_EXPIRES, valid_to=valid_to)
    check_at = valid_to + timedelta(seconds=late)
    due = key.materials_due_for_expiry(check_at)
    assert due == (["a" * 64] if late >= 0 else [])
    if not due:
        with pytest.raises(InvalidStateError):
            key.expire_material(now=check_at, actor=ACTOR, material_id="a" * 64)
        return
    key.expire_material(now=check_at, actor=ACTOR, material_id="a" * 64)
    assert key.state == key_states.PENDING_IMPORT
    assert key.material(1) is None  # its ciphertexts stay unreadable...
    import_material(key, now=check_at)  # ...until the same material comes back
    assert key.state == key_states.ENABLED and key.material(1) is not None


def test_deleted_material_sends_the_key_to_pending_import_and_deleting_again_does_nothing() -> None:
    key = key_in(key_states.ENABLED, origin="EXTERNAL")
    material_id = key.current_material.material_id
    key.delete_imported_material(now=NOW, actor=ACTOR, material_id=material_id)
    assert key.state == key_states.PENDING_IMPORT
    key.collect_events()
    key.delete_imported_material(now=NOW, actor=ACTOR, material_id=material_id)
    assert key.pending_events == []  # PendingImport: "no effect"


def test_a_disabled_key_whose_material_expires_is_pending_import_after_reimport_enabled() -> None:
    key = key_in(key_states.DISABLED, origin="EXTERNAL")
    key.delete_imported_material(now=NOW, actor=ACTOR, material_id=key.current_material.material_id)
    assert key.state == key_states.PENDING_IMPORT
    import_material(key)
    assert key.state == key_states.ENABLED  # AWS §6: ImportKeyMaterial PendingImport→Enabled


def test_material_lost_while_pending_deletion_leaves_the_key_pending_deletion() -> None:
    key = key_in(key_states.PENDING_DELETION, origin="EXTERNAL")
    key.delete_imported_material(now=NOW, actor=ACTOR, material_id=key.current_material.material_id)
    assert key.state == key_states.PENDING_DELETION
    key.cancel_deletion(now=NOW, actor=ACTOR)
    assert key.state == key_states.PENDING_IMPORT


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_only_the_same_material_may_be_reimported(other: str) -> None:
    key = key_in(key_states.ENABLED, origin="EXTERNAL")
    same = key.current_material.material_id
    assert plan(key, same).version == 1  # type: ignore[attr-defined]
    if other == same:
        return
    with pytest.raises(IncorrectKeyMaterialError) as raised:
        plan(key, other)
    assert "does not match the key material previously imported" in raised.value.message
    with pytest.raises(IncorrectKeyMaterialError):
        plan(key, other, import_type=EXISTING_KEY_MATERIAL, key_material_id=same)


def test_import_types_first_new_then_existing_and_one_pending_at_a_time() -> None:
    key = new_key(origin="EXTERNAL")
    with pytest.raises(IncorrectKeyMaterialError):
        plan(key, "a" * 64, import_type=EXISTING_KEY_MATERIAL)
    import_material(key)
    with pytest.raises(IncorrectKeyMaterialError):  # known material is EXISTING, never NEW
        plan(key, "a" * 64, import_type=NEW_KEY_MATERIAL)
    with pytest.raises(ValidationError):
        plan(key, "b" * 64, import_type=NEW_KEY_MATERIAL, key_material_id="b" * 64)
    import_material(key, "b" * 64, import_type=NEW_KEY_MATERIAL)
    assert key.pending_material is not None and len(key.materials) == 1
    with pytest.raises(InvalidStateError) as raised:
        plan(key, "c" * 64, import_type=NEW_KEY_MATERIAL)
    assert raised.value.message == (
        f"New key material (id: {'c' * 64}) cannot be imported into KMS key {key.arn}, "
        f"because another key material (id: {'b' * 64}) is pending rotation."
    )


def test_asymmetric_imported_keys_only_reimport_their_one_material() -> None:
    key = new_key(origin="EXTERNAL", key_spec="RSA_2048", key_usage="SIGN_VERIFY")
    import_material(key)
    with pytest.raises(ValidationError):
        plan(key, "b" * 64, import_type=NEW_KEY_MATERIAL)
    with pytest.raises(ValidationError):
        plan(key, "a" * 64, key_material_id="a" * 64)
    assert plan(key, "a" * 64).version == 1  # type: ignore[attr-defined]


def test_an_import_token_is_usable_once_within_24_hours_and_for_its_key_only() -> None:
    key, other = new_key(origin="EXTERNAL"), new_key(origin="EXTERNAL")
    token = import_token(key)
    with pytest.raises(InvalidImportTokenError):
        other.import_parameters_for(token, NOW)
    with pytest.raises(ExpiredImportTokenError):
        key.import_parameters_for(token, NOW + timedelta(hours=24))
    key.import_parameters_for(token, NOW + timedelta(hours=24) - timedelta(seconds=1))
    with pytest.raises(InvalidImportTokenError):
        key.import_parameters_for(b"not a token", NOW)
    token_id, _ = key.import_parameters_for(token, NOW)
    key.import_material(
        now=NOW,
        actor=ACTOR,
        token_id=token_id,
        plan=plan(key, "a" * 64),  # type: ignore[arg-type]
        material=material(1, imported=True, material_id="a" * 64),
        expiration_model=KEY_MATERIAL_DOES_NOT_EXPIRE,
        valid_to=None,
        description="",
    )
    with pytest.raises(InvalidImportTokenError) as raised:  # used
        key.import_parameters_for(token, NOW)
    assert "already been used" in raised.value.message
