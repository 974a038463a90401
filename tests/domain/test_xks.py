"""The XKS Proxy API's pure parts (domain.xks): the spec's worked CDIV example, the AAD fed
to GCM, KeyLedger's ciphertext metadata, and how KMS surfaces a proxy's failures."""

from __future__ import annotations

import base64

import pytest

from domain import xks
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


def test_failures_surface_as_aws_kms_says() -> None:
    auth = xks.surfaced("AuthenticationFailedException")
    assert auth.key_store == "XksProxyIncorrectAuthenticationCredentialException"
    assert auth.crypto == "KMSInvalidStateException"
    assert xks.surfaced("KeyNotFoundException").create_key == "XksKeyNotFoundException"
    assert xks.surfaced(xks.UNREACHABLE).key_store == "XksProxyUriUnreachableException"
    assert xks.surfaced("SomethingNew") == xks.surfaced(xks.MALFORMED_RESPONSE)
