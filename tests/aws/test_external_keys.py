"""KMS keys in an external key store, end to end: one KeyLedger's (A's) external key store
backed by a second KeyLedger's (B's) XKS Proxy API, both running over real HTTP on
PostgreSQL, A driven with boto3.

A reaches B's proxy over loopback HTTP through KEYLEDGER_XKS_PROXY_ENDPOINTS (the store's
XksProxyUriEndpoint stays an https:// name, as AWS's API requires). Every test checks what
AWS documents: CreateCustomKeyStore's and ConnectCustomKeyStore's GetHealthStatus and the
latter's ConnectionErrorCodes, CreateKey's GetKeyMetadata checks, double encryption (A's
own material, then B's external key), the errors of a failing proxy, the Unavailable state
of a disconnected store, and both ledgers recording their side of every call.

A store with PUBLIC_ENDPOINT connectivity whose proxy fails GetHealthStatus is never
created (tests/aws/test_custom_key_stores.py); the connection failures are those of stores
with VPC_ENDPOINT_SERVICE connectivity, whose proxy AWS first reaches when they connect
(KeyLedger reaches it at its endpoint: there is no VPC here).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.infrastructure.xks_client import RequestMetadata, XksClient, XksCredential
from domain import ciphertext
from domain.audit import XKS_SOURCE
from tests.audit.conftest import records
from tests.aws.conftest import aws_error, ledger_unchanged
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres

XKS_KEY, XKS_SECRET = "XKSTESTACCESSKEY2345A", base64.b64encode(b"x" * 32).decode()
WRONG_SECRET = base64.b64encode(b"y" * 32).decode()
ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
PATH = "/kms/xks/v1"
# The names A's stores give B's proxy (each store needs an XksProxyUri of its own).
B_NAMES = [f"https://xks-b{i}.keyledger.test" for i in range(8)]
TLS_NAME = "https://xks-tls.keyledger.test"  # B's plain HTTP port, spoken to in TLS
DOWN_NAME = "https://xks-down.keyledger.test"  # nothing listens there
TIMEOUT = 5.0  # AWS's 250 ms is too tight for a 2-core machine running the suite


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """B: serves the XKS Proxy API with one credential, acting as its administrator."""
    settings = {"xks_credentials": f"{XKS_KEY}:{XKS_SECRET}", "xks_principal_arn": ADMIN}
    with running_service(tmp_path_factory.mktemp("xks-b"), **settings) as service:
        yield service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, proxy: Service) -> Iterator[Service]:
    """A: its external key stores reach B over loopback HTTP."""
    port = proxy.endpoint.rsplit(":", 1)[1]
    endpoints = {name: proxy.endpoint for name in B_NAMES}
    endpoints[TLS_NAME] = f"https://127.0.0.1:{port}"
    endpoints[DOWN_NAME] = f"http://127.0.0.1:{free_port()}"
    tmp: Path = tmp_path_factory.mktemp("xks-a")
    with running_service(
        tmp, xks_proxy_endpoints=endpoints, xks_proxy_timeout_seconds=TIMEOUT
    ) as service:
        yield service


@pytest.fixture(scope="module")
def kms(service: Service) -> Any:
    return service.client("kms")


@pytest.fixture(scope="module")
def b_kms(proxy: Service) -> Any:
    return proxy.client("kms")


def create_store(kms: Any, endpoint: str, secret: str = XKS_SECRET) -> str:
    return str(create_store_answer(kms, endpoint, secret)["CustomKeyStoreId"])


def create_store_answer(kms: Any, endpoint: str, secret: str = XKS_SECRET) -> dict[str, Any]:
    return dict(
        kms.create_custom_key_store(
            CustomKeyStoreName=f"xks-{secrets.token_hex(4)}",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=endpoint,
            XksProxyUriPath=PATH,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": XKS_KEY,
                "RawSecretAccessKey": secret,
            },
        )
    )


def create_vpc_store(kms: Any, endpoint: str, secret: str = XKS_SECRET) -> str:
    """A store with VPC_ENDPOINT_SERVICE connectivity (each its own endpoint and service):
    created without asking its proxy, which is first reached when it connects."""
    return str(
        kms.create_custom_key_store(
            CustomKeyStoreName=f"xks-{secrets.token_hex(4)}",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=endpoint,
            XksProxyUriPath=PATH,
            XksProxyConnectivity="VPC_ENDPOINT_SERVICE",
            XksProxyVpcEndpointServiceName=(
                f"com.amazonaws.vpce.{REGION}.vpce-svc-{secrets.token_hex(9)[:17]}"
            ),
            XksProxyAuthenticationCredential={
                "AccessKeyId": XKS_KEY,
                "RawSecretAccessKey": secret,
            },
        )["CustomKeyStoreId"]
    )


def settled(kms: Any, store_id: str) -> dict[str, Any]:
    """The store once its connection attempt has settled."""
    deadline = time.monotonic() + 20
    while True:
        found = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]
        if found["ConnectionState"] != "CONNECTING" or time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.05)


def connect(kms: Any, store_id: str) -> dict[str, Any]:
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return settled(kms, store_id)


@pytest.fixture(scope="module")
def store_id(kms: Any) -> str:
    """A's connected external key store, shared by the module (one holding keys stays)."""
    store = create_store(kms, B_NAMES[0])
    assert connect(kms, store)["ConnectionState"] == "CONNECTED"
    return store


