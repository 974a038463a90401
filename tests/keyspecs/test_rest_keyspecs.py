"""The REST equivalents under /v1 of the key-spec operations, through signed HTTP."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.api.test_rest_api import RestClient
from tests.conftest import REGION, Service
from tests.keyspecs.conftest import public_der_of, verify_locally, wrap_material
from tests.support.signing import sign_request


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class WallClockRestClient(RestClient):
    """Signs with the wall clock: SigV4's 5-minute window is checked against real time,
    while these tests move the service's clock for expiry."""

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        url = self.service.endpoint + path
        content = b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content else {}
        headers = sign_request(
            method,
            url,
            headers,
            content,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=REGION,
            service="kms",
            now=datetime.now(UTC),
        )
        return self.http.request(method, url, content=content, headers=headers)


@pytest.fixture
def rest(service: Service) -> RestClient:
    return WallClockRestClient(service, service.access_key_id, service.secret_access_key)


def test_rest_signs_and_verifies_and_gives_the_public_key(rest):
    key = rest.create_key(key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY")
    assert key["signing_algorithms"] == ["ECDSA_SHA_256"]
    key_id = key["key_id"]

    public = rest.get(f"/v1/keys/{key_id}/public-key").json()
    signed = rest.post(
        f"/v1/keys/{key_id}/sign",
        {"message": b64(b"hello"), "signing_algorithm": "ECDSA_SHA_256"},
    ).json()
    verified = rest.post(
        f"/v1/keys/{key_id}/verify",
        {
            "message": b64(b"hello"),
            "signing_algorithm": "ECDSA_SHA_256",
            "signature": signed["signature"],
        },
    )

    verify_locally(
        unb64(public["public_key"]), "ECDSA_SHA_256", b"hello", unb64(signed["signature"])
    )
    assert verified.status_code == 200 and verified.json()["signature_valid"] is True


def test_rest_answers_a_bad_signature_with_the_aws_error(rest):
    key_id = rest.create_key(key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY")["key_id"]

    response = rest.post(
        f"/v1/keys/{key_id}/verify",
        {
            "message": b64(b"hello"),
            "signing_algorithm": "ECDSA_SHA_256",
            "signature": b64(b"\x30\x00"),
        },
    )

    assert response.status_code == 400
    assert response.json()["__type"] == "KMSInvalidSignatureException"


def test_rest_generates_and_verifies_macs(rest):
    key_id = rest.create_key(key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")["key_id"]

    mac = rest.post(
        f"/v1/keys/{key_id}/generate-mac", {"message": b64(b"m"), "mac_algorithm": "HMAC_SHA_256"}
    ).json()["mac"]
    good = rest.post(
        f"/v1/keys/{key_id}/verify-mac",
        {"message": b64(b"m"), "mac_algorithm": "HMAC_SHA_256", "mac": mac},
    )
    bad = rest.post(
        f"/v1/keys/{key_id}/verify-mac",
        {"message": b64(b"x"), "mac_algorithm": "HMAC_SHA_256", "mac": mac},
    )

    assert good.status_code == 200 and good.json()["mac_valid"] is True
    assert (bad.status_code, bad.json()["__type"]) == (400, "KMSInvalidMacException")


def test_rest_derives_a_shared_secret(rest):
    key_id = rest.create_key(key_spec="ECC_NIST_P384", key_usage="KEY_AGREEMENT")["key_id"]
    peer = ec.generate_private_key(ec.SECP384R1())
    public = serialization.load_der_public_key(
        unb64(rest.get(f"/v1/keys/{key_id}/public-key").json()["public_key"])
    )

    answer = rest.post(
        f"/v1/keys/{key_id}/shared-secret", {"public_key": b64(public_der_of(peer))}
    ).json()

    assert unb64(answer["shared_secret"]) == peer.exchange(ec.ECDH(), public)


def test_rest_encapsulates_and_decapsulates(rest):
    key_id = rest.create_key(key_spec="ML_KEM_768", key_usage="ENCAPSULATE_DECAPSULATE")["key_id"]

    sealed = rest.post(f"/v1/keys/{key_id}/encapsulate").json()
    opened = rest.post(
        f"/v1/keys/{key_id}/decapsulate", {"ciphertext": sealed["ciphertext"]}
    ).json()

    assert opened["shared_secret"] == sealed["shared_secret"]


def test_rest_generates_data_key_pairs(rest):
    key_id = rest.create_key()["key_id"]

    pair = rest.post(f"/v1/keys/{key_id}/data-key-pairs", {"key_pair_spec": "ECC_NIST_P521"}).json()

    private_key = serialization.load_der_private_key(unb64(pair["private_key_plaintext"]), None)
    assert public_der_of(private_key) == unb64(pair["public_key"])


def test_rest_encrypts_with_rsa(rest):
    key_id = rest.create_key(key_spec="RSA_2048", key_usage="ENCRYPT_DECRYPT")["key_id"]

    sealed = rest.encrypt(key_id, b"rsa", encryption_algorithm="RSAES_OAEP_SHA_256").json()
    opened = rest.post(
        "/v1/decrypt",
        {
            "ciphertext": sealed["ciphertext"],
            "key_id": key_id,
            "encryption_algorithm": "RSAES_OAEP_SHA_256",
        },
    ).json()

    assert unb64(opened["plaintext"]) == b"rsa"


def test_rest_imports_expires_and_deletes_material(service, rest):
    key = rest.create_key(key_spec="HMAC_512", key_usage="GENERATE_VERIFY_MAC", origin="EXTERNAL")
    key_id = key["key_id"]
    assert key["key_state"] == "PendingImport"
    material = os.urandom(64)
    parameters = rest.post(
        f"/v1/keys/{key_id}/import-parameters",
        {"wrapping_algorithm": "RSAES_OAEP_SHA_256", "wrapping_key_spec": "RSA_2048"},
    ).json()
    valid_to = service.runtime.clock.now() + timedelta(days=1)

    imported = rest.put(
        f"/v1/keys/{key_id}/material",
        {
            "import_token": parameters["import_token"],
            "encrypted_key_material": b64(
                wrap_material(unb64(parameters["public_key"]), "RSAES_OAEP_SHA_256", material)
            ),
            "valid_to": valid_to.isoformat(),
        },
    )

    assert imported.status_code == 200, imported.text
    described = rest.get(f"/v1/keys/{key_id}").json()
    assert described["key_state"] == "Enabled"
    assert described["expiration_model"] == "KEY_MATERIAL_EXPIRES"
    mac = rest.post(
        f"/v1/keys/{key_id}/generate-mac", {"message": b64(b"m"), "mac_algorithm": "HMAC_SHA_512"}
    ).json()["mac"]
    local = hmac.HMAC(material, hashes.SHA512())
    local.update(b"m")
    assert unb64(mac) == local.finalize()

    service.runtime.clock.advance(timedelta(days=2))
    service.runtime.service.jobs.run_due_jobs()
    assert rest.get(f"/v1/keys/{key_id}").json()["key_state"] == "PendingImport"

    deleted = rest.delete(f"/v1/keys/{key_id}/material")
    assert deleted.status_code == 200
    assert deleted.json()["material_id"] == imported.json()["material_id"]
    events = [e["type"] for e in rest.get(f"/v1/keys/{key_id}/events").json()["events"]]
    assert events == [
        "Created",
        "ImportParametersIssued",
        "MaterialImported",
        "Used",
        "MaterialExpired",
    ]
