"""The REST API under /v1, through real HTTP with SigV4-signed requests."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ACCOUNT_ID, REGION, Service
from tests.support.signing import sign_request

OTHER_ACCOUNT_ID = "444455556666"
OTHER_ACCESS_KEY_ID = "AKLGRESTOTHER0000001"
OTHER_SECRET = "other-secret-" + "y" * 27


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RestClient:
    """Signs each request as an AWS SDK would (SigV4, service kms) and sends it over HTTP."""

    def __init__(self, service: Service, access_key_id: str, secret_access_key: str) -> None:
        self.service = service
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.http = httpx.Client(timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        sign: bool = True,
        sent_content: bytes | None = None,
    ) -> httpx.Response:
        url = str(httpx.URL(self.service.endpoint + path, params=params))
        if content is None:
            content = b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content else {}
        if sign:
            headers = sign_request(
                method,
                url,
                headers,
                content,
                access_key_id=self.access_key_id,
                secret_access_key=self.secret_access_key,
                region=REGION,
                service="kms",
                # The time the server checks signatures against: the wall clock, never the
                # service clock other tests move (rotation, deletion windows).
                now=datetime.now(UTC),
            )
        sent = content if sent_content is None else sent_content
        return self.http.request(method, url, content=sent, headers=headers)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        response = self.post("/v1/keys", fields)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def encrypt(self, key_id: str, plaintext: bytes, **fields: Any) -> httpx.Response:
        return self.post(f"/v1/keys/{key_id}/encrypt", {"plaintext": b64(plaintext), **fields})


@pytest.fixture
def rest(service: Service) -> Iterator[RestClient]:
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()


@pytest.fixture
def key(rest: RestClient) -> dict[str, Any]:
    return rest.create_key(description="rest test key")


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"__type", "message"}
    assert body["__type"] == error_type, body
    return dict(body)


def new_alias() -> str:
    return f"alias/rest-{uuid.uuid4().hex[:12]}"


# --- operations endpoints ----------------------------------------------------------------
def test_healthz_answers_ok_without_authentication(service: Service) -> None:
    response = httpx.get(f"{service.endpoint}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ready_when_the_event_store_answers(service: Service) -> None:
    response = httpx.get(f"{service.endpoint}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_openapi_document_describes_the_v1_resources_without_authentication(
    service: Service,
) -> None:
    response = httpx.get(f"{service.endpoint}/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/v1/keys", "/v1/keys/{key_id}", "/v1/keys/{key_id}/encrypt", "/v1/decrypt"):
        assert path in paths
    assert "KeyPublic" in response.json()["components"]["schemas"]
    assert '"422"' not in response.text  # invalid input is answered 400, as documented


def test_docs_page_is_served_without_authentication(service: Service) -> None:
    response = httpx.get(f"{service.endpoint}/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


# --- authentication ------------------------------------------------------------------------
def test_unsigned_request_fails_with_401(rest: RestClient) -> None:
    response = rest.get("/v1/keys", sign=False)
    assert_error(response, 401, "MissingAuthenticationTokenException")


def test_request_signed_with_a_wrong_secret_fails_with_401(service: Service) -> None:
    impostor = RestClient(service, service.access_key_id, "not-the-secret-" + "z" * 25)
    assert_error(impostor.get("/v1/keys"), 401, "InvalidSignatureException")


def test_request_signed_with_an_unknown_access_key_fails_with_401(service: Service) -> None:
    stranger = RestClient(service, "AKLGNOBODY0000000001", "whatever-secret")
    assert_error(stranger.get("/v1/keys"), 401, "UnrecognizedClientException")


def test_body_changed_after_signing_fails_with_401(rest: RestClient) -> None:
    signed = json.dumps({"description": "signed"}).encode()
    tampered = json.dumps({"description": "tampered"}).encode()
    response = rest.post("/v1/keys", content=signed, sent_content=tampered)
    assert_error(response, 401, "InvalidSignatureException")


def test_unsigned_request_with_invalid_json_fails_with_401_before_any_parsing(
    rest: RestClient,
) -> None:
    response = rest.post("/v1/keys", content=b"{not json", sign=False)
    assert_error(response, 401, "MissingAuthenticationTokenException")


def test_unsigned_request_to_an_unknown_path_fails_with_401(rest: RestClient) -> None:
    assert_error(
        rest.get("/v1/nothing-here", sign=False), 401, "MissingAuthenticationTokenException"
    )


def test_answers_carry_the_request_id(rest: RestClient) -> None:
    response = rest.get("/v1/keys")
    assert response.status_code == 200
    uuid.UUID(response.headers["x-amzn-requestid"])


# --- key lifecycle ---------------------------------------------------------------------------
def test_key_lifecycle_from_creation_to_cancelled_deletion(rest: RestClient) -> None:
    created = rest.create_key(description="lifecycle", tags={"team": "payments"})
    key_id = created["key_id"]
    assert created["key_state"] == "Enabled"
    assert created["enabled"] is True
    assert created["key_spec"] == "SYMMETRIC_DEFAULT"
    assert created["key_usage"] == "ENCRYPT_DECRYPT"
    assert created["arn"].endswith(f":key/{key_id}")

    assert rest.patch(f"/v1/keys/{key_id}", {"description": "renamed"}).status_code == 204
    assert rest.get(f"/v1/keys/{key_id}").json()["description"] == "renamed"

    assert rest.post(f"/v1/keys/{key_id}/disable").status_code == 204
    assert rest.get(f"/v1/keys/{key_id}").json()["key_state"] == "Disabled"
    assert rest.post(f"/v1/keys/{key_id}/enable").status_code == 204
    assert rest.get(f"/v1/keys/{key_id}").json()["key_state"] == "Enabled"

    scheduled = rest.post(f"/v1/keys/{key_id}/deletion", {"pending_window_days": 7})
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["key_state"] == "PendingDeletion"
    assert scheduled.json()["pending_window_days"] == 7
    described = rest.get(f"/v1/keys/{key_id}").json()
    assert described["key_state"] == "PendingDeletion"
    assert described["deletion_date"] is not None

    cancelled = rest.delete(f"/v1/keys/{key_id}/deletion")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"key_arn": created["arn"]}
    assert rest.get(f"/v1/keys/{key_id}").json()["key_state"] == "Disabled"


def test_schedule_deletion_without_a_body_waits_30_days(rest: RestClient, key: dict) -> None:
    response = rest.post(f"/v1/keys/{key['key_id']}/deletion")
    assert response.status_code == 200, response.text
    assert response.json()["pending_window_days"] == 30


def test_schedule_deletion_outside_7_to_30_days_fails_with_400(rest: RestClient, key: dict) -> None:
    response = rest.post(f"/v1/keys/{key['key_id']}/deletion", {"pending_window_days": 3})
    assert_error(response, 400, "ValidationException")


def test_cancel_deletion_of_a_key_not_pending_deletion_fails_with_409(
    rest: RestClient, key: dict
) -> None:
    assert_error(rest.delete(f"/v1/keys/{key['key_id']}/deletion"), 409, "KMSInvalidStateException")


def test_list_keys_pages_through_every_key(rest: RestClient) -> None:
    created = {rest.create_key()["key_id"] for _ in range(3)}
    seen: list[str] = []
    marker = None
    while True:
        params = {"limit": 2, **({"marker": marker} if marker else {})}
        page = rest.get("/v1/keys", params=params).json()
        assert len(page["keys"]) <= 2
        seen += [entry["key_id"] for entry in page["keys"]]
        if not page["truncated"]:
            assert page["next_marker"] is None
            break
        marker = page["next_marker"]
    assert created <= set(seen)
    assert len(seen) == len(set(seen))


def test_describe_key_accepts_key_arn_and_alias_name(rest: RestClient, key: dict) -> None:
    alias = new_alias()
    assert (
        rest.post("/v1/aliases", {"alias_name": alias, "target_key_id": key["key_id"]}).status_code
        == 204
    )
    for reference in (key["arn"], alias):
        response = rest.get(f"/v1/keys/{reference}")
        assert response.status_code == 200, response.text
        assert response.json()["key_id"] == key["key_id"]


def test_describe_unknown_key_fails_with_404(rest: RestClient) -> None:
    assert_error(rest.get(f"/v1/keys/{uuid.uuid4()}"), 404, "NotFoundException")


def test_describe_malformed_key_id_fails_with_404(rest: RestClient) -> None:
    assert_error(rest.get("/v1/keys/not-a-key"), 404, "NotFoundException")


def test_key_created_over_rest_is_visible_to_the_aws_protocol(rest: RestClient, kms: Any) -> None:
    key_id = rest.create_key(description="both protocols")["key_id"]
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["Description"] == "both protocols"


# --- cryptography --------------------------------------------------------------------------
def test_encrypt_then_decrypt_round_trips_the_plaintext(rest: RestClient, key: dict) -> None:
    context = {"order": "42"}
    encrypted = rest.encrypt(key["key_id"], b"attack at dawn", encryption_context=context)
    assert encrypted.status_code == 200, encrypted.text
    assert encrypted.json()["key_arn"] == key["arn"]
    assert encrypted.json()["encryption_algorithm"] == "SYMMETRIC_DEFAULT"
    ciphertext = encrypted.json()["ciphertext"]
    assert b"attack at dawn" not in base64.b64decode(ciphertext)

    decrypted = rest.post("/v1/decrypt", {"ciphertext": ciphertext, "encryption_context": context})
    assert decrypted.status_code == 200, decrypted.text
    assert base64.b64decode(decrypted.json()["plaintext"]) == b"attack at dawn"
    assert decrypted.json()["key_arn"] == key["arn"]
    assert decrypted.json()["material_id"] == key["current_material_id"]


def test_decrypt_fails_with_400_when_encryption_context_differs(
    rest: RestClient, key: dict
) -> None:
    ciphertext = rest.encrypt(key["key_id"], b"x", encryption_context={"a": "1"}).json()[
        "ciphertext"
    ]
    response = rest.post(
        "/v1/decrypt", {"ciphertext": ciphertext, "encryption_context": {"a": "2"}}
    )
    assert_error(response, 400, "InvalidCiphertextException")


def test_decrypt_fails_with_400_when_key_id_names_another_key(rest: RestClient, key: dict) -> None:
    other = rest.create_key()
    ciphertext = rest.encrypt(key["key_id"], b"x").json()["ciphertext"]
    response = rest.post("/v1/decrypt", {"ciphertext": ciphertext, "key_id": other["key_id"]})
    assert_error(response, 400, "IncorrectKeyException")


def test_decrypt_of_garbage_fails_with_400_invalid_ciphertext(rest: RestClient) -> None:
    response = rest.post("/v1/decrypt", {"ciphertext": b64(b"\x01" * 80)})
    assert_error(response, 400, "InvalidCiphertextException")


def test_encrypt_fails_with_409_when_key_is_disabled(rest: RestClient, key: dict) -> None:
    rest.post(f"/v1/keys/{key['key_id']}/disable")
    assert_error(rest.encrypt(key["key_id"], b"x"), 409, "DisabledException")


def test_encrypt_fails_with_409_when_key_is_pending_deletion(rest: RestClient, key: dict) -> None:
    rest.post(f"/v1/keys/{key['key_id']}/deletion", {"pending_window_days": 7})
    assert_error(rest.encrypt(key["key_id"], b"x"), 409, "KMSInvalidStateException")


def test_encrypt_fails_with_404_for_unknown_key(rest: RestClient) -> None:
    assert_error(rest.encrypt(str(uuid.uuid4()), b"x"), 404, "NotFoundException")


def test_encrypt_through_an_alias_uses_its_target_key(rest: RestClient, key: dict) -> None:
    alias = new_alias()
    rest.post("/v1/aliases", {"alias_name": alias, "target_key_id": key["key_id"]})
    response = rest.encrypt(alias, b"via alias")
    assert response.status_code == 200, response.text
    assert response.json()["key_arn"] == key["arn"]


def test_encrypt_dry_run_fails_with_412_dry_run_operation(rest: RestClient, key: dict) -> None:
    response = rest.encrypt(key["key_id"], b"x", dry_run=True)
    assert_error(response, 412, "DryRunOperationException")


def test_revoking_a_grant_as_a_dry_run_fails_with_412_and_leaves_it(
    rest: RestClient, key: dict
) -> None:
    created = rest.post(
        "/v1/grants",
        {
            "key_id": key["key_id"],
            "grantee_principal": f"arn:aws:iam::{ACCOUNT_ID}:root",
            "operations": ["Encrypt"],
        },
    )
    assert created.status_code == 201, created.text
    grant_id = created.json()["grant_id"]

    response = rest.delete(
        f"/v1/grants/{grant_id}", params={"key_id": key["key_id"], "dry_run": "true"}
    )

    assert_error(response, 412, "DryRunOperationException")
    listed = rest.get("/v1/grants", params={"key_id": key["key_id"]}).json()["grants"]
    assert [g["grant_id"] for g in listed] == [grant_id]


def test_data_key_plaintext_is_what_its_ciphertext_decrypts_to(rest: RestClient, key: dict) -> None:
    response = rest.post(f"/v1/keys/{key['key_id']}/data-keys", {"key_spec": "AES_256"})
    assert response.status_code == 200, response.text
    data_key = response.json()
    plaintext = base64.b64decode(data_key["plaintext"])
    assert len(plaintext) == 32
    decrypted = rest.post("/v1/decrypt", {"ciphertext": data_key["ciphertext"]}).json()
    assert base64.b64decode(decrypted["plaintext"]) == plaintext


def test_data_key_of_a_number_of_bytes_without_plaintext(rest: RestClient, key: dict) -> None:
    response = rest.post(
        f"/v1/keys/{key['key_id']}/data-keys", {"number_of_bytes": 24, "with_plaintext": False}
    )
    assert response.status_code == 200, response.text
    assert response.json()["plaintext"] is None
    decrypted = rest.post("/v1/decrypt", {"ciphertext": response.json()["ciphertext"]}).json()
    assert len(base64.b64decode(decrypted["plaintext"])) == 24


def test_data_key_needs_exactly_one_of_number_of_bytes_and_key_spec(
    rest: RestClient, key: dict
) -> None:
    path = f"/v1/keys/{key['key_id']}/data-keys"
    assert_error(rest.post(path, {}), 400, "ValidationException")
    both = {"number_of_bytes": 32, "key_spec": "AES_256"}
    assert_error(rest.post(path, both), 400, "ValidationException")


def test_re_encrypt_moves_a_ciphertext_to_another_key(rest: RestClient, key: dict) -> None:
    destination = rest.create_key()
    ciphertext = rest.encrypt(key["key_id"], b"moving", encryption_context={"c": "1"}).json()[
        "ciphertext"
    ]
    response = rest.post(
        "/v1/re-encrypt",
        {
            "ciphertext": ciphertext,
            "destination_key_id": destination["key_id"],
            "source_encryption_context": {"c": "1"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["source_key_arn"] == key["arn"]
    assert response.json()["key_arn"] == destination["arn"]
    decrypted = rest.post("/v1/decrypt", {"ciphertext": response.json()["ciphertext"]}).json()
    assert decrypted["key_arn"] == destination["arn"]
    assert base64.b64decode(decrypted["plaintext"]) == b"moving"


def test_random_returns_the_requested_number_of_bytes(rest: RestClient) -> None:
    response = rest.post("/v1/random", {"number_of_bytes": 17})
    assert response.status_code == 200, response.text
    assert len(base64.b64decode(response.json()["random_bytes"])) == 17


def test_random_of_more_than_1024_bytes_fails_with_400(rest: RestClient) -> None:
    assert_error(rest.post("/v1/random", {"number_of_bytes": 1025}), 400, "ValidationException")


# --- aliases -------------------------------------------------------------------------------
def test_alias_can_be_created_listed_retargeted_and_deleted(rest: RestClient, key: dict) -> None:
    other = rest.create_key()
    alias = new_alias()
    created = rest.post("/v1/aliases", {"alias_name": alias, "target_key_id": key["key_id"]})
    assert created.status_code == 204, created.text

    listed = rest.get("/v1/aliases", params={"key_id": key["key_id"]}).json()["aliases"]
    assert [a["alias_name"] for a in listed] == [alias]
    assert listed[0]["target_key_id"] == key["key_id"]
    assert listed[0]["alias_arn"].endswith(f":{alias}")

    assert rest.put(f"/v1/aliases/{alias}", {"target_key_id": other["key_id"]}).status_code == 204
    assert rest.get(f"/v1/keys/{alias}").json()["key_id"] == other["key_id"]

    assert rest.delete(f"/v1/aliases/{alias}").status_code == 204
    assert_error(rest.get(f"/v1/keys/{alias}"), 404, "NotFoundException")


def test_creating_an_alias_that_exists_fails_with_409(rest: RestClient, key: dict) -> None:
    alias = new_alias()
    body = {"alias_name": alias, "target_key_id": key["key_id"]}
    rest.post("/v1/aliases", body)
    assert_error(rest.post("/v1/aliases", body), 409, "AlreadyExistsException")


def test_deleting_an_unknown_alias_fails_with_404(rest: RestClient) -> None:
    assert_error(rest.delete(f"/v1/aliases/{new_alias()}"), 404, "NotFoundException")


def test_alias_names_reserved_for_aws_fail_with_400(rest: RestClient, key: dict) -> None:
    body = {"alias_name": "alias/aws/mine", "target_key_id": key["key_id"]}
    assert_error(rest.post("/v1/aliases", body), 400, "InvalidAliasNameException")


# --- tags and policy ------------------------------------------------------------------------
def test_tags_can_be_added_listed_and_removed(rest: RestClient, key: dict) -> None:
    path = f"/v1/keys/{key['key_id']}/tags"
    tags = {"team": "payments", "env": "prod", "cost/center": "42"}
    assert rest.put(path, {"tags": tags}).status_code == 204
    assert rest.get(path).json()["tags"] == tags

    assert rest.delete(f"{path}/env").status_code == 204
    assert rest.delete(path, params={"tag_key": "cost/center"}).status_code == 204
    assert rest.get(path).json()["tags"] == {"team": "payments"}


def test_tags_given_at_creation_are_listed(rest: RestClient) -> None:
    key_id = rest.create_key(tags={"owner": "alice"})["key_id"]
    assert rest.get(f"/v1/keys/{key_id}/tags").json()["tags"] == {"owner": "alice"}


def test_reserved_tag_keys_fail_with_400_tag_exception(rest: RestClient, key: dict) -> None:
    response = rest.put(f"/v1/keys/{key['key_id']}/tags", {"tags": {"aws:mine": "x"}})
    assert_error(response, 400, "TagException")


def test_key_policy_can_be_read_and_replaced(rest: RestClient, key: dict) -> None:
    path = f"/v1/keys/{key['key_id']}/policy"
    current = rest.get(path).json()
    assert current["policy_name"] == "default"
    assert json.loads(current["policy"])["Statement"]

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Root",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    assert rest.put(path, {"policy": json.dumps(policy)}).status_code == 204
    assert json.loads(rest.get(path).json()["policy"]) == policy


def test_malformed_policy_fails_with_400(rest: RestClient, key: dict) -> None:
    response = rest.put(f"/v1/keys/{key['key_id']}/policy", {"policy": "not json"})
    assert_error(response, 400, "MalformedPolicyDocumentException")


# --- rotation --------------------------------------------------------------------------------
def test_rotation_can_be_enabled_with_a_period_and_disabled(rest: RestClient, key: dict) -> None:
    path = f"/v1/keys/{key['key_id']}/rotation"
    assert rest.get(path).json()["rotation_enabled"] is False

    assert rest.put(path, {"rotation_period_days": 90}).status_code == 204
    status = rest.get(path).json()
    assert status["rotation_enabled"] is True
    assert status["rotation_period_days"] == 90
    assert status["next_rotation_date"] is not None

    assert rest.delete(path).status_code == 204
    assert rest.get(path).json()["rotation_enabled"] is False


def test_rotation_period_outside_90_to_2560_days_fails_with_400(
    rest: RestClient, key: dict
) -> None:
    response = rest.put(f"/v1/keys/{key['key_id']}/rotation", {"rotation_period_days": 30})
    assert_error(response, 400, "ValidationException")


def test_rotation_on_demand_keeps_earlier_ciphertexts_decryptable(
    rest: RestClient, key: dict
) -> None:
    before = rest.encrypt(key["key_id"], b"old").json()
    rotated = rest.post(f"/v1/keys/{key['key_id']}/rotations")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json() == {"key_id": key["key_id"]}

    rotations = rest.get(f"/v1/keys/{key['key_id']}/rotations").json()["rotations"]
    assert [r["rotation_type"] for r in rotations] == ["ON_DEMAND"]
    after = rest.encrypt(key["key_id"], b"new").json()
    assert after["material_id"] == rotations[0]["material_id"] != before["material_id"]

    decrypted = rest.post("/v1/decrypt", {"ciphertext": before["ciphertext"]}).json()
    assert base64.b64decode(decrypted["plaintext"]) == b"old"
    assert decrypted["material_id"] == before["material_id"]


# --- history ---------------------------------------------------------------------------------
def test_event_history_lists_the_keys_events_in_order_with_their_actor(
    rest: RestClient, key: dict
) -> None:
    rest.post(f"/v1/keys/{key['key_id']}/disable")
    rest.post(f"/v1/keys/{key['key_id']}/enable")
    rest.encrypt(key["key_id"], b"secret plaintext", encryption_context={"purpose": "audit"})

    response = rest.get(f"/v1/keys/{key['key_id']}/events")
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["type"] for e in events] == ["Created", "Disabled", "Enabled", "Used"]
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert all(e["actor"]["principal_arn"].endswith(":user/admin") for e in events)
    assert events[0]["details"]["material"] == {
        "version": 1,
        "material_id": key["current_material_id"],
    }
    used = events[3]["details"]
    assert used["operation"] == "Encrypt"
    assert used["encryption_context"] == {"purpose": "audit"}
    assert response.json()["truncated"] is False


def test_event_history_never_shows_key_material(
    service: Service, rest: RestClient, key: dict
) -> None:
    rest.post(f"/v1/keys/{key['key_id']}/rotations")
    rest.encrypt(key["key_id"], b"never shown")
    text = rest.get(f"/v1/keys/{key['key_id']}/events").text

    stored = list(service.runtime.ledger.events.get(uuid.UUID(key["key_id"])))
    wrapped = [e.material.wrapped for e in stored if getattr(e, "material", None)]
    assert len(wrapped) == 2  # Created and Rotated
    for material in wrapped:
        assert b64(material) not in text
    assert "wrapped" not in text
    assert b64(b"never shown") not in text


def test_event_history_pages_with_limit_and_after_version(rest: RestClient, key: dict) -> None:
    for _ in range(3):
        rest.encrypt(key["key_id"], b"x")
    path = f"/v1/keys/{key['key_id']}/events"
    first = rest.get(path, params={"limit": 2}).json()
    assert [e["version"] for e in first["events"]] == [1, 2]
    assert first["truncated"] is True
    rest_of_it = rest.get(path, params={"after_version": first["next_after_version"]}).json()
    assert [e["version"] for e in rest_of_it["events"]] == [3, 4]
    assert rest_of_it["truncated"] is False
    assert rest_of_it["next_after_version"] is None


# --- errors ----------------------------------------------------------------------------------
def test_invalid_json_fails_with_400_serialization_exception(rest: RestClient) -> None:
    assert_error(rest.post("/v1/keys", content=b"{not json"), 400, "SerializationException")


def test_member_of_the_wrong_type_fails_with_400(rest: RestClient) -> None:
    body = assert_error(
        rest.post("/v1/random", {"number_of_bytes": "32"}), 400, "ValidationException"
    )
    assert "number_of_bytes" in body["message"]


def test_string_with_a_lone_surrogate_fails_with_400_serialization_exception(
    rest: RestClient, key: dict
) -> None:
    body = b'{"plaintext": "eA==", "encryption_context": {"a": "\\ud800"}}'
    response = rest.post(f"/v1/keys/{key['key_id']}/encrypt", content=body)
    assert_error(response, 400, "SerializationException")


def _policy_with_lone_surrogate() -> str:
    """A key policy whose action spells a lone surrogate with a JSON escape ("\\ud800"):
    the body's parser reads the document as plain text, the policy parser as a surrogate."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "lone \ud800",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                    "Action": ["kms:*", "kms:\ud800"],
                    "Resource": "*",
                }
            ],
        }
    )


