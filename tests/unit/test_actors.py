"""The typed Actor stores exactly what the actor dicts stored: same keys, same order, same
values, so events recorded before and after ``Actor`` became a type are byte-identical (the
transcoder, the projections and the audit trail read the same JSON)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.auth.credentials import OPERATOR_ACTOR, SERVICE_ACTOR, Caller
from app.infrastructure.ledger import Ledger
from domain.actors import Actor
from domain.identity import AccessKey
from domain.keys import Key, KeyMaterial

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = "arn:aws:iam::111122223333:user/alice"
SIGNER = "arn:aws:iam::111122223333:role/ec2-service"

# What Caller.actor() and the constants returned when actors were dicts (literally).
USER_CALLER = Caller(
    account_id="111122223333",
    principal_arn=USER,
    access_key_id="AKIAEXAMPLE",
    region="eu-west-1",
    source_ip="",
    user_agent="aws-cli/2",
    request_id="req-1",
)
OLD_USER: dict[str, Any] = {
    "principal_arn": USER,
    "account_id": "111122223333",
    "access_key_id": "AKIAEXAMPLE",
    "region": "eu-west-1",
    "source_ip": "",
    "user_agent": "aws-cli/2",
    "request_id": "req-1",
}
VIA_CALLER = Caller(
    account_id="111122223333",
    principal_arn=USER,
    access_key_id="AKIASERVICE",
    region="eu-west-1",
    source_ip="10.0.0.1",
    user_agent="",
    request_id="req-2",
    via_service="ec2.eu-west-1.amazonaws.com",
    service_principal_arn=SIGNER,
)
OLD_VIA: dict[str, Any] = {
    "principal_arn": USER,
    "account_id": "111122223333",
    "access_key_id": "AKIASERVICE",
    "region": "eu-west-1",
    "source_ip": "10.0.0.1",
    "user_agent": "",
    "request_id": "req-2",
    "via_service": "ec2.eu-west-1.amazonaws.com",
    "service_principal_arn": SIGNER,
}
OLD_SERVICE: dict[str, Any] = {"principal_arn": "kms.amazonaws.com", "service": "kms"}
OLD_OPERATOR: dict[str, Any] = {"principal_arn": "keyledger-operator"}

CASES = [
    pytest.param(USER_CALLER.actor(), OLD_USER, id="user caller"),
    pytest.param(VIA_CALLER.actor(), OLD_VIA, id="service on behalf of a caller"),
    pytest.param(SERVICE_ACTOR, OLD_SERVICE, id="the service"),
    pytest.param(OPERATOR_ACTOR, OLD_OPERATOR, id="the operator"),
]


def new_key(actor: Actor) -> Key:
    key_id = uuid.UUID(int=1)
    return Key.create(
        key_id=key_id,
        now=NOW,
        actor=actor,
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


@pytest.mark.parametrize(("actor", "old"), CASES)
def test_the_record_is_the_dict_the_old_code_stored_keys_in_order(
    actor: Actor, old: dict[str, Any]
) -> None:
    assert list(actor.record().items()) == list(old.items())


@pytest.mark.parametrize(("actor", "old"), CASES)
def test_an_event_stores_the_same_bytes_as_with_the_old_dict(
    actor: Actor, old: dict[str, Any]
) -> None:
    mapper = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    key = new_key(actor)
    key.disable(now=NOW, actor=actor)
    created, disabled = key.pending_events
    assert isinstance(created, Key.Created)
    old_created = Key.Created(**{**created.__dict__, "actor": old})
    old_disabled = Key.Disabled(
        originator_id=key.id, originator_version=2, timestamp=NOW, actor=old
    )
    for new_event, old_event in ((created, old_created), (disabled, old_disabled)):
        assert mapper.to_stored_event(new_event).state == mapper.to_stored_event(old_event).state


def test_identity_events_store_the_same_bytes() -> None:
    mapper = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    issued = AccessKey.create(
        aggregate_id=uuid.UUID(int=2),
        now=NOW,
        access_key_id="AKIAEXAMPLE",
        principal_arn=USER,
        account_id="111122223333",
        wrapped_secret=b"w",
        actor=OPERATOR_ACTOR,
    )
    (created,) = issued.pending_events
    old = AccessKey.Created(**{**created.__dict__, "actor": dict(OLD_OPERATOR)})
    assert mapper.to_stored_event(created).state == mapper.to_stored_event(old).state


@pytest.mark.parametrize(("actor", "old"), CASES)
def test_a_stored_record_reads_back_as_the_same_actor(actor: Actor, old: dict[str, Any]) -> None:
    assert Actor.from_record(old) == actor
