"""Custom key stores through boto3: AWS's six operations, their states and their errors.

A service of the module's own (fresh database: stores are limited to 10 per Region), whose
one configured CloudHSM "cluster" is the test session's SoftHSM2 token, and which is the
XKS proxy of its own external key stores (``https://xks.example.com`` is itself, over
loopback HTTP, at any one-segment path prefix): CreateCustomKeyStore and
UpdateCustomKeyStore ask that proxy's GetHealthStatus before they record anything.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from domain.audit import XKS_SOURCE
from tests.audit.conftest import records
from tests.aws.conftest import aws_error, ledger_unchanged
from tests.conftest import Service, running_service
from tests.support.custom_key_stores import (
    XKS_DOWN_ENDPOINT,
    XKS_ENDPOINT,
    XKS_VPC_ENDPOINT,
    own_proxy_settings,
)
from tests.support.softhsm import SoftHsm, softhsm_token

CLUSTER = "cluster-abcdefghijk"
OTHER_CLUSTER = "cluster-zyxwvutsrqp"
UNKNOWN_CLUSTER = "cluster-mnopqrstuvw"
ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----"
XKS_ACCESS_KEY = "ABCDEFGHIJKLMNOPQRST2345"
XKS_SECRET = "s" * 43
WRONG_SECRET = "w" * 43
VPC_SERVICE = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdefg"


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def store_service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("keyledger-cks")
    clusters = {
        CLUSTER: {"token_label": token.token_label, "trust_anchor": ANCHOR},
        OTHER_CLUSTER: {"token_label": "no-such-token"},
    }
    settings = own_proxy_settings(XKS_ACCESS_KEY, XKS_SECRET)
    with running_service(tmp, cloudhsm_clusters=clusters, **settings) as service:
        yield service


@pytest.fixture
def kms(store_service: Service) -> Iterator[Any]:
    """A client whose stores are disconnected and deleted after the test."""
    client = store_service.client("kms")
    yield client
    for store in client.describe_custom_key_stores()["CustomKeyStores"]:
        if store["ConnectionState"] != "DISCONNECTED":
            client.disconnect_custom_key_store(CustomKeyStoreId=store["CustomKeyStoreId"])
        client.delete_custom_key_store(CustomKeyStoreId=store["CustomKeyStoreId"])


def name() -> str:
    return f"store-{secrets.token_hex(4)}"


def cloudhsm_store(kms: Any, token: SoftHsm, **overrides: Any) -> str:
    params = {
        "CustomKeyStoreName": name(),
        "CloudHsmClusterId": CLUSTER,
        "TrustAnchorCertificate": ANCHOR,
        "KeyStorePassword": token.pin,
        **overrides,
    }
    return str(kms.create_custom_key_store(**params)["CustomKeyStoreId"])


def xks_store(kms: Any, **overrides: Any) -> str:
    params = {
        "CustomKeyStoreName": name(),
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": XKS_ENDPOINT,
        "XksProxyUriPath": f"/{secrets.token_hex(4)}/kms/xks/v1",
        "XksProxyConnectivity": "PUBLIC_ENDPOINT",
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": XKS_ACCESS_KEY,
            "RawSecretAccessKey": XKS_SECRET,
        },
        **overrides,
    }
    return str(kms.create_custom_key_store(**params)["CustomKeyStoreId"])


def credential(secret: str = XKS_SECRET) -> dict[str, str]:
    return {"AccessKeyId": XKS_ACCESS_KEY, "RawSecretAccessKey": secret}


def vpc_store(kms: Any, **overrides: Any) -> str:
    """An external key store with VPC_ENDPOINT_SERVICE connectivity at the service itself."""
    vpc = {
        "XksProxyUriEndpoint": XKS_VPC_ENDPOINT,
        "XksProxyConnectivity": "VPC_ENDPOINT_SERVICE",
        "XksProxyVpcEndpointServiceName": VPC_SERVICE,
    }
    return xks_store(kms, **{**vpc, **overrides})


def health_checks(service: Service, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The GetHealthStatus calls its proxy (the service itself) recorded for a KMS call."""
    kms_request_id = answer["ResponseMetadata"]["RequestId"]
    service.runtime.audit.wait_for_current()
    return [
        r
        for r in records(service.client("cloudtrail"), "EventSource", XKS_SOURCE)
        if ((r.get("requestParameters") or {}).get("requestMetadata") or {}).get("kmsRequestId")
        == kms_request_id
    ]


def describe(kms: Any, store_id: str) -> dict[str, Any]:
    stores = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert len(stores) == 1
    return dict(stores[0])


