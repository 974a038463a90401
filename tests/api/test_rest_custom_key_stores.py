"""The REST API's custom key stores (/v1/custom-key-stores), through real HTTP with
SigV4-signed requests: the same use cases, rules, authorization and records as the AWS
protocol's six operations, the secrets never answered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.access.conftest import Identities, allow, policy
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import records
from tests.conftest import Service
from tests.support.custom_key_stores import (
    ANCHOR,
    CLUSTER,
    XKS_ACCESS_KEY,
    XKS_DOWN_ENDPOINT,
    XKS_SECRET,
    clear_stores,
    store_name,
    store_service,
)
from tests.support.softhsm import SoftHsm, softhsm_token

STORES = "/v1/custom-key-stores"


@pytest.fixture(scope="module")
def token() -> SoftHsm:
    return softhsm_token()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, token: SoftHsm) -> Iterator[Service]:
    with store_service(tmp_path_factory.mktemp("keyledger-cks-rest"), token) as running:
        yield running


@pytest.fixture
def rest(service: Service) -> Iterator[RestClient]:
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()
    clear_stores(service.client("kms"))


def cloudhsm_body(token: SoftHsm, **overrides: Any) -> dict[str, Any]:
    return {
        "custom_key_store_name": store_name(),
        "cloud_hsm_cluster_id": CLUSTER,
        "trust_anchor_certificate": ANCHOR,
        "key_store_password": token.pin,
        **overrides,
    }


def xks_body(**overrides: Any) -> dict[str, Any]:
    return {
        "custom_key_store_name": store_name(),
        "custom_key_store_type": "EXTERNAL_KEY_STORE",
        "xks_proxy_uri_endpoint": "https://xks.example.com",
        "xks_proxy_uri_path": "/rest/kms/xks/v1",
        "xks_proxy_connectivity": "PUBLIC_ENDPOINT",
        "xks_proxy_authentication_credential": {
            "access_key_id": XKS_ACCESS_KEY,
            "raw_secret_access_key": XKS_SECRET,
        },
        **overrides,
    }


def created(rest: RestClient, body: dict[str, Any]) -> str:
    answer = rest.post(STORES, body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["custom_key_store_id"])


def described(rest: RestClient, store_id: str) -> dict[str, Any]:
    answer = rest.get(f"{STORES}/{store_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def settled(rest: RestClient, store_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        store = described(rest, store_id)
        if store["connection_state"] != "CONNECTING" or time.monotonic() > deadline:
            return store
        time.sleep(0.05)


def error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, str(answer.json()["__type"])


def test_a_store_goes_through_its_whole_life_over_rest(rest, token):
    store_id = created(rest, cloudhsm_body(token))
    store = described(rest, store_id)
    assert (store["custom_key_store_type"], store["connection_state"]) == (
        "AWS_CLOUDHSM",
        "DISCONNECTED",
    )
    assert store["cloud_hsm_cluster_id"] == CLUSTER
    renamed = store_name()
    assert (
        rest.patch(f"{STORES}/{store_id}", {"new_custom_key_store_name": renamed}).status_code
        == 204
    )
    assert described(rest, store_id)["custom_key_store_name"] == renamed
    assert rest.post(f"{STORES}/{store_id}/connect").status_code == 202
    assert settled(rest, store_id)["connection_state"] == "CONNECTED"
    assert rest.post(f"{STORES}/{store_id}/disconnect").status_code == 204
    assert described(rest, store_id)["connection_state"] == "DISCONNECTED"
    assert rest.delete(f"{STORES}/{store_id}").status_code == 204
    assert error(rest.get(f"{STORES}/{store_id}")) == (404, "CustomKeyStoreNotFoundException")


def test_a_store_made_over_rest_is_the_aws_protocols_store(rest, token, service):
    store_id = created(rest, cloudhsm_body(token))
    (store,) = service.client("kms").describe_custom_key_stores(CustomKeyStoreId=store_id)[
        "CustomKeyStores"
    ]
    assert store["CloudHsmClusterId"] == CLUSTER


def test_the_list_pages_and_finds_a_store_by_name(rest):
    names = [store_name() for _ in range(3)]
    made = [
        created(rest, xks_body(custom_key_store_name=n, xks_proxy_uri_path=f"/{n}/kms/xks/v1"))
        for n in names
    ]
    first = rest.get(STORES, params={"limit": 2}).json()
    assert first["truncated"] is True
    rest_page = rest.get(STORES, params={"limit": 2, "marker": first["next_marker"]}).json()
    listed = [
        s["custom_key_store_id"]
        for s in first["custom_key_stores"] + rest_page["custom_key_stores"]
    ]
    assert listed == made
    by_name = rest.get(STORES, params={"custom_key_store_name": names[1]}).json()
    assert [s["custom_key_store_id"] for s in by_name["custom_key_stores"]] == [made[1]]


def test_an_external_store_answers_its_proxy_but_never_its_secret(rest):
    answer = rest.get(f"{STORES}/{created(rest, xks_body())}")
    proxy = answer.json()["xks_proxy_configuration"]
    assert (proxy["access_key_id"], proxy["uri_path"]) == (XKS_ACCESS_KEY, "/rest/kms/xks/v1")
    assert XKS_SECRET not in answer.text


def test_values_outside_aws_model_limits_are_refused_before_any_use_case(rest, token):
    for body in (
        cloudhsm_body(token, cloud_hsm_cluster_id="cluster-1111111111111"),  # pattern
        cloudhsm_body(token, key_store_password="short"),  # 7-32 characters
        xks_body(xks_proxy_uri_path="/kms/xks/v1/more"),  # pattern
        cloudhsm_body(token, custom_key_store_type="SOMEWHERE"),  # enum
        cloudhsm_body(token, unknown_member=True),  # no such member
    ):
        answer = rest.post(STORES, body)
        assert error(answer) == (400, "ValidationException"), body
        assert token.pin not in answer.text


def test_the_use_cases_rules_answer_in_aws_words_with_rest_statuses(rest, token):
    with_password = cloudhsm_body(token)
    without_password = {k: v for k, v in with_password.items() if k != "key_store_password"}
    assert error(rest.post(STORES, without_password)) == (400, "ValidationException")
    store_id = created(rest, with_password)
    taken = cloudhsm_body(token, custom_key_store_name=with_password["custom_key_store_name"])
    assert error(rest.post(STORES, taken)) == (409, "CustomKeyStoreNameInUseException")
    rest.post(f"{STORES}/{store_id}/connect")
    settled(rest, store_id)
    assert error(rest.delete(f"{STORES}/{store_id}")) == (
        409,
        "CustomKeyStoreInvalidStateException",
    )
    assert error(rest.post(f"{STORES}/cks-0123456789abcdef0/connect")) == (
        404,
        "CustomKeyStoreNotFoundException",
    )


def test_a_proxy_that_fails_its_check_refuses_the_store_over_rest_too(rest):
    wrong = {"access_key_id": XKS_ACCESS_KEY, "raw_secret_access_key": "w" * 43}
    refused = rest.post(STORES, xks_body(xks_proxy_authentication_credential=wrong))
    assert error(refused) == (400, "XksProxyIncorrectAuthenticationCredentialException")
    assert "w" * 43 not in refused.text
    store_id = created(rest, xks_body())
    moved = rest.patch(f"{STORES}/{store_id}", {"xks_proxy_uri_endpoint": XKS_DOWN_ENDPOINT})
    assert error(moved) == (400, "XksProxyUriUnreachableException")
    assert rest.get(STORES).json()["custom_key_stores"] == [described(rest, store_id)]


def test_a_principal_without_the_iam_action_is_denied_and_recorded(rest, service, token):
    identities = Identities(service)
    reader = identities.principal(policies={"Read": policy(allow("kms:DescribeCustomKeyStores"))})
    client = RestClient(service, reader.access_key_id, reader.secret)
    try:
        assert client.get(STORES).status_code == 200
        denied = client.post(STORES, cloudhsm_body(token))
        assert error(denied) == (403, "AccessDeniedException")
    finally:
        client.http.close()
    request_id = denied.headers["x-amzn-requestid"]
    (record,) = wait_for_records(service, "CreateCustomKeyStore", request_id)
    assert record["errorCode"] == "AccessDenied"
    assert record["userIdentity"]["arn"] == reader.arn


def test_each_rest_call_is_recorded_as_its_aws_twin(rest, service, token):
    answer = rest.post(STORES, cloudhsm_body(token))
    store_id = answer.json()["custom_key_store_id"]
    (create,) = wait_for_records(
        service, "CreateCustomKeyStore", answer.headers["x-amzn-requestid"]
    )
    assert create["eventSource"] == "kms.amazonaws.com"
    assert set(create["requestParameters"]) == {"customKeyStoreName", "clusterId"}
    assert create["responseElements"] == {"customKeyStoreId": store_id}
    assert token.pin not in json.dumps(create, default=str)
    connect = rest.post(f"{STORES}/{store_id}/connect")
    (record,) = wait_for_records(
        service, "ConnectCustomKeyStore", connect.headers["x-amzn-requestid"]
    )
    assert record["requestParameters"] == {"customKeyStoreId": store_id}
    assert record["additionalEventData"]["clusterId"] == CLUSTER
    settled(rest, store_id)


def wait_for_records(service: Service, event_name: str, request_id: str) -> list[dict[str, Any]]:
    cloudtrail = service.client("cloudtrail")
    deadline = time.monotonic() + 10
    while True:
        found = [
            r
            for r in records(cloudtrail, "EventName", event_name)
            if r.get("requestID") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
