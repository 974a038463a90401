"""The XKS clients of a process (app.infrastructure.xks_client.XksProxyPool) against a real
KeyLedger proxy over loopback HTTP: one client per store address, bounded, made with the
store's secret opened once, usable from any event loop, closed with the service; the
store's https:// endpoint reached where KEYLEDGER_XKS_PROXY_ENDPOINTS says."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.infrastructure.xks_client import XksProxyError, XksProxyPool
from app.ports import XksProxyAddress
from domain import xks
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service

pytestmark = pytest.mark.postgres

KEY, SECRET = "XKSPOOLTESTACCESSKEY2", base64.b64encode(b"p" * 32).decode()
NAME = "https://xks.pool.keyledger.test"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = {
        "xks_credentials": f"{KEY}:{SECRET}",
        "xks_principal_arn": f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
    }
    with running_service(tmp_path_factory.mktemp("xks-pool"), **settings) as service:
        yield service


def pool(proxy: Service, **kwargs: Any) -> XksProxyPool:
    return XksProxyPool(timeout=5.0, max_connections=2, endpoints={NAME: proxy.endpoint}, **kwargs)


def address(store: uuid.UUID | None = None, sealed: bytes = b"sealed-1") -> XksProxyAddress:
    return XksProxyAddress(store or uuid.uuid4(), REGION, NAME, "/kms/xks/v1", KEY, sealed)


class Secret:
    """The store's secret, counting how often it is opened."""

    def __init__(self, value: str = SECRET) -> None:
        self.value, self.opened = value, 0

    def __call__(self) -> str:
        self.opened += 1
        return self.value


def health(clients: XksProxyPool, where: XksProxyAddress, secret: Secret) -> xks.XksHealth:
    return asyncio.run(clients.health(where, secret, "KmsHealthCheck", str(uuid.uuid4())))


def test_a_store_name_reaches_the_mapped_proxy_with_one_client(proxy):
    clients, secret, where = pool(proxy), Secret(), address()
    try:
        assert health(clients, where, secret).proxy_vendor == "KeyLedger"
        assert health(clients, where, secret).fleet_size == 1  # another event loop: fine
        assert (clients.client_count, secret.opened) == (1, 1)
    finally:
        clients.close()


def test_a_new_credential_replaces_the_stores_client(proxy):
    clients, store = pool(proxy), uuid.uuid4()
    try:
        health(clients, address(store, b"sealed-1"), Secret())
        with pytest.raises(XksProxyError) as refused:
            health(
                clients, address(store, b"sealed-2"), Secret(base64.b64encode(b"q" * 32).decode())
            )
        assert refused.value.failure == "AuthenticationFailedException"
        assert clients.client_count == 1
    finally:
        clients.close()


def checked(clients: XksProxyPool, where: XksProxyAddress, secret: Secret) -> xks.XksHealth:
    return asyncio.run(
        clients.check_health(where, secret, "UpdateCustomKeyStore", str(uuid.uuid4()))
    )


def test_a_check_uses_a_client_of_its_own_and_leaves_the_stores(proxy):
    clients, store, secret = pool(proxy), uuid.uuid4(), Secret()
    try:
        health(clients, address(store), secret)
        other = Secret(base64.b64encode(b"q" * 32).decode())
        with pytest.raises(XksProxyError) as refused:
            checked(clients, address(store, b"sealed-2"), other)
        assert refused.value.failure == "AuthenticationFailedException"
        assert checked(clients, address(store, b"sealed-3"), Secret()).proxy_vendor == "KeyLedger"
        health(clients, address(store), secret)  # the store's client, still there
        assert (clients.client_count, secret.opened, other.opened) == (1, 1, 1)
    finally:
        clients.close()


@pytest.mark.parametrize(
    "name",
    [
        "https://xks.invalid",  # never resolves (RFC 6761)
        "https://999.1.1.1",  # AWS's pattern allows it; no URL does
    ],
)
def test_a_check_of_a_name_nobody_answers_is_unreachable(proxy, name):
    clients = XksProxyPool(timeout=2.0, max_connections=1)  # no mapping: a real https name
    where = XksProxyAddress(uuid.uuid4(), REGION, name, "/kms/xks/v1", KEY, b"")
    try:
        with pytest.raises(XksProxyError) as failed:
            checked(clients, where, Secret())
        assert failed.value.failure == xks.UNREACHABLE
        assert clients.client_count == 0
    finally:
        clients.close()


def test_clients_are_bounded_and_forgotten_with_their_store(proxy):
    clients = pool(proxy, max_clients=2)
    try:
        stores = [uuid.uuid4() for _ in range(3)]
        for store in stores:
            health(clients, address(store), Secret())
        assert clients.client_count == 2
        asyncio.run(clients.forget(stores[-1]))
        assert clients.client_count == 1
    finally:
        clients.close()


def test_a_closed_pool_closes_its_clients_and_makes_no_more(proxy):
    clients = pool(proxy)
    health(clients, address(), Secret())
    clients.close()
    assert clients.client_count == 0
    with pytest.raises(XksProxyError):
        health(clients, address(), Secret())


def test_an_unmapped_name_is_reached_as_it_is(proxy):
    clients = XksProxyPool(timeout=2.0, max_connections=1)  # no mapping: a real https name
    where = XksProxyAddress(uuid.uuid4(), REGION, "https://xks.invalid", "/kms/xks/v1", KEY, b"s")
    try:
        with pytest.raises(XksProxyError) as failed:
            health(clients, where, Secret())
        assert failed.value.failure == xks.UNREACHABLE  # .invalid never resolves (RFC 6761)
    finally:
        clients.close()