def external_key(b_kms: Any, **kwargs: Any) -> str:
    """A new key in B: the external key of a key in A's store."""
    return str(b_kms.create_key(Description="external key", **kwargs)["KeyMetadata"]["KeyId"])


def xks_key(kms: Any, store_id: str, xks_key_id: str) -> dict[str, Any]:
    return dict(
        kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=xks_key_id)[
            "KeyMetadata"
        ]
    )


@pytest.fixture
def key(kms: Any, b_kms: Any, store_id: str) -> dict[str, Any]:
    """A key of A's store and its external key in B (``XksKeyId``)."""
    return xks_key(kms, store_id, external_key(b_kms))


def b_records(proxy: Service, kms_request_id: str, count: int) -> list[dict[str, Any]]:
    """B's records of the XKS calls A made for one of its KMS requests, once ``count``."""
    trail = proxy.client("cloudtrail")

    def found() -> list[dict[str, Any]]:
        return [
            r
            for r in records(trail, "EventSource", XKS_SOURCE)
            if ((r.get("requestParameters") or {}).get("requestMetadata") or {}).get("kmsRequestId")
            == kms_request_id
        ]

    eventually(lambda: len(found()) >= count, timeout=15, poll=0.1)
    return found()


def a_record(service: Service, kms_request_id: str, name: str) -> dict[str, Any]:
    trail = service.client("cloudtrail")

    def found() -> list[dict[str, Any]]:
        return [r for r in records(trail, "EventName", name) if r["requestID"] == kms_request_id]

    assert eventually(lambda: len(found()) == 1, timeout=15, poll=0.1)
    return found()[0]


def request_id(answer: dict[str, Any]) -> str:
    return str(answer["ResponseMetadata"]["RequestId"])


# --- ConnectCustomKeyStore ---------------------------------------------------------------------
def test_connect_asks_the_proxys_health_with_the_stores_credential(kms, proxy, store_id):
    store = settled(kms, store_id)
    assert store["ConnectionState"] == "CONNECTED" and "ConnectionErrorCode" not in store
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    answer = kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert settled(kms, store_id)["ConnectionState"] == "CONNECTED"
    (health,) = b_records(proxy, request_id(answer), 1)
    assert health["eventName"] == "GetHealthStatus" and "errorCode" not in health
    assert health["requestParameters"]["requestMetadata"]["kmsOperation"] == (
        "ConnectCustomKeyStore"
    )
    assert health["userIdentity"]["accessKeyId"] == XKS_KEY


