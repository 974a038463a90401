"""The ciphertext blob of keys in external key stores (format 2, domain.ciphertext): the
proxy's answer kept whole around the key's own format 1 blob, parsed back exactly, and
every malformed one refused as InvalidCiphertextError. Format 1 is unchanged."""

from __future__ import annotations

import secrets
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import ciphertext, xks
from domain.ciphertext import (
    EXTERNAL_FORMAT,
    FORMAT_VERSION,
    HEADER_SIZE,
    check_inner,
    external_header,
    read_header,
    seal,
    unwrap_external,
    wrap_external,
)
from domain.errors import InvalidCiphertextError
from domain.xks import XksCiphertext

KEY_ID = uuid.UUID("1234abcd-12ab-34cd-56ef-1234567890ab")


def inner_blob(key_id: uuid.UUID = KEY_ID, version: int = 1, plaintext: bytes = b"p") -> bytes:
    return seal(
        AESGCM(AESGCM.generate_key(256)),
        key_id=key_id,
        material_version=version,
        plaintext=plaintext,
        encryption_context={"a": "b"},
        nonce=secrets.token_bytes(12),
    )


def outer_of(
    inner: bytes, iv_size: int = 12, metadata: bytes | None = b"KL\0\0\0\1"
) -> XksCiphertext:
    """What a proxy answers to Encrypt (random bytes of the right sizes)."""
    return XksCiphertext(
        secrets.token_bytes(len(inner)),
        secrets.token_bytes(iv_size),
        secrets.token_bytes(16),
        metadata,
    )


def test_format_1_is_unchanged() -> None:
    nonce, key = bytes(12), AESGCM(bytes(32))
    blob = seal(
        key, key_id=KEY_ID, material_version=7, plaintext=b"x", encryption_context=None, nonce=nonce
    )
    assert blob[:HEADER_SIZE] == b"\x01" + KEY_ID.bytes + (7).to_bytes(4, "big")
    assert blob[HEADER_SIZE : HEADER_SIZE + 12] == nonce
    assert len(blob) == ciphertext.OVERHEAD + 1
    assert read_header(blob) == ciphertext.CiphertextHeader(KEY_ID, 7)


@settings(max_examples=100, deadline=None, database=None)
@given(
    iv_size=st.sampled_from([12, 16]),
    metadata=st.none() | st.binary(min_size=1, max_size=xks.MAX_CIPHERTEXT_METADATA),
    plaintext=st.binary(max_size=300),
    version=st.integers(1, 2**32 - 1),
)
def test_a_proxys_answer_is_kept_whole_and_read_back(iv_size, metadata, plaintext, version):
    inner = inner_blob(version=version, plaintext=plaintext)
    header = external_header(KEY_ID, version)
    outer = outer_of(inner, iv_size, metadata)

    blob = wrap_external(header, outer)

    assert blob[0] == EXTERNAL_FORMAT and blob[:HEADER_SIZE] == header
    assert read_header(blob) == ciphertext.CiphertextHeader(KEY_ID, version, external=True)
    assert unwrap_external(blob) == (header, outer)


def test_the_header_names_the_key_and_version_like_format_1() -> None:
    assert external_header(KEY_ID, 3)[1:] == inner_blob(version=3)[1:HEADER_SIZE]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b[:60],  # too short
        lambda b: bytes([FORMAT_VERSION]) + b[1:],  # format 1 is not format 2
        lambda b: b[:HEADER_SIZE] + bytes([13]) + b[HEADER_SIZE + 1 :],  # IV of 13 bytes
        lambda b: b[: HEADER_SIZE + 29] + bytes([21]) + b[HEADER_SIZE + 30 :],  # metadata > 20
        lambda b: b[:-10],  # the proxy's ciphertext cut below a format 1 blob
    ],
)
def test_a_malformed_format_2_blob_is_invalid_ciphertext(corrupt) -> None:
    inner = inner_blob(plaintext=b"")
    blob = wrap_external(external_header(KEY_ID, 1), outer_of(inner))
    with pytest.raises(InvalidCiphertextError):
        unwrap_external(corrupt(blob))


def test_wrapping_refuses_what_no_proxy_may_answer() -> None:
    header, inner = external_header(KEY_ID, 1), inner_blob()
    for outer in (
        outer_of(inner, iv_size=8),
        outer_of(inner, metadata=b"m" * 21),
        XksCiphertext(inner, bytes(12), bytes(15)),
    ):
        with pytest.raises(ValueError):
            wrap_external(header, outer)
    with pytest.raises(ValueError):
        wrap_external(inner[:HEADER_SIZE], outer_of(inner))  # a format 1 header


def test_the_inner_blob_must_be_the_same_keys_format_1_blob() -> None:
    header = external_header(KEY_ID, 2)
    check_inner(inner_blob(version=2), header)
    for wrong in (inner_blob(version=3), inner_blob(key_id=uuid.uuid4(), version=2), b"\x01" * 48):
        with pytest.raises(InvalidCiphertextError):
            check_inner(wrong, header)
    with pytest.raises(InvalidCiphertextError):
        check_inner(bytes([EXTERNAL_FORMAT]) + inner_blob(version=2)[1:], header)
