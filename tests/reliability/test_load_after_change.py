"""A command that asks for an aggregate the writer has not cached AFTER it changed state
(an AWS managed key created on first use of its alias, then the caller's principal read
for authorization) runs again once that aggregate is read, instead of failing the batch
with "too many concurrent modifications" after eight identical attempts."""

from __future__ import annotations

import uuid

from app.ports import UnitOfWork
from domain.actors import Actor
from domain.keys import Key
from tests.conftest import Service


def test_a_command_that_needs_a_read_after_changing_state_succeeds(service: Service) -> None:
    kms = service.client("kms")
    existing = uuid.UUID(kms.create_key()["KeyMetadata"]["KeyId"])
    writer = service.runtime.writer
    writer.evict([existing])  # as a process that never used it holds it: not at all
    fields = _key_fields(service, uuid.uuid4())
    runs = 0

    def command(uow: UnitOfWork) -> str:
        nonlocal runs
        runs += 1
        created = Key.create(**fields)
        uow.add(created)  # state changed first
        found = uow.get(existing)  # then a read the cache cannot answer
        assert isinstance(found, Key)
        return f"{created.id} {found.id}"

    answer = writer.run_sync(command)

    assert answer.endswith(str(existing))
    assert runs == 2  # once to find what it needs, once with it


def _key_fields(service: Service, key_id: uuid.UUID) -> dict[str, object]:
    from app.usecases.keys import SYMMETRIC_DEFAULT  # the fields CreateKey gives a default key

    now = service.runtime.clock.now()
    return dict(
        key_id=key_id,
        now=now,
        actor=Actor(),
        arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}",
        account_id="111122223333",
        region="us-east-1",
        description="",
        key_spec=SYMMETRIC_DEFAULT,
        key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS",
        key_manager="CUSTOMER",
        policy="{}",
        tags={},
        material=service.runtime.vault.new_material(key_id, version=1, now=now, rotation_type=None),
    )