def test_a_wrong_credential_fails_the_connection_with_invalid_credentials(kms):
    # AWS's ConnectionErrorCode for a credential the proxy does not accept (its 401).
    store = create_vpc_store(kms, B_NAMES[1], secret=WRONG_SECRET)
    found = connect(kms, store)
    assert (found["ConnectionState"], found["ConnectionErrorCode"]) == (
        "FAILED",
        "INVALID_CREDENTIALS",
    )
    assert WRONG_SECRET not in str(found)


def test_a_corrected_credential_connects_after_a_failure(kms):
    store = create_vpc_store(kms, B_NAMES[2], secret=WRONG_SECRET)
    assert connect(kms, store)["ConnectionState"] == "FAILED"
    kms.disconnect_custom_key_store(CustomKeyStoreId=store)
    kms.update_custom_key_store(
        CustomKeyStoreId=store,
        XksProxyAuthenticationCredential={"AccessKeyId": XKS_KEY, "RawSecretAccessKey": XKS_SECRET},
    )
    assert connect(kms, store)["ConnectionState"] == "CONNECTED"


def test_a_proxy_nobody_answers_is_not_reachable(kms):
    found = connect(kms, create_vpc_store(kms, DOWN_NAME))
    assert (found["ConnectionState"], found["ConnectionErrorCode"]) == (
        "FAILED",
        "XKS_PROXY_NOT_REACHABLE",
    )


def test_a_proxy_without_tls_is_an_invalid_tls_configuration(kms):
    found = connect(kms, create_vpc_store(kms, TLS_NAME))
    assert (found["ConnectionState"], found["ConnectionErrorCode"]) == (
        "FAILED",
        "XKS_PROXY_INVALID_TLS_CONFIGURATION",
    )


# --- CreateCustomKeyStore asks the proxy first -------------------------------------------------
def test_create_asks_the_proxys_health_and_both_ledgers_record_it(kms, proxy, service):
    answer = create_store_answer(kms, B_NAMES[6])
    (health,) = b_records(proxy, request_id(answer), 1)
    assert health["eventName"] == "GetHealthStatus" and "errorCode" not in health
    assert health["requestParameters"]["requestMetadata"]["kmsOperation"] == (
        "CreateCustomKeyStore"
    )
    assert health["userIdentity"]["accessKeyId"] == XKS_KEY
    record = a_record(service, request_id(answer), "CreateCustomKeyStore")
    assert record["responseElements"] == {"customKeyStoreId": answer["CustomKeyStoreId"]}
    kms.delete_custom_key_store(CustomKeyStoreId=answer["CustomKeyStoreId"])  # 10 per Region


def test_a_credential_the_proxy_refuses_creates_nothing_but_the_calls_record(kms, service):
    with ledger_unchanged(service), pytest.raises(ClientError) as refused:
        create_store(kms, B_NAMES[7], secret=WRONG_SECRET)
    error = refused.value.response
    assert error["Error"]["Code"] == "XksProxyIncorrectAuthenticationCredentialException"
    record = a_record(service, request_id(error), "CreateCustomKeyStore")
    assert record["errorCode"] == "XksProxyIncorrectAuthenticationCredentialException"
    assert WRONG_SECRET not in str(record) + str(error)
    # Never created: the endpoint and path are still free.
    kms.delete_custom_key_store(CustomKeyStoreId=create_store(kms, B_NAMES[7]))


def test_a_stores_proxy_endpoint_is_https_whatever_this_process_maps(kms):
    # AWS's model: https://<host>; plain HTTP is reachable only through the operator's
    # KEYLEDGER_XKS_PROXY_ENDPOINTS, and only to a loopback address.
    with aws_error("ValidationException"):
        create_store(kms, "http://127.0.0.1")