def settled(kms: Any, store_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        store = describe(kms, store_id)
        if store["ConnectionState"] != "CONNECTING" or time.monotonic() > deadline:
            return store
        time.sleep(0.05)


# --- CreateCustomKeyStore ------------------------------------------------------------------
def test_a_new_cloudhsm_store_is_disconnected_with_an_aws_shaped_id(kms, token):
    store_id = cloudhsm_store(kms, token)
    store = describe(kms, store_id)
    assert store_id.startswith("cks-") and len(store_id) == 21
    assert store["ConnectionState"] == "DISCONNECTED"
    assert store["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert store["CloudHsmClusterId"] == CLUSTER
    assert store["TrustAnchorCertificate"] == ANCHOR
    assert "ConnectionErrorCode" not in store


def test_create_refuses_a_name_in_use(kms, token):
    taken = name()
    xks_store(kms, CustomKeyStoreName=taken)
    with aws_error("CustomKeyStoreNameInUseException"):
        cloudhsm_store(kms, token, CustomKeyStoreName=taken)


def test_create_refuses_an_unknown_cluster(kms, token):
    with aws_error("CloudHsmClusterNotFoundException"):
        cloudhsm_store(kms, token, CloudHsmClusterId=UNKNOWN_CLUSTER)


def test_create_refuses_a_cluster_in_use(kms, token):
    cloudhsm_store(kms, token)
    with aws_error("CloudHsmClusterInUseException"):
        cloudhsm_store(kms, token)


def test_create_refuses_another_trust_anchor(kms, token):
    with aws_error("IncorrectTrustAnchorException"):
        cloudhsm_store(kms, token, TrustAnchorCertificate="not the cluster's certificate")


def test_create_of_a_cloudhsm_store_needs_its_password(kms):
    with aws_error("ValidationException"):
        kms.create_custom_key_store(
            CustomKeyStoreName=name(), CloudHsmClusterId=CLUSTER, TrustAnchorCertificate=ANCHOR
        )


def test_create_refuses_xks_members_for_a_cloudhsm_store(kms, token):
    with aws_error("ValidationException"):
        cloudhsm_store(kms, token, XksProxyUriPath="/kms/xks/v1")


def test_create_refuses_a_malformed_cluster_id_from_the_model(kms, token):
    with aws_error("ValidationException"):
        cloudhsm_store(kms, token, CloudHsmClusterId="cluster-1111111111111")


def test_an_external_store_never_answers_its_secret(kms):
    store = describe(kms, xks_store(kms))
    assert store["CustomKeyStoreType"] == "EXTERNAL_KEY_STORE"
    assert store["XksProxyConfiguration"]["AccessKeyId"] == XKS_ACCESS_KEY
    assert store["XksProxyConfiguration"]["Connectivity"] == "PUBLIC_ENDPOINT"
    assert XKS_SECRET not in repr(store)


def test_create_refuses_a_proxy_uri_in_use(kms):
    xks_store(kms, XksProxyUriPath="/same/kms/xks/v1")
    with aws_error("XksProxyUriInUseException"):
        xks_store(kms, XksProxyUriPath="/same/kms/xks/v1")


def test_vpc_connectivity_needs_an_endpoint_service(kms):
    with aws_error("ValidationException"):
        xks_store(kms, XksProxyConnectivity="VPC_ENDPOINT_SERVICE")


def test_create_stops_at_ten_stores_per_region(kms):
    for _ in range(10):
        xks_store(kms)
    with aws_error("LimitExceededException"):
        xks_store(kms)


# --- CreateCustomKeyStore: the proxy's check -----------------------------------------------
# AWS: "While creating an external key store with public endpoint connectivity, AWS KMS tests
# the connection by sending a status request to the external key store proxy ... If this
# test request fails, the operation to create the external key store fails." (developer
# guide, create-xks-keystore); its errors by the XKS Proxy API's "KMS Considerations" table.
def test_create_asks_the_proxys_health_with_the_given_credential(kms, store_service):
    answer = kms.create_custom_key_store(
        CustomKeyStoreName=name(),
        CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint=XKS_ENDPOINT,
        XksProxyUriPath=f"/{secrets.token_hex(4)}/kms/xks/v1",
        XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential=credential(),
    )
    (health,) = health_checks(store_service, answer)
    assert health["eventName"] == "GetHealthStatus" and "errorCode" not in health
    assert health["userIdentity"]["accessKeyId"] == XKS_ACCESS_KEY
    sent = health["requestParameters"]["requestMetadata"]
    assert sent["kmsOperation"] == "CreateCustomKeyStore"
    assert describe(kms, answer["CustomKeyStoreId"])["ConnectionState"] == "DISCONNECTED"


def test_create_refuses_a_credential_the_proxy_rejects_and_records_nothing(
    kms, store_service, caplog
):
    store_name = name()
    with (
        ledger_unchanged(store_service),
        aws_error("XksProxyIncorrectAuthenticationCredentialException") as refused,
    ):
        xks_store(
            kms,
            CustomKeyStoreName=store_name,
            XksProxyAuthenticationCredential=credential(WRONG_SECRET),
        )
    assert "could not authenticate" in refused["message"]
    with aws_error("CustomKeyStoreNotFoundException"):
        kms.describe_custom_key_stores(CustomKeyStoreName=store_name)
    assert WRONG_SECRET not in str(refused) and WRONG_SECRET not in caplog.text


def test_create_refuses_a_proxy_nobody_answers(kms, store_service):
    with ledger_unchanged(store_service), aws_error("XksProxyUriUnreachableException"):
        xks_store(kms, XksProxyUriEndpoint=XKS_DOWN_ENDPOINT)
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []


def test_create_refuses_an_answer_that_is_no_xks_proxys(kms, store_service):
    # Two prefix segments: a path the service does not serve as a proxy; its REST API answers.
    with ledger_unchanged(store_service), aws_error("XksProxyInvalidResponseException"):
        xks_store(kms, XksProxyUriPath="/not/served/kms/xks/v1")
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []


def test_create_refuses_a_path_the_proxy_refuses(kms, store_service):
    # Under the served /kms/xks/v1, but no route of it: the proxy's InvalidUriPathException.
    with ledger_unchanged(store_service), aws_error("XksProxyInvalidConfigurationException"):
        xks_store(kms, XksProxyUriPath="/kms/xks/v1/kms/xks/v1")
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []


def test_a_refused_create_is_recorded_with_its_error(kms, store_service):
    with pytest.raises(ClientError) as refused:
        xks_store(kms, XksProxyUriEndpoint=XKS_DOWN_ENDPOINT)
    request_id = refused.value.response["ResponseMetadata"]["RequestId"]
    store_service.runtime.audit.wait_for_current()
    found = [
        r
        for r in records(store_service.client("cloudtrail"), "EventName", "CreateCustomKeyStore")
        if r["requestID"] == request_id
    ]
    assert [r["errorCode"] for r in found] == ["XksProxyUriUnreachableException"]


def test_a_vpc_store_is_created_unchecked_and_checked_when_connected(kms):
    # AWS tests VPC endpoint service connectivity when the store is connected.
    store_id = vpc_store(kms, XksProxyUriEndpoint=XKS_DOWN_ENDPOINT)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    store = settled(kms, store_id)
    assert (store["ConnectionState"], store["ConnectionErrorCode"]) == (
        "FAILED",
        "XKS_PROXY_NOT_REACHABLE",
    )


# --- DescribeCustomKeyStores ---------------------------------------------------------------
def test_describe_finds_a_store_by_name(kms, token):
    store_name = name()
    store_id = cloudhsm_store(kms, token, CustomKeyStoreName=store_name)
    found = kms.describe_custom_key_stores(CustomKeyStoreName=store_name)["CustomKeyStores"]
    assert [s["CustomKeyStoreId"] for s in found] == [store_id]


def test_describe_of_an_unknown_store_is_not_found(kms):
    with aws_error("CustomKeyStoreNotFoundException"):
        kms.describe_custom_key_stores(CustomKeyStoreId="cks-0123456789abcdef0")
    with aws_error("CustomKeyStoreNotFoundException"):
        kms.describe_custom_key_stores(CustomKeyStoreName="nobody")


def test_describe_refuses_both_id_and_name(kms, token):
    store_id = cloudhsm_store(kms, token)
    with aws_error("ValidationException"):
        kms.describe_custom_key_stores(CustomKeyStoreId=store_id, CustomKeyStoreName="x")


def test_describe_pages_with_limit_and_marker(kms):
    made = [xks_store(kms) for _ in range(3)]
    first = kms.describe_custom_key_stores(Limit=2)
    assert first["Truncated"] is True
    rest = kms.describe_custom_key_stores(Limit=2, Marker=first["NextMarker"])
    assert rest["Truncated"] is False and "NextMarker" not in rest
    seen = [s["CustomKeyStoreId"] for s in first["CustomKeyStores"] + rest["CustomKeyStores"]]
    assert seen == made


def test_describe_refuses_a_marker_it_did_not_issue(kms):
    with aws_error("InvalidMarkerException"):
        kms.describe_custom_key_stores(Marker="not-a-marker")


def test_another_region_does_not_see_the_store(kms, token, store_service):
    store_id = cloudhsm_store(kms, token)
    other_region = store_service.client("kms", region="us-west-2")
    with aws_error("CustomKeyStoreNotFoundException"):
        other_region.describe_custom_key_stores(CustomKeyStoreId=store_id)


# --- ConnectCustomKeyStore / DisconnectCustomKeyStore ------------------------------------
def test_connect_with_the_token_pin_connects(kms, token):
    store_id = cloudhsm_store(kms, token)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"


def test_connect_with_a_wrong_pin_fails_with_invalid_credentials(kms, token):
    store_id = cloudhsm_store(kms, token, KeyStorePassword="wrong-pin-123")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    store = settled(kms, store_id)
    assert (store["ConnectionState"], store["ConnectionErrorCode"]) == (
        "FAILED",
        "INVALID_CREDENTIALS",
    )


def test_connect_to_a_missing_token_fails_with_cluster_not_found(kms, token):
    store_id = cloudhsm_store(kms, token, CloudHsmClusterId=OTHER_CLUSTER)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionErrorCode"] == "CLUSTER_NOT_FOUND"


def test_a_failed_store_must_be_disconnected_before_it_connects_again(kms, token):
    store_id = cloudhsm_store(kms, token, KeyStorePassword="wrong-pin-123")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    settled(kms, store_id)
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=token.pin)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"


def test_disconnect_of_a_disconnected_store_is_invalid(kms, token):
    store_id = cloudhsm_store(kms, token)
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)


