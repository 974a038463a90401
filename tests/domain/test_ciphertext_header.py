"""A ciphertext blob's header (domain.ciphertext.read_header) is parsed once per key
material version: every blob that version seals carries the same header, and Decrypt reads
it twice a call (issue 17). A header parsed once is still each blob's own."""

from __future__ import annotations

import secrets
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.ciphertext import MULTI_REGION_FORMAT, read_header, seal
from domain.errors import InvalidCiphertextError

CIPHER = AESGCM(AESGCM.generate_key(256))


def _blob(key_id: uuid.UUID, version: int, format_version: int = 1) -> bytes:
    return seal(
        CIPHER,
        key_id=key_id,
        material_version=version,
        plaintext=secrets.token_bytes(8),
        encryption_context=None,
        nonce=secrets.token_bytes(12),
        format_version=format_version,
    )


def test_blobs_of_one_material_version_share_one_parsed_header() -> None:
    key_id = uuid.uuid4()
    first, second = read_header(_blob(key_id, 3)), read_header(_blob(key_id, 3))
    assert first is second
    assert (first.key_id, first.material_version, first.multi_region) == (key_id, 3, False)


def test_each_blob_reads_its_own_key_version_and_format() -> None:
    key_id = uuid.uuid4()
    assert read_header(_blob(key_id, 1)).material_version == 1
    assert read_header(_blob(key_id, 2)).material_version == 2
    assert read_header(_blob(uuid.uuid4(), 1)).key_id != key_id
    assert read_header(_blob(key_id, 1, MULTI_REGION_FORMAT)).multi_region


@pytest.mark.parametrize("first_byte", [0, 2, 4, 255])
def test_a_header_of_no_known_format_is_refused_every_time(first_byte: int) -> None:
    blob = bytes((first_byte,)) + _blob(uuid.uuid4(), 1)[1:]
    for _ in range(2):
        with pytest.raises(InvalidCiphertextError):
            read_header(blob)