# --- CreateKey ---------------------------------------------------------------------------------
def test_a_key_in_the_store_names_its_store_and_external_key(kms, b_kms, store_id):
    xks_key_id = external_key(b_kms)
    created = xks_key(kms, store_id, xks_key_id)
    assert created["Origin"] == "EXTERNAL_KEY_STORE"
    assert created["CustomKeyStoreId"] == store_id
    assert created["XksKeyConfiguration"] == {"Id": xks_key_id}
    assert (created["KeyState"], created["KeySpec"]) == ("Enabled", "SYMMETRIC_DEFAULT")
    described = kms.describe_key(KeyId=created["KeyId"])["KeyMetadata"]
    assert described["XksKeyConfiguration"] == {"Id": xks_key_id}
    assert "CloudHsmClusterId" not in described


def test_create_key_asks_the_proxy_for_the_external_keys_metadata(kms, b_kms, proxy, store_id):
    answer = kms.create_key(
        Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=external_key(b_kms)
    )
    (metadata,) = b_records(proxy, request_id(answer), 1)
    assert metadata["eventName"] == "GetKeyMetadata"
    sent = metadata["requestParameters"]["requestMetadata"]
    assert (sent["kmsOperation"], sent["awsPrincipalArn"]) == ("CreateKey", ADMIN)
    assert "kmsKeyArn" not in sent  # the KMS key does not exist yet (the spec)


def test_create_key_refuses_an_external_key_the_proxy_does_not_know(kms, store_id):
    with aws_error("XksKeyNotFoundException"):
        xks_key(kms, store_id, str(uuid.uuid4()))


def test_create_key_refuses_a_disabled_external_key(kms, b_kms, store_id):
    xks_key_id = external_key(b_kms)
    b_kms.disable_key(KeyId=xks_key_id)
    with aws_error("XksKeyInvalidConfigurationException"):
        xks_key(kms, store_id, xks_key_id)


def test_create_key_refuses_an_external_key_that_is_not_aes(kms, b_kms, store_id):
    hmac_key = external_key(b_kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    with aws_error("XksKeyInvalidConfigurationException"):
        xks_key(kms, store_id, hmac_key)


def test_an_external_key_backs_one_kms_key_of_the_store(kms, key, store_id):
    with aws_error("XksKeyAlreadyInUseException"):
        xks_key(kms, store_id, key["XksKeyConfiguration"]["Id"])


def test_create_key_in_a_disconnected_store_is_invalid(kms, b_kms):
    store = create_store(kms, B_NAMES[3])
    with aws_error("CustomKeyStoreInvalidStateException"):
        xks_key(kms, store, external_key(b_kms))


def test_a_key_in_an_external_key_store_does_not_rotate(kms, key):
    with aws_error("UnsupportedOperationException"):
        kms.enable_key_rotation(KeyId=key["KeyId"])
    with aws_error("UnsupportedOperationException"):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])


def test_generate_random_in_an_external_key_store_is_unsupported(kms, store_id):
    with aws_error("UnsupportedOperationException"):
        kms.generate_random(NumberOfBytes=16, CustomKeyStoreId=store_id)


# --- double encryption -------------------------------------------------------------------------
def test_encrypt_and_decrypt_round_trip_through_both_backing_keys(kms, key, service, proxy):
    context = {"order": "42"}
    sealed = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"double", EncryptionContext=context)
    blob = sealed["CiphertextBlob"]
    assert blob[0] == ciphertext.EXTERNAL_FORMAT
    opened = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert (opened["Plaintext"], opened["KeyId"]) == (b"double", key["Arn"])
    with aws_error("InvalidCiphertextException"):  # A's own layer binds the context
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"order": "43"})
    # B's trail: one XKS Encrypt and one Decrypt per KMS call, told A's request.
    (encrypt,) = b_records(proxy, request_id(sealed), 1)
    sent = encrypt["requestParameters"]["requestMetadata"]
    assert encrypt["eventName"] == "Encrypt"
    assert sent == {
        "awsPrincipalArn": ADMIN,
        "kmsKeyArn": key["Arn"],
        "kmsOperation": "Encrypt",
        "kmsRequestId": request_id(sealed),
    }
    assert encrypt["requestParameters"]["externalKeyId"] == key["XksKeyConfiguration"]["Id"]
    (decrypt,) = b_records(proxy, request_id(opened), 1)
    assert decrypt["eventName"] == "Decrypt"
    # A's trail: the KMS calls, under the KMS key.
    record = a_record(service, request_id(sealed), "Encrypt")
    assert record["resources"][0]["ARN"] == key["Arn"]
    assert record["requestParameters"]["encryptionContext"] == context


