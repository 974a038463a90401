"""Custom key stores in the auditors' views (migrations/016, projections/key_views.py):
which store each key lives in, every store with its configuration (never a secret) and its
connection timeline; rebuilt identically by a replay, and caught up after an upgrade."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from projections.replay import replay
from tests.api.test_rest_api import RestClient
from tests.conftest import Service, start_service
from tests.support.custom_key_stores import (
    CLUSTER,
    KEYS_CLUSTER,
    XKS_ACCESS_KEY,
    XKS_SECRET,
    clear_stores,
    cloudhsm_store,
    connection_settled,
    key_in_store,
    store_name,
    store_service,
    xks_store,
)
from tests.support.databases import database_backends, drop, fresh_database
from tests.support.softhsm import SoftHsm, softhsm_token


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    with store_service(tmp_path_factory.mktemp("keyledger-cks-views"), token) as running:
        yield running


@pytest.fixture
def kms(service: Service) -> Iterator[Any]:
    client = service.client("kms")
    yield client
    clear_stores(client)


def rows(service: Service, sql: str, *params: Any) -> list[dict[str, Any]]:
    assert service.runtime.audit is not None and service.runtime.audit.wait_for_current()
    with psycopg.connect(service.runtime.database_url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def store_row(service: Service, store_id: str) -> dict[str, Any]:
    (row,) = rows(service, "SELECT * FROM audit_custom_key_stores WHERE store_id = %s", store_id)
    return row


def timeline(service: Service, store_id: str) -> list[tuple[str, str | None, str, bool]]:
    """(state, error code, event name, whether a caller did it), oldest first."""
    found = rows(
        service,
        "SELECT s.connection_state, s.connection_error_code, s.event_name, s.principal_arn"
        " FROM audit_custom_key_store_states s JOIN audit_custom_key_stores c"
        " USING (store_aggregate_id) WHERE c.store_id = %s ORDER BY s.version",
        store_id,
    )
    return [
        (
            r["connection_state"],
            r["connection_error_code"],
            r["event_name"],
            bool(r["principal_arn"]),
        )
        for r in found
    ]


def test_each_key_records_the_store_it_lives_in(kms, service, token):
    cloudhsm = cloudhsm_store(kms, token, CloudHsmClusterId=KEYS_CLUSTER)
    kms.connect_custom_key_store(CustomKeyStoreId=cloudhsm)
    connection_settled(kms, cloudhsm)
    created = kms.create_key(CustomKeyStoreId=cloudhsm, Origin="AWS_CLOUDHSM")["KeyMetadata"]
    in_cluster = created["Arn"]
    external = xks_store(kms)
    in_proxy = key_in_store(service, external, xks_key_id="external-7")
    ordinary = kms.create_key()["KeyMetadata"]["Arn"]
    found = {
        r["arn"]: (r["custom_key_store_id"], r["cloud_hsm_cluster_id"], r["xks_key_id"])
        for r in rows(
            service,
            "SELECT arn, custom_key_store_id, cloud_hsm_cluster_id, xks_key_id"
            " FROM audit_key_state WHERE arn = ANY(%s)",
            [in_cluster, in_proxy, ordinary],
        )
    }
    assert found == {
        in_cluster: (cloudhsm, KEYS_CLUSTER, None),
        in_proxy: (external, None, "external-7"),
        ordinary: (None, None, None),
    }
    kms.schedule_key_deletion(KeyId=in_cluster, PendingWindowInDays=7)


def test_a_store_is_in_the_views_with_its_configuration_and_no_secret(kms, service, token):
    name = store_name()
    external = xks_store(kms, CustomKeyStoreName=name, XksProxyUriPath="/views/kms/xks/v1")
    row = store_row(service, external)
    assert (row["name"], row["store_type"], row["connection_state"]) == (
        name,
        "EXTERNAL_KEY_STORE",
        "DISCONNECTED",
    )
    assert row["xks_proxy_uri_path"] == "/views/kms/xks/v1"
    assert row["xks_proxy_access_key_id"] == XKS_ACCESS_KEY  # as DescribeCustomKeyStores shows
    assert row["created_by"].endswith(":user/admin") and row["deleted_at"] is None
    cloudhsm = store_row(service, cloudhsm_store(kms, token))
    assert cloudhsm["cloud_hsm_cluster_id"] == CLUSTER
    everything = repr(rows(service, "SELECT * FROM audit_custom_key_stores"))
    assert token.pin not in everything and XKS_SECRET not in everything


def test_a_stores_connection_timeline_shows_each_attempt_and_its_outcome(kms, service, token):
    store_id = cloudhsm_store(kms, token, KeyStorePassword="wrong-pin-123")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    connection_settled(kms, store_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=token.pin)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    connection_settled(kms, store_id)
    assert store_row(service, store_id)["connection_state"] == "CONNECTED"
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert timeline(service, store_id) == [
        ("DISCONNECTED", None, "CreateCustomKeyStore", True),
        ("CONNECTING", None, "ConnectCustomKeyStore", True),
        ("FAILED", "INVALID_CREDENTIALS", "ConnectionFailed", False),
        ("DISCONNECTED", None, "DisconnectCustomKeyStore", True),
        ("CONNECTING", None, "ConnectCustomKeyStore", True),
        ("CONNECTED", None, "Connected", False),
        ("DISCONNECTED", None, "DisconnectCustomKeyStore", True),
        ("DELETED", None, "DeleteCustomKeyStore", True),
    ]
    deleted = store_row(service, store_id)
    assert deleted["deleted_at"] is not None and deleted["deleted_by"].endswith(":user/admin")


def test_an_update_changes_the_stores_row(kms, service):
    store_id = xks_store(kms)
    renamed = store_name()
    kms.update_custom_key_store(
        CustomKeyStoreId=store_id, NewCustomKeyStoreName=renamed, XksProxyUriPath="/b/kms/xks/v1"
    )
    row = store_row(service, store_id)
    assert (row["name"], row["xks_proxy_uri_path"]) == (renamed, "/b/kms/xks/v1")


def test_a_replay_rebuilds_the_store_views_identically(kms, service, token):
    store_id = cloudhsm_store(kms, token)
    key_in_store(service, store_id, cluster_id=CLUSTER)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    connection_settled(kms, store_id)
    assert service.runtime.audit is not None and service.runtime.audit.wait_for_current()
    result = replay(service.runtime.ledger, service.runtime.database_url)
    assert result.identical, result.report()
    assert result.rows["audit_custom_key_stores"][0] > 0
    assert result.rows["audit_custom_key_store_states"][0] > 0


# Migration 016 undone: the schema of a database from before the store views existed.
BEFORE_016 = """
DROP TABLE audit_custom_key_stores, audit_custom_key_store_states, audit_view_backfills;
DROP VIEW audit_key_state;
ALTER TABLE audit_keys DROP COLUMN custom_key_store_id, DROP COLUMN cloud_hsm_cluster_id,
    DROP COLUMN xks_key_id;
