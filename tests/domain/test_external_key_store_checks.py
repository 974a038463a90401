"""When AWS asks an external key store's proxy before it records a Create or an Update
(domain.custom_key_stores): the rules, with no proxy and no database."""

from __future__ import annotations

import uuid

import pytest

from domain.actors import Actor
from domain.custom_key_stores import (
    EXTERNAL_KEY_STORE,
    MAX_STORES_PER_REGION,
    CustomKeyStore,
    CustomKeyStoreIndex,
    proxy_checked_on_creation,
    unique_entry,
)
from domain.errors import (
    CustomKeyStoreInvalidStateError,
    CustomKeyStoreNameInUseError,
    LimitExceededError,
)
from tests.domain.builders import ACCOUNT, NOW, REGION

ACTOR = Actor(principal_arn=f"arn:aws:iam::{ACCOUNT}:user/admin", request_id="r")
PUBLIC = {
    "xks_uri_endpoint": "https://xks.example.com",
    "xks_uri_path": "/kms/xks/v1",
    "xks_connectivity": "PUBLIC_ENDPOINT",
    "xks_access_key_id": "ABCDEFGHIJKLMNOPQRST",
}
VPC = {
    **PUBLIC,
    "xks_connectivity": "VPC_ENDPOINT_SERVICE",
    "xks_vpc_endpoint_service_name": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdefg",
}


def store(settings: dict[str, str], *, connected: bool = False) -> CustomKeyStore:
    found = CustomKeyStore.create(
        aggregate_id=uuid.uuid4(),
        now=NOW,
        actor=ACTOR,
        store_id="cks-1234567890abcdef0",
        account_id=ACCOUNT,
        region=REGION,
        name="external",
        store_type=EXTERNAL_KEY_STORE,
        settings=settings,
        sealed_secret=b"sealed",
    )
    if connected:
        found.request_connection(now=NOW, actor=ACTOR)
        found.connection_settled(now=NOW, actor=ACTOR, error_code=None)
    return found


def checked(
    found: CustomKeyStore, *, name: str | None = None, secret: bool = False, **settings: str
) -> bool:
    changed = found.changes(name=name, settings=settings, secret_given=secret)
    return found.proxy_checked_on_update(changed, settings)


def test_only_a_public_endpoint_store_is_checked_at_creation() -> None:
    assert proxy_checked_on_creation(PUBLIC)
    assert not proxy_checked_on_creation(VPC)


def test_an_update_of_how_a_public_store_reaches_its_proxy_is_checked() -> None:
    assert checked(store(PUBLIC), xks_uri_path="/other/kms/xks/v1")
    assert checked(store(PUBLIC), xks_uri_endpoint="https://xks2.example.com")
    assert checked(store(PUBLIC), secret=True)  # even the same credential, given again
    assert checked(store(VPC), xks_connectivity="PUBLIC_ENDPOINT", xks_vpc_endpoint_service_name="")


def test_a_new_name_alone_or_nothing_new_is_not_checked() -> None:
    assert not checked(store(PUBLIC), name="renamed")
    assert not checked(store(PUBLIC), xks_uri_path="/kms/xks/v1")  # unchanged


def test_a_vpc_store_is_checked_on_update_only_while_connected() -> None:
    assert not checked(store(VPC), secret=True)
    assert checked(store(VPC, connected=True), secret=True)


def test_a_connected_store_may_change_its_name_credential_and_path_only() -> None:
    connected = store(PUBLIC, connected=True)
    assert connected.changes(
        name="renamed", settings={"xks_uri_path": "/new/kms/xks/v1"}, secret_given=True
    ) == {"name", "xks_uri_path", "secret"}
    for change in (
        {"xks_uri_endpoint": "https://xks2.example.com"},
        {"xks_connectivity": "VPC_ENDPOINT_SERVICE"},
    ):
        with pytest.raises(CustomKeyStoreInvalidStateError):
            connected.changes(name=None, settings=change, secret_given=False)


def test_a_change_the_state_forbids_is_refused_before_any_check() -> None:
    with pytest.raises(CustomKeyStoreInvalidStateError):
        checked(store(PUBLIC, connected=True), xks_uri_endpoint="https://xks2.example.com")


def index_with(count: int) -> CustomKeyStoreIndex:
    index = CustomKeyStoreIndex.create(
        aggregate_id=uuid.uuid4(), now=NOW, actor=ACTOR, account_id=ACCOUNT, region=REGION
    )
    for number in range(count):
        entry = unique_entry(
            f"store-{number}", {**PUBLIC, "xks_uri_path": f"/s{number}/kms/xks/v1"}
        )
        index.enter(now=NOW, actor=ACTOR, store_id=f"cks-{number}", entry=entry)
    return index


def test_an_entry_is_checked_without_being_entered() -> None:
    index = index_with(1)
    events = len(index.collect_events())
    with pytest.raises(CustomKeyStoreNameInUseError):
        index.check_entry("cks-new", unique_entry("store-0", VPC))
    index.check_entry("cks-new", unique_entry("store-new", VPC))
    assert "cks-new" not in index.entries and index.collect_events() == [] and events == 2
    with pytest.raises(LimitExceededError):
        index_with(MAX_STORES_PER_REGION).check_entry("cks-new", unique_entry("new", VPC))