def test_disconnect_returns_a_connected_store_to_disconnected(kms, token):
    store_id = cloudhsm_store(kms, token)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    settled(kms, store_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"


# --- UpdateCustomKeyStore -----------------------------------------------------------------
def test_update_renames_a_disconnected_store(kms, token):
    store_id = cloudhsm_store(kms, token)
    new_name = name()
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName=new_name)
    assert describe(kms, store_id)["CustomKeyStoreName"] == new_name


def test_update_of_a_connected_cloudhsm_store_is_invalid(kms, token):
    store_id = cloudhsm_store(kms, token)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    settled(kms, store_id)
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName=name())


def test_update_refuses_an_unrelated_cluster(kms, token):
    store_id = cloudhsm_store(kms, token)
    with aws_error("CloudHsmClusterNotRelatedException"):
        kms.update_custom_key_store(CustomKeyStoreId=store_id, CloudHsmClusterId=OTHER_CLUSTER)


def test_update_refuses_a_name_in_use(kms, token):
    taken = name()
    xks_store(kms, CustomKeyStoreName=taken)
    store_id = cloudhsm_store(kms, token)
    with aws_error("CustomKeyStoreNameInUseException"):
        kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName=taken)


def test_update_changes_an_external_stores_proxy_path(kms):
    store_id = xks_store(kms)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, XksProxyUriPath="/new/kms/xks/v1")
    assert describe(kms, store_id)["XksProxyConfiguration"]["UriPath"] == "/new/kms/xks/v1"


