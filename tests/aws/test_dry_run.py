"""DryRun as AWS defines it (docs/api-coverage.md, "DryRun"), on every operation whose AWS
model has the member: authorization and validation run in full, nothing changes, no key
material is used, and a request that would have succeeded is answered
DryRunOperationException (HTTP 400, AWS's own message); one that would have failed is
answered the real call's error. Each dry run is a record of the trail, with its errorCode.

AWS: "You can specify the DryRun API parameter to verify that you have the necessary
permissions to use AWS KMS keys ... [and] that you have specified the parameters in the call
correctly"; "The output of any operations that specify the DryRun parameter appear in your
CloudTrail log" (developer guide, "Testing your AWS KMS API calls"). The answer's body was
recorded against AWS (LocalStack's snapshot ``..._dry_run`` -> ``dryrun_exception``)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.session import Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from domain import ciphertext
from tests.audit.conftest import records
from tests.aws.conftest import RawSender, client_on_behalf_of, ledger_unchanged
from tests.conftest import ACCOUNT_ID, Service
from tests.support.waiting import eventually

DRY_RUN = "DryRunOperationException"
MESSAGE = "The request would have succeeded, but the DryRun option is set."
GRANTEE = f"arn:aws:iam::{ACCOUNT_ID}:root"


def model_operations_with_dry_run() -> set[str]:
    """Every KMS operation whose request shape has a DryRun member, in botocore's model."""
    model = Session().get_service_model("kms")
    return {
        name
        for name in model.operation_names
        if "DryRun" in model.operation_model(name).input_shape.members
    }