def test_key_policy_with_a_lone_surrogate_fails_with_400_malformed_policy_document(
    rest: RestClient, key: dict
) -> None:
    put = rest.put(f"/v1/keys/{key['key_id']}/policy", {"policy": _policy_with_lone_surrogate()})
    created = rest.post("/v1/keys", {"policy": _policy_with_lone_surrogate()})

    for response in (put, created):
        assert_error(response, 400, "MalformedPolicyDocumentException")
        assert response.headers.get("x-amzn-requestid")


def test_identity_policy_with_a_lone_surrogate_fails_with_400_malformed_policy_document(
    rest: RestClient,
) -> None:
    name = f"surrogate{uuid.uuid4().hex[:8]}"
    created = rest.post("/v1/iam/principals", {"account_id": "111122223333", "name": name})
    assert created.status_code == 201, created.text
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:\udfff", "Resource": "*"}],
        }
    )

    response = rest.put(
        f"/v1/iam/principals/arn:aws:iam::111122223333:user/{name}/policies/Kms",
        {"policy": policy},
    )

    assert_error(response, 400, "MalformedPolicyDocumentException")


def test_body_sent_without_json_content_type_fails_with_400(service: Service) -> None:
    url = f"{service.endpoint}/v1/keys"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"{}",
        access_key_id=service.access_key_id,
        secret_access_key=service.secret_access_key,
        region=REGION,
        service="kms",
        now=datetime.now(UTC),
    )
    response = httpx.post(url, content=b"{}", headers=headers)
    body = assert_error(response, 400, "ValidationException")
    assert "application/json" in body["message"]


