"""An external key store's KMS keys (domain.custom_key_stores): each external key backs
one KMS key of the store at a time, recorded as the store's own events."""

from __future__ import annotations

import uuid

import pytest

from domain.actors import Actor
from domain.custom_key_stores import EXTERNAL_KEY_STORE, CustomKeyStore
from domain.errors import XksKeyAlreadyInUseError
from tests.domain.builders import ACCOUNT, NOW, REGION

ACTOR = Actor(principal_arn=f"arn:aws:iam::{ACCOUNT}:user/admin", request_id="r")


def store() -> CustomKeyStore:
    return CustomKeyStore.create(
        aggregate_id=uuid.uuid4(),
        now=NOW,
        actor=ACTOR,
        store_id="cks-1234567890abcdef0",
        account_id=ACCOUNT,
        region=REGION,
        name="external",
        store_type=EXTERNAL_KEY_STORE,
        settings={"xks_uri_endpoint": "https://xks.example.com"},
        sealed_secret=b"sealed",
    )


def test_an_external_key_in_use_backs_no_second_kms_key() -> None:
    found = store()
    found.add_key(now=NOW, actor=ACTOR, key_id="key-1", xks_key_id="ext-1")
    with pytest.raises(XksKeyAlreadyInUseError):
        found.add_key(now=NOW, actor=ACTOR, key_id="key-2", xks_key_id="ext-1")
    found.add_key(now=NOW, actor=ACTOR, key_id="key-2", xks_key_id="ext-2")
    assert found.external_keys == {"ext-1": "key-1", "ext-2": "key-2"}


def test_a_key_that_leaves_the_store_frees_its_external_key() -> None:
    found = store()
    found.add_key(now=NOW, actor=ACTOR, key_id="key-1", xks_key_id="ext-1")
    found.remove_key(now=NOW, actor=ACTOR, key_id="key-1")
    found.add_key(now=NOW, actor=ACTOR, key_id="key-3", xks_key_id="ext-1")
    assert found.external_keys == {"ext-1": "key-3"} and found.key_ids == {"key-3"}


def test_the_external_keys_are_rebuilt_from_the_stores_events() -> None:
    found = store()
    found.add_key(now=NOW, actor=ACTOR, key_id="key-1", xks_key_id="ext-1")
    found.add_key(now=NOW, actor=ACTOR, key_id="key-2", xks_key_id="ext-2")
    found.remove_key(now=NOW, actor=ACTOR, key_id="key-2")
    replayed = None
    for event in found.collect_events():
        replayed = event.mutate(replayed)
    assert replayed is not None and replayed.external_keys == {"ext-1": "key-1"}
    assert replayed.key_ids == {"key-1"}