# ==== the keys and inputs a request needs ======================================================
class Keys:
    """Keys of each kind, made when first asked for, and inputs made with them by real calls
    (a ciphertext, a signature, a MAC, an encapsulation, a grant)."""

    def __init__(self, kms: Any) -> None:
        self.kms = kms

    def _key(self, **spec: str) -> dict[str, Any]:
        return dict(self.kms.create_key(**spec)["KeyMetadata"])

    @cached_property
    def symmetric(self) -> dict[str, Any]:
        return self._key()

    @cached_property
    def destination(self) -> dict[str, Any]:
        return self._key()

    @cached_property
    def signing(self) -> dict[str, Any]:
        return self._key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")

    @cached_property
    def hmac(self) -> dict[str, Any]:
        return self._key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")

    @cached_property
    def agreement(self) -> dict[str, Any]:
        return self._key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")

    @cached_property
    def kem(self) -> dict[str, Any]:
        return self._key(KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")

    @cached_property
    def rsa(self) -> dict[str, Any]:
        return self._key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")

    @cached_property
    def blob(self) -> bytes:
        answer = self.kms.encrypt(
            KeyId=self.symmetric["KeyId"], Plaintext=b"secret", EncryptionContext={"app": "x"}
        )
        return bytes(answer["CiphertextBlob"])

    @cached_property
    def signature(self) -> bytes:
        answer = self.kms.sign(
            KeyId=self.signing["KeyId"], Message=b"message", SigningAlgorithm="ECDSA_SHA_256"
        )
        return bytes(answer["Signature"])

    @cached_property
    def mac(self) -> bytes:
        answer = self.kms.generate_mac(
            KeyId=self.hmac["KeyId"], Message=b"message", MacAlgorithm="HMAC_SHA_256"
        )
        return bytes(answer["Mac"])

    @cached_property
    def encapsulated(self) -> bytes:
        answer = self.kms.encapsulate(KeyId=self.kem["KeyId"], EncapsulationAlgorithm="ML_KEM")
        return bytes(answer["SharedSecretCiphertextBlob"])

    def grant(self) -> str:
        answer = self.kms.create_grant(
            KeyId=self.symmetric["KeyId"], GranteePrincipal=GRANTEE, Operations=["Encrypt"]
        )
        return str(answer["GrantId"])


def peer_public_key(curve: ec.EllipticCurve | None = None) -> bytes:
    private_key = ec.generate_private_key(curve or ec.SECP256R1())
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Case:
    """One operation: its key (the one a dry run names, disabled in the failure cases) and a
    request that would succeed."""

    operation: str
    key: Callable[[Keys], dict[str, Any]]
    request: Callable[[Keys], dict[str, Any]]


CASES = {
    case.operation: case
    for case in (
        Case(
            "Encrypt",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "Plaintext": b"x"},
        ),
        Case(
            "Decrypt",
            lambda k: k.symmetric,
            lambda k: {"CiphertextBlob": k.blob, "EncryptionContext": {"app": "x"}},
        ),
        Case(
            "ReEncrypt",
            lambda k: k.destination,
            lambda k: {
                "CiphertextBlob": k.blob,
                "SourceEncryptionContext": {"app": "x"},
                "DestinationKeyId": k.destination["KeyId"],
            },
        ),
        Case(
            "GenerateDataKey",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "KeySpec": "AES_256"},
        ),
        Case(
            "GenerateDataKeyWithoutPlaintext",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "NumberOfBytes": 16},
        ),
        Case(
            "GenerateDataKeyPair",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "KeyPairSpec": "ECC_NIST_P256"},
        ),
        Case(
            "GenerateDataKeyPairWithoutPlaintext",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "KeyPairSpec": "RSA_2048"},
        ),
        Case(
            "Sign",
            lambda k: k.signing,
            lambda k: {
                "KeyId": k.signing["KeyId"],
                "Message": b"message",
                "SigningAlgorithm": "ECDSA_SHA_256",
            },
        ),
        Case(
            "Verify",
            lambda k: k.signing,
            lambda k: {
                "KeyId": k.signing["KeyId"],
                "Message": b"message",
                "Signature": k.signature,
                "SigningAlgorithm": "ECDSA_SHA_256",
            },
        ),
        Case(
            "GenerateMac",
            lambda k: k.hmac,
            lambda k: {
                "KeyId": k.hmac["KeyId"],
                "Message": b"message",
                "MacAlgorithm": "HMAC_SHA_256",
            },
        ),
        Case(
            "VerifyMac",
            lambda k: k.hmac,
            lambda k: {
                "KeyId": k.hmac["KeyId"],
                "Message": b"message",
                "Mac": k.mac,
                "MacAlgorithm": "HMAC_SHA_256",
            },
        ),
        Case(
            "DeriveSharedSecret",
            lambda k: k.agreement,
            lambda k: {
                "KeyId": k.agreement["KeyId"],
                "KeyAgreementAlgorithm": "ECDH",
                "PublicKey": peer_public_key(),
            },
        ),
        Case(
            "Encapsulate",
            lambda k: k.kem,
            lambda k: {"KeyId": k.kem["KeyId"], "EncapsulationAlgorithm": "ML_KEM"},
        ),
        Case(
            "Decapsulate",
            lambda k: k.kem,
            lambda k: {
                "KeyId": k.kem["KeyId"],
                "SharedSecretCiphertextBlob": k.encapsulated,
                "EncapsulationAlgorithm": "ML_KEM",
            },
        ),
        Case(
            "CreateGrant",
            lambda k: k.symmetric,
            lambda k: {
                "KeyId": k.symmetric["KeyId"],
                "GranteePrincipal": GRANTEE,
                "Operations": ["Decrypt"],
            },
        ),
        Case(
            "RetireGrant",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["Arn"], "GrantId": k.grant()},
        ),
        Case(
            "RevokeGrant",
            lambda k: k.symmetric,
            lambda k: {"KeyId": k.symmetric["KeyId"], "GrantId": k.grant()},
        ),
    )
}
# Operations whose key may be disabled and the call still succeed (AWS's key state table).
ALLOWED_ON_A_DISABLED_KEY = {"RetireGrant", "RevokeGrant"}