def test_commands_without_a_result_answer_204_with_no_body(rest: RestClient, key: dict) -> None:
    response = rest.post(f"/v1/keys/{key['key_id']}/disable")
    assert response.status_code == 204
    assert response.content == b""


def test_unknown_member_fails_with_400(rest: RestClient) -> None:
    response = rest.post("/v1/keys", {"descripton": "typo"})
    assert_error(response, 400, "ValidationException")


def test_body_that_is_not_an_object_fails_with_400(rest: RestClient) -> None:
    assert_error(rest.post("/v1/keys", ["a", "list"]), 400, "ValidationException")


def test_missing_body_fails_with_400(rest: RestClient, key: dict) -> None:
    assert_error(rest.post(f"/v1/keys/{key['key_id']}/encrypt"), 400, "ValidationException")


def test_plaintext_that_is_not_base64_fails_with_400(rest: RestClient, key: dict) -> None:
    response = rest.post(f"/v1/keys/{key['key_id']}/encrypt", {"plaintext": "not base64!"})
    assert_error(response, 400, "ValidationException")


def test_validation_errors_never_echo_the_plaintext(rest: RestClient, key: dict) -> None:
    plaintext = b"top secret " * 400  # longer than 4096 bytes
    body = assert_error(rest.encrypt(key["key_id"], plaintext), 400, "ValidationException")
    assert "top secret" not in body["message"]
    assert b64(plaintext)[:40] not in body["message"]