CREATE VIEW audit_key_state AS
    SELECT k.*, u.operation AS last_used_operation, u.used_at AS last_used_at,
           u.event_id AS last_used_event_id, u.request_id AS last_used_request_id
    FROM audit_keys k LEFT JOIN audit_key_last_usage u USING (key_id);
DELETE FROM schema_migrations WHERE name = '016_custom_key_store_views.sql';
"""


def test_stores_created_before_the_upgrade_are_caught_up_by_the_trail(
    tmp_path: Path, token: SoftHsm
) -> None:
    url = fresh_database(database_backends()[0])
    clusters = {CLUSTER: {"token_label": token.token_label}}
    settings = {
        "cloudhsm_clusters": clusters,
        "root_key": base64.b64encode(os.urandom(32)).decode(),
    }
    stopped: list[tuple[Service, Any, threading.Thread]] = []
    try:
        first = start_service(url, tmp_path, **settings)
        stopped.append(first)
        kms = first[0].client("kms")
        store_id = cloudhsm_store(kms, token, TrustAnchorCertificate="any")
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        connection_settled(kms, store_id)
        _stop(first)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BEFORE_016.encode())
        second = start_service(url, tmp_path, **settings)  # migrates: 016
        stopped.append(second)
        service = second[0]
        deadline = time.monotonic() + 10  # the trail's leader catches the view up first
        while rows(service, "SELECT * FROM audit_view_backfills") and time.monotonic() < deadline:
            time.sleep(0.05)
        row = store_row(service, store_id)
        assert row["connection_state"] == "CONNECTED"  # its Connected event, caught up
        assert [state for state, *_ in timeline(service, store_id)] == [
            "DISCONNECTED",
            "CONNECTING",
            "CONNECTED",
        ]
        assert rows(service, "SELECT * FROM audit_view_backfills") == []
        result = replay(service.runtime.ledger, url)
        assert result.identical, result.report()
    finally:
        for running in stopped:
            _stop(running)
        drop(url)


def _stop(running: tuple[Service, Any, threading.Thread]) -> None:
    service, server, thread = running
    if thread.is_alive():
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()


def test_a_key_as_of_any_time_names_its_store(kms, service):
    store_id = xks_store(kms)
    key_arn = key_in_store(service, store_id, xks_key_id="as-of-1")
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    try:
        at = service.runtime.clock.now().isoformat()
        answer = client.get(f"/v1/audit/keys/{key_arn}/as-of", params={"at": at})
    finally:
        client.http.close()
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["custom_key_store_id"], found["xks_key_id"]) == (store_id, "as-of-1")
    assert found["cloud_hsm_cluster_id"] is None