# AWS: "Before updating the properties your external key store, AWS KMS sends a
# GetHealthStatus request to the external key store proxy using the new values. ... If the
# request fails, the edit operation fails" (developer guide, update-xks-keystore).
def test_update_checks_a_new_credential_and_changes_nothing_when_refused(kms, store_service):
    store_id = xks_store(kms)
    before = describe(kms, store_id)
    with (
        ledger_unchanged(store_service),
        aws_error("XksProxyIncorrectAuthenticationCredentialException"),
    ):
        kms.update_custom_key_store(
            CustomKeyStoreId=store_id, XksProxyAuthenticationCredential=credential(WRONG_SECRET)
        )
    assert describe(kms, store_id) == before
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # the old credential still holds
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"


def test_update_checks_a_new_path_and_endpoint_with_the_stores_credential(kms, store_service):
    store_id = xks_store(kms)
    answer = kms.update_custom_key_store(
        CustomKeyStoreId=store_id, XksProxyUriPath=f"/{secrets.token_hex(4)}/kms/xks/v1"
    )
    (health,) = health_checks(store_service, answer)
    assert health["requestParameters"]["requestMetadata"]["kmsOperation"] == (
        "UpdateCustomKeyStore"
    )
    assert health["userIdentity"]["accessKeyId"] == XKS_ACCESS_KEY and "errorCode" not in health
    before = describe(kms, store_id)
    with ledger_unchanged(store_service):
        with aws_error("XksProxyUriUnreachableException"):
            kms.update_custom_key_store(
                CustomKeyStoreId=store_id, XksProxyUriEndpoint=XKS_DOWN_ENDPOINT
            )
        with aws_error("XksProxyInvalidConfigurationException"):
            kms.update_custom_key_store(
                CustomKeyStoreId=store_id, XksProxyUriPath="/kms/xks/v1/kms/xks/v1"
            )
    assert describe(kms, store_id) == before


