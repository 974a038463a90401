"""Keys built by their own commands, in every state the aggregate supports (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from domain import key_states
from domain.actors import Actor
from domain.keys import (
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    Key,
    KeyMaterial,
    encode_import_token,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR = Actor(principal_arn="arn:aws:iam::111122223333:root", request_id="r")
ACCOUNT, REGION = "111122223333", "us-east-1"
STATES = [
    key_states.ENABLED,
    key_states.DISABLED,
    key_states.PENDING_DELETION,
    key_states.PENDING_IMPORT,
    key_states.DELETED,
]


def material(
    version: int,
    *,
    at: datetime = NOW,
    rotation_type: str | None = None,
    imported: bool = False,
    material_id: str | None = None,
) -> KeyMaterial:
    return KeyMaterial(
        version, material_id or f"{version:064x}", b"wrapped", at, rotation_type, imported
    )


def new_key(
    *,
    origin: str = "AWS_KMS",
    key_spec: str = "SYMMETRIC_DEFAULT",
    key_usage: str = "ENCRYPT_DECRYPT",
    key_manager: str = "CUSTOMER",
) -> Key:
    key_id = uuid.uuid4()
    key = Key.create(
        key_id=key_id,
        now=NOW,
        actor=ACTOR,
        arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}",
        account_id=ACCOUNT,
        region=REGION,
        description="",
        key_spec=key_spec,
        key_usage=key_usage,
        origin=origin,
        key_manager=key_manager,
        policy="{}",
        tags={},
        material=None if origin == "EXTERNAL" else material(1),
    )
    return key


def import_token(key: Key, now: datetime = NOW) -> bytes:
    """Issue import parameters; the ImportToken that names them."""
    token_id = uuid.uuid4().hex
    valid_to = key.issue_import_parameters(
        now=now,
        actor=ACTOR,
        token_id=token_id,
        wrapping_algorithm="RSAES_OAEP_SHA_256",
        wrapping_key_spec="RSA_2048",
        wrapped_private_key=b"private",
    )
    return encode_import_token(key.id, token_id, valid_to)


def import_material(
    key: Key,
    material_id: str = "a" * 64,
    *,
    now: datetime = NOW,
    import_type: str | None = None,
    expiration_model: str = KEY_MATERIAL_DOES_NOT_EXPIRE,
    valid_to: datetime | None = None,
) -> None:
    """GetParametersForImport then ImportKeyMaterial, as the use case runs them."""
    token_id, _ = key.import_parameters_for(import_token(key, now), now)
    plan = key.plan_import(
        now=now,
        material_id=material_id,
        import_type=import_type,
        key_material_id=None,
        expiration_model=expiration_model,
        valid_to=valid_to,
    )
    key.import_material(
        now=now,
        actor=ACTOR,
        token_id=token_id,
        plan=plan,
        material=material(plan.version, at=now, imported=True, material_id=material_id),
        expiration_model=expiration_model,
        valid_to=valid_to,
        description="",
    )


def key_in(state: str, *, origin: str = "AWS_KMS") -> Key:
    """A key brought to ``state`` by commands, with a grant (g1) made while it was enabled
    and its events collected (so a refused command shows as no pending events).

    An AWS_KMS key cannot be PendingImport: that column is always an EXTERNAL key whose
    material was deleted."""
    if state == key_states.PENDING_IMPORT:
        origin = "EXTERNAL"
    key = new_key(origin=origin)
    if origin == "EXTERNAL":
        import_material(key)
    key.create_grant(now=NOW, actor=ACTOR, grant={"grant_id": "g1", "operations": ["Encrypt"]})
    key.add_alias(now=NOW, actor=ACTOR, alias_name="alias/kept", operation="CreateAlias")
    if state == key_states.DISABLED:
        key.disable(now=NOW, actor=ACTOR)
    elif state in (key_states.PENDING_DELETION, key_states.DELETED):
        key.schedule_deletion(now=NOW, actor=ACTOR, pending_window_days=7)
        if state == key_states.DELETED:
            key.destroy_material(now=NOW + timedelta(days=7), actor=ACTOR)
    elif state == key_states.PENDING_IMPORT:
        key.delete_imported_material(
            now=NOW, actor=ACTOR, material_id=key.current_material.material_id
        )
    key.collect_events()
    assert key.state == state
    return key