def call(kms: Any, operation: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return dict(getattr(kms, xform_name(operation))(**request, **extra))


def refusal(kms: Any, operation: str, request: dict[str, Any], **extra: Any) -> ClientError:
    with pytest.raises(ClientError) as refused:
        call(kms, operation, request, **extra)
    return refused.value


def error_of(refused: ClientError) -> tuple[str, str, int]:
    response = refused.response
    return (
        response["Error"]["Code"],
        response["Error"].get("Message", ""),
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


@pytest.fixture(scope="module")
def keys(service: Service) -> Keys:
    return Keys(service.client("kms"))


@pytest.fixture
def fresh_keys(kms: Any) -> Keys:
    """Keys of this test alone (it disables them)."""
    return Keys(kms)


@pytest.fixture(scope="module")
def stranger(service: Service) -> Any:
    """A principal of the same account that no policy allows anything (like a new IAM user)."""
    identity = service.runtime.identity
    principal = identity.create_principal(ACCOUNT_ID, f"stranger{uuid.uuid4().hex[:8]}")
    access_key_id, secret = identity.create_access_key(principal)
    return service.client("kms", access_key_id=access_key_id, secret_access_key=secret)


# ==== which operations ======================================================================
def test_every_operation_whose_aws_model_has_dry_run_is_specified_here() -> None:
    assert model_operations_with_dry_run() == set(CASES)


# ==== a dry run that would succeed =========================================================
@pytest.mark.parametrize("operation", sorted(CASES))
def test_a_dry_run_that_would_succeed_answers_dry_run_operation_and_changes_nothing(
    service: Service, keys: Keys, operation: str
) -> None:
    request = CASES[operation].request(keys)

    with ledger_unchanged(service):
        refused = refusal(keys.kms, operation, request, DryRun=True)

    assert error_of(refused) == (DRY_RUN, MESSAGE, 400)
    assert refused.response["message"] == MESSAGE  # the body's own member, as AWS sends it
    call(keys.kms, operation, request)  # the same request without DryRun: it did succeed


def test_the_dry_run_answer_is_aws_body_exactly(raw: RawSender, keys: Keys) -> None:
    answer = raw(
        "TrentService.Encrypt",
        {"KeyId": keys.symmetric["KeyId"], "Plaintext": "eA==", "DryRun": True},
    )

    assert answer.status == 400
    assert answer.body == {"__type": DRY_RUN, "message": MESSAGE}


def test_a_dry_run_with_dry_run_false_is_the_real_call(keys: Keys) -> None:
    answer = keys.kms.encrypt(KeyId=keys.symmetric["KeyId"], Plaintext=b"x", DryRun=False)

    assert answer["KeyId"] == keys.symmetric["Arn"]


def test_a_dry_run_creates_no_grant(keys: Keys) -> None:
    before = keys.kms.list_grants(KeyId=keys.symmetric["KeyId"])["Grants"]

    refusal(keys.kms, "CreateGrant", CASES["CreateGrant"].request(keys), DryRun=True)

    assert keys.kms.list_grants(KeyId=keys.symmetric["KeyId"])["Grants"] == before


@pytest.mark.parametrize("operation", ["RetireGrant", "RevokeGrant"])
def test_a_dry_run_leaves_the_grant_in_force(keys: Keys, operation: str) -> None:
    request = CASES[operation].request(keys)

    refusal(keys.kms, operation, request, DryRun=True)

    grants = keys.kms.list_grants(KeyId=keys.symmetric["KeyId"], GrantId=request["GrantId"])
    assert [g["GrantId"] for g in grants["Grants"]] == [request["GrantId"]]


def test_a_dry_run_on_an_aws_managed_alias_never_used_creates_no_key(
    service: Service, kms: Any
) -> None:
    # An AWS managed key comes into being on first use of its alias, through its service.
    name = f"spec{uuid.uuid4().hex[:8]}"
    identity = service.runtime.identity
    through = identity.create_principal(ACCOUNT_ID, name, service_name=f"{name}.amazonaws.com")
    client = client_on_behalf_of(
        service, *identity.create_access_key(through), f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
    )
    request = {"KeyId": f"alias/aws/{name}", "Plaintext": b"x"}

    with ledger_unchanged(service):
        refused = refusal(client, "Encrypt", request, DryRun=True)

    assert error_of(refused) == (DRY_RUN, MESSAGE, 400)
    assert f"alias/aws/{name}" not in [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    call(client, "Encrypt", request)  # the same request without DryRun: it did succeed


# ==== a dry run that would fail fails as the real call =====================================
def same_failure(service: Service, kms: Any, operation: str, request: dict[str, Any]) -> str:
    """The real call and the dry run fail alike, and neither changes anything; the code."""
    with ledger_unchanged(service):
        real = error_of(refusal(kms, operation, request))
        dry = error_of(refusal(kms, operation, request, DryRun=True))
    assert dry == real
    assert real[0] != DRY_RUN
    return real[0]


@pytest.mark.parametrize("operation", sorted(set(CASES) - ALLOWED_ON_A_DISABLED_KEY))
def test_a_dry_run_on_a_disabled_key_answers_disabled(
    service: Service, fresh_keys: Keys, operation: str
) -> None:
    case = CASES[operation]
    request = case.request(fresh_keys)
    fresh_keys.kms.disable_key(KeyId=case.key(fresh_keys)["KeyId"])

    assert same_failure(service, fresh_keys.kms, operation, request) == "DisabledException"


@pytest.mark.parametrize("operation", sorted(CASES))
def test_a_dry_run_the_policies_deny_answers_access_denied(
    service: Service, keys: Keys, stranger: Any, operation: str
) -> None:
    request = CASES[operation].request(keys)

    assert same_failure(service, stranger, operation, request) == "AccessDeniedException"


CONTEXT_FORBIDDEN = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "forbidden"}},
            },
        ],
    }
)


