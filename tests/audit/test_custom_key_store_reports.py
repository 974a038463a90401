"""Reports that know about custom key stores: which keys live in which store
(``custom-key-stores``), the keys Unavailable because their store is not connected
(``unavailable-keys``, KeyLedger's own check), each key's store in the inventory, and
Security Hub's KMS controls on keys of stores (KMS.4 does not apply to them: its Config
rule checks keys of origin AWS_KMS only; no control checks the stores themselves)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.usecases.auditors import AuditService
from projections.reports import FAILED, PASSED, Report
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import run
from tests.conftest import ACCOUNT_ID, Service
from tests.support.custom_key_stores import (
    KEYS_CLUSTER,
    cloudhsm_store,
    connection_settled,
    key_in_store,
    store_service,
    xks_store,
)
from tests.support.softhsm import SoftHsm, softhsm_token

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stores:
    cloudhsm: str  # connected, one key made by CreateKey
    cloudhsm_key: str
    external: str  # never connected, one key: Unavailable
    external_key: str
    empty: str  # no key


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    with store_service(tmp_path_factory.mktemp("keyledger-cks-reports"), token) as running:
        yield running


@pytest.fixture(scope="module")
def stores(service: Service, token: SoftHsm) -> Stores:
    kms = service.client("kms")
    cloudhsm = cloudhsm_store(kms, token, CloudHsmClusterId=KEYS_CLUSTER)
    kms.connect_custom_key_store(CustomKeyStoreId=cloudhsm)
    assert connection_settled(kms, cloudhsm)["ConnectionState"] == "CONNECTED"
    key = kms.create_key(CustomKeyStoreId=cloudhsm, Origin="AWS_CLOUDHSM")["KeyMetadata"]
    external = xks_store(kms)
    external_key = key_in_store(service, external, xks_key_id="ext-1")
    return Stores(cloudhsm, key["Arn"], external, external_key, xks_store(kms))


def report(service: Service, name: str) -> Report:
    audit = service.runtime.audit_service
    assert isinstance(audit, AuditService)
    return run(audit.report(None, name, account=ACCOUNT_ID))


def test_the_custom_key_stores_report_says_which_keys_live_in_which_store(service, stores):
    found = report(service, "custom-key-stores")
    by_key = {row["key_arn"]: row for row in found.rows if row["key_arn"]}
    assert by_key[stores.cloudhsm_key]["custom_key_store_id"] == stores.cloudhsm
    assert by_key[stores.cloudhsm_key]["cloud_hsm_cluster_id"] == KEYS_CLUSTER
    assert by_key[stores.cloudhsm_key]["key_state"] == "Enabled"
    assert by_key[stores.external_key]["custom_key_store_id"] == stores.external
    assert by_key[stores.external_key]["xks_key_id"] == "ext-1"
    (empty,) = [row for row in found.rows if row["custom_key_store_id"] == stores.empty]
    assert empty["key_arn"] is None and empty["custom_key_store_type"] == "EXTERNAL_KEY_STORE"
    assert found.summary == {"stores": 3, "keys": 2, "unavailable_keys": 1}


def test_a_key_whose_store_is_not_connected_is_reported_unavailable(service, stores):
    found = report(service, "custom-key-stores")
    (row,) = [r for r in found.rows if r["key_arn"] == stores.external_key]
    assert (row["key_state"], row["connection_state"]) == ("Unavailable", "DISCONNECTED")


def test_unavailable_keys_lists_each_key_of_a_store_that_is_not_connected(service, stores):
    found = report(service, "unavailable-keys")
    assert [row["key_arn"] for row in found.rows] == [stores.external_key]
    (row,) = found.rows
    assert (row["custom_key_store_id"], row["key_state"]) == (stores.external, "Enabled")
    assert row["unavailable_since"] is not None
    assert found.summary == {"keys": 1, "stores": 1, "status": FAILED}
    assert "KeyLedger check" in found.title and "Security Hub" in found.title


def test_disconnecting_a_store_makes_its_keys_unavailable_until_it_connects_again(service, stores):
    kms = service.client("kms")
    kms.disconnect_custom_key_store(CustomKeyStoreId=stores.cloudhsm)
    try:
        unavailable = [row["key_arn"] for row in report(service, "unavailable-keys").rows]
        assert stores.cloudhsm_key in unavailable
    finally:
        kms.connect_custom_key_store(CustomKeyStoreId=stores.cloudhsm)
        connection_settled(kms, stores.cloudhsm)
    unavailable = [row["key_arn"] for row in report(service, "unavailable-keys").rows]
    assert stores.cloudhsm_key not in unavailable


def test_security_hub_checks_keys_of_stores_for_kms3_and_kms5_but_not_kms4(service, stores):
    found = report(service, "security-hub")
    checked = {(row["control"], row["resource"]): row["status"] for row in found.rows}
    for key in (stores.cloudhsm_key, stores.external_key):
        assert checked[("KMS.3", key)] == PASSED
        assert checked[("KMS.5", key)] == PASSED
        assert ("KMS.4", key) not in checked  # its Config rule checks AWS_KMS keys only


def test_the_inventory_names_each_keys_store(service, stores):
    rows = {row["key_arn"]: row for row in report(service, "inventory").rows}
    assert rows[stores.cloudhsm_key]["custom_key_store_id"] == stores.cloudhsm
    assert rows[stores.cloudhsm_key]["origin"] == "AWS_CLOUDHSM"
    assert rows[stores.external_key]["origin"] == "EXTERNAL_KEY_STORE"


def test_store_reports_over_rest_as_csv(service, stores):
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    try:
        answer = client.get("/v1/audit/reports/custom-key-stores", params={"format": "csv"})
        assert answer.status_code == 200, answer.text
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert {r["key_arn"] for r in rows} >= {stores.cloudhsm_key, stores.external_key}
        unavailable = client.get("/v1/audit/reports/unavailable-keys").json()
        assert [r["key_arn"] for r in unavailable["rows"]] == [stores.external_key]
    finally:
        client.http.close()


def test_store_reports_from_the_cli(service, stores):
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url}
    process = subprocess.run(
        [sys.executable, "-m", "app", "audit", "report", "custom-key-stores"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    document: dict[str, Any] = json.loads(process.stdout)
    assert document["report"] == "custom-key-stores"
    assert stores.cloudhsm_key in {row["key_arn"] for row in document["rows"]}
