"""The CloudTrail records of the custom key store operations, as KMS logs them.

AWS's published samples (developerguide/ct-create-keystore.html, ct-update-keystore,
ct-connect-keystore, ct-disconnect-keystore, ct-delete-keystore, ct-describe-keystores):
the cluster logged as ``clusterId``; CreateCustomKeyStore answers ``customKeyStoreId`` in
``responseElements``; Update, Connect, Disconnect and Delete name the store (and its
cluster) in ``additionalEventData``; no record has ``resources``; the KeyStorePassword and
the XKS proxy credential are never logged. The outcome of a connection attempt is no
record (KMS logs none); keys of a store name it in their own records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.audit.conftest import records
from tests.aws.conftest import aws_error
from tests.conftest import Service
from tests.support.custom_key_stores import (
    ANCHOR,
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
    use_key,
    xks_store,
)
from tests.support.softhsm import SoftHsm, softhsm_token


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    with store_service(tmp_path_factory.mktemp("keyledger-cks-records"), token) as running:
        yield running


@pytest.fixture
def kms(service: Service) -> Iterator[Any]:
    client = service.client("kms")
    yield client
    clear_stores(client)


@pytest.fixture
def cloudtrail(service: Service) -> Any:
    return service.client("cloudtrail")


def record_of(cloudtrail: Any, event_name: str, response: dict[str, Any]) -> dict[str, Any]:
    """The one record of the call that got ``response`` (waiting for the trail)."""
    request_id = response["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 10
    while True:
        found = [
            r
            for r in records(cloudtrail, "EventName", event_name)
            if r.get("requestID") == request_id
        ]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{event_name} records of request {request_id}: {found}"
            record = found[0]
            record.pop("_entry")
            return record
        time.sleep(0.05)


def test_create_of_a_cloudhsm_store_is_logged_as_kms_logs_it(kms, cloudtrail, token):
    name = store_name()
    response = kms.create_custom_key_store(
        CustomKeyStoreName=name,
        CloudHsmClusterId=CLUSTER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=token.pin,
    )
    record = record_of(cloudtrail, "CreateCustomKeyStore", response)
    assert record["requestParameters"] == {"customKeyStoreName": name, "clusterId": CLUSTER}
    assert record["responseElements"] == {"customKeyStoreId": response["CustomKeyStoreId"]}
    assert "additionalEventData" not in record
    assert (record["readOnly"], record["eventType"], record["resources"]) == (
        False,
        "AwsApiCall",
        [],
    )
    text = json.dumps(record)
    assert token.pin not in text and "BEGIN CERTIFICATE" not in text
    # No resource type names a store in CloudTrail: a lookup by its id finds nothing, as in AWS.
    assert records(cloudtrail, "ResourceName", response["CustomKeyStoreId"]) == []


def test_create_of_an_external_store_logs_its_proxy_but_never_its_credential(kms, cloudtrail):
    response = kms.create_custom_key_store(
        CustomKeyStoreName=store_name(),
        CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint="https://xks.example.com",
        XksProxyUriPath="/shop/kms/xks/v1",
        XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential={
            "AccessKeyId": XKS_ACCESS_KEY,
            "RawSecretAccessKey": XKS_SECRET,
        },
    )
    record = record_of(cloudtrail, "CreateCustomKeyStore", response)
    parameters = record["requestParameters"]
    assert parameters["customKeyStoreType"] == "EXTERNAL_KEY_STORE"
    assert parameters["xksProxyUriPath"] == "/shop/kms/xks/v1"
    assert "xksProxyAuthenticationCredential" not in parameters
    assert XKS_SECRET not in json.dumps(record) and XKS_ACCESS_KEY not in json.dumps(record)
    assert record["responseElements"] == {"customKeyStoreId": response["CustomKeyStoreId"]}


def test_update_connect_disconnect_and_delete_name_the_store_beside_their_parameters(
    kms, cloudtrail, token
):
    store_id = cloudhsm_store(kms, token)
    renamed = store_name()
    calls = {
        "UpdateCustomKeyStore": kms.update_custom_key_store(
            CustomKeyStoreId=store_id, NewCustomKeyStoreName=renamed, KeyStorePassword=token.pin
        ),
        "ConnectCustomKeyStore": kms.connect_custom_key_store(CustomKeyStoreId=store_id),
    }
    connection_settled(kms, store_id)
    calls["DisconnectCustomKeyStore"] = kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    calls["DeleteCustomKeyStore"] = kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    for event_name, response in calls.items():
        record = record_of(cloudtrail, event_name, response)
        assert record["requestParameters"]["customKeyStoreId"] == store_id, event_name
        assert record["responseElements"] is None, event_name
        assert record["additionalEventData"] == {
            "customKeyStoreName": renamed,
            "clusterId": CLUSTER,
        }, event_name
        assert (record["readOnly"], record["resources"]) == (False, []), event_name
        assert token.pin not in json.dumps(record), event_name


def test_an_update_logs_the_new_name_and_never_the_password(kms, cloudtrail, token):
    store_id = cloudhsm_store(kms, token)
    renamed = store_name()
    response = kms.update_custom_key_store(
        CustomKeyStoreId=store_id, NewCustomKeyStoreName=renamed, KeyStorePassword=token.pin
    )
    record = record_of(cloudtrail, "UpdateCustomKeyStore", response)
    assert record["requestParameters"] == {
        "customKeyStoreId": store_id,
        "newCustomKeyStoreName": renamed,
    }


def test_an_external_store_is_named_without_a_cluster(kms, cloudtrail):
    store_id = xks_store(kms)
    response = kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    record = record_of(cloudtrail, "DeleteCustomKeyStore", response)
    (store,) = [
        r
        for r in records(cloudtrail, "EventName", "CreateCustomKeyStore")
        if (r.get("responseElements") or {}).get("customKeyStoreId") == store_id
    ]
    assert record["additionalEventData"] == {
        "customKeyStoreName": store["requestParameters"]["customKeyStoreName"]
    }


def test_describe_is_a_read_only_record_of_what_was_asked(kms, cloudtrail, token):
    store_id = cloudhsm_store(kms, token)
    response = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)
    record = record_of(cloudtrail, "DescribeCustomKeyStores", response)
    assert record["requestParameters"] == {"customKeyStoreId": store_id}
    assert record["responseElements"] is None
    assert "additionalEventData" not in record
    assert record["readOnly"] is True


def test_a_failed_store_call_is_recorded_with_its_error_and_names_no_store(kms, cloudtrail, token):
    store_id = cloudhsm_store(kms, token)
    with aws_error("CustomKeyStoreInvalidStateException") as refused:
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    found = [
        r
        for r in records(cloudtrail, "EventName", "DisconnectCustomKeyStore")
        if r["requestParameters"] == {"customKeyStoreId": store_id}
    ]
    assert [r["errorCode"] for r in found] == ["CustomKeyStoreInvalidStateException"], refused
    assert "additionalEventData" not in found[0]


def test_the_outcome_of_a_connection_attempt_makes_no_record(kms, cloudtrail, token, service):
    store_id = cloudhsm_store(kms, token, KeyStorePassword="wrong-pin-123")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert connection_settled(kms, store_id)["ConnectionState"] == "FAILED"
    service.runtime.audit.wait_for_current()
    naming = [
        r
        for r in records(cloudtrail)
        if store_id in json.dumps(r.get("requestParameters"))
        or store_id in json.dumps(r.get("responseElements"))
    ]
    assert {r["eventName"] for r in naming} == {
        "CreateCustomKeyStore",
        "ConnectCustomKeyStore",
        "DescribeCustomKeyStores",  # (waiting for the outcome)
    }
    assert {r["eventType"] for r in naming} == {"AwsApiCall"}


def test_create_key_in_an_external_store_names_the_external_key(kms, cloudtrail, service):
    store_id = xks_store(kms)
    key_arn = key_in_store(service, store_id, xks_key_id="orders-key-1")
    service.runtime.audit.wait_for_current()
    (record,) = records(cloudtrail, "ResourceName", key_arn)
    assert record["requestParameters"]["xksKeyId"] == "orders-key-1"
    metadata = record["responseElements"]["keyMetadata"]
    assert metadata["xksKeyConfiguration"] == {"id": "orders-key-1"}
    assert metadata["origin"] == "EXTERNAL_KEY_STORE" and "cloudHsmClusterId" not in metadata


def test_a_use_of_a_key_in_a_store_names_the_store_and_the_external_key(kms, cloudtrail, service):
    store_id = xks_store(kms)
    key_arn = key_in_store(service, store_id, xks_key_id="orders-key-2")
    request_id = use_key(service, key_arn)
    service.runtime.audit.wait_for_current()
    (record,) = [
        r for r in records(cloudtrail, "ResourceName", key_arn) if r["eventName"] == "Encrypt"
    ]
    assert record["requestID"] == request_id
    assert record["additionalEventData"]["customKeyStoreId"] == store_id
    assert record["additionalEventData"]["xksKeyId"] == "orders-key-2"
    assert len(record["additionalEventData"]["keyMaterialId"]) == 64


def test_createkey_and_encrypt_through_boto3_name_the_cloudhsm_store(
    kms, cloudtrail, token, service
):
    store_id = cloudhsm_store(kms, token, CloudHsmClusterId=KEYS_CLUSTER)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert connection_settled(kms, store_id)["ConnectionState"] == "CONNECTED"
    created = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")
    key_arn = created["KeyMetadata"]["Arn"]
    encrypted = kms.encrypt(KeyId=key_arn, Plaintext=b"in the token")
    create = record_of(cloudtrail, "CreateKey", created)
    assert create["requestParameters"]["customKeyStoreId"] == store_id
    metadata = create["responseElements"]["keyMetadata"]
    assert (metadata["customKeyStoreId"], metadata["cloudHsmClusterId"]) == (store_id, KEYS_CLUSTER)
    assert metadata["origin"] == "AWS_CLOUDHSM"
    use = record_of(cloudtrail, "Encrypt", encrypted)
    assert use["additionalEventData"]["customKeyStoreId"] == store_id
    assert "xksKeyId" not in use["additionalEventData"]
    kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