@pytest.mark.parametrize(
    "operation",
    [
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
    ],
)
def test_a_dry_run_is_decided_on_its_encryption_context_as_the_real_call(
    service: Service, keys: Keys, operation: str
) -> None:
    identity = service.runtime.identity
    principal = identity.create_principal(
        ACCOUNT_ID, f"ctx{uuid.uuid4().hex[:8]}", policies={"NoForbidden": CONTEXT_FORBIDDEN}
    )
    access_key_id, secret = identity.create_access_key(principal)
    client = service.client("kms", access_key_id=access_key_id, secret_access_key=secret)
    request = {**CASES[operation].request(keys), "EncryptionContext": {"purpose": "forbidden"}}

    assert same_failure(service, client, operation, request) == "AccessDeniedException"
    allowed = {**request, "EncryptionContext": {"purpose": "fine"}}
    assert error_of(refusal(client, operation, allowed, DryRun=True))[0] == DRY_RUN


WRONG_USAGE: dict[str, Callable[[Keys], dict[str, Any]]] = {
    "Encrypt": lambda k: {"KeyId": k.signing["KeyId"], "Plaintext": b"x"},
    "ReEncrypt": lambda k: {"CiphertextBlob": k.blob, "DestinationKeyId": k.hmac["KeyId"]},
    "GenerateDataKey": lambda k: {"KeyId": k.signing["KeyId"], "NumberOfBytes": 32},
    "GenerateDataKeyWithoutPlaintext": lambda k: {"KeyId": k.hmac["KeyId"], "NumberOfBytes": 32},
    "GenerateDataKeyPair": lambda k: {"KeyId": k.kem["KeyId"], "KeyPairSpec": "ECC_NIST_P256"},
    "GenerateDataKeyPairWithoutPlaintext": lambda k: {
        "KeyId": k.signing["KeyId"],
        "KeyPairSpec": "RSA_2048",
    },
    "Sign": lambda k: {
        "KeyId": k.symmetric["KeyId"],
        "Message": b"m",
        "SigningAlgorithm": "ECDSA_SHA_256",
    },
    "Verify": lambda k: {
        "KeyId": k.agreement["KeyId"],
        "Message": b"m",
        "Signature": b"s",
        "SigningAlgorithm": "ECDSA_SHA_256",
    },
    "GenerateMac": lambda k: {
        "KeyId": k.symmetric["KeyId"],
        "Message": b"m",
        "MacAlgorithm": "HMAC_SHA_256",
    },
    "VerifyMac": lambda k: {
        "KeyId": k.signing["KeyId"],
        "Message": b"m",
        "Mac": b"m" * 32,
        "MacAlgorithm": "HMAC_SHA_256",
    },
    "DeriveSharedSecret": lambda k: {
        "KeyId": k.signing["KeyId"],
        "KeyAgreementAlgorithm": "ECDH",
        "PublicKey": peer_public_key(),
    },
    "Encapsulate": lambda k: {"KeyId": k.symmetric["KeyId"], "EncapsulationAlgorithm": "ML_KEM"},
    "Decapsulate": lambda k: {
        "KeyId": k.agreement["KeyId"],
        "SharedSecretCiphertextBlob": b"c" * 1088,
        "EncapsulationAlgorithm": "ML_KEM",
    },
    "CreateGrant": lambda k: {  # Sign is no operation of a symmetric key
        "KeyId": k.symmetric["KeyId"],
        "GranteePrincipal": GRANTEE,
        "Operations": ["Sign"],
    },
}