def test_update_of_the_name_alone_asks_no_proxy(kms, store_service):
    store_id = xks_store(kms)
    answer = kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName=name())
    assert health_checks(store_service, answer) == []


def test_a_connected_store_is_checked_before_its_credential_changes(kms, store_service):
    store_id = xks_store(kms)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"
    with (
        ledger_unchanged(store_service),
        aws_error("XksProxyIncorrectAuthenticationCredentialException"),
    ):
        kms.update_custom_key_store(
            CustomKeyStoreId=store_id, XksProxyAuthenticationCredential=credential(WRONG_SECRET)
        )
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"


def test_a_connected_external_store_may_change_its_proxy_path(kms):
    # AWS: XksProxyUriPath "You can change this value when the external key store is
    # connected or disconnected." (UpdateCustomKeyStore); its endpoint only disconnected.
    store_id = xks_store(kms)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"
    path = f"/{secrets.token_hex(4)}/kms/xks/v1"
    kms.update_custom_key_store(CustomKeyStoreId=store_id, XksProxyUriPath=path)
    store = describe(kms, store_id)
    assert (store["ConnectionState"], store["XksProxyConfiguration"]["UriPath"]) == (
        "CONNECTED",
        path,
    )
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.update_custom_key_store(CustomKeyStoreId=store_id, XksProxyUriEndpoint=XKS_VPC_ENDPOINT)


def test_a_vpc_store_is_checked_on_update_only_while_connected(kms, store_service):
    store_id = vpc_store(kms)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"
    wrong = credential(WRONG_SECRET)
    with (
        ledger_unchanged(store_service),
        aws_error("XksProxyIncorrectAuthenticationCredentialException"),
    ):
        kms.update_custom_key_store(
            CustomKeyStoreId=store_id, XksProxyAuthenticationCredential=wrong
        )
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    # Disconnected, it has no endpoint to be reached at (AWS: no interface endpoint).
    kms.update_custom_key_store(CustomKeyStoreId=store_id, XksProxyAuthenticationCredential=wrong)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionErrorCode"] == "INVALID_CREDENTIALS"


def test_update_of_an_unknown_store_is_not_found(kms):
    with aws_error("CustomKeyStoreNotFoundException"):
        kms.update_custom_key_store(
            CustomKeyStoreId="cks-0123456789abcdef0", NewCustomKeyStoreName="x"
        )


# --- DeleteCustomKeyStore -----------------------------------------------------------------
def test_delete_of_a_connected_store_is_invalid(kms, token):
    store_id = cloudhsm_store(kms, token)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    settled(kms, store_id)
    with aws_error("CustomKeyStoreInvalidStateException"):
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)


def test_delete_frees_the_name_and_the_cluster(kms, token):
    store_name = name()
    store_id = cloudhsm_store(kms, token, CustomKeyStoreName=store_name)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    with aws_error("CustomKeyStoreNotFoundException"):
        describe(kms, store_id)
    cloudhsm_store(kms, token, CustomKeyStoreName=store_name)


# --- secrets and the audit trail ----------------------------------------------------------
def test_the_password_is_in_no_event_and_no_cloudtrail_record(kms, token, store_service):
    response = kms.create_custom_key_store(
        CustomKeyStoreName=name(),
        CloudHsmClusterId=CLUSTER,
        TrustAnchorCertificate=ANCHOR,
        KeyStorePassword=token.pin,
    )
    request_id = response["ResponseMetadata"]["RequestId"]
    cloudtrail = store_service.client("cloudtrail")
    deadline, found = time.monotonic() + 10, []
    while not found and time.monotonic() < deadline:
        found = [
            r
            for r in records(cloudtrail, "EventName", "CreateCustomKeyStore")
            if r.get("requestID") == request_id
        ]
        time.sleep(0.1)
    assert found, "no CloudTrail record of CreateCustomKeyStore"
    parameters = found[0]["requestParameters"]
    # KMS logs the cluster as clusterId (AWS's sample: developerguide/ct-create-keystore.html)
    assert parameters["clusterId"] == CLUSTER and "keyStorePassword" not in parameters
    assert token.pin not in json.dumps(found[0], default=str)
    url = store_service.runtime.settings.database_url
    with psycopg.connect(url) as conn:
        states = conn.execute("SELECT state FROM keyledger_events").fetchall()
    assert not any(token.pin.encode() in bytes(state) for (state,) in states)