def inner_blob(proxy: Service, key: dict[str, Any], blob: bytes) -> bytes:
    """The blob under a format 2 blob's outer layer, as B alone opens it."""
    header, outer = ciphertext.unwrap_external(blob)
    metadata = RequestMetadata(ADMIN, "Decrypt", str(uuid.uuid4()), key["Arn"])

    async def open_at_b() -> bytes:
        credential = XksCredential(XKS_KEY, XKS_SECRET)
        async with XksClient(proxy.endpoint, PATH, credential, REGION, timeout=TIMEOUT) as c:
            return await c.decrypt(key["XksKeyConfiguration"]["Id"], metadata, outer, header)

    return asyncio.run(open_at_b())


def test_the_outer_layer_is_the_external_keys_and_the_inner_one_a_kms_blob(kms, key, proxy):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"layers")["CiphertextBlob"]
    inner = inner_blob(proxy, key, blob)  # B alone removes its layer ...
    assert inner[0] == ciphertext.FORMAT_VERSION  # ... and finds A's own blob, still sealed
    assert inner[1:17] == uuid.UUID(key["KeyId"]).bytes and b"layers" not in inner


def test_a_tampered_outer_layer_is_refused_by_the_proxy(kms, key):
    blob = bytearray(kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x" * 32)["CiphertextBlob"])
    blob[-1] ^= 1
    # AWS: a cryptographic operation surfaces the proxy's InvalidCiphertextException so.
    with aws_error("KMSInvalidStateException") as error:
        kms.decrypt(CiphertextBlob=bytes(blob))
    assert "ciphertext or encryption context is corrupted" in error["message"]


def test_the_kms_material_alone_never_decrypts(kms, key, proxy):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    inner = inner_blob(proxy, key, blob)  # a valid blob of the key's own KMS material
    with aws_error("InvalidCiphertextException"):
        kms.decrypt(CiphertextBlob=inner)


def test_data_keys_and_re_encryption_to_and_from_an_ordinary_key(kms, key, service, proxy):
    ordinary = kms.create_key()["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert data_key["CiphertextBlob"][0] == ciphertext.EXTERNAL_FORMAT
    opened = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"]
    assert opened == data_key["Plaintext"]
    moved = kms.re_encrypt(CiphertextBlob=data_key["CiphertextBlob"], DestinationKeyId=ordinary)
    assert moved["CiphertextBlob"][0] == ciphertext.FORMAT_VERSION
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=key["KeyId"])
    assert back["KeyId"] == key["Arn"] and back["SourceKeyId"].endswith(ordinary)
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == opened
    (metadata,) = b_records(proxy, request_id(back), 1)
    assert metadata["requestParameters"]["requestMetadata"]["kmsOperation"] == "ReEncrypt"
    (wrapped,) = b_records(proxy, request_id(data_key), 1)
    assert wrapped["requestParameters"]["requestMetadata"]["kmsOperation"] == "GenerateDataKey"
    # A's trail: each KMS call once, under the keys it used.
    generated = a_record(service, request_id(data_key), "GenerateDataKey")
    assert generated["resources"][0]["ARN"] == key["Arn"]
    arns = {r["ARN"] for r in a_record(service, request_id(moved), "ReEncrypt")["resources"]}
    assert key["Arn"] in arns and any(arn.endswith(ordinary) for arn in arns)
    without = kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], NumberOfBytes=16)
    assert len(kms.decrypt(CiphertextBlob=without["CiphertextBlob"])["Plaintext"]) == 16