@pytest.mark.parametrize("operation", sorted(WRONG_USAGE))
def test_a_dry_run_with_a_key_of_the_wrong_usage_fails_as_the_real_call(
    service: Service, keys: Keys, operation: str
) -> None:
    code = same_failure(service, keys.kms, operation, WRONG_USAGE[operation](keys))

    assert code in {"InvalidKeyUsageException", "ValidationException"}


def _other_version(blob: bytes) -> bytes:
    """The blob with its header naming a material version its key never had."""
    header = ciphertext.read_header(blob)
    return blob[:17] + (header.material_version + 41).to_bytes(4, "big") + blob[21:]


INVALID_INPUT: dict[str, tuple[str, Callable[[Keys], dict[str, Any]], str]] = {
    "a malformed ciphertext": (
        "Decrypt",
        lambda k: {"CiphertextBlob": b"\x01" + b"\x00" * 8},
        "InvalidCiphertextException",
    ),
    "a ciphertext naming a material version the key lacks": (
        "Decrypt",
        lambda k: {"CiphertextBlob": _other_version(k.blob), "EncryptionContext": {"app": "x"}},
        "InvalidCiphertextException",
    ),
    "an RSA ciphertext of the wrong length": (
        "Decrypt",
        lambda k: {
            "KeyId": k.rsa["KeyId"],
            "CiphertextBlob": b"c" * 255,
            "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        },
        "InvalidCiphertextException",
    ),
    "a malformed source ciphertext": (
        "ReEncrypt",
        lambda k: {"CiphertextBlob": b"junk" * 10, "DestinationKeyId": k.symmetric["KeyId"]},
        "InvalidCiphertextException",
    ),
    "a digest of the wrong length": (
        "Sign",
        lambda k: {
            "KeyId": k.signing["KeyId"],
            "Message": b"d" * 31,
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        },
        "ValidationException",
    ),
    "a malformed peer public key": (
        "DeriveSharedSecret",
        lambda k: {
            "KeyId": k.agreement["KeyId"],
            "KeyAgreementAlgorithm": "ECDH",
            "PublicKey": b"garbage",
        },
        "ValidationException",
    ),
    "a peer public key on another curve": (
        "DeriveSharedSecret",
        lambda k: {
            "KeyId": k.agreement["KeyId"],
            "KeyAgreementAlgorithm": "ECDH",
            "PublicKey": peer_public_key(ec.SECP384R1()),
        },
        "InvalidKeyUsageException",
    ),
    "an encapsulation of the wrong size": (
        "Decapsulate",
        lambda k: {
            "KeyId": k.kem["KeyId"],
            "SharedSecretCiphertextBlob": b"c" * 1000,
            "EncapsulationAlgorithm": "ML_KEM",
        },
        "InvalidCiphertextException",
    ),
    "a grant the key does not have (RetireGrant)": (
        "RetireGrant",
        lambda k: {"KeyId": k.symmetric["Arn"], "GrantId": "0" * 64},
        "NotFoundException",
    ),
    "a grant the key does not have (RevokeGrant)": (
        "RevokeGrant",
        lambda k: {"KeyId": k.symmetric["KeyId"], "GrantId": "0" * 64},
        "NotFoundException",
    ),
    "a key that does not exist": (
        "GenerateDataKey",
        lambda k: {"KeyId": str(uuid.uuid4()), "NumberOfBytes": 32},
        "NotFoundException",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_INPUT))
def test_a_dry_run_of_an_invalid_request_fails_as_the_real_call(
    service: Service, keys: Keys, case: str
) -> None:
    operation, request, expected = INVALID_INPUT[case]

    assert same_failure(service, keys.kms, operation, request(keys)) == expected


# ==== what a dry run does not do: use key material ==========================================
def _tampered(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def test_a_decrypt_dry_run_does_not_open_the_ciphertext(service: Service, keys: Keys) -> None:
    """Authenticating a ciphertext (its tag, its encryption context) is decrypting it: it
    needs the key's material, which a dry run never uses. Everything read from the header
    without the material is checked (see the invalid-request cases above)."""
    request = {"CiphertextBlob": _tampered(keys.blob), "EncryptionContext": {"app": "x"}}

    with ledger_unchanged(service):
        dry = error_of(refusal(keys.kms, "Decrypt", request, DryRun=True))
    real = error_of(refusal(keys.kms, "Decrypt", request))

    assert dry == (DRY_RUN, MESSAGE, 400)
    assert real[0] == "InvalidCiphertextException"


MATERIAL_LOOKUPS = re.compile(
    r'^keyledger_cache_lookups_total\{(?=[^}]*cache="materials")[^}]*\} (\S+)$', re.MULTILINE
)


def material_lookups(service: Service) -> float:
    """How often the service looked for a key's material (hit or miss), from /metrics."""
    text = httpx.get(service.endpoint + "/metrics", timeout=30).text
    return sum(float(value) for value in MATERIAL_LOOKUPS.findall(text))


@pytest.mark.parametrize("operation", sorted(CASES))
def test_a_dry_run_uses_no_key_material(service: Service, keys: Keys, operation: str) -> None:
    request = CASES[operation].request(keys)
    before = material_lookups(service)

    refusal(keys.kms, operation, request, DryRun=True)

    assert material_lookups(service) == before
    call(keys.kms, operation, request)  # (the same call without DryRun does use it)
    assert operation.endswith("Grant") or material_lookups(service) > before


def test_a_verify_dry_run_does_not_check_the_signature(keys: Keys) -> None:
    """Checking the signature is the operation itself, done with the key's public half."""
    request = {**CASES["Verify"].request(keys), "Signature": _tampered(keys.signature)}

    dry = error_of(refusal(keys.kms, "Verify", request, DryRun=True))

    assert dry == (DRY_RUN, MESSAGE, 400)


# ==== the trail ===============================================================================
def _record(service: Service, request_id: str, name: str) -> dict[str, Any]:
    trail = service.client("cloudtrail")

    def found() -> list[dict[str, Any]]:
        return [r for r in records(trail, "EventName", name) if r["requestID"] == request_id]

    assert eventually(lambda: len(found()) == 1, timeout=15, poll=0.1)
    return found()[0]


@pytest.mark.parametrize("operation", sorted(CASES))
def test_a_dry_run_is_a_record_of_the_trail_with_its_error_code(
    service: Service, keys: Keys, operation: str
) -> None:
    case = CASES[operation]
    request = case.request(keys)

    refused = refusal(keys.kms, operation, request, DryRun=True)

    record = _record(service, refused.response["ResponseMetadata"]["RequestId"], operation)
    assert record["errorCode"] == DRY_RUN
    assert record["errorMessage"] == MESSAGE
    assert record["requestParameters"]["dryRun"] is True
    assert case.key(keys)["Arn"] in [r["ARN"] for r in record["resources"]]
    assert "responseElements" not in record or record["responseElements"] is None
