"""The XKS Proxy API KeyLedger serves, through real HTTP on PostgreSQL, against KeyLedger's
own XKS client (app.infrastructure.xks_client) and botocore's SigV4 signer: round trips,
every refusal in the spec's shape, and the ledger's records of every call."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from app.infrastructure.xks_client import (
    RequestMetadata,
    XksCiphertext,
    XksClient,
    XksCredential,
    XksProxyError,
)
from domain import xks
from domain.audit import XKS_SOURCE
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import records
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres

KEY_1, SECRET_1 = "XKSTESTACCESSKEY2345A", base64.b64encode(b"1" * 32).decode()
KEY_2, SECRET_2 = "XKSTESTACCESSKEY2345B", base64.b64encode(b"2" * 32).decode()
ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
PATH = "/kms/xks/v1"
# One proxy for several external key stores: each store's own prefix is served too.
SERVED = f"{PATH},/*{PATH}"
TOO_LONG = {"plaintext": xks.b64(bytes(xks.MAX_DATA + 1)), "encryptionAlgorithm": xks.AES_GCM}
XKS_SETTINGS = {
    "xks_credentials": f"{KEY_1}:{SECRET_1},{KEY_2}:{SECRET_2}",
    "xks_principal_arn": ADMIN,
    "xks_uri_path": SERVED,
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("xks"), **XKS_SETTINGS) as service:
        yield service


def client(
    service: Service, key: str = KEY_1, secret: str = SECRET_1, path: str = PATH
) -> XksClient:
    # 250 ms is AWS's bound; a 2-core test machine under the whole suite needs more.
    return XksClient(service.endpoint, path, XksCredential(key, secret), REGION, timeout=5.0)


def meta(operation: str = "Encrypt", request_id: str | None = None) -> RequestMetadata:
    return RequestMetadata(
        aws_principal_arn="arn:aws:iam::444455556666:user/Alice",
        kms_operation=operation,
        kms_request_id=request_id or str(uuid.uuid4()),
        kms_key_arn="arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )


def run(coroutine: Any) -> Any:
    async def within() -> Any:
        return await coroutine

    return asyncio.run(within())


async def _with(service: Service, call: Any, **kwargs: Any) -> Any:
    async with client(service, **kwargs) as xks_client:
        return await call(xks_client)


def failure(service: Service, call: Any, **kwargs: Any) -> str:
    with pytest.raises(XksProxyError) as caught:
        run(_with(service, call, **kwargs))
    return caught.value.failure


def signed_post(
    service: Service, path: str, body: bytes, *, key: str = KEY_1, secret: str = SECRET_1
) -> httpx.Response:
    """A request signed by botocore (an independent SigV4 implementation)."""
    request = AWSRequest(method="POST", url=service.endpoint + path, data=body)
    SigV4Auth(Credentials(key, secret), "kms-xks-proxy", REGION).add_auth(request)
    headers = dict(request.headers.items())
    headers["Content-Type"] = "application/json"
    return httpx.post(service.endpoint + path, content=body, headers=headers, timeout=10)


def new_key(service: Service, **kwargs: Any) -> str:
    kms = service.client()
    return str(kms.create_key(Description="xks", **kwargs)["KeyMetadata"]["KeyId"])


def body(operation: str = "Encrypt", **members: Any) -> bytes:
    document = {"requestMetadata": meta(operation).document(), **members}
    return json.dumps(document).encode()


def error_of(response: httpx.Response) -> tuple[int, str]:
    document = response.json()
    assert set(document) <= {"errorName", "errorMessage"}
    return response.status_code, document["errorName"]


# ==== round trips ===========================================================================
def test_metadata_encrypt_decrypt_round_trip_with_aad_and_metadata(proxy: Service) -> None:
    key_id = new_key(proxy)
    proxy.client().create_alias(AliasName="alias/xks-orders", TargetKeyId=key_id)
    aad = b"project=nile,department=marketing"

    async def calls(c: XksClient) -> tuple[Any, ...]:
        found = await c.get_key_metadata(key_id, meta("CreateKey"))
        by_alias = await c.get_key_metadata("xks-orders", meta("DescribeKey"))
        sealed = await c.encrypt(key_id, meta(), b"Hello World!", aad)  # CDIV checked
        opened = await c.decrypt("xks-orders", meta("Decrypt"), sealed, aad)
        return found, by_alias, sealed, opened

    found, by_alias, sealed, opened = run(_with(proxy, calls))
    assert (found.key_spec, found.key_usage, found.key_status) == (
        "AES_256",
        ("ENCRYPT", "DECRYPT"),
        "ENABLED",
    )
    assert by_alias == found
    assert len(sealed.ciphertext) == 12 and len(sealed.initialization_vector) == 12
    assert len(sealed.authentication_tag) == 16 and len(sealed.ciphertext_metadata) <= 20
    assert opened == b"Hello World!"


def test_integrity_value_matches_appendix_c(proxy: Service) -> None:
    key_id = new_key(proxy)
    answer = signed_post(
        proxy,
        f"{PATH}/keys/{key_id}/encrypt",
        body(
            plaintext=xks.b64(b"data"),
            encryptionAlgorithm="AES_GCM",
            additionalAuthenticatedData=xks.b64(b"aad"),
            ciphertextDataIntegrityValueAlgorithm="SHA_256",
        ),
    )
    assert answer.status_code == 200, answer.text
    got = {k: base64.b64decode(v) for k, v in answer.json().items()}
    expected = xks.integrity_value(
        b"aad",
        got["ciphertextMetadata"],
        got["initializationVector"],
        got["ciphertext"],
        got["authenticationTag"],
    )
    assert got["ciphertextDataIntegrityValue"] == expected


def test_tampering_is_invalid_ciphertext(proxy: Service) -> None:
    key_id = new_key(proxy)
    sealed = run(_with(proxy, lambda c: c.encrypt(key_id, meta(), b"secret", b"aad")))
    flipped_tag = bytes([sealed.authentication_tag[0] ^ 1]) + sealed.authentication_tag[1:]
    variants = [
        (XksCiphertext(sealed.ciphertext, sealed.initialization_vector, flipped_tag,
                       sealed.ciphertext_metadata), b"aad"),
        (sealed, b"other aad"),
        (sealed, None),
        (XksCiphertext(sealed.ciphertext, sealed.initialization_vector,
                       sealed.authentication_tag, b"KL\x00\x00\x00\x09"), b"aad"),
        (XksCiphertext(sealed.ciphertext, sealed.initialization_vector,
                       sealed.authentication_tag, None), b"aad"),
    ]  # fmt: skip
    for given, aad in variants:

        def decrypt(c: XksClient, given: Any = given, aad: Any = aad) -> Any:
            return c.decrypt(key_id, meta("Decrypt"), given, aad)

        assert failure(proxy, decrypt) == "InvalidCiphertextException"


def test_health_answers_the_fleet_document(proxy: Service) -> None:
    health = run(_with(proxy, lambda c: c.health("KmsHealthCheck", str(uuid.uuid4()))))
    assert health.fleet_size == 1 and health.proxy_vendor == "KeyLedger"
    assert health.ekm_fleet[0]["healthStatus"] == "ACTIVE"


def test_every_configured_path_is_served_and_a_star_is_any_one_prefix(proxy: Service) -> None:
    for path in (PATH, f"/store-1{PATH}", f"/store_2{PATH}"):
        health = run(_with(proxy, lambda c: c.health("KmsHealthCheck", "r-1"), path=path))
        assert health.proxy_vendor == "KeyLedger", path
    # Two prefix segments are no path this proxy serves: its host answers, not the proxy.
    answer = signed_post(proxy, f"/a/b{PATH}/health", body("KmsHealthCheck"))
    assert answer.status_code == 404 and "errorName" not in answer.json()


# ==== authentication ========================================================================
def test_botocore_signed_requests_and_both_rotation_credentials(proxy: Service) -> None:
    key_id = new_key(proxy)
    path = f"{PATH}/keys/{key_id}/metadata"
    for key, secret in ((KEY_1, SECRET_1), (KEY_2, SECRET_2)):
        answer = signed_post(proxy, path, body("CreateKey"), key=key, secret=secret)
        assert answer.status_code == 200, answer.text
        assert answer.json()["keyStatus"] == "ENABLED"
    refused = signed_post(proxy, path, body("CreateKey"), secret=SECRET_2)
    assert error_of(refused) == (401, "AuthenticationFailedException")
    assert SECRET_2 not in refused.text


def test_wrong_credentials_are_401(proxy: Service) -> None:
    key_id = new_key(proxy)
    for key, secret in ((KEY_1, SECRET_2), ("XKSUNKNOWNKEY234567AB", SECRET_1)):
        got = failure(proxy, lambda c: c.get_key_metadata(key_id, meta()), key=key, secret=secret)
        assert got == "AuthenticationFailedException"
    unsigned = httpx.post(f"{proxy.endpoint}{PATH}/health", content=body("KmsHealthCheck"))
    assert error_of(unsigned) == (401, "AuthenticationFailedException")
    # KeyLedger's own IAM credentials are not XKS credentials.
    admin = signed_post(
        proxy, f"{PATH}/health", body(), key=proxy.access_key_id, secret=proxy.secret_access_key
    )
    assert error_of(admin) == (401, "AuthenticationFailedException")


# ==== keys the principal may not use, disabled, unknown =====================================
def test_a_key_the_principal_may_not_use_is_403(proxy: Service) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": ADMIN},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
            },
        ],
    }
    key_id = new_key(proxy, Policy=json.dumps(policy), BypassPolicyLockoutSafetyCheck=True)
    assert failure(proxy, lambda c: c.encrypt(key_id, meta(), b"x")) == "AccessDeniedException"
    assert failure(proxy, lambda c: c.get_key_metadata(key_id, meta())) == ("AccessDeniedException")


def test_a_disabled_key_is_invalid_state(proxy: Service) -> None:
    key_id = new_key(proxy)
    sealed = run(_with(proxy, lambda c: c.encrypt(key_id, meta(), b"x")))
    proxy.client().disable_key(KeyId=key_id)
    found = run(_with(proxy, lambda c: c.get_key_metadata(key_id, meta())))
    assert found.key_status == "DISABLED"
    assert failure(proxy, lambda c: c.encrypt(key_id, meta(), b"x")) == "InvalidStateException"
    assert failure(proxy, lambda c: c.decrypt(key_id, meta(), sealed)) == "InvalidStateException"
    answer = signed_post(
        proxy,
        f"{PATH}/keys/{key_id}/encrypt",
        body(plaintext=xks.b64(b"x"), encryptionAlgorithm="AES_GCM"),
    )
    assert error_of(answer) == (400, "InvalidStateException")


def test_unknown_keys_are_404(proxy: Service) -> None:
    for key_id in (str(uuid.uuid4()), "no-such-alias"):
        assert failure(proxy, lambda c, k=key_id: c.encrypt(k, meta(), b"x")) == (
            "KeyNotFoundException"
        )


def test_a_non_aes_key_is_invalid_key_usage(proxy: Service) -> None:
    key_id = new_key(proxy, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    assert failure(proxy, lambda c: c.encrypt(key_id, meta(), b"x")) == ("InvalidKeyUsageException")


# ==== hostile input =========================================================================
@pytest.mark.parametrize(
    ("path", "members", "expected"),
    [
        ("/keys/{key}/encrypt", {"plaintext": "not base64!", "encryptionAlgorithm": "AES_GCM"},
         (400, "ValidationException")),
        ("/keys/{key}/encrypt", {"plaintext": xks.b64(b"x"), "encryptionAlgorithm": "RSA"},
         (400, "ValidationException")),
        ("/keys/{key}/encrypt", {"plaintext": 42, "encryptionAlgorithm": "AES_GCM"},
         (400, "ValidationException")),
        ("/keys/{key}/encrypt", TOO_LONG, (400, "ValidationException")),
        ("/keys/{key}/decrypt", {"ciphertext": xks.b64(b"x"), "encryptionAlgorithm": "AES_GCM",
                                 "initializationVector": xks.b64(b"i" * 12),
                                 "authenticationTag": xks.b64(b"t" * 40)},
         (400, "ValidationException")),
        ("/keys/{key}/decrypt", {"ciphertext": xks.b64(b"x"), "encryptionAlgorithm": "AES_GCM",
                                 "initializationVector": xks.b64(b"i" * 5),
                                 "authenticationTag": xks.b64(b"t" * 16)},
         (400, "InvalidCiphertextException")),
        ("/keys/bad%00id/metadata", {}, (400, "ValidationException")),
        ("/keys/" + "k" * 129 + "/metadata", {}, (400, "ValidationException")),
        ("/keys/{key}/sign", {}, (404, "InvalidUriPathException")),
        ("/nothing", {}, (404, "InvalidUriPathException")),
    ],
)  # fmt: skip
def test_hostile_requests_are_4xx(
    proxy: Service, path: str, members: dict[str, Any], expected: tuple[int, str]
) -> None:
    key_id = new_key(proxy)
    answer = signed_post(proxy, PATH + path.format(key=key_id), body(**members))
    assert error_of(answer) == expected


def test_malformed_bodies_and_methods(proxy: Service) -> None:
    key_id = new_key(proxy)
    path = f"{PATH}/keys/{key_id}/metadata"
    for raw in (b"", b"not json", b"[]", b'{"requestMetadata": {"kmsOperation": "x"}}',
                json.dumps({"requestMetadata": {**meta().document(), "kmsRequestId": "a\x00b"}})
                .encode()):  # fmt: skip
        assert error_of(signed_post(proxy, path, raw)) == (400, "ValidationException")
    huge = signed_post(proxy, path, b'{"x": "' + b"a" * 200_000 + b'"}')
    assert error_of(huge) == (400, "ValidationException")
    got = httpx.get(proxy.endpoint + path)
    assert got.status_code == 405 and got.headers["allow"] == "POST"


# ==== the ledger's records ==================================================================
def test_every_call_leaves_a_used_event_and_a_record(proxy: Service) -> None:
    key_id = new_key(proxy)
    ids = {name: str(uuid.uuid4()) for name in ("meta", "enc", "dec", "health", "denied")}

    async def calls(c: XksClient) -> None:
        await c.get_key_metadata(key_id, meta("DescribeKey", ids["meta"]))
        sealed = await c.encrypt(key_id, meta("Encrypt", ids["enc"]), b"payload", b"ctx")
        await c.decrypt(key_id, meta("Decrypt", ids["dec"]), sealed, b"ctx")
        await c.health("KmsHealthCheck", ids["health"])
        with pytest.raises(XksProxyError):
            await c.decrypt(key_id, meta("Decrypt", ids["denied"]), sealed, b"wrong")

    run(_with(proxy, calls))
    rest = RestClient(proxy, proxy.access_key_id, proxy.secret_access_key)
    events = rest.get(f"/v1/keys/{key_id}/events").json()["events"]
    used = [e["details"] for e in events if e["type"] == "Used"]
    assert [u["operation"] for u in used] == ["XksEncrypt", "XksDecrypt"]
    assert used[0]["request_parameters"]["requestMetadata"]["kmsRequestId"] == ids["enc"]

    trail = proxy.client("cloudtrail")

    def recorded() -> dict[str, dict[str, Any]]:
        found = records(trail, "EventSource", XKS_SOURCE)
        by_id = {}
        for record in found:
            given = (record.get("requestParameters") or {}).get("requestMetadata") or {}
            by_id[given.get("kmsRequestId")] = record
        return by_id

    assert eventually(lambda: set(ids.values()) <= set(recorded()), timeout=15)
    by_id = recorded()
    names = {label: by_id[ids[label]]["eventName"] for label in ids}
    assert names == {
        "meta": "GetKeyMetadata",
        "enc": "Encrypt",
        "dec": "Decrypt",
        "health": "GetHealthStatus",
        "denied": "Decrypt",
    }
    assert by_id[ids["denied"]]["errorCode"] == "InvalidCiphertextException"
    assert by_id[ids["enc"]]["userIdentity"]["arn"] == ADMIN
    assert by_id[ids["enc"]]["requestParameters"]["externalKeyId"] == key_id
    assert "plaintext" not in json.dumps(by_id[ids["enc"]], default=str)


# ==== two KeyLedgers ========================================================================
def test_one_keyledger_keeps_its_external_keys_in_another(proxy: Service, tmp_path: Path) -> None:
    """KeyLedger A (its own settings, its own client) wraps a data key of its KMS call with
    an external key held by KeyLedger B; A's ledger records its call, B's the XKS calls
    carrying A's request id."""
    external_key = new_key(proxy)  # B: the proxy
    with running_service(tmp_path) as first:  # A
        kms = first.client()
        local_key = kms.create_key(Description="A's key")["KeyMetadata"]["Arn"]
        answer = kms.generate_data_key(KeyId=local_key, KeySpec="AES_256")
        kms_request_id = answer["ResponseMetadata"]["RequestId"]
        settings = first.runtime.settings
        metadata = RequestMetadata(ADMIN, "GenerateDataKey", kms_request_id, local_key)

        async def double_encrypt() -> bytes:
            async with XksClient(
                proxy.endpoint,
                PATH,
                XksCredential(KEY_1, SECRET_1),
                REGION,
                timeout=max(settings.xks_proxy_timeout_seconds, 5.0),
                max_connections=settings.xks_proxy_max_connections,
            ) as c:
                sealed = await c.encrypt(external_key, metadata, answer["Plaintext"], b"A")
                return await c.decrypt(external_key, metadata, sealed, b"A")

        assert run(double_encrypt()) == answer["Plaintext"]
        a_trail = first.client("cloudtrail")
        assert eventually(
            lambda: any(
                r.get("requestID") == kms_request_id
                for r in records(a_trail, "EventName", "GenerateDataKey")
            ),
            timeout=15,
        )
    b_trail = proxy.client("cloudtrail")

    def b_records() -> list[dict[str, Any]]:
        return [
            r
            for r in records(b_trail, "EventSource", XKS_SOURCE)
            if (r.get("requestParameters") or {}).get("requestMetadata", {}).get("kmsRequestId")
            == kms_request_id
        ]

    assert eventually(lambda: len(b_records()) == 2, timeout=15)
    assert sorted(r["eventName"] for r in b_records()) == ["Decrypt", "Encrypt"]


def test_client_defaults_and_endpoint_rules() -> None:
    c = XksClient("https://xks.example.com", PATH, XksCredential("AKID", "s"), REGION)
    assert c.timeout == 0.25 and "s'" not in repr(c.credential)
    run(c.aclose())
    for bad in ("http://xks.example.com", "ftp://127.0.0.1", "https://"):
        with pytest.raises(ValueError):
            XksClient(bad, PATH, XksCredential("AKID", "s"), REGION)
    with pytest.raises(ValueError):
        XksClient("http://127.0.0.1:1", "/wrong", XksCredential("AKID", "s"), REGION)