def test_re_encryption_between_two_external_keys(kms, b_kms, key, store_id, proxy):
    other = xks_key(kms, store_id, external_key(b_kms))
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"between")["CiphertextBlob"]
    moved = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other["KeyId"])
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"between"
    calls = b_records(proxy, request_id(moved), 2)
    assert sorted(r["eventName"] for r in calls) == ["Decrypt", "Encrypt"]


def test_data_key_pairs_are_sealed_by_both_backing_keys(kms, key):
    pair = kms.generate_data_key_pair(KeyId=key["KeyId"], KeyPairSpec="ECC_NIST_P256")
    assert pair["PrivateKeyCiphertextBlob"][0] == ciphertext.EXTERNAL_FORMAT
    opened = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])["Plaintext"]
    assert opened == pair["PrivateKeyPlaintext"]


# --- failures ----------------------------------------------------------------------------------
def test_a_disabled_external_key_fails_decrypt_as_aws_says(kms, b_kms, key):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    b_kms.disable_key(KeyId=key["XksKeyConfiguration"]["Id"])
    try:
        with aws_error("KMSInvalidStateException") as error:
            kms.decrypt(CiphertextBlob=blob)
        assert "is not enabled in the external key manager" in error["message"]
        with aws_error("KMSInvalidStateException"):
            kms.encrypt(KeyId=key["KeyId"], Plaintext=b"after")
        # The KMS key itself is still Enabled: only its external key is not (AWS).
        assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    finally:
        b_kms.enable_key(KeyId=key["XksKeyConfiguration"]["Id"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"


def test_a_failed_call_is_in_a_trail_with_its_error(kms, b_kms, key, service):
    b_kms.disable_key(KeyId=key["XksKeyConfiguration"]["Id"])
    try:
        with pytest.raises(kms.exceptions.KMSInvalidStateException) as caught:
            kms.encrypt(KeyId=key["KeyId"], Plaintext=b"refused")
    finally:
        b_kms.enable_key(KeyId=key["XksKeyConfiguration"]["Id"])
    record = a_record(service, request_id(caught.value.response), "Encrypt")
    assert record["errorCode"] == "KMSInvalidStateException"


def test_a_disconnected_stores_keys_are_unavailable(kms, key, store_id):
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kept")["CiphertextBlob"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    try:
        described = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        assert (described["KeyState"], described["Enabled"]) == ("Unavailable", False)
        with aws_error("KMSInvalidStateException", f"{key['Arn']} is unavailable."):
            kms.decrypt(CiphertextBlob=blob)
        with aws_error("KMSInvalidStateException"):
            kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    finally:
        assert connect(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_a_store_holding_keys_cannot_be_deleted(kms, b_kms):
    store = create_store(kms, B_NAMES[4])
    assert connect(kms, store)["ConnectionState"] == "CONNECTED"
    xks_key(kms, store, external_key(b_kms))
    kms.disconnect_custom_key_store(CustomKeyStoreId=store)
    with aws_error("CustomKeyStoreHasCMKsException"):
        kms.delete_custom_key_store(CustomKeyStoreId=store)


def test_no_secret_or_plaintext_reaches_either_trail_or_the_log(kms, key, service, proxy, caplog):
    caplog.set_level(logging.DEBUG, logger="keyledger")  # not boto3's (its bodies)
    plaintext = secrets.token_hex(16).encode()
    sealed = kms.encrypt(KeyId=key["KeyId"], Plaintext=plaintext)
    kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"])
    failed = create_vpc_store(kms, B_NAMES[5], secret=WRONG_SECRET)
    assert connect(kms, failed)["ConnectionState"] == "FAILED"
    text = str(a_record(service, request_id(sealed), "Encrypt")) + str(
        b_records(proxy, request_id(sealed), 1)
    )
    hidden = (XKS_SECRET, WRONG_SECRET, plaintext.decode(), base64.b64encode(plaintext).decode())
    for secret in hidden:
        assert secret not in text and secret not in caplog.text
    assert "GetHealthStatus" in caplog.text  # the failed connection was logged, without it
