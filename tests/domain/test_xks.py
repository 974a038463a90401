"""The XKS Proxy API's pure parts (domain.xks): the spec's worked CDIV example, the AAD fed
to GCM, KeyLedger's ciphertext metadata, and how KMS surfaces a proxy's failures."""

from __future__ import annotations

import base64

import pytest

from domain import errors, xks
from domain.errors import ValidationError


def test_integrity_value_is_the_specs_appendix_c_example() -> None:
    value = xks.integrity_value(
        b"project=nile,department=marketing",
        b"key_version=1",
        bytes.fromhex("1ccae5470f39700254779031"),
        bytes.fromhex("821c642b5b71783367deaf18"),
        bytes.fromhex("bc1c4dda7707d6812447c5955e99b261"),
    )
    assert base64.b64encode(value).decode() == "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="


def test_gcm_aad_prefixes_both_lengths() -> None:
    assert xks.gcm_aad(b"ab", b"xyz") == b"\x00\x02ab\x03xyz"
    assert xks.gcm_aad(None, None) == b"\x00\x00\x00"
    # AAD moved into the metadata no longer authenticates (the spec's note).
    assert xks.gcm_aad(None, b"ab") != xks.gcm_aad(b"ab", None)
    with pytest.raises(ValidationError):
        xks.gcm_aad(None, b"m" * 21)


def test_material_metadata_round_trips_and_rejects_others() -> None:
    assert xks.material_version(xks.material_metadata(7)) == 7
    assert len(xks.material_metadata(7)) <= xks.MAX_CIPHERTEXT_METADATA
    assert xks.material_version(b"key_version=1") is None
    assert xks.material_version(None) is None


def test_b64decode_is_strict_and_bounded() -> None:
    assert xks.b64decode("SGk=", "m", limit=2) == b"Hi"
    for bad in ("SGk", "S Gk=", 5, None, "SGVsbG8="):
        with pytest.raises(ValidationError):
            xks.b64decode(bad, "m", limit=2)


def served_rest(paths: list[str], path: str) -> str | None:
    """What of ``path`` follows the served path it begins with (None: not served)."""
    found = xks.served_paths(paths).match(path)
    return None if found is None else path[found.end() :]


def test_a_served_path_is_matched_at_the_start_of_a_request_path() -> None:
    assert served_rest(["/kms/xks/v1"], "/kms/xks/v1/health") == "/health"
    assert served_rest(["/kms/xks/v1"], "/kms/xks/v1") == ""
    assert served_rest(["/kms/xks/v1"], "/kms/xks/v12/health") is None
    assert served_rest(["/kms/xks/v1"], "/other/kms/xks/v1/health") is None


def test_a_star_segment_serves_any_one_prefix_and_several_paths_are_served() -> None:
    paths = ["/kms/xks/v1", "/*/kms/xks/v1"]
    assert served_rest(paths, "/store-1/kms/xks/v1/health") == "/health"
    assert served_rest(paths, "/kms/xks/v1/keys/k/encrypt") == "/keys/k/encrypt"
    assert served_rest(paths, "/a/b/kms/xks/v1/health") is None  # one segment only
    # A path beyond a served one is the proxy's to refuse (InvalidUriPathException).
    assert served_rest(paths, "/kms/xks/v1/kms/xks/v1/health") == "/kms/xks/v1/health"


@pytest.mark.parametrize(
    "paths",
    [[], ["/kms/xks/v2"], ["kms/xks/v1"], ["/a/*b/kms/xks/v1"], ["/" + "p" * 120 + "/kms/xks/v1"]],
)
def test_served_paths_must_be_xks_v1_paths(paths: list[str]) -> None:
    with pytest.raises(ValueError):
        xks.served_paths(paths)


def test_failures_surface_as_aws_kms_says() -> None:
    auth = xks.surfaced("AuthenticationFailedException")
    assert auth.key_store == "XksProxyIncorrectAuthenticationCredentialException"
    assert auth.crypto == "KMSInvalidStateException"
    assert xks.surfaced("KeyNotFoundException").create_key == "XksKeyNotFoundException"
    assert xks.surfaced(xks.UNREACHABLE).key_store == "XksProxyUriUnreachableException"
    assert xks.surfaced("SomethingNew") == xks.surfaced(xks.MALFORMED_RESPONSE)


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        ("AuthenticationFailedException", "INVALID_CREDENTIALS"),
        ("AccessDeniedException", "XKS_PROXY_ACCESS_DENIED"),
        ("InvalidUriPathException", "XKS_PROXY_INVALID_CONFIGURATION"),
        ("ValidationException", "XKS_PROXY_INVALID_RESPONSE"),
        ("InternalException", "XKS_PROXY_NOT_REACHABLE"),
        ("ThrottlingException", "XKS_PROXY_NOT_REACHABLE"),
        ("DependencyTimeoutException", "XKS_PROXY_TIMED_OUT"),
        (xks.UNREACHABLE, "XKS_PROXY_NOT_REACHABLE"),
        (xks.TIMED_OUT, "XKS_PROXY_TIMED_OUT"),
        (xks.TLS_FAILURE, "XKS_PROXY_INVALID_TLS_CONFIGURATION"),
        (xks.MALFORMED_RESPONSE, "XKS_PROXY_INVALID_RESPONSE"),
        ("SomethingNew", "XKS_PROXY_INVALID_RESPONSE"),
    ],
)
def test_a_failed_health_check_is_awss_connection_error_code(failure: str, code: str) -> None:
    assert xks.connection_error(failure) == code