def test_query_parameter_out_of_range_fails_with_400(rest: RestClient) -> None:
    assert_error(rest.get("/v1/keys", params={"limit": 0}), 400, "ValidationException")


def test_marker_not_issued_by_the_service_fails_with_400(rest: RestClient) -> None:
    response = rest.get("/v1/keys", params={"marker": "bogus"})
    assert_error(response, 400, "InvalidMarkerException")


def test_tag_page_marker_not_issued_by_the_service_fails_with_400(
    rest: RestClient, key: dict
) -> None:
    forged = base64.urlsafe_b64encode(json.dumps({"after": "\u00b2"}).encode()).decode()
    response = rest.get(f"/v1/keys/{key['key_id']}/tags", params={"marker": forged})
    assert_error(response, 400, "InvalidMarkerException")


def test_unknown_path_fails_with_404_in_the_error_shape(rest: RestClient) -> None:
    assert_error(rest.get("/v1/nothing-here"), 404, "UnknownOperationException")


def test_key_of_another_account_fails_with_403(service: Service, key: dict) -> None:
    service.runtime.identity.ensure_administrator(
        OTHER_ACCOUNT_ID, OTHER_ACCESS_KEY_ID, OTHER_SECRET
    )
    outsider = RestClient(service, OTHER_ACCESS_KEY_ID, OTHER_SECRET)
    assert_error(outsider.get(f"/v1/keys/{key['arn']}"), 403, "AccessDeniedException")


def test_managing_an_aws_managed_key_fails_with_403(rest: RestClient) -> None:
    managed = rest.get("/v1/keys/alias/aws/rest-tests")
    assert managed.status_code == 200, managed.text
    assert managed.json()["key_manager"] == "AWS"
    response = rest.put(f"/v1/keys/{managed.json()['key_id']}/tags", {"tags": {"a": "b"}})
    assert_error(response, 403, "AccessDeniedException")


def test_internal_error_answers_500_without_details(
    service: Service, rest: RestClient, key: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("connection string postgres://secret@db")

    monkeypatch.setattr(service.runtime.service.keys, "describe_key", broken)
    body = assert_error(rest.get(f"/v1/keys/{key['key_id']}"), 500, "KMSInternalException")
    assert "secret" not in body["message"]