def health(*statuses: str) -> xks.XksHealth:
    fleet = tuple({"id": str(i), "model": "m", "healthStatus": s} for i, s in enumerate(statuses))
    return xks.XksHealth(len(statuses), "v", "m", "e", fleet)


def test_a_proxy_whose_key_managers_are_all_unavailable_is_not_reachable() -> None:
    assert xks.health_connection_error(health("UNAVAILABLE", "UNAVAILABLE")) == (
        "XKS_PROXY_NOT_REACHABLE"
    )
    assert xks.health_connection_error(health("UNAVAILABLE", "DEGRADED")) is None
    assert xks.health_connection_error(health("ACTIVE")) is None


def test_proxy_failures_become_the_errors_create_key_and_crypto_answer() -> None:
    assert isinstance(
        xks.kms_failure("KeyNotFoundException", "CreateKey"), errors.XksKeyNotFoundError
    )
    assert isinstance(
        xks.kms_failure("InvalidStateException", "CreateKey"),
        errors.XksKeyInvalidConfigurationError,
    )
    assert isinstance(
        xks.kms_failure(xks.UNREACHABLE, "CreateKey"), errors.CustomKeyStoreInvalidStateError
    )
    for operation in ("Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey"):
        found = xks.kms_failure("InvalidCiphertextException", operation)
        assert type(found) is errors.InvalidStateError  # KMSInvalidStateException
        assert "corrupted" in str(found)


@pytest.mark.parametrize("operation", ["CreateCustomKeyStore", "UpdateCustomKeyStore"])
@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (xks.UNREACHABLE, errors.XksProxyUriUnreachableError),
        (xks.TIMED_OUT, errors.XksProxyUriUnreachableError),
        (xks.TLS_FAILURE, errors.XksProxyUriUnreachableError),
        ("AuthenticationFailedException", errors.XksProxyIncorrectAuthenticationCredentialError),
        ("InvalidUriPathException", errors.XksProxyInvalidConfigurationError),
        (xks.MALFORMED_RESPONSE, errors.XksProxyInvalidResponseError),
        ("SomethingNew", errors.XksProxyInvalidResponseError),
        ("AccessDeniedException", errors.CustomKeyStoreInvalidStateError),
    ],
)
def test_a_failed_check_of_a_stores_proxy_is_the_xks_proxy_error_aws_names(
    operation: str, failure: str, expected: type[errors.DomainError]
) -> None:
    assert type(xks.kms_failure(failure, operation)) is expected


def test_every_name_a_store_operation_answers_is_a_domain_error_of_its_own() -> None:
    for failure in xks.SURFACED:
        found = xks.kms_failure(failure, "CreateCustomKeyStore")
        assert type(found) is not errors.InvalidStateError, failure  # never the fallback


def test_a_check_refuses_a_proxy_whose_key_managers_are_all_unavailable() -> None:
    with pytest.raises(errors.XksProxyUriUnreachableError):
        xks.check_key_managers(health("UNAVAILABLE", "UNAVAILABLE"))
    xks.check_key_managers(health("UNAVAILABLE", "DEGRADED"))


def test_create_key_answers_only_names_its_api_model_defines() -> None:
    # The spec's table names XksKeyInvalidResponseException, which KMS's model lacks.
    names = {entry.create_key for entry in xks.SURFACED.values()}
    assert names <= {
        "CustomKeyStoreInvalidStateException",
        "KMSInvalidStateException",
        "XksKeyInvalidConfigurationException",
        "XksKeyNotFoundException",
    }


@pytest.mark.parametrize(
    "metadata",
    [
        xks.XksKeyMetadata("AES_128", ("ENCRYPT", "DECRYPT"), "ENABLED"),
        xks.XksKeyMetadata("AES_256", ("ENCRYPT",), "ENABLED"),
        xks.XksKeyMetadata("AES_256", ("ENCRYPT", "DECRYPT"), "DISABLED"),
    ],
)
def test_an_external_key_must_be_enabled_aes_256_for_encryption(metadata) -> None:
    with pytest.raises(errors.XksKeyInvalidConfigurationError):
        xks.check_external_key("k1", metadata)


def test_an_external_key_may_do_more_than_encrypt_and_decrypt() -> None:
    usage = ("WRAP", "ENCRYPT", "DECRYPT", "UNWRAP")
    xks.check_external_key("k1", xks.XksKeyMetadata("AES_256", usage, "ENABLED"))
